import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Transform } from 'node:stream';
import { createInterface } from 'node:readline';
import { parse as parseCsv } from 'csv-parse';
import { eq, sql } from 'drizzle-orm';
import streamArray from 'stream-json/streamers/stream-array.js';
import type { DataItem, Resource } from '../model/catalog.js';
import { rowsOf, type Database } from '../db/index.js';
import { catalogHistory, resources } from '../db/schema.js';
import { formatProblem } from './identifiers.js';
import { createTableStatements, qualified, quoted, recordTable, RECORDS_SCHEMA } from './tables.js';

export type RecordFileFormat = 'csv' | 'ndjson' | 'json';

export interface RawRow {
  /** Where the row is in its source: a line number for CSV and NDJSON, an index for JSON arrays. */
  line: number;
  values: Record<string, unknown>;
}

export interface BadRow {
  line: number;
  item: string;
  reason: string;
}

export interface ImportReport {
  resource: string;
  rows: number;
  skipped: number;
  bad: BadRow[];
  /** How many bad rows there were in all (`bad` lists the first 100). */
  bad_rows: number;
  sha256: string;
  seconds: number;
  loaded: boolean;
}

export class ImportRejected extends Error {
  override name = 'ImportRejected';
  constructor(readonly report: ImportReport) {
    super(`${report.bad_rows} row(s) of ${report.resource} are invalid; nothing was loaded`);
  }
}

export function formatOf(file: string, format?: string): RecordFileFormat {
  const chosen = format ?? file.split('.').pop()?.toLowerCase();
  if (chosen === 'csv' || chosen === 'ndjson' || chosen === 'json') return chosen;
  if (chosen === 'jsonl') return 'ndjson';
  throw new Error(`cannot tell the format of ${file}: use .csv, .ndjson or .json (or --format)`);
}

/** Read a record file as rows, hashing its bytes on the way (the checksum in the history). */
export function readRecordFile(file: string, format: RecordFileFormat, hash = createHash('sha256'), onBytes?: (n: number) => void) {
  // Hashed as it passes through, so that nothing flows before the parser reads it.
  const input = createReadStream(file).pipe(
    new Transform({
      transform(chunk: Buffer, _encoding, done) {
        hash.update(chunk);
        onBytes?.(chunk.length);
        done(null, chunk);
      },
    }),
  );
  return { rows: rowsIn(input, format), hash };
}

async function* rowsIn(input: NodeJS.ReadableStream, format: RecordFileFormat): AsyncGenerator<RawRow> {
  if (format === 'csv') {
    // RFC 4180, UTF-8 with or without a BOM; the first line names the columns.
    const parser = input.pipe(parseCsv({ columns: true, bom: true, info: true, skip_empty_lines: true, relax_column_count: false }));
    for await (const { record, info } of parser as AsyncIterable<{ record: Record<string, string>; info: { lines: number } }>) {
      yield { line: info.lines, values: record };
    }
    return;
  }
  if (format === 'ndjson') {
    let line = 0;
    for await (const text of createInterface({ input: input as NodeJS.ReadableStream & AsyncIterable<string>, crlfDelay: Infinity })) {
      line += 1;
      if (!text.trim()) continue;
      yield { line, values: parseJsonRow(text, line) };
    }
    return;
  }
  const array = input.pipe(streamArray.withParserAsStream()) as unknown as AsyncIterable<{ key: number; value: unknown }>;
  for await (const { key, value } of array) {
    yield { line: key + 1, values: (value ?? {}) as Record<string, unknown> };
  }
}

function parseJsonRow(text: string, line: number): Record<string, unknown> {
  try {
    const value = JSON.parse(text) as unknown;
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : { __not_an_object__: true };
  } catch {
    return { __unparsable__: line };
  }
}

/** A raw value as the item's type, or the reason it is not one. */
export function typedValue(item: DataItem, raw: unknown): { value: unknown } | { problem: string } {
  if (raw === undefined || raw === null || raw === '') {
    return item.required ? { problem: 'is required' } : { value: null };
  }
  if (typeof raw === 'object') return { problem: `must be a single ${item.type} value, not an object or array` };
  const text = typeof raw === 'string' ? raw.trim() : raw;
  switch (item.type) {
    case 'string': {
      const value = String(text);
      if (item.max_length !== undefined && value.length > item.max_length) return { problem: `is longer than ${item.max_length}` };
      const problem = formatProblem(item.format, value);
      return problem ? { problem } : { value };
    }
    case 'integer': {
      const value = typeof text === 'number' ? text : Number(text);
      return Number.isSafeInteger(value) ? { value } : { problem: 'must be an integer' };
    }
    case 'number': {
      const value = typeof text === 'number' ? text : Number(text);
      if (!Number.isFinite(value)) return { problem: 'must be a number' };
      const problem = formatProblem(item.format, String(value));
      return problem ? { problem } : { value };
    }
    case 'boolean': {
      if (text === true || text === 'true') return { value: true };
      if (text === false || text === 'false') return { value: false };
      return { problem: 'must be true or false' };
    }
    case 'date': {
      const value = String(text);
      const date = new Date(`${value}T00:00:00Z`);
      return /^\d{4}-\d{2}-\d{2}$/.test(value) && storableTime(date) && date.toISOString().startsWith(value)
        ? { value }
        : { problem: 'must be a date (YYYY-MM-DD)' };
    }
    case 'datetime': {
      const value = String(text);
      const date = new Date(value);
      return /^\d{4}-\d{2}-\d{2}T/.test(value) && storableTime(date) ? { value: date.toISOString() } : { problem: 'must be an RFC 3339 time' };
    }
  }
}

/**
 * A time PostgreSQL reads from its ISO text: years 0001 to 9999 (PostgreSQL has no year 0, which
 * ISO 8601 calls 1 BC, and toISOString writes years past 9999 with a sign it does not read).
 */
const EARLIEST_TIME = Date.parse('0001-01-01T00:00:00Z');
const LATEST_TIME = Date.parse('9999-12-31T23:59:59.999Z');
function storableTime(date: Date): boolean {
  const time = date.getTime();
  return time >= EARLIEST_TIME && time <= LATEST_TIME;
}

/** Check one row against the data items: types, required items, formats, no unknown columns. */
export function checkRow(resource: Resource, row: RawRow): { values: unknown[] } | { bad: BadRow[] } {
  if ('__unparsable__' in row.values) return { bad: [{ line: row.line, item: '', reason: 'is not valid JSON' }] };
  if ('__not_an_object__' in row.values) return { bad: [{ line: row.line, item: '', reason: 'is not a JSON object' }] };
  const bad: BadRow[] = [];
  const known = new Set(resource.items.map((item) => item.name));
  for (const name of Object.keys(row.values)) {
    if (!known.has(name)) bad.push({ line: row.line, item: name, reason: 'is not a data item of this resource' });
  }
  const values = resource.items.map((item) => {
    const keyItem = resource.record_key.includes(item.name);
    const typed = typedValue(keyItem ? { ...item, required: true } : item, row.values[item.name]);
    if ('problem' in typed) {
      bad.push({ line: row.line, item: item.name, reason: typed.problem });
      return null;
    }
    return typed.value;
  });
  return bad.length ? { bad } : { values };
}

function csvCell(value: unknown): string {
  if (value === null || value === undefined) return '';
  const text = typeof value === 'string' ? value : String(value);
  return `"${text.replaceAll('"', '""')}"`;
}

const CHUNK_ROWS = 20_000;

export interface LoadOptions {
  skipInvalid?: boolean;
  /** What the rows came from, for the history. */
  source: string;
  onRows?: (rows: number) => void;
}

/**
 * Replace a resource's records atomically: every row is checked and COPYed into a new table; only
 * when all is well (or bad rows may be skipped) is the new table swapped in, in one transaction.
 * A failed, refused or interrupted load leaves the old data served. The load goes into the
 * resource's history with its row count, checksum and time.
 */
export async function loadRecords(
  database: Database,
  resource: Resource,
  rows: AsyncIterable<RawRow>,
  options: LoadOptions,
  checksum: () => string,
): Promise<ImportReport> {
  const started = process.hrtime.bigint();
  const table = recordTable(resource.code);
  const suffix = `_i${Date.now().toString(36)}`;
  const staging = `${table}${suffix}`.slice(0, 63);
  // Leftovers of an interrupted import are dropped before a new one starts.
  await dropStrayStaging(database, table);
  // Held while the staging table exists: a gateway starting meanwhile leaves it alone.
  const release = await database.tryHold(stagingLock(staging));
  try {
    return await loadIntoStaging(database, resource, staging, rows, options, checksum, started);
  } finally {
    await release?.();
  }
}

/** The lock an import holds on its staging table while it fills it. */
function stagingLock(staging: string): string {
  return `govdata-gateway:staging:${staging}`;
}

/**
 * Drop the staging tables of imports that were interrupted (a process killed half-way leaves
 * one): those of `table`, or of every resource. A staging table whose import is still running
 * holds its lock and is left alone. Run at start-up and before every import; the tables dropped.
 */
export async function dropStrayStaging(database: Database, table?: string): Promise<string[]> {
  const db = database.db;
  const pattern = table ? `^${table}_i[0-9a-z]+$` : '^r_[0-9]{6}_[a-z]{2,8}_[0-9]{5}_i[0-9a-z]+$';
  const dropped: string[] = [];
  for (const { tablename } of rowsOf<{ tablename: string }>(
    await db.execute(sql`select tablename from pg_tables where schemaname = ${RECORDS_SCHEMA} and tablename ~ ${pattern}`),
  )) {
    const release = await database.tryHold(stagingLock(tablename));
    if (!release) continue;
    try {
      await db.execute(sql.raw(`drop table if exists ${qualified(tablename)}`));
      dropped.push(tablename);
    } finally {
      await release();
    }
  }
  return dropped;
}

/** Fill the staging table from the rows, check them, index it and swap it in for the old table. */
async function loadIntoStaging(
  database: Database,
  resource: Resource,
  staging: string,
  rows: AsyncIterable<RawRow>,
  options: LoadOptions,
  checksum: () => string,
  started: bigint,
): Promise<ImportReport> {
  const db = database.db;
  const table = recordTable(resource.code);
  const [primaryKey, ...indexes] = createTableStatements(resource, staging, '');
  await db.execute(sql.raw(primaryKey as string));

  const bad: BadRow[] = [];
  let badRows = 0;
  let loaded = 0;
  let skipped = 0;
  const columns = resource.items.map((item) => quoted(item.name));
  async function* chunks(): AsyncGenerator<string> {
    let chunk: string[] = [];
    for await (const row of rows) {
      const checked = checkRow(resource, row);
      if ('bad' in checked) {
        badRows += 1;
        skipped += 1;
        if (bad.length < 100) bad.push(...checked.bad.slice(0, 100 - bad.length));
        continue;
      }
      chunk.push(checked.values.map(csvCell).join(','));
      loaded += 1;
      if (chunk.length >= CHUNK_ROWS) {
        yield `${chunk.join('\n')}\n`;
        chunk = [];
        options.onRows?.(loaded);
      }
    }
    if (chunk.length) yield `${chunk.join('\n')}\n`;
    options.onRows?.(loaded);
  }

  try {
    await database.copyInto(qualified(staging), columns, chunks());
  } catch (error) {
    await db.execute(sql.raw(`drop table if exists ${qualified(staging)}`));
    throw error;
  }
  const report = (loadedNow: boolean): ImportReport => ({
    resource: resource.code,
    rows: loaded,
    skipped,
    bad,
    bad_rows: badRows,
    sha256: checksum(),
    seconds: Number((Number(process.hrtime.bigint() - started) / 1e9).toFixed(3)),
    loaded: loadedNow,
  });
  if (badRows > 0 && !options.skipInvalid) {
    await db.execute(sql.raw(`drop table if exists ${qualified(staging)}`));
    throw new ImportRejected(report(false));
  }
  for (const statement of indexes) await db.execute(sql.raw(statement));

  const final = report(true);
  await db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(hashtext(${`govdata-gateway:import:${resource.code}`}))`);
    const old = `${table}_old`;
    await tx.execute(sql.raw(`drop table if exists ${qualified(old)}`));
    await tx.execute(sql.raw(`alter table if exists ${qualified(table)} rename to ${quoted(old)}`));
    await tx.execute(sql.raw(`alter table ${qualified(staging)} rename to ${quoted(table)}`));
    await tx.execute(sql.raw(`drop table if exists ${qualified(old)}`));
    // Give the new table's key and indexes the names a fresh table would have.
    for (const { indexname } of rowsOf<{ indexname: string }>(
      await tx.execute(sql`select indexname from pg_indexes where schemaname = ${RECORDS_SCHEMA} and tablename = ${table}`),
    )) {
      const canonical = indexname.replace(staging, table);
      if (canonical !== indexname) {
        await tx.execute(sql.raw(`alter index ${qualified(indexname)} rename to ${quoted(canonical)}`));
      }
    }
    const [current] = await tx.select({ version: resources.version }).from(resources).where(eq(resources.code, resource.code));
    await tx.insert(catalogHistory).values({
      kind: 'resource',
      code: resource.code,
      version: current?.version ?? 1,
      change: 'imported',
      fields: [],
      detail: { rows: final.rows, skipped: final.skipped, sha256: final.sha256, seconds: final.seconds, source: options.source },
    });
  });
  // Statistics for the new table now, not whenever autovacuum comes by: without them the planner
  // guesses (e.g. a key-order scan for a filter an index answers) and estimated counts are wrong.
  await db.execute(sql.raw(`analyze ${qualified(table)}`));
  return final;
}

/** Import a file (CSV, NDJSON or a JSON array) into a resource. */
export async function importFile(
  database: Database,
  resource: Resource,
  file: string,
  options: Omit<LoadOptions, 'source'> & { format?: string; onBytes?: (n: number) => void },
): Promise<ImportReport> {
  const { rows, hash } = readRecordFile(file, formatOf(file, options.format), createHash('sha256'), options.onBytes);
  return loadRecords(database, resource, rows, { ...options, source: file.split('/').pop() ?? file }, () => hash.digest('hex'));
}

