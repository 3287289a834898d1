import t, { type Test } from 'tap';
import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { readFile } from 'node:fs/promises';
import { and, eq } from 'drizzle-orm';
import type { Driver } from '../../src/db/index.js';
import { applications, grants } from '../../src/db/schema.js';
import type { DemoPerson } from '../../src/demo/people.js';
import { testDrivers } from '../helpers/app.js';
import { assertAccessible, assertAccessibleWithoutScripts, CHROMIUM } from '../helpers/axe.js';
import { demoVerify, peopleGateway, seedDemoExchange, type PeopleGateway } from '../helpers/people.js';

// Debian's Chromium, driven as it is: without it the file skips, and the rest of the suite runs.
const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (apt-get install chromium fonts-noto-cjk): the supervision pages' browser tests need it`;
// One driver: what a browser sees does not depend on it (the pages' services are tested on both).
const driver = testDrivers().at(-1) as Driver;
if (!skip) t.setTimeout(600_000);

/** What the demo consumer says it verifies the student for: Chinese, as the citizen must read it back. */
const PURPOSE = '就业补贴资格审核：核验申请人孙思远的在读状态';

interface Setting {
  gateway: PeopleGateway;
  browser: Browser;
  /** Requests the pages made beyond the gateway (refused). */
  outside: string[];
}

/** A browser signed in as a demo person the way a person does it: the chooser, the provider's form, back. */
async function signIn(t: Test, setting: Setting, role: DemoPerson['role'], options: { axe?: boolean; lang?: 'en' } = {}): Promise<Page> {
  const { gateway, browser, outside } = setting;
  const context = await browser.newContext({ locale: 'zh-CN', viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  await context.route('**/*', (route) => {
    if (route.request().url().startsWith(`${gateway.url}/`)) return route.continue();
    outside.push(route.request().url());
    return route.abort('blockedbyclient');
  });
  t.teardown(() => context.close());
  const page = await context.newPage();
  const person = gateway.person(role);
  await page.goto(`${gateway.url}/login${options.lang ? `?lang=${options.lang}` : ''}`);
  if (options.axe) await assertAccessible(t, page, 'the sign-in chooser');
  const issuer = role === 'citizen' ? /市民|Citizens/ : /政务人员|Officials/;
  await page.getByRole('button', { name: issuer }).click();
  await page.waitForURL(/\/demo-idp\//);
  if (options.axe) await assertAccessible(t, page, 'the demo identity provider’s sign-in form');
  await page.getByLabel(/用户名/).fill(person.username);
  await page.getByLabel(/密码/).fill(person.password);
  await page.getByRole('button', { name: /登录/ }).click();
  await page.waitForURL((url) => url.origin === gateway.url && !url.pathname.startsWith('/login'));
  t.match(await page.locator('header .account a').textContent(), person.name, `signed in as ${person.name}`);
  return page;
}

async function supervisor(t: Test, setting: Setting) {
  const page = await signIn(t, setting, 'supervisor', { axe: true });
  t.equal(new URL(page.url()).pathname, '/supervision', 'an official lands on the dashboard');
  await assertAccessible(t, page, 'the dashboard');
  t.ok(await page.locator('[data-chart="series"] svg').count(), 'the exchanges chart is drawn (ECharts, SVG)');
  t.ok(await page.locator('#series-table tbody tr').count() >= 24, 'beside its table');
  t.ok(await page.locator('[data-table="by-resource-table"] svg').count(), 'the top resources drawn beside their table');
  const overdue = page.locator('#applications-title ~ table tbody tr').first();
  t.match(await overdue.textContent(), /已逾期 \d+ 天/, 'the overdue application first, marked in words');
  await page.getByRole('link', { name: '最近 7 天' }).click();
  await page.waitForURL(/period=7d/);
  const days = await page.locator('#series-table tbody tr').count();
  t.ok(days >= 7 && days <= 8, `seven days: a row for each day they touch (${days})`);
  await assertAccessible(t, page, 'the dashboard, 7 days');
}

async function supervisorVerifies(t: Test, setting: Setting) {
  const page = await signIn(t, setting, 'supervisor');
  await page.getByRole('button', { name: '立即完整验证' }).click();
  await page.waitForURL((url) => url.pathname === '/supervision');
  t.match(await page.locator('.chain-status').textContent(), /(\d+)\/\1 条链验证通过/, 'the chain status card: N/N chains verify');
  t.match(await page.locator('.chain-status').textContent(), /人工发起/, 'asked for now, not by the schedule');
  await page.getByRole('link', { name: '审计记录' }).click();
  await page.waitForURL((url) => url.pathname === '/supervision/events');
  await assertAccessible(t, page, 'the audit trail');
  const agencies = await page.locator('table.events tbody tr td:nth-child(2)').allTextContents();
  t.ok(new Set(agencies).size > 1, `the supervisor sees more than one agency’s events (${[...new Set(agencies)].join(', ')})`);
  await page.locator('table.events tbody tr th a').first().click();
  await page.waitForURL(/\/supervision\/events\/[^/]+$/);
  await assertAccessible(t, page, 'one event in full');
  await page.goto(`${setting.gateway.url}/supervision?lang=en`);
  t.equal(await page.getAttribute('html', 'lang'), 'en');
  await assertAccessible(t, page, 'the dashboard in English');
}

async function providerDecides(t: Test, setting: Setting) {
  const { gateway } = setting;
  const [pending] = await gateway.app.db
    .select()
    .from(applications)
    .where(and(eq(applications.resource, '330000-EDU-00001'), eq(applications.mode, 'read'), eq(applications.status, 'pending')));
  t.ok(pending, 'the demo’s student-record application waits');
  const page = await signIn(t, setting, 'provider');
  await page.getByRole('link', { name: '共享申请' }).click();
  await page.waitForURL((url) => url.pathname === '/supervision/applications');
  await assertAccessible(t, page, 'the applications');
  t.match(await page.locator('table.data tbody tr').first().textContent(), /已逾期/, 'the overdue application first');
  await page.locator(`tr[data-application="${pending?.id}"] th a`).click();
  await page.waitForURL((url) => url.pathname === `/supervision/applications/${pending?.id}`);
  await assertAccessible(t, page, 'an application with its decision forms');
  await page.getByRole('checkbox', { name: /grade/ }).uncheck();
  await page.getByRole('button', { name: '批准', exact: true }).click();
  await page.waitForURL((url) => url.pathname === `/supervision/applications/${pending?.id}` && url.search === '');
  t.match(await page.locator('#application-decision ~ dl, #application-decision + dl').first().textContent(), /已批准|批准/, 'the page shows the decision');
  const [decided] = await gateway.app.db.select().from(applications).where(eq(applications.id, pending?.id as string));
  t.equal(decided?.status, 'approved');
  const [grant] = await gateway.app.db.select().from(grants).where(eq(grants.id, decided?.grantId as string));
  t.same(grant?.fields, ['student_id', 'name', 'school', 'status'], 'the grant holds the fields kept, not grade');
  await page.getByRole('link', { name: '授权' }).click();
  await page.waitForURL((url) => url.pathname === '/supervision/grants');
  await assertAccessible(t, page, 'the grants');
  t.ok(await page.getByRole('button', { name: '撤销授权' }).count(), 'the provider may revoke from the page');
}

async function consumerFollows(t: Test, setting: Setting) {
  const page = await signIn(t, setting, 'consumer');
  await page.getByRole('link', { name: '审计记录' }).click();
  await page.waitForURL((url) => url.pathname === '/supervision/events');
  const agencies = new Set(await page.locator('table.events tbody tr td:nth-child(2)').allTextContents());
  t.equal(agencies.size, 1, `the consumer sees its own calls only (${[...agencies].join(', ')})`);
  await page.getByRole('link', { name: '共享申请' }).click();
  await page.waitForURL((url) => url.pathname === '/supervision/applications');
  t.notOk(await page.getByRole('button', { name: '批准' }).count(), 'no decision for a consumer');
}

async function citizenReads(t: Test, setting: Setting) {
  const page = await signIn(t, setting, 'citizen', { axe: true });
  t.equal(new URL(page.url()).pathname, '/me', 'a citizen lands on their page');
  await assertAccessible(t, page, 'the citizen’s page');
  t.match(await page.locator('main').textContent(), PURPOSE, 'the purpose exactly as the agency sent it');
  t.match(await page.locator('main').textContent(), /浙江省人力资源和社会保障厅/, 'which agency');
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: /下载全部记录/ }).click()]);
  const csv = await readFile((await download.path()) as string, 'utf8');
  t.match(csv, PURPOSE, 'and in the CSV');
  const refused = await page.goto(`${setting.gateway.url}/supervision`);
  t.equal(refused?.status(), 403, 'a citizen’s session opens no official page');
  await assertAccessible(t, page, 'the 403 page');
}

async function withoutScripts(t: Test, setting: Setting) {
  const { gateway, browser } = setting;
  const context = await browser.newContext({ javaScriptEnabled: false, locale: 'zh-CN' });
  t.teardown(() => context.close());
  const page = await context.newPage();
  await page.goto(`${gateway.url}/login`);
  await page.getByRole('button', { name: /政务人员/ }).click();
  await page.getByLabel(/用户名/).fill(gateway.person('supervisor').username);
  await page.getByLabel(/密码/).fill(gateway.person('supervisor').password);
  await page.getByRole('button', { name: /登录/ }).click();
  await page.waitForURL((url) => url.pathname === '/supervision');
  t.ok(await page.locator('#series-table tbody tr').count(), 'the dashboard’s tables without JavaScript');
  await page.goto(`${gateway.url}/supervision/events`);
  await page.locator('#events-outcome').selectOption('allowed');
  await page.locator('#events-form button[type="submit"]').click();
  await page.waitForURL(/outcome=allowed/);
  const outcomes = new Set(await page.locator('table.events tbody tr td:nth-child(5)').allTextContents());
  t.same([...outcomes], ['允许'], 'the filter form submits without JavaScript');
  const checker = await browser.newContext({ locale: 'zh-CN' });
  t.teardown(() => checker.close());
  await assertAccessibleWithoutScripts(t, checker, page, 'the audit trail');
}

t.test('the people’s pages in a browser: each demo person signs in and does what their role does', { skip }, async (t) => {
  const gateway = await peopleGateway(t, driver);
  const credentials = await seedDemoExchange(gateway);
  const verified = await demoVerify(gateway, credentials, PURPOSE);
  t.equal(verified.status, 200, 'the demo consumer verified the citizen’s student status');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  t.teardown(() => browser.close());
  const setting: Setting = { gateway, browser, outside: [] };

  await t.test('the supervisor: the dashboard with an overdue application and the chain status', (t) => supervisor(t, setting));
  await t.test('the supervisor verifies the chains now, reads the trail and one event', (t) => supervisorVerifies(t, setting));
  await t.test('the provider approves an application narrowed by a field', (t) => providerDecides(t, setting));
  await t.test('the consumer follows its own', (t) => consumerFollows(t, setting));
  await t.test('the citizen sees the verification with its Chinese purpose', (t) => citizenReads(t, setting));
  await t.test('without JavaScript: sign-in, the dashboard, the trail’s filters', (t) => withoutScripts(t, setting));
  t.same(setting.outside, [], 'no page asked for anything beyond the gateway');
});
