import { hkdfSync } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import secureSession from '@fastify/secure-session';
import csrf from '@fastify/csrf-protection';
import formbody from '@fastify/formbody';
import type { Caller } from '../plugins/auth.js';
import type { EndedSessions } from './ended.js';
import type { PendingSignIn, Person } from './oidc.js';

/** The session cookie: sealed (XChaCha20-Poly1305 by libsodium), so every instance and worker reads it. */
export const SESSION_COOKIE = 'gw_session';
/** How often a session's last request is written back into its cookie (the idle timeout's clock). */
const SEEN_EVERY_MS = 60_000;

declare module '@fastify/secure-session' {
  interface SessionData {
    person: Person;
    pending: PendingSignIn;
    _csrf: string;
  }
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The person signed in on this request's session, or null. */
    person: Person | null;
    /** Why a session ended on this request (idle or absolute timeout), for the page to say. */
    sessionEnded: 'idle_timeout' | 'session_timeout' | null;
    /** Sign out: the cookie cleared, and its session refused on every instance should a copy of it come back. */
    endSession(): Promise<void>;
  }
}

export interface SessionOptions {
  /** KEY_ENCRYPTION_KEY: the session key is derived from it (HKDF), so every instance shares it. */
  keyEncryptionKey: Buffer;
  idleMs: number;
  maxMs: number;
  /** Origins forms may lead to (the identity providers, for sign-out). */
  formOrigins: string[];
  /** Records a session that ended by a timeout. */
  ended: (request: FastifyRequest, person: Person, reason: 'idle_timeout' | 'session_timeout') => Promise<void>;
  /** The sessions ended by sign-out. */
  signedOut: EndedSessions;
}

/** The caller a person's session stands for: an official as their agency with their roles' scopes; a citizen as themselves. */
export function callerOf(person: Person): Caller {
  if (person.kind === 'citizen') return { kind: 'citizen', person: person.person as string, issuer: person.issuer };
  return { kind: 'agency', clientId: `${person.issuer}:${person.sub}`, agency: person.agency as string, scopes: new Set(person.scopes ?? []) };
}

/** The CSP of people's pages: the gateway's own, with forms allowed to lead to the identity providers. */
function pageCsp(formOrigins: string[]): string {
  return [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    `form-action 'self'${formOrigins.map((origin) => ` ${origin}`).join('')}`,
    "frame-ancestors 'none'",
    "base-uri 'self'",
    "object-src 'none'",
  ].join('; ');
}

/**
 * Sessions of people on the pages under this scope: a sealed cookie (HttpOnly, SameSite=Lax,
 * Secure when the request came over HTTPS), CSRF tokens kept in it, and the person it holds
 * checked on every request against the idle and the absolute timeout. Bearer tokens play no
 * part here: a page's caller is the person of its session.
 */
async function sessions(app: FastifyInstance, options: SessionOptions) {
  const key = Buffer.from(hkdfSync('sha256', options.keyEncryptionKey, 'govdata-gateway', 'session cookie key v1', 32));
  await app.register(secureSession, {
    key,
    cookieName: SESSION_COOKIE,
    expiry: Math.ceil(options.maxMs / 1000),
    cookie: { path: '/', httpOnly: true, sameSite: 'lax', secure: 'auto' },
  });
  await app.register(csrf, { sessionPlugin: '@fastify/secure-session' });
  await app.register(formbody, { bodyLimit: 64 * 1024 });
  app.decorateRequest('person', null);
  app.decorateRequest('sessionEnded', null);
  app.decorateRequest('endSession', async function endSession(this: FastifyRequest) {
    const person = this.session.get('person');
    this.session.delete();
    if (person) await options.signedOut.end(person.sid, new Date(person.signedInAt + options.maxMs));
  });
  const csp = pageCsp(options.formOrigins);

  app.addHook('onRequest', async (request, reply) => {
    reply.header('content-security-policy', csp).header('cache-control', 'no-store').header('vary', 'cookie');
    request.caller = null;
    const person = request.session.get('person');
    if (!person) return;
    if (await options.signedOut.has(person.sid)) {
      request.session.set('person', undefined);
      return;
    }
    const now = app.clock().getTime();
    const ended = now - person.signedInAt > options.maxMs ? 'session_timeout' : now - person.seenAt > options.idleMs ? 'idle_timeout' : null;
    if (ended) {
      request.session.set('person', undefined);
      request.sessionEnded = ended;
      await options.ended(request, person, ended);
      return;
    }
    if (now - person.seenAt > SEEN_EVERY_MS) request.session.set('person', { ...person, seenAt: now });
    request.person = person;
    request.caller = callerOf(person);
  });
}

export default fp(sessions, { name: 'people-sessions', fastify: '5.x' });

/** The CSRF token for this request's forms (made once per session, kept in it). */
export function csrfToken(reply: FastifyReply): string {
  return reply.generateCsrf();
}
