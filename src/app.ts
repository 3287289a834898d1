import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import etag from './plugins/etag.js';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { publicUrl, type Config } from './config.js';
import type { Database } from './db/index.js';
import { gatewayLogger, RequestLogController } from './logger.js';
import audit from './audit/index.js';
import catalog from './catalog/index.js';
import exchange from './exchange/index.js';
import open from './open/index.js';
import identity from './identity/index.js';
import auth from './plugins/auth.js';
import { clientErrorHandler } from './plugins/client-errors.js';
import background from './plugins/background.js';
import database from './plugins/database.js';
import redis from './plugins/redis.js';
import docs from './plugins/docs.js';
import errors from './plugins/errors.js';
import health from './plugins/health.js';
import metrics from './plugins/metrics.js';
import security from './plugins/security.js';
import textHeaders from './plugins/text-headers.js';
import sharing from './sharing/index.js';

export interface BuildOptions {
  /** The database, opened and migrated (src/startup.ts does both). */
  database: Database;
  /** Close the database with the app (true for the one the start-up sequence opened). */
  ownsDatabase: boolean;
  /** A logger instance to use instead of one made from the configuration. */
  logger?: FastifyBaseLogger;
  /** The clock grants expire by and deadlines count from (tests move it). */
  clock?: () => Date;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Now, as far as grants, deadlines and decisions are concerned. */
    clock: () => Date;
  }
}

/** A request id we accept from a caller: short, printable, no separators that break logs or headers. */
const SANE_REQUEST_ID = /^[A-Za-z0-9._:@-]{1,128}$/;

export function requestIdFor(request: IncomingMessage): string {
  const offered = request.headers['x-request-id'];
  return typeof offered === 'string' && SANE_REQUEST_ID.test(offered) ? offered : randomUUID();
}

/**
 * Assemble the gateway's plugins on an open, migrated database. Each plugin only serves; the
 * steps that change data at start-up (migrations, the catalog sync, demo data) are the start-up
 * sequence's (`openGateway` in src/startup.ts), which every test, script and the server go through.
 * Only src/server.ts listens.
 */
export async function buildApp(config: Config, options: BuildOptions) {
  const app = Fastify({
    loggerInstance: options.logger ?? gatewayLogger(config),
    genReqId: requestIdFor,
    logController: new RequestLogController({ requestIdLogLabel: 'request_id' }),
    bodyLimit: config.BODY_LIMIT,
    trustProxy: config.TRUST_PROXY,
    connectionTimeout: config.REQUEST_TIMEOUT_MS,
    requestTimeout: config.REQUEST_TIMEOUT_MS,
    keepAliveTimeout: config.KEEP_ALIVE_TIMEOUT_MS,
    return503OnClosing: true,
    // Requests the HTTP parser refuses are answered as problem+json too.
    clientErrorHandler,
    // Plugins load keys, grants and the audit chain's head, and apply audit retention: seconds
    // on a busy database, more on a big one.
    pluginTimeout: 300_000,
    ajv: {
      customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: true },
    },
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.decorate('clock', options.clock ?? (() => new Date()));

  // First hook of all, so that every answer (404s, shed load, errors) carries the id.
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  // While closing, answers in flight end their keep-alive connection, so that a graceful
  // shutdown does not wait for idle sockets to time out.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onSend', async (_request, reply) => {
    if (closing) reply.header('connection', 'close');
  });

  // Request bodies are JSON (and forms where an RFC says so): plain text is refused with 415.
  app.removeContentTypeParser('text/plain');
  await app.register(errors);
  // Header text is decoded before anything reads it (the token check, the audit trail); registered
  // ahead of every encapsulated plugin, so that all their requests carry its decoration.
  await app.register(textHeaders);
  await app.register(database, { database: options.database, owned: options.ownsDatabase, closeWithinMs: config.SHUTDOWN_GRACE_MS });
  // Right after the database: closing waits for background work before the database closes.
  await app.register(background);
  await app.register(redis, { url: config.REDIS_URL });
  await app.register(security, { config });
  // Hash-based ETags and 304 on If-None-Match for cacheable GET answers. Registered before the
  // audit trail, so that its record shows the 304 that is actually sent.
  await app.register(etag);
  await app.register(docs, { publicUrl: publicUrl(config) });
  await app.register(metrics);
  await app.register(health);
  await app.register(auth);
  await app.register(identity, { config });
  await app.register(audit, { config });
  await app.register(catalog, { config });
  await app.register(sharing, { config });
  await app.register(exchange);
  await app.register(open, { config });

  return app;
}

export type App = Awaited<ReturnType<typeof buildApp>>;
export type { FastifyInstance };
