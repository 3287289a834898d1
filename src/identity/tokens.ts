import { KeyObject, randomUUID, sign as signBytes } from 'node:crypto';
import {
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors as joseErrors,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import { LRUCache } from 'lru-cache';
import type { TrustedIssuer } from '../config.js';
import type { Caller, TokenVerifier } from '../plugins/auth.js';
import { TokenProblem } from '../plugins/auth.js';
import { scopeWords, type Client } from './clients.js';
import type { KeyStore } from './keys.js';
import type { RevocationState } from './revocation.js';

export interface TokenSettings {
  issuer: string;
  audience: string;
  ttlSeconds: number;
  clockToleranceSeconds: number;
  trustedIssuers: TrustedIssuer[];
  /** Bound on the verified-token cache. */
  cacheSize?: number;
}

export interface IssuedToken {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  scope: string;
}

/** Claims every gateway access token carries (RFC 9068 §2.2 plus ours). */
const REQUIRED_CLAIMS = ['iss', 'aud', 'sub', 'exp', 'iat', 'jti', 'client_id', 'agency', 'scope'];
/** Never `none`, never an HMAC algorithm: our keys are asymmetric (RFC 8725 §3.1). */
const OWN_ALGORITHMS = ['EdDSA', 'ES256'];
const KEY_RELOAD_COOLDOWN_MS = 10_000;

interface CachedCaller {
  caller: Caller;
  jti?: string;
  expMs: number;
}

/** Why a token failed, as the problem code a client sees. */
function problemFor(error: unknown): TokenProblem {
  if (error instanceof TokenProblem) return error;
  if (error instanceof joseErrors.JWTExpired) return new TokenProblem('token_expired', 'The token has expired.');
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    if (error.claim === 'nbf' || error.claim === 'iat') {
      return new TokenProblem('token_invalid', 'The token is not valid yet.');
    }
    return new TokenProblem('token_invalid', `The token's ${error.claim} claim is not accepted.`);
  }
  if (error instanceof joseErrors.JOSEAlgNotAllowed) {
    return new TokenProblem('token_invalid', 'The token is signed with an algorithm this gateway does not accept.');
  }
  if (error instanceof joseErrors.JWKSNoMatchingKey) return new TokenProblem('token_invalid', 'The token names an unknown key.');
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) {
    return new TokenProblem('token_invalid', 'The token signature does not verify.');
  }
  return new TokenProblem('token_invalid', 'The token is not a valid access token.');
}

const base64url = (text: string) => Buffer.from(text).toString('base64url');

function scopesOf(value: unknown): string[] {
  const words = Array.isArray(value) ? value.map(String) : typeof value === 'string' ? value.split(' ') : [];
  return words.filter(Boolean);
}

/**
 * Issues the gateway's access tokens and verifies every bearer token that reaches it: its own
 * (EdDSA/ES256, `typ: at+jwt`) and those of configured trusted issuers. A verified token is
 * cached until it expires, so the signature is checked once per token, not once per request;
 * revocation and disabled clients are checked on every use, cached or not.
 */
export class TokenService {
  /** The current signing key as node:crypto signs with it, and its encoded JWS header. */
  private signer: { kid: string; alg: string; key: KeyObject; header: string } | undefined;
  private readonly cache: LRUCache<string, CachedCaller>;
  private readonly external = new Map<string, { entry: TrustedIssuer; keys: JWTVerifyGetKey }>();
  private lastKeyReload = 0;

  constructor(
    private readonly keys: KeyStore,
    private readonly revocation: RevocationState,
    private readonly settings: TokenSettings,
  ) {
    this.cache = new LRUCache({ max: settings.cacheSize ?? 10_000 });
    for (const entry of settings.trustedIssuers) {
      const keys = createRemoteJWKSet(new URL(entry.jwks_uri), {
        // jose refetches on an unknown kid, at most once per cool-down.
        cooldownDuration: 30_000,
        cacheMaxAge: 10 * 60_000,
        timeoutDuration: 5_000,
      });
      this.external.set(entry.issuer, { entry, keys });
    }
  }

  /**
   * Sign an RFC 9068 access token. jose signs through WebCrypto, whose every signature is a job on
   * the libuv thread pool; the compact JWS here is the same bytes, signed synchronously by
   * node:crypto with the key object made once per signing key (tens of microseconds for Ed25519).
   * Verification stays with jose.
   */
  async issue(client: Client, scopes: string[]): Promise<IssuedToken> {
    const signing = this.keys.signingKey();
    let prepared = this.signer;
    if (prepared?.kid !== signing.kid) {
      prepared = {
        kid: signing.kid,
        key: KeyObject.from(signing.privateKey),
        alg: signing.alg,
        header: base64url(JSON.stringify({ alg: signing.alg, kid: signing.kid, typ: 'at+jwt' })),
      };
      this.signer = prepared;
    }
    const scope = scopes.join(' ');
    const iat = Math.floor(Date.now() / 1000);
    const claims = {
      client_id: client.id,
      agency: client.agency,
      scope,
      iss: this.settings.issuer,
      aud: this.settings.audience,
      sub: client.id,
      iat,
      exp: iat + this.settings.ttlSeconds,
      jti: randomUUID(),
    };
    const input = `${prepared.header}.${base64url(JSON.stringify(claims))}`;
    const signature =
      prepared.alg === 'EdDSA'
        ? signBytes(null, Buffer.from(input), prepared.key)
        : signBytes('sha256', Buffer.from(input), { key: prepared.key, dsaEncoding: 'ieee-p1363' });
    return { access_token: `${input}.${signature.toString('base64url')}`, token_type: 'Bearer', expires_in: this.settings.ttlSeconds, scope };
  }

  /** The verifier the auth plugin calls for every bearer token. */
  readonly verify: TokenVerifier = async (token) => {
    const cached = this.cache.get(token);
    if (cached && cached.expMs > Date.now()) {
      this.checkStillValid(cached);
      return cached.caller;
    }
    let verified: CachedCaller;
    try {
      verified = await this.verifyUncached(token);
    } catch (error) {
      throw problemFor(error);
    }
    this.checkStillValid(verified);
    this.cache.set(token, verified, { ttl: Math.max(1, verified.expMs - Date.now()) });
    return verified.caller;
  };

  /** Forget cached tokens of a revoked token or disabled client (they are refused anyway). */
  evict(predicate: (entry: CachedCaller) => boolean): void {
    for (const [token, entry] of this.cache.entries()) if (predicate(entry)) this.cache.delete(token);
  }

  private checkStillValid(entry: CachedCaller) {
    if (this.revocation.isRevoked(entry.jti)) throw new TokenProblem('token_revoked', 'The token has been revoked.');
    if (entry.caller.kind === 'agency' && this.revocation.isDisabled(entry.caller.clientId)) {
      throw new TokenProblem('token_revoked', 'The client this token was issued to is disabled.');
    }
  }

  private async verifyUncached(token: string): Promise<CachedCaller> {
    decodeProtectedHeader(token);
    const unverified = decodeJwt(token);
    const trusted = typeof unverified.iss === 'string' ? this.external.get(unverified.iss) : undefined;
    if (trusted) return this.verifyExternal(token, trusted.entry, trusted.keys);
    return this.verifyOwn(token);
  }

  /** Verify one of our own tokens: signature, typ, iss, aud, times, and every required claim. */
  async verifyOwnToken(token: string, options: { ignoreExpiry?: boolean } = {}): Promise<JWTPayload> {
    const header = decodeProtectedHeader(token);
    const key = await this.ownKey(header.kid);
    const { payload } = await jwtVerify(token, key, {
      algorithms: OWN_ALGORITHMS,
      typ: 'at+jwt',
      issuer: this.settings.issuer,
      audience: this.settings.audience,
      clockTolerance: options.ignoreExpiry ? Number.MAX_SAFE_INTEGER : this.settings.clockToleranceSeconds,
      requiredClaims: REQUIRED_CLAIMS,
    });
    return payload;
  }

  private async ownKey(kid: string | undefined) {
    if (!kid) throw new TokenProblem('token_invalid', 'The token names no key (kid).');
    let key = this.keys.publicKey(kid);
    // A key made by another instance since we last looked: reload, but not on every bad token.
    if (!key && Date.now() - this.lastKeyReload > KEY_RELOAD_COOLDOWN_MS) {
      this.lastKeyReload = Date.now();
      await this.keys.reload();
      key = this.keys.publicKey(kid);
    }
    if (!key) throw new TokenProblem('token_invalid', 'The token names an unknown key.');
    return key.key;
  }

  private async verifyOwn(token: string): Promise<CachedCaller> {
    const payload = await this.verifyOwnToken(token);
    const scopes = scopesOf(payload.scope);
    return {
      caller: {
        kind: 'agency',
        clientId: String(payload.client_id),
        agency: String(payload.agency),
        scopes: new Set(scopes),
        ...(payload.jti ? { tokenId: payload.jti } : {}),
      },
      ...(payload.jti ? { jti: payload.jti } : {}),
      expMs: (payload.exp as number) * 1000,
    };
  }

  /** A token of a trusted OpenID provider, checked against that issuer's own rules. */
  private async verifyExternal(token: string, entry: TrustedIssuer, keys: JWTVerifyGetKey): Promise<CachedCaller> {
    const { payload, protectedHeader } = await jwtVerify(token, keys, {
      algorithms: entry.algorithms,
      issuer: entry.issuer,
      audience: entry.audience,
      clockTolerance: this.settings.clockToleranceSeconds,
      requiredClaims: ['exp'],
    });
    const typ = (protectedHeader.typ ?? '').toLowerCase().replace(/^application\//, '');
    const allowed = (entry.typ ?? ['at+jwt']).map((value) => value.toLowerCase());
    if (!allowed.includes(typ)) throw new TokenProblem('token_invalid', `The token's typ is not accepted from ${entry.issuer}.`);
    const expMs = (payload.exp as number) * 1000;
    const jti = typeof payload.jti === 'string' ? `${entry.issuer}#${payload.jti}` : undefined;
    if (entry.kind === 'citizen') {
      const person = payload[entry.person_claim as string];
      if (typeof person !== 'string' || !person) throw new TokenProblem('token_invalid', 'The token names no person.');
      return { caller: { kind: 'citizen', person, issuer: entry.issuer }, expMs, ...(jti ? { jti } : {}) };
    }
    const agency = payload[entry.agency_claim as string];
    if (typeof agency !== 'string' || !agency) throw new TokenProblem('token_invalid', 'The token names no agency.');
    // An outside issuer may grant the data scopes, never `admin`: that stays with gateway clients.
    const scopes = scopesOf(payload[entry.scope_claim ?? 'scope']).filter(
      (scope) => scope !== 'admin' && (scopeWords as readonly string[]).includes(scope),
    );
    const subject = String(payload.azp ?? payload.client_id ?? payload.sub ?? 'unknown');
    return {
      caller: { kind: 'agency', clientId: `${entry.issuer}#${subject}`, agency, scopes: new Set(scopes) },
      expMs,
      ...(jti ? { jti } : {}),
    };
  }
}
