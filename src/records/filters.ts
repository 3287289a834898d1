/**
 * Filters and selections over a record table: typed, parameterised SQL from the catalog's data
 * items, shared by the exchange's queries and open data's records and downloads.
 */
import { sql, type SQL } from 'drizzle-orm';
import type { DataItem, Resource } from '../model/catalog.js';
import { defineProblem } from '../errors.js';
import { typedValue } from './import.js';
import { quoted } from './tables.js';

export const InvalidFilter = defineProblem<[string]>('invalid_filter', '%s', 400);

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
export function comparable(resource: Resource, name: string, value: unknown, problem: (detail: string) => Error): unknown {
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

