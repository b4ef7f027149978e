import { KeyBackend, SigningKey } from '../key-backend';

/**
 * key-capabilities: what some backends and keys can do beyond KeyBackend and SigningKey
 * (ARCHITECTURE rule 4: optional capabilities are separate interfaces found by a type guard, not
 * flags). They are backend-neutral and would move to src/keys/ once the software backend offers them.
 */

/**
 * RsaDecryptor decrypts RSAES-PKCS1-v1_5 (CKM_RSA_PKCS) with a key the backend holds: the SCEP RA key
 * transport (RFC 8894 §3.2.2) needs it, and Node 20 refuses RSA_PKCS1_PADDING in privateDecrypt
 * (CVE-2023-46809). Every padding failure raises the same 'bad-request' error; callers must still apply
 * implicit rejection (continue with a random content key) so the error is no padding oracle.
 */
export interface RsaDecryptor {
  rsaDecrypt(ref: string, ciphertext: Buffer): Promise<Buffer>;
}

export function isRsaDecryptor(backend: KeyBackend): backend is KeyBackend & RsaDecryptor {
  return typeof (backend as Partial<RsaDecryptor>).rsaDecrypt === 'function';
}

export interface RsaPssOptions {
  /** hash for the message and MGF1; default sha256. */
  hash?: 'sha256' | 'sha384' | 'sha512';
  /** saltLength in octets; default the hash length (RFC 4055 §3.1 recommendation). */
  saltLength?: number;
}

/** RsaPssSigner signs with RSASSA-PSS (RFC 8017 §8.1); returns the raw signature octets. */
export interface RsaPssSigner {
  signRsaPss(data: Buffer, opts?: RsaPssOptions): Promise<Buffer>;
}

export function isRsaPssSigner(key: SigningKey): key is SigningKey & RsaPssSigner {
  return typeof (key as Partial<RsaPssSigner>).signRsaPss === 'function';
}
