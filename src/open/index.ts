import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import compress from '@fastify/compress';
import cors from '@fastify/cors';
import rateLimit from '@fastify/rate-limit';
import { publicUrl, type Config } from '../config.js';
import { defineProblem } from '../errors.js';
import { DownloadFiles } from './files.js';
import { openRoutes } from './routes.js';

import { RecordTotals } from './totals.js';

export { DownloadFiles, fileFormatsOf } from './files.js';
export { allDatasets, findDataset, lastModified, listDatasets, openView, stampOf, termsOf, type Dataset } from './datasets.js';
export { canOrderBy, MAX_OPEN_PAGE, parseOpenQuery, recordsPage, fitsOrder, type OpenQuery } from './query.js';
export { coordinates, formatInfo, fileFormats, type FileFormat } from './formats.js';
export { RecordTotals } from './totals.js';

export const RateLimited = defineProblem<[number, string, string]>('rate_limited', 'Rate limit exceeded: %d requests a minute for %s; retry in %s.', 429);

declare module 'fastify' {
  interface FastifyInstance {
    downloads: DownloadFiles;
    /** Totals of records queries, counted once per dataset content and filter (the API's and the portal's). */
    recordTotals: RecordTotals;
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
  const files = new DownloadFiles(config.OPEN_DATA_DIR, app.database, config.OPEN_FETCH_ROWS, app.background.signal);
  app.decorate('downloads', files);
  const totals = new RecordTotals(app.db);
  app.decorate('recordTotals', totals);

  const redis = app.redis;

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
        totals,
        publicUrl: publicUrl(config),
        fetchRows: config.OPEN_FETCH_ROWS,
        prebuild: config.OPEN_PREBUILD,
      });
    },
  );
}

export default fp(open, { name: 'open', fastify: '5.x', dependencies: ['auth', 'audit', 'background', 'catalog', 'exchange'] });
