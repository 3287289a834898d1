import canonicalize from 'canonicalize';
import { LRUCache } from 'lru-cache';
import type { Db } from '../db/index.js';
import { stampOf, type Dataset } from './datasets.js';
import { countRecords, type OpenQuery } from './query.js';

/**
 * How many records a query matches. Without a filter it is the dataset's row count (its records
 * change only by an import); a filter's total is counted once per dataset content (stamp) and
 * filter, then kept, so that paging (by the API or the portal's grid) does not count again and again.
 */
export class RecordTotals {
  private readonly known = new LRUCache<string, { total: number; exact: boolean }>({ max: 10_000 });

  constructor(private readonly db: Db) {}

  async of(dataset: Dataset, query: OpenQuery): Promise<{ total: number; exact: boolean }> {
    if (query.where.length === 0) return { total: dataset.rows, exact: true };
    const key = `${dataset.resource.code}@${stampOf(dataset)}:${canonicalize(query.filter)}`;
    const known = this.known.get(key);
    if (known) return known;
    const counted = await countRecords(this.db, dataset.resource, query.where);
    this.known.set(key, counted);
    return counted;
  }
}
