import t, { type Test } from 'tap';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { parse as parseCsv } from 'csv-parse/sync';
import { sql } from 'drizzle-orm';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { findResource } from '../../src/catalog/index.js';
import { rowsOf, type Driver } from '../../src/db/index.js';
import { DIVISIONS, seedOpenDemo, seedVillages, STATIONS } from '../../src/demo/open.js';
import { projectRoot } from '../../src/paths.js';
import { GRID_PAGE } from '../../src/portal/grid.js';
import { translator, type Locale } from '../../src/portal/i18n.js';
import { qualified, recordTable } from '../../src/records/index.js';
import { buildTestApp, freshDatabase, testDrivers } from '../helpers/app.js';
import { assertAccessible, assertAccessibleWithoutScripts, CHROMIUM } from '../helpers/axe.js';
import { freePort } from '../helpers/server.js';

const VILLAGES = DIVISIONS.villages.code;
const CONDITIONAL = '330000-HRSS-00003';
const COUNTY = '330106';
const SCREENSHOT = join(projectRoot, 'docs', 'portal-dataset.png');
const LOCALES: Locale[] = ['zh-Hans', 'en'];
const run = promisify(execFile);

// Debian's Chromium, which playwright-core drives as it is (no browser download): without it the
// file skips, and the rest of the suite runs.
const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (apt-get install chromium fonts-noto-cjk): the portal's browser tests need it`;

// One driver, not forEachDriver: the villages (620,573 rows) take about a minute to load on PGlite,
// and what a browser sees does not depend on the driver (the records' queries, filters and
// downloads are tested on both in test/open/). PostgreSQL when DATABASE_URL names one (CI), else PGlite.
const driver = testDrivers().at(-1) as Driver;
// The villages' load and two languages of pages, with and without JavaScript, take longer than
// the suite's 180 s a file (tap passes the new limit to the runner).
if (!skip) t.setTimeout(600_000);

/** A page of the portal in a language: Chinese by default, English by `?lang=en`. */
function pathIn(locale: Locale, path: string): string {
  if (locale === 'zh-Hans') return path;
  const [before, hash] = path.split('#');
  return `${before}${before?.includes('?') ? '&' : '?'}lang=en${hash === undefined ? '' : `#${hash}`}`;
}

interface Portal {
  base: string;
  browser: Browser;
  /** The villages of COUNTY in the database. */
  countyVillages: number;
  /** Where the item `county_code` is among the grid's columns (the catalog's item order). */
  countyColumn: number;
  /** Requests the pages made beyond the gateway (refused). */
  outside: string[];
}

/**
 * A browser context as a visitor has it: Chinese asked for by the browser (English only by
 * `?lang=en`, so that the tests see the language carried by links and forms), a 1280×900 window,
 * and nothing but the gateway on loopback (any other request is refused and remembered).
 */
async function visitor(t: Test, portal: Portal, javaScriptEnabled = true): Promise<BrowserContext> {
  const context = await portal.browser.newContext({ javaScriptEnabled, locale: 'zh-CN', viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  await context.route('**/*', (route) => {
    if (route.request().url().startsWith(`${portal.base}/`)) return route.continue();
    portal.outside.push(route.request().url());
    return route.abort('blockedbyclient');
  });
  t.teardown(() => context.close());
  return context;
}

/** Every page type, how it answers, and what it must show. */
const PAGE_TYPES = [
  { name: 'home', path: '/', status: 200, shows: '#home-q' },
  { name: 'search with results', path: `/datasets?q=${encodeURIComponent('行政区划')}`, status: 200, shows: `.cards a[href^="/datasets/${VILLAGES}"]` },
  { name: 'search without result', path: '/datasets?q=zzqqxx', status: 200, shows: '#results-title', empty: true },
  { name: 'dataset with its grid', path: `/datasets/${VILLAGES}`, status: 200, shows: '#preview table.grid tbody tr' },
  { name: 'located dataset with its map', path: `/datasets/${STATIONS}`, status: 200, shows: '#map-table tbody tr', map: true },
  { name: 'conditional dataset', path: `/datasets/${CONDITIONAL}`, status: 200, shows: '#terms pre.terms' },
  { name: 'providers', path: '/providers', status: 200, shows: '.cards a[href^="/providers/zj-stats"]' },
  { name: 'provider', path: '/providers/zj-stats', status: 200, shows: `.cards a[href^="/datasets/${VILLAGES}"]` },
  { name: 'dataset with a mistaken filter', path: `/datasets/${VILLAGES}?item=county_code&op=gte&value=x&cursor=nonsense`, status: 400, shows: '#grid-error' },
  { name: '404 page', path: '/no-such-page', status: 404, shows: '#error-title' },
  { name: '400 page', path: '/datasets?sort=nonsense', status: 400, shows: '#error-title' },
];

async function pageTypesAccessible(t: Test, portal: Portal, locale: Locale, javaScriptEnabled: boolean) {
  const context = await visitor(t, portal, javaScriptEnabled);
  const checker = javaScriptEnabled ? undefined : await visitor(t, portal);
  const page = await context.newPage();
  for (const type of PAGE_TYPES) {
    const response = await page.goto(`${portal.base}${pathIn(locale, type.path)}`);
    t.equal(response?.status(), type.status, `${type.name}: ${type.status}`);
    t.equal(await page.getAttribute('html', 'lang'), locale, `${type.name}: in ${locale}`);
    t.ok(await page.locator(type.shows).count(), `${type.name}: ${type.shows} is there`);
    if (type.empty) t.equal(await page.locator('.cards .card').count(), 0, `${type.name}: no dataset listed`);
    if (type.map && javaScriptEnabled) {
      // The map is drawn from the GeoJSON download, into a canvas beside the table of its points.
      await page.locator('[data-chart="map"][data-drawn]:not([hidden]) canvas').first().waitFor();
      t.pass('the map is drawn');
      await page.waitForFunction("document.querySelector('#map details').open === false", undefined, { timeout: 5000 }).catch(() => undefined);
      t.equal(await page.locator('#map details').getAttribute('open'), null, 'its table of points folds away, to be opened on demand');
    }
    if (!javaScriptEnabled) t.equal(await page.locator('[data-chart]:not([hidden])').count(), 0, `${type.name}: no chart without JavaScript (their tables stand)`);
    if (checker) {
      await assertAccessibleWithoutScripts(t, checker, page, `${type.name} (${locale})`);
      continue;
    }
    await assertAccessible(t, page, `${type.name} (${locale})`);
    // WCAG 1.4.10, which axe does not check: at 320 CSS pixels only the data tables scroll sideways.
    // (The charts redraw on the window's resize event, which may come a moment later.)
    await page.setViewportSize({ width: 320, height: 800 });
    await page.waitForFunction('document.documentElement.scrollWidth <= 320', undefined, { timeout: 5000 }).catch(() => undefined);
    t.equal(await page.evaluate('document.documentElement.scrollWidth'), 320, `${type.name}: reflows at 320 px`);
    await page.setViewportSize({ width: 1280, height: 900 });
  }
}

/** The grid's county codes, row by row. */
async function countyCodes(page: Page, portal: Portal): Promise<string[]> {
  return page.locator(`#preview table.grid tbody tr > :nth-child(${portal.countyColumn + 1})`).allTextContents();
}

/**
 * A visitor's way to the villages of a county: search from the home page, open the villages,
 * filter the grid, download what it shows, and run the API example the page prints.
 */
async function journey(t: Test, portal: Portal, locale: Locale, javaScriptEnabled: boolean) {
  const { t: text, number } = translator(locale);
  const context = await visitor(t, portal, javaScriptEnabled);
  const page = await context.newPage();
  await page.goto(`${portal.base}${pathIn(locale, '/')}`);

  await page.getByLabel(text('search.label')).fill('行政区划');
  await Promise.all([page.waitForURL('**/datasets?*'), page.getByRole('button', { name: text('search.submit') }).click()]);
  const searched = new URL(page.url());
  t.equal(searched.searchParams.get('q'), '行政区划', 'the search page has the words');
  t.equal(searched.searchParams.get('lang'), locale === 'en' ? 'en' : null, 'and the language asked for');
  t.equal(await page.getAttribute('html', 'lang'), locale);

  const title = locale === 'en' ? 'Village-level divisions of China' : '村级区划';
  await Promise.all([page.waitForURL(`**/datasets/${VILLAGES}*`), page.getByRole('link', { name: title, exact: true }).click()]);
  t.equal(await page.locator('h1').textContent(), title, 'the villages dataset page');

  const filter = page.getByRole('group', { name: text('grid.filter') });
  await filter.getByLabel(text('grid.item')).selectOption('county_code');
  await filter.getByLabel(text('grid.op')).selectOption('eq');
  await filter.getByLabel(text('grid.value')).fill(COUNTY);
  // With JavaScript, htmx swaps the grid in and pushes its address; without, the form loads the page.
  await Promise.all([
    page.waitForURL((url) => url.searchParams.get('value') === COUNTY),
    filter.getByRole('button', { name: text('grid.apply') }).click(),
  ]);
  const status = page.locator('#grid-status');
  const shown = Math.min(GRID_PAGE, portal.countyVillages);
  const counted = text('grid.count', { from: number(1), to: number(shown), total: number(portal.countyVillages) });
  await status.filter({ hasText: counted }).waitFor();
  t.pass(`the status says ${counted}`);
  const codes = await countyCodes(page, portal);
  t.equal(codes.length, shown, 'a page of rows');
  t.same([...new Set(codes)], [COUNTY], `every row is in county ${COUNTY}`);
  if (javaScriptEnabled) {
    t.equal(await page.evaluate('document.activeElement && document.activeElement.id'), 'grid-status', 'after the swap, focus is on the status (screen readers hear the count)');
    await assertAccessible(t, page, `the filtered grid (${locale})`);
  } else {
    t.equal(new URL(page.url()).hash, '#preview', 'the page opens at the grid');
  }

  const link = status.getByRole('link', { name: text('grid.download_filtered', { total: number(portal.countyVillages) }) });
  const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
  t.match(download.url(), `${portal.base}/v1/open/datasets/${VILLAGES}/download.csv?`, 'the filtered download is the gateway\'s');
  const rows = parseCsv(readFileSync(await download.path()), { columns: true, bom: true, record_delimiter: '\r\n' }) as Array<Record<string, string>>;
  t.equal(rows.length, portal.countyVillages, 'the CSV has every village of the county the database has');
  t.same([...new Set(rows.map((row) => row.county_code))], [COUNTY], 'and only those');

  await page.locator('nav.tabs').getByRole('link', { name: text('dataset.tab.api') }).click();
  t.equal(new URL(page.url()).hash, '#api', 'the API section is linked');
  const heading = await page.locator('#api-title').boundingBox();
  t.ok(heading && heading.y >= 0 && heading.y < 900, `and scrolled to, its heading in view (at y ${heading?.y})`);
  const curl = (await page.locator('#api code.example[data-example="curl"]').textContent()) ?? '';
  t.match(curl, `curl -sSg -G '${portal.base}/v1/open/datasets/${VILLAGES}/records'`, 'the curl example calls this gateway');
  const { stdout } = await run('bash', ['-c', curl], { timeout: 30_000 });
  const answer = JSON.parse(stdout) as { items: Array<Record<string, unknown>>; total: number };
  t.ok(answer.items.length > 0, 'the example answers records');
  t.same([...new Set(answer.items.map((item) => item.county_code))], [COUNTY], 'of the filtered county');
  t.equal(answer.total, portal.countyVillages, 'with the same total');
}

/** Tab from the top of the page: the skip link first, then on to the grid's filter. */
async function keyboard(t: Test, portal: Portal) {
  const context = await visitor(t, portal);
  const page = await context.newPage();
  await page.goto(`${portal.base}/datasets/${VILLAGES}`);
  const focused = () => page.evaluate('document.activeElement ? document.activeElement.id || document.activeElement.className || document.activeElement.tagName : null');
  await page.keyboard.press('Tab');
  t.equal(await focused(), 'skip', 'the first Tab reaches the skip link');
  const skipBox = await page.locator('a.skip').boundingBox();
  t.ok(skipBox && skipBox.x >= 0 && skipBox.y >= 0, 'which shows when focused');
  await page.keyboard.press('Enter');
  t.equal(await focused(), 'main', 'Enter on it moves focus to the content');
  let presses = 0;
  while ((await focused()) !== 'grid-item' && presses < 400) {
    await page.keyboard.press('Tab');
    presses += 1;
  }
  t.equal(await focused(), 'grid-item', `Tab reaches the grid's item (${presses} presses from the content)`);
  // A closed select changes its value with the arrow keys.
  const chosen = () => page.evaluate('document.activeElement.value');
  for (let step = 0; (await chosen()) !== 'county_code' && step < 10; step++) await page.keyboard.press('ArrowDown');
  t.equal(await chosen(), 'county_code', 'the arrow keys choose the item');
  for (const next of ['grid-op', 'grid-value']) {
    await page.keyboard.press('Tab');
    t.equal(await focused(), next, `then ${next}`);
  }
  await page.keyboard.type(COUNTY);
  await page.keyboard.press('Tab');
  t.equal(await page.evaluate('document.activeElement && document.activeElement.textContent'), translator('zh-Hans').t('grid.apply'), 'then the apply button');
  await page.keyboard.press('Enter');
  await page.waitForURL((url) => url.searchParams.get('value') === COUNTY);
  await page.locator('#grid-status').filter({ hasText: translator('zh-Hans').number(portal.countyVillages) }).waitFor();
  t.pass('the filter works from the keyboard alone');
}

/** The README's picture of a dataset page (zh), 1280 wide: from the top down to the end of its grid. */
async function screenshot(t: Test, portal: Portal) {
  const context = await visitor(t, portal);
  const page = await context.newPage();
  await page.goto(`${portal.base}/datasets/${VILLAGES}`);
  const grid = await page.locator('.preview-section').boundingBox();
  const clip = { x: 0, y: 0, width: 1280, height: Math.min(Math.ceil((grid?.y ?? 0) + (grid?.height ?? 900) + 24), 3000) };
  const image = await page.screenshot({ type: 'png', fullPage: true, clip });
  t.ok(image.length < 400 * 1024, `the screenshot is small (${Math.round(image.length / 1024)} KB, 1280×${clip.height})`);
  // Written when missing, and again with tap's --snapshot: the page shows the import's time, so a
  // picture taken on every run would change the tracked file on every run.
  if (t.writeSnapshot || !existsSync(SCREENSHOT)) {
    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    writeFileSync(SCREENSHOT, image);
    t.equal(statSync(SCREENSHOT).size, image.length, `saved ${SCREENSHOT}`);
  }
}

t.test('the portal in a browser: accessibility, the search-to-download journey, keyboard', { skip }, async (t) => {
  const database = await freshDatabase(t, driver);
  // The API examples print the public URL: the port is chosen before the app is built, so that
  // they run as printed against this loopback server.
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const app = await buildTestApp(t, driver, { database, env: { PUBLIC_URL: base, RATE_LIMIT_ANONYMOUS_PER_MINUTE: '1000000' } });
  const loading = Date.now();
  await seedOpenDemo(database, 'small');
  await seedVillages(database);
  t.comment(`open demo data with the villages loaded on ${driver} in ${Math.round((Date.now() - loading) / 1000)} s`);
  await app.listen({ port, host: '127.0.0.1' });

  const counted = rowsOf<{ count: number }>(
    await database.db.execute(sql.raw(`select count(*)::int as count from ${qualified(recordTable(VILLAGES))} where county_code = '${COUNTY}'`)),
  );
  const countyVillages = Number(counted[0]?.count);
  t.ok(countyVillages > 20, `county ${COUNTY} has more villages than a grid page (${countyVillages})`);
  const villages = await findResource(database.db, VILLAGES);
  const countyColumn = villages?.document.items.findIndex((item) => item.name === 'county_code') ?? -1;
  t.ok(countyColumn >= 0, 'the villages have the item county_code');

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  t.teardown(() => browser.close());
  t.comment(`${CHROMIUM} ${browser.version()}`);
  const portal: Portal = { base, browser, countyVillages, countyColumn, outside: [] };

  for (const locale of LOCALES) {
    await t.test(`axe: every page type in ${locale}, with JavaScript`, (t) => pageTypesAccessible(t, portal, locale, true));
    await t.test(`axe: every page type in ${locale}, without JavaScript`, (t) => pageTypesAccessible(t, portal, locale, false));
    await t.test(`journey in ${locale}: search, the villages, a county's grid, its CSV, its API call`, (t) => journey(t, portal, locale, true));
    await t.test(`journey in ${locale} without JavaScript: forms submit, pages load whole`, (t) => journey(t, portal, locale, false));
  }
  await t.test('keyboard: the skip link first, the grid filter reachable and usable', (t) => keyboard(t, portal));
  await t.test('screenshot of the dataset page for the README', (t) => screenshot(t, portal));
  t.same(portal.outside, [], 'the pages asked for nothing beyond the gateway');
});
