import type { FastifyReply, FastifyRequest } from 'fastify';
import { defineProblem } from './errors.js';

export const InvalidCursor = defineProblem<[]>('invalid_cursor', 'The cursor is not one this gateway issued for this list.', 400);

/** Cursors are opaque to clients: base64url over a small JSON keyset position. */
export function encodeCursor(position: unknown): string {
  return Buffer.from(JSON.stringify(position)).toString('base64url');
}

/** Decode a cursor and check its shape; anything else is 400 invalid_cursor. */
export function decodeCursor<T>(cursor: string, isValid: (value: unknown) => value is T): T {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw new InvalidCursor();
  }
  if (!isValid(value)) throw new InvalidCursor();
  return value;
}

/**
 * Answer a page: `{items, next_cursor, …}` and, when there is a next page, the same cursor as
 * `Link: <…>; rel="next"` (RFC 8288), a reference relative to this request's URL.
 */
export function page<T extends object>(request: FastifyRequest, reply: FastifyReply, body: T, next: unknown | null) {
  const nextCursor = next === null ? null : encodeCursor(next);
  if (nextCursor) {
    const url = new URL(request.url, 'http://gateway.invalid');
    url.searchParams.set('cursor', nextCursor);
    reply.header('link', `<${url.pathname}${url.search}>; rel="next"`);
  }
  return { ...body, next_cursor: nextCursor };
}
