import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { buildCsr } from '../fixtures/build-csr';
import { Endpoint, RawReply, adminRequest, sendRaw } from '../helpers/raw-http';
import { RunningService } from '../helpers/service-process';

/**
 * enrollment-load drives EST simpleenroll from several concurrent clients, each a device with its own
 * key and one-time secret, and keeps what each client RECEIVED: a certificate is "received" only when
 * the reply was a complete 200 carrying it. A request cut off by a crash is "interrupted": the device
 * retries it after the restart, as a real one would (and may then meet 401, its secret spent by an
 * issuance whose reply it never saw).
 */

export interface LoadDevice {
  id: string;
  secret: string;
  key: crypto.KeyObject;
}

export interface Received {
  deviceId: string;
  /** serial: lower-case hex without leading zeros, as the store keeps it */
  serial: string;
  der: Buffer;
}

export interface LoadStats {
  sent: number;
  received: number;
  interrupted: number;
  /** refused: replies other than 200 (401 after a lost reply, 429) */
  refused: Map<number, number>;
}

/** normalSerial: a hex serial as the store keeps it (lower case, no leading zeros, no colons). */
export const normalSerial = (hex: string): string =>
  hex
    .toLowerCase()
    .replace(/:/g, '')
    .replace(/^0+(?=.)/, '');

/**
 * registerLoadDevices registers `count` devices `<prefix>-<i>` through the admin API, ten at a time, each
 * with its one-time secret and a new P-256 key: the clients of an EnrollmentLoad.
 */
export async function registerLoadDevices(ep: Endpoint, token: string, prefix: string, count: number): Promise<LoadDevice[]> {
  const devices: LoadDevice[] = [];
  for (let batch = 0; batch < count; batch += 10) {
    await Promise.all(
      Array.from({ length: Math.min(10, count - batch) }, async (_, j) => {
        const id = `${prefix}-${batch + j}`;
        const r = await adminRequest(ep, token, 'POST', '/devices', { id, owner: 'crash' });
        if (r.status !== 201) throw new Error(`register ${id}: HTTP ${r.status} ${r.body.toString()}`);
        devices.push({ id, secret: (JSON.parse(r.body.toString()) as { secret: string }).secret, key: crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey });
      }),
    );
  }
  return devices;
}

/** endpointOf: where to reach a service, trusting its chain. */
export const endpointOf = (svc: RunningService): Endpoint => ({ host: '127.0.0.1', httpsPort: svc.httpsPort, httpPort: svc.httpPort, ca: fs.readFileSync(svc.chainPem, 'utf8') });

/** certFromCertsOnly: the first certificate in a certs-only PKCS#7, found by walking its DER (RFC 5652 §5.1). */
export function certFromCertsOnly(p7: Buffer): Buffer {
  // ContentInfo { oid, [0] { SignedData { version, digestAlgorithms, encapContentInfo, [0] IMPLICIT certificates } } }
  const tlv = (b: Buffer, off: number) => {
    let len = b[off + 1];
    let hdr = 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + b[off + 2 + i];
      hdr += n;
    }
    return { tag: b[off], start: off + hdr, end: off + hdr + len };
  };
  const ci = tlv(p7, 0);
  const oid = tlv(p7, ci.start);
  const explicit = tlv(p7, oid.end);
  const sd = tlv(p7, explicit.start);
  let off = sd.start;
  for (let i = 0; i < 3; i++) off = tlv(p7, off).end; // version, digestAlgorithms, encapContentInfo
  const certs = tlv(p7, off);
  if (certs.tag !== 0xa0) throw new Error('certs-only reply without certificates');
  const first = tlv(p7, certs.start);
  return p7.subarray(certs.start, first.end);
}

/**
 * EnrollmentLoad: a queue of devices worked by `clients` concurrent clients against whatever service
 * is current; run() returns when the queue is empty or stop() was called (a crash).
 */
export class EnrollmentLoad {
  readonly received: Received[] = [];
  readonly stats: LoadStats = { sent: 0, received: 0, interrupted: 0, refused: new Map() };
  private queue: LoadDevice[];
  private stopped = false;
  inFlight = 0;

  constructor(
    devices: LoadDevice[],
    private readonly clients: number,
  ) {
    this.queue = [...devices];
  }

  get remaining(): number {
    return this.queue.length;
  }

  stop(): void {
    this.stopped = true;
  }

  async run(ep: Endpoint): Promise<void> {
    this.stopped = false;
    await Promise.all(Array.from({ length: this.clients }, () => this.client(ep)));
  }

  private async client(ep: Endpoint): Promise<void> {
    while (!this.stopped) {
      const d = this.queue.shift();
      if (!d) return;
      const csr = buildCsr({ privateKey: d.key, subject: [{ type: 'CN', value: d.id }] });
      this.inFlight++;
      this.stats.sent++;
      const r = await sendRaw(
        ep,
        {
          listener: 'https',
          method: 'POST',
          path: '/.well-known/est/simpleenroll',
          headers: [
            ['Authorization', `Basic ${Buffer.from(`${d.id}:${d.secret}`).toString('base64')}`],
            ['Content-Type', 'application/pkcs10'],
          ],
          body: Buffer.from(csr.toString('base64')),
        },
        20_000,
      );
      this.inFlight--;
      if (r.kind === 'transport' || !complete(r)) {
        this.stats.interrupted++;
        this.queue.push(d); // the device retries after the restart
        if (this.stopped || r.kind === 'transport') return;
        continue;
      }
      if (r.status !== 200) {
        this.stats.refused.set(r.status, (this.stats.refused.get(r.status) ?? 0) + 1);
        continue;
      }
      const der = certFromCertsOnly(Buffer.from(r.body.toString('latin1'), 'base64'));
      this.received.push({ deviceId: d.id, serial: normalSerial(new crypto.X509Certificate(der).serialNumber), der });
      this.stats.received++;
    }
  }
}

/** complete: the whole body arrived (Content-Length honoured); a reply cut mid-body is not received. */
function complete(r: RawReply): boolean {
  const len = r.headers.get('content-length');
  return len === undefined ? true : r.body.length >= Number(len);
}
