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

/**
 * SecretKeyCipher keeps AES-256 secret keys in the backend (a PKCS#11 token: CKO_SECRET_KEY, CKK_AES,
 * sensitive, never extractable) and encrypts and decrypts with them under AES-GCM (CKM_AES_GCM, a 16-octet
 * tag appended to the ciphertext, PKCS#11 v2.40 §2.11.5): the firmware group key-encryption key
 * (ra/firmware-group-kek.ts) lives there when the CA keys do. Keys are named by CKA_ID (`id`); `label` is
 * for operators.
 */
export interface SecretKeyCipher {
  /** secretKeyIds: the CKA_IDs of the AES secret keys labelled `label`. */
  secretKeyIds(label: string): Promise<Buffer[]>;
  /** generateSecretKey: a new AES-256 key in the token (C_GenerateKey) with this label and CKA_ID. */
  generateSecretKey(label: string, id: Buffer): Promise<void>;
  /** destroySecretKey: C_DestroyObject on the AES key with this CKA_ID (the loser of a generation race). */
  destroySecretKey(id: Buffer): Promise<void>;
  /** aesGcmEncrypt: ciphertext | 16-octet tag. */
  aesGcmEncrypt(id: Buffer, iv: Buffer, aad: Buffer, plaintext: Buffer): Promise<Buffer>;
  /** aesGcmDecrypt: the plaintext of ciphertext | tag; rejects when the tag does not check. */
  aesGcmDecrypt(id: Buffer, iv: Buffer, aad: Buffer, sealed: Buffer): Promise<Buffer>;
}

export function isSecretKeyCipher(backend: unknown): backend is SecretKeyCipher {
  return typeof (backend as Partial<SecretKeyCipher> | undefined)?.aesGcmEncrypt === 'function';
}
