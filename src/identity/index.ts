import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { publicUrl, tokenIssuer, trustedIssuers, type Config } from '../config.js';
import { keyEncryptionKey } from './kek.js';
import { KeyStore } from './keys.js';
import { ClientDirectory } from './client-auth.js';
import { announce, RevocationState } from './revocation.js';
import { ClientSecrets } from './secrets.js';
import { identityRoutes } from './routes.js';
import { TokenService } from './tokens.js';

export { clientView, createClient, disableClient, listClients, rotateClientSecret, scopeWords } from './clients.js';
export { auditHashKey, clientSecretsFor, keyEncryptionKey } from './kek.js';
export { KeyDecryptionError, KeyStore } from './keys.js';
export { announce } from './revocation.js';
export { ClientSecrets } from './secrets.js';

export interface IdentityOptions {
  config: Config;
}

declare module 'fastify' {
  interface FastifyInstance {
    tokens: TokenService;
    /** The gateway's signing keys (tokens, audit checkpoints). */
    keys: KeyStore;
    /** Hashes and checks client secrets (HMAC under a key derived from KEY_ENCRYPTION_KEY). */
    clientSecrets: ClientSecrets;
    /** Clients as token requests read them, in memory; forget one after changing it. */
    clientDirectory: ClientDirectory;
  }
}

/**
 * Identity: the gateway's signing keys, its OAuth 2.0 token endpoint, and the verifier behind
 * every bearer token (its own and trusted issuers'), kept current across instances by NOTIFY.
 */
async function identity(app: FastifyInstance, { config }: IdentityOptions) {
  const base = publicUrl(config);
  const issuer = tokenIssuer(config);
  const kek = await keyEncryptionKey(config);
  const keys = new KeyStore(app.db, kek, config.TOKEN_SIGNING_ALG, config.TOKEN_TTL_SECONDS);
  await keys.start();
  app.decorate('keys', keys);
  const secrets = new ClientSecrets(kek);
  app.decorate('clientSecrets', secrets);

  let tokens: TokenService | undefined;
  const directory = new ClientDirectory(app.db);
  app.decorate('clientDirectory', directory);
  const revocation = new RevocationState(app.database, (event) => {
    if (event.type === 'keys_rotated') void keys.reload().catch((err) => app.log.error({ err }, 'reloading signing keys failed'));
    if (event.type === 'token_revoked') tokens?.evict((entry) => entry.jti === event.jti);
    if (event.type === 'client_disabled') {
      tokens?.evict((entry) => entry.caller.kind === 'agency' && entry.caller.clientId === event.client_id);
    }
    if (event.type === 'client_disabled' || event.type === 'client_changed') directory.forget(event.client_id);
  });
  await revocation.start();
  app.addHook('onClose', () => revocation.stop());

  tokens = new TokenService(keys, revocation, {
    issuer,
    audience: config.TOKEN_AUDIENCE,
    ttlSeconds: config.TOKEN_TTL_SECONDS,
    clockToleranceSeconds: config.CLOCK_TOLERANCE_SECONDS,
    trustedIssuers: trustedIssuers(config),
  });
  app.decorate('tokens', tokens);
  app.setTokenVerifier(tokens.verify);

  await app.register(identityRoutes, {
    tokens,
    keys,
    revocation,
    issuer,
    publicUrl: base,
    tokenRateLimitPerMinute: config.TOKEN_RATE_LIMIT_PER_MINUTE,
    clientAuth: {
      tokenEndpoint: `${base}/oauth/token`,
      issuer,
      clockToleranceSeconds: config.CLOCK_TOLERANCE_SECONDS,
      secrets,
      clients: directory,
      isDisabled: (id) => revocation.isDisabled(id),
      announceChange: (id) => announce(app.database, { type: 'client_changed', client_id: id }),
    },
  });
}

export default fp(identity, { name: 'identity', fastify: '5.x', dependencies: ['database', 'auth'] });
