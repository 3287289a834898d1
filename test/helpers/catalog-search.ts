import { and, asc, eq, isNull, ne, sql, type SQL } from 'drizzle-orm';
import { rowsOf, type Db } from '../../src/db/index.js';
import { agencies, resources } from '../../src/db/schema.js';
import { storedResourceColumns, type Facets, type ResourceCursor, type ResourceSearch, type StoredResource } from '../../src/catalog/repository.js';

/*
 * The catalog search as the database answered it before the in-memory index (src/catalog/search.ts):
 * kept here as the oracle that the index must equal, result for result, facet for facet.
 */

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
  if (search.format) conditions.push(sql`${resources.document}->>'format' = ${search.format}`);
  if (search.update_cycle) conditions.push(sql`${resources.document}->>'update_cycle' = ${search.update_cycle}`);
  return and(...conditions);
}

export async function searchResourcesInDatabase(db: Db, search: ResourceSearch) {
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

/** Counts by provider, theme, sharing and open attribute, kind and update cycle over the filtered set, in one query. */
async function facetCounts(db: Db, where: SQL | undefined): Promise<Facets> {
  const format = sql`(${resources.document}->>'format')`;
  const cycle = sql`(${resources.document}->>'update_cycle')`;
  const result = await db.execute(sql`
    select ${resources.provider} as provider, ${resources.theme} as theme, ${resources.sharing} as sharing,
           ${resources.open} as open, ${format} as format, ${cycle} as update_cycle,
           grouping(${resources.provider}) as gp, grouping(${resources.theme}) as gt,
           grouping(${resources.sharing}) as gs, grouping(${resources.open}) as go, grouping(${format}) as gf, count(*)::int as n
    from ${resources} where ${where}
    group by grouping sets ((${resources.provider}), (${resources.theme}), (${resources.sharing}), (${resources.open}), (${format}), (${cycle}))`);
  const facets: Facets = { provider: {}, theme: {}, sharing: {}, open: {}, format: {}, update_cycle: {} };
  type FacetRow = { provider: string; theme: string; sharing: string; open: string; format: string; update_cycle: string; gp: number; gt: number; gs: number; go: number; gf: number; n: number };
  for (const row of rowsOf<FacetRow>(result)) {
    if (!row.gp) facets.provider[row.provider] = row.n;
    else if (!row.gt) facets.theme[row.theme] = row.n;
    else if (!row.gs) facets.sharing[row.sharing] = row.n;
    else if (!row.go) facets.open[row.open] = row.n;
    else if (!row.gf) facets.format[row.format] = row.n;
    else facets.update_cycle[row.update_cycle] = row.n;
  }
  return facets;
}

