import type { FastifyReply, FastifyRequest } from 'fastify';
import Type from 'typebox';
import type { AuditDetails } from '../audit/index.js';
import { sendPage, type PageCache } from './cache.js';
import type { Shelf } from './data.js';
import type { Frame } from './frame.js';

export interface PortalOptions {
  shelf: Shelf;
  pages: PageCache;
  publicUrl: string;
}

const Lang = { lang: Type.Optional(Type.String({ maxLength: 16 })) };
export const LangQuery = Type.Object(Lang);

/** What a route renders: a template and its data, and what the answer says beside the HTML. */
export interface PageRender {
  template: string;
  data: Record<string, unknown> & { frame: Frame };
  status?: number;
  lastModified?: string;
  audit?: AuditDetails;
}

/**
 * Answer with a page: the one kept under `key` when there is one (see PageCache), else rendered
 * now and kept (a page answering an error is sent, not kept). Never in the OpenAPI document.
 */
export async function answerPage(request: FastifyRequest, reply: FastifyReply, cache: PageCache, key: string, render: () => Promise<PageRender>) {
  const kept = cache.get(key);
  if (kept) return sendPage(request, reply, kept);
  const made = await render();
  const html = await reply.viewAsync(made.template, made.data);
  const page = { html, locale: made.data.frame.locale, ...(made.audit ? { audit: made.audit } : {}) };
  if (made.status && made.status !== 200) return sendPage(request, reply.code(made.status), page);
  return sendPage(request, reply, cache.keep(key, { ...page, ...(made.lastModified ? { lastModified: made.lastModified } : {}) }));
}

/** The key of a page: its language (Accept-Language may choose it), whether it is an htmx fragment, its URL. */
export function pageKey(request: FastifyRequest, frame: Frame, fragment: boolean, prefix = ''): string {
  return `${prefix}|${frame.locale}|${fragment ? 'fragment' : 'page'}|${request.url}`;
}

/** An htmx request that swaps only the element `target`: the page answers with that fragment. */
export function wantsFragment(request: FastifyRequest, target: string): boolean {
  return request.headers['hx-request'] === 'true' && request.headers['hx-target'] === target;
}
