import { createHash, createPublicKey, KeyObject } from 'node:crypto';
import { HASH_BY_ALG, TPM_ALG, TPM_ECC_CURVE } from './tpm-constants';
import { malformedTpm, TpmReader } from './tpm-reader';

/** TPM_PUBLIC_MAX: a TPMT_PUBLIC is well under 1 KiB for any key a TPM holds (RSA 4096 modulus = 512). */
const TPM_PUBLIC_MAX = 1024;

export interface TpmSymDef {
  algorithm: number;
  keyBits?: number;
  mode?: number;
}

export interface TpmRsaPublic {
  type: typeof TPM_ALG.RSA;
  symmetric: TpmSymDef;
  scheme: { scheme: number; hashAlg?: number };
  keyBits: number;
  /** exponent: 0 in the structure means the default 65537 (Part 2 §12.2.3.5); stored here already resolved. */
  exponent: number;
  modulus: Buffer;
}

export interface TpmEccPublic {
  type: typeof TPM_ALG.ECC;
  symmetric: TpmSymDef;
  scheme: { scheme: number; hashAlg?: number };
  curveId: number;
  kdf: { scheme: number; hashAlg?: number };
  x: Buffer;
  y: Buffer;
}

/**
 * TpmPublic is a parsed TPMT_PUBLIC (TPM 2.0 Part 2 §12.2.4). `raw` is the exact marshalled TPMT_PUBLIC,
 * kept because the object's name is a hash of those bytes, not of any re-encoding.
 */
export type TpmPublic = {
  nameAlg: number;
  objectAttributes: number;
  authPolicy: Buffer;
  raw: Buffer;
} & (TpmRsaPublic | TpmEccPublic);

function readSymDef(r: TpmReader): TpmSymDef {
  const algorithm = r.u16('symmetric.algorithm');
  if (algorithm === TPM_ALG.NULL) return { algorithm };
  return { algorithm, keyBits: r.u16('symmetric.keyBits'), mode: r.u16('symmetric.mode') };
}

/** readScheme reads a TPMT_*_SCHEME: every scheme but NULL and RSAES carries a hash (ECDAA also a count). */
function readScheme(r: TpmReader, field: string): { scheme: number; hashAlg?: number } {
  const scheme = r.u16(`${field}.scheme`);
  if (scheme === TPM_ALG.NULL || scheme === TPM_ALG.RSAES) return { scheme };
  const hashAlg = r.u16(`${field}.hashAlg`);
  if (scheme === TPM_ALG.ECDAA) r.u16(`${field}.count`);
  return { scheme, hashAlg };
}

/** parseTpmtPublic parses one TPMT_PUBLIC that fills `buf` exactly. Only RSA and ECC keys are accepted. */
export function parseTpmtPublic(buf: Buffer): TpmPublic {
  if (buf.length > TPM_PUBLIC_MAX) malformedTpm(`TPMT_PUBLIC of ${buf.length} bytes`);
  const r = new TpmReader(buf, 'TPMT_PUBLIC');
  const type = r.u16('type');
  const nameAlg = r.u16('nameAlg');
  if (!HASH_BY_ALG.has(nameAlg)) malformedTpm(`TPMT_PUBLIC: unknown nameAlg 0x${nameAlg.toString(16)}`);
  const objectAttributes = r.u32('objectAttributes');
  const authPolicy = r.tpm2b('authPolicy', 64);
  const common = { nameAlg, objectAttributes, authPolicy, raw: buf };
  if (type === TPM_ALG.RSA) {
    const symmetric = readSymDef(r);
    const scheme = readScheme(r, 'scheme');
    const keyBits = r.u16('keyBits');
    const exp = r.u32('exponent');
    const modulus = r.tpm2b('unique.rsa', 512);
    r.end();
    if (modulus.length * 8 !== keyBits) malformedTpm(`TPMT_PUBLIC: modulus of ${modulus.length} bytes for keyBits ${keyBits}`);
    return { ...common, type, symmetric, scheme, keyBits, exponent: exp === 0 ? 65537 : exp, modulus };
  }
  if (type === TPM_ALG.ECC) {
    const symmetric = readSymDef(r);
    const scheme = readScheme(r, 'scheme');
    const curveId = r.u16('curveID');
    const kdf = readScheme(r, 'kdf');
    const x = r.tpm2b('unique.ecc.x', 128);
    const y = r.tpm2b('unique.ecc.y', 128);
    r.end();
    return { ...common, type, symmetric, scheme, curveId, kdf, x, y };
  }
  return malformedTpm(`TPMT_PUBLIC: unsupported key type 0x${type.toString(16)} (only RSA and ECC)`);
}

/** parseTpm2bPublic parses a TPM2B_PUBLIC (what tpm2_createak -u writes): UINT16 size || TPMT_PUBLIC. */
export function parseTpm2bPublic(buf: Buffer): TpmPublic {
  const r = new TpmReader(buf, 'TPM2B_PUBLIC');
  const inner = r.tpm2b('publicArea', TPM_PUBLIC_MAX);
  r.end();
  return parseTpmtPublic(Buffer.from(inner));
}

/**
 * tpmName computes an object's name: nameAlg (UINT16) || H_nameAlg(TPMT_PUBLIC) (Part 1 §16). The name is
 * what TPMS_ATTEST and MakeCredential refer to, so it must hash the bytes as received.
 */
export function tpmName(pub: TpmPublic): Buffer {
  const h = HASH_BY_ALG.get(pub.nameAlg)!;
  const alg = Buffer.alloc(2);
  alg.writeUInt16BE(pub.nameAlg);
  return Buffer.concat([alg, createHash(h.node).update(pub.raw).digest()]);
}

const CURVES: ReadonlyMap<number, { crv: string; size: number; bits: number }> = new Map([
  [TPM_ECC_CURVE.NIST_P256, { crv: 'P-256', size: 32, bits: 256 }],
  [TPM_ECC_CURVE.NIST_P384, { crv: 'P-384', size: 48, bits: 384 }],
  [TPM_ECC_CURVE.NIST_P521, { crv: 'P-521', size: 66, bits: 521 }],
]);

/** eccCurve names a TPM curve, or undefined for the curves device-ca does not accept (BN, SM2). */
export function eccCurve(curveId: number): { crv: string; size: number; bits: number } | undefined {
  return CURVES.get(curveId);
}

function b64url(b: Buffer): string {
  return b.toString('base64url');
}

function padLeft(b: Buffer, size: number): Buffer {
  if (b.length > size) malformedTpm(`ECC coordinate of ${b.length} bytes for a ${size}-byte curve`);
  return b.length === size ? b : Buffer.concat([Buffer.alloc(size - b.length), b]);
}

/**
 * tpmPublicKey turns a TPMT_PUBLIC into a Node KeyObject, so that its signatures can be verified and its
 * SubjectPublicKeyInfo compared with a CSR's. A point not on the curve is refused here by Node.
 */
export function tpmPublicKey(pub: TpmPublic): KeyObject {
  try {
    if (pub.type === TPM_ALG.RSA) {
      const e = Buffer.alloc(4);
      e.writeUInt32BE(pub.exponent);
      let i = 0;
      while (i < 3 && e[i] === 0) i++;
      return createPublicKey({ key: { kty: 'RSA', n: b64url(pub.modulus), e: b64url(e.subarray(i)) }, format: 'jwk' });
    }
    const c = eccCurve(pub.curveId);
    if (!c) return malformedTpm(`unsupported ECC curve 0x${pub.curveId.toString(16)}`);
    return createPublicKey({
      key: { kty: 'EC', crv: c.crv, x: b64url(padLeft(pub.x, c.size)), y: b64url(padLeft(pub.y, c.size)) },
      format: 'jwk',
    });
  } catch (e) {
    if (e instanceof Error && e.name === 'DeviceCaError') throw e;
    return malformedTpm(`public key not usable: ${e instanceof Error ? e.message : String(e)}`);
  }
}
