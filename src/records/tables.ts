import { sql } from 'drizzle-orm';
import { rowsOf, type Db } from '../db/index.js';
import { recordMigrations } from '../db/schema.js';
import type { DataItem, Resource } from '../model/catalog.js';

export const RECORDS_SCHEMA = 'records';

/** `330000-EDU-00001` → `r_330000_edu_00001`: built from a validated code, so always a plain name. */
export function recordTable(code: string): string {
  if (!/^[0-9]{6}-[A-Z]{2,8}-[0-9]{5}$/.test(code)) throw new Error(`not a resource code: ${code}`);
  return `r_${code.toLowerCase().replaceAll('-', '_')}`;
}

/** An identifier in double quotes; item names are already `^[a-z][a-z0-9_]*$` by the catalog schema. */
export function quoted(name: string): string {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`not a plain identifier: ${name}`);
  return `"${name}"`;
}

export function qualified(table: string): string {
  return `${quoted(RECORDS_SCHEMA)}.${quoted(table)}`;
}

const columnTypes: Record<DataItem['type'], string> = {
  string: 'text',
  integer: 'bigint',
  number: 'double precision',
  boolean: 'boolean',
  date: 'date',
  datetime: 'timestamptz',
};

export function columnType(item: DataItem): string {
  return columnTypes[item.type];
}

/** The statements that make a fresh table with the resource's columns, key and indexes. */
export function createTableStatements(resource: Resource, table: string, indexSuffix = ''): string[] {
  const columns = resource.items.map((item) => {
    const notNull = item.required || resource.record_key.includes(item.name) ? ' not null' : '';
    return `${quoted(item.name)} ${columnType(item)}${notNull}`;
  });
  const key = resource.record_key.map(quoted).join(', ');
  return [
    `create table ${qualified(table)} (${columns.join(', ')}, constraint ${quoted(`${table}${indexSuffix}_pkey`)} primary key (${key}))`,
    ...indexStatements(resource, table, indexSuffix),
  ];
}

/**
 * An index per filterable item, on the item followed by the record key: a filter on the item is
 * then answered in key order from the index alone (`where region_code = … order by id_number
 * limit 101`, and every keyset page after it), instead of a scan in key order that filters.
 */
function indexStatements(resource: Resource, table: string, indexSuffix: string): string[] {
  return resource.items
    .filter((item) => item.filterable && !(resource.record_key.length === 1 && resource.record_key[0] === item.name))
    .map((item) => {
      const columns = [item.name, ...resource.record_key.filter((name) => name !== item.name)].map(quoted).join(', ');
      return `create index if not exists ${quoted(indexName(table, indexSuffix, item.name))} on ${qualified(table)} (${columns})`;
    });
}

function indexName(table: string, indexSuffix: string, item: string): string {
  return `${table}${indexSuffix}_${item}_k`.slice(0, 63);
}

/**
 * Bring a resource's record table in line with its catalog entry: create it, add new data items as
 * columns, index the filterable ones. Items that left the catalog keep their column (data is never
 * dropped by a catalog edit); a changed type is converted in place, and a failing conversion fails
 * the sync that asked for it. What was run is kept in `record_migrations`.
 */
export async function migrateRecordTable(db: Db, resource: Resource, version: number): Promise<string[]> {
  const table = recordTable(resource.code);
  const existing = rowsOf<{ column_name: string; data_type: string }>(
    await db.execute(sql`select column_name, data_type from information_schema.columns
      where table_schema = ${RECORDS_SCHEMA} and table_name = ${table}`),
  );
  let statements: string[];
  if (existing.length === 0) {
    statements = createTableStatements(resource, table);
  } else {
    const types = new Map(existing.map((column) => [column.column_name, column.data_type]));
    statements = [];
    for (const item of resource.items) {
      const current = types.get(item.name);
      const wanted = columnType(item);
      if (current === undefined) {
        statements.push(`alter table ${qualified(table)} add column ${quoted(item.name)} ${wanted}`);
      } else if (!sameType(current, wanted)) {
        statements.push(`alter table ${qualified(table)} alter column ${quoted(item.name)} type ${wanted} using ${quoted(item.name)}::${wanted}`);
      }
    }
    statements.push(...indexStatements(resource, table, ''));
    const known = await existingIndexes(db, table);
    statements = statements.filter((statement) => !/^create index if not exists "([^"]+)"/.test(statement) || !known.has(/^create index if not exists "([^"]+)"/.exec(statement)?.[1] as string));
    // Indexes of an earlier layout (the item alone) give way to the item-and-key ones.
    for (const item of resource.items) {
      const old = `${table}_${item.name}`.slice(0, 63);
      if (known.has(old) && old !== indexName(table, '', item.name)) statements.push(`drop index if exists ${quoted(RECORDS_SCHEMA)}.${quoted(old)}`);
    }
  }
  for (const statement of statements) await db.execute(sql.raw(statement));
  if (statements.length > 0) await db.insert(recordMigrations).values({ resource: resource.code, version, statements });
  return statements;
}

async function existingIndexes(db: Db, table: string): Promise<Set<string>> {
  const rows = rowsOf<{ indexname: string }>(
    await db.execute(sql`select indexname from pg_indexes where schemaname = ${RECORDS_SCHEMA} and tablename = ${table}`),
  );
  return new Set(rows.map((row) => row.indexname));
}

function sameType(informationSchemaType: string, wanted: string): boolean {
  const aliases: Record<string, string> = { 'timestamp with time zone': 'timestamptz' };
  return (aliases[informationSchemaType] ?? informationSchemaType) === wanted;
}
