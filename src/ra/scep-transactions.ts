import * as crypto from 'node:crypto';
import { DeviceCaError, ErrorCode, toDeviceCaError } from '../errors/device-ca-error';
import { ScepOutcome, ScepPending, Store } from '../store/store';
import { EnrollOutcome } from './enrollment-request';

/** ScepTransaction names one SCEP request: who sent it, under which transactionID, and what it asks. */
export interface ScepTransaction {
  /** transactionId: the transactionID attribute's value, DER as sent (RFC 8894 §3.2.1.1) */
  transactionId: Buffer;
  /** signerSpki: DER SubjectPublicKeyInfo of the key that signed the message */
  signerSpki: Buffer;
  /**
   * operation: a first enrollment and a renewal are separate transactions, as clients that derive the
   * transactionID from the public key (RFC 8894 §3.2.1.1) send the same one for both when the key is kept
   */
  operation: 'enroll' | 'renew';
  /** csr: the DER PKCS#10 the message carries */
  csr: Buffer;
}

/**
 * TRANSIENT: refusals not kept as a transaction's answer. A rate limit or an unavailable store is not
 * final: the same request may succeed later, so the transaction stays open.
 */
const TRANSIENT: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['rate-limited', 'store-unavailable', 'key-backend', 'ca-unavailable', 'config', 'internal']);

/** POLL_MISS: a CertPoll's refusals that leave its transaction open: TRANSIENT, and 'not-found' (asked on another path). */
const POLL_MISS: ReadonlySet<ErrorCode> = new Set<ErrorCode>([...TRANSIENT, 'not-found']);

/**
 * PENDING_HOLD_SECONDS: how long a transaction held for manual approval waits for its CertPoll (30 days).
 * An operator may take days; RFC 8894 §3.3.3 leaves the polling period to the client (certmonger polls
 * until it gets an answer). Each held transaction needed a valid one-time secret, so they are bounded by
 * the devices registered.
 */
export const PENDING_HOLD_SECONDS = 30 * 24 * 3600;

/**
 * ScepTransactions applies RFC 8894 §3.2.1.1 and §3.3.1 to transactionIDs: a message sent again (same
 * signer key, same transactionID, same operation and CSR) gets the answer the first one got, without
 * asking the RA again (no second issuance, no second failed attempt counted); another request under a
 * transactionID in use is refused (badRequest). A transaction belongs to the key that signs its
 * messages, so no one can occupy another device's transactionIDs (which are often a hash of its public
 * key, hence guessable). Transactions are remembered for enrollment.retryWindow (the window in which a
 * lost reply is repeated); 0 keeps none. A PENDING answer is not final: the same request is asked again,
 * and the transaction is held (kept PENDING_HOLD_SECONDS, whatever the window) with what its CertPoll needs.
 */
export class ScepTransactions {
  constructor(
    private readonly deps: {
      store: Pick<Store, 'claimScepTransaction' | 'settleScepTransaction' | 'holdScepTransaction' | 'getScepTransaction' | 'getCertificate'>;
      windowSeconds: number;
      now: () => Date;
    },
  ) {}

  /** run answers tx from its stored outcome, or through attempt (the RA's enrollment) and stores a final answer. */
  async run(tx: ScepTransaction, attempt: () => Promise<EnrollOutcome>): Promise<EnrollOutcome> {
    const now = this.deps.now();
    const key = transactionKey(tx.signerSpki, tx.operation, tx.transactionId);
    const requestSha256 = sha256(Buffer.from(tx.operation), tx.csr);
    const holdUntil = new Date(now.getTime() + PENDING_HOLD_SECONDS * 1000);
    const claim = (expiresAt: Date) => this.deps.store.claimScepTransaction({ key, requestSha256, expiresAt }, now);
    if (this.deps.windowSeconds > 0) {
      const held = await claim(new Date(now.getTime() + this.deps.windowSeconds * 1000));
      if (held.requestSha256 !== requestSha256) throw new DeviceCaError('bad-request', 'transactionID is already in use for another request');
      if (held.outcome) return this.replay(held.outcome);
    }
    const out = await this.settled(key, requestSha256, attempt);
    if (out.status === 'pending' && out.deviceId !== undefined && out.secretId !== undefined) {
      // without a replay window nothing was claimed: a held request still needs its record for CertPoll
      if (!(this.deps.windowSeconds > 0) && (await claim(holdUntil)).requestSha256 !== requestSha256) return out;
      const pending: ScepPending = { deviceId: out.deviceId, csrSha256: plainSha256(tx.csr), secretId: out.secretId };
      await this.deps.store.holdScepTransaction(key, requestSha256, pending, holdUntil, now);
    }
    return out;
  }

  /**
   * poll answers a CertPoll (RFC 8894 §3.3.3) of the first-enrollment transaction tx names: its final
   * answer if it has one; while it is held for approval, attempt(pending) (the RA finishing the queued
   * request), whose final answer is kept as the transaction's. A transactionID this key never used, or one
   * not held, is 'not-found' (badCertId: nothing to poll for).
   */
  async poll(tx: Omit<ScepTransaction, 'csr' | 'operation'>, attempt: (pending: ScepPending) => Promise<EnrollOutcome>): Promise<EnrollOutcome> {
    const key = transactionKey(tx.signerSpki, 'enroll', tx.transactionId);
    const rec = await this.deps.store.getScepTransaction(key, this.deps.now());
    if (rec?.outcome) return this.replay(rec.outcome);
    if (!rec?.pending) throw new DeviceCaError('not-found', 'no pending SCEP transaction with this transactionID');
    // 'not-found' from attempt is a poll that missed (another SCEP path), not the transaction's answer
    return this.settled(key, rec.requestSha256, () => attempt(rec.pending!), POLL_MISS);
  }

  /** settled runs attempt and keeps a final answer (a certificate, or a refusal not in open: by default the TRANSIENT ones) as the transaction's. */
  private async settled(key: string, requestSha256: string, attempt: () => Promise<EnrollOutcome>, open: ReadonlySet<ErrorCode> = TRANSIENT): Promise<EnrollOutcome> {
    let out: EnrollOutcome;
    try {
      out = await attempt();
    } catch (e) {
      const err = toDeviceCaError(e);
      if (!open.has(err.code)) await this.deps.store.settleScepTransaction(key, requestSha256, { errorCode: err.code, errorMessage: err.message });
      throw e;
    }
    if (out.status === 'issued') await this.deps.store.settleScepTransaction(key, requestSha256, { certSerial: out.serial });
    return out;
  }

  /** replay repeats a final answer: the same certificate while it is still valid, or the same refusal. */
  private async replay(o: ScepOutcome): Promise<EnrollOutcome> {
    if ('errorCode' in o) throw new DeviceCaError(o.errorCode as ErrorCode, o.errorMessage);
    const cert = await this.deps.store.getCertificate(o.certSerial);
    if (!cert || cert.status !== 'valid' || cert.notAfter <= this.deps.now()) throw new DeviceCaError('forbidden', 'the certificate of this transaction is no longer valid');
    return { status: 'issued', serial: cert.serial, certificate: cert.der };
  }
}

/** transactionKey: a transaction belongs to the signer's key, and enrollment and renewal are apart. */
function transactionKey(signerSpki: Buffer, operation: ScepTransaction['operation'], transactionId: Buffer): string {
  return sha256(signerSpki, Buffer.from(operation), transactionId);
}

const plainSha256 = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');

function sha256(...parts: Buffer[]): string {
  const h = crypto.createHash('sha256');
  // length-prefixed, so no two different part lists hash alike
  for (const p of parts) h.update(Buffer.from(String(p.length) + ':')).update(p);
  return h.digest('hex');
}
