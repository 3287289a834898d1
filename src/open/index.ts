import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import compress from '@fastify/compress';
import cors from '@fastify/cors';
import rateLimit from '@fastify/rate-limit';
import { Redis } from 'ioredis';
import { publicUrl, type Config } from '../config.js';
import { DIVISIONS, seedOpenDemo, seedVillages } from '../demo/open.js';
import { recordCount } from '../demo/seed.js';
import { defineProblem } from '../errors.js';
import { allDatasets } from './datasets.js';
import { DownloadFiles } from './files.js';
import { openRoutes } from './routes.js';

export { DownloadFiles } from './files.js';
export { allDatasets, findDataset } from './datasets.js';

export const RateLimited = defineProblem<[number, string, string]>('rate_limited', 'Rate limit exceeded: %d requests a minute for %s; retry in %s.', 429);

declare module 'fastify' {
  interface FastifyInstance {
    downloads: DownloadFiles;
  }
}

/** Which count a request falls under: its client when it has a token, else its address. */
function rateKey(request: FastifyRequest): string {
  const caller = request.caller;
  if (caller?.kind === 'agency') return `client:${caller.clientId}`;
  return `ip:${request.ip}`;
}

/**
 * Open data: routes under /v1/open with CORS for GET, gzip/br, rate limits per address or client
 * (shared through Redis when REDIS_URL is set), and download files prebuilt after imports.
 */
async function open(app: FastifyInstance, { config }: { config: Config }) {
  const background = new AbortController();
  const files = new DownloadFiles(config.OPEN_DATA_DIR, app.database, config.OPEN_FETCH_ROWS, background.signal);
  app.decorate('downloads', files);
  const tasks = new Set<Promise<unknown>>();
  const inBackground = (name: string, work: () => Promise<unknown>) => {
    const task = work()
      .catch((error: Error) => {
        if (!background.signal.aborted) app.log.error({ err: error, task: name }, 'background task failed');
      })
      .finally(() => tasks.delete(task));
    tasks.add(task);
  };
  app.addHook('preClose', async () => {
    background.abort();
  });
  app.addHook('onClose', async () => {
    await Promise.allSettled([...tasks]);
    await files.pending();
  });

  const autoDemo = config.DEMO_DATA === 'auto' && app.database.driver === 'pglite';
  const demo = autoDemo && (await recordCount(app.database, DIVISIONS.provinces.code)) === 0;
  if (demo) {
    const reports = await seedOpenDemo(app.database, 'small');
    app.log.info({ loaded: reports.map((r) => ({ resource: r.resource, rows: r.rows })) }, 'open demo data loaded (DEMO_DATA=auto)');
  }

  app.addHook('onReady', async () => {
    // Also when an earlier first start stopped before the villages were in (the load is one
    // transaction: nothing half-loaded stays).
    const villages = autoDemo && (await recordCount(app.database, DIVISIONS.villages.code)) === 0;
    inBackground('open data', async () => {
      if (villages) {
        const report = await seedVillages(app.database, undefined, background.signal);
        app.log.info({ resource: report.resource, rows: report.rows, seconds: report.seconds }, 'demo villages loaded in the background');
      }
      if (!config.OPEN_PREBUILD) return;
      for (const dataset of await allDatasets(app.db)) {
        if (background.signal.aborted) return;
        if (dataset.resource.upstream || (await files.complete(dataset))) continue;
        await files.build(dataset);
        app.log.info({ dataset: dataset.resource.code, stamp: `${dataset.version}.${dataset.importId}` }, 'download files prebuilt');
      }
    });
  });

  const redis = config.REDIS_URL ? new Redis(config.REDIS_URL, { connectTimeout: 1000, maxRetriesPerRequest: 1, lazyConnect: false }) : undefined;
  redis?.on('error', (error) => app.log.warn({ err: { message: error.message } }, 'redis (rate-limit counts) unavailable'));
  app.addHook('onClose', async () => {
    await redis?.quit().catch(() => redis.disconnect());
  });

  await app.register(
    async (scope) => {
      // The dataset of every answer, for the audit record, also of answers refused before the
      // handler runs (a 429).
      scope.addHook('onRequest', async (request) => {
        const code = (request.params as { code?: unknown } | undefined)?.code;
        if (typeof code === 'string' && /^[0-9]{6}-[A-Z]{2,8}-[0-9]{5}$/.test(code)) request.auditDetails = { resource: code };
      });
      await scope.register(cors, {
        origin: '*',
        methods: ['GET', 'HEAD'],
        exposedHeaders: [
          'ETag',
          'Last-Modified',
          'Link',
          'Content-Disposition',
          'Content-Range',
          'Accept-Ranges',
          'Retry-After',
          'RateLimit-Limit',
          'RateLimit-Remaining',
          'RateLimit-Reset',
          'X-Request-Id',
          'X-Audit-Id',
        ],
        maxAge: 600,
      });
      await scope.register(compress, {
        global: true,
        encodings: ['br', 'gzip'],
        threshold: 1024,
        customTypes: /^text\/|\+json|\/json|ndjson/,
      });
      await scope.register(rateLimit, {
        global: true,
        timeWindow: 60_000,
        keyGenerator: rateKey,
        max: (request) => (request.caller?.kind === 'agency' ? config.RATE_LIMIT_CLIENT_PER_MINUTE : config.RATE_LIMIT_ANONYMOUS_PER_MINUTE),
        ...(redis ? { redis, nameSpace: 'govdata-gateway:open-rate:' } : {}),
        // A Redis outage must not take open data down: the limit is skipped (and logged) meanwhile.
        skipOnError: true,
        enableDraftSpec: true,
        errorResponseBuilder: (request, context) => {
          const who = rateKey(request).startsWith('client:') ? 'this client' : 'this address';
          return new RateLimited(context.max, who, context.after);
        },
      });
      await scope.register(openRoutes, {
        files,
        publicUrl: publicUrl(config),
        fetchRows: config.OPEN_FETCH_ROWS,
        prebuild: config.OPEN_PREBUILD,
      });
    },
  );
}

export default fp(open, { name: 'open', fastify: '5.x', dependencies: ['auth', 'audit', 'catalog', 'exchange'] });
