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
import portal from './portal/index.js';
import identity from './identity/index.js';
import auth from './plugins/auth.js';
import { clientErrorHandler, routerErrorHandler } from './plugins/client-errors.js';
import background from './plugins/background.js';
import database from './plugins/database.js';
import redis from './plugins/redis.js';
import docs from './plugins/docs.js';
import errors from './plugins/errors.js';
import health from './plugins/health.js';
import metrics from './plugins/metrics.js';
import connections from './plugins/connections.js';
import security from './plugins/security.js';
import textHeaders from './plugins/text-headers.js';
import requestText from './plugins/request-text.js';
import sharing from './sharing/index.js';
import demoIdp, { demoSignIn, type DemoPerson } from './demo/idp.js';
import supervision from './supervision/index.js';
import { SUPERVISION_PAGES } from './supervision/pages.js';

export interface BuildOptions {
  /** The database, opened and migrated (src/startup.ts does both). */
  database: Database;
  /** Close the database with the app (true for the one the start-up sequence opened). */
  ownsDatabase: boolean;
  /** A logger instance to use instead of one made from the configuration. */
  logger?: FastifyBaseLogger;
  /** The clock grants expire by and deadlines count from (tests move it). */
  clock?: () => Date;
  /** The embedded demo's OpenID provider under /demo-idp, with these people (src/demo/idp.ts). */
  demoIdp?: { people: DemoPerson[] };
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** true: the answer is a stream that may run for long (downloads), so no handler timeout applies. */
    streams?: boolean;
  }
  interface FastifyInstance {
    /** Now, as far as grants, deadlines and decisions are concerned. */
    clock: () => Date;
  }
}

/** How often Node checks for requests that are late (headers or body slower than REQUEST_TIMEOUT_MS). */
const CONNECTIONS_CHECKING_INTERVAL_MS = 1000;

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
    // A socket silent for longer than a request may take is dropped: a little longer than the
    // handler's own limit (below), so that a request waiting on the database gets its 503 first.
    connectionTimeout: config.REQUEST_TIMEOUT_MS + 2000,
    requestTimeout: config.REQUEST_TIMEOUT_MS,
    // A request trickled in byte by byte is cut at REQUEST_TIMEOUT_MS: Node looks for late requests
    // every connectionsCheckingInterval (30 s by default, so up to 30 s late), and its connection
    // list swaps headersTimeout and requestTimeout when the first is the longer. Fastify sets
    // requestTimeout only after the server is made, leaving headersTimeout at Node's 60 s: a slow
    // body had 60 s. Both are given to the server here.
    http: {
      requestTimeout: config.REQUEST_TIMEOUT_MS,
      headersTimeout: config.REQUEST_TIMEOUT_MS,
      connectionsCheckingInterval: CONNECTIONS_CHECKING_INTERVAL_MS,
    },
    keepAliveTimeout: config.KEEP_ALIVE_TIMEOUT_MS,
    return503OnClosing: true,
    // Requests the HTTP parser refuses are answered as problem+json too, and so are those the
    // router refuses before any hook runs.
    clientErrorHandler,
    frameworkErrors: routerErrorHandler,
    // The longest path parameter a route takes: a record key (200, composite keys joined with ~).
    routerOptions: { maxParamLength: 200 },
    // Plugins load keys, grants and the audit chain's head, and apply audit retention: seconds
    // on a busy database, more on a big one.
    pluginTimeout: 300_000,
    ajv: {
      customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: true },
    },
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.decorate('clock', options.clock ?? (() => new Date()));

  // No request waits past REQUEST_TIMEOUT_MS for its answer (a database that hangs, a queue):
  // it gets 503 `timeout` instead. Routes that stream (downloads, the audit CSV) are exempt, since
  // Fastify would cut a stream still running at the limit.
  app.addHook('onRoute', (route) => {
    if (!route.config?.streams) route.handlerTimeout ??= config.REQUEST_TIMEOUT_MS;
  });

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
  // An answer sent before its request has arrived in full (a body still trickling in when the
  // handler's time is up, a refusal before the body is read) ends the connection too: Node would
  // go on reading the rest of the body, and answer the same request again with a 408 when it is late.
  app.addHook('onSend', async (request, reply) => {
    if (closing || request.raw.complete === false) reply.header('connection', 'close');
  });

  // Request bodies are JSON (and forms where an RFC says so): plain text is refused with 415.
  app.removeContentTypeParser('text/plain');
  await app.register(errors);
  // Header text is decoded before anything reads it (the token check, the audit trail); registered
  // ahead of every encapsulated plugin, so that all their requests carry its decoration.
  await app.register(textHeaders);
  // Text in the path, query and body: what the database and the trail cannot hold is a 400.
  await app.register(requestText);
  await app.register(database, { database: options.database, owned: options.ownsDatabase, closeWithinMs: config.SHUTDOWN_GRACE_MS });
  // Right after the database: closing waits for background work before the database closes.
  await app.register(background);
  await app.register(redis, { url: config.REDIS_URL });
  await app.register(connections, { max: config.MAX_CONNECTIONS });
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
  const demoSignInSetup = options.demoIdp ? demoSignIn(publicUrl(config)) : undefined;
  if (demoSignInSetup && options.demoIdp) await app.register(demoIdp, { issuer: demoSignInSetup.issuer, people: options.demoIdp.people, clients: demoSignInSetup.clients });
  // Pages for people, over the same services: registered last, as it answers the paths no API route took.
  await app.register(portal, { config });
  // Pages for people who sign in (officials, citizens), in a scope of their own with sessions.
  await app.register(supervision, { config, pages: SUPERVISION_PAGES, ...(demoSignInSetup ? { extraIssuers: demoSignInSetup.issuers } : {}) });

  return app;
}

export type App = Awaited<ReturnType<typeof buildApp>>;
export type { FastifyInstance };
