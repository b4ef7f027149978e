import { AttestationVerdict, fail } from './attestation-verdict';

/**
 * AllowedTpm is one entry of a profile's TPM allow-list: a manufacturer (the TCG vendor id as the EK
 * certificate writes it, e.g. "id:49465800"), optionally one model, optionally the lowest firmware version
 * accepted from that TPM's attestation statements.
 */
export interface AllowedTpm {
  manufacturer: string;
  model?: string;
  /**
   * minFirmwareVersion: compared with TPMS_ATTEST.firmwareVersion (TPM 2.0 Part 2 §10.12.12), the 64-bit
   * vendor value TPM2_GetCapability reports as TPM_PT_FIRMWARE_VERSION_1 (high half) and _2 (low half)
   */
  minFirmwareVersion?: bigint;
}

/** sameManufacturer: vendor ids are hex ("id:" + 8 hex digits, TCG EK Credential Profile §3.1.2); case does not matter. */
function sameManufacturer(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}

/**
 * checkAllowedTpm returns the entries of the allow-list that the TPM identity (EK certificate SAN, TCG EK
 * Credential Profile §3.2.9) matches: same manufacturer, and the same model when the entry names one. An
 * absent list allows every TPM whose EK certificate chains to a trusted root; a TPM whose certificate
 * names no manufacturer matches no entry.
 */
export function checkAllowedTpm(list: readonly AllowedTpm[] | undefined, id: { manufacturer?: string | null; model?: string | null }): AttestationVerdict<AllowedTpm[]> {
  if (!list) return { ok: true, value: [] };
  const m = id.manufacturer ?? undefined;
  const hits = m === undefined ? [] : list.filter((e) => sameManufacturer(e.manufacturer, m) && (e.model === undefined || e.model === id.model));
  if (hits.length === 0) return fail('tpm-model', `TPM manufacturer ${m ?? '(none)'} model ${id.model ?? '(none)'} is not on the profile's allow-list`);
  return { ok: true, value: hits };
}

/**
 * checkFirmwareVersion: the statement's firmware version must reach the minimum of one matching entry
 * (an entry without a minimum accepts any). Only meaningful for an AK in the endorsement hierarchy, as the
 * registration flow makes it: for a signer in the owner hierarchy the TPM obfuscates the value (Part 2
 * §10.12.12, INTEROP.md).
 */
export function checkFirmwareVersion(entries: readonly AllowedTpm[], firmwareVersion: bigint): AttestationVerdict<null> {
  if (entries.length === 0 || entries.some((e) => e.minFirmwareVersion === undefined || firmwareVersion >= e.minFirmwareVersion)) return { ok: true, value: null };
  const min = entries.reduce((lo, e) => (e.minFirmwareVersion! < lo ? e.minFirmwareVersion! : lo), entries[0].minFirmwareVersion!);
  return fail('firmware-version', `TPM firmware 0x${firmwareVersion.toString(16)} is below the minimum 0x${min.toString(16)}`);
}
