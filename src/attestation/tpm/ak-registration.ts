import { X509Certificate } from 'node:crypto';
import { AttestationVerdict, fail } from './attestation-verdict';
import { EkIdentity, verifyEkCertificate } from './ek-certificate';
import { AK_ATTRIBUTES, checkKeyPolicy } from './key-policy';
import { parseTpm2bPublic, TpmPublic, tpmName, tpmPublicKey } from './tpm-public';

/** AkRegistrationRequest is what a device sends to register its attestation key (TCG device-identity flow). */
export interface AkRegistrationRequest {
  /** ekCertificate: DER, as read from the TPM's NV index (RSA: 0x01c00002) */
  ekCertificate: Buffer;
  /** ekChain: DER intermediates the device has (may be empty when the trust store holds them) */
  ekChain: Buffer[];
  /** ekPublic: the EK's TPM2B_PUBLIC (tpm2_createek -u); MakeCredential needs its symmetric parameters */
  ekPublic: Buffer;
  /** akPublic: the AK's TPM2B_PUBLIC (tpm2_createak -u) */
  akPublic: Buffer;
}

export interface VerifiedAkRegistration {
  ek: TpmPublic;
  ak: TpmPublic;
  akName: Buffer;
  ekIdentity: EkIdentity;
  /** ekCertificate: the verified EK certificate, whose SHA-256 identifies the TPM for the life of the device */
  ekCertificate: X509Certificate;
}

/**
 * verifyAkRegistration decides whether an AK is worth a credential challenge: the EK certificate chains to
 * a trusted manufacturer root, the EK public area is the certificate's key, and the AK has the attributes
 * and strength of an attestation key. It does not prove the AK shares the EK's TPM: only
 * TPM2_ActivateCredential on the challenge (makeCredential) does. Malformed structures throw 'bad-request'.
 */
export function verifyAkRegistration(req: AkRegistrationRequest, anchors: readonly X509Certificate[], now: Date): AttestationVerdict<VerifiedAkRegistration> {
  const ek = parseTpm2bPublic(req.ekPublic);
  const ak = parseTpm2bPublic(req.akPublic);
  const chain = verifyEkCertificate(req.ekCertificate, req.ekChain, anchors, now);
  if (!chain.ok) return chain;
  const certSpki = chain.value.cert.publicKey.export({ type: 'spki', format: 'der' });
  if (!tpmPublicKey(ek).export({ type: 'spki', format: 'der' }).equals(certSpki)) {
    return fail('ek-key-mismatch', 'the EK public area is not the key of the EK certificate');
  }
  const policy = checkKeyPolicy(ak, AK_ATTRIBUTES, { attributes: 'ak-attributes', algorithm: 'ak-algorithm' });
  if (!policy.ok) return policy;
  return {
    ok: true,
    value: { ek, ak, akName: tpmName(ak), ekIdentity: chain.value.identity, ekCertificate: chain.value.cert },
  };
}
