import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';

/** Entity tags compared as RFC 9110 says: weakly for If-None-Match, strongly for If-Range. */
function opaque(tag: string): string {
  return tag.startsWith('W/') ? tag.slice(2) : tag;
}

/** Does If-None-Match name this entity tag (or `*`)? */
export function noneMatch(request: FastifyRequest, etag: string): boolean {
  const header = request.headers['if-none-match'];
  if (!header) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((tag) => opaque(tag.trim()) === opaque(etag));
}

/**
 * Strong ETags (SHA-1 of the body) and 304 on If-None-Match, for the answers a cache may keep:
 * GET and HEAD, 200, a body in hand, and no `Cache-Control: no-store`. A route that sets its own
 * ETag keeps it (and answers its own 304s). Posts, errors and exchange answers (personal data,
 * `no-store`) are not hashed: no cache may keep them, so a tag would only cost time.
 */
async function etag(app: FastifyInstance) {
  app.addHook('onSend', async (request, reply, payload) => {
    if (reply.statusCode !== 200 || (request.method !== 'GET' && request.method !== 'HEAD')) return payload;
    if (!(typeof payload === 'string' || Buffer.isBuffer(payload)) || reply.hasHeader('etag')) return payload;
    if (String(reply.getHeader('cache-control') ?? '').includes('no-store')) return payload;
    const tag = `"${createHash('sha1').update(payload).digest('base64')}"`;
    reply.header('etag', tag);
    if (!noneMatch(request, tag)) return payload;
    reply.code(304);
    return '';
  });
}

export default fp(etag, { name: 'etag', fastify: '5.x' });
