import { and, eq } from 'drizzle-orm';
import type { FastifyRequest } from 'fastify';
import { createLocalJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet } from 'jose';
import type { Db } from '../db/index.js';
import { clients, usedClientAssertions } from '../db/schema.js';
import { LRUCache } from 'lru-cache';
import { findClient, type Client } from './clients.js';
import type { ClientSecrets } from './secrets.js';
import { credentialsIn } from '../plugins/authorization.js';

/**
 * RFC 6749 §5.2 errors, sent as problem+json that also carries `error` and `error_description`.
 * A 401 challenges Basic, the scheme these endpoints take in the Authorization header: RFC 9110
 * §15.5.2 wants a challenge on every 401, whichever way the client tried to authenticate.
 */
export class OAuthError extends Error {
  readonly headers: Record<string, string> = {};
  readonly extensions: Record<string, unknown>;
  constructor(
    readonly code: string,
    message: string,
    readonly statusCode = 400,
  ) {
    super(message);
    this.extensions = { error: code, error_description: message };
    if (statusCode === 401) this.headers['www-authenticate'] = 'Basic realm="govdata-gateway", charset="UTF-8"';
  }
}

export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
/** RFC 7523 §3: the assertion must expire soon; we take at most five minutes. */
const MAX_ASSERTION_LIFETIME_S = 300;
const ASSERTION_ALGORITHMS = ['EdDSA', 'ES256', 'ES384', 'PS256', 'RS256'];

export interface ClientCredentialsForm {
  client_id?: string;
  client_secret?: string;
  client_assertion_type?: string;
  client_assertion?: string;
}

export interface ClientAuthSettings {
  tokenEndpoint: string;
  issuer: string;
  clockToleranceSeconds: number;
  secrets: ClientSecrets;
  clients: ClientDirectory;
  /** Disabled anywhere (RevocationState): refused even while a copy of the client says active. */
  isDisabled: (clientId: string) => boolean;
  /** Tell every instance that a client changed (its stored hash was upgraded). */
  announceChange: (clientId: string) => Promise<void>;
}

/**
 * Clients as token requests read them: kept in memory (at most `ttlMs`, as a safety net), so that
 * issuing a token does not wait on the database. A disable is checked against the revocation
 * state on every request; a new secret or hash is announced (client_changed) and forgets the copy
 * on every instance. Unknown ids are not kept, so that a client made a moment ago is found.
 */
export class ClientDirectory {
  private readonly cache: LRUCache<string, Client>;

  constructor(
    private readonly db: Db,
    ttlMs = 30_000,
  ) {
    this.cache = new LRUCache<string, Client>({ max: 10_000, ttl: ttlMs });
  }

  async find(id: string): Promise<Client | undefined> {
    const held = this.cache.get(id);
    if (held) return held;
    const client = await findClient(this.db, id);
    if (client) this.cache.set(id, client);
    return client;
  }

  forget(id: string): void {
    this.cache.delete(id);
  }
}


function basicCredentials(request: FastifyRequest): { id: string; secret: string } | undefined {
  const encoded = credentialsIn(request.headers.authorization, 'Basic');
  if (encoded === undefined) return undefined;
  const decoded = Buffer.from(encoded, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) throw new OAuthError('invalid_client', 'The Basic credentials are malformed.', 401);
  // RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
  const unescape = (value: string) => decodeURIComponent(value.replace(/\+/g, ' '));
  try {
    return { id: unescape(decoded.slice(0, colon)), secret: unescape(decoded.slice(colon + 1)) };
  } catch {
    // decodeURIComponent throws on a stray `%` or escapes that are not UTF-8.
    throw new OAuthError('invalid_client', 'The Basic credentials are malformed.', 401);
  }
}

/** Unknown, disabled, and wrong-credential clients all get the same answer. */
function failed(): OAuthError {
  return new OAuthError('invalid_client', 'Client authentication failed.', 401);
}

/**
 * Authenticate the client of a token or revocation request by exactly one method (RFC 6749
 * §2.3): client_secret_basic, client_secret_post or private_key_jwt (RFC 7523).
 */
export async function authenticateClient(
  db: Db,
  request: FastifyRequest,
  form: ClientCredentialsForm,
  settings: ClientAuthSettings,
): Promise<Client> {
  const basic = basicCredentials(request);
  const methods = [basic, form.client_secret, form.client_assertion].filter((m) => m !== undefined);
  if (methods.length > 1) throw new OAuthError('invalid_request', 'Use exactly one client authentication method.');
  if (methods.length === 0) throw new OAuthError('invalid_client', 'The client did not authenticate.', 401);

  if (form.client_assertion !== undefined) return authenticateAssertion(db, form, settings);

  const id = basic?.id ?? form.client_id;
  const secret = basic?.secret ?? (form.client_secret as string);
  const client = id ? await settings.clients.find(id) : undefined;
  const usable = client?.status === 'active' && !settings.isDisabled(client.id) && client.authMethod === 'client_secret' && client.secretHash;
  const stored = usable ? (client.secretHash as string) : settings.secrets.decoy;
  const { matches, upgrade } = await settings.secrets.verify(secret, stored);
  if (!usable || !matches) throw failed();
  // A hash of an older scheme is replaced on its first successful use (unless rotated meanwhile).
  if (upgrade) {
    await db.update(clients).set({ secretHash: upgrade }).where(and(eq(clients.id, client.id), eq(clients.secretHash, stored)));
    settings.clients.forget(client.id);
    await settings.announceChange(client.id);
  }
  return client;
}

async function authenticateAssertion(db: Db, form: ClientCredentialsForm, settings: ClientAuthSettings): Promise<Client> {
  if (form.client_assertion_type !== CLIENT_ASSERTION_TYPE) {
    throw new OAuthError('invalid_request', `client_assertion_type must be ${CLIENT_ASSERTION_TYPE}.`);
  }
  const assertion = form.client_assertion as string;
  let claimed: string | undefined;
  try {
    claimed = decodeJwt(assertion).sub;
  } catch {
    throw failed();
  }
  if (!claimed || (form.client_id !== undefined && form.client_id !== claimed)) throw failed();
  const client = await settings.clients.find(claimed);
  if (client?.status !== 'active' || settings.isDisabled(client.id) || client.authMethod !== 'private_key_jwt' || !client.jwks) throw failed();

  let payload;
  try {
    ({ payload } = await jwtVerify(assertion, createLocalJWKSet(client.jwks as JSONWebKeySet), {
      algorithms: ASSERTION_ALGORITHMS,
      issuer: client.id,
      subject: client.id,
      // RFC 7523 §3: the audience is the token endpoint; the issuer identifier is accepted too.
      audience: [settings.tokenEndpoint, settings.issuer],
      clockTolerance: settings.clockToleranceSeconds,
      requiredClaims: ['exp', 'jti'],
    }));
  } catch {
    throw failed();
  }
  const exp = payload.exp as number;
  if (exp - Date.now() / 1000 > MAX_ASSERTION_LIFETIME_S + settings.clockToleranceSeconds) {
    throw new OAuthError('invalid_client', `The client assertion must expire within ${MAX_ASSERTION_LIFETIME_S} s.`, 401);
  }
  // RFC 7523 §3: a jti is used once. The primary key makes the check race-free across instances.
  const inserted = await db
    .insert(usedClientAssertions)
    .values({ clientId: client.id, jti: String(payload.jti), expiresAt: new Date(exp * 1000) })
    .onConflictDoNothing()
    .returning({ jti: usedClientAssertions.jti });
  if (inserted.length === 0) throw new OAuthError('invalid_client', 'This client assertion has been used before.', 401);
  return client;
}
