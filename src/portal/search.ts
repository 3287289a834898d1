import type { FastifyInstance } from 'fastify';
import Type, { type Static } from 'typebox';
import type { StoredResource } from '../catalog/index.js';
import { openTypes, resourceFormats, themes, updateCycles } from '../model/catalog.js';
import { lastModified, type Dataset } from '../open/index.js';
import { decodeCursor, encodeCursor } from '../pagination.js';
import type { Frame, Params } from './frame.js';
import { frameOf } from './frame.js';
import { answerPage, pageKey, wantsFragment, type PortalOptions } from './pages.js';

export const SEARCH_PAGE = 20;
export const SORTS = ['relevance', 'updated', 'name'] as const;
export type Sort = (typeof SORTS)[number];
/** The facets, in the order the filters show them. */
export const FACETS = ['provider', 'theme', 'open', 'format', 'update_cycle'] as const;
type Facet = (typeof FACETS)[number];

const short = (maxLength: number) => Type.Optional(Type.String({ maxLength }));
export const SearchQuery = Type.Object({
  q: short(200),
  provider: short(64),
  theme: Type.Optional(Type.Union([Type.Literal(''), ...themes.map((v) => Type.Literal(v))])),
  open: Type.Optional(Type.Union([Type.Literal(''), ...openTypes.filter((v) => v !== 'none').map((v) => Type.Literal(v))])),
  format: Type.Optional(Type.Union([Type.Literal(''), ...resourceFormats.map((v) => Type.Literal(v))])),
  update_cycle: Type.Optional(Type.Union([Type.Literal(''), ...updateCycles.map((v) => Type.Literal(v))])),
  sort: Type.Optional(Type.Union(SORTS.map((v) => Type.Literal(v)))),
  cursor: short(400),
  lang: short(16),
});
type SearchParams = Static<typeof SearchQuery>;

type Key = [number | string, string];
interface Hit {
  dataset: Dataset;
  key: Key;
}

const collators = { 'zh-Hans': new Intl.Collator('zh-Hans-u-co-pinyin'), en: new Intl.Collator('en') };

/** Each sort as a key per dataset, compared ascending: relevance, newest first, name by the language's collation. */
function keyOf(sort: Sort, frame: Frame, stored: StoredResource & { rank: number }, dataset: Dataset): Key {
  const code = stored.document.code;
  if (sort === 'updated') return [-lastModified(dataset).getTime(), code];
  if (sort === 'name') return [frame.locale === 'en' ? stored.document.title : stored.document.name, code];
  return [stored.rank, code];
}

function compareKeys(frame: Frame, a: Key, b: Key): number {
  const first = typeof a[0] === 'string' && typeof b[0] === 'string' ? collators[frame.locale].compare(a[0], b[0]) : Number(a[0]) - Number(b[0]);
  return first || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0);
}

const isPosition = (sort: Sort) => (value: unknown): value is { s: Sort; k: Key; n: number } => {
  const position = value as { s?: unknown; k?: unknown; n?: unknown };
  return (
    typeof value === 'object' &&
    value !== null &&
    position.s === sort &&
    Array.isArray(position.k) &&
    position.k.length === 2 &&
    (typeof position.k[0] === 'string' || Number.isFinite(position.k[0])) &&
    typeof position.k[1] === 'string' &&
    Number.isSafeInteger(position.n) &&
    (position.n as number) >= 0
  );
};

/** The filters in effect, as URL parameters (what every link of the page keeps). */
export function searchParams(query: SearchParams): Params {
  return { q: query.q?.trim() || undefined, ...Object.fromEntries(FACETS.map((facet) => [facet, query[facet] || undefined])), sort: query.sort };
}

/**
 * A search page: the catalog's own search (every term a substring, relevance first) over the open
 * datasets, sorted as asked, then a keyset page after the cursor's position. The catalog is held
 * in memory, so every match is sorted here.
 */
async function search(options: PortalOptions, frame: Frame, query: SearchParams, searchIndex: FastifyInstance['catalogSearch']) {
  const sort: Sort = query.sort ?? (query.q?.trim() ? 'relevance' : 'updated');
  const result = await searchIndex.search({
    ...(query.q?.trim() ? { q: query.q.trim() } : {}),
    ...Object.fromEntries(FACETS.filter((facet) => query[facet]).map((facet) => [facet, query[facet]])),
    limit: 100_000,
    visibility: 'open',
  });
  const { datasets, agencies } = await options.shelf.get();
  const hits: Hit[] = [];
  for (const stored of result.items) {
    const dataset = datasets.get(stored.document.code);
    if (dataset) hits.push({ dataset, key: keyOf(sort, frame, stored, dataset) });
  }
  hits.sort((a, b) => compareKeys(frame, a.key, b.key));
  const position = query.cursor ? decodeCursor(query.cursor, isPosition(sort)) : undefined;
  const from = position ? hits.findIndex((hit) => compareKeys(frame, hit.key, position.k) > 0) : 0;
  const rest = from < 0 ? [] : hits.slice(from);
  const shown = rest.slice(0, SEARCH_PAGE);
  const offset = position?.n ?? 0;
  const last = shown.at(-1);
  const params = searchParams(query);
  const facets = FACETS.map((facet: Facet) => ({
    facet,
    selected: query[facet] || '',
    values: Object.entries(result.facets[facet])
      .map(([value, count]) => ({ value, count, label: facet === 'provider' ? agencyName(frame, agencies.get(value)) ?? value : frame.t(`${facet}.${value}`) }))
      .sort((a, b) => b.count - a.count || collators[frame.locale].compare(a.label, b.label)),
  }));
  return {
    sort,
    total: hits.length,
    from: shown.length ? offset + 1 : 0,
    to: offset + shown.length,
    hits: shown.map((hit) => hit.dataset),
    facets,
    params,
    next: rest.length > SEARCH_PAGE && last ? frame.href('/datasets', { ...params, sort, cursor: encodeCursor({ s: sort, k: last.key, n: offset + shown.length }) }) : null,
    first: position ? frame.href('/datasets', { ...params }) : null,
  };
}

export function agencyName(frame: Frame, agency: { name: string; name_en: string } | undefined): string | undefined {
  return agency && (frame.locale === 'en' ? agency.name_en : agency.name);
}

export function searchRoute(app: FastifyInstance, options: PortalOptions) {
  app.get<{ Querystring: SearchParams }>('/datasets', { schema: { hide: true, querystring: SearchQuery } }, async (request, reply) => {
    const frame = frameOf(request);
    const fragment = wantsFragment(request, 'results');
    return answerPage(request, reply, options.pages, pageKey(request, frame, fragment), async () => {
      const found = await search(options, frame, request.query, app.catalogSearch);
      const q = request.query.q?.trim();
      const data = { frame, title: q ? frame.t('search.title_for', { q }) : frame.t('search.title'), query: request.query, sorts: SORTS, ...found };
      return { template: fragment ? 'portal/templates/partials/results.eta' : 'portal/templates/search.eta', data };
    });
  });
}
