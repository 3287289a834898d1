import t, { type Test } from 'tap';
import { parse as parseCsv } from 'csv-parse/sync';
import { sql } from 'drizzle-orm';
import XLSX from 'xlsx';
import type { App } from '../../src/app.js';
import { findResource, type Resource } from '../../src/catalog/index.js';
import type { Driver } from '../../src/db/index.js';
import { STATIONS } from '../../src/demo/open.js';
import { findDataset, type Dataset } from '../../src/open/datasets.js';
import { encodeRecords } from '../../src/open/formats.js';
import { loadRecords } from '../../src/records/import.js';
import { qualified, recordTable } from '../../src/records/tables.js';
import { buildTestApp, forEachDriver, freshDatabase, spyOnCopies } from '../helpers/app.js';

type Row = Record<string, unknown>;
type Injected = Awaited<ReturnType<App['inject']>>;

/**
 * Texts a spreadsheet would run, and what the CSV for spreadsheets (bom=true) writes for each:
 * a leading ' when the first character is =, +, -, @, a tab or a CR, unless the whole text is a
 * decimal number. The plain CSV, JSON and XLSX keep every one exactly.
 */
const TEXTS: Array<[stored: string, forSpreadsheets: string]> = [
  ['=HYPERLINK("http://example.invalid","x")', `'=HYPERLINK("http://example.invalid","x")`],
  ['+SUM(1,2)', "'+SUM(1,2)"],
  ["-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"],
  ['@SUM(A1:A2)', "'@SUM(A1:A2)"],
  ['-', "'-"],
  ['-1+1', "'-1+1"],
  ['-12.5', '-12.5'],
  ['+86', '+86'],
  ['-1e5', '-1e5'],
  ['12,5', '12,5'],
  ["'quoted already", "'quoted already"],
  ['a=1+2', 'a=1+2'],
  ['普通文本 =1', '普通文本 =1'],
];
// An import trims its values, so texts that begin with a tab or a CR are written to the table directly.
const UNTRIMMED: Array<[stored: string, forSpreadsheets: string]> = [
  ['\t=1+2', "'\t=1+2"],
  ['\r=1+2', "'\r=1+2"],
];
const ALL = [...TEXTS, ...UNTRIMMED];
const LONGITUDE = -12.5;
const LATITUDE = -33.25;
const TEXT_ITEMS = ['station_code', 'name', 'address'];

const codeOf = (index: number) => `T${String(index).padStart(3, '0')}`;
const FORMULA_START = /^[-=+@\t\r]/;
const DECIMAL = /^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$/;

function csvRows(t: Test, response: Injected, bom: boolean): Row[] {
  t.equal(response.statusCode, 200, 'status 200');
  t.equal(response.headers['content-type'], 'text/csv; charset=utf-8');
  t.match(response.headers['content-disposition'], /^attachment; filename="330000-ENV-00001\.csv"/);
  const body = response.rawPayload;
  t.equal(body.subarray(0, 3).equals(Buffer.from([0xef, 0xbb, 0xbf])), bom, bom ? 'starts with the byte order mark' : 'no byte order mark');
  return parseCsv(body, { columns: true, bom: true, record_delimiter: '\r\n' }) as Row[];
}

/** What a spreadsheet sees in the sheet XML: every text an inline string, no formula, no hyperlink. */
function xlsxCells(t: Test, body: Buffer, header: string[]): Row[] {
  const zip = XLSX.CFB.read(body, { type: 'buffer' });
  const entry = XLSX.CFB.find(zip, '/xl/worksheets/sheet1.xml');
  const xml = Buffer.from(entry?.content as Uint8Array).toString('utf8');
  t.notMatch(xml, /<f[ >]/, 'no <f> (formula) element in the sheet');
  t.notMatch(xml, /<hyperlink/, 'no hyperlink in the sheet');
  t.notMatch(xml, /t="str"/, 'no formula-string cell');
  t.match(xml, /<c r="B2" t="inlineStr"><is><r><t>=HYPERLINK\(&quot;http:\/\/example\.invalid&quot;,&quot;x&quot;\)<\/t><\/r><\/is><\/c>/, 'the text is an inline string, as stored');
  const book = XLSX.read(body, { type: 'buffer', cellFormula: true });
  const sheet = book.Sheets[book.SheetNames[0] as string] as XLSX.WorkSheet;
  const rows: Row[] = [];
  const range = XLSX.utils.decode_range(sheet['!ref'] as string);
  for (let r = 0; r <= range.e.r; r++) {
    const row: Row = {};
    header.forEach((name, c) => {
      const cell = sheet[XLSX.utils.encode_cell({ r, c })] as XLSX.CellObject | undefined;
      if (cell?.f !== undefined) t.fail(`a formula in ${XLSX.utils.encode_cell({ r, c })}: ${cell.f}`);
      row[name] = cell ? { t: cell.t, v: cell.v } : null;
    });
    rows.push(row);
  }
  return rows;
}

forEachDriver(t, 'formula injection: XLSX cells are typed, the CSV for spreadsheets neutralises formulas', async (t: Test, driver: Driver) => {
  const database = await freshDatabase(t, driver);
  // Which downloads went through COPY (PostgreSQL's whole-dataset CSV).
  const copies = spyOnCopies(database);
  const app = await buildTestApp(t, driver, { database, env: { RATE_LIMIT_ANONYMOUS_PER_MINUTE: '100000' } });
  const resource = (await findResource(database.db, STATIONS))?.document as Resource;
  async function* rows() {
    for (const [index, [text]] of TEXTS.entries()) {
      yield {
        line: index + 1,
        values: { station_code: codeOf(index), name: text, station_type: text, region_code: '330100', address: text, longitude: LONGITUDE, latitude: LATITUDE, started_on: '2020-01-01' },
      };
    }
  }
  await loadRecords(database, resource, rows(), { source: 'formula test' }, () => '0'.repeat(64));
  for (const [offset, [text]] of UNTRIMMED.entries()) {
    await database.db.execute(sql`insert into ${sql.raw(qualified(recordTable(STATIONS)))} (station_code, name, station_type, region_code, address, longitude, latitude)
      values (${codeOf(TEXTS.length + offset)}, ${text}, ${text}, '330100', ${text}, ${LONGITUDE}, ${LATITUDE})`);
  }
  const dataset = (await findDataset(app.db, STATIONS)) as Dataset;
  const get = (query = '', format = 'csv') => app.inject({ method: 'GET', url: `/v1/open/datasets/${STATIONS}/download.${format}${query ? `?${query}` : ''}` });
  const texts = (rows: Row[]) => rows.map((row) => [row.station_code, row.name, row.address]);
  const stored = ALL.map(([text], index) => [codeOf(index), text, text]);
  const forSpreadsheets = ALL.map(([, text], index) => [codeOf(index), text, text]);

  // Every CSV path: rows encoded here (csv-stringify: the whole dataset has number items), COPY
  // (PostgreSQL, a whole download of text items), lines written by the database (a filter, or PGlite).
  const paths = {
    'rows encoded by csv-stringify': '',
    [driver === 'postgres' ? 'COPY' : 'lines written by the database']: `select=${TEXT_ITEMS.join(',')}`,
    'lines written by the database, filtered': `select=${TEXT_ITEMS.join(',')}&where[region_code][eq]=330100`,
  };

  await t.test('plain CSV keeps every value exactly, on every path', async (t) => {
    for (const [path, query] of Object.entries(paths)) {
      copies.length = 0;
      const rows = csvRows(t, await get(query), false);
      t.same(texts(rows), stored, `${path}: as stored`);
      t.equal(copies.length, driver === 'postgres' && path === 'COPY' ? 1 : 0, `${path}: ${copies.length} COPY`);
    }
    const whole = csvRows(t, await get(), false);
    t.same(
      whole.map((row) => [row.longitude, row.latitude]),
      ALL.map(() => [String(LONGITUDE), String(LATITUDE)]),
      'negative numbers are numbers',
    );
  });

  await t.test('bom=true: every text a spreadsheet would run starts with a quote, on every path; numbers stay numbers', async (t) => {
    const bodies: Buffer[] = [];
    for (const [path, query] of Object.entries(paths)) {
      copies.length = 0;
      const response = await get(query ? `bom=true&${query}` : 'bom=true');
      t.equal(response.headers['accept-ranges'], 'none', 'streamed');
      const rows = csvRows(t, response, true);
      t.same(texts(rows), forSpreadsheets, `${path}: neutralised`);
      t.equal(copies.length, driver === 'postgres' && path === 'COPY' ? 1 : 0, `${path}: ${copies.length} COPY`);
      for (const row of rows) {
        for (const name of ['name', 'address'] as const) {
          const cell = String(row[name]);
          t.ok(!FORMULA_START.test(cell) || DECIMAL.test(cell), `${path}: ${JSON.stringify(cell)} cannot start a formula`);
        }
      }
      if (path === 'rows encoded by csv-stringify') {
        t.same(rows.map((row) => [row.longitude, row.latitude, row.started_on]).slice(0, 1), [[String(LONGITUDE), String(LATITUDE), '2020-01-01']], 'JSON numbers and dates are never prefixed');
        t.same(rows.map((row) => row.station_type), forSpreadsheets.map(([, text]) => text));
      }
      bodies.push(response.rawPayload);
    }
    // The bytes a user downloads: quoted as RFC 4180 says, the quote inside the field.
    const [whole, selected, filtered] = bodies.map((body) => body.toString('utf8')) as [string, string, string];
    t.ok(selected.includes(`\r\nT000,"'=HYPERLINK(""http://example.invalid"",""x"")","'=HYPERLINK(""http://example.invalid"",""x"")"\r\n`), 'the bytes of the first row');
    t.ok(selected.includes(`\r\nT006,-12.5,-12.5\r\n`), 'a decimal text goes as it is');
    t.ok(selected.includes(`\r\nT014,"'\r=1+2","'\r=1+2"\r\n`), 'a CR text is quoted after its quote');
    t.equal(selected, filtered, 'COPY (or lines) and filtered lines: the same bytes');
    t.ok(whole.includes(`\r\nT006,-12.5,-12.5,330100,-12.5,${LONGITUDE},${LATITUDE},2020-01-01\r\n`), 'csv-stringify: the same texts, and the numbers');
  });

  await t.test('prebuilt files: the plain CSV file is the exact data; bom=true is streamed beside it, neutralised', async (t) => {
    await app.downloads.build(dataset);
    const plain = await get();
    t.equal(plain.headers['accept-ranges'], 'bytes', 'the plain CSV is the prebuilt file');
    t.same(texts(csvRows(t, plain, false)), stored, 'exactly as stored');
    const bom = await get('bom=true');
    t.equal(bom.headers['accept-ranges'], 'none', 'bom=true has no file: it is streamed');
    t.same(texts(csvRows(t, bom, true)), forSpreadsheets, 'and neutralised');
    const json = JSON.parse((await get('', 'json')).rawPayload.toString('utf8')) as Row[];
    t.same(texts(json), stored, 'JSON: exactly as stored');
  });

  await t.test('XLSX: every text an inline string as stored, numbers numbers, no formula; streamed and prebuilt', async (t) => {
    const header = ['station_code', 'name', 'station_type', 'region_code', 'address', 'longitude', 'latitude', 'started_on'];
    for (const [how, query] of [['prebuilt', ''], ['streamed', `select=${header.join(',')}`]] as const) {
      const response = await get(query, 'xlsx');
      t.equal(response.statusCode, 200);
      t.equal(response.headers['accept-ranges'], how === 'prebuilt' ? 'bytes' : 'none', how);
      const [first, ...cells] = xlsxCells(t, response.rawPayload, header);
      t.same(first, Object.fromEntries(header.map((name) => [name, { t: 's', v: name }])), `${how}: the header row is text`);
      t.same(
        cells.map((row) => [row.name, row.address]),
        ALL.map(([text]) => [{ t: 's', v: text }, { t: 's', v: text }]),
        `${how}: each text a string cell holding the stored text`,
      );
      t.same(cells[0]?.longitude, { t: 'n', v: LONGITUDE }, `${how}: a number cell`);
    }
  });

  await t.test('XLSX of values that are objects or arrays (JSON): their text, never a formula or a hyperlink', async (t) => {
    const header = ['station_code', 'name', 'address', 'station_type'];
    const batches = (async function* () {
      yield [
        {
          station_code: 'J001',
          name: { formula: 'HYPERLINK("http://example.invalid","x")' },
          address: { hyperlink: 'http://example.invalid', text: '=HYPERLINK("http://example.invalid","x")' },
          station_type: ['=1+2', { richText: [{ text: '=1+2' }] }],
        },
      ];
    })();
    const chunks: Buffer[] = [];
    for await (const chunk of encodeRecords(resource, 'xlsx', batches, header)) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const zip = XLSX.CFB.read(body, { type: 'buffer' });
    const xml = Buffer.from(XLSX.CFB.find(zip, '/xl/worksheets/sheet1.xml')?.content as Uint8Array).toString('utf8');
    t.notMatch(xml, /<f[ >]|<hyperlink|t="str"/, 'no formula, no hyperlink, no formula string');
    const book = XLSX.read(body, { type: 'buffer', cellFormula: true });
    const sheet = book.Sheets[book.SheetNames[0] as string] as XLSX.WorkSheet;
    t.same(
      ['A2', 'B2', 'C2', 'D2'].map((ref) => ({ t: sheet[ref]?.t, v: sheet[ref]?.v, f: sheet[ref]?.f, l: sheet[ref]?.l })),
      [
        { t: 's', v: 'J001', f: undefined, l: undefined },
        { t: 's', v: '{"formula":"HYPERLINK(\\"http://example.invalid\\",\\"x\\")"}', f: undefined, l: undefined },
        { t: 's', v: '{"hyperlink":"http://example.invalid","text":"=HYPERLINK(\\"http://example.invalid\\",\\"x\\")"}', f: undefined, l: undefined },
        { t: 's', v: '["=1+2",{"richText":[{"text":"=1+2"}]}]', f: undefined, l: undefined },
      ],
      'each object is a string cell of its JSON',
    );
  });
});
