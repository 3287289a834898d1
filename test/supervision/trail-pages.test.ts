import t, { type Test } from 'tap';
import * as cheerio from 'cheerio';
import { parse } from 'csv-parse/sync';
import { and, eq } from 'drizzle-orm';
import { EVENT_COLUMNS } from '../../src/audit/trail.js';
import { auditEvents, auditVerifications } from '../../src/db/schema.js';
import { catalogueKeys } from '../../src/portal/i18n.js';
import { freshDatabase, testDrivers } from '../helpers/app.js';
import { CookieJar, csrfOf, location, peopleGateway, type PeopleGateway } from '../helpers/people.js';

t.setTimeout(600_000);

const MINUTE = 60_000;
/** What a datetime-local input in China sends for an instant. */
const chinaLocal = (instant: number) => new Date(instant + 8 * 3_600_000).toISOString().slice(0, 19);
const keys = catalogueKeys('zh-Hans');

/** A page as a person sees it: its status, its document, the ids of the events its table lists. */
async function page(t: Test, gateway: PeopleGateway, jar: CookieJar, path: string, status = 200, headers: Record<string, string> = {}) {
  const response = await gateway.visit(jar, path, { headers });
  t.equal(response.status, status, `${path}: ${status}`);
  const html = await response.text();
  const $ = cheerio.load(html);
  const raw = keys.filter((key) => $('body').text().includes(key));
  t.same(raw, [], 'no catalogue key shown instead of its text');
  const rows = $('tr[data-event]').map((_i, row) => $(row).attr('data-event') as string).get();
  return { response, html, $, rows };
}

for (const driver of testDrivers()) {
  t.test(`the trail's pages for officials [${driver}]`, async (t) => {
    const database = await freshDatabase(t, driver);
    const gateway = await peopleGateway(t, driver, { database, env: { SUPERVISOR_AGENCIES: 'zj-dsj', RATE_LIMIT_ANONYMOUS_PER_MINUTE: '100000' } });
    const app = gateway.app;
    const now = Date.now();
    const at = (minutesAgo: number) => new Date(now - minutesAgo * MINUTE).toISOString();
    const person = app.subjectRef('331022201110043439');

    // Exchanges between agencies, as the trail has them: who called, whose resource, how it went.
    const hrssUsesEdu = await app.audit.record({
      action: 'records.read', outcome: 'allowed', status: 200, agency: 'zj-hrss', client_id: 'hrss-system', resource: '330000-EDU-00001', provider: 'zj-edu',
      purpose: '就业补贴资格审核', legal_basis: '《浙江省公共数据条例》', fields: ['student_id', 'name'], subject_refs: [person], row_count: 1, latency_ms: 12.5, occurred_at: at(10),
    });
    const nrUsesEdu = await app.audit.record({
      action: 'records.query', outcome: 'allowed', status: 200, agency: 'zj-nr', resource: '330000-EDU-00002', provider: 'zj-edu', latency_ms: 30, occurred_at: at(9),
    });
    const psbRefused = await app.audit.record({
      action: 'records.read', outcome: 'denied', status: 403, reason: 'grant_missing', agency: 'zj-psb', resource: '330000-PSB-00001', provider: 'zj-psb', occurred_at: at(8),
    });
    const hrssFailed = await app.audit.record({
      action: 'records.verify', outcome: 'error', status: 500, reason: 'internal', agency: 'zj-hrss', resource: '330000-AMR-00001', provider: 'zj-amr', occurred_at: at(7),
    });
    const ours = [hrssUsesEdu, nrUsesEdu, psbRefused, hrssFailed];
    const only = (rows: string[]) => rows.filter((id) => ours.includes(id));

    const supervisor = await gateway.signIn('supervisor');
    const provider = await gateway.signIn('provider');
    const consumer = await gateway.signIn('consumer');

    await t.test('the supervisor sees every event, with the chain card on top', async (t) => {
      const { $, rows } = await page(t, gateway, supervisor, '/supervision/events');
      t.same(only(rows), [hrssFailed, psbRefused, nrUsesEdu, hrssUsesEdu], 'all of them, newest first');
      t.equal($('h1').text(), '审计记录');
      t.equal($('nav.tabs a[aria-current]').attr('href'), '/supervision/events', 'the tab of the trail');
      t.ok($('.chain-status').length === 1 && $('.chain-status').index() < $('#events-form').index(), 'the chain card before the filters');
      const row = $(`tr[data-event="${psbRefused}"]`);
      const cells = row.find('td').map((_i, cell) => $(cell).text().trim()).get();
      t.match(cells, [/zj-psb/, /330000-PSB-00001/, 'records.read', '拒绝', '403', 'grant_missing', '—']);
      t.match(row.find('time').attr('datetime'), at(8));
      t.equal($('#events-agency option[value="zj-nr"]').length, 1, 'the agencies of the trail are choices');
      t.equal($('#events-resource option[value="330000-EDU-00001"]').length, 1, 'so are its resources');
      t.equal($('#events-action option[value="records.verify"]').length, 1, 'and actions');
      t.equal($('#events-form').attr('hx-target'), '#events-results');
      t.equal($('#events-form').attr('method'), 'get', 'a plain form without JavaScript');
    });

    await t.test('a provider official sees the uses of its resources', async (t) => {
      const { rows, $ } = await page(t, gateway, provider, '/supervision/events');
      t.same(only(rows), [nrUsesEdu, hrssUsesEdu]);
      t.equal($('#events-agency option[value="zj-psb"]').length, 0, 'no choice outside the scope');
    });

    await t.test('a consumer official sees only its own calls, whatever the URL says', async (t) => {
      const { rows } = await page(t, gateway, consumer, '/supervision/events');
      t.same(only(rows), [hrssFailed, hrssUsesEdu]);
      const edited = await page(t, gateway, consumer, '/supervision/events?agency=zj-edu');
      t.same(edited.rows, [], 'another agency in agency= shows nothing');
      t.match(edited.$('#events-results h2').text(), '没有符合条件的审计记录');
      t.equal(edited.$('#events-agency option[value="zj-edu"][selected]').length, 1, 'the form says what was asked');
      const psb = await page(t, gateway, consumer, '/supervision/events?agency=zj-psb&outcome=denied');
      t.same(psb.rows, []);
      await page(t, gateway, consumer, `/supervision/events/${nrUsesEdu}`, 404);
      await page(t, gateway, consumer, `/supervision/events/${psbRefused}`, 404);
      await page(t, gateway, consumer, '/supervision/events/no-such-event', 404);
    });

    await t.test('one event in full, persons as hashes', async (t) => {
      const { $, html } = await page(t, gateway, provider, `/supervision/events/${hrssUsesEdu}`);
      const facts = Object.fromEntries($('dl.event dt').map((i, dt) => [[$(dt).text().trim(), $($('dl.event dd').get(i)).text().replace(/\s+/g, ' ').trim()]]).get());
      t.equal(Object.keys(facts).length, EVENT_COLUMNS.length, 'every column');
      t.match(facts['记录编号'], hrssUsesEdu);
      t.match(facts['用途'], '就业补贴资格审核');
      t.match(facts['依据'], '《浙江省公共数据条例》');
      t.match(facts['披露的数据项'], /student_id\s*name/);
      t.match(facts['当事人（密钥哈希）'], person, 'the keyed hash');
      t.notMatch(html, '331022201110043439', 'never the record key');
      t.match(facts['结果'], '允许');
      const stored = (await app.db.select().from(auditEvents).where(eq(auditEvents.id, hrssUsesEdu)))[0];
      t.match(facts['本条记录的哈希'], stored?.hash as string);
      const english = await page(t, gateway, provider, `/supervision/events/${hrssUsesEdu}?lang=en`);
      t.match(english.$('dl.event').text(), 'Persons concerned (keyed hashes)');
    });

    await t.test('filters narrow the table; htmx gets the results alone', async (t) => {
      const denied = await page(t, gateway, supervisor, '/supervision/events?outcome=denied');
      t.same(only(denied.rows), [psbRefused]);
      const resource = await page(t, gateway, supervisor, '/supervision/events?resource=330000-EDU-00001&agency=&action=&outcome=&from=&to=');
      t.same(only(resource.rows), [hrssUsesEdu], 'empty fields are no filter');
      const window = await page(t, gateway, supervisor, `/supervision/events?from=${chinaLocal(now - 9.5 * MINUTE)}&to=${chinaLocal(now - 7.5 * MINUTE)}`);
      t.same(only(window.rows), [psbRefused, nrUsesEdu], 'from and to, in China time');
      const since = await page(t, gateway, supervisor, `/supervision/events?from=${chinaLocal(now - 30 * MINUTE).slice(0, 16)}`);
      t.same(only(since.rows), [hrssFailed, psbRefused, nrUsesEdu, hrssUsesEdu], 'to the minute, as datetime-local sends it');
      const until = await page(t, gateway, supervisor, `/supervision/events?to=${chinaLocal(now - 30 * MINUTE).slice(0, 16)}`);
      t.same(only(until.rows), []);
      const action = await page(t, gateway, supervisor, '/supervision/events?action=records.verify&agency=zj-hrss');
      t.same(only(action.rows), [hrssFailed]);
      t.equal(action.$('a[download]').attr('href'), '/supervision/events.csv?action=records.verify&agency=zj-hrss', 'the CSV link keeps the filters');

      const fragment = await page(t, gateway, supervisor, '/supervision/events?outcome=denied', 200, { 'hx-request': 'true', 'hx-target': 'events-results' });
      t.notMatch(fragment.html, '<html', 'a fragment, not a page');
      t.same(only(fragment.rows), [psbRefused]);
      t.match(fragment.response.headers.get('vary'), /HX-Target/);
    });

    await t.test('invalid filters are a 400 page', async (t) => {
      for (const query of ['outcome=bogus', 'from=2024-13-01T00:00', 'to=2024-02-30T10:00', 'from=yesterday', 'cursor=forged', 'unknown=1']) {
        const { response, $ } = await page(t, gateway, supervisor, `/supervision/events?${query}`, 400);
        t.match(response.headers.get('content-type'), /^text\/html/, `${query}: a page`);
        t.equal($('.error-page').length, 1);
      }
    });

    await t.test('50 a page, and a sealed next-page link', async (t) => {
      await Promise.all(Array.from({ length: 55 }, (_v, i) => app.audit.record({ action: 'test.bulk', outcome: 'allowed', agency: 'zj-hrss', occurred_at: at(60 + i) })));
      const first = await page(t, gateway, consumer, '/supervision/events?action=test.bulk');
      t.equal(first.rows.length, 50);
      const next = first.$('a[rel=next]').attr('href') as string;
      t.match(next, /^\/supervision\/events\?action=test\.bulk&cursor=/);
      t.equal(first.$('a[rel=next]').attr('hx-target'), '#events-results');
      const second = await page(t, gateway, consumer, next);
      t.equal(second.rows.length, 5);
      t.same(second.rows.filter((id) => first.rows.includes(id)), [], 'no event twice');
      t.equal(second.$('a[rel=next]').length, 0, 'the last page');
      t.equal(second.$('.pager a').first().attr('href'), '/supervision/events?action=test.bulk', 'back to the newest');
      const provider_ = await page(t, gateway, provider, next);
      t.equal(provider_.rows.length, 0, 'a cursor carries no scope: the provider still sees only its own');
    });

    await t.test('the CSV export: a header, the scoped rows, on the trail itself', async (t) => {
      const response = await gateway.visit(consumer, '/supervision/events.csv?outcome=');
      t.equal(response.status, 200);
      t.match(response.headers.get('content-type'), /^text\/csv/);
      t.match(response.headers.get('content-disposition'), /^attachment; filename="[^"]+\.csv"$/);
      const auditId = response.headers.get('x-audit-id') as string;
      t.ok(auditId, 'the export is recorded before it is sent');
      const lines = parse(await response.text()) as string[][];
      t.same(lines[0], EVENT_COLUMNS, 'a header line');
      const ids = lines.slice(1).map((line) => line[0] as string);
      t.same(only(ids), [hrssFailed, hrssUsesEdu] as string[], 'the consumer’s rows only');
      const records = lines.slice(1).map((line) => Object.fromEntries(EVENT_COLUMNS.map((column, i) => [column, line[i]])));
      t.ok(records.every((record) => record.agency === 'zj-hrss' || record.provider === 'zj-hrss'), 'nothing outside the scope');
      const [exported] = await app.db.select().from(auditEvents).where(eq(auditEvents.id, auditId));
      t.match(exported, { action: 'audit.export', agency: 'zj-hrss', outcome: 'allowed', status: 200 }, 'who exported');
      t.match(exported?.clientId, /demo-consumer|consumer/);

      const filtered = parse(await (await gateway.visit(supervisor, '/supervision/events.csv?outcome=denied&resource=330000-PSB-00001')).text()) as string[][];
      t.same(filtered.slice(1).map((line) => line[0]), [psbRefused]);
      const bad = await gateway.visit(supervisor, '/supervision/events.csv?outcome=bogus');
      t.equal(bad.status, 400);

      // For a spreadsheet: a byte order mark, and no text that Excel would run as a formula.
      const formula = await app.audit.record({ action: 'records.read', outcome: 'allowed', agency: 'zj-hrss', resource: '330000-PSB-00001', provider: 'zj-psb', purpose: '=cmd|"/c calc"!A1' });
      const download = await gateway.visit(supervisor, '/supervision/events.csv?action=records.read&agency=zj-hrss');
      const bytes = Buffer.from(await download.arrayBuffer());
      t.same([...bytes.subarray(0, 3)], [0xef, 0xbb, 0xbf], 'a BOM, so that Excel reads UTF-8');
      const rows = parse(bytes.subarray(3).toString('utf8'), { columns: true }) as Array<Record<string, string>>;
      t.equal(rows.find((row) => row.id === formula)?.purpose, `'=cmd|"/c calc"!A1`, 'the formula written as text');
    });

    await t.test('signed out: to sign-in and back; a citizen: 403', async (t) => {
      const out = await gateway.visit(new CookieJar(), '/supervision/events?outcome=denied');
      t.equal(out.status, 303);
      const to = location(out, gateway.url);
      t.equal(to.pathname, '/login');
      t.equal(to.searchParams.get('returnTo'), '/supervision/events?outcome=denied');
      t.equal((await gateway.visit(new CookieJar(), '/supervision/events.csv')).status, 303);
      const citizen = await gateway.signIn('citizen');
      await page(t, gateway, citizen, '/supervision/events', 403);
      t.equal((await gateway.visit(citizen, '/supervision/events.csv')).status, 403);
      await page(t, gateway, citizen, `/supervision/events/${hrssUsesEdu}`, 403);
    });

    await t.test('verify now: supervisors only, with the CSRF token; the card then says N/N', async (t) => {
      const before = await page(t, gateway, supervisor, '/supervision/events');
      t.match(before.$('.chain-status').text(), '尚未进行过完整验证', 'none has run yet');
      t.equal(before.$('.chain-status form[action="/supervision/verify"]').length, 1, 'a supervisor has the button');
      const token = csrfOf(before.html);
      const count = async () => (await app.db.select().from(auditVerifications)).length;

      const forged = await gateway.visit(supervisor, '/supervision/verify', { method: 'POST', form: { other: 'x' } });
      t.equal(forged.status, 403, 'no CSRF token: refused');
      t.equal(await count(), 0);

      const providerPage = await page(t, gateway, provider, '/supervision/events');
      t.equal(providerPage.$('.chain-status form').length, 0, 'no button for a provider');
      const refused = await gateway.visit(provider, '/supervision/verify', { form: { _csrf: csrfOf(providerPage.html) } });
      t.equal(refused.status, 403, 'a provider may not');
      t.equal(await count(), 0);

      const done = await gateway.visit(supervisor, '/supervision/verify', { form: { _csrf: token } });
      t.equal(done.status, 303);
      t.equal(location(done, gateway.url).pathname, '/supervision');
      t.equal(await count(), 1, 'a verification was run');
      const [run] = await app.db.select().from(auditVerifications);
      t.match(run, { trigger: 'demand', error: null });
      t.equal(run?.chainsValid, run?.chains);
      const [recorded] = await app.db.select().from(auditEvents).where(and(eq(auditEvents.action, 'audit.verify'), eq(auditEvents.outcome, 'allowed')));
      t.match(recorded, { agency: 'zj-dsj', status: 303 }, 'on the trail');
      const [denied] = await app.db.select().from(auditEvents).where(and(eq(auditEvents.action, 'audit.verify'), eq(auditEvents.agency, 'zj-edu')));
      t.match(denied, { outcome: 'denied', status: 403, reason: 'supervisors_only' });

      const after = await page(t, gateway, supervisor, '/supervision/events');
      const card = after.$('.chain-status').text();
      t.match(card, new RegExp(`${run?.chains}/${run?.chains} 条链验证通过`), 'N/N chains verify');
      t.match(card, '人工发起');
      t.ok(after.$('.chain-status tbody tr').length >= 1, 'a row per chain');
      const english = await page(t, gateway, provider, '/supervision/events?lang=en');
      t.match(english.$('.chain-status').text(), new RegExp(`${run?.chains}/${run?.chains} chains verify`));
    });

    await t.test('a tampered record shows as an alert', async (t) => {
      const where = eq(auditEvents.id, nrUsesEdu);
      await app.db.update(auditEvents).set({ purpose: 'rewritten' }).where(where);
      t.teardown(() => app.db.update(auditEvents).set({ purpose: null }).where(where));
      await app.auditVerification.runNow('demand');
      const { $ } = await page(t, gateway, supervisor, '/supervision/events');
      const alert = $('.chain-status [role=alert]');
      t.equal(alert.length, 1);
      t.match(alert.text(), /仅 0\/1 条链验证通过|仅 \d+\/\d+ 条链验证通过/);
    });
  });
}
