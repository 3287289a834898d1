import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { count, eq } from 'drizzle-orm';
import { parse } from 'yaml';
import type { App } from '../../src/app.js';
import type { Database, Driver } from '../../src/db/index.js';
import { applications, auditEvents, grants } from '../../src/db/schema.js';
import { projectRoot } from '../../src/paths.js';
import { buildTestApp, forEachDriver, freshDatabase } from '../helpers/app.js';
import { party, type Party } from '../helpers/parties.js';
import { assertProblem } from '../helpers/problem.js';

const DAY_MS = 86_400_000;
const STUDENT = '330000-EDU-00001'; // zj-edu, conditional, read/query/verify
const ENTERPRISE = '330000-AMR-00001'; // zj-amr, unconditional, read/query/verify
const PENALTIES = '330000-AMR-00002'; // zj-amr, unconditional, read/query only (no verify)
const TEACHERS = '330000-EDU-00003'; // zj-edu, conditional, verify only
const SURVEY_MAPS = '330000-NR-00003'; // zj-nr, sharing none

type Injected = Awaited<ReturnType<App['inject']>>;


function studentApplication(overrides: Record<string, unknown> = {}) {
  return {
    resource: STUDENT,
    fields: ['student_id', 'name', 'school', 'status'],
    mode: 'read',
    purpose: '学生资助资格审核',
    legal_basis: '《学生资助资金管理办法》第十条',
    duration_days: 90,
    ...overrides,
  };
}

function enterpriseApplication(overrides: Record<string, unknown> = {}) {
  return {
    resource: ENTERPRISE,
    fields: ['uscc', 'name', 'status'],
    mode: 'read',
    purpose: '企业资质核查',
    legal_basis: '《中华人民共和国市场主体登记管理条例》',
    duration_days: 30,
    ...overrides,
  };
}

const applyAs = (app: App, who: Party, body: object) => app.inject({ method: 'POST', url: '/v1/applications', headers: who.headers, payload: body });
const decideAs = (app: App, who: Party, id: string, body: object) =>
  app.inject({ method: 'POST', url: `/v1/applications/${id}/decision`, headers: who.headers, payload: body });
const revokeAs = (app: App, who: Party, id: string) => app.inject({ method: 'DELETE', url: `/v1/grants/${id}`, headers: who.headers });

/** The audit record an answer names in X-Audit-Id (committed before the answer was sent). */
async function auditOf(app: App, response: Injected) {
  const id = response.headers['x-audit-id'];
  if (typeof id !== 'string') throw new Error(`no X-Audit-Id on ${response.statusCode} ${response.body}`);
  const [row] = await app.db.select().from(auditEvents).where(eq(auditEvents.id, id));
  return row;
}

async function applicationCount(app: App) {
  const [row] = await app.db.select({ n: count() }).from(applications);
  return row?.n ?? 0;
}

/** Every item of a list, following Link: rel="next" as a client would; checks each page's size. */
async function allPages(t: Test, app: App, url: string, who: Party, limit: number) {
  const ids: string[] = [];
  let next: string | null = url;
  let pages = 0;
  while (next) {
    const response: Injected = await app.inject({ url: next, headers: who.headers });
    t.equal(response.statusCode, 200, `${next}: 200`);
    const body = response.json() as { items: Array<{ id: string }>; next_cursor: string | null };
    t.ok(body.items.length <= limit, `at most ${limit} per page`);
    ids.push(...body.items.map((item) => item.id));
    pages += 1;
    if (body.next_cursor) {
      const link = /^<([^>]+)>; rel="next"$/.exec(String(response.headers.link));
      t.ok(link, 'Link: rel="next" while there are more');
      const nextUrl = new URL(link?.[1] ?? '', 'http://x');
      t.equal(nextUrl.searchParams.get('cursor'), body.next_cursor, 'the Link carries the body cursor');
      next = `${nextUrl.pathname}${nextUrl.search}`;
    } else {
      t.equal(response.headers.link, undefined, 'no Link on the last page');
      next = null;
    }
  }
  return { ids, pages };
}

const catalogConditions = (agency: string, code: string) =>
  (parse(readFileSync(join(projectRoot, 'catalog', agency, `${code}.yaml`), 'utf8')) as { sharing: { conditions: string } }).sharing.conditions;

interface Setup {
  database: Database;
  app: App;
  setNow(iso: string): Date;
  now(): Date;
  psb: Party; // consumer agency: applications:write only
  psbManager: Party; // consumer agency's own grants:manage client
  hrss: Party; // another consumer agency
  edu: Party; // provider of student status: grants:manage
  amr: Party; // provider of enterprise registration: grants:manage
  admin: Party;
  supervisor: Party; // zj-stats, audit:read, listed in SUPERVISOR_AGENCIES
  catalogOnly: Party;
}

async function setup(t: Test, driver: Driver): Promise<Setup> {
  const database = await freshDatabase(t, driver);
  let now = new Date('2026-03-02T09:00:00Z'); // Monday 17:00 in China
  const app = await buildTestApp(t, driver, { database, clock: () => new Date(now), env: { SUPERVISOR_AGENCIES: 'zj-stats' } });
  return {
    database,
    app,
    setNow(iso: string) {
      now = new Date(iso);
      return new Date(now);
    },
    now: () => new Date(now),
    psb: await party(app, 'zj-psb', ['applications:write', 'records:read']),
    psbManager: await party(app, 'zj-psb', ['grants:manage']),
    hrss: await party(app, 'zj-hrss', ['applications:write']),
    edu: await party(app, 'zj-edu', ['grants:manage']),
    amr: await party(app, 'zj-amr', ['grants:manage']),
    admin: await party(app, 'zj-stats', ['admin']),
    supervisor: await party(app, 'zj-stats', ['audit:read']),
    catalogOnly: await party(app, 'zj-psb', ['catalog:read']),
  };
}

forEachDriver(t, 'sharing API', async (t, driver) => {
  const s = await setup(t, driver);
  const { app } = s;

  t.test('unconditional: granted at once (201), the grant listed with its validity', async (t) => {
    const now = s.setNow('2026-03-02T09:00:00Z');
    const response = await applyAs(app, s.psb, enterpriseApplication({ duration_days: 30 }));
    t.equal(response.statusCode, 201);
    const body = response.json();
    t.match(body, {
      id: /^ap_/,
      agency: 'zj-psb',
      client_id: s.psb.clientId,
      resource: ENTERPRISE,
      provider: 'zj-amr',
      fields: ['uscc', 'name', 'status'],
      mode: 'read',
      status: 'approved',
      due_at: null,
      overdue: false,
      created_at: now.toISOString(),
      decided_at: now.toISOString(),
      grant_id: /^gr_/,
    });

    const listed = await app.inject({ url: `/v1/grants?resource=${ENTERPRISE}`, headers: s.psb.headers });
    t.equal(listed.statusCode, 200);
    const grant = listed.json().items.find((item: { id: string }) => item.id === body.grant_id);
    t.match(grant, {
      agency: 'zj-psb',
      resource: ENTERPRISE,
      provider: 'zj-amr',
      fields: ['uscc', 'name', 'status'],
      mode: 'read',
      purpose: '企业资质核查',
      legal_basis: '《中华人民共和国市场主体登记管理条例》',
      application_id: body.id,
      valid_from: now.toISOString(),
      valid_until: new Date(now.getTime() + 30 * DAY_MS).toISOString(),
      status: 'active',
      revoked_at: null,
    });
    t.notOk(grant && 'client_id' in grant, 'an agency-wide grant names no client');

    const [row] = await app.db.select().from(applications).where(eq(applications.id, body.id));
    t.equal(row?.grantId, body.grant_id, 'the application row links its grant');
    t.equal(row?.decidedBy, 'catalog:unconditional');

    const audit = await auditOf(app, response);
    t.match(audit, { action: 'application.create', outcome: 'allowed', status: 201, resource: ENTERPRISE, provider: 'zj-amr', agency: 'zj-psb', clientId: s.psb.clientId, grantId: body.grant_id });
  });

  t.test('conditional: pending (202) until the provider decides, due 10 working days out', async (t) => {
    s.setNow('2026-03-02T09:00:00Z'); // Monday 17:00 CST
    const response = await applyAs(app, s.psb, studentApplication());
    t.equal(response.statusCode, 202);
    const body = response.json();
    // Tue 3 – Fri 6 (4), Mon 9 – Fri 13 (9), Mon 16 (10), same time of day.
    t.match(body, { status: 'pending', resource: STUDENT, provider: 'zj-edu', due_at: '2026-03-16T09:00:00.000Z', overdue: false, decided_at: null, reason: null });
    t.notOk('grant_id' in body, 'no grant yet');
    const stored = await app.db.select().from(grants).where(eq(grants.applicationId, body.id));
    t.same(stored, [], 'no grant row');
    const audit = await auditOf(app, response);
    t.match(audit, { action: 'application.create', outcome: 'allowed', status: 202, resource: STUDENT, provider: 'zj-edu', grantId: null });

    const one = await app.inject({ url: `/v1/applications/${body.id}`, headers: s.psb.headers });
    t.equal(one.statusCode, 200);
    t.same(one.json(), body, 'GET shows what POST answered');
  });

  t.test('none: refused with 403 and the catalog reason, nothing stored, the refusal audited', async (t) => {
    const before = await applicationCount(app);
    const response = await applyAs(app, s.psb, { resource: SURVEY_MAPS, fields: ['sheet_number'], mode: 'read', purpose: '项目选址', legal_basis: '《测绘法》', duration_days: 30 });
    const body = assertProblem(t, response, 403, 'sharing_not_allowed');
    t.ok(body.detail.includes(catalogConditions('zj-nr', SURVEY_MAPS)), 'the detail carries the catalog conditions text');
    t.equal(await applicationCount(app), before, 'no application stored');
    const rows = await app.db.select().from(applications).where(eq(applications.resource, SURVEY_MAPS));
    t.same(rows, []);
    const audit = await auditOf(app, response);
    t.match(audit, { action: 'application.create', outcome: 'denied', status: 403, reason: 'sharing_not_allowed', resource: SURVEY_MAPS, provider: 'zj-nr', agency: 'zj-psb' });
  });

  t.test('validation: each refusal names the failing value, and nothing is stored', async (t) => {
    s.setNow('2026-03-02T09:00:00Z');
    const before = await applicationCount(app);
    const pointerOf = (response: Injected) => assertProblem(t, response, 400, 'invalid_request').errors?.[0]?.pointer;

    t.equal(pointerOf(await applyAs(app, s.psb, studentApplication({ fields: ['student_id', 'name', 'blood_type'] }))), '/fields/2', 'not a data item');
    t.equal(pointerOf(await applyAs(app, s.psb, studentApplication({ purpose: '' }))), '/purpose', 'empty purpose');
    t.equal(pointerOf(await applyAs(app, s.psb, studentApplication({ purpose: '   ' }))), '/purpose', 'blank purpose');
    t.equal(pointerOf(await applyAs(app, s.psb, studentApplication({ legal_basis: ' \t ' }))), '/legal_basis', 'blank legal basis');
    t.equal(pointerOf(await applyAs(app, s.psb, { ...studentApplication(), urgent: true })), '/urgent', 'unknown property');
    t.equal(pointerOf(await applyAs(app, s.psb, studentApplication({ duration_days: 0 }))), '/duration_days', 'at least one day');
    t.equal(pointerOf(await applyAs(app, s.psb, studentApplication({ fields: [] }))), '/fields', 'at least one field');
    t.equal(pointerOf(await applyAs(app, s.psb, studentApplication({ mode: 'download' }))), '/mode');
    t.equal(pointerOf(await applyAs(app, s.psb, studentApplication({ duration_days: 366 }))), '/duration_days', 'over the default maximum of 365');

    const unknown = await applyAs(app, s.psb, studentApplication({ resource: '330000-EDU-09999' }));
    t.match(assertProblem(t, unknown, 404, 'not_found').detail, /330000-EDU-09999/);

    const noVerify = await applyAs(app, s.psb, { resource: PENALTIES, fields: ['decision_number'], mode: 'verify', purpose: '信用核查', legal_basis: '《行政处罚法》', duration_days: 30 });
    t.match(assertProblem(t, noVerify, 400, 'mode_not_offered').detail, /330000-AMR-00002.*verify/);
    const verifyOnly = await applyAs(app, s.psb, { resource: TEACHERS, fields: ['certificate_number'], mode: 'read', purpose: '教师招聘', legal_basis: '《教师资格条例》', duration_days: 30 });
    assertProblem(t, verifyOnly, 400, 'mode_not_offered');

    const noScope = await applyAs(app, s.catalogOnly, studentApplication());
    t.equal(assertProblem(t, noScope, 403, 'insufficient_scope').required_scope, 'applications:write');
    assertProblem(t, await app.inject({ method: 'POST', url: '/v1/applications', payload: studentApplication() }), 401, 'token_missing');
    const asProvider = await applyAs(app, s.edu, studentApplication());
    assertProblem(t, asProvider, 403, 'insufficient_scope');

    t.equal(await applicationCount(app), before, 'no refused application was stored');
  });

  t.test('SHARING_MAX_DURATION_DAYS bounds what may be asked for', async (t) => {
    s.setNow('2026-03-02T09:00:00Z');
    const bounded = await buildTestApp(t, driver, { database: s.database, clock: () => s.now(), env: { SHARING_MAX_DURATION_DAYS: '30' } });
    const over = await applyAs(bounded, s.psb, enterpriseApplication({ duration_days: 31 }));
    const body = assertProblem(t, over, 400, 'invalid_request');
    t.equal(body.errors[0].pointer, '/duration_days');
    t.match(body.errors[0].message, /30/);
    t.equal((await applyAs(bounded, s.psb, enterpriseApplication({ duration_days: 30 }))).statusCode, 201, 'the maximum itself is fine');
  });

  t.test('due dates count working days in China: weekends and listed holidays skipped', async (t) => {
    const clock = () => new Date('2026-03-06T02:00:00Z'); // Friday 10:00 CST
    const withHoliday = await buildTestApp(t, driver, { database: s.database, clock, env: { PUBLIC_HOLIDAYS: '2026-03-11' } });
    const response = await applyAs(withHoliday, s.hrss, studentApplication());
    t.equal(response.statusCode, 202);
    // Working days after Friday 6 March: Mon 9, Tue 10, (Wed 11 a holiday), Thu 12, Fri 13 (4);
    // Mon 16 – Fri 20 (9); Mon 23 (10). 10:00 CST that Monday is 02:00 UTC.
    t.equal(response.json().due_at, '2026-03-23T02:00:00.000Z');
    const plain = await buildTestApp(t, driver, { database: s.database, clock });
    t.equal((await applyAs(plain, s.hrss, studentApplication())).json().due_at, '2026-03-20T02:00:00.000Z', 'without the holiday: Friday 20 March');
  });

  t.test('decisions: only the provider or an admin, narrowing only, final', async (t) => {
    const appliedAt = s.setNow('2026-03-02T09:00:00Z');
    const pending = (await applyAs(app, s.psb, studentApplication({ duration_days: 90 }))).json();
    t.equal(pending.status, 'pending');
    t.equal(pending.created_at, appliedAt.toISOString());

    // Who may not decide.
    const consumerScope = await decideAs(app, s.psb, pending.id, { decision: 'approve' });
    assertProblem(t, consumerScope, 403, 'insufficient_scope');
    const consumerManager = await decideAs(app, s.psbManager, pending.id, { decision: 'approve' });
    t.match(assertProblem(t, consumerManager, 403, 'not_provider').detail, /330000-EDU-00001/);
    t.match(await auditOf(app, consumerManager), { action: 'application.decide', outcome: 'denied', reason: 'not_provider', resource: STUDENT, provider: 'zj-edu' });
    const otherProvider = await decideAs(app, s.amr, pending.id, { decision: 'approve' });
    assertProblem(t, otherProvider, 404, 'not_found');
    assertProblem(t, await app.inject({ url: `/v1/applications/${pending.id}`, headers: s.amr.headers }), 404, 'not_found');
    assertProblem(t, await app.inject({ url: `/v1/applications/${pending.id}`, headers: s.hrss.headers }), 404, 'not_found');
    assertProblem(t, await decideAs(app, s.supervisor, pending.id, { decision: 'approve' }), 403, 'insufficient_scope');

    // Widening is refused, naming what widens.
    const widerField = await decideAs(app, s.edu, pending.id, { decision: 'approve', fields: ['student_id', 'id_number'] });
    t.equal(assertProblem(t, widerField, 400, 'invalid_request').errors[0].pointer, '/fields/1');
    const longer = await decideAs(app, s.edu, pending.id, { decision: 'approve', duration_days: 91 });
    t.equal(assertProblem(t, longer, 400, 'invalid_request').errors[0].pointer, '/duration_days');
    const notAnItem = await decideAs(app, s.edu, pending.id, { decision: 'approve', fields: ['Student'] });
    t.equal(assertProblem(t, notAnItem, 400, 'invalid_request').errors[0].pointer, '/fields/0');
    t.equal((await app.db.select().from(applications).where(eq(applications.id, pending.id)))[0]?.status, 'pending', 'still pending');

    // The provider approves, narrowed, two days later.
    const decidedAt = s.setNow('2026-03-04T01:30:00Z');
    const approved = await decideAs(app, s.edu, pending.id, { decision: 'approve', fields: ['student_id', 'status'], duration_days: 30 });
    t.equal(approved.statusCode, 200);
    const body = approved.json();
    t.match(body, { id: pending.id, status: 'approved', decided_at: decidedAt.toISOString(), fields: ['student_id', 'name', 'school', 'status'], grant_id: /^gr_/ });
    const [grant] = await app.db.select().from(grants).where(eq(grants.id, body.grant_id));
    t.same(grant?.fields, ['student_id', 'status'], 'the grant holds the narrowed fields');
    t.equal(grant?.validFrom.toISOString(), decidedAt.toISOString());
    t.equal(grant?.validUntil.toISOString(), new Date(decidedAt.getTime() + 30 * DAY_MS).toISOString(), 'decision time + the shorter duration');
    t.equal(grant?.agency, 'zj-psb');
    t.equal(grant?.clientId, null, 'granted to the agency');
    const [row] = await app.db.select().from(applications).where(eq(applications.id, pending.id));
    t.equal(row?.decidedBy, s.edu.clientId);
    t.match(await auditOf(app, approved), { action: 'application.decide', outcome: 'allowed', status: 200, resource: STUDENT, provider: 'zj-edu', grantId: body.grant_id, fields: ['student_id', 'status'] });

    const listed = await app.inject({ url: `/v1/grants?resource=${STUDENT}`, headers: s.psb.headers });
    t.match(listed.json().items.find((g: { id: string }) => g.id === body.grant_id), { fields: ['student_id', 'status'], status: 'active', application_id: pending.id });

    // Final.
    const again = await decideAs(app, s.edu, pending.id, { decision: 'approve' });
    t.match(assertProblem(t, again, 409, 'already_decided').detail, /approved/);
    assertProblem(t, await decideAs(app, s.admin, pending.id, { decision: 'reject', reason: '重复' }), 409, 'already_decided');
    t.equal((await app.db.select().from(grants).where(eq(grants.applicationId, pending.id))).length, 1, 'still one grant');

    const unconditional = (await applyAs(app, s.psb, enterpriseApplication())).json();
    assertProblem(t, await decideAs(app, s.amr, unconditional.id, { decision: 'reject', reason: '不同意' }), 409, 'already_decided');
  });

  t.test('reject: a reason is required and kept; no grant', async (t) => {
    s.setNow('2026-03-02T09:00:00Z');
    const pending = (await applyAs(app, s.hrss, studentApplication())).json();
    const none = await decideAs(app, s.edu, pending.id, { decision: 'reject' });
    const missing = assertProblem(t, none, 400, 'invalid_request').errors as Array<{ pointer: string }>;
    t.ok(missing.some((e) => e.pointer === '/reason'), 'names /reason');
    const blank = await decideAs(app, s.edu, pending.id, { decision: 'reject', reason: '   ' });
    t.equal(assertProblem(t, blank, 400, 'invalid_request').errors[0].pointer, '/reason');
    const withFields = await decideAs(app, s.edu, pending.id, { decision: 'reject', reason: 'x', fields: ['name'] });
    assertProblem(t, withFields, 400, 'invalid_request');

    const rejected = await decideAs(app, s.edu, pending.id, { decision: 'reject', reason: ' 未说明具体事项 ' });
    t.equal(rejected.statusCode, 200);
    t.match(rejected.json(), { status: 'rejected', reason: '未说明具体事项' });
    t.notOk('grant_id' in rejected.json());
    t.same(await app.db.select().from(grants).where(eq(grants.applicationId, pending.id)), []);
    t.match((await app.inject({ url: `/v1/applications/${pending.id}`, headers: s.hrss.headers })).json(), { status: 'rejected', reason: '未说明具体事项' });
    t.match(await auditOf(app, rejected), { action: 'application.decide', outcome: 'allowed', resource: STUDENT, provider: 'zj-edu' });
    assertProblem(t, await decideAs(app, s.edu, pending.id, { decision: 'approve' }), 409, 'already_decided');
  });

  t.test('an administrator may decide for any provider', async (t) => {
    s.setNow('2026-03-02T09:00:00Z');
    const pending = (await applyAs(app, s.hrss, studentApplication({ mode: 'verify', fields: ['id_number', 'status'] }))).json();
    const approved = await decideAs(app, s.admin, pending.id, { decision: 'approve' });
    t.equal(approved.statusCode, 200);
    t.match(approved.json(), { status: 'approved', mode: 'verify', grant_id: /^gr_/ });
    const [grant] = await app.db.select().from(grants).where(eq(grants.id, approved.json().grant_id));
    t.same(grant?.fields, ['id_number', 'status'], 'no narrowing: what was applied for');
    t.equal(grant?.mode, 'verify');
    t.equal(grant?.validUntil.getTime(), s.now().getTime() + 90 * DAY_MS);
  });

  t.test('two decisions racing: exactly one wins, one grant', async (t) => {
    s.setNow('2026-03-02T09:00:00Z');
    for (let round = 0; round < 3; round++) {
      const pending = (await applyAs(app, s.psb, studentApplication())).json();
      const answers = await Promise.all([
        decideAs(app, s.edu, pending.id, { decision: 'approve' }),
        decideAs(app, s.admin, pending.id, { decision: 'approve', fields: ['name'] }),
      ]);
      t.same(answers.map((a) => a.statusCode).sort(), [200, 409], `round ${round}: one 200, one 409`);
      const loser = answers.find((a) => a.statusCode === 409);
      if (loser) assertProblem(t, loser, 409, 'already_decided');
      const rows = await app.db.select().from(grants).where(eq(grants.applicationId, pending.id));
      t.equal(rows.length, 1, 'exactly one grant row');
      const [row] = await app.db.select().from(applications).where(eq(applications.id, pending.id));
      t.equal(row?.grantId, rows[0]?.id, 'the application names the one grant');
    }
  });

  t.test('lists: consumer, provider, overdue, supervisor, paging', async (t) => {
    const appliedAt = s.setNow('2026-03-02T09:00:00Z');
    const mine = (await applyAs(app, s.hrss, studentApplication({ fields: ['name'] }))).json();
    const psbOwn = (await applyAs(app, s.psb, studentApplication({ fields: ['grade'] }))).json();
    const decided = (await applyAs(app, s.psb, studentApplication({ fields: ['school'] }))).json();
    t.equal((await decideAs(app, s.edu, decided.id, { decision: 'reject', reason: '不符合条件' })).statusCode, 200);

    const consumer = await app.inject({ url: '/v1/applications?limit=200', headers: s.hrss.headers });
    t.equal(consumer.statusCode, 200);
    const consumerItems = consumer.json().items as Array<{ id: string; agency: string }>;
    t.ok(consumerItems.some((a) => a.id === mine.id), 'the consumer sees its own');
    t.ok(consumerItems.every((a) => a.agency === 'zj-hrss'), 'and only its own');

    const provider = await app.inject({ url: '/v1/applications?role=provider&limit=200', headers: s.edu.headers });
    const providerItems = provider.json().items as Array<{ id: string; provider: string }>;
    t.ok(providerItems.some((a) => a.id === mine.id) && providerItems.some((a) => a.id === psbOwn.id), 'the provider sees those on its resources');
    t.ok(providerItems.every((a) => a.provider === 'zj-edu'));
    const amrProvider = (await app.inject({ url: '/v1/applications?role=provider&limit=200', headers: s.amr.headers })).json().items as Array<{ provider: string }>;
    t.ok(amrProvider.length > 0 && amrProvider.every((a) => a.provider === 'zj-amr'), 'another provider sees only its own resources');

    const pendingForEdu = (await app.inject({ url: '/v1/applications?role=provider&status=pending&limit=200', headers: s.edu.headers })).json().items as Array<{ status: string; id: string }>;
    t.ok(pendingForEdu.every((a) => a.status === 'pending'));
    t.notOk(pendingForEdu.some((a) => a.id === decided.id));

    // Nothing is overdue yet.
    const early = await app.inject({ url: '/v1/applications?overdue=true&limit=200', headers: s.supervisor.headers });
    t.same(early.json().items, [], 'nothing is past due on the day of application');

    // Twenty days later, every application still pending from 2 March is past its due date.
    const later = s.setNow(new Date(appliedAt.getTime() + 20 * DAY_MS).toISOString());
    const fresh = (await applyAs(app, s.hrss, studentApplication({ fields: ['status'] }))).json();
    const overdue = await app.inject({ url: '/v1/applications?overdue=true&limit=200', headers: s.supervisor.headers });
    t.equal(overdue.statusCode, 200);
    const overdueItems = overdue.json().items as Array<{ id: string; agency: string; status: string; due_at: string; overdue: boolean }>;
    t.ok(overdueItems.some((a) => a.id === mine.id) && overdueItems.some((a) => a.id === psbOwn.id), 'the supervisor sees every agency’s overdue application');
    t.ok(new Set(overdueItems.map((a) => a.agency)).size >= 2, 'across agencies');
    t.ok(overdueItems.every((a) => a.status === 'pending' && a.overdue === true && new Date(a.due_at) < later), 'only pending and past due');
    t.notOk(overdueItems.some((a) => a.id === fresh.id || a.id === decided.id), 'not the fresh one, not the decided one');
    t.match((await app.inject({ url: `/v1/applications/${mine.id}`, headers: s.hrss.headers })).json(), { overdue: true, status: 'pending' });

    const everything = (await app.inject({ url: '/v1/applications?limit=200', headers: s.supervisor.headers })).json().items as Array<{ agency: string }>;
    t.ok(new Set(everything.map((a) => a.agency)).size >= 2, 'the supervisor sees all agencies, not only overdue');

    const hrssOverdue = (await app.inject({ url: '/v1/applications?overdue=true&limit=200', headers: s.hrss.headers })).json().items as Array<{ agency: string; id: string }>;
    t.ok(hrssOverdue.some((a) => a.id === mine.id));
    t.ok(hrssOverdue.every((a) => a.agency === 'zj-hrss'), 'a consumer’s overdue list is its own');
    const eduOverdue = (await app.inject({ url: '/v1/applications?role=provider&overdue=true&limit=200', headers: s.edu.headers })).json().items as Array<{ id: string }>;
    t.ok(eduOverdue.some((a) => a.id === mine.id) && eduOverdue.some((a) => a.id === psbOwn.id), 'the provider sees what it is late on');

    // A supervisor agency without audit:read is an ordinary agency.
    const statsManager = await party(app, 'zj-stats', ['grants:manage']);
    const ordinary = (await app.inject({ url: '/v1/applications?limit=200', headers: statsManager.headers })).json().items as Array<{ agency: string; provider: string }>;
    t.ok(ordinary.every((a) => a.agency === 'zj-stats' || a.provider === 'zj-stats'));
    assertProblem(t, await app.inject({ url: '/v1/applications', headers: s.catalogOnly.headers }), 403, 'insufficient_scope');

    // Paging: limit=1, following Link, gives every item once, newest first.
    const all = (await app.inject({ url: '/v1/applications?role=provider&limit=200', headers: s.edu.headers })).json().items as Array<{ id: string }>;
    const paged = await allPages(t, app, '/v1/applications?role=provider&limit=1', s.edu, 1);
    t.same(paged.ids, all.map((a) => a.id), 'the same items in the same order');
    t.equal(paged.pages, all.length);
    t.equal(new Set(paged.ids).size, paged.ids.length, 'no item twice');
    const grantsAll = (await app.inject({ url: '/v1/grants?limit=200', headers: s.psb.headers })).json().items as Array<{ id: string }>;
    t.ok(grantsAll.length >= 2);
    t.same((await allPages(t, app, '/v1/grants?limit=1', s.psb, 1)).ids, grantsAll.map((g) => g.id), 'grants page the same way');
    assertProblem(t, await app.inject({ url: '/v1/applications?cursor=bm9wZQ', headers: s.edu.headers }), 400, 'invalid_cursor');
  });

  t.test('revocation: provider or admin, once; others refused', async (t) => {
    const grantedAt = s.setNow('2026-03-02T09:00:00Z');
    const first = (await applyAs(app, s.psb, enterpriseApplication())).json();
    const second = (await applyAs(app, s.hrss, enterpriseApplication())).json();

    assertProblem(t, await revokeAs(app, s.psb, first.grant_id), 403, 'insufficient_scope');
    t.match(assertProblem(t, await revokeAs(app, s.psbManager, first.grant_id), 403, 'not_provider').detail, /330000-AMR-00001/);
    assertProblem(t, await revokeAs(app, s.edu, first.grant_id), 404, 'not_found');
    assertProblem(t, await revokeAs(app, s.amr, 'gr_nothing'), 404, 'not_found');
    t.equal((await app.db.select().from(grants).where(eq(grants.id, first.grant_id)))[0]?.revokedAt, null, 'still in force');

    const revokedAt = s.setNow(new Date(grantedAt.getTime() + 3_600_000).toISOString());
    const revoked = await revokeAs(app, s.amr, first.grant_id);
    t.equal(revoked.statusCode, 200);
    t.match(revoked.json(), { id: first.grant_id, status: 'revoked', revoked_at: revokedAt.toISOString() });
    const [row] = await app.db.select().from(grants).where(eq(grants.id, first.grant_id));
    t.equal(row?.revokedBy, s.amr.clientId);
    t.match(await auditOf(app, revoked), { action: 'grant.revoke', outcome: 'allowed', status: 200, resource: ENTERPRISE, provider: 'zj-amr', grantId: first.grant_id });

    s.setNow(new Date(grantedAt.getTime() + 7_200_000).toISOString());
    const again = await revokeAs(app, s.amr, first.grant_id);
    t.equal(again.statusCode, 200, 'revoking again is fine');
    t.equal(again.json().revoked_at, revokedAt.toISOString(), 'and changes nothing');
    t.equal((await app.db.select().from(grants).where(eq(grants.id, first.grant_id)))[0]?.revokedBy, s.amr.clientId);

    const byAdmin = await revokeAs(app, s.admin, second.grant_id);
    t.equal(byAdmin.statusCode, 200);
    t.equal(byAdmin.json().status, 'revoked');

    const listed = (await app.inject({ url: `/v1/grants?status=revoked&limit=200`, headers: s.psb.headers })).json().items as Array<{ id: string }>;
    t.ok(listed.some((g) => g.id === first.grant_id), 'listed as revoked');
    const active = (await app.inject({ url: `/v1/grants?status=active&limit=200`, headers: s.psb.headers })).json().items as Array<{ id: string }>;
    t.notOk(active.some((g) => g.id === first.grant_id), 'no longer active');
  });

  t.test('grants expire by themselves', async (t) => {
    const grantedAt = s.setNow('2026-03-02T09:00:00Z');
    const granted = (await applyAs(app, s.hrss, enterpriseApplication({ duration_days: 1 }))).json();
    s.setNow(new Date(grantedAt.getTime() + DAY_MS).toISOString());
    const expired = (await app.inject({ url: `/v1/grants?status=expired&limit=200`, headers: s.hrss.headers })).json().items as Array<{ id: string; status: string }>;
    t.match(expired.find((g) => g.id === granted.grant_id), { status: 'expired' });
    const active = (await app.inject({ url: `/v1/grants?status=active&limit=200`, headers: s.hrss.headers })).json().items as Array<{ id: string }>;
    t.notOk(active.some((g) => g.id === granted.grant_id));
  });
});
