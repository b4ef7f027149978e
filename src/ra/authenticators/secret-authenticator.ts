import * as crypto from 'node:crypto';
import { AuditLog } from '../../audit/audit-log';
import { Config } from '../../config/schema';
import { DeviceCaError } from '../../errors/device-ca-error';
import { AuthAttemptRules, Store } from '../../store/store';
import { SecretKey, hashSecret, newEnrollmentSecret, verifySecret } from '../enrollment-secret';
import { Proofs } from '../enrollment-request';
import { DEVICE_ID, Principal } from '../principal';
import { Authenticator } from './authenticator';

type SecretStore = Pick<Store, 'getDevice' | 'activeSecrets' | 'spentSecrets' | 'reserveAuthAttempt' | 'forgiveAuthAttempt' | 'appendAudit' | 'listAudit'>;

/**
 * SecretAuthenticator checks a device id and its one-time enrollment secret (HMAC, or an older scrypt hash) under the
 * per-device failure limit. Every attempt reserves a slot in the store BEFORE the secret is checked,
 * atomically across workers and nodes, so N parallel guesses get at most enrollment.authFailureLimit
 * checks; a right secret gives its slot back (it does not clear earlier failures: they leave with the
 * window). After authFailureLimit failures within authFailureWindow every attempt, right or wrong, is
 * 'rate-limited' until the oldest failure leaves the window. Failures on names that are not registered
 * devices are evictable (at most authFailureMaxUnknown kept), so made-up names cannot fill the store nor
 * push out a device's failures. A secret spent within enrollment.retryWindow still authenticates, as a
 * 'secret-repeat' bound to the certificate it bought: the RA hands out that certificate again or calls
 * refuse().
 */
export class SecretAuthenticator implements Authenticator {
  readonly method = 'basic' as const;
  private dummy?: string;
  private readonly audit: AuditLog;

  constructor(
    private readonly cfg: Config['enrollment'],
    private readonly store: SecretStore,
    private readonly now: () => Date,
    private readonly secretKey: SecretKey,
  ) {
    this.audit = new AuditLog(store);
  }

  /** dummyHash is compared against when the device id has no secret, so timing does not reveal which ids exist. */
  private dummyHash(): string {
    return (this.dummy ??= hashSecret(newEnrollmentSecret(), this.secretKey()));
  }

  private verify(candidate: string, stored: string): Promise<boolean> {
    return verifySecret(candidate, stored, this.secretKey);
  }

  async authenticate(proofs: Proofs): Promise<Principal | null> {
    if (!proofs.secret) return null;
    const { deviceId, secret } = proofs.secret;
    // a retired id is a tombstone: refused as such, whatever the secret
    const d = DEVICE_ID.test(deviceId) ? await this.store.getDevice(deviceId) : null;
    if (d?.state === 'retired') throw new DeviceCaError('forbidden', 'device is retired');
    const now = this.now();
    const slot = await this.reserve(deviceId, d !== null, now);
    const principal = d ? await this.check(deviceId, secret, now) : null;
    if (principal) {
      await this.store.forgiveAuthAttempt(slot.attemptId);
      return principal;
    }
    if (!d) await this.verify(secret, this.dummyHash());
    return this.fail(deviceId, slot.attempts);
  }

  /** refuse counts a failed authentication for a registered device's id (audited once when the limit is reached) and throws 'unauthenticated'. */
  async refuse(deviceId: string): Promise<never> {
    const r = await this.store.reserveAuthAttempt(failureKey(deviceId), this.now(), this.rules(true));
    // already locked: nothing more to count, and the reply stays what this request earned
    return this.fail(deviceId, r.allowed ? r.attempts : 0);
  }

  /** reserve counts the attempt before the secret is checked; over the limit it throws 'rate-limited' with the seconds until a slot frees. */
  private async reserve(deviceId: string, registered: boolean, now: Date): Promise<{ attemptId: string; attempts: number }> {
    const r = await this.store.reserveAuthAttempt(failureKey(deviceId), now, this.rules(registered));
    if (r.allowed) return r;
    const retry = Math.max(1, Math.ceil((r.retryAt.getTime() - now.getTime()) / 1000));
    throw new DeviceCaError('rate-limited', 'too many failed authentications; try later', { retryAfterSeconds: retry });
  }

  /** check: an unspent secret of the device, else one spent on a certificate within retryWindow, else null (after the same hashing work). */
  private async check(deviceId: string, secret: string, now: Date): Promise<Principal | null> {
    const e = this.cfg;
    const active = await this.store.activeSecrets(deviceId, now);
    for (const s of active) if (await this.verify(secret, s.hash)) return { kind: 'secret', deviceId, secretId: s.id };
    const spent = e.retryWindow > 0 ? await this.store.spentSecrets(deviceId, new Date(now.getTime() - e.retryWindow * 1000)) : [];
    for (const s of spent) if (s.certSerial && (await this.verify(secret, s.hash))) return { kind: 'secret-repeat', deviceId, secretId: s.id, certSerial: s.certSerial };
    if (active.length + spent.length === 0) await this.verify(secret, this.dummyHash());
    return null;
  }

  /** fail: the attempt stays counted; the one that reaches the limit is audited as auth.locked. */
  private async fail(deviceId: string, attempts: number): Promise<never> {
    const e = this.cfg;
    if (attempts === e.authFailureLimit) await this.audit.event('auth.locked', 'ra', deviceId, { failures: attempts, windowSeconds: e.authFailureWindow });
    throw new DeviceCaError('unauthenticated', 'authentication failed');
  }

  /** rules: what counts against a name; attempts on names that are not registered devices may be evicted beyond authFailureMaxUnknown. */
  private rules(registered: boolean): AuthAttemptRules {
    const e = this.cfg;
    return { windowSeconds: e.authFailureWindow, limit: e.authFailureLimit, evictable: !registered, maxEvictable: e.authFailureMaxUnknown };
  }
}

/**
 * failureKey: the name failures are counted under. A name that cannot be a device id (too long, odd
 * characters) is counted under a digest, so no stored key is longer than a device id; '#' never occurs in
 * a device id, so the two kinds cannot meet.
 */
const failureKey = (deviceId: string): string => (DEVICE_ID.test(deviceId) ? `basic:${deviceId}` : `basic:#${crypto.createHash('sha256').update(deviceId).digest('base64url')}`);
