import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { IncomingMessage, ServerResponse } from 'node:http';
import helmet, { type HelmetOptions } from 'helmet';
import underPressure from '@fastify/under-pressure';
import type { Config } from '../config.js';

export interface SecurityOptions {
  config: Config;
}

/**
 * The headers helmet sets, worked out once: the options are static (no nonces, no per-request
 * directives), so every answer gets the same headers. @fastify/helmet builds helmet's middleware
 * anew on every request, which cost a few per cent of the gateway's CPU under load.
 */
export function securityHeaders(options: HelmetOptions): Record<string, string> {
  const headers: Record<string, string> = {};
  const response = {
    setHeader(name: string, value: unknown) {
      headers[name.toLowerCase()] = String(value);
    },
    removeHeader() {},
  };
  helmet(options)({} as IncomingMessage, response as unknown as ServerResponse, (error?: unknown) => {
    if (error) throw error;
  });
  return headers;
}

/**
 * Security headers (helmet) and load shedding (under-pressure): above the configured event-loop
 * delay or utilisation, new requests get 503 problem+json with Retry-After instead of queueing
 * until every caller times out.
 */
async function security(app: FastifyInstance, { config }: SecurityOptions) {
  const headers = securityHeaders({
    // The API answers JSON; the CSP below is strict and the docs route relaxes it for its own UI.
    contentSecurityPolicy: {
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'", "'unsafe-inline'"],
        imgSrc: ["'self'", 'data:', 'validator.swagger.io'],
        frameAncestors: ["'none'"],
        // Plain-HTTP deployments (localhost, behind a TLS proxy) must still load the docs UI.
        upgradeInsecureRequests: null,
      },
    },
    crossOriginResourcePolicy: { policy: 'cross-origin' },
  });
  app.addHook('onRequest', (_request, reply, done) => {
    reply.headers(headers);
    done();
  });

  await app.register(underPressure, {
    maxEventLoopDelay: config.MAX_EVENT_LOOP_DELAY_MS,
    maxEventLoopUtilization: config.MAX_EVENT_LOOP_UTILIZATION,
    retryAfter: 10,
    exposeStatusRoute: false,
    pressureHandler: (_request, reply, type, value) => {
      reply.header('retry-after', '10');
      reply.problem(503, 'overloaded', `The gateway is overloaded (${type} ${value}); retry after 10 s.`);
    },
  });
}

export default fp(security, { name: 'security', fastify: '5.x', dependencies: ['errors'] });
