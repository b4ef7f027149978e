import { TPM_ALG, TPMA_OBJECT, TpmaObjectName, attributeNames } from './tpm-constants';
import { eccCurve, TpmPublic } from './tpm-public';
import { AttestationCheck, AttestationVerdict, fail } from './attestation-verdict';

/**
 * KeyAttributePolicy says which TPMA_OBJECT bits a key must have and must not have. The defaults follow
 * issue 9: an AK is a restricted signing key born in the TPM that can never leave it; a device key is the
 * same but not restricted (it signs the CSR and TLS handshakes, which restricted keys cannot).
 */
export interface KeyAttributePolicy {
  required: readonly TpmaObjectName[];
  forbidden: readonly TpmaObjectName[];
}

export const AK_ATTRIBUTES: KeyAttributePolicy = {
  required: ['fixedTPM', 'fixedParent', 'sensitiveDataOrigin', 'restricted', 'sign'],
  forbidden: ['decrypt'],
};

export const DEVICE_KEY_ATTRIBUTES: KeyAttributePolicy = {
  required: ['fixedTPM', 'fixedParent', 'sensitiveDataOrigin', 'sign'],
  forbidden: ['decrypt', 'restricted'],
};

/**
 * DECRYPTING_DEVICE_KEY_ATTRIBUTES: a profile with tpmKeyDecrypt (issue 13) also accepts a device key that
 * can decrypt: the same required bits, still never restricted, so the firmware encrypted to its
 * certificate is opened inside the TPM (TPM2_ECDH_ZGen needs decrypt, TPM 2.0 Part 3 §14.5).
 */
export const DECRYPTING_DEVICE_KEY_ATTRIBUTES: KeyAttributePolicy = {
  required: DEVICE_KEY_ATTRIBUTES.required,
  forbidden: ['restricted'],
};

/** MIN_RSA_BITS and the curve floor: RSA >= 2048 or ECC P-256 and up (issue 9, point 1). */
const MIN_RSA_BITS = 2048;
const MIN_ECC_BITS = 256;

/** checkKeyPolicy checks attributes first, then algorithm and size, naming the failed check. */
export function checkKeyPolicy(pub: TpmPublic, policy: KeyAttributePolicy, checks: { attributes: AttestationCheck; algorithm: AttestationCheck }): AttestationVerdict<TpmPublic> {
  const missing = policy.required.filter((a) => (pub.objectAttributes & TPMA_OBJECT[a]) === 0);
  const present = policy.forbidden.filter((a) => (pub.objectAttributes & TPMA_OBJECT[a]) !== 0);
  if (missing.length || present.length) {
    const has = attributeNames(pub.objectAttributes).join('|');
    return fail(checks.attributes, `attributes ${has}: missing [${missing.join(', ')}], forbidden [${present.join(', ')}]`);
  }
  if (pub.type === TPM_ALG.RSA) {
    if (pub.keyBits < MIN_RSA_BITS) return fail(checks.algorithm, `RSA-${pub.keyBits} is below ${MIN_RSA_BITS}`);
  } else {
    const c = eccCurve(pub.curveId);
    if (!c || c.bits < MIN_ECC_BITS) return fail(checks.algorithm, `ECC curve 0x${pub.curveId.toString(16)} not allowed`);
  }
  return { ok: true, value: pub };
}
