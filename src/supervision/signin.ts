import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Type from 'typebox';
import { defineProblem, ownProblemCode } from '../errors.js';
import { sendPersonalPage } from './context.js';
import { safeReturnTo } from './frame.js';
import type { Person, SignInIssuers } from './oidc.js';
import { callerOf } from './session.js';

export const ReturnToRefused = defineProblem<[]>('return_to_refused', 'returnTo must be a path within this gateway.', 400);
export const SignInExpired = defineProblem<[]>('sign_in_expired', 'This sign-in was not started here or took too long; start again.', 400);

/** How long a sign-in may take between leaving for the provider and coming back. */
const PENDING_MS = 10 * 60_000;

export interface SignInOptions {
  issuers: SignInIssuers;
  publicUrl: string;
  supervisors: ReadonlySet<string>;
}

/** Where a person goes after sign-in when nothing asked: officials to the dashboard, citizens to their page. */
export const homeOf = (person: Person) => (person.kind === 'citizen' ? '/me' : '/supervision');

/** The audit details of a sign-in or sign-out: who (a citizen by keyed hash only) and through which issuer. */
function actor(app: FastifyInstance, person: Person) {
  return person.kind === 'citizen' ? { client_id: `${person.issuer}:ref:${app.subjectRef(person.person as string)}` } : {};
}

/** Record the code of a refusal before the error page is sent (the page is HTML, whose code the trail cannot read back). */
async function refusedWith<T>(request: FastifyRequest, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    request.auditDetails = { ...request.auditDetails, reason: ownProblemCode((error as { code?: string }).code) ?? 'sign_in_failed' };
    throw error;
  }
}

function loginRoute(app: FastifyInstance, { issuers, publicUrl, supervisors }: SignInOptions) {
  app.withTypeProvider<TypeBoxTypeProvider>().get(
    '/login',
    {
      schema: {
        hide: true,
        querystring: Type.Object({
          issuer: Type.Optional(Type.String({ maxLength: 32 })),
          returnTo: Type.Optional(Type.String({ maxLength: 2000 })),
          lang: Type.Optional(Type.String({ maxLength: 16 })),
        }),
      },
    },
    async (request, reply) => {
      const returnTo = safeReturnTo(request.query.returnTo, publicUrl);
      if (returnTo === false) throw new ReturnToRefused();
      const chosen = request.query.issuer ?? (issuers.entries.length === 1 ? issuers.entries[0]?.name : undefined);
      if (!chosen) {
        return sendPersonalPage(request, reply, { supervisors }, 'supervision/templates/login.eta', (frame) => ({
          title: frame.t('signin.title'),
          issuers: issuers.entries,
          returnTo,
          ended: request.sessionEnded,
        }));
      }
      const { url, pending } = await issuers.start(chosen, returnTo, app.clock().getTime());
      request.session.set('pending', pending);
      return reply.redirect(url, 303);
    },
  );
}

function callbackRoute(app: FastifyInstance, { issuers, publicUrl }: SignInOptions) {
  app.get('/login/callback', { schema: { hide: true }, config: { audit: 'session.signin' } }, async (request, reply) => {
    const { person, returnTo } = await refusedWith(request, async () => {
      const pending = request.session.get('pending');
      if (!pending || app.clock().getTime() - pending.startedAt > PENDING_MS) throw new SignInExpired();
      request.session.set('pending', undefined);
      return { person: await issuers.finish(pending, new URL(request.url, publicUrl), app.clock().getTime()), returnTo: pending.returnTo };
    });
    // A new session at sign-in: nothing of the one before (a planted cookie included) carries over.
    request.session.regenerate();
    request.session.set('person', person);
    request.caller = callerOf(person);
    request.auditDetails = { ...actor(app, person), reason: person.issuer };
    return reply.redirect(returnTo ?? homeOf(person), 303);
  });
}

function logoutRoutes(app: FastifyInstance, { issuers, supervisors }: SignInOptions) {
  app.get('/logout', { schema: { hide: true } }, async (request, reply) => {
    if (!request.person) return reply.redirect('/', 303);
    return sendPersonalPage(request, reply, { supervisors }, 'supervision/templates/logout.eta', (frame) => ({ title: frame.t('signout.title') }));
  });

  app.post('/logout', { schema: { hide: true }, config: { audit: 'session.signout' }, preHandler: app.csrfProtection }, async (request, reply) => {
    const person = request.person;
    await request.endSession();
    if (!person) return reply.redirect('/', 303);
    request.auditDetails = { ...actor(app, person), reason: person.issuer };
    // RP-initiated logout: the provider ends its session too, then sends the browser back here.
    return reply.redirect((await issuers.endSessionUrl(person)) ?? '/', 303);
  });
}

/**
 * Sign-in for people (OpenID Connect, authorization code with PKCE) and sign-out, both on the
 * audit trail (`session.signin`, `session.signout`).
 */
export function signInRoutes(app: FastifyInstance, options: SignInOptions) {
  loginRoute(app, options);
  callbackRoute(app, options);
  logoutRoutes(app, options);
}
