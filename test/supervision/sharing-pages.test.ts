import t, { type Test } from 'tap';
import * as cheerio from 'cheerio';
import { and, eq } from 'drizzle-orm';
import type { App } from '../../src/app.js';
import { applications, auditEvents, grants } from '../../src/db/schema.js';
import { testDrivers, freshDatabase } from '../helpers/app.js';
import { party, type Party } from '../helpers/parties.js';
import { csrfOf, location, peopleGateway, type CookieJar, type PeopleGateway } from '../helpers/people.js';

t.setTimeout(600_000);

const STUDENT = '330000-EDU-00001'; // zj-edu, conditional
const ENTERPRISE = '330000-AMR-00001'; // zj-amr, unconditional
const DAY_MS = 86_400_000;
const chinaDay = (instant: Date) => new Intl.DateTimeFormat('en-CA', { timeZone: 'Asia/Shanghai' }).format(instant);

/** A consumer's application through the API, as a system of the agency sends it. */
async function applyFor(app: App, who: Party, resource: string, fields: string[], purpose: string) {
  const response = await app.inject({
    method: 'POST',
    url: '/v1/applications',
    headers: who.headers,
    payload: { resource, fields, mode: 'read', purpose, legal_basis: '《浙江省公共数据条例》', duration_days: 90 },
  });
  if (response.statusCode !== 201 && response.statusCode !== 202) throw new Error(`apply: ${response.statusCode} ${response.body}`);
  return response.json() as { id: string; status: string; grant_id?: string };
}

const stored = async (app: App, id: string) => (await app.db.select().from(applications).where(eq(applications.id, id)))[0];
const storedGrant = async (app: App, id: string) => (await app.db.select().from(grants).where(eq(grants.id, id)))[0];

async function page(t: Test, gateway: PeopleGateway, jar: CookieJar, path: string, status = 200) {
  const response = await gateway.visit(jar, path);
  t.equal(response.status, status, `${path}: ${status}`);
  const html = await response.text();
  return { html, $: cheerio.load(html) };
}

for (const driver of testDrivers()) {
  t.test(`the sharing pages for officials [${driver}]`, async (t) => {
    const database = await freshDatabase(t, driver);
    const gateway = await peopleGateway(t, driver, { database, env: { SUPERVISOR_AGENCIES: 'zj-dsj', RATE_LIMIT_ANONYMOUS_PER_MINUTE: '100000' } });
    const app = gateway.app;
    const hrss = await party(app, 'zj-hrss', ['applications:write', 'records:read', 'records:verify']);
    const psb = await party(app, 'zj-psb', ['applications:write']);

    const toApprove = await applyFor(app, hrss, STUDENT, ['student_id', 'name', 'school', 'status'], '就业补贴资格审核');
    const overdue = await applyFor(app, hrss, STUDENT, ['student_id', 'status'], '社会救助对象在读核验');
    const untouched = await applyFor(app, hrss, STUDENT, ['student_id'], '考试报名资格核验');
    const elsewhere = await applyFor(app, psb, ENTERPRISE, ['uscc', 'name'], '企业登记信息比对');
    t.equal(elsewhere.status, 'approved', 'an unconditional resource is granted at once');
    // Past its due date by three days and some hours: the provider did not decide in time.
    await app.db.update(applications).set({ dueAt: new Date(app.clock().getTime() - 3 * DAY_MS - 3_600_000) }).where(eq(applications.id, overdue.id));

    const supervisor = await gateway.signIn('supervisor');
    const provider = await gateway.signIn('provider');
    const consumer = await gateway.signIn('consumer');

    await t.test('the supervisor sees every application, the overdue one first and marked in words', async (t) => {
      const { $ } = await page(t, gateway, supervisor, '/supervision/applications');
      const rows = $('tbody tr').map((_i, row) => $(row).attr('data-application')).get();
      t.equal(rows[0], overdue.id, 'the overdue application comes first');
      t.same(rows.slice(1, 3).sort(), [toApprove.id, untouched.id].sort(), 'then the other pending ones');
      t.equal(rows[3], elsewhere.id, 'then the decided one');
      const first = $('tbody tr').first();
      t.equal(first.find('.badge.overdue').text().trim(), '已逾期', 'a badge says it, not a colour alone');
      t.match(first.find('.overdue-days').text(), /逾期 4 天/, 'and how many days (a day begun counts)');
      t.equal($('tbody tr .badge.overdue').length, 1, 'only the overdue one is marked');
      t.equal($('table caption').length, 1, 'the table has a caption');
      t.ok($('thead th[scope=col]').length >= 5, 'column headers with scope');
      t.ok($('label[for=applications-role]').length && $('label[for=applications-status]').length, 'the filters are labelled');

      const { $: english } = await page(t, gateway, supervisor, '/supervision/applications?lang=en');
      t.equal(english('tbody tr').first().find('.badge.overdue').text().trim(), 'Overdue');

      const received = await page(t, gateway, supervisor, '/supervision/applications?role=provider');
      t.equal(received.$('tbody tr').length, 0, 'the supervisor agency received none');
      const decided = await page(t, gateway, supervisor, '/supervision/applications?status=approved');
      t.same(decided.$('tbody tr').map((_i, row) => decided.$(row).attr('data-application')).get(), [elsewhere.id]);
    });

    await t.test('the provider sees what it received; the consumer what it submitted; nobody another agency’s', async (t) => {
      const received = await page(t, gateway, provider, '/supervision/applications?role=provider');
      t.equal(received.$('tbody tr').length, 3, 'the three student-status applications');
      const mine = await page(t, gateway, consumer, '/supervision/applications?role=consumer');
      t.equal(mine.$('tbody tr').length, 3, 'the consumer’s own three');
      const all = await page(t, gateway, consumer, '/supervision/applications');
      t.notOk(all.html.includes(elsewhere.id), 'another agency’s application is not listed');
      const fragment = await gateway.visit(consumer, '/supervision/applications?status=pending', { headers: { 'hx-request': 'true', 'hx-target': 'applications-list' } });
      const part = await fragment.text();
      t.notMatch(part, /<html/, 'htmx gets the list alone');
      t.match(part, /<table class="data">/);
      await page(t, gateway, consumer, `/supervision/applications/${elsewhere.id}`, 404);
      await page(t, gateway, provider, `/supervision/applications/${elsewhere.id}`, 404);
      const { html } = await page(t, gateway, supervisor, `/supervision/applications/${elsewhere.id}`);
      t.match(html, /无条件共享，自动批准/, 'the supervisor sees it, decided by the catalog');
    });

    await t.test('the application in full, and the provider approves it narrowed from the page', async (t) => {
      const { $, html } = await page(t, gateway, provider, `/supervision/applications/${toApprove.id}`);
      t.match(html, /就业补贴资格审核/, 'the purpose');
      t.match(html, /《浙江省公共数据条例》/, 'the legal basis');
      t.match(html, /浙江省人力资源和社会保障厅|zj-hrss/, 'the consumer');
      t.equal($('input[type=checkbox][name=fields]').length, 4, 'a checkbox for each field applied for');
      t.equal($('input[type=checkbox][name=fields]:checked').length, 4, 'all kept unless unchecked');
      t.ok($('label[for=valid-until]').length && $('label[for=reject-reason]').length, 'every input labelled');
      t.equal($('#reject-reason').attr('required'), 'required');
      const validUntil = chinaDay(new Date(app.clock().getTime() + 30 * DAY_MS));
      const response = await gateway.visit(provider, `/supervision/applications/${toApprove.id}/decision`, {
        form: { _csrf: csrfOf(html), decision: 'approve', fields: ['student_id', 'school'], valid_until: validUntil },
      });
      t.equal(response.status, 303);
      t.equal(location(response, gateway.url).pathname, `/supervision/applications/${toApprove.id}`, 'back to the application');

      const application = await stored(app, toApprove.id);
      t.equal(application?.status, 'approved');
      t.equal(application?.decidedBy, 'officials:demo-provider', 'decided by the signed-in official');
      const grant = await storedGrant(app, application?.grantId as string);
      t.same(grant?.fields, ['student_id', 'school'], 'the grant holds only the kept fields');
      t.equal(chinaDay(grant?.validUntil as Date), validUntil, 'until the date chosen');
      const [audit] = await app.db
        .select()
        .from(auditEvents)
        .where(and(eq(auditEvents.action, 'application.decide'), eq(auditEvents.grantId, grant?.id as string)));
      t.match(audit, { outcome: 'allowed', status: 303, agency: 'zj-edu', clientId: 'officials:demo-provider', resource: STUDENT, provider: 'zj-edu' }, 'on the trail as the API’s decision');
      t.same(audit?.fields, ['student_id', 'school']);

      const after = await page(t, gateway, provider, `/supervision/applications/${toApprove.id}`);
      t.match(after.html, /已批准/, 'the page shows the decision');
      t.equal(after.$('form.decision').length, 0, 'and no more forms');
      const again = await gateway.visit(provider, `/supervision/applications/${toApprove.id}/decision`, { form: { _csrf: csrfOf(html), decision: 'reject', reason: '重复' } });
      t.equal(again.status, 409, 'a decision is final');
      t.match(await again.text(), /already_decided/);
    });

    await t.test('rejecting needs a reason', async (t) => {
      const { html } = await page(t, gateway, provider, `/supervision/applications/${overdue.id}`);
      const blank = await gateway.visit(provider, `/supervision/applications/${overdue.id}/decision`, { form: { _csrf: csrfOf(html), decision: 'reject', reason: '  ' } });
      t.equal(blank.status, 400);
      t.match(await blank.text(), /reason/);
      t.equal((await stored(app, overdue.id))?.status, 'pending', 'nothing decided');
      const none = await gateway.visit(provider, `/supervision/applications/${overdue.id}/decision`, { form: { _csrf: csrfOf(html), decision: 'approve' } });
      t.equal(none.status, 400, 'approving nothing is refused too');
      const rejected = await gateway.visit(provider, `/supervision/applications/${overdue.id}/decision`, { form: { _csrf: csrfOf(html), decision: 'reject', reason: '用途与学籍核验无关' } });
      t.equal(rejected.status, 303);
      const application = await stored(app, overdue.id);
      t.equal(application?.status, 'rejected');
      t.equal(application?.reason, '用途与学籍核验无关');
      t.match((await page(t, gateway, provider, `/supervision/applications/${overdue.id}`)).html, /用途与学籍核验无关/);
    });

    await t.test('the consumer official cannot decide; a form without its CSRF token changes nothing', async (t) => {
      const { $, html } = await page(t, gateway, consumer, `/supervision/applications/${untouched.id}`);
      t.equal($('form.decision').length, 0, 'no decision forms for the consumer');
      const refused = await gateway.visit(consumer, `/supervision/applications/${untouched.id}/decision`, { form: { _csrf: csrfOf(html), decision: 'approve', fields: ['student_id'] } });
      t.equal(refused.status, 403);
      t.match(await refused.text(), /not_provider/);
      const forged = await gateway.visit(provider, `/supervision/applications/${untouched.id}/decision`, { form: { decision: 'approve', fields: ['student_id'] } });
      t.equal(forged.status, 403, 'no _csrf: refused');
      const wrong = await gateway.visit(provider, `/supervision/applications/${untouched.id}/decision`, { form: { _csrf: 'forged', decision: 'approve', fields: ['student_id'] } });
      t.equal(wrong.status, 403, 'a wrong _csrf: refused');
      t.equal((await stored(app, untouched.id))?.status, 'pending', 'still pending');
      const widened = await gateway.visit(provider, `/supervision/applications/${untouched.id}/decision`, {
        form: { _csrf: csrfOf((await page(t, gateway, provider, `/supervision/applications/${untouched.id}`)).html), decision: 'approve', fields: ['student_id', 'id_number'] },
      });
      t.equal(widened.status, 400, 'a field not applied for is refused');
      t.equal((await stored(app, untouched.id))?.status, 'pending');
    });

    await t.test('grants: the provider revokes from the page, and the API stops at once', async (t) => {
      const grantId = (await stored(app, toApprove.id))?.grantId as string;
      const verify = () =>
        app.inject({
          method: 'POST',
          url: `/v1/resources/${STUDENT}/verify`,
          headers: { ...hrss.headers, 'x-purpose': `UTF-8''${encodeURIComponent('就业补贴资格审核')}` },
          payload: { subject: { student_id: 'G331022201110043439', school: '杭州市第一中学' } },
        });
      t.equal((await verify()).statusCode, 200, 'the grant works before');

      const seen = await page(t, gateway, consumer, '/supervision/grants');
      t.ok(seen.$(`tr[data-grant="${grantId}"]`).length > 0, 'the consumer sees its grant');
      t.equal(seen.$(`tr[data-grant="${grantId}"] form.revoke`).length, 0, 'but may not revoke it');
      t.notOk(seen.html.includes(elsewhere.grant_id as string), 'nor another agency’s');

      const { $, html } = await page(t, gateway, provider, '/supervision/grants');
      t.ok($('#grants-active').length && $('#grants-expiring').length && $('#grants-revoked').length, 'the sections');
      const row = $(`#grants-active tr[data-grant="${grantId}"]`);
      t.match(row.text(), /学校名称/, 'the fields by title');
      t.equal(row.find('form.revoke').length, 1, 'a revoke form for the provider');
      const input = row.find('form.revoke input[name=reason]');
      t.equal($(`label[for="${input.attr('id')}"]`).length, 1, 'its reason is labelled');
      const action = row.find('form.revoke').attr('action') as string;
      const noReason = await gateway.visit(provider, action, { form: { _csrf: csrfOf(html), reason: '' } });
      t.equal(noReason.status, 400, 'a revocation needs a reason');
      const noToken = await gateway.visit(provider, action, { form: { reason: '不再需要' } });
      t.equal(noToken.status, 403, 'and its CSRF token');
      t.equal((await storedGrant(app, grantId))?.revokedAt, null, 'nothing changed');
      const byConsumer = await gateway.visit(consumer, action, { form: { _csrf: csrfOf(seen.html), reason: '不再需要' } });
      t.equal(byConsumer.status, 403, 'the consumer may not revoke');

      const revoked = await gateway.visit(provider, action, { form: { _csrf: csrfOf(html), reason: '事项已办结' } });
      t.equal(revoked.status, 303);
      t.equal(location(revoked, gateway.url).pathname, '/supervision/grants');
      t.ok((await storedGrant(app, grantId))?.revokedAt, 'revoked in the database');
      const denied = await verify();
      t.equal(denied.statusCode, 403, 'the API refuses at once');
      t.equal(denied.json().code, 'grant_missing');
      const [audit] = await app.db.select().from(auditEvents).where(and(eq(auditEvents.action, 'grant.revoke'), eq(auditEvents.grantId, grantId), eq(auditEvents.outcome, 'allowed')));
      t.match(audit, { agency: 'zj-edu', clientId: 'officials:demo-provider', reason: '事项已办结' }, 'on the trail as the API’s revocation, with why');

      const after = await page(t, gateway, provider, '/supervision/grants?status=revoked');
      t.ok(after.$(`#grants-revoked tr[data-grant="${grantId}"]`).length, 'listed as revoked');
      t.match(after.$(`#grants-revoked tr[data-grant="${grantId}"]`).text(), /已撤销/);
      const hidden = await gateway.visit(consumer, `/supervision/grants/${elsewhere.grant_id as string}/revoke`, { form: { _csrf: csrfOf(seen.html), reason: '不再需要' } });
      t.equal(hidden.status, 404, 'another agency’s grant is not there for the consumer');
    });
  });
}
