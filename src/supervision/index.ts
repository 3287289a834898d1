import type { FastifyError, FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import rateLimit from '@fastify/rate-limit';
import { publicUrl, signInIssuers, supervisorAgencies, type Config, type SignInIssuer } from '../config.js';
import { keyEncryptionKey } from '../identity/index.js';
import { problemOf, type ProblemExtras } from '../plugins/errors.js';
import { sendErrorPage } from '../portal/index.js';
import type { PagesPlugin, SupervisionContext } from './context.js';
import { EndedSessions } from './ended.js';
import { peopleFrame } from './frame.js';
import { SignInIssuers } from './oidc.js';
import sessions from './session.js';
import { signInRoutes } from './signin.js';

export interface SupervisionOptions {
  config: Config;
  /** Sign-in issuers besides SIGN_IN_ISSUERS: the embedded demo's (src/demo/idp.ts). */
  extraIssuers?: SignInIssuer[];
  /** The pages, each part registered in the sessions' scope. */
  pages?: PagesPlugin[];
}

/**
 * Pages for people who sign in (电子监察 for officials, 我的数据 for citizens): OpenID Connect
 * sign-in, sealed-cookie sessions with CSRF tokens, and the pages, all in one scope of their own
 * (the API beside it never reads a cookie). Its errors are pages in the portal's style.
 */
async function supervision(app: FastifyInstance, options: SupervisionOptions) {
  const { config } = options;
  const base = publicUrl(config).replace(/\/$/, '');
  const entries = [...signInIssuers(config), ...(options.extraIssuers ?? [])];
  const issuers = new SignInIssuers(entries, `${base}/login/callback`, `${base}/`);
  const supervisors = supervisorAgencies(config);
  const context: SupervisionContext = { config, supervisors, publicUrl: base };
  const kek = await keyEncryptionKey(config);

  await app.register(async (scope) => {
    scope.setErrorHandler(async (error: FastifyError & ProblemExtras, request, reply) =>
      sendErrorPage(request, reply, problemOf(error, request, reply), peopleFrame(request, reply, supervisors)),
    );
    await scope.register(rateLimit, {
      global: true,
      timeWindow: 60_000,
      max: config.RATE_LIMIT_ANONYMOUS_PER_MINUTE,
      ...(app.redis ? { redis: app.redis, nameSpace: 'govdata-gateway:people-rate:' } : {}),
      skipOnError: true,
      enableDraftSpec: true,
      errorResponseBuilder: (_request, ctx) =>
        Object.assign(new Error(`Rate limit exceeded: ${ctx.max} pages a minute for this address; retry in ${ctx.after}.`), { statusCode: 429, code: 'rate_limited' }),
    });
    await scope.register(sessions, {
      keyEncryptionKey: kek,
      idleMs: config.SESSION_IDLE_MINUTES * 60_000,
      maxMs: config.SESSION_MAX_HOURS * 3_600_000,
      formOrigins: issuers.origins(),
      signedOut: new EndedSessions(app.db, () => app.clock()),
      ended: async (request, person, reason) => {
        await app.audit.record({
          request_id: request.id,
          action: 'session.end',
          outcome: 'allowed',
          reason,
          ...(person.kind === 'agency' ? { agency: person.agency as string, client_id: `${person.issuer}:${person.sub}` } : { client_id: `${person.issuer}:ref:${app.subjectRef(person.person as string)}` }),
          client_address: request.ip,
        });
      },
    });
    signInRoutes(scope, { issuers, publicUrl: base, supervisors });
    for (const pages of options.pages ?? []) await pages(scope, context);
  });
}

export default fp(supervision, { name: 'supervision', fastify: '5.x', dependencies: ['portal', 'audit'] });
