import { isAttestationStore, Store } from '../store/store';
import { collectItems } from '../store/paging';

/** AkFacts: one AK binding of a device as an operator reads it (no key bytes). */
export interface AkFacts {
  akName: string;
  status: string;
  /** ekSha256: SHA-256 of the EK certificate the AK was registered with */
  ekSha256: string;
  ekManufacturer: string | null;
  ekModel: string | null;
  registeredAt: Date;
  activatedAt: Date | null;
  /** akCertSerial: the serial of the AK certificate issued at activation (EKU 2.23.133.8.3); null before */
  akCertSerial: string | null;
  /**
   * lastClock: the TPM clockInfo (TPM 2.0 Part 2 §10.11.1) of the newest statement this AK signed that the
   * clock checks accepted: what the next statement's counters must not go below. clock is decimal text
   * (a UINT64, milliseconds; JSON has no 64-bit integers). null before the first accepted statement.
   */
  lastClock: { resetCount: number; restartCount: number; clock: string } | null;
}

/** LastAttestation: the device's latest attestation verdict: a key attested at issuance, or a refusal naming the check. */
export type LastAttestation = { verdict: 'attested'; at: Date; serial: string } | { verdict: 'refused'; at: Date; check: string };

export interface DeviceAttestationFacts {
  aks: AkFacts[];
  lastAttestation: LastAttestation | null;
  /** attestedSerials: the device's certificates whose key's TPM evidence was verified at issuance */
  attestedSerials: Set<string>;
}

/**
 * deviceAttestationFacts gathers what `devices show` and the admin device view say about a device's TPM:
 * its AK bindings (with the EK's hash, manufacturer and model, the AK certificate's serial and the last
 * accepted TPM clock) from the store, and its attestation
 * verdicts from the audit chain (`certificate.issued` with `tpmAttested`, `tpm.attestation.failed` with
 * the check), which already records both: no second copy to keep in step. A store without attestation
 * state has no AKs.
 */
export async function deviceAttestationFacts(store: Store, deviceId: string): Promise<DeviceAttestationFacts> {
  const bindings = isAttestationStore(store) ? await store.aksOfDevice(deviceId) : [];
  const aks = bindings.map((b) => ({
    akName: b.akName,
    status: b.status,
    ekSha256: b.ekCertSha256,
    ekManufacturer: b.ekManufacturer,
    ekModel: b.ekModel,
    registeredAt: b.createdAt,
    activatedAt: b.activatedAt,
    akCertSerial: b.akCertSerial,
    lastClock: b.lastClock ? { resetCount: b.lastClock.resetCount, restartCount: b.lastClock.restartCount, clock: b.lastClock.clock.toString() } : null,
  }));
  const audit = (await collectItems((after, want) => store.listAudit({ subject: deviceId, after, limit: want }))).items;
  let lastAttestation: LastAttestation | null = null;
  const attestedSerials = new Set<string>();
  for (const r of audit) {
    if (r.type === 'certificate.issued' && r.data.tpmAttested === true && typeof r.data.serial === 'string') {
      attestedSerials.add(r.data.serial);
      lastAttestation = { verdict: 'attested', at: r.at, serial: r.data.serial };
    } else if (r.type === 'tpm.attestation.failed') {
      lastAttestation = { verdict: 'refused', at: r.at, check: String(r.data.check) };
    }
  }
  return { aks, lastAttestation, attestedSerials };
}
