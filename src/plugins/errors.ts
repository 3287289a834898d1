import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { isDatabaseUnavailable } from '../db/index.js';
import { fastifyErrorCodes, ownProblemCode, problemTitles, problemType } from '../errors.js';

/** RFC 9457 problem details, as every 4xx and 5xx leaves the gateway. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  request_id: string;
  instance?: string;
  errors?: ProblemFieldError[];
  [extension: string]: unknown;
}

/** One failing field of a request: where it is (`in` + JSON pointer) and what is wrong. */
export interface ProblemFieldError {
  in: string;
  pointer: string;
  message: string;
}

/**
 * An error a domain throws may carry extension members for its problem (`reason`, `errors`, …)
 * and headers that belong with it (`WWW-Authenticate`, `Retry-After`).
 */
export interface ProblemExtras {
  extensions?: Record<string, unknown>;
  headers?: Record<string, string>;
}

export const problemSchema = {
  $id: 'Problem',
  type: 'object',
  description: 'RFC 9457 problem details with a stable machine-readable `code`.',
  required: ['type', 'title', 'status', 'detail', 'code', 'request_id'],
  properties: {
    type: { type: 'string', description: 'URI naming the problem type.' },
    title: { type: 'string' },
    status: { type: 'integer' },
    detail: { type: 'string' },
    code: { type: 'string', description: 'Stable error code, e.g. token_expired, invalid_request.' },
    request_id: { type: 'string' },
    instance: { type: 'string' },
    errors: {
      type: 'array',
      items: {
        type: 'object',
        required: ['in', 'pointer', 'message'],
        properties: {
          in: { type: 'string', description: 'body, querystring, params or headers' },
          pointer: { type: 'string', description: 'JSON pointer to the failing value' },
          message: { type: 'string' },
        },
      },
    },
  },
  additionalProperties: true,
} as const;

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

declare module 'fastify' {
  interface FastifyReply {
    /** Send an RFC 9457 problem for this request. */
    problem(status: number, code: string, detail: string, extensions?: Record<string, unknown>): FastifyReply;
  }
  interface FastifyInstance {
    /**
     * Answer unrouted requests with a page instead of problem+json when `page` takes them (a
     * browser asking for HTML): the portal's 404. Anything it declines stays problem+json.
     */
    setNotFoundPage(page: NotFoundPage): void;
  }
}

/** Renders a 404 page and answers true, or answers false to leave the request to problem+json. */
export type NotFoundPage = (request: FastifyRequest, reply: FastifyReply) => Promise<boolean>;

interface ValidationIssue {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
}

/**
 * Turn Ajv's findings into field errors that name the failing value by JSON pointer, one per
 * value: a union reports each branch it tried, which we fold into one message.
 */
export function fieldErrors(context: string, issues: ValidationIssue[]): ProblemFieldError[] {
  const byPointer = new Map<string, ValidationIssue[]>();
  for (const issue of issues) {
    let pointer = issue.instancePath;
    if (issue.keyword === 'required') pointer += `/${String(issue.params.missingProperty)}`;
    if (issue.keyword === 'additionalProperties') pointer += `/${String(issue.params.additionalProperty)}`;
    byPointer.set(pointer, [...(byPointer.get(pointer) ?? []), issue]);
  }
  return [...byPointer].map(([pointer, group]) => ({ in: context, pointer, message: describeIssues(group) }));
}

function describeIssues(group: ValidationIssue[]): string {
  const allowed = group.filter((issue) => issue.keyword === 'const').map((issue) => String(issue.params.allowedValue));
  if (allowed.length > 0) return `must be one of ${allowed.join(', ')}`;
  if (group.some((issue) => issue.keyword === 'anyOf' || issue.keyword === 'oneOf')) {
    return 'does not match any of the allowed forms';
  }
  const [first] = group as [ValidationIssue];
  if (first.keyword === 'additionalProperties') return 'is not a known property';
  if (first.keyword === 'enum') return `must be one of ${(first.params.allowedValues as unknown[]).join(', ')}`;
  return first.message ?? 'is invalid';
}

function describeFieldErrors(errors: ProblemFieldError[]): string {
  return errors.map((e) => `${e.in}${e.pointer || ''} ${e.message}`).join('; ');
}

/** The problem details for a status, code and detail (what a page shows of an error, too). */
export function buildProblem(
  request: FastifyRequest,
  status: number,
  code: string,
  detail: string,
  extensions: Record<string, unknown> = {},
): Problem {
  return {
    ...extensions,
    type: problemType(code),
    title: problemTitles[status] ?? 'Error',
    status,
    detail,
    code,
    request_id: request.id,
  };
}

function codeFor(error: FastifyError, status: number): string {
  const own = ownProblemCode(error.code);
  if (own) return own;
  if (error.code && fastifyErrorCodes[error.code]) return fastifyErrorCodes[error.code] as string;
  // Errors that are classes of ours carry snake_case codes; anything else is named by its status.
  if (error.code && /^[a-z][a-z0-9_]*$/.test(error.code)) return error.code;
  if (status === 429) return 'rate_limited';
  if (status === 404) return 'not_found';
  if (status === 406) return 'not_acceptable';
  if (status === 413) return 'payload_too_large';
  if (status === 415) return 'unsupported_media_type';
  return status >= 500 ? 'internal_error' : 'bad_request';
}

function sendProblem(reply: FastifyReply, problem: Problem): FastifyReply {
  return reply.code(problem.status).type(PROBLEM_CONTENT_TYPE).send(problem);
}

/**
 * The problem an error leaves as (logged as it deserves, its headers set on the reply): 5xx
 * details go to the log with the request id; the client gets the id, never the cause. The API
 * sends it as problem+json; the portal renders it as a page.
 */
export function problemOf(error: FastifyError & ProblemExtras, request: FastifyRequest, reply: FastifyReply): Problem {
  // The database away (a lost connection, a server restarting, the breaker open) is a 503 to
  // retry, never a 500. It is logged when the breaker opens and closes, not on every request.
  if (isDatabaseUnavailable(error)) {
    request.log.debug({ err: { message: error.message } }, 'database unavailable');
    reply.header('retry-after', '2');
    return buildProblem(request, 503, 'database_unavailable', 'The database cannot be reached just now, so this request is not answered; retry shortly.');
  }
  // The handler's time ran out while the body was still arriving: the caller was too slow.
  if (error.code === 'FST_ERR_HANDLER_TIMEOUT' && request.raw.complete === false) {
    return buildProblem(request, 408, 'request_timeout', 'The request did not arrive in full within REQUEST_TIMEOUT_MS.');
  }
  const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500;
  if (error.headers) reply.headers(error.headers);
  if (status === 503 && !reply.hasHeader('retry-after')) reply.header('retry-after', '2');

  if (status >= 500) {
    request.log.error({ err: error }, 'request failed');
    const code = status === 500 ? 'internal_error' : codeFor(error, status);
    const detail =
      status === 500 ? `The gateway could not complete this request; quote request id ${request.id}.` : error.message;
    return buildProblem(request, status, code, detail, error.extensions);
  }

  request.log.info({ code: error.code, status }, error.message);
  if (error.validation) {
    const errors = fieldErrors(error.validationContext ?? 'body', error.validation as ValidationIssue[]);
    return buildProblem(request, status, 'invalid_request', describeFieldErrors(errors), { ...error.extensions, errors });
  }
  return buildProblem(request, status, codeFor(error, status), error.message, error.extensions);
}

/**
 * One error handler for the whole gateway: every error leaves as problem+json with a stable
 * code. 5xx details go to the log with the request id; the client gets the id, never the cause.
 */
async function errorsPlugin(app: FastifyInstance) {
  app.addSchema(problemSchema);

  app.decorateReply(
    'problem',
    function problem(this: FastifyReply, status: number, code: string, detail: string, extensions?: Record<string, unknown>) {
      return sendProblem(this, buildProblem(this.request, status, code, detail, extensions));
    },
  );

  app.setErrorHandler((error: FastifyError & ProblemExtras, request, reply) => sendProblem(reply, problemOf(error, request, reply)));

  let notFoundPage: NotFoundPage | undefined;
  app.decorate('setNotFoundPage', (page: NotFoundPage) => {
    notFoundPage = page;
  });
  app.setNotFoundHandler(async (request, reply) => {
    if (notFoundPage && (await notFoundPage(request, reply))) return reply;
    return sendProblem(reply, buildProblem(request, 404, 'not_found', `No route serves ${request.method} ${request.url.split('?')[0]}.`));
  });
}

export default fp(errorsPlugin, { name: 'errors', fastify: '5.x' });
