import * as crypto from 'node:crypto';
import { DeviceCaError, ErrorCode, toDeviceCaError } from '../errors/device-ca-error';
import { ScepOutcome, Store } from '../store/store';
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

/**
 * ScepTransactions applies RFC 8894 §3.2.1.1 and §3.3.1 to transactionIDs: a message sent again (same
 * signer key, same transactionID, same operation and CSR) gets the answer the first one got, without
 * asking the RA again (no second issuance, no second failed attempt counted); another request under a
 * transactionID in use is refused (badRequest). A transaction belongs to the key that signs its
 * messages, so no one can occupy another device's transactionIDs (which are often a hash of its public
 * key, hence guessable). Transactions are remembered for enrollment.retryWindow (the window in which a
 * lost reply is repeated); 0 keeps none. A PENDING answer is not final: the same request is asked again.
 */
export class ScepTransactions {
  constructor(
    private readonly deps: {
      store: Pick<Store, 'claimScepTransaction' | 'settleScepTransaction' | 'getCertificate'>;
      windowSeconds: number;
      now: () => Date;
    },
  ) {}

  /** run answers tx from its stored outcome, or through attempt (the RA's enrollment) and stores a final answer. */
  async run(tx: ScepTransaction, attempt: () => Promise<EnrollOutcome>): Promise<EnrollOutcome> {
    if (!(this.deps.windowSeconds > 0)) return attempt();
    const now = this.deps.now();
    const key = sha256(tx.signerSpki, Buffer.from(tx.operation), tx.transactionId);
    const requestSha256 = sha256(Buffer.from(tx.operation), tx.csr);
    const held = await this.deps.store.claimScepTransaction({ key, requestSha256, expiresAt: new Date(now.getTime() + this.deps.windowSeconds * 1000) }, now);
    if (held.requestSha256 !== requestSha256) throw new DeviceCaError('bad-request', 'transactionID is already in use for another request');
    if (held.outcome) return this.replay(held.outcome);
    let out: EnrollOutcome;
    try {
      out = await attempt();
    } catch (e) {
      const err = toDeviceCaError(e);
      if (!TRANSIENT.has(err.code)) await this.deps.store.settleScepTransaction(key, requestSha256, { errorCode: err.code, errorMessage: err.message });
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

function sha256(...parts: Buffer[]): string {
  const h = crypto.createHash('sha256');
  // length-prefixed, so no two different part lists hash alike
  for (const p of parts) h.update(Buffer.from(String(p.length) + ':')).update(p);
  return h.digest('hex');
}
