import { asc, eq, isNull } from 'drizzle-orm';
import { followChannel, type Database } from '../db/index.js';
import { agencies, resources } from '../db/schema.js';
import { storedResourceColumns, type Facets, type ResourceCursor, type ResourceSearch, type StoredResource } from './repository.js';
import { CATALOG_CHANNEL } from './sync.js';

interface Entry {
  stored: StoredResource;
  /** What `q` must find every term in (lower-cased at the sync). */
  searchText: string;
  name: string;
  nameAndKeywords: string;
}

export interface SearchResult {
  items: Array<StoredResource & { rank: number }>;
  next: ResourceCursor | null;
  facets: Facets;
}

function searchTerms(q: string | undefined): string[] {
  return (q ?? '')
    .split(/\s+/)
    .filter(Boolean)
    .slice(0, 8)
    .map((term) => term.toLowerCase());
}

/**
 * The catalog search, answered from memory. The catalog changes only at a sync and is small (a few
 * thousand resources even at the seed's 3,600 items), so every live resource is held here, read
 * once, dropped when a sync anywhere NOTIFYs a change and re-read at most `maxAgeMs` after. The
 * semantics are those of the database query it replaces: every term of `q` a substring of the
 * resource's search text; relevance 0 when every term is in the name, 1 when in the name or
 * keywords, 2 otherwise; order by relevance then code; facets over the filtered set.
 * (`Intl.Segmenter` word splitting was not used: it would find less than substrings do, e.g. 学籍
 * inside 学籍信息, and change the results.)
 */
export class CatalogIndex {
  private entries: Promise<Entry[]> | undefined;
  private loadedAt = 0;
  private generation = 0;
  private stop: (() => Promise<void>) | undefined;

  constructor(
    private readonly database: Database,
    private readonly maxAgeMs = 30_000,
  ) {}

  async start(): Promise<void> {
    this.stop = await followChannel(this.database, CATALOG_CHANNEL, () => this.clear(), async () => this.clear(), this.maxAgeMs);
  }

  clear(): void {
    this.generation += 1;
    this.entries = undefined;
  }

  async close(): Promise<void> {
    await this.stop?.();
  }

  async search(search: ResourceSearch): Promise<SearchResult> {
    const terms = searchTerms(search.q);
    const matching = (await this.all()).filter((entry) => {
      const document = entry.stored.document;
      return (
        (search.visibility === 'all' || document.open.type !== 'none') &&
        terms.every((term) => entry.searchText.includes(term)) &&
        (!search.provider || document.provider === search.provider) &&
        (!search.theme || document.theme === search.theme) &&
        (!search.sharing || document.sharing.type === search.sharing) &&
        (!search.open || document.open.type === search.open) &&
        (!search.keyword || document.keywords.includes(search.keyword)) &&
        (!search.format || document.format === search.format) &&
        (!search.update_cycle || document.update_cycle === search.update_cycle)
      );
    });
    const ranked = matching.map((entry) => ({ ...entry.stored, rank: rankOf(entry, terms) }));
    // Codes compare by code unit, as the database's C collation does.
    ranked.sort((a, b) => a.rank - b.rank || (a.document.code < b.document.code ? -1 : a.document.code > b.document.code ? 1 : 0));
    const after = search.after;
    const from = after ? ranked.findIndex((r) => r.rank > after[0] || (r.rank === after[0] && r.document.code > after[1])) : 0;
    const rest = from < 0 ? [] : ranked.slice(from);
    const items = rest.slice(0, search.limit);
    const last = items.at(-1);
    return { items, next: rest.length > search.limit && last ? [last.rank, last.document.code] : null, facets: facetsOf(matching) };
  }

  private all(): Promise<Entry[]> {
    if (this.entries && Date.now() - this.loadedAt < this.maxAgeMs) return this.entries;
    const generation = this.generation;
    const loading = this.load();
    this.entries = loading;
    this.loadedAt = Date.now();
    loading.then(
      () => undefined,
      () => {
        // A failed read is not kept: the next search tries again.
        if (this.generation === generation && this.entries === loading) this.entries = undefined;
      },
    );
    return loading;
  }

  private async load(): Promise<Entry[]> {
    const rows = (await this.database.db
      .select({ ...storedResourceColumns, searchText: resources.searchText })
      .from(resources)
      .innerJoin(agencies, eq(agencies.code, resources.provider))
      .where(isNull(resources.retiredAt))
      .orderBy(asc(resources.code))) as Array<StoredResource & { searchText: string }>;
    return rows.map(({ searchText, ...stored }) => {
      const name = stored.document.name.toLowerCase();
      return {
        stored,
        searchText,
        name,
        nameAndKeywords: `${name} ${stored.document.keywords.join(' ').toLowerCase()}`,
      };
    });
  }
}

function rankOf(entry: Entry, terms: string[]): number {
  if (terms.length === 0) return 0;
  if (terms.every((term) => entry.name.includes(term))) return 0;
  if (terms.every((term) => entry.nameAndKeywords.includes(term))) return 1;
  return 2;
}

function facetsOf(entries: Entry[]): Facets {
  const facets: Facets = { provider: {}, theme: {}, sharing: {}, open: {}, format: {}, update_cycle: {} };
  const add = (counts: Record<string, number>, key: string) => (counts[key] = (counts[key] ?? 0) + 1);
  for (const { stored } of entries) {
    add(facets.provider, stored.document.provider);
    add(facets.theme, stored.document.theme);
    add(facets.sharing, stored.document.sharing.type);
    add(facets.open, stored.document.open.type);
    add(facets.format, stored.document.format);
    add(facets.update_cycle, stored.document.update_cycle);
  }
  return facets;
}
