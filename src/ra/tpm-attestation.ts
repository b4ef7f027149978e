import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { AkRegistrationRequest, verifyAkRegistration } from '../attestation/tpm/ak-registration';
import { AttestationCheck } from '../attestation/tpm/attestation-verdict';
import { CertifyStatement, verifyCertifyEvidence } from '../attestation/tpm/certify-evidence';
import { checkClockHistory, checkClockSafe, ClockCounters, newestClock } from '../attestation/tpm/clock-history';
import { DECRYPTING_DEVICE_KEY_ATTRIBUTES, KeyAttributePolicy } from '../attestation/tpm/key-policy';
import { Credential, makeCredential } from '../attestation/tpm/make-credential';
import { parseTpmtPublic } from '../attestation/tpm/tpm-public';
import { PcrPolicy, QuoteStatement, verifyQuoteEvidence } from '../attestation/tpm/quote-evidence';
import { AllowedTpm, checkAllowedTpm, checkFirmwareVersion } from '../attestation/tpm/tpm-allow-list';
import { parseTpmsAttest, TpmClockInfo } from '../attestation/tpm/tpms-attest';
import { DeviceCaError } from '../errors/device-ca-error';
import { AkBindingRecord, AttestationStore, AuditStore } from '../store/store';

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** NONCE_BYTES: 32 random bytes, under the 64-byte TPM2B_DATA limit of qualifyingData (INTEROP.md: > 66 fails). */
const NONCE_BYTES = 32;
/** MAX_NONCES_PER_DEVICE: outstanding nonces kept per device; a device asking in a loop cannot grow the store. */
const MAX_NONCES_PER_DEVICE = 8;

export interface TpmAttestationOptions {
  /** ekRoots: trusted TPM manufacturer certificates (certs/tpm-roots/ and the configured directories) */
  ekRoots: readonly X509Certificate[];
  /** nonceTtlSeconds: how long a nonce is good for, measured on the CA's clock (device clocks are not trusted) */
  nonceTtlSeconds: number;
  /** challengeTtlSeconds: how long a device has to answer the MakeCredential challenge */
  challengeTtlSeconds: number;
  keyPolicy?: KeyAttributePolicy;
  now?: () => Date;
}

/**
 * TpmProfilePolicy: what a profile adds to the checks (profiles.<name>.allowedTpms): the TPM manufacturers
 * and models it accepts, and per entry the lowest firmware version. Absent: any TPM with a trusted EK root.
 */
export interface TpmProfilePolicy {
  allowedTpms?: readonly AllowedTpm[];
  /** keyMayDecrypt: profiles.<name>.tpmKeyDecrypt: the certified key may have the decrypt attribute */
  keyMayDecrypt?: boolean;
}

/**
 * attestationFailure is the one error a failed check becomes: 403 with the check's name as reason code
 * (issue 9 point 5); the detail is only logged.
 */
function attestationFailure(check: string, detail: string): DeviceCaError {
  return new DeviceCaError('forbidden', `attestation failed: ${check}`, { detail });
}

/**
 * TpmAttestation makes the RA's TPM decisions: AK registration with credential activation, nonces, and
 * the check of TPM2_Certify evidence for a CSR key. Callers have already authenticated the device (secret
 * or bootstrap certificate) and pass its id: every nonce and AK is bound to that device. Each failed check
 * is audited by name before the error is thrown.
 */
export class TpmAttestation {
  private readonly now: () => Date;
  constructor(
    private readonly store: AttestationStore & Pick<AuditStore, 'appendAudit'>,
    private readonly opts: TpmAttestationOptions,
  ) {
    this.now = opts.now ?? (() => new Date());
  }

  /**
   * refuse audits a failed check by name and throws the 403 naming it; the RA calls it for checks of its
   * own (missing evidence). `pcr` names the PCR whose value is outside the policy, in the audit record and
   * the reason ("attestation failed: pcr-value 7").
   */
  async refuse(deviceId: string, check: AttestationCheck, detail: string, pcr?: number): Promise<never> {
    await this.store.appendAudit({ type: 'tpm.attestation.failed', actor: `device:${deviceId}`, subject: deviceId, data: pcr === undefined ? { check } : { check, pcr } });
    throw attestationFailure(pcr === undefined ? check : `${check} ${pcr}`, detail);
  }

  /** issueNonce returns a fresh single-use nonce for the device's next TPM2_Certify or TPM2_Quote. */
  async issueNonce(deviceId: string): Promise<{ nonce: Buffer; expiresAt: Date }> {
    const now = this.now();
    const nonce = randomBytes(NONCE_BYTES);
    const expiresAt = new Date(now.getTime() + this.opts.nonceTtlSeconds * 1000);
    await this.store.saveNonce({ deviceId, nonceSha256: sha256(nonce), expiresAt }, now, MAX_NONCES_PER_DEVICE);
    return { nonce, expiresAt };
  }

  /**
   * registerAk checks the EK certificate, EK and AK, then answers with MakeCredential(EK, name(AK), secret):
   * only the TPM holding both keys can recover the secret (TPM 2.0 Part 1 §24). The binding stays pending
   * until activateAk. A TPM whose EK certificate names a manufacturer/model off the profile's allow-list
   * is refused ('tpm-model') before any challenge.
   */
  async registerAk(deviceId: string, req: AkRegistrationRequest, policy: TpmProfilePolicy = {}): Promise<Credential & { akName: Buffer }> {
    const now = this.now();
    const v = verifyAkRegistration(req, this.opts.ekRoots, now);
    if (!v.ok) return this.refuse(deviceId, v.check, v.detail);
    // the TPM's manufacturer and model as its EK certificate names them: only a TPM the profile accepts gets a challenge
    const allowed = checkAllowedTpm(policy.allowedTpms, v.value.ekIdentity);
    if (!allowed.ok) return this.refuse(deviceId, allowed.check, allowed.detail);
    const secret = randomBytes(32);
    const credential = makeCredential(v.value.ek, v.value.akName, secret);
    await this.store.saveAkChallenge(
      {
        akName: v.value.akName.toString('hex'),
        deviceId,
        akPublic: v.value.ak.raw,
        ekCertSha256: sha256(req.ekCertificate),
        ekManufacturer: v.value.ekIdentity.manufacturer ?? null,
        ekModel: v.value.ekIdentity.model ?? null,
        challengeSha256: sha256(secret),
        challengeExpiresAt: new Date(now.getTime() + this.opts.challengeTtlSeconds * 1000),
      },
      now,
      { type: 'tpm.ak.challenge', actor: `device:${deviceId}`, subject: deviceId, data: { ak: v.value.akName.toString('hex'), ek: sha256(req.ekCertificate) } },
    );
    return { ...credential, akName: v.value.akName };
  }

  /** activateAk binds the AK to the device once it returns the secret TPM2_ActivateCredential recovered. */
  async activateAk(deviceId: string, akName: Buffer, credential: Buffer): Promise<AkBindingRecord> {
    const now = this.now();
    const ak = akName.toString('hex');
    const b = await this.store.activateAk(ak, deviceId, sha256(credential), now, { type: 'tpm.ak.activate', actor: `device:${deviceId}`, subject: deviceId, data: { ak } });
    return b ?? this.refuse(deviceId, 'credential', 'wrong credential, expired challenge, or no pending registration of this AK');
  }

  /**
   * checkCertify accepts a CSR key only if an active AK of this device certified it with one of the
   * device's unexpired, unused nonces; the nonce is consumed only once everything else has passed, so a
   * forged statement cannot burn a device's nonce. With a PCR policy, `quote` must be a TPM2_Quote by the
   * same AK with the same nonce whose PCRs match the policy (verifyQuoteEvidence); the one nonce then
   * covers both statements. With an allow-list (`policy`), the AK's TPM must still be on it and the
   * certify statement's firmwareVersion must reach the matching entry's minimum. Each statement's
   * clockInfo must be safe and not behind the last one accepted from this AK (recorded after the nonce).
   */
  async checkCertify(deviceId: string, st: CertifyStatement, csrSpki: Buffer, pcr?: { policy: PcrPolicy; quote: QuoteStatement }, policy: TpmProfilePolicy = {}): Promise<{ ak: AkBindingRecord }> {
    const aks = (await this.store.aksOfDevice(deviceId)).filter((a) => a.status === 'active');
    if (aks.length === 0) return this.refuse(deviceId, 'ak-unregistered', 'device has no active attestation key');
    let last: { check: AttestationCheck; detail: string } = { check: 'ak-unregistered', detail: 'no AK of this device signed the statement' };
    for (const ak of aks) {
      const v = verifyCertifyEvidence(st, parseTpmtPublic(ak.akPublic), csrSpki, { keyPolicy: policy.keyMayDecrypt ? DECRYPTING_DEVICE_KEY_ATTRIBUTES : this.opts.keyPolicy });
      if (!v.ok) {
        // a signature that no AK of this device verifies: certified by an AK that is not registered to it
        last = v.check === 'signature' ? { check: 'ak-unregistered', detail: v.detail } : v;
        continue;
      }
      if (pcr) {
        const q = verifyQuoteEvidence(pcr.quote, parseTpmtPublic(ak.akPublic), v.value.extraData, pcr.policy);
        if (!q.ok) return this.refuse(deviceId, q.check, q.detail, q.pcr);
      }
      // the allow-list again, as it is now and for this profile (the AK may have registered under another,
      // or before the operator narrowed the list), then the firmware the TPM itself reports
      const allowed = checkAllowedTpm(policy.allowedTpms, { manufacturer: ak.ekManufacturer, model: ak.ekModel });
      if (!allowed.ok) return this.refuse(deviceId, allowed.check, allowed.detail);
      const firmware = checkFirmwareVersion(allowed.value, v.value.attest.firmwareVersion);
      if (!firmware.ok) return this.refuse(deviceId, firmware.check, firmware.detail);
      // freshness beyond the nonce: the TPM vouches for its clock, and nothing goes back from the last
      // statement accepted from this AK
      const clocks: [string, TpmClockInfo][] = [['certify', v.value.attest.clockInfo]];
      if (pcr) clocks.push(['quote', parseTpmsAttest(pcr.quote.tpmsAttest).clockInfo]);
      for (const [what, c] of clocks) {
        const safe = checkClockSafe(c, what);
        if (!safe.ok) return this.refuse(deviceId, safe.check, safe.detail);
        const history = checkClockHistory(ak.lastClock, c, what);
        if (!history.ok) return this.refuse(deviceId, history.check, history.detail);
      }
      if (!(await this.store.consumeNonce(deviceId, sha256(v.value.extraData), this.now()))) {
        return this.refuse(deviceId, 'nonce', 'qualifyingData is not an unexpired, unused nonce of this device');
      }
      await this.recordClock(deviceId, ak, clocks.map(([, c]) => c).reduce<ClockCounters>(newestClock, clocks[0][1]));
      return { ak };
    }
    return this.refuse(deviceId, last.check, last.detail);
  }

  /**
   * recordClock stores the clockInfo of the statement just accepted as the AK's last (setAkClock, a
   * compare-and-set on the value checkCertify read). When another statement of the same AK was accepted
   * meanwhile, it reads the binding again and checks once more: the later of two racing statements is
   * recorded, and one from before the other's is refused even though its nonce was spent.
   */
  private async recordClock(deviceId: string, ak: AkBindingRecord, next: ClockCounters): Promise<void> {
    const value = { clock: next.clock, resetCount: next.resetCount, restartCount: next.restartCount };
    let last = ak.lastClock;
    for (let attempt = 0; attempt < 8; attempt++) {
      if (await this.store.setAkClock(ak.akName, last, value)) return;
      const now = await this.store.getAk(ak.akName);
      if (!now) return this.refuse(deviceId, 'ak-unregistered', 'the AK binding went away during the check');
      last = now.lastClock;
      const history = checkClockHistory(last, value, 'statement');
      if (!history.ok) return this.refuse(deviceId, history.check, history.detail);
    }
    throw new DeviceCaError('conflict', 'attestation statements of this AK keep arriving at once; try again');
  }
}
