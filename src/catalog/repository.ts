import { and, asc, desc, eq, isNull, ne, sql, type SQL } from 'drizzle-orm';
import { rowsOf, type Db } from '../db/index.js';
import { agencies, catalogHistory, catalogSyncs, resources } from '../db/schema.js';
import type { Agency, Resource } from '../model/catalog.js';

/** Which part of the catalog a caller may see: anonymous callers see open resources only. */
export type Visibility = 'open' | 'all';

export interface ResourceSearch {
  q?: string;
  provider?: string;
  theme?: string;
  sharing?: string;
  open?: string;
  keyword?: string;
  limit: number;
  after?: ResourceCursor;
  visibility: Visibility;
}

/** Keyset position: the relevance rank (0 when there is no `q`) and the code of the last row. */
export type ResourceCursor = [rank: number, code: string];

export interface StoredResource {
  document: Resource;
  version: number;
  updatedAt: Date;
  retiredAt: Date | null;
  providerName: string;
  providerNameEn: string;
}

export interface Facets {
  provider: Record<string, number>;
  theme: Record<string, number>;
  sharing: Record<string, number>;
  open: Record<string, number>;
}

/** LIKE pattern for a term: its wildcards taken literally (PostgreSQL's default escape is \). */
function containsPattern(term: string): string {
  return `%${term.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

function searchTerms(q: string | undefined): string[] {
  return (q ?? '').split(/\s+/).filter(Boolean).slice(0, 8);
}

/**
 * Relevance as a small integer, so that it can take part in a keyset cursor: 0 when every term is
 * in the name, 1 when every term is in the name or the keywords, 2 otherwise.
 */
function rankExpression(terms: string[]): SQL<number> {
  if (terms.length === 0) return sql<number>`0`;
  const inName = sql.join(
    terms.map((term) => sql`lower(${resources.name}) like ${containsPattern(term)}`),
    sql` and `,
  );
  const inNameOrKeywords = sql.join(
    terms.map(
      (term) =>
        sql`(lower(${resources.name}) || ' ' || lower(array_to_string(${resources.keywords}, ' '))) like ${containsPattern(term)}`,
    ),
    sql` and `,
  );
  return sql<number>`(case when ${inName} then 0 when ${inNameOrKeywords} then 1 else 2 end)`;
}

function filters(search: Omit<ResourceSearch, 'limit' | 'after'>): SQL | undefined {
  const conditions: SQL[] = [isNull(resources.retiredAt)];
  if (search.visibility === 'open') conditions.push(ne(resources.open, 'none'));
  for (const term of searchTerms(search.q)) {
    conditions.push(sql`${resources.searchText} like ${containsPattern(term)}`);
  }
  if (search.provider) conditions.push(eq(resources.provider, search.provider));
  if (search.theme) conditions.push(eq(resources.theme, search.theme));
  if (search.sharing) conditions.push(eq(resources.sharing, search.sharing));
  if (search.open) conditions.push(eq(resources.open, search.open));
  if (search.keyword) conditions.push(sql`${search.keyword} = any(${resources.keywords})`);
  return and(...conditions);
}

/** What a StoredResource is made of: the resource and its provider's names. */
const storedResourceColumns = {
  document: resources.document,
  version: resources.version,
  updatedAt: resources.updatedAt,
  retiredAt: resources.retiredAt,
  providerName: agencies.name,
  providerNameEn: agencies.nameEn,
};

export async function searchResources(db: Db, search: ResourceSearch) {
  const rank = rankExpression(searchTerms(search.q));
  const where = filters(search);
  const keyset = search.after
    ? sql`(${rank}, ${resources.code}) > (${search.after[0]}::int, ${search.after[1]})`
    : undefined;
  const rows = await db
    .select({ ...storedResourceColumns, rank })
    .from(resources)
    .innerJoin(agencies, eq(agencies.code, resources.provider))
    .where(keyset ? and(where, keyset) : where)
    // Without `q` the rank is a constant, and ORDER BY a bare constant would mean a column position.
    .orderBy(...(search.q ? [asc(rank), asc(resources.code)] : [asc(resources.code)]))
    .limit(search.limit + 1);

  const page = rows.slice(0, search.limit) as Array<StoredResource & { rank: number }>;
  const last = page.at(-1);
  const next: ResourceCursor | null =
    rows.length > search.limit && last ? [Number(last.rank), last.document.code] : null;
  return { items: page, next, facets: await facetCounts(db, where) };
}

/** Counts by provider, theme, sharing and open attribute over the filtered set, in one query. */
async function facetCounts(db: Db, where: SQL | undefined): Promise<Facets> {
  const result = await db.execute(sql`
    select ${resources.provider} as provider, ${resources.theme} as theme, ${resources.sharing} as sharing,
           ${resources.open} as open, grouping(${resources.provider}) as gp, grouping(${resources.theme}) as gt,
           grouping(${resources.sharing}) as gs, count(*)::int as n
    from ${resources} where ${where}
    group by grouping sets ((${resources.provider}), (${resources.theme}), (${resources.sharing}), (${resources.open}))`);
  const facets: Facets = { provider: {}, theme: {}, sharing: {}, open: {} };
  type FacetRow = { provider: string; theme: string; sharing: string; open: string; gp: number; gt: number; gs: number; n: number };
  for (const row of rowsOf<FacetRow>(result)) {
    if (!row.gp) facets.provider[row.provider] = row.n;
    else if (!row.gt) facets.theme[row.theme] = row.n;
    else if (!row.gs) facets.sharing[row.sharing] = row.n;
    else facets.open[row.open] = row.n;
  }
  return facets;
}

export async function findResource(db: Db, code: string): Promise<StoredResource | undefined> {
  const [row] = await db
    .select(storedResourceColumns)
    .from(resources)
    .innerJoin(agencies, eq(agencies.code, resources.provider))
    .where(eq(resources.code, code));
  return row as StoredResource | undefined;
}

export async function listAgencies(db: Db, limit: number, after?: string) {
  const rows = await db
    .select({ document: agencies.document })
    .from(agencies)
    .where(after ? and(isNull(agencies.retiredAt), sql`${agencies.code} > ${after}`) : isNull(agencies.retiredAt))
    .orderBy(asc(agencies.code))
    .limit(limit + 1);
  const page = rows.slice(0, limit).map((row) => row.document as Agency);
  return { items: page, next: rows.length > limit ? (page.at(-1)?.code ?? null) : null };
}

export async function findAgency(db: Db, code: string): Promise<Agency | undefined> {
  const [row] = await db
    .select({ document: agencies.document })
    .from(agencies)
    .where(and(eq(agencies.code, code), isNull(agencies.retiredAt)));
  return row?.document as Agency | undefined;
}

export async function resourceHistory(db: Db, code: string) {
  return db
    .select({
      version: catalogHistory.version,
      change: catalogHistory.change,
      fields: catalogHistory.fields,
      changedAt: catalogHistory.changedAt,
      syncId: catalogHistory.syncId,
      detail: catalogHistory.detail,
    })
    .from(catalogHistory)
    .where(and(eq(catalogHistory.kind, 'resource'), eq(catalogHistory.code, code)))
    .orderBy(desc(catalogHistory.id))
    .limit(200);
}

/** The open part of the catalog with each resource's version and last change, for DCAT-AP. */
export async function openCatalog(db: Db) {
  const resourceRows = await db
    .select({ document: resources.document, version: resources.version, updatedAt: resources.updatedAt })
    .from(resources)
    .where(and(isNull(resources.retiredAt), ne(resources.open, 'none')))
    .orderBy(asc(resources.code));
  const agencyRows = await db
    .select({ document: agencies.document })
    .from(agencies)
    .where(isNull(agencies.retiredAt))
    .orderBy(asc(agencies.code));
  return {
    agencies: agencyRows.map((row) => row.document as Agency),
    resources: resourceRows.map((row) => ({
      ...(row.document as Resource),
      version: row.version,
      modified: row.updatedAt,
    })),
  };
}

export async function lastSync(db: Db) {
  const [row] = await db.select().from(catalogSyncs).orderBy(desc(catalogSyncs.id)).limit(1);
  return row;
}
