import createError from '@fastify/error';

/**
 * The gateway's stable error codes. Each leaves as RFC 9457 problem+json with `code` set to the
 * constructor's code (snake_case, part of the wire contract: clients switch on it).
 * Domains add theirs beside their routes with the same `createError`.
 */
export const NotFound = createError<[string]>('not_found', '%s', 404);
export const InvalidRequest = createError<[string]>('invalid_request', '%s', 400);
export const NotReady = createError<[string]>('not_ready', '%s', 503);

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
};

export const problemTitles: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  409: 'Conflict',
  410: 'Gone',
  412: 'Precondition Failed',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  416: 'Range Not Satisfiable',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** Where problem types are named; a URN, since a type must be a stable URI but need not resolve. */
export function problemType(code: string): string {
  return `urn:govdata-gateway:problem:${code}`;
}
