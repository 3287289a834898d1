import type { DestinationStream, Logger, LoggerOptions } from 'pino';
import pino from 'pino';
import { LogController, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Config } from './config.js';

/** Headers and fields that may carry credentials: never written to a log. */
export const redactPaths = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["proxy-authorization"]',
  'req.headers["x-api-key"]',
  'res.headers["set-cookie"]',
  '*.password',
  '*.client_secret',
  '*.access_token',
  '*.token',
  '*.secret',
];

/**
 * What a request looks like in the log. A matched route is logged by its pattern (never the
 * values in its path, which may be a person's ID number); an unmatched path has its long digit
 * runs masked for the same reason. Query strings are left out: they can carry filter values.
 */
export function serializeRequest(request: FastifyRequest) {
  const route = request.routeOptions?.url;
  const path = request.url.split('?')[0] ?? '';
  return {
    method: request.method,
    url: route ?? path.replace(/\d{6,}[0-9Xx]?/g, '***'),
    remote_address: request.ip,
  };
}

/**
 * Errors as pino logs them, less the bound values of a failed query: drizzle puts them in the
 * message ("params: …") and in `params`, and they can be a person's identifiers.
 */
export function serializeError(error: Error): Record<string, unknown> {
  const serialized = pino.stdSerializers.err(error) as unknown as Record<string, unknown>;
  delete serialized.params;
  for (const key of ['message', 'stack'] as const) {
    if (typeof serialized[key] === 'string') {
      serialized[key] = (serialized[key] as string).replace(/\nparams: .*/g, '\nparams: [redacted]');
    }
  }
  return serialized;
}

export function loggerOptions(config: Config, pretty = config.LOG_PRETTY ?? process.stdout.isTTY === true): LoggerOptions {
  return {
    level: config.LOG_LEVEL,
    redact: { paths: redactPaths, censor: '[redacted]' },
    serializers: {
      req: serializeRequest as unknown as (value: unknown) => unknown,
      res: (reply: { statusCode: number }) => ({ statusCode: reply.statusCode }),
      err: serializeError,
    },
    ...(pretty ? { transport: { target: 'pino-pretty', options: { translateTime: 'SYS:standard' } } } : {}),
  };
}

/** The gateway's logger: JSON lines (pretty on a terminal), credentials redacted. */
export function gatewayLogger(config: Config, destination?: DestinationStream): Logger {
  return destination ? pino(loggerOptions(config, false), destination) : pino(loggerOptions(config));
}

/**
 * One log line per request, written when it is answered: the request (method, route pattern,
 * address), the status and the time taken. Fastify's default writes an "incoming request" line
 * too; at thousands of requests a second the second line costs more than it tells.
 */
export class RequestLogController extends LogController {
  override incomingRequest(): void {}

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if (this.isLogDisabled(request)) return;
    if (error) reply.log.error({ req: request, res: reply, err: error, responseTime: reply.elapsedTime }, 'request errored');
    else reply.log.info({ req: request, res: reply, responseTime: reply.elapsedTime }, 'request completed');
  }
}
