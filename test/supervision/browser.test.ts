import t, { type Test } from 'tap';
import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { eq } from 'drizzle-orm';
import type { Driver } from '../../src/db/index.js';
import { applications, grants } from '../../src/db/schema.js';
import type { DemoPerson } from '../../src/demo/people.js';
import { testDrivers } from '../helpers/app.js';
import { assertAccessible, CHROMIUM } from '../helpers/axe.js';
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
  const overdue = page.locator('#applications-title ~ table tbody tr').first();
  t.match(await overdue.textContent(), /已逾期 \d+ 天/, 'the overdue application first, marked in words');
  await page.getByRole('link', { name: '最近 7 天' }).click();
  await page.waitForURL(/period=7d/);
  const days = await page.locator('#series-table tbody tr').count();
  t.ok(days >= 7 && days <= 8, `seven days: a row for each day they touch (${days})`);
  await assertAccessible(t, page, 'the dashboard, 7 days');
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

  t.same(setting.outside, [], 'no page asked for anything beyond the gateway');
  void applications;
  void grants;
  void eq;
});
