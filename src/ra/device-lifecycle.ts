import { AuditLog } from '../audit/audit-log';
import { Config } from '../config/schema';
import { DeviceCaError } from '../errors/device-ca-error';
import { everyItem } from '../store/paging';
import {
  isAttestationStore,
  AuditRecord,
  CertificateChange,
  CertificateRecord,
  DeviceCounts,
  DeviceRecord,
  DeviceState,
  MAX_PAGE_LIMIT,
  Page,
  PageRequest,
  REVOCATION_REASONS,
  RevocationReason,
  Store,
} from '../store/store';
import { hashSecret, newEnrollmentSecret, serverSecretKey } from './enrollment-secret';
import { DeviceAttestationFacts, deviceAttestationFacts } from './device-attestation-facts';
import { DEVICE_ID } from './registration-authority';

/** StatusListener hears of every certificate status change, to refresh CRLs and OCSP caches at once. */
export type StatusListener = (changes: CertificateChange[]) => void;

/** Scope limits what an admin caller sees: everything (operator) or one owner's devices. */
export type Scope = { kind: 'operator' } | { kind: 'owner'; owner: string };
export const OPERATOR: Scope = { kind: 'operator' };

/**
 * DeviceLifecycle decides every change after enrollment: suspend/resume (certificateHold and its
 * release), transfer to a new owner (two-sided between owners: release, then claim; one step for an
 * operator), retire (revoke cessationOfOperation, tombstone), and revocation of single certificates.
 * Illegal transitions are 'conflict'; a device outside the caller's scope is 'not-found', as if it did
 * not exist.
 */
export class DeviceLifecycle {
  constructor(
    private readonly cfg: Config,
    private readonly store: Store,
    private readonly onChange: StatusListener = () => undefined,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /**
   * device returns a device the scope may see: an operator sees every device, an owner its own, and the
   * new owner a `transferring` device was released to sees that device too (it must be able to claim it).
   * Anything else is 'not-found', worded as for an id that does not exist.
   */
  /** attestation: a device's TPM facts (AK bindings, last verdict, attested certificates), for whoever may see the device. */
  async attestation(id: string, scope: Scope): Promise<DeviceAttestationFacts> {
    const d = await this.device(id, scope);
    return deviceAttestationFacts(this.store, d.id);
  }

  async device(id: string, scope: Scope): Promise<DeviceRecord> {
    const d = DEVICE_ID.test(id) ? await this.store.getDevice(id) : null;
    const visible = d && (scope.kind === 'operator' || d.owner === scope.owner || (d.state === 'transferring' && d.pendingOwner === scope.owner));
    if (!d || !visible) throw new DeviceCaError('not-found', `no device ${id}`);
    return d;
  }

  /**
   * owned returns a device the scope may change: the operator's or its owner's. The new owner of a
   * `transferring` device sees it but may only claim it: anything else is 'forbidden' until it does.
   */
  private async owned(id: string, scope: Scope): Promise<DeviceRecord> {
    const d = await this.device(id, scope);
    if (scope.kind === 'owner' && d.owner !== scope.owner) throw new DeviceCaError('forbidden', `device ${id} is being transferred to ${scope.owner}: claim it first`);
    return d;
  }

  /** listDevices: an owner scope sees its own devices whatever owner filter it asks for. */
  listDevices(filter: { owner?: string; state?: DeviceState; idPrefix?: string; label?: string } & PageRequest, scope: Scope): Promise<Page<DeviceRecord>> {
    return this.store.listDevices({ ...filter, owner: scope.kind === 'owner' ? scope.owner : filter.owner });
  }

  /** countDevices: the scope's devices by state and its owners with most devices, as listDevices would list them (an owner scope: its own). */
  countDevices(scope: Scope, topOwners: number): Promise<DeviceCounts> {
    return this.store.countDevices({ owner: scope.kind === 'owner' ? scope.owner : undefined, topOwners });
  }

  /** listCertificates: a device filter outside the scope is 'not-found'; an owner scope sees its own devices' only. */
  async listCertificates(filter: { deviceId?: string; status?: 'valid' | 'revoked' } & PageRequest, scope: Scope): Promise<Page<CertificateRecord>> {
    if (filter.deviceId !== undefined) await this.device(filter.deviceId, scope);
    return this.store.listCertificates({ ...filter, owner: scope.kind === 'owner' ? scope.owner : undefined });
  }

  /**
   * deviceAudit: the audit records about a device, oldest first, for a scope that may change it (its owner
   * or the operator; the new owner of a transferring device sees them once it has claimed it). An owner
   * sees its own ownership period only: from the record that made it the owner (the last `device.claimed`
   * or `device.transferred` to it; the whole history when it registered the device), never what a previous
   * owner did with the device. The operator sees everything.
   */
  async deviceAudit(id: string, scope: Scope, page: PageRequest): Promise<Page<AuditRecord>> {
    await this.owned(id, scope);
    if (scope.kind === 'operator') return this.store.listAudit({ subject: id, ...page });
    const start = await this.ownershipStart(id, scope.owner);
    const after = page.after === undefined ? start - 1 : /^\d{1,15}$/.test(page.after) ? Math.max(Number(page.after), start - 1) : NaN;
    if (Number.isNaN(after)) throw new DeviceCaError('bad-request', 'after: not a cursor of this list');
    return this.store.listAudit({ subject: id, limit: page.limit, after: String(after) });
  }

  /**
   * ownershipStart: the seq of the record that made `owner` the device's owner this time (1 when no record
   * did: it registered the device). Reads the device's own records (the store's subject index), which a
   * device has tens of, not the log.
   */
  private async ownershipStart(id: string, owner: string): Promise<number> {
    let start = 1;
    for await (const r of everyItem((after) => this.store.listAudit({ subject: id, after, limit: MAX_PAGE_LIMIT })))
      if ((r.type === 'device.claimed' || r.type === 'device.transferred') && r.data.to === owner) start = r.seq;
    return start;
  }

  /** ownerFor decides the owner of a device an admin caller registers: an owner scope registers for itself only. */
  ownerFor(requested: string | undefined, scope: Scope): string | undefined {
    if (scope.kind === 'operator') return requested;
    if (requested !== undefined && requested !== scope.owner) throw new DeviceCaError('forbidden', 'an owner token registers devices for its own owner only');
    return scope.owner;
  }

  /** requireOperator: the approval queue and other fleet-wide actions are the operator's. */
  requireOperator(scope: Scope): void {
    if (scope.kind !== 'operator') throw new DeviceCaError('forbidden', 'operator scope required');
  }

  async certificate(serial: string, scope: Scope): Promise<CertificateRecord> {
    const s = normalizeSerial(serial);
    const c = s ? await this.store.getCertificate(s) : null;
    if (!c) throw new DeviceCaError('not-found', `no certificate with serial ${serial}`);
    if (scope.kind === 'owner') {
      const d = c.deviceId ? await this.store.getDevice(c.deviceId) : null;
      if (!d || d.owner !== scope.owner) throw new DeviceCaError('not-found', `no certificate with serial ${serial}`);
    }
    return c;
  }

  async suspend(id: string, scope: Scope, actor: string): Promise<{ device: DeviceRecord; changed: CertificateChange[] }> {
    const d = await this.owned(id, scope);
    return this.apply({
      deviceId: id,
      expect: { owner: d.owner },
      fromStates: ['active', 'registered'],
      toState: 'suspended',
      revoke: { reason: 'certificateHold', at: this.now(), holdOnly: true },
      cancelRequests: true,
      audit: AuditLog.input('device.suspended', actor, id, {}),
    });
  }

  async resume(id: string, scope: Scope, actor: string): Promise<{ device: DeviceRecord; changed: CertificateChange[] }> {
    const d = await this.owned(id, scope);
    // back to active only if a certificate comes back from hold (a transferred device may have none)
    const now = this.now();
    let usable = false;
    // every page: a device may hold more certificates than one page, and the usable one may be on any of them
    for await (const c of everyItem((after) => this.store.listCertificates({ deviceId: id, after, limit: MAX_PAGE_LIMIT }))) {
      if (c.notAfter > now && (c.status === 'valid' || c.revocationReason === 'certificateHold')) {
        usable = true;
        break;
      }
    }
    return this.apply({
      deviceId: id,
      expect: { owner: d.owner },
      fromStates: ['suspended'],
      toState: usable ? 'active' : 'registered',
      releaseHolds: true,
      audit: AuditLog.input('device.resumed', actor, id, {}),
    });
  }

  /**
   * transfer is the operator's one-step ownership transfer (release and claim at once): old certificates
   * are revoked (affiliationChanged) and credentials dropped, the new owner is set and a new one-time secret
   * is returned. An owner cannot do this alone: it releases, and the new owner claims.
   */
  async transfer(
    id: string,
    newOwner: string,
    scope: Scope,
    actor: string,
    secretTtlSeconds?: number,
  ): Promise<{ device: DeviceRecord; changed: CertificateChange[]; secret: string; expiresAt: Date }> {
    const before = await this.owned(id, scope);
    this.requireOperator(scope);
    checkOwnerName(newOwner);
    const { secret, expiresAt, hash } = await this.newSecret(secretTtlSeconds);
    const fromStates: DeviceState[] = ['registered', 'active', 'suspended', 'transferring'];
    await this.revokeAks(before, fromStates, false, actor);
    const r = await this.apply({
      deviceId: id,
      expect: { owner: before.owner },
      fromStates,
      toState: 'registered',
      newOwner,
      pendingOwner: null,
      revoke: { reason: 'affiliationChanged', at: this.now() },
      deleteSecrets: true,
      addSecret: { hash, expiresAt },
      cancelRequests: true,
      audit: AuditLog.input('device.transferred', actor, id, { from: before.owner, to: newOwner }),
    });
    return { ...r, secret, expiresAt };
  }

  /**
   * release is the first half of a transfer between owners: the current owner (or an operator) names the
   * new owner. The device's certificates are revoked (affiliationChanged) and its secrets and pending
   * requests dropped at once, so nothing issued under the old owner keeps working; the device stays the
   * old owner's, `transferring`, and cannot enroll until the new owner claims it (or the release is
   * cancelled). No credential for the new owner exists before its claim.
   */
  async release(id: string, newOwner: string, scope: Scope, actor: string): Promise<{ device: DeviceRecord; changed: CertificateChange[] }> {
    const before = await this.owned(id, scope);
    checkOwnerName(newOwner);
    if (before.owner === newOwner) throw new DeviceCaError('conflict', `device ${id} already belongs to ${newOwner}`);
    const fromStates: DeviceState[] = ['registered', 'active', 'suspended'];
    await this.revokeAks(before, fromStates, false, actor);
    const r = await this.apply({
      deviceId: id,
      expect: { owner: before.owner },
      fromStates,
      toState: 'transferring',
      pendingOwner: newOwner,
      revoke: { reason: 'affiliationChanged', at: this.now() },
      deleteSecrets: true,
      cancelRequests: true,
      audit: AuditLog.input('device.released', actor, id, { from: before.owner, to: newOwner }),
    });
    return r;
  }

  /**
   * claim is the second half: the new owner named in the release (or an operator, on its behalf) takes the
   * device. Only now does the device get a credential for the new owner: a one-time secret, returned once
   * to the claimer; its next enrollment carries the new owner in its certificate.
   */
  async claim(id: string, scope: Scope, actor: string, secretTtlSeconds?: number): Promise<{ device: DeviceRecord; changed: CertificateChange[]; secret: string; expiresAt: Date }> {
    const before = await this.device(id, scope);
    if (before.state !== 'transferring') throw new DeviceCaError('conflict', `device ${id} is ${before.state}, not transferring`);
    if (scope.kind === 'owner' && before.pendingOwner !== scope.owner) throw new DeviceCaError('forbidden', `device ${id} was released to another owner; only that owner or an operator may claim it`);
    const { secret, expiresAt, hash } = await this.newSecret(secretTtlSeconds);
    const r = await this.apply({
      deviceId: id,
      expect: { owner: before.owner, pendingOwner: before.pendingOwner },
      fromStates: ['transferring'],
      toState: 'registered',
      newOwner: before.pendingOwner,
      pendingOwner: null,
      deleteSecrets: true,
      addSecret: { hash, expiresAt },
      audit: AuditLog.input('device.claimed', actor, id, { from: before.owner, to: before.pendingOwner }),
    });
    return { ...r, secret, expiresAt };
  }

  /**
   * cancelRelease takes a release back before the claim: the releasing owner (or an operator) keeps the
   * device, `registered`. Its certificates stay revoked (a revocation is never undone), so a new one-time
   * secret is returned to the canceller, the only way back for the device short of an operator.
   */
  async cancelRelease(id: string, scope: Scope, actor: string, secretTtlSeconds?: number): Promise<{ device: DeviceRecord; changed: CertificateChange[]; secret: string; expiresAt: Date }> {
    const before = await this.owned(id, scope);
    if (before.state !== 'transferring') throw new DeviceCaError('conflict', `device ${id} is ${before.state}, not transferring`);
    const { secret, expiresAt, hash } = await this.newSecret(secretTtlSeconds);
    const r = await this.apply({
      deviceId: id,
      expect: { owner: before.owner, pendingOwner: before.pendingOwner },
      fromStates: ['transferring'],
      toState: 'registered',
      pendingOwner: null,
      deleteSecrets: true,
      addSecret: { hash, expiresAt },
      audit: AuditLog.input('device.release-cancelled', actor, id, { owner: before.owner, to: before.pendingOwner }),
    });
    return { ...r, secret, expiresAt };
  }

  /**
   * replaceSecret gives a registered or active device of the caller's scope a new one-time enrollment secret,
   * returned once: for a device whose secret was lost or leaked before it enrolled, or an active device that
   * must enroll afresh (its certificates stay valid until the next enrollment supersedes them). Every earlier
   * secret is deleted and pending approval requests are cancelled (they were made with the old secret), in
   * the one store transaction that also writes the audit record. A suspended, transferring or retired device
   * is a 'conflict': each has its own way back (resume, claim or cancel-release, none), which a secret would bypass.
   */
  async replaceSecret(id: string, scope: Scope, actor: string, secretTtlSeconds?: number): Promise<{ device: DeviceRecord; changed: CertificateChange[]; secret: string; expiresAt: Date }> {
    const before = await this.owned(id, scope);
    if (before.state !== 'registered' && before.state !== 'active') throw new DeviceCaError('conflict', `device ${id} is ${before.state}: a new secret is only for a registered or active device`);
    const { secret, expiresAt, hash } = await this.newSecret(secretTtlSeconds);
    const r = await this.apply({
      deviceId: id,
      expect: { owner: before.owner },
      fromStates: [before.state],
      toState: before.state,
      deleteSecrets: true,
      addSecret: { hash, expiresAt },
      cancelRequests: true,
      audit: AuditLog.input('device.secret-replaced', actor, id, { expiresAt: expiresAt.toISOString() }),
    });
    return { ...r, secret, expiresAt };
  }

  /**
   * retire ends a device: everything revoked, credentials deleted; the id stays as a tombstone. Its TPM
   * attestation keys are revoked and its EKs blocked, so the same TPM can never register again (issue 9).
   */
  async retire(id: string, scope: Scope, actor: string): Promise<{ device: DeviceRecord; changed: CertificateChange[] }> {
    const d = await this.owned(id, scope);
    const fromStates: DeviceState[] = ['registered', 'active', 'suspended', 'transferring'];
    await this.revokeAks(d, fromStates, true, actor);
    const r = await this.apply({
      deviceId: id,
      expect: { owner: d.owner },
      fromStates,
      toState: 'retired',
      pendingOwner: null,
      revoke: { reason: 'cessationOfOperation', at: this.now() },
      deleteSecrets: true,
      cancelRequests: true,
      audit: AuditLog.input('device.retired', actor, id, {}),
    });
    return r;
  }

  /**
   * revokeAks ends a device's TPM attestation key bindings (stores without attestation state have none;
   * a device without AKs is left alone) BEFORE the lifecycle change that calls for it commits: the AK
   * state lives beside, not inside, the device change's transaction, and a crash between the two must
   * fail closed. Revoked first, a crash leaves the device unchanged with its AKs gone, and the operator's
   * retry completes the change; revoked after, a crash left a retired device whose EK was never blocked,
   * and no retry could reach it (a retired device cannot be retired again).
   * After a transfer or release the new owner's device must register an AK afresh (blockEks false: the
   * same TPM may); after retirement the EKs are blocked for good. A device not in one of `fromStates`
   * is left alone: the change will be refused as a conflict anyway.
   */
  private async revokeAks(d: DeviceRecord, fromStates: DeviceState[], blockEks: boolean, actor: string): Promise<void> {
    if (!fromStates.includes(d.state)) return;
    // a device that never registered an AK (most, without TPM attestation) gets no audit record for it
    if (!isAttestationStore(this.store) || (await this.store.aksOfDevice(d.id)).length === 0) return;
    await this.store.revokeAks(d.id, blockEks, this.now(), AuditLog.input('tpm.ak.revoked', actor, d.id, { blockEks }));
  }

  /** secretKey: the data directory's server key, read on the first secret this lifecycle issues. */
  private secretKey(): Buffer {
    return serverSecretKey(this.cfg)();
  }

  private async newSecret(ttlSeconds?: number): Promise<{ secret: string; expiresAt: Date; hash: string }> {
    const ttl = ttlSeconds ?? this.cfg.enrollment.secretTtl;
    if (!(ttl > 0)) throw new DeviceCaError('bad-request', 'secret TTL must be positive');
    const secret = newEnrollmentSecret();
    const expiresAt = new Date(this.now().getTime() + ttl * 1000);
    if (Number.isNaN(expiresAt.getTime())) throw new DeviceCaError('bad-request', 'secret TTL is out of range');
    return { secret, expiresAt, hash: hashSecret(secret, this.secretKey()) };
  }

  /** revoke one certificate. Idempotent; a held certificate may be revoked for good. */
  async revoke(serial: string, reason: string, scope: Scope, actor: string, invalidityDate?: Date): Promise<{ cert: CertificateRecord; changed: boolean }> {
    if (!REVOCATION_REASONS.includes(reason as RevocationReason)) throw new DeviceCaError('bad-request', `reason must be one of: ${REVOCATION_REASONS.join(', ')}`);
    const c = await this.certificate(serial, scope);
    const at = this.now();
    const r = await this.store.revokeCertificate(
      c.serial,
      reason as RevocationReason,
      at,
      invalidityDate ?? null,
      AuditLog.input('certificate.revoked', actor, c.serial, { reason, device: c.deviceId }),
    );
    if (r.changed) this.onChange([{ serial: c.serial, issuer: c.issuer, shard: c.shard, status: 'revoked', reason: reason as RevocationReason }]);
    return r;
  }

  private async apply(change: Parameters<Store['applyDeviceChange']>[0]): Promise<{ device: DeviceRecord; changed: CertificateChange[] }> {
    const r = await this.store.applyDeviceChange(change);
    if (r.changed.length) this.onChange(r.changed);
    return r;
  }
}

/** checkOwnerName: owners are written into certificates as O=, so printable and bounded. */
function checkOwnerName(owner: string): void {
  if (!/^[^\u0000-\u001f]{1,128}$/.test(owner)) throw new DeviceCaError('bad-request', 'owner must be 1-128 printable characters');
}

/** normalizeSerial accepts hex with or without colons, 0x or leading zeros; null when not hex. */
export function normalizeSerial(s: string): string | null {
  const hex = s.trim().toLowerCase().replace(/^0x/, '').replace(/:/g, '');
  if (!/^[0-9a-f]{1,40}$/.test(hex)) return null;
  return hex.replace(/^0+(?=.)/, '');
}

export type { DeviceState };
