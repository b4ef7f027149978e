/**
 * AttestationCheck names each check of TPM evidence. A failed check is reported by name, never by message
 * text: the RA answers 403 with the name as the reason code and audits it (issue 9, point 5).
 */
export type AttestationCheck =
  | 'evidence' // the profile requires attestation and the CSR carries no tcg-attest-tpm-certify statement
  | 'ek-certificate' // EK certificate unreadable, expired, or not chaining to a trusted TPM manufacturer root
  | 'ek-key-mismatch' // the EK public area sent is not the key in the EK certificate
  | 'ak-attributes' // the AK is not fixedTPM|fixedParent|sensitiveDataOrigin|restricted|sign, or can decrypt
  | 'ak-algorithm' // the AK is not RSA >= 2048 or ECC P-256+
  | 'tpm-model' // the EK certificate's TPM manufacturer/model is not on the profile's allow-list (allowedTpms)
  | 'credential' // the credential returned is not the one MakeCredential sealed, or the challenge expired
  | 'ak-unregistered' // the evidence is signed by an AK not bound to this device
  | 'signature' // the AK signature over TPMS_ATTEST does not verify
  | 'magic' // TPMS_ATTEST.magic is not TPM_GENERATED_VALUE
  | 'attest-type' // not a certify (or quote) statement
  | 'nonce' // extraData is not an unexpired, unused nonce of this device
  | 'attested-name' // the certified name is not nameAlg || H(TPMT_PUBLIC) of the key sent
  | 'key-mismatch' // the certified key is not the CSR's key
  | 'key-attributes' // the certified key's attributes are not what the policy requires
  | 'key-algorithm' // the certified key's algorithm or size is not allowed
  | 'quote' // the profile has a PCR policy and the CSR carries no TPM2_Quote statement
  | 'pcr-selection' // the quote does not select exactly the policy's bank and PCRs
  | 'pcr-digest' // the quote's PCR digest is not the hash of the PCR values claimed
  | 'pcr-value' // a claimed PCR value is not the policy's (the reason names the PCR)
  | 'firmware-version' // TPMS_ATTEST.firmwareVersion is below the allow-list entry's minFirmwareVersion
  | 'clock-unsafe' // TPMS_ATTEST.clockInfo.safe is not set (the TPM's clock may have gone backwards)
  | 'clock-backwards'; // resetCount, restartCount or clock is below the last statement accepted from this AK

export type AttestationVerdict<T> = { ok: true; value: T } | { ok: false; check: AttestationCheck; detail: string };

export function fail(check: AttestationCheck, detail: string): { ok: false; check: AttestationCheck; detail: string } {
  return { ok: false, check, detail };
}
