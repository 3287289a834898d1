import type { FastifyInstance } from 'fastify';
import Type, { type Static } from 'typebox';
import type { DataItem, Resource } from '../catalog/index.js';
import { canOrderBy, fitsOrder, parseOpenQuery, recordsPage, type Dataset, type OpenQuery } from '../open/index.js';
import { decodeCursor, encodeCursor } from '../pagination.js';
import type { Frame, Params } from './frame.js';

/** Rows a preview page shows. */
export const GRID_PAGE = 20;
export const GRID_OPERATORS = ['eq', 'prefix', 'gte', 'lte'] as const;

export const GridQuery = {
  item: Type.Optional(Type.String({ maxLength: 63 })),
  op: Type.Optional(Type.Union(GRID_OPERATORS.map((op) => Type.Literal(op)))),
  value: Type.Optional(Type.String({ maxLength: 200 })),
  order: Type.Optional(Type.String({ maxLength: 200 })),
  cursor: Type.Optional(Type.String({ maxLength: 2000 })),
};
const GridObject = Type.Object(GridQuery);
export type GridParams = Static<typeof GridObject>;

export interface Column {
  item: DataItem;
  /** Whether the grid can sort by it: the record key, or a required indexed item. */
  sortable: boolean;
  /** Its state in the current order, for aria-sort and the header link. */
  sorted: 'ascending' | 'descending' | 'none';
  /** The link that sorts by it (ascending first, then descending). */
  sortHref?: string;
}

export interface Grid {
  columns: Column[];
  filterable: DataItem[];
  /** The filter's operators, in the order the form offers them. */
  operators: readonly string[];
  state: { item: string; op: string; value: string; order: string };
  rows: Array<Record<string, unknown>>;
  total: number;
  exact: boolean;
  from: number;
  to: number;
  next: string | null;
  first: string | null;
  /** What the grid shows, as the records API and as a CSV download (the filtered download). */
  apiPath: string;
  apiParams: Array<[string, string]>;
  downloadHref: string;
  filtered: boolean;
  /** A mistake in the filter, the order or the cursor: shown instead of rows (the page answers 400). */
  error?: string;
}

/** The grid's filter and order as the records API's parameters. */
function apiParamsOf(state: Grid['state']): Array<[string, string]> {
  const params: Array<[string, string]> = [];
  if (state.item && state.value) params.push([`where[${state.item}][${state.op}]`, state.value]);
  if (state.order) params.push(['order', state.order]);
  return params;
}

function columnsOf(resource: Resource, frame: Frame, path: string, base: Params, order: string): Column[] {
  const [first = ''] = order.split(',');
  return resource.items.map((item) => {
    const can = canOrderBy(resource, item);
    const sorted = first === item.name ? 'ascending' : first === `-${item.name}` ? 'descending' : 'none';
    return {
      item,
      sortable: can,
      sorted,
      ...(can ? { sortHref: `${frame.href(path, { ...base, order: sorted === 'ascending' ? `-${item.name}` : item.name })}#preview` } : {}),
    };
  });
}

type Position = { o: string; k: unknown[]; n: number };

/**
 * The preview grid of a dataset: a page of its records through the records API's own query
 * (parseOpenQuery, recordsPage, RecordTotals), filtered on one indexed item, sorted by a sortable
 * one, paged by keyset cursor. Mistakes are shown on the grid, never a database error.
 */
export async function previewOf(app: FastifyInstance, dataset: Dataset, frame: Frame, params: GridParams): Promise<Grid> {
  const resource = dataset.resource;
  const path = `/datasets/${resource.code}`;
  const state = { item: params.item ?? '', op: params.op ?? 'eq', value: params.value ?? '', order: params.order ?? '' };
  const base: Params = state.value ? { item: state.item, op: state.op, value: state.value } : {};
  const apiParams = apiParamsOf(state);
  const grid: Grid = {
    columns: columnsOf(resource, frame, path, base, state.order),
    filterable: resource.items.filter((item) => item.filterable),
    operators: GRID_OPERATORS,
    state,
    rows: [],
    total: 0,
    exact: true,
    from: 0,
    to: 0,
    next: null,
    first: null,
    apiPath: `/v1/open/datasets/${resource.code}/records`,
    apiParams,
    downloadHref: `/v1/open/datasets/${resource.code}/download.csv${apiParams.length ? `?${new URLSearchParams(apiParams.filter(([name]) => name !== 'order'))}` : ''}`,
    filtered: Boolean(state.value),
  };
  let query: OpenQuery;
  let position: Position | undefined;
  try {
    if (state.value && !grid.filterable.some((item) => item.name === state.item)) throw Object.assign(new Error(frame.t('grid.error.item', { item: state.item })), { statusCode: 400 });
    query = parseOpenQuery(resource, Object.fromEntries(apiParams));
    if (params.cursor) {
      const orderText = query.orderText;
      position = decodeCursor(params.cursor, (value): value is Position => {
        const p = value as Partial<Position>;
        return typeof value === 'object' && value !== null && p.o === orderText && Array.isArray(p.k) && fitsOrder(resource, query.order, p.k) && Number.isSafeInteger(p.n) && (p.n as number) >= 0;
      });
    }
  } catch (error) {
    if ((error as { statusCode?: number }).statusCode !== 400) throw error;
    return { ...grid, error: (error as Error).message };
  }
  const [page, count] = await Promise.all([recordsPage(app.db, resource, query, GRID_PAGE, position?.k), app.recordTotals.of(dataset, query)]);
  const offset = position?.n ?? 0;
  const keep: Params = { ...base, order: state.order || undefined };
  return {
    ...grid,
    rows: page.items,
    total: count.total,
    exact: count.exact,
    from: page.items.length ? offset + 1 : 0,
    to: offset + page.items.length,
    next: page.next ? `${frame.href(path, { ...keep, cursor: encodeCursor({ o: query.orderText, k: page.next, n: offset + page.items.length }) })}#preview` : null,
    first: position ? `${frame.href(path, keep)}#preview` : null,
  };
}
