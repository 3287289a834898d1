import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import formbody from '@fastify/formbody';
import { exportJWK, generateKeyPair } from 'jose';
import type { Configuration, Interaction, JWK, KoaContextWithOIDC, default as OidcProvider } from 'oidc-provider';
import Type from 'typebox';
import type { SignInIssuer } from '../config.js';
import { DemoIdpStore } from './idp-store.js';
import { errorPage, expiredPage, loginPage, logoutPage, signedOutPage } from './idp-pages.js';
import type { DemoPerson } from './people.js';

export { DEMO_PEOPLE, ensureDemoPeople, type DemoPerson } from './people.js';

/** Where the demo identity provider answers, below the gateway's public URL. */
export const DEMO_IDP_PATH = '/demo-idp';

/** A relying party of the demo identity provider: the gateway's own sign-in, in this same process. */
export interface IdpClient {
  client_id: string;
  client_secret: string;
  redirect_uris: string[];
  post_logout_redirect_uris: string[];
  /** The scopes it may ask for (all the provider knows when not given). */
  scope?: string;
  /** Who the sign-in form says the person returns to. */
  client_name?: string;
}

export interface DemoIdpOptions {
  /** The issuer identifier: the gateway's public URL + DEMO_IDP_PATH. */
  issuer: string;
  people: DemoPerson[];
  clients: IdpClient[];
}

/** The claims each scope releases (OpenID Connect Core §5.4, and the gateway's own two). */
const CLAIMS = { openid: ['sub'], profile: ['name'], agency: ['agency', 'roles'], citizen: ['id_number'] };

/** Lifetimes in seconds: a demo sign-in lasts a working day. */
const TTL = { AccessToken: 600, AuthorizationCode: 60, IdToken: 600, Interaction: 900, Session: 8 * 3600, Grant: 8 * 3600 };

/**
 * The SIGN_IN_ISSUERS entries of the demo and the identity provider's clients they use: officials
 * (their agency and roles) and citizens (their id number), both on the one demo issuer. The
 * secrets are new on every call: the relying party and the provider live in the same process.
 */
export function demoSignIn(publicUrl: string): { issuer: string; issuers: SignInIssuer[]; clients: IdpClient[] } {
  const base = publicUrl.replace(/\/$/, '');
  const issuer = `${base}${DEMO_IDP_PATH}`;
  const client = (client_id: string, scope: string, client_name: string): IdpClient => ({
    client_id,
    client_name,
    client_secret: randomBytes(32).toString('base64url'),
    redirect_uris: [`${base}/login/callback`],
    post_logout_redirect_uris: [`${base}/`],
    scope,
  });
  const officials = client('gateway-officials', 'openid profile agency', '公共数据网关（政务人员）');
  const citizens = client('gateway-citizens', 'openid profile citizen', '公共数据网关（市民）');
  return {
    issuer,
    clients: [officials, citizens],
    issuers: [
      {
        name: 'officials',
        kind: 'agency',
        label: '政务人员（演示）',
        issuer,
        client_id: officials.client_id,
        client_secret: officials.client_secret,
        scope: officials.scope as string,
        agency_claim: 'agency',
        scope_claim: 'roles',
      },
      {
        name: 'citizens',
        kind: 'citizen',
        label: '市民（演示）',
        issuer,
        client_id: citizens.client_id,
        client_secret: citizens.client_secret,
        scope: citizens.scope as string,
        person_claim: 'id_number',
      },
    ],
  };
}

/** A signing key made for this process: ID tokens are checked against /jwks, which changes on restart. */
async function signingKey(): Promise<JWK> {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  return { ...(await exportJWK(privateKey)), kid: randomBytes(8).toString('base64url'), alg: 'RS256', use: 'sig' } as JWK;
}

const digest = (text: string) => createHash('sha256').update(text, 'utf8').digest();

/** The person these credentials are, compared in constant time (every person, both fields). */
export function personFor(people: readonly DemoPerson[], username: string, password: string): DemoPerson | undefined {
  let found: DemoPerson | undefined;
  for (const person of people) {
    const nameMatches = timingSafeEqual(digest(person.username), digest(username));
    const passwordMatches = timingSafeEqual(digest(person.password), digest(password));
    if (nameMatches && passwordMatches) found = person;
  }
  return found;
}

/**
 * First-party clients need no consent screen: the grant is made (or widened) to the scopes the
 * request asks for, which the client's registered `scope` already bounds.
 */
async function grantRequested(ctx: KoaContextWithOIDC) {
  const { oidc } = ctx;
  const client = oidc.client as NonNullable<typeof oidc.client>;
  const grantId = oidc.result?.consent?.grantId ?? oidc.session?.grantIdFor(client.clientId);
  const grant =
    (grantId ? await oidc.provider.Grant.find(grantId) : undefined) ??
    new oidc.provider.Grant({ clientId: client.clientId, accountId: oidc.session?.accountId as string });
  grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(' '));
  await grant.save();
  return grant;
}

function configuration(options: DemoIdpOptions, mount: string, home: string, key: JWK): Configuration {
  const people = new Map(options.people.map((person) => [person.sub, person]));
  const store = new DemoIdpStore();
  return {
    adapter: store.adapterFor,
    clients: options.clients.map((client) => ({
      ...client,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    })),
    jwks: { keys: [key] },
    cookies: {
      keys: [randomBytes(32).toString('base64url')],
      names: { session: 'demo_idp_session', interaction: 'demo_idp_interaction', resume: 'demo_idp_resume' },
      // The session stays with the provider's paths: the gateway's own pages never see it.
      long: { httpOnly: true, sameSite: 'lax', path: mount },
      short: { httpOnly: true, sameSite: 'lax' },
    },
    claims: CLAIMS,
    scopes: Object.keys(CLAIMS),
    // The relying party reads the person from the ID token alone (no userinfo call).
    conformIdTokenClaims: false,
    responseTypes: ['code'],
    pkce: { required: () => true },
    ttl: TTL,
    clientBasedCORS: () => false,
    findAccount: async (_ctx, sub) => {
      const person = people.get(sub);
      return person ? { accountId: sub, claims: async () => ({ sub, name: person.name, ...person.claims }) } : undefined;
    },
    loadExistingGrant: grantRequested,
    interactions: { url: async (_ctx, interaction) => `${mount}/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      resourceIndicators: { enabled: false },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: async (ctx, form) => {
          ctx.type = 'html';
          ctx.body = logoutPage(form);
        },
        postLogoutSuccessSource: async (ctx) => {
          ctx.type = 'html';
          ctx.body = signedOutPage(home);
        },
      },
    },
    renderError: async (ctx, out) => {
      ctx.type = 'html';
      ctx.body = errorPage(out, home);
    },
  };
}

function sendPage(reply: FastifyReply, status: number, html: string) {
  return reply.code(status).header('content-type', 'text/html; charset=utf-8').header('cache-control', 'no-store').send(html);
}

const UidParams = Type.Object({ uid: Type.String({ maxLength: 64 }) });

/** The sign-in form of an interaction, and its post: the person's password checked here, the rest is oidc-provider's. */
function loginRoutes(app: FastifyInstance, provider: OidcProvider, options: DemoIdpOptions, mount: string, home: string) {
  const pages = app.withTypeProvider<TypeBoxTypeProvider>();
  /** The interaction this browser holds (its cookie), if it is the one in the path. */
  const current = async (request: FastifyRequest, reply: FastifyReply, uid: string): Promise<Interaction | undefined> => {
    const interaction = await provider.interactionDetails(request.raw, reply.raw).catch(() => undefined);
    return interaction?.uid === uid ? interaction : undefined;
  };
  const names = new Map(options.clients.map((client) => [client.client_id, client.client_name ?? client.client_id]));
  const form = (interaction: Interaction) => ({
    action: `${mount}/interaction/${interaction.uid}/login`,
    client: names.get(String(interaction.params.client_id)) ?? String(interaction.params.client_id),
    people: options.people,
  });

  pages.get('/interaction/:uid', { schema: { hide: true, params: UidParams }, config: { bearer: false } }, async (request, reply) => {
    const interaction = await current(request, reply, request.params.uid);
    if (!interaction) return sendPage(reply, 400, expiredPage(home));
    return sendPage(reply, 200, loginPage(form(interaction)));
  });

  // The interaction cookie is SameSite=Lax and bound to this path: a cross-site post carries none.
  pages.post(
    '/interaction/:uid/login',
    {
      schema: {
        hide: true,
        params: UidParams,
        body: Type.Object({ username: Type.Optional(Type.String({ maxLength: 200 })), password: Type.Optional(Type.String({ maxLength: 200 })) }),
      },
      config: { bearer: false },
    },
    async (request, reply) => {
      const interaction = await current(request, reply, request.params.uid);
      if (!interaction) return sendPage(reply, 400, expiredPage(home));
      const { username = '', password = '' } = request.body ?? {};
      const person = personFor(options.people, username, password);
      if (!person) {
        request.auditDetails = { reason: 'demo_sign_in_refused' };
        return sendPage(reply, 401, loginPage({ ...form(interaction), username, failed: true }));
      }
      const returnTo = await provider.interactionResult(request.raw, reply.raw, { login: { accountId: person.sub } }, { mergeWithLastSubmission: false });
      return reply.redirect(returnTo, 303);
    },
  );
}

/**
 * The demo's OpenID provider (oidc-provider): discovery, authorization with PKCE, token, JWKS,
 * userinfo and RP-initiated logout under DEMO_IDP_PATH, signing the demo people in with the
 * passwords of the demo credentials file. Only the embedded demo mounts it (src/startup.ts).
 */
export default async function demoIdp(app: FastifyInstance, options: DemoIdpOptions): Promise<void> {
  // Loaded only here: the rest of the gateway never needs it (and it warns on Node 20 when loaded).
  const { default: Provider } = await import('oidc-provider');
  const mount = new URL(options.issuer).pathname.replace(/\/$/, '');
  const home = `${options.issuer.slice(0, options.issuer.length - mount.length)}/`;
  const provider = new Provider(options.issuer, configuration(options, mount, home, await signingKey()));
  // Behind a TLS proxy the gateway is reached over https: cookies are Secure by X-Forwarded-Proto.
  provider.proxy = true;
  provider.on('server_error', (_ctx: unknown, error: Error) => app.log.error({ err: error }, 'demo identity provider: server error'));
  const callback = provider.callback();

  await app.register(
    async (scope) => {
      // oidc-provider reads the bodies it takes itself.
      scope.removeAllContentTypeParsers();
      scope.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));
      scope.all('/*', { schema: { hide: true }, config: { bearer: false } }, (request, reply) => {
        reply.hijack();
        // The gateway's headers (request id, CSP and the other security headers) go with the answer.
        for (const [name, value] of Object.entries(reply.getHeaders())) if (value !== undefined) reply.raw.setHeader(name, value);
        const raw = request.raw as IncomingMessage & { originalUrl?: string };
        raw.originalUrl = raw.url;
        raw.url = (raw.url ?? '').slice(DEMO_IDP_PATH.length) || '/';
        void callback(raw, reply.raw);
      });
      await scope.register(async (pages) => {
        await pages.register(formbody, { bodyLimit: 16 * 1024 });
        loginRoutes(pages, provider, options, mount, home);
      });
    },
    { prefix: DEMO_IDP_PATH },
  );
}
