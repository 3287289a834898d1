import { randomUUID } from 'node:crypto';
import * as client from 'openid-client';
import type { SignInIssuer } from '../config.js';
import { scopeWords } from '../identity/index.js';
import { defineProblem } from '../errors.js';

export const IssuerUnknown = defineProblem<[string]>('issuer_unknown', 'No sign-in issuer is named %s.', 404);
export const IdpUnavailable = defineProblem<[string]>('idp_unavailable', 'The identity provider %s cannot be reached just now; try again shortly.', 503);
export const SignInFailed = defineProblem<[string]>('sign_in_failed', '%s', 400);
export const ClaimsMissing = defineProblem<[string]>('claims_missing', '%s', 403);

/** A person signed in through one of the SIGN_IN_ISSUERS, as the session keeps them. */
export interface Person {
  /** This session's id: new at every sign-in (a session planted before sign-in is never reused). */
  sid: string;
  /** The SIGN_IN_ISSUERS entry (its name) they signed in through. */
  issuer: string;
  kind: 'agency' | 'citizen';
  sub: string;
  name: string;
  /** An official's agency and the scopes their roles give (never `admin`). */
  agency?: string;
  scopes?: string[];
  /** A citizen: the person their records are about (person_claim). */
  person?: string;
  /** For RP-initiated logout (id_token_hint). */
  idToken?: string;
  signedInAt: number;
  seenAt: number;
}

/** A sign-in under way: what the callback checks the answer against (RFC 7636, OpenID Core §3.1.2.1). */
export interface PendingSignIn {
  issuer: string;
  state: string;
  nonce: string;
  verifier: string;
  returnTo?: string;
  startedAt: number;
}

function words(value: unknown): string[] {
  if (Array.isArray(value)) return value.map(String);
  return typeof value === 'string' ? value.split(' ').filter(Boolean) : [];
}

/**
 * The person an ID token's claims name, mapped as TRUSTED_ISSUERS maps a token's: an official's
 * agency from `agency_claim` and roles from `scope_claim` (the gateway's scope words, never
 * `admin`); a citizen from `person_claim`. A claim missing is a refusal, never a guess.
 */
export function personOf(entry: SignInIssuer, claims: Record<string, unknown>, idToken: string | undefined, now: number): Person {
  const sub = typeof claims.sub === 'string' ? claims.sub : '';
  if (!sub) throw new ClaimsMissing('The identity provider named nobody (no sub).');
  const name = typeof claims.name === 'string' && claims.name ? claims.name : sub;
  const base = { sid: randomUUID(), issuer: entry.name, kind: entry.kind, sub, name, signedInAt: now, seenAt: now, ...(idToken ? { idToken } : {}) };
  if (entry.kind === 'citizen') {
    const person = claims[entry.person_claim as string];
    if (typeof person !== 'string' || !person) throw new ClaimsMissing(`The identity provider did not say who you are (${entry.person_claim}).`);
    return { ...base, person };
  }
  const agency = claims[entry.agency_claim as string];
  if (typeof agency !== 'string' || !agency) throw new ClaimsMissing(`The identity provider did not name your agency (${entry.agency_claim}).`);
  const scopes = words(claims[entry.scope_claim ?? 'roles']).filter((word) => word !== 'admin' && (scopeWords as readonly string[]).includes(word));
  return { ...base, agency, scopes: [...new Set(scopes)] };
}

/**
 * The OpenID providers people sign in with, each discovered once (and again after a failure),
 * through openid-client: authorization code with PKCE (S256), state and nonce.
 */
export class SignInIssuers {
  private readonly configs = new Map<string, Promise<client.Configuration>>();
  private readonly byName: Map<string, SignInIssuer>;

  constructor(
    readonly entries: SignInIssuer[],
    private readonly redirectUri: string,
    private readonly postLogoutUri: string,
  ) {
    this.byName = new Map(entries.map((entry) => [entry.name, entry]));
  }

  entry(name: string): SignInIssuer {
    const entry = this.byName.get(name);
    if (!entry) throw new IssuerUnknown(name);
    return entry;
  }

  private async config(entry: SignInIssuer): Promise<client.Configuration> {
    let config = this.configs.get(entry.name);
    if (!config) {
      const url = new URL(entry.issuer);
      config = client.discovery(url, entry.client_id, undefined, client.ClientSecretBasic(entry.client_secret), {
        ...(url.protocol === 'http:' ? { execute: [client.allowInsecureRequests] } : {}),
        timeout: 10,
      });
      this.configs.set(entry.name, config);
      config.catch(() => this.configs.delete(entry.name));
    }
    try {
      return await config;
    } catch {
      throw new IdpUnavailable(entry.label ?? entry.name);
    }
  }

  /** Where to send the browser, and what to keep for the callback. */
  async start(name: string, returnTo: string | undefined, now: number): Promise<{ url: string; pending: PendingSignIn }> {
    const entry = this.entry(name);
    const config = await this.config(entry);
    const verifier = client.randomPKCECodeVerifier();
    const pending: PendingSignIn = { issuer: entry.name, state: client.randomState(), nonce: client.randomNonce(), verifier, startedAt: now, ...(returnTo ? { returnTo } : {}) };
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: this.redirectUri,
      scope: entry.scope ?? 'openid profile',
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state: pending.state,
      nonce: pending.nonce,
    });
    return { url: url.href, pending };
  }

  /** The callback: the code exchanged (state, nonce, PKCE and the ID token checked), the person mapped. */
  async finish(pending: PendingSignIn, callbackUrl: URL, now: number): Promise<Person> {
    const entry = this.entry(pending.issuer);
    const config = await this.config(entry);
    let tokens: Awaited<ReturnType<typeof client.authorizationCodeGrant>>;
    try {
      tokens = await client.authorizationCodeGrant(config, callbackUrl, {
        pkceCodeVerifier: pending.verifier,
        expectedState: pending.state,
        expectedNonce: pending.nonce,
        idTokenExpected: true,
      });
    } catch (error) {
      const reason = error instanceof client.AuthorizationResponseError ? error.error : (error as { code?: string }).code ?? 'exchange_failed';
      throw new SignInFailed(`The sign-in was not completed (${reason}).`);
    }
    const claims = tokens.claims() as Record<string, unknown> | undefined;
    return personOf(entry, claims ?? {}, tokens.id_token, now);
  }

  /** RP-initiated logout: the provider's end-session URL, or undefined when it has none. */
  async endSessionUrl(person: Person): Promise<string | undefined> {
    const entry = this.byName.get(person.issuer);
    if (!entry) return undefined;
    const config = await this.config(entry).catch(() => undefined);
    if (!config?.serverMetadata().end_session_endpoint) return undefined;
    return client.buildEndSessionUrl(config, {
      post_logout_redirect_uri: this.postLogoutUri,
      client_id: entry.client_id,
      ...(person.idToken ? { id_token_hint: person.idToken } : {}),
    }).href;
  }

  /** Origins a form may lead to (CSP form-action): sign-out redirects to the provider. */
  origins(): string[] {
    return [...new Set(this.entries.map((entry) => new URL(entry.issuer).origin))];
  }
}
