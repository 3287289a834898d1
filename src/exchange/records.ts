import { sql, type SQL } from 'drizzle-orm';
import type { DataItem, Resource } from '../catalog/index.js';
import { rowsOf, type Db } from '../db/index.js';
import { defineProblem } from '../errors.js';
import { formatProblem } from './identifiers.js';
import { typedValue } from './import.js';
import { qualified, quoted, recordTable } from './tables.js';

export const InvalidFilter = defineProblem<[string]>('invalid_filter', '%s', 400);
export const InvalidIdentifier = defineProblem<[string]>('invalid_identifier', '%s', 400);

export type Operator = 'eq' | 'in' | 'lt' | 'lte' | 'gt' | 'gte' | 'prefix';
export const operators: readonly Operator[] = ['eq', 'in', 'lt', 'lte', 'gt', 'gte', 'prefix'];
export const MAX_IN_VALUES = 100;

export type Filter = Record<string, Partial<Record<Operator, unknown>>>;
export type StoredRecord = Record<string, unknown>;

export function item(resource: Resource, name: string): DataItem | undefined {
  return resource.items.find((candidate) => candidate.name === name);
}

const selections = new WeakMap<Resource, Map<string, SQL>>();

/** How a column is read back: dates as YYYY-MM-DD, times as RFC 3339 UTC, integers as numbers. */
export function selected(resource: Resource, fields: string[]): SQL {
  // Kept per resource document (a catalog sync brings new documents): the hot exchange routes
  // ask for the same few column lists thousands of times a second.
  let known = selections.get(resource);
  if (!known) selections.set(resource, (known = new Map()));
  const key = fields.join(',');
  let columns = known.get(key);
  if (!columns) {
    if (known.size >= 64) known.clear();
    known.set(key, (columns = selectedColumns(resource, fields)));
  }
  return columns;
}

function selectedColumns(resource: Resource, fields: string[]): SQL {
  const columns = fields.map((field) => {
    const type = item(resource, field)?.type;
    const column = quoted(field);
    if (type === 'date') return `${column}::text as ${column}`;
    if (type === 'datetime') return `to_char(${column} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as ${column}`;
    if (type === 'integer') return `${column}::float8 as ${column}`;
    return column;
  });
  return sql.raw(columns.join(', '));
}

/** A value for a comparison with an item, typed and checked against its format, or a 400 naming it. */
function comparable(resource: Resource, name: string, value: unknown, problem: (detail: string) => Error): unknown {
  const dataItem = item(resource, name) as DataItem;
  const typed = typedValue({ ...dataItem, required: true, max_length: undefined } as DataItem, value);
  if ('problem' in typed) throw problem(`${name}: ${typed.problem}`);
  return typed.value;
}

/**
 * A query filter as parameterised SQL: known, filterable items only, the exchange operators
 * only, values typed by their items, `in` lists bounded. Every mistake is a 400 naming the item.
 */
export function filterSql(resource: Resource, filter: Filter): { where: SQL[]; items: string[] } {
  const where: SQL[] = [];
  for (const [name, comparisons] of Object.entries(filter)) {
    const dataItem = item(resource, name);
    if (!dataItem) throw new InvalidFilter(`${name}: is not a data item of ${resource.code}`);
    if (!dataItem.filterable && !resource.record_key.includes(name)) {
      throw new InvalidFilter(`${name}: is not filterable (only indexed items are: ${resource.items.filter((i) => i.filterable).map((i) => i.name).join(', ') || 'none'})`);
    }
    if (typeof comparisons !== 'object' || comparisons === null || Array.isArray(comparisons)) {
      throw new InvalidFilter(`${name}: must be an object of operators (${operators.join(', ')})`);
    }
    const column = sql.raw(quoted(name));
    for (const [op, raw] of Object.entries(comparisons)) {
      if (!(operators as readonly string[]).includes(op)) throw new InvalidFilter(`${name}: unknown operator ${op} (use ${operators.join(', ')})`);
      const problem = (detail: string) => new InvalidFilter(detail);
      switch (op as Operator) {
        case 'in': {
          if (!Array.isArray(raw) || raw.length === 0) throw new InvalidFilter(`${name}: in needs a non-empty array`);
          if (raw.length > MAX_IN_VALUES) throw new InvalidFilter(`${name}: in takes at most ${MAX_IN_VALUES} values`);
          const values = raw.map((value) => comparable(resource, name, value, problem));
          where.push(sql`${column} in (${sql.join(values.map((value) => sql`${value}`), sql`, `)})`);
          break;
        }
        case 'prefix': {
          if (dataItem.type !== 'string' || typeof raw !== 'string' || raw.length === 0) {
            throw new InvalidFilter(`${name}: prefix needs a non-empty string on a text item`);
          }
          where.push(sql`${column} like ${`${raw.replace(/[\\%_]/g, (c) => `\\${c}`)}%`}`);
          break;
        }
        default: {
          const value = comparable(resource, name, raw, problem);
          const symbol = { eq: '=', lt: '<', lte: '<=', gt: '>', gte: '>=' }[op as 'eq' | 'lt' | 'lte' | 'gt' | 'gte'];
          where.push(sql`${column} ${sql.raw(symbol)} ${value}`);
        }
      }
    }
  }
  return { where, items: Object.keys(filter) };
}

/** Check an identifying value against its item's format before it is looked up. */
export function checkIdentifier(resource: Resource, name: string, value: unknown): string {
  const dataItem = item(resource, name) as DataItem;
  const text = typeof value === 'string' ? value.trim() : String(value);
  const problem = formatProblem(dataItem.format, text);
  if (problem) throw new InvalidIdentifier(`${name}: ${problem}`);
  return dataItem.format === 'cn-resident-id' || dataItem.format === 'cn-uscc' ? text.toUpperCase() : text;
}

/**
 * One record by its key (a composite key is joined with `~`), with `fields` and the `extra` items
 * the caller does not see but the audit trail needs (the person it is about).
 */
export async function readRecord(db: Db, resource: Resource, key: string, fields: string[], extra: string[] = []): Promise<StoredRecord | undefined> {
  const parts = resource.record_key.length === 1 ? [key] : key.split('~');
  if (parts.length !== resource.record_key.length) {
    throw new InvalidIdentifier(`the key of ${resource.code} is ${resource.record_key.join('~')}`);
  }
  const conditions = resource.record_key.map((name, index) => {
    const value = comparable(resource, name, checkIdentifier(resource, name, parts[index]), (d) => new InvalidIdentifier(d));
    return sql`${sql.raw(quoted(name))} = ${value}`;
  });
  const rows = rowsOf<StoredRecord>(
    await db.execute(sql`select ${selected(resource, [...new Set([...fields, ...extra])])} from ${sql.raw(qualified(recordTable(resource.code)))} where ${sql.join(conditions, sql` and `)}`),
  );
  return rows[0];
}

export interface QueryPage {
  items: StoredRecord[];
  next: unknown[] | null;
  /** The `extra` items of every row, for the audit trail; never in the answer. */
  extras: StoredRecord[];
}

/** A page of records matching a filter, in record-key order (keyset: stable while rows are added). */
export async function queryRecords(
  db: Db,
  resource: Resource,
  where: SQL[],
  fields: string[],
  limit: number,
  after?: unknown[],
  extra: string[] = [],
): Promise<QueryPage> {
  const key = resource.record_key;
  const keyColumns = sql.raw(key.map(quoted).join(', '));
  const keyset = after ? [sql`(${keyColumns}) > (${sql.join(after.map((value) => sql`${value}`), sql`, `)})`] : [];
  const conditions = [...where, ...keyset];
  const selectFields = [...new Set([...fields, ...key, ...extra])];
  const rows = rowsOf<StoredRecord>(
    await db.execute(sql`select ${selected(resource, selectFields)} from ${sql.raw(qualified(recordTable(resource.code)))}
      ${conditions.length ? sql`where ${sql.join(conditions, sql` and `)}` : sql``}
      order by ${keyColumns} limit ${limit + 1}`),
  );
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  const next = rows.length > limit && last ? key.map((name) => last[name]) : null;
  // Key columns the caller was not granted leave the answer (they only served the cursor).
  return {
    items: page.map((row) => Object.fromEntries(fields.map((field) => [field, row[field] ?? null]))),
    next,
    extras: page.map((row) => Object.fromEntries(extra.map((field) => [field, row[field] ?? null]))),
  };
}

export type FieldResult = 'match' | 'mismatch' | 'unknown';
export type Verdict = 'match' | 'mismatch' | 'not_found';

function normalised(dataItem: DataItem, value: unknown): string | null {
  if (value === null || value === undefined) return null;
  const text = String(value).trim();
  if (dataItem.format === 'cn-resident-id' || dataItem.format === 'cn-uscc') return text.toUpperCase();
  if (dataItem.type === 'number' || dataItem.type === 'integer') return String(Number(text));
  if (dataItem.type === 'datetime') return new Date(text).toISOString();
  return text;
}

/** Which item finds the record for a subject: the record key, or an indexed identifier. */
export function lookupItem(resource: Resource, subject: Record<string, unknown>): string | undefined {
  if (resource.record_key.length === 1 && (resource.record_key[0] as string) in subject) return resource.record_key[0];
  return resource.items.find(
    (candidate) => candidate.name in subject && candidate.filterable && (candidate.format === 'cn-resident-id' || candidate.format === 'cn-uscc'),
  )?.name;
}

/**
 * 核验, "usable but not visible": compare what the caller holds with what is stored and answer
 * match / mismatch / not_found with a result per field, never a stored value.
 */
export async function verifySubjects(
  db: Db,
  resource: Resource,
  subjects: Array<Record<string, unknown>>,
  lookups: string[],
): Promise<Array<{ verdict: Verdict; fields: Record<string, FieldResult> }>> {
  const compared = [...new Set(subjects.flatMap((subject) => Object.keys(subject)))];
  const byLookup = new Map<string, unknown[]>();
  subjects.forEach((subject, index) => {
    const name = lookups[index] as string;
    byLookup.set(name, [...(byLookup.get(name) ?? []), subject[name]]);
  });
  const stored: StoredRecord[] = [];
  for (const [name, values] of byLookup) {
    const typed = values.map((value) => comparable(resource, name, value, (d) => new InvalidIdentifier(d)));
    stored.push(
      ...rowsOf<StoredRecord>(
        await db.execute(sql`select ${selected(resource, [...new Set([...compared, name])])} from ${sql.raw(qualified(recordTable(resource.code)))}
          where ${sql.raw(quoted(name))} in (${sql.join(typed.map((value) => sql`${value}`), sql`, `)})`),
      ),
    );
  }
  return subjects.map((subject, index) => {
    const name = lookups[index] as string;
    const dataItem = item(resource, name) as DataItem;
    const candidates = stored.filter((record) => normalised(dataItem, record[name]) === normalised(dataItem, subject[name]));
    const names = Object.keys(subject);
    if (candidates.length === 0) return { verdict: 'not_found' as const, fields: Object.fromEntries(names.map((n) => [n, 'unknown' as const])) };
    const results = candidates.map((record) =>
      Object.fromEntries(
        names.map((n) => {
          const fieldItem = item(resource, n) as DataItem;
          const have = normalised(fieldItem, record[n]);
          const result: FieldResult = have === null ? 'unknown' : have === normalised(fieldItem, subject[n]) ? 'match' : 'mismatch';
          return [n, result];
        }),
      ),
    );
    const best = results.sort((a, b) => Object.values(b).filter((r) => r === 'match').length - Object.values(a).filter((r) => r === 'match').length)[0] as Record<string, FieldResult>;
    const verdict: Verdict = Object.values(best).every((result) => result === 'match') ? 'match' : 'mismatch';
    return { verdict, fields: best };
  });
}
