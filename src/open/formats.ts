import { once } from 'node:events';
import { PassThrough, Readable, type Writable } from 'node:stream';
import { stringify } from 'csv-stringify/sync';
import ExcelJS from 'exceljs';
import type { Resource } from '../catalog/index.js';
import { datasetFormats, type DownloadFormat } from '../catalog/dcat.js';
import { sql, type SQL } from 'drizzle-orm';
import type { Database } from '../db/index.js';
import type { StoredRecord } from '../records/index.js';
import { qualified, quoted, recordTable } from '../records/index.js';
import { spreadsheetText } from '../spreadsheet.js';
import { rowBatches } from './query.js';

export type FileFormat = 'csv' | 'json' | 'ndjson' | 'geojson' | 'xlsx';
export const fileFormats: readonly FileFormat[] = ['csv', 'json', 'ndjson', 'geojson', 'xlsx'];

/** An XLSX sheet holds 1,048,576 rows with its header; longer downloads go on to the next sheet. */
export const XLSX_ROWS_PER_SHEET = 1_000_000;

export function formatInfo(format: FileFormat): DownloadFormat {
  return datasetFormats({ items: [{ format: 'wgs84-longitude' }, { format: 'wgs84-latitude' }] } as Resource).find(
    (candidate) => candidate.name === format,
  ) as DownloadFormat;
}

/** The items that place a record on the map (WGS 84), when the dataset has both. */
export function coordinates(resource: Resource): { longitude: string; latitude: string } | undefined {
  const longitude = resource.items.find((item) => item.format === 'wgs84-longitude')?.name;
  const latitude = resource.items.find((item) => item.format === 'wgs84-latitude')?.name;
  return longitude && latitude ? { longitude, latitude } : undefined;
}

/** The items a download must read besides the selected ones (GeoJSON needs the coordinates). */
export function neededFields(resource: Resource, format: FileFormat, fields: string[]): string[] {
  const located = coordinates(resource);
  return format === 'geojson' && located ? [...new Set([...fields, located.longitude, located.latitude])] : fields;
}

function pick(row: StoredRecord, fields: string[]): Record<string, unknown> {
  const picked: Record<string, unknown> = {};
  for (const field of fields) picked[field] = row[field] ?? null;
  return picked;
}

/**
 * spreadsheetTextSql is spreadsheetText (src/spreadsheet.ts: a leading `'` before a text a
 * spreadsheet would take for a formula) for the CSV the database writes. Only the values of
 * `string` items are texts; numbers, integers, booleans, dates and times are never changed.
 * (PostgreSQL's regular expressions read `\t`, `\r` and `\.` as JavaScript's do.)
 */
function spreadsheetTextSql(column: string): string {
  const formulaStart = String.raw`'^[-=+@\t\r]'`;
  const decimal = String.raw`'^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$'`;
  return `case when ${column} ~ ${formulaStart} and ${column} !~ ${decimal} then '''' || ${column} else ${column} end`;
}

/**
 * A CSV line per record, written by the database: RFC 4180 quoting (a value with a quote, a
 * comma or a line end is quoted, its quotes doubled), NULL as an empty field, and every value in
 * the text the JSON formats give (dates YYYY-MM-DD, times RFC 3339 UTC, booleans true/false), texts
 * as spreadsheetText writes them for spreadsheets (`bom`). The bytes are those csv-stringify
 * writes from the rows, at several times the speed: no row objects are built. Not for `number`
 * items: PostgreSQL and JavaScript write some floats differently (1e+15 against
 * 1000000000000000), so those datasets are written row by row.
 */
export function csvLineSql(resource: Resource, fields: string[], bom = false): SQL | undefined {
  const texts = csvTexts(resource, fields, bom, (value) => `case when ${value} ~ '[",\r\n]' then '"' || replace(${value}, '"', '""') || '"' else ${value} end`);
  return texts?.length ? sql.raw(texts.map(({ text }) => `coalesce(${text}, '')`).join(` || ',' || `)) : undefined;
}

/**
 * Each field's value as the CSV text the JSON formats give, in SQL (strings as `string` makes
 * them, after spreadsheetTextSql for spreadsheets), or undefined when an item needs the rows (number).
 */
function csvTexts(resource: Resource, fields: string[], bom: boolean, string: (value: string) => string): Array<{ column: string; text: string }> | undefined {
  const texts: Array<{ column: string; text: string }> = [];
  for (const field of fields) {
    const dataItem = resource.items.find((candidate) => candidate.name === field);
    if (!dataItem || dataItem.type === 'number') return undefined;
    const column = quoted(field);
    const text = {
      string: string(bom ? spreadsheetTextSql(column) : column),
      integer: `${column}::text`,
      boolean: `case ${column} when true then 'true' when false then 'false' end`,
      date: `${column}::text`,
      datetime: `to_char(${column} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`,
    }[dataItem.type];
    texts.push({ column, text });
  }
  return texts;
}

function csvHeader(fields: string[], bom: boolean): string {
  return `${bom ? '\ufeff' : ''}${stringify([], { columns: fields, record_delimiter: 'windows', header: true })}`;
}

async function* csvLineChunks(batches: AsyncIterable<StoredRecord[]>, fields: string[], bom: boolean): AsyncGenerator<string> {
  yield csvHeader(fields, bom);
  for await (const batch of batches) {
    let chunk = '';
    for (const row of batch) chunk += `${row.__line as string}\r\n`;
    yield chunk;
  }
}

async function* csvChunks(batches: AsyncIterable<StoredRecord[]>, fields: string[], bom: boolean): AsyncGenerator<string> {
  // RFC 4180: CRLF line ends, fields quoted when they hold a quote, a comma or a line end.
  // quote_record_delimiter: csv-stringify quotes a lone CR or LF only when asked once the record
  // delimiter is CRLF, and an unquoted line end splits the record for every reader.
  // For spreadsheets, texts as spreadsheetText writes them: the JavaScript strings of a row are
  // the values of string items, and dates and times (YYYY-MM-DD…), which it never changes.
  const options = {
    columns: fields,
    record_delimiter: 'windows' as const,
    quote_record_delimiter: true,
    cast: { boolean: (value: boolean) => String(value), ...(bom ? { string: spreadsheetText } : {}) },
  };
  yield csvHeader(fields, bom);
  for await (const batch of batches) yield stringify(batch, { ...options, header: false });
}

async function* ndjsonChunks(batches: AsyncIterable<StoredRecord[]>, fields: string[]): AsyncGenerator<string> {
  for await (const batch of batches) {
    let chunk = '';
    for (const row of batch) chunk += `${JSON.stringify(pick(row, fields))}\n`;
    yield chunk;
  }
}

async function* jsonChunks(batches: AsyncIterable<StoredRecord[]>, fields: string[]): AsyncGenerator<string> {
  yield '[';
  let first = true;
  for await (const batch of batches) {
    let chunk = '';
    for (const row of batch) {
      chunk += `${first ? '\n' : ',\n'}${JSON.stringify(pick(row, fields))}`;
      first = false;
    }
    yield chunk;
  }
  yield first ? ']\n' : '\n]\n';
}

/** RFC 7946: one Point feature per record at its WGS 84 longitude and latitude; the other fields are properties. */
async function* geojsonChunks(resource: Resource, batches: AsyncIterable<StoredRecord[]>, fields: string[]): AsyncGenerator<string> {
  const located = coordinates(resource) as { longitude: string; latitude: string };
  const properties = fields.filter((field) => field !== located.longitude && field !== located.latitude);
  const key = resource.record_key;
  yield '{"type":"FeatureCollection","features":[';
  let first = true;
  for await (const batch of batches) {
    let chunk = '';
    for (const row of batch) {
      const lon = row[located.longitude];
      const lat = row[located.latitude];
      const feature = {
        type: 'Feature',
        id: key.map((name) => String(row[name])).join('~'),
        geometry: typeof lon === 'number' && typeof lat === 'number' ? { type: 'Point', coordinates: [lon, lat] } : null,
        properties: pick(row, properties),
      };
      chunk += `${first ? '\n' : ',\n'}${JSON.stringify(feature)}`;
      first = false;
    }
    yield chunk;
  }
  yield '\n]}\n';
}

/** The streams an exceljs sheet writer feeds (its StreamBuf's pipes: the zip entry's deflate stream). */
function sheetPipes(sheet: ExcelJS.Worksheet | undefined): Writable[] {
  const stream = (sheet as unknown as { stream?: { pipes?: unknown } } | undefined)?.stream;
  return Array.isArray(stream?.pipes) ? (stream.pipes as Writable[]).filter((pipe) => typeof pipe?.once === 'function') : [];
}

/** Whether a writable (Node's own, or the readable-stream copy exceljs' zip uses) has more buffered than it wants. */
function needsDrain(stream: Writable): boolean {
  const state = (stream as unknown as { _writableState?: { needDrain?: boolean; length?: number; highWaterMark?: number } })._writableState;
  return Boolean(stream.writableNeedDrain ?? state?.needDrain ?? (state?.length ?? 0) > (state?.highWaterMark ?? Infinity));
}

/** Until `stream` drains or `output` closes (a client gone); the listener left behind is removed. */
async function drained(stream: Writable, output: PassThrough): Promise<void> {
  const done = new AbortController();
  try {
    // The loser rejects with an AbortError once aborted: caught, it is only the listener's removal.
    const quiet = (promise: Promise<unknown>) => promise.catch(() => undefined);
    await Promise.race([quiet(once(stream, 'drain', { signal: done.signal })), quiet(once(output, 'close', { signal: done.signal }))]);
  } finally {
    done.abort();
  }
}

/**
 * A value as an XLSX cell of its type, never a formula: numbers and booleans as themselves, every
 * text as an inline string (`t="inlineStr"`; exceljs writes a plain string as `t="str"`, which
 * ECMA-376 §18.18.11 defines as a formula's result). An object would be read by exceljs as a
 * formula (`{formula}`), a hyperlink (`{hyperlink, text}`) or rich text: it goes as its JSON text,
 * as in the JSON formats.
 */
function xlsxCell(value: unknown): ExcelJS.CellValue {
  if (value === null || value === undefined) return null;
  if (typeof value === 'number' || typeof value === 'boolean') return value;
  return { richText: [{ text: typeof value === 'string' ? value : JSON.stringify(value) }] };
}

/**
 * XLSX written as a stream (exceljs' streaming workbook writer: no shared strings, no styles):
 * each batch is committed to the zip before the next is read, and the next is read only when the
 * output has been taken, so memory stays one batch whatever the size.
 */
function xlsxStream(resource: Resource, batches: AsyncIterable<StoredRecord[]>, fields: string[]): Readable {
  const output = new PassThrough({ highWaterMark: 256 * 1024 });
  const workbook = new ExcelJS.stream.xlsx.WorkbookWriter({ stream: output, useSharedStrings: false, useStyles: false });
  workbook.creator = 'govdata-gateway';
  let sheet: ExcelJS.Worksheet | undefined;
  let sheetRows = 0;
  let sheets = 0;
  const newSheet = () => {
    sheet?.commit();
    sheets += 1;
    sheet = workbook.addWorksheet(sheets === 1 ? resource.code : `${resource.code} (${sheets})`);
    // The first row names the items, as CSV's header does (their Chinese titles are in the Data Package).
    sheet.addRow(fields.map(xlsxCell)).commit();
    sheetRows = 0;
  };
  (async () => {
    newSheet();
    for await (const batch of batches) {
      for (const row of batch) {
        if (sheetRows >= XLSX_ROWS_PER_SHEET) newSheet();
        (sheet as ExcelJS.Worksheet).addRow(fields.map((field) => xlsxCell(row[field]))).commit();
        sheetRows += 1;
      }
      // Backpressure, twice: exceljs writes a sheet into the zip's deflate stream without heeding
      // it, so wait until the deflate stream has taken the rows, and until the client has taken
      // the zip output, before reading the next batch.
      for (const pipe of sheetPipes(sheet)) {
        if (needsDrain(pipe)) await drained(pipe, output);
      }
      if (output.writableNeedDrain) await drained(output, output);
      if (output.destroyed) return;
    }
    (sheet as ExcelJS.Worksheet).commit();
    await workbook.commit();
  })().catch((error: Error) => output.destroy(error));
  return output;
}

/** The records of a download in a file format, as a stream that pulls batches only as it is read. */
export function encodeRecords(
  resource: Resource,
  format: FileFormat,
  batches: AsyncIterable<StoredRecord[]>,
  fields: string[],
  options: { bom?: boolean } = {},
): Readable {
  switch (format) {
    case 'csv':
      return Readable.from(csvChunks(batches, fields, options.bom ?? false), { objectMode: false });
    case 'ndjson':
      return Readable.from(ndjsonChunks(batches, fields), { objectMode: false });
    case 'json':
      return Readable.from(jsonChunks(batches, fields), { objectMode: false });
    case 'geojson':
      return Readable.from(geojsonChunks(resource, batches, fields), { objectMode: false });
    case 'xlsx':
      return xlsxStream(resource, batches, fields);
  }
}

/**
 * `COPY (select …) TO STDOUT (FORMAT csv, HEADER)` for a whole dataset, its values written as
 * csvLineSql writes them (empty text as NULL: COPY would quote it); undefined when an item needs
 * the rows (number). COPY takes no parameters: this is built from quoted identifiers alone.
 */
export function csvCopyStatement(resource: Resource, fields: string[], bom = false): string | undefined {
  const texts = csvTexts(resource, fields, bom, (value) => `nullif(${value}, '')`);
  if (!texts?.length) return undefined;
  const key = resource.record_key.map(quoted).join(', ');
  const columns = texts.map(({ column, text }) => `${text} as ${column}`).join(', ');
  return `copy (select ${columns} from ${qualified(recordTable(resource.code))} order by ${key}) to stdout (format csv, header)`;
}

const LF = 0x0a;
const QUOTE = 0x22;
const CRLF = Buffer.from('\r\n');

/**
 * COPY ends CSV lines with LF; RFC 4180 wants CRLF. Every LF outside quotes ends a record (one
 * inside quotes is a value's own and stays); a doubled quote toggles twice, so the state holds.
 */
async function* crlfLines(chunks: AsyncIterable<Buffer>, bom: boolean, signal?: AbortSignal): AsyncGenerator<Buffer> {
  if (bom) yield Buffer.from('\ufeff');
  let quotedValue = false;
  for await (const chunk of chunks) {
    signal?.throwIfAborted();
    if (!quotedValue && chunk.indexOf(QUOTE) === -1) {
      // No quoted value here (most chunks): every LF ends a record. latin1 keeps the bytes as they are.
      yield Buffer.from(chunk.toString('latin1').replaceAll('\n', '\r\n'), 'latin1');
      continue;
    }
    const parts: Buffer[] = [];
    let start = 0;
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i];
      if (byte === QUOTE) quotedValue = !quotedValue;
      else if (byte === LF && !quotedValue) {
        parts.push(chunk.subarray(start, i), CRLF);
        start = i + 1;
      }
    }
    parts.push(chunk.subarray(start));
    yield Buffer.concat(parts);
  }
}

export interface RecordStreamOptions {
  /** CSV for spreadsheets: a UTF-8 byte order mark first, and texts as spreadsheetText writes them. */
  bom?: boolean;
  /** Stops the read between batches (prebuilding stops with the gateway). */
  signal?: AbortSignal;
}

/**
 * The matching records of a dataset in a file format, streamed in record-key order with constant
 * memory: a whole dataset's CSV by COPY on PostgreSQL, other CSV lines written by the database
 * where it can (csvLineSql), rows encoded here otherwise.
 */
export function recordStream(
  database: Database,
  resource: Resource,
  format: FileFormat,
  fields: string[],
  where: SQL[],
  fetchRows: number,
  options: RecordStreamOptions = {},
): Readable {
  const { signal } = options;
  async function* checked(batches: AsyncIterable<StoredRecord[]>) {
    for await (const batch of batches) {
      signal?.throwIfAborted();
      yield batch;
    }
  }
  // A whole dataset as CSV: PostgreSQL's COPY, on a connection of its own, when one is free.
  const bom = options.bom ?? false;
  const copy = format === 'csv' && where.length === 0 ? csvCopyStatement(resource, fields, bom) : undefined;
  const copied = copy ? database.copyOut?.(copy) : undefined;
  if (copied) return Readable.from(crlfLines(copied, bom, signal), { objectMode: false });
  const line = format === 'csv' ? csvLineSql(resource, fields, bom) : undefined;
  if (line) {
    const batches = checked(rowBatches(database, resource, fields, where, fetchRows, line));
    return Readable.from(csvLineChunks(batches, fields, bom), { objectMode: false });
  }
  const batches = checked(rowBatches(database, resource, neededFields(resource, format, fields), where, fetchRows));
  return encodeRecords(resource, format, batches, fields, options);
}
