import { sql, type SQL } from 'drizzle-orm';
import type { DataItem, Resource } from '../catalog/index.js';
import { rowsOf, type Db } from '../db/index.js';
import { defineProblem } from '../errors.js';
import { comparable, formatProblem, item, qualified, quoted, recordTable, selected, type StoredRecord } from '../records/index.js';

export const InvalidIdentifier = defineProblem<[string]>('invalid_identifier', '%s', 400);

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
