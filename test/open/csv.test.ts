import t from 'tap';
import { parse } from 'csv-parse/sync';
import { sql } from 'drizzle-orm';
import type { DataItem, Resource } from '../../src/catalog/index.js';
import { filterSql } from '../../src/records/index.js';
import { createTableStatements, qualified, recordTable } from '../../src/records/tables.js';
import { rowsOf } from '../../src/db/index.js';
import { csvCopyStatement, csvLineSql, encodeRecords, recordStream } from '../../src/open/formats.js';
import { rowBatches } from '../../src/open/query.js';
import { forEachDriver, freshDatabase, spyOnCopies } from '../helpers/app.js';

const item = (name: string, type: DataItem['type'], extra: Partial<DataItem> = {}): DataItem => ({
  name,
  title: name,
  title_en: name,
  type,
  personal: false,
  sensitive: false,
  required: false,
  filterable: false,
  ...extra,
});

// A resource with every type the database writes as CSV, and values that need quoting.
const resource = {
  code: '330000-TST-00001',
  items: [
    item('id', 'string', { required: true }),
    item('label', 'string', { filterable: true }),
    item('n', 'integer'),
    item('flag', 'boolean'),
    item('day', 'date'),
    item('at', 'datetime'),
  ],
  record_key: ['id'],
} as unknown as Resource;
const fields = resource.items.map((i) => i.name);

const rows: Array<[string, string | null, number | null, boolean | null, string | null, string | null]> = [
  ['a01', 'plain', 1, true, '2024-02-29', '2024-03-01T08:00:00.123Z'],
  ['a02', 'with, comma', -42, false, '1999-12-31', '1970-01-01T00:00:00.000Z'],
  ['a03', 'say "hi"', 9_007_199_254_740_991, null, null, null],
  ['a04', 'two\nlines', 0, true, '2000-01-01', '2030-06-15T23:59:59.999Z'],
  ['a05', 'carriage\rreturn', null, false, null, '2024-01-01T00:00:00.000Z'],
  ['a06', null, 7, null, '2024-01-01', null],
  ['a07', '中文，全角逗号 and ""quotes""', 3, true, null, null],
  ['a08', ' leading and trailing spaces ', 5, false, null, null],
  ['a09', '=1+2 (not escaped: csv-stringify does not by default)', 6, true, null, null],
  ['a10', 'crlf\r\nin a value', 8, null, null, null],
  ['a11', '\\.', 9, null, null, null],
];

async function text(stream: NodeJS.ReadableStream): Promise<string> {
  let out = '';
  for await (const chunk of stream) out += String(chunk);
  return out;
}

forEachDriver(t, 'CSV written by the database is byte for byte the CSV written row by row', async (t, driver) => {
  const database = await freshDatabase(t, driver);
  for (const statement of createTableStatements(resource, recordTable(resource.code))) await database.db.execute(sql.raw(statement));
  for (const [id, label, n, flag, day, at] of rows) {
    await database.db.execute(sql`insert into ${sql.raw(qualified(recordTable(resource.code)))} (id, label, n, flag, day, at)
      values (${id}, ${label}, ${n}, ${flag}, ${day}::date, ${at}::timestamptz)`);
  }
  t.ok(csvLineSql(resource, fields), 'every item of this resource can be written by the database');
  t.ok(csvCopyStatement(resource, fields), 'and by COPY');
  // Which whole-dataset downloads went through COPY (PostgreSQL has it; PGlite does not).
  const copies = spyOnCopies(database);
  t.equal(typeof database.copyOut, driver === 'postgres' ? 'function' : 'undefined');

  for (const batch of [3, 1000]) {
    for (const bom of [false, true]) {
      const byDatabase = await text(recordStream(database, resource, 'csv', fields, [], batch, { bom }));
      const byRows = await text(encodeRecords(resource, 'csv', rowBatches(database, resource, fields, [], batch), fields, { bom }));
      t.equal(byDatabase, byRows, `batches of ${batch}${bom ? ', with a BOM' : ''}`);
    }
  }

  t.equal(copies.length, driver === 'postgres' ? 4 : 0, 'on PostgreSQL every whole download above was a COPY');

  const csv = await text(recordStream(database, resource, 'csv', fields, [], 4));
  t.ok(csv.endsWith('\r\n'), 'lines end with CRLF');
  const parsed = parse(csv, { columns: true }) as Array<Record<string, string>>;
  t.same(
    parsed.map((row) => [row.id, row.label, row.n, row.flag, row.day, row.at]),
    rows.map((row) => row.map((value) => (value === null ? '' : String(value)))),
    'every value reads back as stored (quotes, commas, line ends, NULLs)',
  );

  // A filter is bound as a parameter, as in every other read.
  const { where } = filterSql(resource, { label: { prefix: 'with' } });
  const filtered = await text(recordStream(database, resource, 'csv', ['id', 'label'], where, 10));
  t.equal(filtered, 'id,label\r\na02,"with, comma"\r\n');
  const injected = filterSql(resource, { label: { eq: "x' or '1'='1" } });
  t.equal(await text(recordStream(database, resource, 'csv', ['id'], injected.where, 10)), 'id\r\n', 'a quote in a value is only a value');

  // A number item is written row by row: the two sides write some floats differently.
  const withNumber = { ...resource, items: [...resource.items, item('x', 'number')] } as Resource;
  t.equal(csvLineSql(withNumber, ['id', 'x']), undefined);
  t.equal(csvCopyStatement(withNumber, ['id', 'x']), undefined);
  t.ok(csvLineSql(withNumber, ['id', 'label']), 'unless the number is not asked for');

  if (driver !== 'postgres') return; // COPY to the client exists on PostgreSQL alone (asserted above).
  t.test('a COPY stopped half-way ends its connection; at most two run at once', async (t) => {
    await database.db.execute(sql`insert into ${sql.raw(qualified(recordTable(resource.code)))} (id, label, n, flag)
      select 'b' || lpad(g::text, 6, '0'), 'label ' || g, g, g % 2 = 0 from generate_series(1, 100000) as g`);
    const copyConnections = async () =>
      (await postgresClientCount(database)).filter((name) => name.endsWith('-copy')).length;
    const statement = csvCopyStatement(resource, fields) as string;
    const first = (database.copyOut?.(statement) as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    const second = (database.copyOut?.(statement) as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    t.match(String((await first.next()).value), /^id,label,n,flag,day,at\n/, 'the header comes first');
    await second.next();
    t.equal(database.copyOut?.(statement), undefined, 'a third waits its turn: the caller reads by cursor');
    t.equal(await copyConnections(), 2);
    await first.return?.(undefined);
    await second.return?.(undefined);
    for (let i = 0; i < 50 && (await copyConnections()) > 0; i++) await new Promise((resolve) => setTimeout(resolve, 100));
    t.equal(await copyConnections(), 0, 'both connections are gone');
    // The pool is untouched, and the next download is a COPY again.
    const again = await text(recordStream(database, resource, 'csv', ['id'], [], 1000));
    t.equal(again.split('\r\n').length, rows.length + 100_000 + 2, 'header, every row, and the final line end');
  });

  t.test('a COPY the server breaks off half-way is an error, not a download that looks whole', async (t) => {
    // Division by zero at the 50,000th row.
    const broken = database.copyOut?.('copy (select 1 / (g - 50000) from generate_series(1, 100000) as g) to stdout (format csv)', 500) as AsyncIterable<Buffer>;
    let bytes = 0;
    let failure: Error | undefined;
    try {
      for await (const chunk of broken) bytes += chunk.length;
    } catch (error) {
      failure = error as Error;
    }
    t.match(failure?.message, /division by zero/, 'the server\'s error ends the read');
    t.ok(bytes > 0, 'the rows before the error came through');
    for (let i = 0; i < 50 && (await postgresClientCount(database)).some((name) => name.endsWith('-copy')); i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    t.notOk((await postgresClientCount(database)).some((name) => name.endsWith('-copy')), 'and its connection is closed');

    // A connection that hangs sends nothing at all: long silence is an error too, and the COPY is cancelled.
    const silent = database.copyOut?.(
      "copy (select case when g = 5000 then pg_sleep(5)::text else repeat('x', 20) end from generate_series(1, 5000) as g) to stdout",
      300,
    ) as AsyncIterable<Buffer>;
    const started = Date.now();
    let silence: Error | undefined;
    try {
      for await (const _chunk of silent);
    } catch (error) {
      silence = error as Error;
    }
    t.match(silence?.message, /COPY sent nothing for 300 ms/);
    t.ok(Date.now() - started < 4000, 'without waiting for the server');
    for (let i = 0; i < 50 && (await postgresClientCount(database)).some((name) => name.endsWith('-copy')); i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    t.notOk((await postgresClientCount(database)).some((name) => name.endsWith('-copy')), 'its connection is closed as well');
  });
});

/** The application names of this database's client connections (PostgreSQL). */
async function postgresClientCount(database: Awaited<ReturnType<typeof freshDatabase>>): Promise<string[]> {
  const rows = await database.db.execute(sql`select application_name from pg_stat_activity where datname = current_database()`);
  return (rowsOf<{ application_name: string }>(rows)).map((row) => row.application_name);
}
