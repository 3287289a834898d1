import { createHash } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { LRUCache } from 'lru-cache';
import type { AuditDetails } from '../audit/index.js';
import { noneMatch } from '../plugins/etag.js';

/** A rendered page as it is sent again: its HTML, its entity tag, and the audit details of its reading. */
export interface RenderedPage {
  html: string;
  /** The tag of a kept page (a page answering an error is not kept, and has none). */
  etag?: string;
  locale: string;
  lastModified?: string;
  audit?: AuditDetails;
}

/**
 * Rendered pages, kept for a few seconds under a key that names everything they show: the
 * dataset's stamp (its catalog version and import, so its records), the language and the query.
 * A page is a function of those, so a kept one is the page the request would render; the few
 * seconds bound what the key does not name (a download file finished meanwhile, a provider's
 * contact changed by a sync). The audit record is written for every answer all the same.
 */
export class PageCache {
  private readonly pages: LRUCache<string, RenderedPage>;

  constructor(ttlMs: number, maxBytes = 64 * 1024 * 1024) {
    this.pages = new LRUCache<string, RenderedPage>({ ttl: ttlMs, maxSize: maxBytes, sizeCalculation: (page) => page.html.length * 2 + 256 });
  }

  get(key: string): RenderedPage | undefined {
    return this.pages.get(key);
  }

  keep(key: string, page: RenderedPage): RenderedPage {
    const kept = { ...page, etag: `"${createHash('sha1').update(page.html).digest('base64')}"` };
    this.pages.set(key, kept);
    return kept;
  }
}

/**
 * Send a rendered page with the headers every page has (public for a minute, per language, per
 * htmx target) and its audit details for the trail; a kept page with its ETag, or 304 when the
 * caller has it.
 */
export function sendPage(request: FastifyRequest, reply: FastifyReply, page: RenderedPage) {
  reply.header('cache-control', 'public, max-age=60');
  reply.header('vary', 'Accept-Language, Accept-Encoding, HX-Request, HX-Target');
  reply.header('content-language', page.locale);
  if (page.audit) request.auditDetails = { ...request.auditDetails, ...page.audit };
  if (page.lastModified) reply.header('last-modified', page.lastModified);
  if (page.etag) {
    reply.header('etag', page.etag);
    if (noneMatch(request, page.etag)) return reply.code(304).send();
  }
  return reply.type('text/html; charset=utf-8').send(page.html);
}
