import { randomUUID } from 'node:crypto';
import { desc, isNull, sql } from 'drizzle-orm';
import { exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';
import type { Db } from '../db/index.js';
import { signingKeys } from '../db/schema.js';
import { decryptWithKek, encryptWithKek } from './secrets.js';

export type SigningAlg = 'EdDSA' | 'ES256';

export interface SigningKey {
  kid: string;
  alg: SigningAlg;
  privateKey: CryptoKey;
}

export interface PublicKey {
  kid: string;
  alg: string;
  jwk: JWK;
  key: CryptoKey;
}

export class KeyDecryptionError extends Error {
  override name = 'KeyDecryptionError';
}

/**
 * The gateway's signing keys, imported once and held in memory: the newest active key signs,
 * and every key still published verifies. Keys live in the database with their private half
 * encrypted; `reload()` picks up a rotation made by another instance or the CLI.
 */
export class KeyStore {
  private signing: SigningKey | undefined;
  private verifying = new Map<string, PublicKey>();
  private published: JWK[] = [];

  constructor(
    private readonly db: Db,
    private readonly kek: Buffer,
    private readonly alg: SigningAlg,
    /** Longest lifetime of a token: how long a retired key stays published. */
    private readonly tokenTtlSeconds: number,
  ) {}

  /** Load the keys, making the first one when the database has none; true when it made one. */
  async start(): Promise<boolean> {
    const [active] = await this.db.select().from(signingKeys).where(isNull(signingKeys.retiredAt)).limit(1);
    if (active) {
      await this.reload();
      return false;
    }
    await this.rotate();
    return true;
  }

  async reload(): Promise<void> {
    const rows = await this.db
      .select()
      .from(signingKeys)
      .where(sql`${signingKeys.publishUntil} is null or ${signingKeys.publishUntil} > now()`)
      .orderBy(desc(signingKeys.createdAt));
    const verifying = new Map<string, PublicKey>();
    for (const row of rows) {
      const jwk = row.publicJwk as JWK;
      verifying.set(row.kid, { kid: row.kid, alg: row.alg, jwk, key: (await importJWK(jwk, row.alg)) as CryptoKey });
    }
    const newest = rows.find((row) => !row.retiredAt);
    if (newest) {
      let privateJwk: JWK;
      try {
        privateJwk = JSON.parse(decryptWithKek(this.kek, newest.privateJwkEncrypted)) as JWK;
      } catch {
        throw new KeyDecryptionError('KEY_ENCRYPTION_KEY does not decrypt the signing keys in this database.');
      }
      this.signing = {
        kid: newest.kid,
        alg: newest.alg as SigningAlg,
        privateKey: (await importJWK(privateJwk, newest.alg)) as CryptoKey,
      };
    }
    this.verifying = verifying;
    this.published = rows.map((row) => row.publicJwk as JWK);
  }

  /**
   * Make a new signing key and retire the current one, which stays published until every token
   * it signed has expired. Returns the new key id.
   */
  async rotate(): Promise<string> {
    const { publicKey, privateKey } = await generateKeyPair(this.alg, { extractable: true });
    const kid = `${new Date().toISOString().slice(0, 10)}-${randomUUID().slice(0, 8)}`;
    const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: this.alg, use: 'sig' };
    const privateJwk = await exportJWK(privateKey);
    const now = new Date();
    await this.db.transaction(async (tx) => {
      await tx.execute(sql`select pg_advisory_xact_lock(hashtext('govdata-gateway:signing-keys'))`);
      await tx
        .update(signingKeys)
        .set({ retiredAt: now, publishUntil: new Date(now.getTime() + (this.tokenTtlSeconds + 300) * 1000) })
        .where(isNull(signingKeys.retiredAt));
      await tx.insert(signingKeys).values({
        kid,
        alg: this.alg,
        publicJwk,
        privateJwkEncrypted: encryptWithKek(this.kek, JSON.stringify(privateJwk)),
        createdAt: now,
      });
    });
    await this.reload();
    return kid;
  }

  signingKey(): SigningKey {
    if (!this.signing) throw new Error('no signing key loaded');
    return this.signing;
  }

  publicKey(kid: string): PublicKey | undefined {
    return this.verifying.get(kid);
  }

  /** The JWK Set published at /.well-known/jwks.json. */
  jwks(): { keys: JWK[] } {
    return { keys: this.published };
  }
}
