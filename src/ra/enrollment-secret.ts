import * as crypto from 'node:crypto';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { Config } from '../config/schema';
import { enrollmentSecretKey } from '../keys/enrollment-secret-key';

const scrypt = promisify(crypto.scrypt) as (pw: crypto.BinaryLike, salt: crypto.BinaryLike, len: number, opts: crypto.ScryptOptions) => Promise<Buffer>;

/** SecretKey yields the server key one-time secrets are stored under; called only when a secret is hashed or checked. */
export type SecretKey = () => Buffer;

/** serverSecretKey is the data directory's key (keys/enrollment-secret.key, created on first use). */
export function serverSecretKey(cfg: Config): SecretKey {
  const dir = path.join(cfg.dataDir, 'keys');
  return () => enrollmentSecretKey(dir);
}

/** MAX_SECRET_LENGTH: longer candidates are refused before any hashing (a generated secret has 27 characters). */
const MAX_SECRET_LENGTH = 256;

/**
 * newEnrollmentSecret returns a one-time secret: 20 random bytes (160 bits) in base64url, which has no
 * ':' so it is safe as an HTTP Basic password.
 */
export function newEnrollmentSecret(): string {
  return crypto.randomBytes(20).toString('base64url');
}

/**
 * hashSecret stores a secret the server generated (newEnrollmentSecret) as HMAC-SHA-256 under the server
 * key: `hmac-sha256$<key id>$<mac>`. A slow password hash protects low-entropy secrets against offline
 * guessing; a 160-bit random secret cannot be guessed either way, so scrypt would add only its 8-12 ms of
 * CPU per enrollment. The key (kept with the CA keys, not in the store) means a copy of the store alone
 * does not even allow checking a guess. The key id (first 8 hex digits of SHA-256 of the key) tells a
 * hash made under another key apart from a wrong secret.
 */
export function hashSecret(secret: string, key: Buffer): string {
  return `hmac-sha256$${keyId(key)}$${mac(secret, key).toString('base64url')}`;
}

/**
 * hashChosenSecret stores a secret a PERSON chose (low entropy is possible) with a slow hash: scrypt with
 * N = 2^cost, r = 8, p = 1, 16-byte salt (enrollment.secretHashCost). It is also the format every secret was
 * stored in before HMAC, which verifySecret still accepts.
 */
export async function hashChosenSecret(secret: string, cost: number): Promise<string> {
  const salt = crypto.randomBytes(16);
  const h = await scrypt(secret, salt, 32, { N: 2 ** cost, r: 8, p: 1, maxmem: 256 * 2 ** cost * 8 + 1024 * 1024 });
  return `scrypt$${cost}$8$1$${salt.toString('base64')}$${h.toString('base64')}`;
}

/**
 * verifySecret checks a candidate against a stored hash, by the hash's format: `hmac-sha256$...` under the
 * server key, `scrypt$...` (hashChosenSecret, and every hash stored before HMAC) with the parameters stored
 * in it. Both compare with crypto.timingSafeEqual. A malformed hash, or one made under another key, never
 * matches.
 */
export async function verifySecret(candidate: string, stored: string, key: SecretKey): Promise<boolean> {
  if (candidate.length > MAX_SECRET_LENGTH) return false;
  const p = stored.split('$');
  if (p[0] === 'hmac-sha256' && p.length === 3) {
    const k = key();
    const want = Buffer.from(p[2], 'base64url');
    const got = mac(candidate, k);
    // the key id is public (it is in every hash); comparing it first is not a timing leak about the secret
    return p[1] === keyId(k) && want.length === got.length && crypto.timingSafeEqual(got, want);
  }
  if (p[0] !== 'scrypt' || p.length !== 6) return false;
  const [cost, r, par] = [Number(p[1]), Number(p[2]), Number(p[3])];
  const salt = Buffer.from(p[4], 'base64');
  const want = Buffer.from(p[5], 'base64');
  const got = await scrypt(candidate, salt, want.length, { N: 2 ** cost, r, p: par, maxmem: 256 * 2 ** cost * r + 1024 * 1024 });
  return crypto.timingSafeEqual(got, want);
}

const mac = (secret: string, key: Buffer): Buffer => crypto.createHmac('sha256', key).update(secret, 'utf8').digest();
const keyId = (key: Buffer): string => crypto.createHash('sha256').update(key).digest('hex').slice(0, 8);
