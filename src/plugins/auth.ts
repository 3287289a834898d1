import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from 'fastify';
import fp from 'fastify-plugin';
import { credentialsIn } from './authorization.js';

/** Who is calling, once their token has been verified. Anonymous callers have no Caller. */
export type Caller =
  | {
      kind: 'agency';
      /** The OAuth client (a system of an agency). */
      clientId: string;
      agency: string;
      scopes: ReadonlySet<string>;
      tokenId?: string;
    }
  | {
      kind: 'citizen';
      /** The person the token names (a trusted identity provider's `sub` or configured claim). */
      person: string;
      issuer: string;
    };

/** Verifies a bearer token and says who presented it; throws a TokenError when it does not verify. */
export type TokenVerifier = (token: string, request: FastifyRequest) => Promise<Caller>;

const bearerChallenge = (error?: string, description?: string) =>
  `Bearer realm="govdata-gateway"${error ? `, error="${error}"` : ''}${description ? `, error_description="${description}"` : ''}`;

declare module 'fastify' {
  interface FastifyContextConfig {
    /** false on routes that authenticate clients their own way (the OAuth endpoints). */
    bearer?: boolean;
  }
  interface FastifyRequest {
    /** The verified caller, or null for an anonymous request. */
    caller: Caller | null;
  }
  interface FastifyInstance {
    /** The identity domain installs the real verifier here; until then no token verifies. */
    setTokenVerifier(verifier: TokenVerifier): void;
    /**
     * Route onRequest hook: the caller must be an agency client holding `scope` (RFC 6750 §3.1
     * errors). It runs before the body is read or validated, so that nobody probes a route's
     * schema without the right to call it.
     */
    requireScope(scope: string | string[]): onRequestAsyncHookHandler;
  }
}

/** A token that does not verify: 401 with its code and an RFC 6750 challenge. */
export class TokenProblem extends Error {
  readonly statusCode = 401;
  readonly headers: Record<string, string>;
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.headers = { 'www-authenticate': bearerChallenge('invalid_token', message.replaceAll('"', "'")) };
  }
}

/**
 * The door for every route. A request without Authorization is anonymous (caller null); one with a
 * bearer token is verified, and a token that fails is refused with 401 even on routes that
 * anonymous callers may use: a bad token is never treated as no token (RFC 6750 §3.1).
 */
async function auth(app: FastifyInstance) {
  let verify: TokenVerifier = async () => {
    throw new TokenProblem('token_invalid', 'No token issuer is configured on this gateway.');
  };
  app.decorate('setTokenVerifier', (verifier: TokenVerifier) => {
    verify = verifier;
  });
  app.decorateRequest('caller', null);

  app.addHook('onRequest', async (request) => {
    const header = request.headers.authorization;
    if (header === undefined || request.routeOptions.config.bearer === false) return;
    const token = credentialsIn(header, 'Bearer');
    // RFC 6750 §2.1: b64token.
    if (token === undefined || !/^[A-Za-z0-9\-._~+/]+=*$/.test(token)) throw new TokenProblem('token_invalid', 'The Authorization header is not a Bearer token.');
    request.caller = await verify(token, request);
  });

  /** Any one of the scopes given is enough. */
  app.decorate('requireScope', (scope: string | string[]): onRequestAsyncHookHandler => {
    const anyOf = Array.isArray(scope) ? scope : [scope];
    const words = anyOf.join(' ');
    return async function requireScope(request: FastifyRequest, reply: FastifyReply) {
      const caller = request.caller;
      if (!caller) {
        reply.header('www-authenticate', bearerChallenge());
        return reply.problem(401, 'token_missing', `This route needs a bearer token with scope ${anyOf.join(' or ')}.`);
      }
      if (caller.kind !== 'agency' || !anyOf.some((word) => caller.scopes.has(word))) {
        reply.header('www-authenticate', `${bearerChallenge('insufficient_scope')}, scope="${words}"`);
        return reply.problem(403, 'insufficient_scope', `This route needs scope ${anyOf.join(' or ')}.`, { required_scope: words });
      }
    };
  });
}

export default fp(auth, { name: 'auth', fastify: '5.x', dependencies: ['errors'] });
