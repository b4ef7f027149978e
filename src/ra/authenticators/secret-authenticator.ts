import { AuditLog } from '../../audit/audit-log';
import { Config } from '../../config/schema';
import { DeviceCaError } from '../../errors/device-ca-error';
import { Store } from '../../store/store';
import { hashSecret, newEnrollmentSecret, verifySecret } from '../enrollment-secret';
import { Proofs } from '../enrollment-request';
import { DEVICE_ID, Principal } from '../principal';
import { Authenticator } from './authenticator';

type SecretStore = Pick<Store, 'getDevice' | 'activeSecrets' | 'spentSecrets' | 'countAuthFailures' | 'recordAuthFailure' | 'appendAudit' | 'listAudit'>;

/**
 * SecretAuthenticator checks a device id and its one-time enrollment secret (scrypt hash) under the
 * per-device failure limit: after enrollment.authFailureLimit failures within authFailureWindow every
 * attempt, right or wrong, is 'rate-limited' until the window passes. A secret spent within
 * enrollment.retryWindow still authenticates, as a 'secret-repeat' bound to the certificate it bought:
 * the RA hands out that certificate again or calls refuse().
 */
export class SecretAuthenticator implements Authenticator {
  readonly method = 'basic' as const;
  private readonly dummyHash: Promise<string>;
  private readonly audit: AuditLog;

  constructor(
    private readonly cfg: Config['enrollment'],
    private readonly store: SecretStore,
    private readonly now: () => Date,
  ) {
    this.audit = new AuditLog(store);
    // compared against when the device id has no secret, so timing does not reveal which ids exist
    this.dummyHash = hashSecret(newEnrollmentSecret(), cfg.secretHashCost);
    this.dummyHash.catch(() => undefined);
  }

  async authenticate(proofs: Proofs): Promise<Principal | null> {
    if (!proofs.secret) return null;
    const { deviceId, secret } = proofs.secret;
    // a retired id is a tombstone: refused as such, whatever the secret
    const d = DEVICE_ID.test(deviceId) ? await this.store.getDevice(deviceId) : null;
    if (d?.state === 'retired') throw new DeviceCaError('forbidden', 'device is retired');
    const now = this.now();
    const e = this.cfg;
    const { count, oldest } = await this.store.countAuthFailures(failureKey(deviceId), now, e.authFailureWindow);
    if (count >= e.authFailureLimit) {
      const retry = Math.max(1, Math.ceil(((oldest?.getTime() ?? now.getTime()) + e.authFailureWindow * 1000 - now.getTime()) / 1000));
      throw new DeviceCaError('rate-limited', 'too many failed authentications; try later', { retryAfterSeconds: retry });
    }
    const active = d ? await this.store.activeSecrets(deviceId, now) : [];
    for (const s of active) if (await verifySecret(secret, s.hash)) return { kind: 'secret', deviceId, secretId: s.id };
    const spent = d && e.retryWindow > 0 ? await this.store.spentSecrets(deviceId, new Date(now.getTime() - e.retryWindow * 1000)) : [];
    for (const s of spent) if (s.certSerial && (await verifySecret(secret, s.hash))) return { kind: 'secret-repeat', deviceId, secretId: s.id, certSerial: s.certSerial };
    if (active.length + spent.length === 0) await verifySecret(secret, await this.dummyHash);
    return this.refuse(deviceId);
  }

  /** refuse counts a failed authentication for the device id (audited once when the limit is reached) and throws 'unauthenticated'. */
  async refuse(deviceId: string): Promise<never> {
    const e = this.cfg;
    const n = await this.store.recordAuthFailure(failureKey(deviceId), this.now(), e.authFailureWindow);
    if (n === e.authFailureLimit) await this.audit.event('auth.locked', 'ra', deviceId, { failures: n, windowSeconds: e.authFailureWindow });
    throw new DeviceCaError('unauthenticated', 'authentication failed');
  }
}

const failureKey = (deviceId: string): string => `basic:${deviceId.slice(0, 200)}`;
