import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { and, asc, eq, sql } from 'drizzle-orm';
import { runCli } from '../../src/cli.js';
import { findResource, type Resource } from '../../src/catalog/index.js';
import { openDatabase, rowsOf, type Database } from '../../src/db/index.js';
import { catalogHistory } from '../../src/db/schema.js';
import { enterprises, residents, students } from '../../src/demo/seed.js';
import { importFile, ImportRejected, loadRecords, type ImportReport } from '../../src/records/index.js';
import type { RawRow } from '../../src/records/import.js';
import { buildTestApp, forEachDriver, freshDatabase, TEST_AUDIT_HASH_KEY, TEST_KEY_ENCRYPTION_KEY } from '../helpers/app.js';

const STUDENT = '330000-EDU-00001'; // zj-edu: student_id key, id_number (cn-resident-id, optional), date enrolled_on
const ENTERPRISE = '330000-AMR-00001'; // zj-amr: uscc key (cn-uscc), number registered_capital, date established_on

type Row = Record<string, string | number | null>;

const STUDENT_COLUMNS = ['student_id', 'name', 'id_number', 'school', 'grade', 'status', 'enrolled_on', 'region_code'] as const;
const ENTERPRISE_COLUMNS = ['uscc', 'name', 'legal_representative', 'registered_capital', 'established_on', 'region_code', 'status', 'industry'] as const;

const people = [...residents(5000)];
const pupils: Row[] = [...students(people, 1500)];
const firms: Row[] = [...enterprises(60)];

/** Students whose text puts RFC 4180 to work: quotes, commas and line breaks inside fields, no ID number. */
const trickyStudents: Row[] = [
  { ...pupils[0], name: '王"小"明' },
  { ...pupils[1], school: '杭州市第一中学,西湖校区' },
  { ...pupils[2], school: '杭州市第二中学\n（本部）' },
  { ...pupils[3], id_number: null },
  { ...pupils[4], school: '余杭区"未来",第一\n实验学校', name: '欧阳,"娜"' },
  { ...pupils[5] },
] as Row[];

function csvField(value: string | number | null): string {
  if (value === null) return '';
  const text = String(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** RFC 4180: a header line, CRLF (or LF) line ends, fields quoted when they need it. */
function csv(columns: readonly string[], rows: Row[], { bom = false, eol = '\r\n' } = {}): string {
  const lines = [columns.join(','), ...rows.map((row) => columns.map((column) => csvField(row[column] ?? null)).join(','))];
  return `${bom ? '\uFEFF' : ''}${lines.join(eol)}${eol}`;
}

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

function write(dir: string, name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

/** A resident's ID number with another (wrong) check character: a valid birth date, so only the check fails. */
function wrongCheck(id: string): string {
  const alphabet = '0123456789X';
  return `${id.slice(0, 17)}${alphabet[(alphabet.indexOf(id[17] as string) + 1) % alphabet.length]}`;
}

function wrongUsccCheck(code: string): string {
  const alphabet = '0123456789ABCDEFGHJKLMNPQRTUWXY';
  return `${code.slice(0, 17)}${alphabet[(alphabet.indexOf(code[17] as string) + 1) % alphabet.length]}`;
}

/** Rows as they should be stored: empty optional items are null. */
const asStored = (rows: Row[], columns: readonly string[]) =>
  rows.map((row) => Object.fromEntries(columns.map((column) => [column, row[column] === undefined || row[column] === '' ? null : row[column]])));

const byKey = (key: string) => (a: Row, b: Row) => (String(a[key]) < String(b[key]) ? -1 : String(a[key]) > String(b[key]) ? 1 : 0);

/** Every record of a resource, dates as text, sorted by key in JavaScript (collations differ between servers). */
async function stored(database: Database, code: string): Promise<Row[]> {
  const [columns, key, table] =
    code === STUDENT ? [STUDENT_COLUMNS, 'student_id', 'r_330000_edu_00001'] : [ENTERPRISE_COLUMNS, 'uscc', 'r_330000_amr_00001'];
  const select = columns.map((c) => (c === 'enrolled_on' || c === 'established_on' ? `${c}::text as ${c}` : c)).join(', ');
  const rows = rowsOf<Row>(await database.db.execute(sql.raw(`select ${select} from records.${table}`)));
  return rows.map((row) => ({ ...row, ...(row.registered_capital != null ? { registered_capital: Number(row.registered_capital) } : {}) })).sort(byKey(key));
}

/** The tables of a resource in the records schema: its own, and any staging or old copy left behind. */
async function tablesOf(database: Database, code: string): Promise<string[]> {
  const table = `r_${code.toLowerCase().replaceAll('-', '_')}`;
  const rows = rowsOf<{ tablename: string }>(
    await database.db.execute(sql`select tablename from pg_tables where schemaname = 'records' and (tablename = ${table} or starts_with(tablename, ${`${table}_`}))`),
  );
  return rows.map((row) => row.tablename).sort();
}

async function imports(database: Database, code: string) {
  return database.db
    .select({ version: catalogHistory.version, syncId: catalogHistory.syncId, fields: catalogHistory.fields, detail: catalogHistory.detail })
    .from(catalogHistory)
    .where(and(eq(catalogHistory.code, code), eq(catalogHistory.change, 'imported')))
    .orderBy(asc(catalogHistory.id));
}

/**
 * An import that must finish within a few seconds (these files are tiny). One that hangs fails
 * its test instead of the whole file, and on PostgreSQL its stuck COPY session is ended so that
 * its locks do not hold up the tests after it.
 */
async function within<T>(database: Database, promise: Promise<T>, ms = 6_000): Promise<T> {
  promise.catch(() => {}); // a failure after the time is up is reported as the timeout
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`the import was still running after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } catch (error) {
    if (database.driver === 'postgres' && /still running/.test((error as Error).message)) {
      await database.db.execute(
        sql`select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() and query ilike 'copy %'`,
      );
    }
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

async function rejected(promise: Promise<unknown>): Promise<ImportRejected> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof ImportRejected) return error;
    throw error;
  }
  throw new Error('the import was not rejected');
}

async function* rawRows(rows: Row[]): AsyncGenerator<RawRow> {
  let line = 1;
  for (const values of rows) yield { line: (line += 1), values };
}

async function resourceOf(database: Database, code: string): Promise<Resource> {
  const found = await findResource(database.db, code);
  if (!found) throw new Error(`${code} is not in the catalog`);
  return found.document;
}

t.test('gateway import (CLI) on a PGlite directory', async (t) => {
  const dir = t.testdir();
  const env = { DATABASE_URL: join(dir, 'pglite'), KEY_ENCRYPTION_KEY: TEST_KEY_ENCRYPTION_KEY, AUDIT_HASH_KEY: TEST_AUDIT_HASH_KEY, LOG_LEVEL: 'silent' };
  const cli = async (...argv: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runCli(argv, { env, stdout: (s) => void out.push(s), stderr: (s) => void err.push(s) });
    return { code, out: out.join(''), err: err.join('') };
  };
  /** Open the directory the CLI worked on (the CLI has closed it), look, close. */
  const look = async <T>(work: (database: Database) => Promise<T>): Promise<T> => {
    const database = await openDatabase(env.DATABASE_URL);
    try {
      return await work(database);
    } finally {
      await database.close();
    }
  };

  const good = write(dir, 'students.csv', csv(STUDENT_COLUMNS, trickyStudents, { bom: true }));
  const goodRows = asStored(trickyStudents, STUDENT_COLUMNS).sort(byKey('student_id'));

  t.test('a CSV with a BOM, CRLF and quoted commas, quotes and line breaks lands exactly', async (t) => {
    const run = await cli('import', STUDENT, good);
    t.equal(run.code, 0, run.err);
    t.equal(run.out, `${STUDENT}: 6 rows loaded in ${/in ([\d.]+) s/.exec(run.out)?.[1]} s (sha256 ${sha256(good)})\n`);
    t.equal(run.err, '');
    await look(async (database) => {
      t.same(await stored(database, STUDENT), goodRows);
      t.same(await tablesOf(database, STUDENT), ['r_330000_edu_00001'], 'no staging table left');
    });
  });

  // A file with three bad rows, the second of which stands after a record spread over two lines.
  const badInput: Row[] = [
    pupils[10] as Row, // line 2
    { ...pupils[11], school: '第一\n中学' } as Row, // lines 3-4
    { ...pupils[12], id_number: wrongCheck(pupils[12]?.id_number as string) } as Row, // line 5
    pupils[13] as Row, // line 6
    { ...pupils[14], school: '' } as Row, // line 7
    { ...pupils[15], enrolled_on: '2021-02-30' } as Row, // line 8
    pupils[16] as Row, // line 9
  ];
  const bad = write(dir, 'bad.csv', csv(STUDENT_COLUMNS, badInput, { eol: '\n' }));
  const badReport = [
    { line: 5, item: 'id_number', reason: 'has a wrong check character (GB 11643)' },
    { line: 7, item: 'school', reason: 'is required' },
    { line: 8, item: 'enrolled_on', reason: 'must be a date (YYYY-MM-DD)' },
  ];

  t.test('bad rows: exit 1, every bad row named by line, item and reason, nothing changed', async (t) => {
    const run = await cli('import', STUDENT, bad);
    t.equal(run.code, 1);
    t.equal(
      run.err,
      [
        'line 5: id_number has a wrong check character (GB 11643)',
        'line 7: school is required',
        'line 8: enrolled_on must be a date (YYYY-MM-DD)',
        `gateway: 3 row(s) of ${STUDENT} are invalid; nothing was loaded (use --skip-invalid to load the valid rows)`,
        '',
      ].join('\n'),
    );
    t.equal(run.out, '');

    const json = await cli('import', STUDENT, bad, '--json');
    t.equal(json.code, 1);
    const report = JSON.parse(json.out) as ImportReport;
    t.match(report, { resource: STUDENT, rows: 4, skipped: 3, bad_rows: 3, loaded: false, sha256: sha256(bad) });
    t.same(report.bad, badReport);

    await look(async (database) => {
      t.same(await stored(database, STUDENT), goodRows, 'the previous data is still served, row for row');
      t.same(await tablesOf(database, STUDENT), ['r_330000_edu_00001'], 'no staging table left');
      t.equal((await imports(database, STUDENT)).length, 1, 'a refused import is not in the history');
    });
  });

  t.test('--skip-invalid loads the good rows and reports the skipped ones', async (t) => {
    const run = await cli('import', STUDENT, bad, '--skip-invalid');
    t.equal(run.code, 0, run.err);
    t.match(run.out, new RegExp(`^${STUDENT}: 4 rows loaded, 3 skipped in [\\d.]+ s \\(sha256 ${sha256(bad)}\\)\\n$`));
    t.equal(
      run.err,
      [
        'skipped line 5: id_number has a wrong check character (GB 11643)',
        'skipped line 7: school is required',
        'skipped line 8: enrolled_on must be a date (YYYY-MM-DD)',
        '',
      ].join('\n'),
    );
    await look(async (database) => {
      const expected = asStored([badInput[0], badInput[1], badInput[3], badInput[6]] as Row[], STUDENT_COLUMNS).sort(byKey('student_id'));
      t.same(await stored(database, STUDENT), expected, 'the good rows replace the old ones');
    });
  });

  t.test('NDJSON and JSON arrays, by extension or --format', async (t) => {
    const some = pupils.slice(20, 25) as Row[];
    const ndjson = write(dir, 'students.txt', `${some.map((row) => JSON.stringify(row)).join('\n')}\n`);
    const run = await cli('import', STUDENT, ndjson, '--format', 'ndjson', '--json');
    t.equal(run.code, 0, run.err);
    t.match(JSON.parse(run.out), { resource: STUDENT, rows: 5, skipped: 0, bad: [], bad_rows: 0, loaded: true, sha256: sha256(ndjson) });
    await look(async (database) => t.same(await stored(database, STUDENT), asStored(some, STUDENT_COLUMNS).sort(byKey('student_id'))));

    const array = write(dir, 'students.json', JSON.stringify(pupils.slice(30, 33), null, 2));
    const second = await cli('import', STUDENT, array);
    t.equal(second.code, 0, second.err);
    t.match(second.out, /: 3 rows loaded in /);
    await look(async (database) => t.same(await stored(database, STUDENT), asStored(pupils.slice(30, 33) as Row[], STUDENT_COLUMNS).sort(byKey('student_id'))));

    const unknownFormat = await cli('import', STUDENT, ndjson);
    t.equal(unknownFormat.code, 1);
    t.match(unknownFormat.err, /cannot tell the format of .*students\.txt/);
  });

  t.test('every import is in the resource\'s history with its rows and the file\'s sha256', async (t) => {
    await look(async (database) => {
      const history = await imports(database, STUDENT);
      t.equal(history.length, 4, 'CSV, --skip-invalid, NDJSON, JSON');
      t.match(history[0], { syncId: null, fields: [], detail: { rows: 6, skipped: 0, sha256: sha256(good), source: 'students.csv' } });
      t.match(history[1], { detail: { rows: 4, skipped: 3, sha256: sha256(bad), source: 'bad.csv' } });
      t.match(history[2], { detail: { rows: 5, skipped: 0, source: 'students.txt' } });
      t.match(history[3], { detail: { rows: 3, skipped: 0, source: 'students.json' } });
      t.ok(history.every((entry) => typeof (entry.detail as { seconds?: unknown }).seconds === 'number'));
    });
  });

  t.test('an unknown resource or a missing file is exit 1 with a message', async (t) => {
    const unknown = await cli('import', '330000-EDU-09999', good);
    t.equal(unknown.code, 1);
    t.match(unknown.err, /no resource 330000-EDU-09999 in the catalog/);
    const missing = await cli('import', STUDENT, join(dir, 'nothing.csv'));
    t.equal(missing.code, 1);
    t.match(missing.err, /nothing\.csv: no such file/);
  });
});

forEachDriver(t, 'importFile and loadRecords', async (t: Test, driver) => {
  const database = await freshDatabase(t, driver);
  // The app syncs the catalog; the history route is read through it.
  const app = await buildTestApp(t, driver, { database });
  const student = await resourceOf(database, STUDENT);
  const enterprise = await resourceOf(database, ENTERPRISE);
  const dir = t.testdir();

  t.test('CSV with and without a BOM, NDJSON and a JSON array load the same rows exactly', async (t) => {
    const expected = asStored(trickyStudents, STUDENT_COLUMNS).sort(byKey('student_id'));
    const files = {
      'lf.csv': csv(STUDENT_COLUMNS, trickyStudents, { eol: '\n' }),
      'bom.csv': csv(STUDENT_COLUMNS, trickyStudents, { bom: true }),
      'rows.ndjson': `\n${trickyStudents.map((row) => JSON.stringify(row)).join('\n\n')}\n`,
      'rows.json': JSON.stringify(trickyStudents),
    };
    for (const [name, text] of Object.entries(files)) {
      const file = write(dir, name, text);
      const report = await within(database, importFile(database, student, file, {}));
      t.match(report, { resource: STUDENT, rows: 6, skipped: 0, bad: [], bad_rows: 0, loaded: true, sha256: sha256(file) }, name);
      t.same(await stored(database, STUDENT), expected, `${name}: rows land exactly`);
    }
    t.same(await tablesOf(database, STUDENT), ['r_330000_edu_00001']);
  });

  const baseline = firms.slice(0, 40);
  const sample = asStored([baseline[17] as Row], ENTERPRISE_COLUMNS)[0];

  t.test('re-import replaces the records, it does not append', async (t) => {
    const first = write(dir, 'first.ndjson', firms.slice(40, 60).map((row) => JSON.stringify(row)).join('\n'));
    t.equal((await within(database, importFile(database, enterprise, first, {}))).rows, 20);
    const second = write(dir, 'second.csv', csv(ENTERPRISE_COLUMNS, baseline));
    t.equal((await within(database, importFile(database, enterprise, second, {}))).rows, 40);
    t.same(await stored(database, ENTERPRISE), asStored(baseline, ENTERPRISE_COLUMNS).sort(byKey('uscc')), 'only the second file\'s rows');
  });

  t.test('bad rows: ImportRejected names line, item and reason of each, and nothing changes', async (t) => {
    const lines = [
      JSON.stringify(firms[0]), // 1 (a row already stored, changed below: must not be updated)
      JSON.stringify({ ...firms[1], uscc: wrongUsccCheck(firms[1]?.uscc as string) }), // 2
      '', // 3
      JSON.stringify({ ...firms[2], name: undefined }), // 4
      JSON.stringify({ ...firms[3], established_on: '2019-02-29' }), // 5
      JSON.stringify({ ...firms[4], website: 'https://example.cn' }), // 6
      JSON.stringify({ ...firms[5], registered_capital: 'lots' }), // 7
      JSON.stringify({ ...firms[6], name: '新名称有限公司' }), // 8
    ];
    const file = write(dir, 'bad.ndjson', `${lines.join('\n')}\n`);
    const before = await stored(database, ENTERPRISE);
    const historyBefore = (await imports(database, ENTERPRISE)).length;

    const error = await rejected(within(database, importFile(database, enterprise, file, {})));
    t.match(error.message, /5 row\(s\) of 330000-AMR-00001 are invalid; nothing was loaded/);
    t.match(error.report, { resource: ENTERPRISE, rows: 2, skipped: 5, bad_rows: 5, loaded: false, sha256: sha256(file) });
    t.same(error.report.bad, [
      { line: 2, item: 'uscc', reason: 'has a wrong check character (GB 32100)' },
      { line: 4, item: 'name', reason: 'is required' },
      { line: 5, item: 'established_on', reason: 'must be a date (YYYY-MM-DD)' },
      { line: 6, item: 'website', reason: 'is not a data item of this resource' },
      { line: 7, item: 'registered_capital', reason: 'must be a number' },
    ]);

    const after = await stored(database, ENTERPRISE);
    t.equal(after.length, before.length, 'the count is unchanged');
    t.same(after.find((row) => row.uscc === sample?.uscc), sample, 'a sample row is unchanged');
    t.same(after, before, 'every row is unchanged');
    t.same(await tablesOf(database, ENTERPRISE), ['r_330000_amr_00001'], 'no staging table left');
    t.equal((await imports(database, ENTERPRISE)).length, historyBefore, 'nothing added to the history');

    t.test('--skip-invalid: the good rows replace the data, the skipped are reported', async (t) => {
      const report = await within(database, importFile(database, enterprise, file, { skipInvalid: true }));
      t.match(report, { rows: 2, skipped: 5, bad_rows: 5, loaded: true });
      t.equal(report.bad.length, 5);
      t.same(await stored(database, ENTERPRISE), asStored([firms[0] as Row, { ...firms[6], name: '新名称有限公司' } as Row], ENTERPRISE_COLUMNS).sort(byKey('uscc')));
      const [last] = (await imports(database, ENTERPRISE)).slice(-1);
      t.match(last?.detail, { rows: 2, skipped: 5, sha256: sha256(file), source: 'bad.ndjson' });
      // Back to the baseline for what follows.
      await within(database, importFile(database, enterprise, write(dir, 'baseline.csv', csv(ENTERPRISE_COLUMNS, baseline)), {}));
    });
  });

  t.test('a CSV header naming an unknown column refuses every row', async (t) => {
    const file = write(dir, 'extra.csv', csv([...ENTERPRISE_COLUMNS, 'website'], firms.slice(0, 3).map((row) => ({ ...row, website: 'x' }))));
    const error = await rejected(within(database, importFile(database, enterprise, file, {})));
    t.same(error.report.bad, [2, 3, 4].map((line) => ({ line, item: 'website', reason: 'is not a data item of this resource' })));
    t.equal((await stored(database, ENTERPRISE)).length, 40);
  });

  t.test('a CSV row with more fields than the header fails the import and changes nothing', async (t) => {
    const text = `${csv(ENTERPRISE_COLUMNS, firms.slice(0, 2), { eol: '\n' })}${csv(ENTERPRISE_COLUMNS, [firms[2] as Row], { eol: '\n' }).split('\n')[1]},extra\n`;
    const file = write(dir, 'ragged.csv', text);
    await t.rejects(within(database, importFile(database, enterprise, file, {})), { message: /Invalid Record Length/ });
    t.same(await stored(database, ENTERPRISE), asStored(baseline, ENTERPRISE_COLUMNS).sort(byKey('uscc')));
    t.same(await tablesOf(database, ENTERPRISE), ['r_330000_amr_00001'], 'no staging table left');
  });

  t.test('an import that dies half-way (after more than one COPY chunk) leaves the old data served', async (t) => {
    const old = pupils.slice(40, 46);
    await within(database, loadRecords(database, student, rawRows(old), { source: 'test: the data before' }, () => 'before'));
    const before = await stored(database, STUDENT);
    t.same(before, asStored(old, STUDENT_COLUMNS).sort(byKey('student_id')));
    const historyBefore = (await imports(database, STUDENT)).length;
    let produced = 0;
    async function* dying(): AsyncGenerator<RawRow> {
      for (let i = 1; ; i++) {
        if (i > 30_000) throw new Error('the source went away after 30,000 rows');
        produced = i;
        yield {
          line: i + 1,
          values: { student_id: `G${String(i).padStart(18, '0')}`, name: '学生', school: '测试学校', grade: '初一', status: '在读', enrolled_on: '2020-09-01' },
        };
      }
    }
    await t.rejects(within(database, loadRecords(database, student, dying(), { source: 'test: dies half-way' }, () => 'none'), 20_000), {
      message: 'the source went away after 30,000 rows',
    });
    t.equal(produced, 30_000, 'the first 20,000-row chunk was copied before the failure');
    const after = await stored(database, STUDENT);
    t.equal(after.length, 6, 'the count is unchanged');
    t.same(after.find((row) => row.student_id === old[2]?.student_id), asStored([old[2] as Row], STUDENT_COLUMNS)[0], 'a sample row is unchanged');
    t.same(after, before, 'every row is unchanged');
    t.same(await tablesOf(database, STUDENT), ['r_330000_edu_00001'], 'the staging table is gone');
    t.equal((await imports(database, STUDENT)).length, historyBefore, 'nothing added to the history');

    // A crashed process cannot clean up: its staging table stays until the next import drops it.
    await database.db.execute(sql.raw('create table records.r_330000_edu_00001_ilost (student_id text)'));
    const next = pupils.slice(50, 55);
    t.equal((await within(database, loadRecords(database, student, rawRows(next), { source: 'test: the next import' }, () => 'next'))).rows, 5);
    t.same(await tablesOf(database, STUDENT), ['r_330000_edu_00001'], 'the leftover staging table was dropped');
    t.same(await stored(database, STUDENT), asStored(next, STUDENT_COLUMNS).sort(byKey('student_id')));
  });

  t.test('the history route lists an import as a change of its own, not as catalog sync 0', async (t) => {
    const response = await app.inject({ url: `/v1/catalog/resources/${ENTERPRISE}/history` });
    t.equal(response.statusCode, 200);
    const [latest] = response.json().items as Array<{ change: string; sync_id: number | null }>;
    t.equal(latest?.change, 'imported');
    // catalog_history.sync_id is null for a data import (schema.ts); there is no sync 0.
    t.equal(latest?.sync_id, null, 'an import belongs to no catalog sync');
  });

  t.test('a JSON object or array in a text item is refused, not stored as "[object Object]"', async (t) => {
    const file = write(dir, 'objects.json', JSON.stringify([{ ...firms[0], name: { zh: '某公司' } }, { ...firms[1], industry: ['制造业'] }]));
    const outcome = await within(database, importFile(database, enterprise, file, {})).catch((error: unknown) => error);
    t.ok(outcome instanceof ImportRejected, 'the import is refused');
    if (outcome instanceof ImportRejected) t.match(outcome.report.bad, [{ line: 1, item: 'name' }, { line: 2, item: 'industry' }]);
    const names = (await stored(database, ENTERPRISE)).map((row) => row.name);
    t.notOk(names.includes('[object Object]'), 'no "[object Object]" stored');
  });
});
