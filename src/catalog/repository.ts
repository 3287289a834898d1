import { and, asc, desc, eq, isNull, ne, sql } from 'drizzle-orm';
import type { Db } from '../db/index.js';
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
  /** The kind of resource (database, spreadsheet, …) and its update cycle: the portal's facets. */
  format?: string;
  update_cycle?: string;
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
  format: Record<string, number>;
  update_cycle: Record<string, number>;
}

/** What a StoredResource is made of: the resource and its provider's names. */
export const storedResourceColumns = {
  document: resources.document,
  version: resources.version,
  updatedAt: resources.updatedAt,
  retiredAt: resources.retiredAt,
  providerName: agencies.name,
  providerNameEn: agencies.nameEn,
};

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
