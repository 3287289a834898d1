import createError from '@fastify/error';

const OWN_CODE_PREFIX = 'GW_';

/**
 * Define one of the gateway's errors (@fastify/error underneath). It leaves as RFC 9457
 * problem+json whose `code` is the snake_case code given here: part of the wire contract, since
 * clients switch on it. @fastify/error upper-cases codes, so ours carry a prefix that the error
 * handler recognises and turns back.
 */
export function defineProblem<Args extends unknown[] = [string]>(code: string, message: string, status: number) {
  return createError<Args>(`${OWN_CODE_PREFIX}${code}`, message, status);
}

/** The wire code of one of our errors, or undefined for anybody else's. */
export function ownProblemCode(errorCode: string | undefined): string | undefined {
  return errorCode?.startsWith(OWN_CODE_PREFIX) ? errorCode.slice(OWN_CODE_PREFIX.length).toLowerCase() : undefined;
}

export const NotFound = defineProblem('not_found', '%s', 404);
export const InvalidRequest = defineProblem('invalid_request', '%s', 400);

/** Fastify's own errors, mapped to our codes so that clients see one vocabulary. */
export const fastifyErrorCodes: Record<string, string> = {
  FST_ERR_VALIDATION: 'invalid_request',
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid_content_length',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_json',
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_json',
  FST_ERR_BAD_URL: 'invalid_url',
  FST_ERR_ASYNC_CONSTRAINT: 'invalid_request',
  FST_ERR_HANDLER_TIMEOUT: 'timeout',
  // @fastify/csrf-protection: a form without its token, or with one not of this session.
  FST_CSRF_MISSING_SECRET: 'csrf_invalid',
  FST_CSRF_INVALID_TOKEN: 'csrf_invalid',
};

export const problemTitles: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  408: 'Request Timeout',
  409: 'Conflict',
  410: 'Gone',
  412: 'Precondition Failed',
  413: 'Content Too Large',
  414: 'URI Too Long',
  415: 'Unsupported Media Type',
  416: 'Range Not Satisfiable',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** Where problem types are named; a URN, since a type must be a stable URI but need not resolve. */
export function problemType(code: string): string {
  return `urn:govdata-gateway:problem:${code}`;
}
