import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Config } from '../config.js';
import { ConfigError } from '../config.js';
import { isPostgresUrl } from '../db/index.js';
import { ClientSecrets } from './secrets.js';

/**
 * A 32-byte secret from the environment. Production (PostgreSQL) must name it; an embedded PGlite
 * directory gets one made beside it (`<dir><suffix>`, mode 0600) on first start, like the data
 * itself; an in-memory database gets a throw-away one.
 */
async function environmentSecret(config: Config, variable: 'KEY_ENCRYPTION_KEY' | 'AUDIT_HASH_KEY', suffix: string) {
  const configured = config[variable];
  if (configured) return Buffer.from(configured, 'base64url');
  if (isPostgresUrl(config.DATABASE_URL)) {
    throw new ConfigError(`${variable}: is required with PostgreSQL (32 random bytes, base64url)`);
  }
  if (config.DATABASE_URL.startsWith('memory://')) return randomBytes(32);
  const file = `${resolve(config.DATABASE_URL)}${suffix}`;
  try {
    return Buffer.from((await readFile(file, 'utf8')).trim(), 'base64url');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    const secret = randomBytes(32);
    await writeFile(file, `${secret.toString('base64url')}\n`, { mode: 0o600, flag: 'wx' });
    return secret;
  }
}

/** The key that encrypts the signing keys at rest (KEY_ENCRYPTION_KEY). */
export function keyEncryptionKey(config: Config): Promise<Buffer> {
  return environmentSecret(config, 'KEY_ENCRYPTION_KEY', '.kek');
}

/**
 * Client secrets as this installation hashes them (under its KEY_ENCRYPTION_KEY): what the CLI
 * uses, so that a secret it makes is one the gateway takes.
 */
export async function clientSecretsFor(config: Config): Promise<ClientSecrets> {
  return new ClientSecrets(await keyEncryptionKey(config));
}

/** The key of the audit trail's keyed hashes of persons (AUDIT_HASH_KEY). */
export function auditHashKey(config: Config): Promise<Buffer> {
  return environmentSecret(config, 'AUDIT_HASH_KEY', '.audit-key');
}
