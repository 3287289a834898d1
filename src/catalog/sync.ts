import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';
import { and, eq, isNull, sql } from 'drizzle-orm';
import type { Db } from '../db/index.js';
import { agencies, catalogHistory, catalogSyncs, resources } from '../db/schema.js';
import { migrateRecordTable } from '../records/index.js';
import type { Agency, Catalog, Resource } from '../model/catalog.js';

export type ChangeKind = 'created' | 'updated' | 'retired' | 'restored';

export interface CatalogChange {
  kind: 'agency' | 'resource';
  code: string;
  version: number;
  change: ChangeKind;
  /** Top-level fields that differ from the previous version (all of them when created). */
  fields: string[];
}

export interface SyncReport {
  sync_id: number;
  content_hash: string;
  created: number;
  updated: number;
  retired: number;
  unchanged: number;
  changes: CatalogChange[];
}

/** SHA-256 over the RFC 8785 canonical JSON: the same document always hashes the same. */
export function contentHash(document: unknown): string {
  return createHash('sha256')
    .update(canonicalize(document) ?? '')
    .digest('hex');
}

function changedFields(before: Record<string, unknown>, after: Record<string, unknown>): string[] {
  const keys = new Set([...Object.keys(before), ...Object.keys(after)]);
  return [...keys].filter((key) => canonicalize(before[key]) !== canonicalize(after[key])).sort();
}

/** What `q` searches: every human-readable text of a resource, lower-cased once here. */
export function searchText(resource: Resource): string {
  return [resource.name, resource.title, resource.summary, resource.description, ...resource.keywords]
    .join('\n')
    .toLowerCase();
}

interface StoredRow {
  code: string;
  document: unknown;
  contentHash: string;
  version: number;
  retiredAt: Date | null;
}

/** Decide, per code, what a sync does: create, update, restore, retire, or leave alone. */
function plan<T extends { code: string }>(
  kind: CatalogChange['kind'],
  wanted: T[],
  stored: StoredRow[],
): { upserts: Array<{ entry: T; hash: string; change: CatalogChange }>; retirements: CatalogChange[]; unchanged: number } {
  const storedByCode = new Map(stored.map((row) => [row.code, row]));
  const upserts: Array<{ entry: T; hash: string; change: CatalogChange }> = [];
  let unchanged = 0;
  for (const entry of wanted) {
    const hash = contentHash(entry);
    const previous = storedByCode.get(entry.code);
    storedByCode.delete(entry.code);
    if (!previous) {
      const fields = Object.keys(entry).sort();
      upserts.push({ entry, hash, change: { kind, code: entry.code, version: 1, change: 'created', fields } });
    } else if (previous.contentHash !== hash || previous.retiredAt) {
      const fields = changedFields(previous.document as Record<string, unknown>, entry as Record<string, unknown>);
      const change: ChangeKind = previous.retiredAt ? 'restored' : 'updated';
      upserts.push({ entry, hash, change: { kind, code: entry.code, version: previous.version + 1, change, fields } });
    } else {
      unchanged += 1;
    }
  }
  const retirements = [...storedByCode.values()]
    .filter((row) => !row.retiredAt)
    .map((row) => ({ kind, code: row.code, version: row.version + 1, change: 'retired' as const, fields: [] }));
  return { upserts, retirements, unchanged };
}

/** The columns every versioned catalog row shares, for an entry that is (again) in the files. */
function versioned(document: object, contentHash: string, change: CatalogChange, now: Date) {
  return { document, contentHash, version: change.version, retiredAt: null, updatedAt: now };
}

/** NOTIFY channel of catalog changes: the payload is a resource code, or `*` for any. */
export const CATALOG_CHANNEL = 'govdata_catalog';

/**
 * Make the database's catalog what the (already validated) files say, in one transaction: new
 * entries are created at version 1, changed ones get the next version, entries no longer in the
 * files are retired (never deleted), and every change leaves a history row. Two instances syncing
 * at once are serialised by a transaction-scoped advisory lock.
 */
export async function syncCatalog(db: Db, catalog: Catalog, source: string): Promise<SyncReport> {
  const catalogHash = contentHash(catalog);
  return db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(hashtext('govdata-gateway:catalog-sync'))`);
    const storedAgencies = await tx.select().from(agencies);
    const storedResources = await tx.select().from(resources);
    const agencyPlan = plan<Agency>('agency', catalog.agencies, storedAgencies);
    const resourcePlan = plan<Resource>('resource', catalog.resources, storedResources);
    const changes = [
      ...agencyPlan.upserts.map((u) => u.change),
      ...agencyPlan.retirements,
      ...resourcePlan.upserts.map((u) => u.change),
      ...resourcePlan.retirements,
    ];
    const count = (kind: ChangeKind) => changes.filter((c) => c.change === kind).length;

    const [syncRow] = await tx
      .insert(catalogSyncs)
      .values({
        source,
        contentHash: catalogHash,
        created: count('created'),
        updated: count('updated') + count('restored'),
        retired: count('retired'),
        unchanged: agencyPlan.unchanged + resourcePlan.unchanged,
      })
      .returning({ id: catalogSyncs.id });
    const syncId = syncRow?.id as number;
    const now = new Date();

    // Agencies first: resources reference them.
    for (const { entry, hash, change } of agencyPlan.upserts) {
      const values = {
        abbr: entry.abbr,
        name: entry.name,
        nameEn: entry.name_en,
        level: entry.level,
        region: entry.region,
        ...versioned(entry, hash, change, now),
      };
      await tx
        .insert(agencies)
        .values({ code: entry.code, ...values })
        .onConflictDoUpdate({ target: agencies.code, set: values });
    }
    for (const { entry, hash, change } of resourcePlan.upserts) {
      const values = {
        provider: entry.provider,
        name: entry.name,
        title: entry.title,
        theme: entry.theme,
        sharing: entry.sharing.type,
        open: entry.open.type,
        keywords: entry.keywords,
        published: entry.published,
        searchText: searchText(entry),
        ...versioned(entry, hash, change, now),
      };
      await tx
        .insert(resources)
        .values({ code: entry.code, ...values })
        .onConflictDoUpdate({ target: resources.code, set: values });
    }
    // Resources before agencies, the reverse of creation.
    for (const [table, retirements] of [
      [resources, resourcePlan.retirements],
      [agencies, agencyPlan.retirements],
    ] as const) {
      for (const change of retirements) {
        await tx
          .update(table)
          .set({ retiredAt: now, version: change.version, updatedAt: now })
          .where(and(eq(table.code, change.code), isNull(table.retiredAt)));
      }
    }
    if (changes.length > 0) {
      await tx.insert(catalogHistory).values(changes.map((change) => ({ syncId, ...change, changedAt: now })));
    }
    // Each new or changed resource gets its record table made or altered in the same transaction:
    // a catalog whose tables cannot follow never half-loads.
    for (const { entry, change } of resourcePlan.upserts) await migrateRecordTable(tx as unknown as Db, entry, change.version);
    // Every gateway's copy of the catalog learns of the change when this commits (NOTIFY is transactional).
    if (changes.length > 0) await tx.execute(sql`select pg_notify(${CATALOG_CHANNEL}, '*')`);

    return {
      sync_id: syncId,
      content_hash: catalogHash,
      created: count('created'),
      updated: count('updated') + count('restored'),
      retired: count('retired'),
      unchanged: agencyPlan.unchanged + resourcePlan.unchanged,
      changes,
    };
  });
}
