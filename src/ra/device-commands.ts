import * as crypto from 'node:crypto';
import { openSignerCa, signerCaCertificate, signerCaChain } from '../ca/signer-ca';
import { buildDeviceCommand, DEVICE_NONCE_RE, DeviceCommand, DeviceCommandKind } from '../cms/device-command';
import { readDeviceCommandReport } from '../cms/device-command-report';
import { Config } from '../config/schema';
import { DeviceCaError } from '../errors/device-ca-error';
import { KeyBackend } from '../keys/key-backend';
import { collectItems } from '../store/paging';
import { AuditRecord, CertificateRecord, DeviceRecord, RevocationReason, Store } from '../store/store';
import { OPERATOR, Scope } from './device-lifecycle';
import { deviceCertificateRecord, NOT_DEVICE_PROFILES } from './device-certificate-record';
import { FirmwareRequester } from './firmware-distribution';

/** COMMAND_VALIDITY_MS: how long a device command stays good (the agent refuses it after expiresAt). */
export const COMMAND_VALIDITY_MS = 7 * 24 * 3600_000;

/**
 * LIFECYCLE_REVOCATIONS: the revocation reasons of the lifecycle steps a command carries out on the device
 * (retire: cessationOfOperation; release and transfer: affiliationChanged). A certificate revoked for one of
 * them still identifies its device to fetch and answer a command: the key holder is still the device, and
 * the command is what makes it let go. Any other reason (keyCompromise above all) does not.
 */
const LIFECYCLE_REVOCATIONS: readonly RevocationReason[] = ['cessationOfOperation', 'affiliationChanged'];

/**
 * DeviceCommandState: where a device's current command stands, for `devices show` and the admin API.
 * pending: made, not fetched yet; fetched: the agent has it (signed over its nonce); done / failed: the
 * agent's signed report; expired: no report, and its validity window is over.
 */
export interface DeviceCommandState {
  command: DeviceCommandKind;
  nonce: string;
  issuedAt: Date;
  expiresAt: Date;
  newOwner: string | null;
  state: 'pending' | 'fetched' | 'done' | 'failed' | 'expired';
  /** fetches: how often the agent fetched it; lastFetchedAt: when last */
  fetches: number;
  lastFetchedAt: Date | null;
  reportedAt: Date | null;
  /** reason: the agent's reason, when it failed */
  reason: string | null;
  /** evicted: the TPM handles the agent says it evicted */
  evicted: string[] | null;
}

/** ReportOutcome: a report recorded (HTTP 201) or the same report again (200). */
export interface ReportOutcome {
  outcome: 'recorded' | 'repeat';
  state: DeviceCommandState;
}

type CommandStore = Pick<Store, 'listCertificates' | 'getDevice' | 'getCertificate' | 'listAudit' | 'appendAudit'> & Parameters<typeof openSignerCa>[2];

/**
 * DeviceCommands decides who gets a signed device command (cms/device-command.ts) and for which device,
 * how the device fetches it, and what its report is worth.
 *
 * Making one (`issue`, CLI `devices command`, admin `POST /devices/{id}/commands`): the operator only (an
 * owner token is 'forbidden': the command ends a device's identity); the device exists ('not-found'); a
 * retire command only for a device the retire flow already retired (`devices retire`: its certificates
 * revoked), so the command carries out on the device what the CA has decided, never the decision itself
 * ('forbidden' naming the state); a transfer command only for a device released to a new owner
 * (`devices release --to`: transferring), naming that owner. Each is audited `device.command.issued`
 * (subject: the device id) before it is handed out. The last one made is the device's pending command:
 * the audit chain holds it, as it holds attestation verdicts (device-attestation-facts.ts); no second copy.
 *
 * Fetching it (`fetch`, HTTPS `GET /device-command?nonce=`): the device authenticates with its TLS client
 * certificate, a device certificate this CA recorded, within its validity, and either valid or revoked by
 * the lifecycle step the command carries out (LIFECYCLE_REVOCATIONS): a retired or released device has no
 * valid certificate left, and its last one is how it proves it is the device the command is for. Its
 * command is answered only while still in force (retire: the device is retired; transfer: transferring to,
 * or claimed by, the command's new owner); otherwise there is nothing to fetch (null). The command is
 * signed then, over the device's nonce, and audited `device.command.fetched` with the certificate serial.
 *
 * Its report (`report`, HTTPS `POST /device-command/report`): a SignedData made by the device key
 * (cms/device-command-report.ts), no TLS client certificate needed (after a retire the key is gone; the
 * agent signs the report before it evicts the key and posts it after). Accepted when signed by the
 * certificate that fetched the command (or, after a transfer, a valid certificate the device was issued
 * since), for the device's current command and a device nonce it was fetched with. Audited
 * `device.command.reported`; the same report again is a 'repeat', another one a 'conflict'.
 */
export class DeviceCommands {
  constructor(
    private readonly cfg: Config,
    private readonly store: CommandStore,
    private readonly keys: KeyBackend,
    private readonly now: () => Date = () => new Date(),
    /**
     * opts.rootKey: may make the firmware signer CA (with the root key) when there is none yet: the CLI
     * only. `serve` never opens the root key, so the service refuses a command until a signer CA exists.
     */
    private readonly opts: { rootKey: boolean } = { rootKey: true },
  ) {}

  async issue(a: { deviceId: string; command: DeviceCommandKind; actor: string; scope?: Scope }): Promise<{ der: Buffer; command: DeviceCommand }> {
    if ((a.scope ?? OPERATOR).kind !== 'operator') throw new DeviceCaError('forbidden', 'operator scope required');
    const device = await this.store.getDevice(a.deviceId);
    if (!device) throw new DeviceCaError('not-found', `device ${a.deviceId} is not registered`);
    if (a.command === 'retire' && device.state !== 'retired')
      throw new DeviceCaError('forbidden', `device ${a.deviceId} is ${device.state}: retire it first (devices retire ${a.deviceId}); the command tells its agent to delete what is left`);
    if (a.command === 'transfer' && (device.state !== 'transferring' || !device.pendingOwner))
      throw new DeviceCaError('forbidden', `device ${a.deviceId} is ${device.state}: release it first (devices release ${a.deviceId} --to <owner>); the command tells its agent to enroll again`);
    const now = this.now();
    const command: DeviceCommand = {
      command: a.command,
      device: device.id,
      nonce: crypto.randomBytes(16).toString('hex'),
      issuedAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + COMMAND_VALIDITY_MS).toISOString(),
      ...(a.command === 'transfer' ? { newOwner: device.pendingOwner as string } : {}),
    };
    const der = await this.sign(command, now);
    await this.store.appendAudit({
      type: 'device.command.issued',
      actor: a.actor,
      subject: device.id,
      data: { command: command.command, nonce: command.nonce, expiresAt: command.expiresAt, ...(command.newOwner ? { newOwner: command.newOwner } : {}) },
    });
    return { der, command };
  }

  /**
   * state: the device's current command (the last one made) and where it stands, or null when none was
   * ever made. The caller has checked that its scope may see the device.
   */
  async state(deviceId: string): Promise<DeviceCommandState | null> {
    return (await this.current(deviceId)).state;
  }

  /**
   * fetch answers a device's `GET /device-command?nonce=`: its pending command signed over `deviceNonce`,
   * or null when it has none in force (see the class comment for the rule). 'bad-request' for a malformed
   * nonce, 'unauthenticated' without a client certificate, 'forbidden' for one that does not identify a device.
   */
  async fetch(a: { requester: FirmwareRequester; deviceNonce: string }): Promise<{ der: Buffer; command: DeviceCommand } | null> {
    if (!DEVICE_NONCE_RE.test(a.deviceNonce)) throw new DeviceCaError('bad-request', 'nonce: 16 to 64 random bytes in lowercase hex');
    const leaf = a.requester.clientCertificate;
    if (!leaf) throw new DeviceCaError('unauthenticated', 'a device fetches its command over HTTPS with its device certificate (TLS client authentication)');
    const now = this.now();
    const cert = await this.deviceCertificate(leaf, now, true);
    const deviceId = cert.deviceId as string;
    const { state } = await this.current(deviceId);
    const device = await this.store.getDevice(deviceId);
    if (!state || !device || (state.state !== 'pending' && state.state !== 'fetched') || !inForce(state, device)) return null;
    const command: DeviceCommand = {
      command: state.command,
      device: deviceId,
      nonce: state.nonce,
      deviceNonce: a.deviceNonce,
      issuedAt: now.toISOString(),
      expiresAt: state.expiresAt.toISOString(),
      ...(state.newOwner !== null ? { newOwner: state.newOwner } : {}),
    };
    const der = await this.sign(command, now);
    await this.store.appendAudit({
      type: 'device.command.fetched',
      actor: `device:${deviceId}`,
      subject: deviceId,
      data: { command: command.command, nonce: command.nonce, deviceNonce: a.deviceNonce, serial: cert.serial },
    });
    return { der, command };
  }

  /** report records a device's signed report on the command it fetched (see the class comment for the rule). */
  async report(body: Buffer): Promise<ReportOutcome> {
    const { report: r, signerCertificate } = readDeviceCommandReport(body);
    const now = this.now();
    const cert = await this.deviceCertificate(signerCertificate, now, false);
    if (cert.deviceId !== r.device) throw new DeviceCaError('forbidden', `the report is for device ${JSON.stringify(r.device)} but signed by a certificate of device ${cert.deviceId}`);
    const { state, records } = await this.current(r.device);
    if (!state || state.nonce !== r.nonce || state.command !== r.command)
      throw new DeviceCaError('conflict', `the report answers ${r.command} command ${r.nonce}, which is not device ${r.device}'s current command`);
    const fetch = records.find((x) => x.type === 'device.command.fetched' && x.data.nonce === r.nonce && x.data.deviceNonce === r.deviceNonce);
    if (!fetch) throw new DeviceCaError('conflict', `device ${r.device} never fetched command ${r.nonce} with that device nonce`);
    const sameKey = fetch.data.serial === cert.serial || (cert.status === 'valid' && cert.createdAt.getTime() >= fetch.at.getTime());
    if (!sameKey) throw new DeviceCaError('forbidden', `the report is signed by certificate ${cert.serial}, not by the one that fetched the command (${String(fetch.data.serial)})`);
    const reported = records.find((x) => x.type === 'device.command.reported' && x.data.nonce === r.nonce);
    if (reported) {
      if (reported.data.outcome === r.outcome && reported.data.deviceNonce === r.deviceNonce) return { outcome: 'repeat', state };
      throw new DeviceCaError('conflict', `device ${r.device} already reported command ${r.nonce} ${String(reported.data.outcome)}`);
    }
    // one report per command, whichever of two concurrent ones is first: a record created only if it does
    // not exist yet (compare-and-set), with the audit record in the same write
    const report = { outcome: r.outcome, deviceNonce: r.deviceNonce };
    try {
      await this.store.saveCaState(`device-command-report:${r.nonce}`, report, 0, {
        type: 'device.command.reported',
        actor: `device:${r.device}`,
        subject: r.device,
        data: {
          command: r.command,
          nonce: r.nonce,
          deviceNonce: r.deviceNonce,
          outcome: r.outcome,
          serial: cert.serial,
          ...(r.reason !== undefined ? { reason: r.reason } : {}),
          ...(r.evicted !== undefined ? { evicted: r.evicted } : {}),
        },
      });
    } catch (e) {
      if (!(e instanceof DeviceCaError && e.code === 'conflict')) throw e;
      const first = (await this.store.getCaState(`device-command-report:${r.nonce}`))?.value as typeof report | undefined;
      if (first && first.outcome === r.outcome && first.deviceNonce === r.deviceNonce) return { outcome: 'repeat', state: (await this.current(r.device)).state as DeviceCommandState };
      throw new DeviceCaError('conflict', `device ${r.device} already reported command ${r.nonce} ${String(first?.outcome ?? '')}`);
    }
    return { outcome: 'recorded', state: (await this.current(r.device)).state as DeviceCommandState };
  }

  private async sign(command: DeviceCommand, now: Date): Promise<Buffer> {
    if (!this.opts.rootKey && !(await signerCaCertificate(this.store)))
      throw new DeviceCaError('conflict', 'there is no firmware signer CA yet: it is made with the root key by the CLI (device-ca signers add, or device-ca devices command)');
    const ca = await openSignerCa(this.cfg, this.keys, this.store, now);
    return buildDeviceCommand(command, { certificate: ca.der, key: ca.key }, [ca.der, ...signerCaChain(ca)], now);
  }

  /**
   * deviceCertificate: the record of a certificate this CA issued to a device (deviceCertificateRecord),
   * valid or revoked by a lifecycle step (LIFECYCLE_REVOCATIONS); to fetch, a revoked one must also be the
   * device's newest.
   * Anything else is 'forbidden', saying why.
   */
  private async deviceCertificate(der: Buffer | crypto.X509Certificate, now: Date, fetching: boolean): Promise<CertificateRecord> {
    const rec = await deviceCertificateRecord(this.store, der, now, { name: 'the certificate', acceptRevoked: LIFECYCLE_REVOCATIONS });
    // a revoked certificate fetches for the device only while it is the device's last: an earlier owner's
    // certificate (revoked affiliationChanged at that owner's release) must not fetch a command made for the
    // owner after it. A report needs no such rule: it must be signed by the certificate that fetched (or a
    // valid one issued since), and after a transfer the fetching certificate is no longer the last.
    if (rec.status !== 'valid' && fetching) {
      const deviceId = rec.deviceId;
      const all = await collectItems((after, want) => this.store.listCertificates({ deviceId, after, limit: want }));
      if (all.items.some((c) => c.serial !== rec.serial && !NOT_DEVICE_PROFILES.includes(c.profile) && c.createdAt.getTime() > rec.createdAt.getTime()))
        throw new DeviceCaError('forbidden', 'the certificate is revoked and the device has a newer one: only its last certificate may fetch or answer its command');
    }
    return rec;
  }

  private current(deviceId: string): Promise<{ state: DeviceCommandState | null; records: AuditRecord[] }> {
    return currentCommand(this.store, deviceId, this.now());
  }
}

/**
 * currentCommand: a device's last command (the last `device.command.issued` of its audit records), the
 * records about it since, and its state at `now`; null when none was made. `devices show` reads it too.
 */
export async function currentCommand(store: Pick<Store, 'listAudit'>, deviceId: string, now: Date): Promise<{ state: DeviceCommandState | null; records: AuditRecord[] }> {
  const all = (await collectItems((after, want) => store.listAudit({ subject: deviceId, after, limit: want }))).items;
  let from = -1;
  for (let i = all.length - 1; i >= 0 && from < 0; i--) if (all[i].type === 'device.command.issued') from = i;
  if (from < 0) return { state: null, records: [] };
  const issued = all[from];
  const nonce = String(issued.data.nonce);
  const records = all.slice(from).filter((x) => x.type.startsWith('device.command.') && x.data.nonce === nonce);
  const fetches = records.filter((x) => x.type === 'device.command.fetched');
  const reported = records.find((x) => x.type === 'device.command.reported');
  const expiresAt = new Date(String(issued.data.expiresAt));
  const state: DeviceCommandState = {
    command: issued.data.command as DeviceCommandKind,
    nonce,
    issuedAt: issued.at,
    expiresAt,
    newOwner: typeof issued.data.newOwner === 'string' ? issued.data.newOwner : null,
    state: reported ? (reported.data.outcome === 'done' ? 'done' : 'failed') : now > expiresAt ? 'expired' : fetches.length ? 'fetched' : 'pending',
    fetches: fetches.length,
    lastFetchedAt: fetches.length ? fetches[fetches.length - 1].at : null,
    reportedAt: reported ? reported.at : null,
    reason: reported && typeof reported.data.reason === 'string' ? reported.data.reason : null,
    evicted: reported && Array.isArray(reported.data.evicted) ? (reported.data.evicted as string[]) : null,
  };
  return { state, records };
}

/**
 * inForce: the lifecycle step the command carries out still stands: retire, the device is retired;
 * transfer, it is transferring to the command's new owner or was claimed by it and has not enrolled yet
 * (the agent needs the claim's secret to enroll again, so it usually fetches after the claim).
 */
function inForce(s: DeviceCommandState, d: DeviceRecord): boolean {
  if (s.command === 'retire') return d.state === 'retired';
  return (d.state === 'transferring' && d.pendingOwner === s.newOwner) || (d.state === 'registered' && d.owner === s.newOwner);
}
