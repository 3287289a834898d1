import { sql, type SQL } from 'drizzle-orm';
import type { DataItem, Resource } from '../catalog/index.js';
import { rowsOf, type Database, type Db } from '../db/index.js';
import { defineProblem } from '../errors.js';
import { filterSql, InvalidFilter, item, operators, selected, type Filter, type StoredRecord } from '../records/index.js';
import { qualified, quoted, recordTable } from '../records/index.js';
import { typedValue } from '../records/index.js';

export const InvalidSelect = defineProblem<[string]>('invalid_select', '%s', 400);
export const InvalidOrder = defineProblem<[string]>('invalid_order', '%s', 400);

export const MAX_OPEN_PAGE = 1000;
/** Up to this many matches a total is counted exactly; beyond, the planner's estimate is given. */
export const EXACT_COUNT_LIMIT = 10_000;

export interface OrderTerm {
  item: string;
  descending: boolean;
}

/** What a records query or a download asks for: fields, a typed filter, an order. */
export interface OpenQuery {
  fields: string[];
  filter: Filter;
  where: SQL[];
  /** The caller's order followed by the record key (a total order, so that keyset paging is exact). */
  order: OrderTerm[];
  /** The order as asked, for the cursor: a cursor is only good for the order it was made for. */
  orderText: string;
  /** True when anything narrows the rows (a whole-dataset download can be served prebuilt). */
  filtered: boolean;
}

const WHERE_PARAM = /^where\[([a-z][a-z0-9_]{0,62})\]\[([a-z]+)\]$/;

/** `?where[item][op]=value` as a filter; `in` takes a comma-separated list (or the parameter repeated). */
function whereParams(query: Record<string, unknown>): Filter {
  const filter: Filter = {};
  for (const [key, raw] of Object.entries(query)) {
    const match = WHERE_PARAM.exec(key);
    if (!match) continue;
    const [, name, op] = match as unknown as [string, string, string];
    if (!(operators as readonly string[]).includes(op)) throw new InvalidFilter(`${name}: unknown operator ${op} (use ${operators.join(', ')})`);
    const values = (Array.isArray(raw) ? raw : [raw]).map(String);
    const comparisons = (filter[name] ??= {});
    if (op === 'in') {
      comparisons.in = values.flatMap((value) => value.split(',')).filter((value) => value.length > 0);
    } else {
      if (values.length > 1) throw new InvalidFilter(`${name}: ${op} is given ${values.length} times`);
      (comparisons as Record<string, unknown>)[op] = values[0];
    }
  }
  return filter;
}

/** The JSON `filter` parameter (the exchange query's filter), merged with `where[…]` parameters. */
function jsonFilter(text: unknown): Filter {
  if (text === undefined) return {};
  let value: unknown;
  try {
    value = JSON.parse(String(text));
  } catch {
    throw new InvalidFilter('filter: is not JSON (expected {"item": {"op": value}})');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new InvalidFilter('filter: must be a JSON object of items');
  return value as Filter;
}

function selectedFields(resource: Resource, select: unknown): string[] {
  if (select === undefined || select === '') return resource.items.map((candidate) => candidate.name);
  const names = String(select)
    .split(',')
    .map((name) => name.trim())
    .filter(Boolean);
  const unknown = names.filter((name) => !item(resource, name));
  if (unknown.length) throw new InvalidSelect(`select: ${unknown.join(', ')} ${unknown.length > 1 ? 'are not data items' : 'is not a data item'} of ${resource.code}`);
  if (names.length === 0) throw new InvalidSelect('select: names no data item');
  return [...new Set(names)];
}

/** Whether records can be ordered by an item: the record key's items, and required indexed items (keyset paging follows them). */
export function canOrderBy(resource: Resource, dataItem: DataItem): boolean {
  return resource.record_key.includes(dataItem.name) || (dataItem.filterable && dataItem.required);
}

/**
 * `order=name,-code`: indexed items (filterable or in the record key) that every record has, so
 * that keyset paging can follow them; the record key is added to break ties.
 */
function orderTerms(resource: Resource, order: unknown): OrderTerm[] {
  const asked: OrderTerm[] = [];
  if (order !== undefined && order !== '') {
    for (const part of String(order).split(',').map((p) => p.trim()).filter(Boolean)) {
      const descending = part.startsWith('-');
      const name = descending || part.startsWith('+') ? part.slice(1) : part;
      const dataItem = item(resource, name);
      if (!dataItem) throw new InvalidOrder(`order: ${name} is not a data item of ${resource.code}`);
      if (!canOrderBy(resource, dataItem)) {
        throw new InvalidOrder(`order: ${name} cannot order records (only the record key and required indexed items can)`);
      }
      if (asked.some((term) => term.item === name)) throw new InvalidOrder(`order: ${name} is named twice`);
      asked.push({ item: name, descending });
    }
  }
  const keyTerms = resource.record_key.filter((name) => !asked.some((term) => term.item === name)).map((name) => ({ item: name, descending: false }));
  return [...asked, ...keyTerms];
}

/** Read `select`, `where[…]`, `filter` and `order` from a query string; every mistake is a 400 naming the item. */
export function parseOpenQuery(resource: Resource, query: Record<string, unknown>): OpenQuery {
  const filter = jsonFilter(query.filter);
  for (const [name, comparisons] of Object.entries(whereParams(query))) {
    const current = filter[name];
    filter[name] = typeof current === 'object' && current !== null && !Array.isArray(current) ? { ...current, ...comparisons } : comparisons;
  }
  const fields = selectedFields(resource, query.select);
  const order = orderTerms(resource, query.order);
  const { where } = filterSql(resource, filter);
  return {
    fields,
    filter,
    where,
    order,
    orderText: order.map((term) => `${term.descending ? '-' : ''}${term.item}`).join(','),
    filtered: where.length > 0 || query.select !== undefined,
  };
}

/** The rows after a keyset position, for an order that may mix directions. */
export function keysetCondition(order: OrderTerm[], after: unknown[]): SQL {
  const column = (term: OrderTerm) => sql.raw(quoted(term.item));
  if (order.every((term) => term.descending === order[0]?.descending)) {
    // One direction: a row comparison, which an index on the same columns answers directly.
    const symbol = sql.raw(order[0]?.descending ? '<' : '>');
    return sql`(${sql.join(order.map(column), sql`, `)}) ${symbol} (${sql.join(after.map((value) => sql`${value}`), sql`, `)})`;
  }
  const alternatives = order.map((term, index) => {
    const equal = order.slice(0, index).map((previous, i) => sql`${column(previous)} = ${after[i]}`);
    const beyond = sql`${column(term)} ${sql.raw(term.descending ? '<' : '>')} ${after[index]}`;
    return sql`(${sql.join([...equal, beyond], sql` and `)})`;
  });
  return sql`(${sql.join(alternatives, sql` or `)})`;
}

/**
 * Whether a cursor's position holds, for every order item, a value of the item's type as a page
 * answers it: a forged or stale cursor is then a 400, never a database error.
 */
export function fitsOrder(resource: Resource, order: OrderTerm[], values: unknown[]): boolean {
  return (
    values.length === order.length &&
    order.every((term, index) => {
      const value = values[index];
      const dataItem = item(resource, term.item);
      switch (dataItem?.type) {
        case 'string':
          return typeof value === 'string';
        case 'integer':
          return Number.isSafeInteger(value);
        case 'number':
          return typeof value === 'number' && Number.isFinite(value);
        case 'boolean':
          return typeof value === 'boolean';
        case 'date':
        case 'datetime':
          return typeof value === 'string' && 'value' in typedValue({ ...dataItem, required: true, max_length: undefined, format: undefined } as DataItem, value);
        default:
          return false;
      }
    })
  );
}

function orderBy(order: OrderTerm[]): SQL {
  return sql.raw(order.map((term) => `${quoted(term.item)}${term.descending ? ' desc' : ''}`).join(', '));
}

function table(resource: Resource): SQL {
  return sql.raw(qualified(recordTable(resource.code)));
}

function whereClause(conditions: SQL[]): SQL {
  return conditions.length ? sql`where ${sql.join(conditions, sql` and `)}` : sql``;
}

export interface RecordsPage {
  items: StoredRecord[];
  /** The order values of the last row, when there are more rows. */
  next: unknown[] | null;
}

/** One page in the query's order after a keyset position; only the selected fields are answered. */
export async function recordsPage(db: Db, resource: Resource, query: OpenQuery, limit: number, after?: unknown[]): Promise<RecordsPage> {
  const orderItems = query.order.map((term) => term.item);
  const conditions = after ? [...query.where, keysetCondition(query.order, after)] : query.where;
  const rows = rowsOf<StoredRecord>(
    await db.execute(sql`select ${selected(resource, [...new Set([...query.fields, ...orderItems])])} from ${table(resource)}
      ${whereClause(conditions)} order by ${orderBy(query.order)} limit ${limit + 1}`),
  );
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return {
    items: page.map((row) => Object.fromEntries(query.fields.map((field) => [field, row[field] ?? null]))),
    next: rows.length > limit && last ? orderItems.map((name) => last[name] ?? null) : null,
  };
}

/**
 * How many records match: counted exactly up to EXACT_COUNT_LIMIT (a bounded scan), and beyond
 * that the planner's estimate, marked as such, so that a count never costs a full scan.
 */
export async function countRecords(db: Db, resource: Resource, where: SQL[]): Promise<{ total: number; exact: boolean }> {
  const [counted] = rowsOf<{ n: number }>(
    await db.execute(sql`select count(*)::int as n from (select 1 from ${table(resource)} ${whereClause(where)} limit ${EXACT_COUNT_LIMIT + 1}) as bounded`),
  );
  const n = counted?.n ?? 0;
  if (n <= EXACT_COUNT_LIMIT) return { total: n, exact: true };
  const plan = rowsOf<Record<string, unknown>>(await db.execute(sql`explain (format json) select 1 from ${table(resource)} ${whereClause(where)}`));
  const document = Object.values(plan[0] ?? {})[0];
  const parsed = (typeof document === 'string' ? JSON.parse(document) : document) as Array<{ Plan?: { 'Plan Rows'?: number } }>;
  const estimate = Math.round(parsed[0]?.Plan?.['Plan Rows'] ?? n);
  return { total: Math.max(estimate, n), exact: false };
}

/**
 * Every matching row in record-key order, in batches, with constant memory: a server-side cursor
 * on PostgreSQL (one snapshot), keyset pages on PGlite (one connection that other requests share).
 */
export async function* rowBatches(
  database: Database,
  resource: Resource,
  fields: string[],
  where: SQL[],
  batchSize: number,
  /** One expression per row instead of the fields (as `__line`; keyset paging adds the key). */
  line?: SQL,
): AsyncGenerator<StoredRecord[]> {
  const key = resource.record_key;
  const columns = line
    ? database.cursor
      ? sql`${line} as "__line"`
      : sql`${line} as "__line", ${selected(resource, key)}`
    : selected(resource, [...new Set([...fields, ...key])]);
  const keyOrder: OrderTerm[] = key.map((name) => ({ item: name, descending: false }));
  if (database.cursor) {
    yield* database.cursor<StoredRecord>(sql`select ${columns} from ${table(resource)} ${whereClause(where)} order by ${orderBy(keyOrder)}`, batchSize);
    return;
  }
  let after: unknown[] | undefined;
  for (;;) {
    const conditions = after ? [...where, keysetCondition(keyOrder, after)] : where;
    const rows = rowsOf<StoredRecord>(
      await database.db.execute(sql`select ${columns} from ${table(resource)} ${whereClause(conditions)} order by ${orderBy(keyOrder)} limit ${batchSize}`),
    );
    if (rows.length > 0) yield rows;
    if (rows.length < batchSize) return;
    const last = rows.at(-1) as StoredRecord;
    after = key.map((name) => last[name]);
  }
}
