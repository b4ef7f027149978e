import { constants, KeyObject, verify } from 'node:crypto';
import { HASH_BY_ALG, TPM_ALG } from './tpm-constants';
import { malformedTpm, TpmReader } from './tpm-reader';
import { eccCurve, TpmPublic, tpmPublicKey } from './tpm-public';

/** TpmSignature is a parsed TPMT_SIGNATURE (TPM 2.0 Part 2 §11.3.4): RSA (PKCS#1 v1.5 or PSS) or ECDSA. */
export type TpmSignature = { sigAlg: typeof TPM_ALG.RSASSA | typeof TPM_ALG.RSAPSS; hashAlg: number; sig: Buffer } | { sigAlg: typeof TPM_ALG.ECDSA; hashAlg: number; r: Buffer; s: Buffer };

/** parseTpmtSignature parses a TPMT_SIGNATURE that fills `buf` exactly (tpm2_quote -s, TPM2_Certify). */
export function parseTpmtSignature(buf: Buffer): TpmSignature {
  if (buf.length > 1024) malformedTpm(`TPMT_SIGNATURE of ${buf.length} bytes`);
  const r = new TpmReader(buf, 'TPMT_SIGNATURE');
  const sigAlg = r.u16('sigAlg');
  if (sigAlg !== TPM_ALG.RSASSA && sigAlg !== TPM_ALG.RSAPSS && sigAlg !== TPM_ALG.ECDSA) {
    return malformedTpm(`TPMT_SIGNATURE: unsupported sigAlg 0x${sigAlg.toString(16)}`);
  }
  const hashAlg = r.u16('hash');
  if (!HASH_BY_ALG.has(hashAlg)) malformedTpm(`TPMT_SIGNATURE: unknown hash 0x${hashAlg.toString(16)}`);
  if (sigAlg === TPM_ALG.ECDSA) {
    const rr = r.tpm2b('signatureR', 66);
    const s = r.tpm2b('signatureS', 66);
    r.end();
    return { sigAlg, hashAlg, r: rr, s };
  }
  const sig = r.tpm2b('sig', 512);
  r.end();
  return { sigAlg, hashAlg, sig };
}

function fixed(b: Buffer, size: number): Buffer {
  let v = b;
  while (v.length > size && v[0] === 0) v = v.subarray(1);
  if (v.length > size) return Buffer.alloc(size + 1); // cannot be a valid coordinate: verify() says false
  return Buffer.concat([Buffer.alloc(size - v.length), v]);
}

/**
 * verifyTpmSignature checks a TPM signature over `data` (the TPMS_ATTEST bytes exactly as signed) with the
 * signer's TPMT_PUBLIC. The signature's algorithm must match the key type; a mismatch is `false`, never a
 * throw, so the caller names the failed check itself. The key object may be cached by the caller.
 */
export function verifyTpmSignature(signer: TpmPublic, data: Buffer, sig: TpmSignature, key?: KeyObject): boolean {
  const k = key ?? tpmPublicKey(signer);
  const hash = HASH_BY_ALG.get(sig.hashAlg)!.node;
  if (sig.sigAlg === TPM_ALG.ECDSA) {
    if (signer.type !== TPM_ALG.ECC) return false;
    const size = eccCurve(signer.curveId)?.size;
    if (size === undefined) return false;
    const rs = Buffer.concat([fixed(sig.r, size), fixed(sig.s, size)]);
    return verify(hash, data, { key: k, dsaEncoding: 'ieee-p1363' }, rs);
  }
  if (signer.type !== TPM_ALG.RSA) return false;
  if (sig.sigAlg === TPM_ALG.RSAPSS) {
    // TPM 2.0 Part 1 §B.7 / FIPS 186-4: a TPM's PSS salt is as long as the digest, or the maximum (older TPMs)
    return verify(hash, data, { key: k, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO }, sig.sig);
  }
  return verify(hash, data, { key: k, padding: constants.RSA_PKCS1_PADDING }, sig.sig);
}
