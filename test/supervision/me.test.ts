import t from 'tap';
import * as cheerio from 'cheerio';
import { eq } from 'drizzle-orm';
import type { App } from '../../src/app.js';
import { auditEvents } from '../../src/db/schema.js';
import { seedDemo } from '../../src/demo/seed.js';
import { translator } from '../../src/portal/i18n.js';
import { freshDatabase, testDrivers } from '../helpers/app.js';
import { party, type Party } from '../helpers/parties.js';
import { CookieJar, location, peopleGateway } from '../helpers/people.js';

t.setTimeout(600_000);

const STUDENT = '330000-EDU-00001'; // zj-edu
const PURPOSE = '就业补贴资格审核（第 2026-0042 号）';
const LEGAL_BASIS = '《就业补助资金管理办法》第十条';
/** The demo citizen, and a student the demo's verification checks (see test/helpers/demo-gateways.ts). */
const CITIZEN = { name: '孙思远', id_number: '331022201110043439', school: '三门县第2初级中学' };
const OTHER_PERSON = '330102199001011234';

/** The consumer applies to verify student status and the provider approves, both through the API. */
async function grantVerify(app: App, hrss: Party, edu: Party) {
  const applied = await app.inject({
    method: 'POST',
    url: '/v1/applications',
    headers: hrss.headers,
    payload: { resource: STUDENT, fields: ['name', 'id_number', 'school'], mode: 'verify', purpose: '就业补贴资格审核', legal_basis: LEGAL_BASIS, duration_days: 30 },
  });
  const decided = await app.inject({ method: 'POST', url: `/v1/applications/${applied.json().id as string}/decision`, headers: edu.headers, payload: { decision: 'approve' } });
  if (decided.statusCode !== 200) throw new Error(`decide: ${decided.statusCode} ${decided.body}`);
}

for (const driver of testDrivers()) {
  t.test(`the citizen's page [${driver}]`, async (t) => {
    const database = await freshDatabase(t, driver);
    const gateway = await peopleGateway(t, driver, { database, env: { SUPERVISOR_AGENCIES: 'zj-dsj', RATE_LIMIT_ANONYMOUS_PER_MINUTE: '100000' } });
    const app = gateway.app;
    await seedDemo(database, 'small');
    const hrss = await party(app, 'zj-hrss', ['applications:write', 'records:verify']);
    const edu = await party(app, 'zj-edu', ['grants:manage']);
    await grantVerify(app, hrss, edu);

    // The demo consumer verifies the citizen's student status; the purpose in Chinese, as RFC 8187 allows an ASCII-only client to send it.
    const verified = await app.inject({
      method: 'POST',
      url: `/v1/resources/${STUDENT}/verify`,
      headers: { ...hrss.headers, 'x-purpose': `UTF-8''${encodeURIComponent(PURPOSE)}` },
      payload: { subject: CITIZEN },
    });
    t.equal(verified.statusCode, 200, verified.body);
    t.equal(verified.json().verdict, 'match', 'the citizen is a demo student');
    const [use] = await app.db.select().from(auditEvents).where(eq(auditEvents.id, String(verified.headers['x-audit-id'])));
    t.equal(use?.purpose, PURPOSE, 'the trail holds the decoded purpose');

    // What must not show: a use of somebody else's records, and a refused call about the citizen.
    await app.audit.record({ action: 'records.read', outcome: 'allowed', agency: 'zj-hrss', resource: STUDENT, purpose: '另一位市民的记录', subject_refs: [app.subjectRef(OTHER_PERSON)] });
    await app.audit.record({ action: 'records.read', outcome: 'denied', agency: 'zj-hrss', resource: STUDENT, purpose: '被拒绝的调用', subject_refs: [app.subjectRef(CITIZEN.id_number)] });

    const citizen = await gateway.signIn('citizen');
    t.equal(citizen.landedAt, '/me', 'a citizen lands on their page');

    await t.test('who used my records, when, why: the purpose exactly as sent, the time in Beijing', async (t) => {
      const response = await gateway.visit(citizen, '/me');
      t.equal(response.status, 200);
      t.equal(response.headers.get('cache-control'), 'no-store');
      const $ = cheerio.load(await response.text());
      const rows = $('tbody tr');
      t.equal(rows.length, 1, 'one use of records about this citizen');
      const cells = rows.first().children().map((_i, cell) => $(cell).text().trim()).get();
      t.equal(cells[0], translator('zh-Hans').dateTime(use?.occurredAt as Date), 'when, in Asia/Shanghai time');
      t.equal(rows.first().find('time').attr('datetime'), use?.occurredAt.toISOString());
      t.equal(cells[1], '浙江省人力资源和社会保障厅', 'the agency by name');
      t.equal(cells[2], '学籍信息', 'the resource by name');
      t.equal(cells[3], '核验');
      t.equal(cells[4], PURPOSE, 'the purpose exactly');
      t.equal(cells[5], LEGAL_BASIS, 'the legal basis of the grant');
      t.match(cells[6], /姓名/, 'the fields by title');
      t.equal($('table caption').length, 1);
      t.equal($('thead th[scope=col]').length, 7);
      const text = $('main').text();
      t.notOk(text.includes('另一位市民的记录'), 'nobody else’s records');
      t.notOk(text.includes('被拒绝的调用'), 'no refused call');
      t.equal($('a[href="/me/access-log.csv"]').length, 1, 'a link to the CSV');
    });

    await t.test('the CSV: UTF-8 with a BOM, a header row, the same uses', async (t) => {
      const response = await gateway.visit(citizen, '/me/access-log.csv');
      t.equal(response.status, 200);
      t.match(response.headers.get('content-type'), /^text\/csv; charset=utf-8/);
      t.match(response.headers.get('content-disposition'), /^attachment; filename="access-log\.csv"/);
      const bytes = Buffer.from(await response.arrayBuffer());
      t.same([...bytes.subarray(0, 3)], [0xef, 0xbb, 0xbf], 'a BOM, so that Excel reads UTF-8');
      const lines = bytes.subarray(3).toString('utf8').trim().split(/\r?\n/);
      t.equal(lines[0], '时间（北京时间）,使用部门,部门代码,方式,信息资源,信息资源代码,用途,依据,信息项');
      t.equal(lines.length, 2, 'one use');
      const when = new Intl.DateTimeFormat('sv-SE', { timeZone: 'Asia/Shanghai', dateStyle: 'short', timeStyle: 'medium' }).format(use?.occurredAt as Date);
      t.equal(lines[1], `${when},浙江省人力资源和社会保障厅,zj-hrss,核验,学籍信息,${STUDENT},${PURPOSE},${LEGAL_BASIS},姓名、公民身份号码、学校名称`);
      t.notOk(lines.join('\n').includes('另一位市民的记录'));
    });

    await t.test('a purpose a spreadsheet would run as a formula is written as text in the CSV, as sent on the page', async (t) => {
      const formula = '=HYPERLINK("http://evil.invalid","点击")';
      const recorded = await app.audit.record({ action: 'records.read', outcome: 'allowed', agency: 'zj-hrss', resource: STUDENT, purpose: formula, legal_basis: '-1+1', subject_refs: [app.subjectRef(CITIZEN.id_number)] });
      const csv = (await (await gateway.visit(citizen, '/me/access-log.csv')).text()).replace(/^\uFEFF/, '');
      const line = csv.split(/\r?\n/).find((text) => text.includes('HYPERLINK')) as string;
      t.match(line, `"'=HYPERLINK(""http://evil.invalid"",""点击"")"`, 'a leading quote mark: text, not a formula');
      t.match(line, `,'-1+1,`, 'also a text that starts with a minus and is no number');
      const page = await (await gateway.visit(citizen, '/me')).text();
      t.match(page, '=HYPERLINK(&quot;http://evil.invalid&quot;,&quot;点击&quot;)', 'the page shows it exactly, escaped');
      await app.db.delete(auditEvents).where(eq(auditEvents.id, recorded));
    });

    await t.test('newest first, a page at a time', async (t) => {
      const start = (use?.occurredAt as Date).getTime();
      for (let i = 1; i <= 52; i += 1) {
        await app.audit.record({
          occurred_at: new Date(start + i * 1000).toISOString(),
          action: 'records.read',
          outcome: 'allowed',
          agency: 'zj-edu',
          resource: STUDENT,
          purpose: `学籍注册 ${i}`,
          subject_refs: [app.subjectRef(CITIZEN.id_number)],
        });
      }
      const first = cheerio.load(await (await gateway.visit(citizen, '/me')).text());
      const purposes = first('tbody tr td.purpose').map((_i, cell) => first(cell).text()).get();
      t.equal(purposes.length, 50, 'a page of 50');
      t.equal(purposes[0], '学籍注册 52', 'the newest first');
      const next = first('a[rel=next]').attr('href') as string;
      t.ok(next, 'a link to the next page');
      const fragment = await gateway.visit(citizen, next, { headers: { 'hx-request': 'true', 'hx-target': 'me-list' } });
      const html = await fragment.text();
      t.notMatch(html, /<html/, 'htmx gets the list alone');
      const second = cheerio.load(html);
      t.same(second('tbody tr td.purpose').map((_i, cell) => second(cell).text()).get(), ['学籍注册 2', '学籍注册 1', PURPOSE], 'then the older ones');
      t.equal(second('a[rel=next]').length, 0, 'the last page');
      const csv = await (await gateway.visit(citizen, '/me/access-log.csv')).text();
      t.equal(csv.trim().split(/\r?\n/).length, 54, 'the CSV holds every use');
    });

    await t.test('a citizen reaches /me and nothing else; an official not /me', async (t) => {
      for (const path of ['/supervision/applications', '/supervision/grants', '/supervision/applications/ap_x']) {
        t.equal((await gateway.visit(citizen, path)).status, 403, `${path}: 403 for a citizen`);
      }
      const official = await gateway.signIn('supervisor');
      const refused = await gateway.visit(official, '/me');
      t.equal(refused.status, 403);
      t.match(await refused.text(), /citizens_only/);
      t.equal((await gateway.visit(official, '/me/access-log.csv')).status, 403);
      const signedOut = await gateway.visit(new CookieJar(), '/me');
      t.equal(signedOut.status, 303);
      t.equal(location(signedOut, gateway.url).pathname, '/login', 'signed out: to sign in first');
    });
  });
}
