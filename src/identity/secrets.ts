import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';

const scryptAsync = promisify(scrypt) as (password: string, salt: Buffer, keylen: number, options: object) => Promise<Buffer>;

// The scrypt parameters (RFC 7914) secrets were hashed with before the HMAC form: N=2^15, r=8,
// p=1, ~32 MiB and tens of milliseconds per check.
const SCRYPT = { N: 32_768, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };
const KEY_LENGTH = 32;

/** A new client id: opaque, URL-safe, 128 bits of randomness. */
export function newClientId(): string {
  return `cl_${randomBytes(16).toString('base64url')}`;
}

/** A new client secret: shown once, stored only as a hash. */
export function newClientSecret(): string {
  return `gws_${randomBytes(32).toString('base64url')}`;
}

/** The stored form of a secret issued by this gateway: `hmac-sha256$<key version>$<mac>`. */
const HMAC_SCHEME = 'hmac-sha256';
const HMAC_KEY_VERSION = '1';

/**
 * Client secrets, hashed and checked. The gateway's secrets carry 256 random bits, so an approved
 * one-way function is enough (NIST SP 800-63B §5.1.2.2, OWASP ASVS 5.0 6.5.2): they are stored as
 * HMAC-SHA-256 under a key derived (HKDF) from KEY_ENCRYPTION_KEY, so that a stolen table alone
 * cannot be checked against guesses. Hashes from before (scrypt) still verify, and are replaced by
 * the HMAC form on their next successful use. Every comparison is constant-time.
 */
export class ClientSecrets {
  readonly #key: Buffer;
  /** A stored hash no presented secret matches: checked when the client does not exist, so that a wrong id costs what a wrong secret does. */
  readonly decoy: string;

  constructor(keyEncryptionKey: Buffer) {
    this.#key = Buffer.from(hkdfSync('sha256', keyEncryptionKey, Buffer.alloc(0), `govdata-gateway client secrets v${HMAC_KEY_VERSION}`, 32));
    this.decoy = this.hash(`decoy-${randomBytes(32).toString('base64url')}`);
  }

  hash(secret: string): string {
    return `${HMAC_SCHEME}$${HMAC_KEY_VERSION}$${this.#mac(secret).toString('base64url')}`;
  }

  /**
   * Whether `secret` is the one `stored` was made from; `upgrade` is the HMAC form to store
   * instead when `stored` is an older scheme. An unknown scheme never matches.
   */
  async verify(secret: string, stored: string): Promise<{ matches: boolean; upgrade?: string }> {
    const [scheme, version, mac] = stored.split('$');
    if (scheme === HMAC_SCHEME) {
      const expected = Buffer.from(mac ?? '', 'base64url');
      const actual = this.#mac(secret);
      return { matches: version === HMAC_KEY_VERSION && expected.length === actual.length && timingSafeEqual(actual, expected) };
    }
    if (scheme === 'scrypt' && (await verifyScrypt(secret, stored))) return { matches: true, upgrade: this.hash(secret) };
    return { matches: false };
  }

  #mac(secret: string): Buffer {
    return createHmac('sha256', this.#key).update(secret, 'utf8').digest();
  }
}

/** The scheme secrets were stored with before: `scrypt$N$r$p$salt$hash` (tests make old rows with it). */
export async function scryptHash(secret: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scryptAsync(secret, salt, KEY_LENGTH, SCRYPT);
  return ['scrypt', SCRYPT.N, SCRYPT.r, SCRYPT.p, salt.toString('base64url'), hash.toString('base64url')].join('$');
}

async function verifyScrypt(secret: string, stored: string): Promise<boolean> {
  const [, n, r, p, salt, hash] = stored.split('$');
  if (!salt || !hash) return false;
  const expected = Buffer.from(hash, 'base64url');
  const actual = await scryptAsync(secret, Buffer.from(salt, 'base64url'), expected.length, {
    N: Number(n),
    r: Number(r),
    p: Number(p),
    maxmem: SCRYPT.maxmem,
  });
  return timingSafeEqual(actual, expected);
}

/** AES-256-GCM with the key encryption key: `v1.iv.tag.ciphertext`, base64url parts. */
export function encryptWithKek(kek: Buffer, plaintext: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', kek, iv);
  const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return ['v1', iv, cipher.getAuthTag(), ciphertext].map((part) => (typeof part === 'string' ? part : part.toString('base64url'))).join('.');
}

export function decryptWithKek(kek: Buffer, sealed: string): string {
  const [version, iv, tag, ciphertext] = sealed.split('.');
  if (version !== 'v1' || !iv || !tag || ciphertext === undefined) throw new Error('unknown key envelope');
  const decipher = createDecipheriv('aes-256-gcm', kek, Buffer.from(iv, 'base64url'));
  decipher.setAuthTag(Buffer.from(tag, 'base64url'));
  return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]).toString('utf8');
}
