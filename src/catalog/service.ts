import { join } from 'node:path';
import type { Db } from '../db/index.js';
import { projectRoot } from '../paths.js';
import { formatCatalogError, loadCatalog } from './files.js';
import { syncCatalog, type SyncReport } from './sync.js';
import type { CatalogError } from '../model/catalog.js';

export const defaultCatalogDir = join(projectRoot, 'catalog');

export type CatalogSyncOutcome = { ok: true; report: SyncReport } | { ok: false; errors: CatalogError[] };

/**
 * Validate the catalog folder and, only when every file is valid, sync it into the database.
 * An invalid catalog changes nothing: the last good one stays served.
 */
export async function syncCatalogDir(db: Db, dir: string = defaultCatalogDir): Promise<CatalogSyncOutcome> {
  const loaded = await loadCatalog(dir);
  if (!loaded.ok) return loaded;
  return { ok: true, report: await syncCatalog(db, loaded.catalog, dir) };
}

export { formatCatalogError, loadCatalog };
