import t, { type Test } from 'tap';
import * as cheerio from 'cheerio';
import { parse } from 'csv-parse/sync';
import { and, eq } from 'drizzle-orm';
import type { App } from '../../src/app.js';
import type { Driver } from '../../src/db/index.js';
import { auditEvents } from '../../src/db/schema.js';
import { DIVISIONS, seedOpenDemo, STATIONS, stations } from '../../src/demo/open.js';
import { catalogueKeys } from '../../src/portal/i18n.js';
import { buildTestApp, forEachDriver, freshDatabase } from '../helpers/app.js';
import { assertProblem } from '../helpers/problem.js';

const TOWNS = DIVISIONS.towns.code;
const COUNTIES = DIVISIONS.counties.code;
const CONDITIONAL = '330000-HRSS-00003';
const NAME_EN = 'Statistics Bureau of Zhejiang Province';
const HTML = { accept: 'text/html,application/xhtml+xml' };
type Injected = Awaited<ReturnType<App['inject']>>;

/** Every catalogue key, to make sure none is shown as it is (a text missing from a catalogue). */
const keys = catalogueKeys('zh-Hans');

function page(t: Test, response: Injected, status = 200) {
  t.equal(response.statusCode, status, `${status} for ${response.raw.req?.url ?? 'the page'}`);
  t.match(response.headers['content-type'], /^text\/html; charset=utf-8/);
  const $ = cheerio.load(response.body);
  const text = $('body').text();
  const raw = keys.filter((key) => text.includes(key) || response.body.includes(`>${key}<`));
  t.same(raw, [], 'no catalogue key is shown instead of its text');
  t.equal($('main#main').length, 1, 'one main landmark');
  t.equal($('h1').length, 1, 'one h1');
  return $;
}

const texts = ($: cheerio.CheerioAPI, selector: string) => $(selector).map((_i, element) => $(element).text().trim()).get();
const hrefs = ($: cheerio.CheerioAPI, selector: string) => $(selector).map((_i, element) => $(element).attr('href') as string).get();

t.test('catalogues: the same keys in every language', async (t) => {
  t.same(catalogueKeys('en'), catalogueKeys('zh-Hans'));
  t.ok(keys.length > 150, `${keys.length} texts`);
});

forEachDriver(t, 'the portal over the open demo data', async (t: Test, driver: Driver) => {
  const database = await freshDatabase(t, driver);
  const app = await buildTestApp(t, driver, { database, env: { RATE_LIMIT_ANONYMOUS_PER_MINUTE: '100000', RATE_LIMIT_CLIENT_PER_MINUTE: '100000' } });
  await seedOpenDemo(database, 'small');
  const get = (url: string, headers: Record<string, string> = {}) => app.inject({ url, headers: { ...HTML, ...headers } });
  const api = async (url: string) => (await app.inject({ url })).json();
  const openDatasets: Array<{ code: string; row_count: number; provider: string }> = (await api('/v1/open/datasets?limit=200')).items;

  await t.test('home: counts, themes with their table, recently updated', async (t) => {
    const response = await get('/');
    const $ = page(t, response);
    t.equal($('html').attr('lang'), 'zh-Hans', 'Chinese first');
    t.equal(response.headers['content-language'], 'zh-Hans');
    t.match(String(response.headers.vary), /Accept-Language/);
    t.equal(response.headers['cache-control'], 'public, max-age=60');
    t.match(response.headers.etag, /^"/, 'an ETag');
    const counts = texts($, '.counts dd');
    const rows = openDatasets.reduce((sum, dataset) => sum + dataset.row_count, 0);
    t.same(counts, [String(openDatasets.length), String(new Set(openDatasets.map((d) => d.provider)).size), rows.toLocaleString('zh-Hans')]);
    t.ok(texts($, '#themes-table tbody th').includes('区划地名'), 'the regions theme is in the table');
    t.equal($('[data-chart=bar][data-table=themes-table]').length, 1, 'the chart draws from the table');
    t.equal($('.cards .card').length, 6, 'six recently updated datasets');
    t.ok(hrefs($, '.card h3 a').every((href) => /^\/datasets\/[0-9]{6}-[A-Z]+-[0-9]{5}$/.test(href)));
    t.equal($('form[role=search][action="/datasets"] input[name=q]').length, 1, 'a search box that works without JavaScript');
    t.ok($('script[src="/assets/htmx.min.js"]').length && $('link[rel=stylesheet][href="/assets/portal.css"]').length, 'assets from the gateway');
    t.notOk(/https?:\/\/(?!127\.0\.0\.1)[^"]+\.(js|css)"/.test(response.body), 'no asset from outside');

    const again = await get('/', { 'if-none-match': response.headers.etag as string });
    t.equal(again.statusCode, 304, 'revalidated');
  });

  await t.test('English by ?lang=en or Accept-Language, and links keep ?lang', async (t) => {
    const byQuery = page(t, await get('/?lang=en'));
    t.equal(byQuery('html').attr('lang'), 'en');
    t.equal(byQuery('h1').text(), 'Open public data');
    t.ok(hrefs(byQuery, 'header nav a').filter((href) => href.startsWith('/datasets') || href.startsWith('/providers')).every((href) => href.endsWith('lang=en')), 'navigation keeps the language');
    t.equal(byQuery('form[role=search] input[name=lang]').val(), 'en', 'the search form carries it on');
    const byHeader = page(t, await get('/', { 'accept-language': 'en-US,en;q=0.9' }));
    t.equal(byHeader('html').attr('lang'), 'en');
    t.notOk(hrefs(byHeader, 'header nav a').some((href) => href.includes('lang=')), 'no ?lang when the browser chose');
    const chinese = page(t, await get('/', { 'accept-language': 'zh-TW,zh;q=0.9,en;q=0.5' }));
    t.equal(chinese('html').attr('lang'), 'zh-Hans');
    const switcher = byHeader('.languages a');
    t.same(switcher.map((_i, a) => byHeader(a).attr('hreflang')).get(), ['zh-Hans', 'en']);
    t.equal(byHeader('.languages a[aria-current]').attr('hreflang'), 'en');
    t.same(hrefs(byHeader, 'link[rel=alternate][hreflang]'), ['/?lang=zh-Hans', '/?lang=en']);
  });

  await t.test('search: relevance first, facets with counts, sort, shareable keyset pages', async (t) => {
    const $ = page(t, await get(`/datasets?q=${encodeURIComponent('行政区划')}`));
    const found = hrefs($, '#results .card h3 a').map((href) => href.split('/').pop());
    t.same(found, ['330000-STATS-00001', '330000-STATS-00002', '330000-STATS-00003', '330000-STATS-00004', '330000-STATS-00005'], 'the divisions');
    t.match($('#results-title').text(), /共 5 个数据集/);
    t.match($('h1').text(), /行政区划/);
    const themeOptions = texts($, '#facet-theme option');
    t.same(themeOptions, ['全部', '区划地名 (5)'], 'the theme facet counts the matches');

    // A three-character query inside a longer name, and one that matches nothing.
    const villages = page(t, await get(`/datasets?q=${encodeURIComponent('村级区')}`));
    t.same(hrefs(villages, '#results .card h3 a'), ['/datasets/330000-STATS-00005']);
    const none = page(t, await get(`/datasets?q=${encodeURIComponent('没有这样的数据')}`));
    t.equal(none('#results .card').length, 0);
    t.equal(none('#results-title').text().trim(), '没有找到符合条件的数据集');

    // Facets narrow and are removable; their values are labelled.
    const regions = page(t, await get('/datasets?theme=environment&open=unconditional'));
    t.ok(regions('#results .card').length > 0);
    t.equal(regions('#facet-theme option[selected]').val(), 'environment');
    t.same(texts(regions, '.active a'), ['取消：主题: 生态环境', '取消：开放属性: 无条件开放']);
    t.ok(hrefs(regions, '.active a').every((href) => !href.includes('cursor')));

    // Every page of the whole list, 20 at a time, once each, by following "next".
    const seen: string[] = [];
    let next: string | undefined = '/datasets?sort=name';
    let pages = 0;
    while (next) {
      const current = page(t, await get(next));
      seen.push(...hrefs(current, '#results .card h3 a').map((href) => href.split('/').pop() as string));
      next = current('#results .pager a[rel=next]').attr('href');
      pages += 1;
    }
    t.equal(seen.length, openDatasets.length, 'every open dataset once');
    t.equal(new Set(seen).size, seen.length, 'no dataset twice');
    t.equal(pages, Math.ceil(openDatasets.length / 20));

    const updated = page(t, await get('/datasets?sort=updated'));
    t.equal(updated('#sort option[selected]').val(), 'updated');

    const forged = await get('/datasets?cursor=bm90LW91cnM');
    const error = page(t, forged, 400);
    t.match(error('.error-page').text(), /invalid_cursor/);
    const bad = page(t, await get('/datasets?theme=nonsense'), 400);
    t.match(bad('.error-page').text(), /invalid_request/);
  });

  await t.test('search: htmx gets the results alone, from the same template', async (t) => {
    const response = await get('/datasets?theme=regions', { 'hx-request': 'true', 'hx-target': 'results' });
    t.equal(response.statusCode, 200);
    t.notMatch(response.body, /<html/);
    const $ = cheerio.load(response.body);
    t.equal($('section .card').length, 5);
    const full = cheerio.load((await get('/datasets?theme=regions')).body);
    t.equal($('section').html(), full('#results section').html(), 'the same fragment as in the page');
  });

  await t.test('dataset page: facts, schema, the grid as the records API answers it', async (t) => {
    const towns: Array<Record<string, string>> = (await api(`/v1/open/datasets/${TOWNS}/records?limit=40`)).items;
    const response = await get(`/datasets/${TOWNS}`);
    const $ = page(t, response);
    t.equal($('h1').text(), '乡级行政区划');
    t.match($('#about .facts').text(), /330000-STATS-00004/);
    t.match($('#about').text(), /creativecommons\.org\/licenses\/by\/4\.0/);
    t.match($('#about a[href^="mailto:"]').attr('href'), /^mailto:.+@/, 'report a problem to the contact point');
    t.same(texts($, '#schema tbody th code'), ['code', 'name', 'county_code', 'city_code', 'province_code']);
    t.same(texts($, '#preview table.grid tbody tr th'), towns.slice(0, 20).map((row) => row.code), 'the first page, in key order');
    t.match($('#grid-status').text(), /第 1–20 条/);
    t.equal(response.headers['last-modified'] !== undefined, true);

    // Next page by cursor: the API's rows 21–40.
    const nextHref = $('#preview .pager a[rel=next]').attr('href') as string;
    const second = page(t, await get(nextHref.replace('#preview', '')));
    t.same(texts(second, '#preview table.grid tbody tr th'), towns.slice(20, 40).map((row) => row.code));
    t.match(second('#grid-status').text(), /第 21–40 条/);
    t.ok(second('#preview .pager a:not([rel])').attr('href'), 'a link back to the first page');

    // Sorting by a column: descending after ascending.
    const sortHref = $('#preview th[aria-sort] a').first().attr('href') as string;
    t.match(sortHref, /order=code/);
    const descending = page(t, await get(`/datasets/${TOWNS}?order=-code`));
    const last = (await api(`/v1/open/datasets/${TOWNS}/records?order=-code&limit=1`)).items[0].code;
    t.equal(descending('#preview table.grid tbody tr th').first().text(), last);
    t.equal(descending('#preview th[aria-sort=descending]').length, 1);

    // JSON-LD for dataset search engines, and the DCAT and Data Package alternates.
    const ld = JSON.parse($('script[type="application/ld+json"]').text());
    t.equal(ld['@type'], 'Dataset');
    t.equal(ld.identifier, TOWNS);
    t.ok(ld.distribution.some((d: { contentUrl: string }) => d.contentUrl.endsWith(`/v1/open/datasets/${TOWNS}/download.csv`)));
    t.same(hrefs($, 'link[rel=alternate][type]'), ['/catalog.jsonld', '/catalog.ttl', `/v1/open/datasets/${TOWNS}/datapackage.json`]);
    // Every download link answers.
    for (const href of hrefs($, '#downloads a')) t.equal((await app.inject({ url: href, method: 'HEAD' })).statusCode, 200, href);
    t.equal($('#downloads .size').length, 4, 'a size (or "generated on request") per format: CSV, JSON, NDJSON, XLSX (no GeoJSON without coordinates)');
    t.ok(texts($, '#history tbody td').includes('数据导入'), 'the import is in the history');
  });

  await t.test('dataset page: a filtered grid, its download and its API examples', async (t) => {
    const county = '330106';
    const expected = await api(`/v1/open/datasets/${TOWNS}/records?where[county_code][eq]=${county}&limit=1000`);
    const $ = page(t, await get(`/datasets/${TOWNS}?item=county_code&op=eq&value=${county}`));
    const rows = $('#preview table.grid tbody tr');
    t.equal(rows.length, Math.min(20, expected.items.length));
    t.ok(rows.map((_i, row) => $(row).find('td').eq(1).text()).get().every((code) => code === county), 'every row is of the county');
    t.match($('#grid-status').text(), new RegExp(`共 ${expected.total} 条`));
    t.equal($('#grid-item option[selected]').val(), 'county_code');
    const download = $('#preview a.download').attr('href') as string;
    t.equal(download, `/v1/open/datasets/${TOWNS}/download.csv?where%5Bcounty_code%5D%5Beq%5D=${county}`);
    const csv = await app.inject({ url: download });
    t.equal(csv.statusCode, 200);
    t.equal((parse(csv.body, { columns: true }) as unknown[]).length, expected.total, 'the download has the rows the grid counts');
    const curl = $('#api code[data-example=curl]').text();
    t.match(curl, `curl -sSg -G 'http://127.0.0.1:3000/v1/open/datasets/${TOWNS}/records'`);
    t.match(curl, `--data-urlencode 'where[county_code][eq]=${county}'`);
    t.match($('#api code[data-example=python]').text(), /urllib\.parse\.urlencode\(\{"where\[county_code\]\[eq\]": "330106", "limit": "5"\}\)/);
    t.match($('#api code[data-example=javascript]').text(), /fetch\(/);

    const prefix = page(t, await get(`/datasets/${TOWNS}?item=name&op=prefix&value=${encodeURIComponent('西湖')}`));
    t.ok(texts(prefix, '#preview table.grid tbody td:first-of-type').every((name) => name.startsWith('西湖')));
  });

  await t.test('dataset page: htmx swaps the grid alone', async (t) => {
    const response = await get(`/datasets/${TOWNS}?item=county_code&op=eq&value=330106`, { 'hx-request': 'true', 'hx-target': 'preview' });
    t.equal(response.statusCode, 200);
    t.notMatch(response.body, /<html|<h1/);
    const $ = cheerio.load(response.body);
    t.equal($('form.grid-filter').length, 1);
    t.ok($('table.grid tbody tr').length > 0);
  });

  await t.test('dataset page: mistakes are shown on the page, with 400', async (t) => {
    const unknown = page(t, await get(`/datasets/${TOWNS}?item=bogus&op=eq&value=1`), 400);
    t.match(unknown('#grid-error[role=alert]').text(), /bogus/);
    t.equal(unknown('table.grid').length, 0);
    const forged = page(t, await get(`/datasets/${TOWNS}?cursor=${Buffer.from('{"o":"code","k":[1],"n":0}').toString('base64url')}`), 400);
    t.match(forged('#grid-error').text(), /cursor/);
    const order = page(t, await get(`/datasets/${TOWNS}?order=nonsense`), 400);
    t.match(order('#grid-error').text(), /nonsense/);
    const badCode = page(t, await get('/datasets/not-a-code'), 400);
    t.match(badCode('.error-page').text(), /invalid_request/);
    const missing = page(t, await get('/datasets/330000-STATS-09999'), 404);
    t.match(missing('h1').text(), '页面不存在');
    t.match(missing('.detail').text(), '330000-STATS-09999');
  });

  await t.test('every dataset page view is on the audit trail, as a records read', async (t) => {
    const response = await get(`/datasets/${COUNTIES}?lang=en`);
    page(t, response);
    const auditId = response.headers['x-audit-id'] as string;
    t.ok(auditId, 'the answer names its record');
    const [record] = await database.db.select().from(auditEvents).where(and(eq(auditEvents.id, auditId), eq(auditEvents.requestId, response.headers['x-request-id'] as string)));
    t.equal(record?.action, 'open.records');
    t.equal(record?.resource, COUNTIES);
    t.equal(record?.rowCount, 20);
    t.equal(record?.outcome, 'allowed');

    // The same page again is the kept one (same ETag), and is on the trail all the same; so is a 304.
    const again = await get(`/datasets/${COUNTIES}?lang=en`);
    t.equal(again.headers.etag, response.headers.etag, 'the same page');
    t.not(again.headers['x-audit-id'], auditId, 'a record of its own');
    const revalidated = await get(`/datasets/${COUNTIES}?lang=en`, { 'if-none-match': response.headers.etag as string });
    t.equal(revalidated.statusCode, 304);
    const records = await database.db.select().from(auditEvents).where(and(eq(auditEvents.resource, COUNTIES), eq(auditEvents.action, 'open.records')));
    t.same(records.map((row) => row.status).sort(), [200, 200, 304], 'three views, three records');
  });

  await t.test('the map of the air-quality stations, with its table', async (t) => {
    const $ = page(t, await get(`/datasets/${STATIONS}`));
    t.equal($('#map [data-chart=map]').attr('data-geojson'), `/v1/open/datasets/${STATIONS}/download.geojson`);
    t.equal($('#map-table tbody tr').length, [...stations()].length, 'every station in the table');
    const geojson = await app.inject({ url: `/v1/open/datasets/${STATIONS}/download.geojson` });
    t.equal(geojson.json().features.length, [...stations()].length, 'the map draws the same points');
    const towns = page(t, await get(`/datasets/${TOWNS}`));
    t.equal(towns('#map').length, 0, 'no map without coordinates');
  });

  await t.test('a conditional dataset: its terms and what an agency does, no grid', async (t) => {
    const $ = page(t, await get(`/datasets/${CONDITIONAL}`));
    const terms = await api(`/v1/open/datasets/${CONDITIONAL}/terms`);
    t.equal($('#terms pre.terms').text(), terms.text);
    t.match($('#terms code').text(), terms.sha256, 'the curl that accepts them, with their digest');
    t.equal($('#preview').length, 0);
    t.equal($('#downloads').length, 0);
    t.equal($('.tags .open-conditional').text(), '有条件开放');
  });

  await t.test('providers and a provider with its datasets', async (t) => {
    const $ = page(t, await get('/providers'));
    t.ok(hrefs($, '.card h2 a').includes('/providers/zj-stats'));
    const stats = page(t, await get('/providers/zj-stats?lang=en'));
    t.equal(stats('h1').text(), NAME_EN);
    t.equal(stats('.cards .card').length, openDatasets.filter((dataset) => dataset.provider === 'zj-stats').length);
    t.match(stats('.facts').text(), /@/);
    const missing = page(t, await get('/providers/zj-nobody'), 404);
    t.match(missing('.detail').text(), 'zj-nobody');
  });

  await t.test('unrouted paths: a page for browsers, problem+json for the API', async (t) => {
    const browser = page(t, await get('/no/such/page'), 404);
    t.match(browser('.detail').text(), '/no/such/page');
    t.match(browser('.error-page code').first().text(), 'not_found');
    assertProblem(t, await app.inject({ url: '/no/such/page', headers: { accept: 'application/json' } }), 404, 'not_found');
    assertProblem(t, await app.inject({ url: '/v1/open/nothing', headers: HTML }), 404, 'not_found');
    assertProblem(t, await app.inject({ url: '/v1/open/datasets/bad', headers: HTML }), 400, 'invalid_request');
  });

  await t.test('assets: served by the gateway, nothing else from their folders', async (t) => {
    for (const asset of ['/assets/portal.css', '/assets/portal.js', '/assets/htmx.min.js', '/assets/echarts.min.js']) {
      const response = await app.inject({ url: asset });
      t.equal(response.statusCode, 200, asset);
      t.match(response.headers['cache-control'], /max-age=3600/);
    }
    const htmx = await app.inject({ url: '/assets/htmx.min.js' });
    t.match(htmx.body, /version:"2\.0\./, 'htmx 2.0');
    t.equal((await app.inject({ url: '/assets/package.json' })).statusCode, 404);
    t.equal((await app.inject({ url: '/assets/htmx.js' })).statusCode, 404);
  });
});

forEachDriver(t, 'portal pages have a rate limit, answered as a page', async (t: Test, driver: Driver) => {
  const app = await buildTestApp(t, driver, { env: { RATE_LIMIT_ANONYMOUS_PER_MINUTE: '3' } });
  for (let i = 0; i < 3; i++) t.equal((await app.inject({ url: '/providers', headers: HTML })).statusCode, 200);
  const limited = await app.inject({ url: '/providers', headers: HTML });
  const $ = page(t, limited, 429);
  t.match($('.error-page').text(), /rate_limited/);
  t.ok(limited.headers['retry-after'], 'Retry-After');
});
