import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { publicUrl, type Config } from '../config.js';
import { lastSync } from './repository.js';
import { ResourceCache } from './cache.js';
import { CatalogIndex } from './search.js';
import { catalogRoutes } from './routes.js';
import { SyncReportView } from './schemas.js';
import { defaultCatalogDir, syncCatalogDir } from './service.js';

export { catalogVisibility } from './routes.js';
export { findAgency, findResource, listAgencies, openCatalog, resourceHistory, type Facets, type StoredResource } from './repository.js';
export type { CatalogIndex, SearchResult } from './search.js';
export { defaultCatalogDir, formatCatalogError, loadCatalog, syncCatalogDir } from './service.js';
export type { Agency, Catalog, ContactPoint, DataItem, Resource } from '../model/catalog.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The catalog's resources in memory, kept current by NOTIFY (the exchange reads them on every call). */
    catalogCache: ResourceCache;
    /** The catalog search, answered from memory, kept current by NOTIFY. */
    catalogSearch: CatalogIndex;
    /** Forget the catalog held in memory at once (after a sync by this process; others hear NOTIFY). */
    forgetCatalog(): void;
  }
}

export { ResourceCache } from './cache.js';

export interface CatalogOptions {
  config: Config;
}

/**
 * The resource catalog: served from the database (the start-up sequence syncs the files into
 * it), re-synced on demand by an administrator.
 */
async function catalog(app: FastifyInstance, { config }: CatalogOptions) {
  const dir = config.CATALOG_DIR ?? defaultCatalogDir;

  const cache = new ResourceCache(app.database);
  await cache.start();
  app.decorate('catalogCache', cache);
  app.addHook('onClose', () => cache.close());
  const index = new CatalogIndex(app.database);
  await index.start();
  app.decorate('catalogSearch', index);
  app.addHook('onClose', () => index.close());
  app.decorate('forgetCatalog', () => {
    cache.clear();
    index.clear();
  });

  app.addReadinessCheck('catalog', async () => ((await lastSync(app.db)) ? undefined : 'not loaded'));

  await app.register(catalogRoutes, { publicUrl: publicUrl(config), search: index });

  app.post(
    '/v1/admin/catalog/sync',
    {
      onRequest: app.requireScope('admin'),
      config: { audit: 'catalog.sync' },
      schema: {
        tags: ['admin'],
        summary: 'Sync the catalog files into the database (what `gateway catalog sync` does)',
        security: [{ bearer: ['admin'] }],
        response: {
          200: SyncReportView,
          401: { $ref: 'Problem#' },
          403: { $ref: 'Problem#' },
          422: { $ref: 'Problem#' },
        },
      },
    },
    async (request, reply) => {
      const outcome = await syncCatalogDir(app.db, dir);
      if (!outcome.ok) {
        return reply.problem(422, 'catalog_invalid', `The catalog files have ${outcome.errors.length} error(s); nothing was changed.`, {
          errors: outcome.errors.map((e) => ({ in: e.file, pointer: e.pointer, message: `${e.code}: ${e.message}` })),
        });
      }
      // This instance forgets its copy at once; the others on NOTIFY.
      app.forgetCatalog();
      request.log.info({ sync_id: outcome.report.sync_id }, 'catalog synced by an administrator');
      request.auditDetails = { row_count: outcome.report.changes.length };
      return outcome.report;
    },
  );
}

export default fp(catalog, { name: 'catalog', fastify: '5.x', dependencies: ['database', 'health', 'auth', 'audit'] });
