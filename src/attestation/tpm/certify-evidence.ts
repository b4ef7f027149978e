import { KeyObject } from 'node:crypto';
import { isDeviceCaError } from '../../errors/device-ca-error';
import { AttestationVerdict, fail } from './attestation-verdict';
import { checkKeyPolicy, DEVICE_KEY_ATTRIBUTES, KeyAttributePolicy } from './key-policy';
import { TPM_ALG, TPM_ST_ATTEST } from './tpm-constants';
import { eccCurve, parseTpmtPublic, TpmPublic, tpmName, tpmPublicKey } from './tpm-public';
import { isTpmGenerated, parseTpmsAttest, TpmsAttest } from './tpms-attest';
import { parseTpmtSignature, TpmSignature, verifyTpmSignature } from './tpmt-signature';

/**
 * CertifyStatement is the content of a tcg-attest-tpm-certify statement (OID 2.23.133.20.1,
 * draft-ietf-lamps-csr-attestation / TCG "TPM 2.0 Keys for Device Identity and Attestation"):
 * TPMS_ATTEST exactly as signed, the AK's signature over it, and the certified key's TPMT_PUBLIC.
 */
export interface CertifyStatement {
  tpmsAttest: Buffer;
  signature: Buffer;
  tpmtPublic: Buffer;
}

export interface VerifiedCertify {
  attest: TpmsAttest;
  key: TpmPublic;
  /** extraData: the qualifyingData the TPM signed; the RA consumes it as this device's nonce */
  extraData: Buffer;
}

/**
 * readSignature accepts a TPMT_SIGNATURE or, as the issue asks, a raw signature in the AK's own scheme:
 * PKCS#1/PSS bytes for an RSA AK, r||s for an ECC AK.
 */
export function readSignature(sig: Buffer, ak: TpmPublic): TpmSignature | undefined {
  try {
    return parseTpmtSignature(sig);
  } catch (e) {
    if (!isDeviceCaError(e)) throw e;
  }
  const hashAlg = ak.scheme.hashAlg;
  if (hashAlg === undefined) return undefined;
  if (ak.type === TPM_ALG.RSA && (ak.scheme.scheme === TPM_ALG.RSASSA || ak.scheme.scheme === TPM_ALG.RSAPSS)) {
    return sig.length === ak.keyBits / 8 ? { sigAlg: ak.scheme.scheme, hashAlg, sig } : undefined;
  }
  const size = ak.type === TPM_ALG.ECC ? eccCurve(ak.curveId)?.size : undefined;
  if (size !== undefined && ak.scheme.scheme === TPM_ALG.ECDSA && sig.length === 2 * size) {
    return { sigAlg: TPM_ALG.ECDSA, hashAlg, r: sig.subarray(0, size), s: sig.subarray(size) };
  }
  return undefined;
}

/**
 * verifyCertifyEvidence checks a TPM2_Certify statement against a registered AK and the CSR's key, in
 * the order of issue 9 point 4: magic and type (cheap, and they make sure a TPM wrote these bytes), the AK
 * signature, the certified name = nameAlg || H(TPMT_PUBLIC), TPMT_PUBLIC's key = the CSR's key, then the
 * key's attributes, algorithm and size. The nonce (extraData) is returned for the caller to consume: only
 * the RA knows this device's outstanding nonces. Malformed structures throw 'bad-request'.
 */
export function verifyCertifyEvidence(st: CertifyStatement, ak: TpmPublic, csrSpki: Buffer, opts: { akKey?: KeyObject; keyPolicy?: KeyAttributePolicy } = {}): AttestationVerdict<VerifiedCertify> {
  const attest = parseTpmsAttest(st.tpmsAttest);
  const key = parseTpmtPublic(st.tpmtPublic);
  if (!isTpmGenerated(attest)) return fail('magic', `magic 0x${attest.magic.toString(16)} is not TPM_GENERATED_VALUE`);
  if (attest.attested.type !== TPM_ST_ATTEST.CERTIFY) return fail('attest-type', 'not a TPM2_Certify statement');
  const sig = readSignature(st.signature, ak);
  if (!sig || !verifyTpmSignature(ak, st.tpmsAttest, sig, opts.akKey)) return fail('signature', 'AK signature over TPMS_ATTEST does not verify');
  if (!attest.attested.name.equals(tpmName(key))) return fail('attested-name', 'certified name is not the name of the TPMT_PUBLIC sent');
  if (!tpmPublicKey(key).export({ type: 'spki', format: 'der' }).equals(csrSpki)) {
    return fail('key-mismatch', "the certified key is not the CSR's key");
  }
  const policy = checkKeyPolicy(key, opts.keyPolicy ?? DEVICE_KEY_ATTRIBUTES, { attributes: 'key-attributes', algorithm: 'key-algorithm' });
  if (!policy.ok) return policy;
  return { ok: true, value: { attest, key, extraData: attest.extraData } };
}
