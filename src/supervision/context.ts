import type { FastifyInstance, FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import type { Config } from '../config.js';
import { defineProblem } from '../errors.js';
import { peopleFrame, type PeopleFrame } from './frame.js';
import type { Person } from './oidc.js';

/** What every page of the supervision (and the citizen's page) is built with. */
export interface SupervisionContext {
  config: Config;
  /** SUPERVISOR_AGENCIES: their officials with audit:read see everything. */
  supervisors: ReadonlySet<string>;
  publicUrl: string;
}

export const OfficialsOnly = defineProblem<[]>('officials_only', 'This page is for officials of an agency; a citizen’s page is /me.', 403);
export const CitizensOnly = defineProblem<[]>('citizens_only', 'This page is for a citizen signed in through a citizen issuer.', 403);
export const ScopeMissing = defineProblem<[string]>('insufficient_scope', 'Your role does not include %s.', 403);

/** The signed-in person of a guarded route (the guard has made sure there is one). */
export const personOf = (request: FastifyRequest) => request.person as Person;

/** Send someone not signed in to sign in, coming back here after. */
function toSignIn(request: FastifyRequest, reply: FastifyReply) {
  return reply.redirect(`/login?returnTo=${encodeURIComponent(request.url)}`, 303);
}

/**
 * preHandler of officials' pages: signed out, to /login and back; a citizen, 403 (their session
 * reaches /me and nothing else); an official without `scope` (when one is named), 403.
 */
export function officialsOnly(scope?: string): preHandlerAsyncHookHandler {
  return async function officialsOnly(request, reply) {
    const person = request.person;
    if (!person) return toSignIn(request, reply);
    if (person.kind !== 'agency') throw new OfficialsOnly();
    if (scope && !(person.scopes ?? []).includes(scope) && !(person.scopes ?? []).includes('admin')) throw new ScopeMissing(scope);
  };
}

/** preHandler of the citizen's page: signed out, to /login and back; an official, 403. */
export const citizensOnly: preHandlerAsyncHookHandler = async function citizensOnly(request, reply) {
  const person = request.person;
  if (!person) return toSignIn(request, reply);
  if (person.kind !== 'citizen') throw new CitizensOnly();
};

/**
 * Send a page of a signed-in person: rendered from `template` (a path below src/, e.g.
 * 'supervision/templates/dashboard.eta') with `data` and the person's frame; never cached
 * anywhere (no-store, and it varies by cookie), in the page's language.
 */
export async function sendPersonalPage(
  request: FastifyRequest,
  reply: FastifyReply,
  context: Pick<SupervisionContext, 'supervisors'>,
  template: string,
  data: (frame: PeopleFrame) => Record<string, unknown> & { title: string },
) {
  const frame = peopleFrame(request, reply, context.supervisors);
  const html = await reply.viewAsync(template, { frame, ...data(frame) });
  return reply
    .header('cache-control', 'no-store')
    .header('vary', 'Cookie, Accept-Language, HX-Request, HX-Target')
    .header('content-language', frame.locale)
    .type('text/html; charset=utf-8')
    .send(html);
}

/** A part of the pages (the trail's, the sharing's, the citizen's): its routes, registered in the sessions' scope. */
export type PagesPlugin = (app: FastifyInstance, context: SupervisionContext) => void | Promise<void>;
