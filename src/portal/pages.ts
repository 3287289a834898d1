import type { FastifyReply, FastifyRequest } from 'fastify';
import Type from 'typebox';
import type { Shelf } from './data.js';

export interface PortalOptions {
  shelf: Shelf;
  publicUrl: string;
}

const Lang = { lang: Type.Optional(Type.String({ maxLength: 16 })) };
export const LangQuery = Type.Object(Lang);

/** Pages are for people: public for a minute, in the language asked for, never in the OpenAPI document. */
export async function renderPage(reply: FastifyReply, template: string, data: Record<string, unknown>) {
  reply.header('cache-control', 'public, max-age=60');
  reply.header('vary', 'Accept-Language, Accept-Encoding, HX-Request, HX-Target');
  reply.header('content-language', (data.frame as { locale: string }).locale);
  const html = await reply.viewAsync(template, data);
  return reply.type('text/html; charset=utf-8').send(html);
}

/** An htmx request that swaps only the element `target`: the page answers with that fragment. */
export function wantsFragment(request: FastifyRequest, target: string): boolean {
  return request.headers['hx-request'] === 'true' && request.headers['hx-target'] === target;
}

