import * as crypto from 'node:crypto';
import { RsaDecryptor } from '../keys/pkcs11/key-capabilities';

/**
 * KeyTransportDecryptor recovers a content-encryption key that a sender wrapped with RSAES-PKCS1-v1_5 to
 * our certificate (RFC 5652 §6.2.1, RFC 8017 §7.2). It never fails on a bad blob: with implicit rejection
 * (the TLS countermeasure of RFC 5246 §7.4.7.1) it returns a random key of the expected length instead, so
 * a corrupted or forged key blob fails later, exactly like any other bad message, and the reply is no
 * padding oracle (Bleichenbacher; the Marvin attack, CVE-2023-46809).
 */
export interface KeyTransportDecryptor {
  unwrapKey(encryptedKey: Buffer, keyLength: number): Promise<Buffer>;
}

/**
 * softwareKeyTransport unwraps with a private key in memory. Node 20 refuses RSA_PKCS1_PADDING in
 * privateDecrypt (CVE-2023-46809) unless started with --security-revert, which we will not ship: the RSA
 * operation is done raw (RSA_NO_PADDING) and the padding checked here in constant time.
 */
export function softwareKeyTransport(key: crypto.KeyObject): KeyTransportDecryptor {
  const k = Math.ceil((key.asymmetricKeyDetails?.modulusLength ?? 0) / 8);
  return {
    async unwrapKey(encryptedKey: Buffer, keyLength: number): Promise<Buffer> {
      const fallback = crypto.randomBytes(keyLength);
      if (k === 0 || encryptedKey.length > k || encryptedKey.length === 0) return fallback;
      const c = encryptedKey.length === k ? encryptedKey : Buffer.concat([Buffer.alloc(k - encryptedKey.length), encryptedKey]);
      let em: Buffer;
      try {
        em = crypto.privateDecrypt({ key, padding: crypto.constants.RSA_NO_PADDING }, c);
      } catch {
        return fallback; // c >= n: not a ciphertext of this key
      }
      return unpadPkcs1v15(em, keyLength, fallback);
    },
  };
}

/**
 * tokenKeyTransport unwraps through a key backend that can decrypt (PKCS#11 CKM_RSA_PKCS); a padding
 * failure reported by the token becomes a random key too, so both backends fail alike.
 */
export function tokenKeyTransport(decryptor: RsaDecryptor, ref: string): KeyTransportDecryptor {
  return {
    async unwrapKey(encryptedKey: Buffer, keyLength: number): Promise<Buffer> {
      const fallback = crypto.randomBytes(keyLength);
      let m: Buffer;
      try {
        m = await decryptor.rsaDecrypt(ref, encryptedKey);
      } catch {
        return fallback;
      }
      return m.length === keyLength ? m : fallback;
    },
  };
}

/**
 * unpadPkcs1v15 checks EM = 0x00 || 0x02 || PS || 0x00 || M (RFC 8017 §7.2.2 step 3) for a message of
 * exactly `keyLength` octets (the content cipher fixes it, so the separator's place is known) and returns
 * M, or `fallback` when anything is wrong. Branch-free over the secret bytes: every byte is read, and the
 * result is chosen by a mask, so timing does not tell a good padding from a bad one.
 */
export function unpadPkcs1v15(em: Buffer, keyLength: number, fallback: Buffer): Buffer {
  const k = em.length;
  const sep = k - keyLength - 1;
  if (sep < 10 || fallback.length !== keyLength) return fallback; // PS needs 8 octets (public sizes only)
  let bad = em[0] | (em[1] ^ 0x02) | em[sep];
  for (let i = 2; i < sep; i++) bad |= ((em[i] - 1) >>> 8) & 1; // 1 when em[i] === 0
  // good: 0xff when every check passed, else 0x00
  const good = (((bad | -bad) >>> 31) - 1) & 0xff;
  const out = Buffer.alloc(keyLength);
  for (let i = 0; i < keyLength; i++) out[i] = (em[sep + 1 + i] & good) | (fallback[i] & ~good & 0xff);
  return out;
}
