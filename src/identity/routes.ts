import type { FastifyInstance } from 'fastify';
import formbody from '@fastify/formbody';
import rateLimit from '@fastify/rate-limit';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { TypedApp } from '../plugins/typed-app.js';
import { credentialsIn } from '../plugins/authorization.js';
import { decodeJwt } from 'jose';
import Type from 'typebox';
import { decodeCursor, page } from '../pagination.js';
import { authenticateClient, OAuthError, type ClientAuthSettings } from './client-auth.js';
import {
  clientView,
  createClient,
  disableClient,
  findClient,
  ClientNotFound,
  listClients,
  rotateClientSecret,
  scopeWords,
} from './clients.js';
import type { KeyStore } from './keys.js';
import { announce, type RevocationState } from './revocation.js';
import type { TokenService } from './tokens.js';

export interface IdentityRouteOptions {
  tokens: TokenService;
  keys: KeyStore;
  revocation: RevocationState;
  clientAuth: ClientAuthSettings;
  issuer: string;
  publicUrl: string;
  tokenRateLimitPerMinute: number;
}

const OAuthForm = Type.Object(
  {
    grant_type: Type.Optional(Type.String()),
    scope: Type.Optional(Type.String({ maxLength: 1000 })),
    client_id: Type.Optional(Type.String({ maxLength: 200 })),
    client_secret: Type.Optional(Type.String({ maxLength: 200 })),
    client_assertion_type: Type.Optional(Type.String({ maxLength: 200 })),
    client_assertion: Type.Optional(Type.String({ maxLength: 8192 })),
    token: Type.Optional(Type.String({ maxLength: 8192 })),
    token_type_hint: Type.Optional(Type.String({ maxLength: 50 })),
  },
  // RFC 6749 §3.2: unrecognised parameters are ignored, not refused.
  { additionalProperties: true },
);

const TokenResponse = Type.Object({
  access_token: Type.String(),
  token_type: Type.Literal('Bearer'),
  expires_in: Type.Integer(),
  scope: Type.String(),
});

const ClientView = Type.Object(
  {
    client_id: Type.String(),
    agency: Type.String(),
    name: Type.String(),
    scopes: Type.Array(Type.String()),
    auth_method: Type.Unsafe<'client_secret' | 'private_key_jwt'>({ type: 'string', enum: ['client_secret', 'private_key_jwt'] }),
    status: Type.Unsafe<'active' | 'disabled'>({ type: 'string', enum: ['active', 'disabled'] }),
    created_at: Type.String({ format: 'date-time' }),
    disabled_at: Type.Optional(Type.String({ format: 'date-time' })),
    client_secret: Type.Optional(Type.String({ description: 'Shown once, at creation or rotation' })),
  },
  { $id: 'Client' },
);

const Jwk = Type.Record(Type.String(), Type.Unknown());
const problems = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, { $ref: 'Problem#' }]));

const ClientParams = Type.Object({ id: Type.String({ maxLength: 100 }) });

/** POST /oauth/token (RFC 6749 §4.4): client credentials, limited per client. */
function tokenRoute(app: TypedApp, options: IdentityRouteOptions) {
  const { tokens, clientAuth } = options;
  app.post(
    '/oauth/token',
    {
      config: { bearer: false, rateLimit: {}, audit: 'token.issue' },
      schema: {
        tags: ['oauth'],
        summary: 'Access token by client credentials (RFC 6749 §4.4)',
        description:
          'Form-encoded. Client authentication: client_secret_basic, client_secret_post or private_key_jwt (RFC 7523). ' +
          'A requested scope narrows the client\'s scopes, never widens them. Errors carry RFC 6749 `error` and `error_description`.',
        consumes: ['application/x-www-form-urlencoded'],
        body: OAuthForm,
        response: { 200: TokenResponse, ...problems(400, 401, 429) },
      },
    },
    async (request, reply) => {
      const form = request.body;
      if (!form.grant_type) throw new OAuthError('invalid_request', 'grant_type is required.');
      const client = await authenticateClient(app.db, request, form, clientAuth);
      request.auditDetails = { client_id: client.id, agency: client.agency };
      if (form.grant_type !== 'client_credentials') {
        throw new OAuthError('unsupported_grant_type', 'Only grant_type=client_credentials is supported.');
      }
      const requested = form.scope?.split(' ').filter(Boolean);
      const scopes = requested?.length ? [...new Set(requested)] : client.scopes;
      const beyond = scopes.filter((scope) => !client.scopes.includes(scope));
      if (beyond.length > 0) throw new OAuthError('invalid_scope', `Not granted to this client: ${beyond.join(' ')}.`);
      reply.header('cache-control', 'no-store').header('pragma', 'no-cache');
      return tokens.issue(client, scopes);
    },
  );
}

/** POST /oauth/revoke (RFC 7009). */
function revokeRoute(app: TypedApp, options: IdentityRouteOptions) {
  const { tokens, revocation, clientAuth } = options;
  app.post(
    '/oauth/revoke',
    {
      config: { bearer: false, audit: 'token.revoke' },
      schema: {
        tags: ['oauth'],
        summary: 'Revoke an access token (RFC 7009)',
        description: 'The client that was issued the token revokes it; it stops working on every instance within a second.',
        consumes: ['application/x-www-form-urlencoded'],
        body: OAuthForm,
        response: { 200: Type.Unknown({ description: 'Revoked, or nothing to revoke (RFC 7009 §2.2); empty body' }), ...problems(400, 401) },
      },
    },
    async (request, reply) => {
      const form = request.body;
      const client = await authenticateClient(app.db, request, form, clientAuth);
      request.auditDetails = { client_id: client.id, agency: client.agency };
      if (!form.token) throw new OAuthError('invalid_request', 'token is required.');
      let claims;
      try {
        claims = await tokens.verifyOwnToken(form.token, { ignoreExpiry: true });
      } catch {
        // RFC 7009 §2.2: an invalid token is no error; there is nothing to revoke.
        return reply.code(200).send(undefined);
      }
      if (claims.client_id !== client.id) {
        throw new OAuthError('unauthorized_client', 'This token was not issued to the client revoking it.');
      }
      await revocation.revokeToken(String(claims.jti), client.id, claims.exp as number);
      tokens.evict((entry) => entry.jti === claims.jti);
      request.log.info({ client_id: client.id, jti: claims.jti }, 'token revoked');
      return reply.code(200).send(undefined);
    },
  );
}

/** The public keys (RFC 7517) and the server's metadata (RFC 8414). */
function metadataRoutes(app: TypedApp, options: IdentityRouteOptions) {
  const { keys, clientAuth } = options;
  app.get(
    '/.well-known/jwks.json',
    {
      schema: {
        tags: ['oauth'],
        summary: "The gateway's public signing keys (RFC 7517)",
        response: { 200: Type.Object({ keys: Type.Array(Jwk) }) },
      },
    },
    async (_request, reply) => {
      reply.header('cache-control', 'public, max-age=300');
      return keys.jwks();
    },
  );

  app.get(
    '/.well-known/oauth-authorization-server',
    {
      schema: {
        tags: ['oauth'],
        summary: 'Authorization server metadata (RFC 8414)',
        response: { 200: Type.Record(Type.String(), Type.Unknown()) },
      },
    },
    async (_request, reply) => {
      reply.header('cache-control', 'public, max-age=300');
      return {
        issuer: options.issuer,
        token_endpoint: clientAuth.tokenEndpoint,
        jwks_uri: `${options.publicUrl}/.well-known/jwks.json`,
        revocation_endpoint: `${options.publicUrl}/oauth/revoke`,
        grant_types_supported: ['client_credentials'],
        response_types_supported: [],
        scopes_supported: [...scopeWords],
        token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
        token_endpoint_auth_signing_alg_values_supported: ['EdDSA', 'ES256', 'ES384', 'PS256', 'RS256'],
        revocation_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
        service_documentation: `${options.publicUrl}/docs`,
      };
    },
  );
}

/** Admin: register, list and read clients (what `gateway client …` does). */
function adminClientRoutes(app: TypedApp) {
  app.post(
    '/v1/admin/clients',
    {
      onRequest: app.requireScope('admin'),
      config: { audit: 'client.create' },
      schema: {
        tags: ['admin'],
        summary: 'Register a client of an agency',
        description: 'Without `jwks` the client gets a secret, returned once in `client_secret`.',
        security: [{ bearer: ['admin'] }],
        body: Type.Object(
          {
            agency: Type.String({ minLength: 1, maxLength: 32 }),
            name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
            scopes: Type.Array(Type.Unsafe<string>({ type: 'string', enum: [...scopeWords] }), { minItems: 1, maxItems: 7 }),
            jwks: Type.Optional(Type.Object({ keys: Type.Array(Jwk, { minItems: 1, maxItems: 10 }) })),
          },
          { additionalProperties: false },
        ),
        response: { 201: { $ref: 'Client#' }, ...problems(400, 401, 403) },
      },
    },
    async (request, reply) => {
      const { client, secret } = await createClient(app.db, app.clientSecrets, request.body as Parameters<typeof createClient>[2]);
      request.log.info({ client_id: client.id, agency: client.agency }, 'client registered');
      return reply.code(201).send({ ...clientView(client), ...(secret ? { client_secret: secret } : {}) });
    },
  );

  app.get(
    '/v1/admin/clients',
    {
      onRequest: app.requireScope('admin'),
      schema: {
        tags: ['admin'],
        summary: 'List clients',
        security: [{ bearer: ['admin'] }],
        querystring: Type.Object(
          {
            agency: Type.Optional(Type.String({ maxLength: 32 })),
            limit: Type.Integer({ minimum: 1, maximum: 100, default: 50 }),
            cursor: Type.Optional(Type.String({ maxLength: 200 })),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({ items: Type.Array(Type.Ref('Client')), next_cursor: Type.Union([Type.String(), Type.Null()]) }),
          ...problems(400, 401, 403),
        },
      },
    },
    async (request, reply) => {
      const { agency, limit, cursor } = request.query;
      const after = cursor ? decodeCursor(cursor, (v): v is string => typeof v === 'string') : undefined;
      const result = await listClients(app.db, { limit, ...(agency ? { agency } : {}), ...(after ? { after } : {}) });
      return page(request, reply, { items: result.items.map(clientView) }, result.next);
    },
  );

  app.get(
    '/v1/admin/clients/:id',
    {
      onRequest: app.requireScope('admin'),
      schema: {
        tags: ['admin'],
        summary: 'One client',
        security: [{ bearer: ['admin'] }],
        params: ClientParams,
        response: { 200: { $ref: 'Client#' }, ...problems(401, 403, 404) },
      },
    },
    async (request) => {
      const client = await findClient(app.db, request.params.id);
      if (!client) throw new ClientNotFound(request.params.id);
      return clientView(client);
    },
  );
}

/** Admin: disable a client, rotate its secret, rotate the signing key. */
function adminActionRoutes(app: TypedApp, options: IdentityRouteOptions) {
  const { tokens, keys, revocation } = options;
  app.post(
    '/v1/admin/clients/:id/disable',
    {
      onRequest: app.requireScope('admin'),
      config: { audit: 'client.disable' },
      schema: {
        tags: ['admin'],
        summary: 'Disable a client: its tokens stop working on every instance within a second',
        security: [{ bearer: ['admin'] }],
        params: ClientParams,
        response: { 200: { $ref: 'Client#' }, ...problems(401, 403, 404) },
      },
    },
    async (request) => {
      const client = await disableClient(app.db, request.params.id);
      await revocation.clientDisabled(client.id);
      tokens.evict((entry) => entry.caller.kind === 'agency' && entry.caller.clientId === client.id);
      request.log.info({ client_id: client.id }, 'client disabled');
      return clientView(client);
    },
  );

  app.post(
    '/v1/admin/clients/:id/rotate-secret',
    {
      onRequest: app.requireScope('admin'),
      config: { audit: 'client.rotate_secret' },
      schema: {
        tags: ['admin'],
        summary: 'Give a client a new secret; the old one stops working at once',
        security: [{ bearer: ['admin'] }],
        params: ClientParams,
        response: { 200: { $ref: 'Client#' }, ...problems(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const { client, secret } = await rotateClientSecret(app.db, app.clientSecrets, request.params.id);
      request.log.info({ client_id: client.id }, 'client secret rotated');
      return { ...clientView(client), client_secret: secret };
    },
  );

  app.post(
    '/v1/admin/keys/rotate',
    {
      onRequest: app.requireScope('admin'),
      config: { audit: 'keys.rotate' },
      schema: {
        tags: ['admin'],
        summary: 'Start signing with a new key; the old one stays published until its tokens expire',
        security: [{ bearer: ['admin'] }],
        response: { 200: Type.Object({ kid: Type.String() }), ...problems(401, 403) },
      },
    },
    async (request) => {
      const kid = await keys.rotate();
      await announce(app.database, { type: 'keys_rotated' });
      request.log.info({ kid }, 'signing key rotated');
      return { kid };
    },
  );
}

/**
 * The OAuth 2.0 authorization server: token (RFC 6749 §4.4, RFC 7523), revocation (RFC 7009),
 * metadata (RFC 8414), the JWK Set; and the admin routes for clients and keys.
 */
export async function identityRoutes(parent: FastifyInstance, options: IdentityRouteOptions) {
  const app = parent.withTypeProvider<TypeBoxTypeProvider>();
  await app.register(formbody, { bodyLimit: 16_384 });
  app.addSchema(ClientView);

  // Issuance is limited per client (the id it claims; authentication comes after the count).
  await app.register(rateLimit, {
    global: false,
    hook: 'preHandler',
    max: options.tokenRateLimitPerMinute,
    timeWindow: 60_000,
    keyGenerator: (request) => {
      const body = (request.body ?? {}) as Record<string, string | undefined>;
      const encoded = credentialsIn(request.headers.authorization, 'Basic');
      const basic = encoded === undefined ? undefined : Buffer.from(encoded, 'base64').toString('utf8').split(':')[0];
      let assertionSubject: string | undefined;
      try {
        assertionSubject = body.client_assertion ? decodeJwt(body.client_assertion).sub : undefined;
      } catch {
        assertionSubject = undefined;
      }
      return `token:${basic ?? body.client_id ?? assertionSubject ?? request.ip}`;
    },
    // Counted in Redis when there is one, so that every instance and worker shares the count.
    ...(app.redis ? { redis: app.redis, nameSpace: 'govdata-gateway:token-rate:' } : {}),
    skipOnError: true,
  });

  tokenRoute(app, options);
  revokeRoute(app, options);
  metadataRoutes(app, options);
  adminClientRoutes(app);
  adminActionRoutes(app, options);
}
