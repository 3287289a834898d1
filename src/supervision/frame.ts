import type { FastifyReply, FastifyRequest } from 'fastify';
import { frameOf, type Frame } from '../portal/frame.js';
import type { Person } from './oidc.js';
import { csrfToken } from './session.js';

/** The frame of a page for a signed-in person (or one signing in): the portal's, with who they are and the CSRF token of their forms. */
export interface PeopleFrame extends Frame {
  person: Person | null;
  csrf: string;
  /** Whether this person sees everything (a supervisor agency). */
  supervisor: boolean;
}

export function peopleFrame(request: FastifyRequest, reply: FastifyReply, supervisors: ReadonlySet<string>): PeopleFrame {
  const person = request.person;
  return {
    ...frameOf(request),
    person,
    csrf: csrfToken(reply),
    supervisor: person?.kind === 'agency' && supervisors.has(person.agency as string),
  };
}

/** Where a `returnTo` may lead: a path of this gateway (not `//host`, not `/\host`, no scheme), never back into sign-in. */
export function safeReturnTo(value: string | undefined, base: string): string | undefined | false {
  if (value === undefined || value === '') return undefined;
  if (!value.startsWith('/') || value.startsWith('//') || value.startsWith('/\\') || /[\u0000-\u001f\\]/.test(value)) return false;
  let url: URL;
  try {
    url = new URL(value, base);
  } catch {
    return false;
  }
  if (url.origin !== new URL(base).origin) return false;
  if (url.pathname.startsWith('/login') || url.pathname.startsWith('/logout')) return false;
  return `${url.pathname}${url.search}`;
}
