import * as crypto from 'node:crypto';
import { certFromCertsOnly, normalSerial } from '../crash/enrollment-load';
import { buildCsr } from '../fixtures/build-csr';
import { Endpoint, sendRaw } from './raw-http';

/**
 * retrying-enrollment: EST simpleenroll from several concurrent clients spread over several nodes, each
 * client behaving as a device should when the CA is briefly unavailable: on 503 (or 429) it waits what
 * Retry-After says (capped to keep tests short) and sends the same request again, with the same CSR, so a
 * reply lost on the way is repeated by the CA (the secret authenticator's lost-reply repeat). Every reply
 * is counted by status, and a 503 or 429 without Retry-After is counted apart: the tests assert on both.
 */

export interface RetryDevice {
  id: string;
  secret: string;
  key: crypto.KeyObject;
}

export interface Acknowledged {
  deviceId: string;
  /** serial: lower-case hex without leading zeros, as the store keeps it */
  serial: string;
  der: Buffer;
  /** node: index of the endpoint that answered */
  node: number;
}

export class RetryingEnrollment {
  readonly acknowledged: Acknowledged[] = [];
  /** statuses: every reply by HTTP status ('transport' for a connection that failed) */
  readonly statuses = new Map<string, number>();
  /** withoutRetryAfter: 503 and 429 replies that lacked a positive Retry-After */
  withoutRetryAfter = 0;
  /** gaveUp: devices that had no 200 before the deadline, with their last status */
  readonly gaveUp: { id: string; last: string }[] = [];
  private queue: RetryDevice[];
  private next = 0;

  constructor(
    devices: RetryDevice[],
    private readonly clients: number,
    private readonly deadlineMs = 90_000,
  ) {
    this.queue = [...devices];
  }

  private count(s: string): void {
    this.statuses.set(s, (this.statuses.get(s) ?? 0) + 1);
  }

  /** run works the queue over the endpoints (client i starts at endpoint i, each request goes to the next endpoint). */
  async run(eps: Endpoint[]): Promise<void> {
    const deadline = Date.now() + this.deadlineMs;
    await Promise.all(Array.from({ length: this.clients }, () => this.client(eps, deadline)));
  }

  private async client(eps: Endpoint[], deadline: number): Promise<void> {
    for (;;) {
      const d = this.queue.shift();
      if (!d) return;
      const body = Buffer.from(buildCsr({ privateKey: d.key, subject: [{ type: 'CN', value: d.id }] }).toString('base64'));
      let last = '';
      while (Date.now() < deadline) {
        const node = this.next++ % eps.length;
        const r = await sendRaw(
          eps[node],
          {
            listener: 'https',
            method: 'POST',
            path: '/.well-known/est/simpleenroll',
            headers: [
              ['Authorization', `Basic ${Buffer.from(`${d.id}:${d.secret}`).toString('base64')}`],
              ['Content-Type', 'application/pkcs10'],
            ],
            body,
          },
          20_000,
        );
        last = r.kind === 'reply' ? String(r.status) : 'transport';
        this.count(last);
        if (r.kind === 'reply' && r.status === 200) {
          const der = certFromCertsOnly(Buffer.from(r.body.toString('latin1'), 'base64'));
          this.acknowledged.push({ deviceId: d.id, serial: normalSerial(new crypto.X509Certificate(der).serialNumber), der, node });
          break;
        }
        if (r.kind === 'reply' && r.status !== 503 && r.status !== 429) break; // a verdict, not a pause
        const after = r.kind === 'reply' ? Number(r.headers.get('retry-after')) : 0;
        if (r.kind === 'reply' && !(after > 0)) this.withoutRetryAfter++;
        await new Promise((res) => setTimeout(res, Math.min(Math.max(after, 0.2) * 1000, 500)));
      }
      if (last !== '200') this.gaveUp.push({ id: d.id, last });
    }
  }
}
