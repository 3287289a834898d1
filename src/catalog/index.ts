import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { publicUrl, type Config } from '../config.js';
import { lastSync } from './repository.js';
import { ResourceCache } from './cache.js';
import { catalogRoutes } from './routes.js';
import { SyncReportView } from './schemas.js';
import { defaultCatalogDir, formatCatalogError, syncCatalogDir } from './service.js';

export { catalogVisibility } from './routes.js';
export { findResource, openCatalog } from './repository.js';
export { defaultCatalogDir, loadCatalog, syncCatalogDir } from './service.js';
export type { Agency, Catalog, DataItem, Resource } from '../model/catalog.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The catalog's resources in memory, kept current by NOTIFY (the exchange reads them on every call). */
    catalogCache: ResourceCache;
  }
}

export { ResourceCache } from './cache.js';

export interface CatalogOptions {
  config: Config;
}

/**
 * The resource catalog: synced from the files at start-up (when enabled), served from the
 * database, re-synced on demand by an administrator.
 */
async function catalog(app: FastifyInstance, { config }: CatalogOptions) {
  const dir = config.CATALOG_DIR ?? defaultCatalogDir;

  const cache = new ResourceCache(app.database);
  await cache.start();
  app.decorate('catalogCache', cache);
  app.addHook('onClose', () => cache.close());

  app.addReadinessCheck('catalog', async () => ((await lastSync(app.db)) ? undefined : 'not loaded'));

  if (config.CATALOG_SYNC_ON_START) {
    const outcome = await syncCatalogDir(app.db, dir);
    if (outcome.ok) {
      const { changes, ...counts } = outcome.report;
      app.log.info({ dir, ...counts }, 'catalog synced');
      if (changes.length > 0) {
        await app.audit.record({ action: 'catalog.sync', outcome: 'allowed', row_count: changes.length, reason: `sync ${counts.sync_id}` });
      }
    } else {
      for (const error of outcome.errors) app.log.error({ code: error.code }, formatCatalogError(error));
      app.log.error({ dir, errors: outcome.errors.length }, 'catalog files are invalid; the last good catalog stays served');
    }
  }

  await app.register(catalogRoutes, { publicUrl: publicUrl(config) });

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
      cache.clear();
      request.log.info({ sync_id: outcome.report.sync_id }, 'catalog synced by an administrator');
      request.auditDetails = { row_count: outcome.report.changes.length };
      return outcome.report;
    },
  );
}

export default fp(catalog, { name: 'catalog', fastify: '5.x', dependencies: ['database', 'health', 'auth', 'audit'] });
