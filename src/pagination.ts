import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { defineProblem } from './errors.js';
import { unstorableAt } from './plugins/request-text.js';

export const InvalidCursor = defineProblem<[]>('invalid_cursor', 'The cursor is not one this gateway issued for this list.', 400);

/** Cursors are opaque to clients: base64url over a small JSON keyset position. */
export function encodeCursor(position: unknown): string {
  return Buffer.from(JSON.stringify(position)).toString('base64url');
}

/**
 * Decode a cursor and check its shape; anything else is 400 invalid_cursor. A position holds
 * stored values, so text the database cannot hold (NUL, a lone surrogate) marks a forged one.
 */
export function decodeCursor<T>(cursor: string, isValid: (value: unknown) => value is T): T {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw new InvalidCursor();
  }
  if (unstorableAt(value) !== undefined || !isValid(value)) throw new InvalidCursor();
  return value;
}

/**
 * A keyset position (time, id) as the newest-first lists issue it: the time as toISOString
 * writes it, so that the query's timestamptz cast cannot fail on a forged one.
 */
export function isTimeKey(value: unknown): value is [string, string] {
  if (!Array.isArray(value) || value.length !== 2 || typeof value[0] !== 'string' || typeof value[1] !== 'string') return false;
  const time = new Date(value[0]);
  return !Number.isNaN(time.getTime()) && time.toISOString() === value[0];
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

/** A cursor the caller cannot read or forge: AES-256-GCM over the position, base64url. */
export function sealCursor(key: Buffer, position: unknown): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  const sealed = Buffer.concat([cipher.update(JSON.stringify(position), 'utf8'), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), sealed]).toString('base64url');
}

export function openCursor<T>(key: Buffer, cursor: string, isValid: (value: unknown) => value is T): T {
  let value: unknown;
  try {
    const bytes = Buffer.from(cursor, 'base64url');
    const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(0, 12));
    decipher.setAuthTag(bytes.subarray(12, 28));
    value = JSON.parse(Buffer.concat([decipher.update(bytes.subarray(28)), decipher.final()]).toString('utf8'));
  } catch {
    throw new InvalidCursor();
  }
  if (!isValid(value)) throw new InvalidCursor();
  return value;
}
