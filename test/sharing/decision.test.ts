import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { sql } from 'drizzle-orm';
import type { App } from '../../src/app.js';
import { findResource, type Resource } from '../../src/catalog/index.js';
import { openDatabase, type Database, type Driver } from '../../src/db/index.js';
import { grants } from '../../src/db/schema.js';
import { addWorkingDays, calendarFrom, GrantCache, type Decision } from '../../src/sharing/index.js';
import { buildTestApp, forEachDriver, freshDatabase, freshDatabaseUrl } from '../helpers/app.js';
import { party, type Party } from '../helpers/parties.js';

const DAY_MS = 86_400_000;
const STUDENT = '330000-EDU-00001'; // zj-edu, conditional
const ENTERPRISE = '330000-AMR-00001'; // zj-amr, unconditional
const SURVEY_MAPS = '330000-NR-00003'; // zj-nr, sharing none



async function resource(app: App, code: string): Promise<Resource> {
  const stored = await findResource(app.db, code);
  if (!stored) throw new Error(`${code} is not in the catalog`);
  return stored.document;
}

/** Apply through the API; when `approveAs` is given, the provider approves it as applied for. */
async function grantThroughApi(app: App, consumer: Party, body: Record<string, unknown>, approveAs?: Party) {
  const applied = await app.inject({ method: 'POST', url: '/v1/applications', headers: consumer.headers, payload: body });
  if (applied.statusCode === 201) return applied.json().grant_id as string;
  if (applied.statusCode !== 202 || !approveAs) throw new Error(`apply: ${applied.statusCode} ${applied.body}`);
  const decided = await app.inject({
    method: 'POST',
    url: `/v1/applications/${applied.json().id as string}/decision`,
    headers: approveAs.headers,
    payload: { decision: 'approve' },
  });
  if (decided.statusCode !== 200) throw new Error(`decide: ${decided.statusCode} ${decided.body}`);
  return decided.json().grant_id as string;
}

const studentApplication = (fields: string[], mode: 'read' | 'verify', duration_days = 30) => ({
  resource: STUDENT,
  fields,
  mode,
  purpose: '学生资助资格审核',
  legal_basis: '《学生资助资金管理办法》',
  duration_days,
});

const denied = (reason: string) => ({ allow: false, fields: [], reason });

forEachDriver(t, 'decision point', async (t: Test, driver: Driver) => {
  const database = await freshDatabase(t, driver);
  let now = new Date('2026-03-02T09:00:00Z');
  const app = await buildTestApp(t, driver, { database, clock: () => new Date(now) });
  const psb = await party(app, 'zj-psb', ['applications:write', 'records:read']);
  const psbOther = await party(app, 'zj-psb', ['records:read']);
  const hrss = await party(app, 'zj-hrss', ['applications:write', 'records:verify']);
  const ca = await party(app, 'zj-ca', ['applications:write', 'records:read']);
  const edu = await party(app, 'zj-edu', ['grants:manage']);
  const student = await resource(app, STUDENT);
  const enterprise = await resource(app, ENTERPRISE);
  const surveyMaps = await resource(app, SURVEY_MAPS);

  t.test('sharing_not_allowed: a none resource is never shared, grant or not', async (t) => {
    t.same(app.decide({ caller: psb.caller, resource: surveyMaps, act: 'read' }), denied('sharing_not_allowed'));
    t.same(app.decide({ caller: psb.caller, resource: surveyMaps, act: 'verify', fields: ['sheet_number'] }), denied('sharing_not_allowed'));
  });

  t.test('grant_missing: no grant, or a pending application, gives nothing', async (t) => {
    now = new Date('2026-03-02T09:00:00Z');
    t.same(app.decide({ caller: psb.caller, resource: student, act: 'read', fields: ['name'] }), denied('grant_missing'));
    const pending = await app.inject({ method: 'POST', url: '/v1/applications', headers: psb.headers, payload: studentApplication(['name'], 'read') });
    t.equal(pending.statusCode, 202);
    t.same(app.decide({ caller: psb.caller, resource: student, act: 'read', fields: ['name'] }), denied('grant_missing'), 'pending is not granted');
    t.same(app.decide({ caller: psb.caller, resource: enterprise, act: 'read' }), denied('grant_missing'), 'a grant is per resource');
  });

  t.test('a read grant: allow, fields cut to what was asked, the grant named; read covers verify', async (t) => {
    now = new Date('2026-03-02T09:00:00Z');
    const grantId = await grantThroughApi(app, psb, studentApplication(['student_id', 'name', 'status'], 'read'), edu);

    const asked: Decision = app.decide({ caller: psb.caller, resource: student, act: 'read', fields: ['status', 'name'] });
    t.equal(asked.allow, true);
    t.same(asked.fields, ['status', 'name'], 'what was asked, not the whole grant');
    t.equal(asked.grant?.id, grantId);
    t.equal(asked.reason, undefined);

    const all = app.decide({ caller: psb.caller, resource: student, act: 'query' });
    t.match(all, { allow: true, fields: ['student_id', 'name', 'status'] }, 'nothing asked: all that is granted');
    t.match(app.decide({ caller: psb.caller, resource: student, act: 'verify', fields: ['student_id'] }), { allow: true, fields: ['student_id'] }, 'read covers verify');
    t.same(app.decide({ caller: psbOther.caller, resource: student, act: 'read', fields: ['name'] }).allow, true, 'an agency grant serves every client of the agency');

    t.same(app.decide({ caller: psb.caller, resource: student, act: 'read', fields: ['name', 'id_number'] }), denied('field_not_granted'));
    t.same(app.decide({ caller: psb.caller, resource: student, act: 'verify', fields: ['school'] }), denied('field_not_granted'));
    t.same(app.decide({ caller: hrss.caller, resource: student, act: 'read', fields: ['name'] }), denied('grant_missing'), 'another agency has nothing');
  });

  t.test('mode_not_granted: a verify grant does not read or query', async (t) => {
    now = new Date('2026-03-02T09:00:00Z');
    const grantId = await grantThroughApi(app, hrss, studentApplication(['id_number', 'status'], 'verify'), edu);
    t.same(app.decide({ caller: hrss.caller, resource: student, act: 'read', fields: ['status'] }), denied('mode_not_granted'));
    t.same(app.decide({ caller: hrss.caller, resource: student, act: 'query' }), denied('mode_not_granted'));
    t.match(app.decide({ caller: hrss.caller, resource: student, act: 'verify', fields: ['id_number'] }), { allow: true, fields: ['id_number'], grant: { id: grantId, mode: 'verify' } });
    t.same(app.decide({ caller: hrss.caller, resource: student, act: 'verify', fields: ['name'] }), denied('field_not_granted'));
  });

  t.test('grant_expired: access stops at the millisecond the grant ends', async (t) => {
    const grantedAt = new Date('2026-03-02T09:00:00Z');
    now = grantedAt;
    const grantId = await grantThroughApi(app, ca, { resource: ENTERPRISE, fields: ['uscc', 'name'], mode: 'read', purpose: '婚姻登记核查', legal_basis: '《婚姻登记条例》', duration_days: 7 });
    const validUntil = grantedAt.getTime() + 7 * DAY_MS;
    const [row] = (await app.db.select().from(grants)).filter((g) => g.id === grantId);
    t.equal(row?.validUntil.getTime(), validUntil);

    now = new Date(validUntil - 1);
    t.match(app.decide({ caller: ca.caller, resource: enterprise, act: 'read', fields: ['uscc'] }), { allow: true, grant: { id: grantId } }, '1 ms before the end: allowed');
    now = new Date(validUntil);
    t.same(app.decide({ caller: ca.caller, resource: enterprise, act: 'read', fields: ['uscc'] }), denied('grant_expired'), 'at the end: expired');
    now = new Date(validUntil + 30 * DAY_MS);
    t.same(app.decide({ caller: ca.caller, resource: enterprise, act: 'read' }), denied('grant_expired'), 'long after: still explained as expired');
    now = new Date(grantedAt.getTime() - 1);
    t.same(app.decide({ caller: ca.caller, resource: enterprise, act: 'read' }), denied('grant_missing'), 'before it begins there is no grant');

    // A fresh grant after expiry is used, whatever the old one says.
    now = new Date(validUntil + DAY_MS);
    const renewed = await grantThroughApi(app, ca, { resource: ENTERPRISE, fields: ['uscc'], mode: 'read', purpose: '续期', legal_basis: '《婚姻登记条例》', duration_days: 7 });
    t.match(app.decide({ caller: ca.caller, resource: enterprise, act: 'read' }), { allow: true, fields: ['uscc'], grant: { id: renewed } });
    now = new Date('2026-03-02T09:00:00Z');
  });

  t.test('a grant for one client is not used by another client of the same agency', async (t) => {
    now = new Date('2026-03-02T09:00:00Z');
    const nr = await party(app, 'zj-nr', ['records:read']);
    const nrOther = await party(app, 'zj-nr', ['records:read']);
    const id = `gr_client_only_${driver}`;
    await app.db.insert(grants).values({
      id,
      agency: 'zj-nr',
      clientId: nr.caller.clientId,
      resource: ENTERPRISE,
      provider: 'zj-amr',
      fields: ['uscc', 'name'],
      mode: 'read',
      purpose: '不动产登记核查',
      legalBasis: '《不动产登记暂行条例》',
      applicationId: 'ap_inserted_by_test',
      validFrom: now,
      validUntil: new Date(now.getTime() + 30 * DAY_MS),
    });
    await app.grants.changed(id);
    t.match(app.decide({ caller: nr.caller, resource: enterprise, act: 'read', fields: ['uscc'] }), { allow: true, grant: { id, clientId: nr.caller.clientId } }, 'the named client');
    t.same(app.decide({ caller: nrOther.caller, resource: enterprise, act: 'read', fields: ['uscc'] }), denied('grant_missing'), 'another client of zj-nr');

    const listed = await app.inject({ url: `/v1/grants?resource=${ENTERPRISE}`, headers: (await party(app, 'zj-nr', ['grants:manage'])).headers });
    t.match(listed.json().items.find((g: { id: string }) => g.id === id), { client_id: nr.caller.clientId }, 'the grant view names its client');
  });

  t.test('revocation through the API takes effect at once on this instance', async (t) => {
    now = new Date('2026-03-02T09:00:00Z');
    const amr = await party(app, 'zj-amr', ['grants:manage']);
    const env = await party(app, 'zj-env', ['applications:write']);
    const grantId = await grantThroughApi(app, env, { resource: ENTERPRISE, fields: ['uscc'], mode: 'verify', purpose: '排污许可核查', legal_basis: '《排污许可管理条例》', duration_days: 30 });
    t.equal(app.decide({ caller: env.caller, resource: enterprise, act: 'verify' }).allow, true);
    const revoked = await app.inject({ method: 'DELETE', url: `/v1/grants/${grantId}`, headers: amr.headers });
    t.equal(revoked.statusCode, 200);
    t.same(app.decide({ caller: env.caller, resource: enterprise, act: 'verify' }), denied('grant_missing'), 'no wait on the instance that revoked');
  });
});

forEachDriver(t, 'revocation reaches a second instance within 1 s', async (t, driver) => {
  const url = await freshDatabaseUrl(driver);
  const first = await openDatabase(url);
  t.teardown(() => first.close());
  await first.migrate();
  // PGlite is one instance per process: both apps share it. PostgreSQL: a pool each, as two servers would.
  const second = driver === 'pglite' ? first : await openDatabase(url);
  if (second !== first) t.teardown(() => second.close());
  const a = await buildTestApp(t, driver, { database: first });
  const b = await buildTestApp(t, driver, { database: second });
  const consumer = await party(a, 'zj-psb', ['applications:write', 'records:read']);
  const provider = await party(a, 'zj-amr', ['grants:manage']);
  const enterprise = await resource(b, ENTERPRISE);
  const decideOnB = () => b.decide({ caller: consumer.caller, resource: enterprise, act: 'read', fields: ['uscc'] });

  /** Poll B until `done` holds or a second has passed. */
  const within = async (done: (decision: Decision) => boolean) => {
    const started = Date.now();
    let decision = decideOnB();
    while (!done(decision) && Date.now() - started < 1000) {
      await sleep(10);
      decision = decideOnB();
    }
    return { decision, ms: Date.now() - started };
  };

  const grantId = await grantThroughApi(a, consumer, { resource: ENTERPRISE, fields: ['uscc', 'name'], mode: 'read', purpose: '企业资质核查', legal_basis: '《市场主体登记管理条例》', duration_days: 30 });
  const granted = await within((d) => d.allow);
  t.equal(granted.decision.allow, true, `B allows after ${granted.ms} ms (the new grant reached it)`);
  t.equal(granted.decision.grant?.id, grantId);

  const revoked = await a.inject({ method: 'DELETE', url: `/v1/grants/${grantId}`, headers: provider.headers });
  t.equal(revoked.statusCode, 200);
  const refused = await within((d) => !d.allow);
  t.equal(refused.decision.allow, false, `B denies ${refused.ms} ms after the revocation on A`);
  t.equal(refused.decision.reason, 'grant_missing', `reason grant_missing after ${refused.ms} ms`);
  t.ok(refused.ms <= 1000, `within 1000 ms (took ${refused.ms} ms)`);
});

/**
 * The database as a cache on a slow link sees it: after `slowNextRead(ms)`, the next read runs at
 * once (its snapshot is taken then) but its rows arrive `ms` later, as a large grants table or a
 * busy server makes them. The promise it returns settles once that read has run. Every other
 * read and write is untouched.
 */
function slowReads(database: Database) {
  let pending: { ms: number; ran: () => void } | undefined;
  const delayed = <T extends object>(builder: T, ms: number, ran: () => void): T =>
    new Proxy(builder, {
      get(target, property, receiver) {
        if (property === 'then') {
          const rows = Promise.resolve(target as unknown as PromiseLike<unknown>).then(async (value) => {
            ran();
            await sleep(ms);
            return value;
          });
          return rows.then.bind(rows);
        }
        const value: unknown = Reflect.get(target, property, receiver);
        return typeof value === 'function' ? (...args: unknown[]) => delayed(value.apply(target, args) as object, ms, ran) : value;
      },
    });
  const db = new Proxy(database.db, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver);
      if (property !== 'select' || !pending || typeof value !== 'function') return value;
      const { ms, ran } = pending;
      pending = undefined;
      return (...args: unknown[]) => delayed(value.apply(target, args) as object, ms, ran);
    },
  });
  return {
    database: { ...database, db } as Database,
    slowNextRead(ms: number): Promise<void> {
      return new Promise((ran) => {
        pending = { ms, ran };
      });
    },
  };
}

/**
 * An instance's copy of the grants must never go back to an older state than one it has seen: a
 * read that began before a revocation and ends after it must not bring the revoked grant back.
 * Here another instance's cache listens to the same database, and one of its reads is slow.
 */
forEachDriver(t, 'a slow read does not bring back a grant revoked meanwhile', async (t, driver) => {
  const database = await freshDatabase(t, driver);
  const app = await buildTestApp(t, driver, { database });
  const provider = await party(app, 'zj-amr', ['grants:manage']);
  const enterprise = await resource(app, ENTERPRISE);
  const { database: slow, slowNextRead } = slowReads(database);
  const cache = new GrantCache(slow);
  await cache.start();
  t.teardown(() => cache.stop());
  const application = { resource: ENTERPRISE, fields: ['uscc'], mode: 'read', purpose: '企业资质核查', legal_basis: '《市场主体登记管理条例》', duration_days: 30 };
  const revoke = async (t: Test, grantId: string) =>
    t.equal((await app.inject({ method: 'DELETE', url: `/v1/grants/${grantId}`, headers: provider.headers })).statusCode, 200, 'revoked on the first instance');

  // The safety-net reload (every 30 s) reads every grant, then replaces the whole copy.
  t.test('a reload under way while a grant is revoked', async (t) => {
    const consumer = await party(app, 'zj-psb', ['applications:write', 'records:read']);
    const decide = () => cache.decide({ caller: consumer.caller, resource: enterprise, act: 'read', fields: ['uscc'], now: new Date() });
    const grantId = await grantThroughApi(app, consumer, application);
    const started = Date.now();
    while (!decide().allow && Date.now() - started < 1000) await sleep(5);
    t.equal(decide().allow, true, 'the other instance allows the grant');

    const read = slowNextRead(500);
    let reloaded = false;
    const reloading = cache.reload().then(() => {
      reloaded = true;
    });
    await read;
    await revoke(t, grantId);
    const revokedAt = Date.now();
    while (decide().allow && Date.now() - revokedAt < 400) await sleep(5);
    t.same(decide(), { allow: false, fields: [], reason: 'grant_missing' }, `revocation applied ${Date.now() - revokedAt} ms after the DELETE`);
    t.notOk(reloaded, 'precondition: the reload was still reading when the revocation arrived');
    await reloading;
    t.same(decide(), { allow: false, fields: [], reason: 'grant_missing' }, 'still denied once the reload that began before the revocation has ended');
  });

  // The NOTIFY of a new grant starts a read of that grant; its revocation follows at once.
  t.test('a grant revoked while the read of its creation is under way', async (t) => {
    const consumer = await party(app, 'zj-hrss', ['applications:write', 'records:read']);
    const decide = () => cache.decide({ caller: consumer.caller, resource: enterprise, act: 'read', fields: ['uscc'], now: new Date() });
    const read = slowNextRead(500);
    const grantId = await grantThroughApi(app, consumer, application);
    await read;
    t.equal(decide().allow, false, 'the other instance has not seen the grant yet');
    await revoke(t, grantId);
    await sleep(700);
    t.same(decide(), { allow: false, fields: [], reason: 'grant_missing' }, 'the late read of the creation does not resurrect the revoked grant');
  });
});

/**
 * Expired grants stay in the cache (they explain a denial as grant_expired), so an agency's list
 * grows with its history, and every instance reloads it every 30 s. The reload must stay linear:
 * building it blocks the event loop, and every request of the instance (and every NOTIFY of a
 * revocation) waits meanwhile.
 */
forEachDriver(t, 'a long grant history reloads in linear time', async (t, driver) => {
  const database = await freshDatabase(t, driver);
  const app = await buildTestApp(t, driver, { database });
  const psb = await party(app, 'zj-psb', ['records:read']);
  const penalties = await resource(app, '330000-AMR-00002');
  const history = 40_000;
  await app.db.execute(sql`
    insert into grants (id, agency, resource, provider, fields, mode, purpose, legal_basis, application_id, valid_from, valid_until)
    select 'gr_past_' || i, 'zj-psb', '330000-AMR-00002', 'zj-amr', array['decision_number', 'party_name'], 'read',
           '历史授权', '《行政处罚法》', 'ap_past_' || i, timestamptz '2024-01-01', timestamptz '2025-01-01'
    from generate_series(1, ${history}) i`);
  const started = performance.now();
  await app.grants.reload();
  const ms = Math.round(performance.now() - started);
  // Reading 40 000 rows takes about 0.3 s on PostgreSQL and 1.2 s on PGlite; quadratic list
  // building adds seconds on top (about 10 s here).
  t.ok(ms < 4000, `${history} grants of one agency reload in ${ms} ms, the event loop blocked meanwhile (want < 4000 ms)`);
  t.same(app.decide({ caller: psb.caller, resource: penalties, act: 'read' }), { allow: false, fields: [], reason: 'grant_expired' }, 'the history explains the denial');
});

t.test('working days (addWorkingDays, calendarFrom)', async (t) => {
  const none = calendarFrom('', '');
  // 2026-03-06 is a Friday. 10:00 in China is 02:00 UTC.
  const friday = new Date('2026-03-06T02:00:00Z');

  t.test('weekends do not count', async (t) => {
    t.equal(addWorkingDays(friday, 1, none).toISOString(), '2026-03-09T02:00:00.000Z', 'Friday + 1 = Monday');
    t.equal(addWorkingDays(friday, 5, none).toISOString(), '2026-03-13T02:00:00.000Z', 'Friday + 5 = next Friday');
    t.equal(addWorkingDays(friday, 10, none).toISOString(), '2026-03-20T02:00:00.000Z', 'two weekends skipped');
    t.equal(addWorkingDays(new Date('2026-03-07T02:00:00Z'), 1, none).toISOString(), '2026-03-09T02:00:00.000Z', 'from a Saturday: Monday');
    t.equal(addWorkingDays(friday, 0, none).toISOString(), friday.toISOString(), 'zero days: the same moment');
  });

  t.test('listed holidays do not count', async (t) => {
    const calendar = calendarFrom('2026-03-09,2026-03-10', '');
    t.equal(addWorkingDays(friday, 1, calendar).toISOString(), '2026-03-11T02:00:00.000Z', 'Monday and Tuesday off: Wednesday');
    t.equal(addWorkingDays(friday, 10, calendar).toISOString(), '2026-03-24T02:00:00.000Z', 'the window grows by the two holidays');
    t.equal(addWorkingDays(friday, 1, calendarFrom('2026-03-08', '')).toISOString(), '2026-03-09T02:00:00.000Z', 'a holiday on a Sunday changes nothing');
  });

  t.test('a make-up working Saturday (调休) counts', async (t) => {
    const calendar = calendarFrom('', '2026-03-07');
    t.equal(addWorkingDays(friday, 1, calendar).toISOString(), '2026-03-07T02:00:00.000Z', 'Friday + 1 = the make-up Saturday');
    t.equal(addWorkingDays(friday, 2, calendar).toISOString(), '2026-03-09T02:00:00.000Z', 'then Monday');
    // A holiday week paid back by a Saturday: Mon–Wed off, Saturday before worked.
    const festival = calendarFrom('2026-03-09,2026-03-10,2026-03-11', '2026-03-07');
    t.equal(addWorkingDays(friday, 2, festival).toISOString(), '2026-03-12T02:00:00.000Z');
  });

  t.test('the time of day is kept', async (t) => {
    const odd = new Date('2026-03-03T07:17:23.456Z'); // Tuesday 15:17:23.456 CST
    t.equal(addWorkingDays(odd, 3, none).toISOString(), '2026-03-06T07:17:23.456Z');
    t.equal(addWorkingDays(odd, 4, none).toISOString(), '2026-03-09T07:17:23.456Z');
  });

  t.test('days are counted in China Standard Time (UTC+8)', async (t) => {
    // Friday 20:00 UTC is Saturday 04:00 in China: the next working day is Monday (04:00 CST,
    // Sunday 20:00 UTC), not Monday UTC (which would be Tuesday in China).
    const fridayEvening = new Date('2026-03-06T20:00:00Z');
    t.equal(addWorkingDays(fridayEvening, 1, none).toISOString(), '2026-03-08T20:00:00.000Z');
    // Sunday 17:00 UTC is Monday 01:00 in China: one working day later is Tuesday 01:00 CST.
    t.equal(addWorkingDays(new Date('2026-03-08T17:00:00Z'), 1, none).toISOString(), '2026-03-09T17:00:00.000Z');
    // Holidays are China dates: Monday 9 March off, seen from Saturday 04:00 CST, gives Tuesday.
    t.equal(addWorkingDays(fridayEvening, 1, calendarFrom('2026-03-09', '')).toISOString(), '2026-03-09T20:00:00.000Z');
    // Thursday 16:00 UTC is Friday 00:00 in China: + 1 is Monday 00:00 CST (Sunday 16:00 UTC).
    t.equal(addWorkingDays(new Date('2026-03-05T16:00:00Z'), 1, none).toISOString(), '2026-03-08T16:00:00.000Z');
  });

  t.test('calendarFrom reads comma-separated lists, tolerating spaces and empties', async (t) => {
    const calendar = calendarFrom(' 2026-03-09 , ,2026-03-10,', '2026-03-07');
    t.same([...calendar.holidays], ['2026-03-09', '2026-03-10']);
    t.same([...calendar.makeupDays], ['2026-03-07']);
    t.equal(calendarFrom('', '').holidays.size, 0);
  });
});
