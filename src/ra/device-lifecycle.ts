import { AuditLog } from '../audit/audit-log';
import { Config } from '../config/schema';
import { DeviceCaError } from '../errors/device-ca-error';
import { everyItem } from '../store/paging';
import { CertificateChange, CertificateRecord, DeviceRecord, DeviceState, MAX_PAGE_LIMIT, Page, PageRequest, REVOCATION_REASONS, RevocationReason, Store } from '../store/store';
import { hashSecret, newEnrollmentSecret } from './enrollment-secret';
import { DEVICE_ID } from './registration-authority';

/** StatusListener hears of every certificate status change, to refresh CRLs and OCSP caches at once. */
export type StatusListener = (changes: CertificateChange[]) => void;

/** Scope limits what an admin caller sees: everything (operator) or one owner's devices. */
export type Scope = { kind: 'operator' } | { kind: 'owner'; owner: string };
export const OPERATOR: Scope = { kind: 'operator' };

/**
 * DeviceLifecycle decides every change after enrollment: suspend/resume (certificateHold and its
 * release), transfer to a new owner (revoke affiliationChanged, new secret), retire (revoke
 * cessationOfOperation, tombstone), and revocation of single certificates. Illegal transitions are
 * 'conflict'; a device outside the caller's scope is 'not-found', as if it did not exist.
 */
export class DeviceLifecycle {
  constructor(
    private readonly cfg: Config,
    private readonly store: Store,
    private readonly onChange: StatusListener = () => undefined,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** device returns a device the scope may see. */
  async device(id: string, scope: Scope): Promise<DeviceRecord> {
    const d = DEVICE_ID.test(id) ? await this.store.getDevice(id) : null;
    if (!d || (scope.kind === 'owner' && d.owner !== scope.owner)) throw new DeviceCaError('not-found', `no device ${id}`);
    return d;
  }

  /** listDevices: an owner scope sees its own devices whatever owner filter it asks for. */
  listDevices(filter: { owner?: string; state?: DeviceState } & PageRequest, scope: Scope): Promise<Page<DeviceRecord>> {
    return this.store.listDevices({ ...filter, owner: scope.kind === 'owner' ? scope.owner : filter.owner });
  }

  /** listCertificates: a device filter outside the scope is 'not-found'; an owner scope sees its own devices' only. */
  async listCertificates(filter: { deviceId?: string; status?: 'valid' | 'revoked' } & PageRequest, scope: Scope): Promise<Page<CertificateRecord>> {
    if (filter.deviceId !== undefined) await this.device(filter.deviceId, scope);
    return this.store.listCertificates({ ...filter, owner: scope.kind === 'owner' ? scope.owner : undefined });
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
    await this.device(id, scope);
    return this.apply({
      deviceId: id,
      fromStates: ['active', 'registered'],
      toState: 'suspended',
      revoke: { reason: 'certificateHold', at: this.now(), holdOnly: true },
      cancelRequests: true,
      audit: AuditLog.input('device.suspended', actor, id, {}),
    });
  }

  async resume(id: string, scope: Scope, actor: string): Promise<{ device: DeviceRecord; changed: CertificateChange[] }> {
    await this.device(id, scope);
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
      fromStates: ['suspended'],
      toState: usable ? 'active' : 'registered',
      releaseHolds: true,
      audit: AuditLog.input('device.resumed', actor, id, {}),
    });
  }

  /** transfer hands a device to a new owner: old certificates and credentials stop working at once. */
  async transfer(id: string, newOwner: string, scope: Scope, actor: string, secretTtlSeconds?: number): Promise<{ device: DeviceRecord; changed: CertificateChange[]; secret: string; expiresAt: Date }> {
    if (!/^[^\u0000-\u001f]{1,128}$/.test(newOwner)) throw new DeviceCaError('bad-request', 'owner must be 1-128 printable characters');
    const before = await this.device(id, scope);
    if (scope.kind === 'owner' && scope.owner === newOwner) throw new DeviceCaError('conflict', `device ${id} already belongs to ${newOwner}`);
    const secret = newEnrollmentSecret();
    const expiresAt = new Date(this.now().getTime() + (secretTtlSeconds ?? this.cfg.enrollment.secretTtl) * 1000);
    const r = await this.apply({
      deviceId: id,
      fromStates: ['registered', 'active', 'suspended'],
      toState: 'registered',
      newOwner,
      revoke: { reason: 'affiliationChanged', at: this.now() },
      deleteSecrets: true,
      addSecret: { hash: await hashSecret(secret, this.cfg.enrollment.secretHashCost), expiresAt },
      cancelRequests: true,
      audit: AuditLog.input('device.transferred', actor, id, { from: before.owner, to: newOwner }),
    });
    return { ...r, secret, expiresAt };
  }

  /** retire ends a device: everything revoked, credentials deleted; the id stays as a tombstone. */
  async retire(id: string, scope: Scope, actor: string): Promise<{ device: DeviceRecord; changed: CertificateChange[] }> {
    await this.device(id, scope);
    return this.apply({
      deviceId: id,
      fromStates: ['registered', 'active', 'suspended'],
      toState: 'retired',
      revoke: { reason: 'cessationOfOperation', at: this.now() },
      deleteSecrets: true,
      cancelRequests: true,
      audit: AuditLog.input('device.retired', actor, id, {}),
    });
  }

  /** revoke one certificate. Idempotent; a held certificate may be revoked for good. */
  async revoke(serial: string, reason: string, scope: Scope, actor: string, invalidityDate?: Date): Promise<{ cert: CertificateRecord; changed: boolean }> {
    if (!REVOCATION_REASONS.includes(reason as RevocationReason)) throw new DeviceCaError('bad-request', `reason must be one of: ${REVOCATION_REASONS.join(', ')}`);
    const c = await this.certificate(serial, scope);
    const at = this.now();
    const r = await this.store.revokeCertificate(c.serial, reason as RevocationReason, at, invalidityDate ?? null, AuditLog.input('certificate.revoked', actor, c.serial, { reason, device: c.deviceId }));
    if (r.changed) this.onChange([{ serial: c.serial, issuer: c.issuer, shard: c.shard, status: 'revoked', reason: reason as RevocationReason }]);
    return r;
  }

  private async apply(change: Parameters<Store['applyDeviceChange']>[0]): Promise<{ device: DeviceRecord; changed: CertificateChange[] }> {
    const r = await this.store.applyDeviceChange(change);
    if (r.changed.length) this.onChange(r.changed);
    return r;
  }
}

/** normalizeSerial accepts hex with or without colons, 0x or leading zeros; null when not hex. */
export function normalizeSerial(s: string): string | null {
  const hex = s.trim().toLowerCase().replace(/^0x/, '').replace(/:/g, '');
  if (!/^[0-9a-f]{1,40}$/.test(hex)) return null;
  return hex.replace(/^0+(?=.)/, '');
}

export type { DeviceState };
