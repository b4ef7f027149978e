import * as crypto from 'node:crypto';
import { promisify } from 'node:util';

const scrypt = promisify(crypto.scrypt) as (pw: crypto.BinaryLike, salt: crypto.BinaryLike, len: number, opts: crypto.ScryptOptions) => Promise<Buffer>;

/**
 * newEnrollmentSecret returns a one-time secret: 20 random bytes (160 bits) in base64url, which has no
 * ':' so it is safe as an HTTP Basic password.
 */
export function newEnrollmentSecret(): string {
  return crypto.randomBytes(20).toString('base64url');
}

/** hashSecret stores only a slow hash: scrypt with N = 2^cost, r = 8, p = 1, 16-byte salt. */
export async function hashSecret(secret: string, cost: number): Promise<string> {
  const salt = crypto.randomBytes(16);
  const h = await scrypt(secret, salt, 32, { N: 2 ** cost, r: 8, p: 1, maxmem: 256 * 2 ** cost * 8 + 1024 * 1024 });
  return `scrypt$${cost}$8$1$${salt.toString('base64')}$${h.toString('base64')}`;
}

/** verifySecret checks a candidate against a stored hash in constant time; a malformed hash never matches. */
export async function verifySecret(candidate: string, stored: string): Promise<boolean> {
  const p = stored.split('$');
  if (p.length !== 6 || p[0] !== 'scrypt') return false;
  const [cost, r, par] = [Number(p[1]), Number(p[2]), Number(p[3])];
  const salt = Buffer.from(p[4], 'base64');
  const want = Buffer.from(p[5], 'base64');
  if (candidate.length > 256) return false;
  const got = await scrypt(candidate, salt, want.length, { N: 2 ** cost, r, p: par, maxmem: 256 * 2 ** cost * r + 1024 * 1024 });
  return crypto.timingSafeEqual(got, want);
}
