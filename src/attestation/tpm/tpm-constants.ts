/**
 * tpm-constants: the TPM 2.0 algorithm identifiers, structure tags and object attributes device-ca reads
 * (TPM 2.0 Part 2 §6.3 TPM_ALG_ID, §6.9 TPM_ST, §8.3 TPMA_OBJECT, TCG Algorithm Registry).
 */
export const TPM_ALG = {
  RSA: 0x0001,
  SHA1: 0x0004,
  HMAC: 0x0005,
  AES: 0x0006,
  KEYEDHASH: 0x0008,
  SHA256: 0x000b,
  SHA384: 0x000c,
  SHA512: 0x000d,
  NULL: 0x0010,
  RSASSA: 0x0014,
  RSAES: 0x0015,
  RSAPSS: 0x0016,
  OAEP: 0x0017,
  ECDSA: 0x0018,
  ECDH: 0x0019,
  ECDAA: 0x001a,
  ECSCHNORR: 0x001c,
  ECC: 0x0023,
  SYMCIPHER: 0x0025,
  CFB: 0x0043,
} as const;

/** TPM_GENERATED_VALUE: TPMS_ATTEST.magic, set only by the TPM itself (Part 2 §6.2). */
export const TPM_GENERATED_VALUE = 0xff544347;

export const TPM_ST_ATTEST = {
  CERTIFY: 0x8017,
  QUOTE: 0x8018,
  SESSION_AUDIT: 0x8019,
  COMMAND_AUDIT: 0x8015,
  TIME: 0x8016,
  CREATION: 0x801a,
  NV: 0x8014,
  NV_DIGEST: 0x801c,
} as const;

export const TPM_ECC_CURVE = { NIST_P256: 0x0003, NIST_P384: 0x0004, NIST_P521: 0x0005 } as const;

/** TPMA_OBJECT bits (Part 2 §8.3.2). */
export const TPMA_OBJECT = {
  fixedTPM: 1 << 1,
  stClear: 1 << 2,
  fixedParent: 1 << 4,
  sensitiveDataOrigin: 1 << 5,
  userWithAuth: 1 << 6,
  adminWithPolicy: 1 << 7,
  noDA: 1 << 10,
  encryptedDuplication: 1 << 11,
  restricted: 1 << 16,
  decrypt: 1 << 17,
  sign: 1 << 18,
} as const;

export type TpmaObjectName = keyof typeof TPMA_OBJECT;

/** HASH_BY_ALG maps a TPM hash algorithm to its Node name and digest size. */
export const HASH_BY_ALG: ReadonlyMap<number, { node: string; size: number }> = new Map([
  [TPM_ALG.SHA1, { node: 'sha1', size: 20 }],
  [TPM_ALG.SHA256, { node: 'sha256', size: 32 }],
  [TPM_ALG.SHA384, { node: 'sha384', size: 48 }],
  [TPM_ALG.SHA512, { node: 'sha512', size: 64 }],
]);

/** attributeNames lists the TPMA_OBJECT bits set in a value, for messages and the admin API. */
export function attributeNames(attrs: number): TpmaObjectName[] {
  return (Object.keys(TPMA_OBJECT) as TpmaObjectName[]).filter((k) => (attrs & TPMA_OBJECT[k]) !== 0);
}
