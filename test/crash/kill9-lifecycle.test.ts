import Database from 'better-sqlite3';
import * as crypto from 'node:crypto';
import * as path from 'node:path';
import { opensslAny } from '../helpers/pki-client';
import { Endpoint, RawReply, TransportFailure, adminRequest } from '../helpers/raw-http';
import { RunningService, assertBuilt, startService } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';
import { SeededRandom } from '../fuzz/seeded-random';
import { EnrollmentLoad, endpointOf, registerLoadDevices } from './enrollment-load';
import { killWhole } from './kill-whole';

/**
 * Crash safety of the device life cycle: operators retire enrolled devices from several concurrent
 * admin clients while the whole service is killed with SIGKILL mid-stream, several times, restarting on
 * the same data directory. A retirement is one store transaction (device state, certificate
 * revocations, secrets, audit record): afterwards no device may be half-retired (retired with a
 * certificate still good, or active with its certificate revoked), every retirement an operator saw
 * acknowledged must hold, OCSP must say revoked for every certificate, and the audit chain must verify
 * with exactly one retirement record per device. KILL9_SEED picks the kill times.
 */

const SEED = Number(process.env.KILL9_SEED ?? 11) >>> 0;
const KILLS = 3;
const DEVICES = 150;
const CLIENTS = 6;
const ENV = { DEVICE_CA_ENROLLMENT_SECRET_HASH_COST: '10' };

let tmp: TmpDir;
let dataDir: string;
let svc: RunningService;
let token: string;
/** serialOf: each device's one certificate */
const serialOf = new Map<string, string>();
const certPemOf = new Map<string, string>();

const start = () => startService({ workers: 2, dataDir, env: ENV, readyTimeoutMs: 60_000 });
const admin = (ep: Endpoint, method: string, p: string, body?: unknown): Promise<RawReply> => adminRequest(ep, token, method, p, body);

/** RetireLoad: a queue of devices retired by `clients` concurrent operators; a request cut by the crash is retried. */
class RetireLoad {
  readonly acknowledged = new Set<string>();
  readonly conflicts = new Set<string>();
  inFlight = 0;
  interrupted = 0;
  private stopped = false;
  constructor(private queue: string[]) {}
  get remaining(): number {
    return this.queue.length;
  }
  stop(): void {
    this.stopped = true;
  }
  async run(ep: Endpoint): Promise<void> {
    this.stopped = false;
    await Promise.all(Array.from({ length: CLIENTS }, () => this.client(ep)));
  }
  private async client(ep: Endpoint): Promise<void> {
    while (!this.stopped) {
      const id = this.queue.shift();
      if (!id) return;
      this.inFlight++;
      const r: RawReply | TransportFailure = await adminRequest(ep, token, 'POST', `/devices/${id}/retire`, undefined).catch((e: unknown): TransportFailure => ({
        kind: 'transport',
        error: String(e),
        received: Buffer.alloc(0),
      }));
      this.inFlight--;
      if (r.kind !== 'reply') {
        this.interrupted++;
        this.queue.push(id);
        return;
      }
      if (r.status === 200) this.acknowledged.add(id);
      // a retry of a retirement that committed before the crash cut its reply: the device is retired already
      else if (r.status === 409) this.conflicts.add(id);
      else throw new Error(`retire ${id}: HTTP ${r.status} ${r.body.toString()}`);
    }
  }
}

beforeAll(async () => {
  assertBuilt();
  tmp = makeTmpDir('device-ca-kill9-life-');
  dataDir = tmp.file('data');
  svc = await start();
  const t = await svc.cli(['tokens', 'create', '--scope', 'operator']);
  if (t.code !== 0) throw new Error(t.stderr);
  token = t.stdout.trim();
  const ep = endpointOf(svc);
  const devices = await registerLoadDevices(ep, token, 'life', DEVICES);
  const enroll = new EnrollmentLoad(devices, CLIENTS);
  await enroll.run(ep);
  if (enroll.received.length !== DEVICES) throw new Error(`enrolled ${enroll.received.length} of ${DEVICES}`);
  for (const r of enroll.received) {
    serialOf.set(r.deviceId, r.serial);
    certPemOf.set(r.deviceId, new crypto.X509Certificate(r.der).toString());
  }
}, 180_000);

afterAll(async () => {
  await (svc as RunningService | undefined)?.stop();
  tmp?.cleanup();
});

describe('kill -9 of the whole service while operators retire devices', () => {
  const load = new RetireLoad(Array.from({ length: DEVICES }, (_, i) => `life-${i}`));
  const kills: { pids: number; inFlight: number }[] = [];

  it(`survives ${KILLS} kills mid-stream; no device is left half-retired`, async () => {
    const rng = new SeededRandom(SEED);
    for (let k = 0; k < KILLS; k++) {
      const running = load.run(endpointOf(svc));
      const wait = rng.range(20, 120);
      const t0 = Date.now();
      while (Date.now() - t0 < wait || load.inFlight === 0) {
        if (load.remaining === 0 && load.inFlight === 0) break;
        await new Promise((r) => setTimeout(r, 2));
      }
      const inFlight = load.inFlight;
      load.stop();
      const pids = await killWhole(svc);
      await running;
      kills.push({ pids: pids.length, inFlight });
      svc = await start();
    }
    await load.run(endpointOf(svc));
    process.stdout.write(
      `kill -9 retire campaign (seed ${SEED}): ${kills.length} kills with ${kills.map((k) => k.inFlight).join('/')} requests in flight; ` +
        `${load.acknowledged.size} retirements acknowledged, ${load.conflicts.size} found already retired on retry, ${load.interrupted} interrupted\n`,
    );
    expect(kills.some((k) => k.inFlight > 0)).toBe(true);
    expect(load.remaining).toBe(0);
    // every device was retired exactly once: acknowledged, or found retired when its cut request was retried
    expect(load.acknowledged.size + load.conflicts.size).toBe(DEVICES);

    const ep = endpointOf(svc);
    const wrong: string[] = [];
    for (let i = 0; i < DEVICES; i++) {
      const id = `life-${i}`;
      const r = await admin(ep, 'GET', `/devices/${id}`);
      const d = JSON.parse(r.body.toString()) as { state: string; certificates: { serial: string; status: string; revocationReason?: string }[] };
      const c = d.certificates.find((x) => x.serial === serialOf.get(id));
      if (d.state !== 'retired') wrong.push(`${id}: state ${d.state}`);
      if (!c || c.status !== 'revoked') wrong.push(`${id}: certificate ${c?.status ?? 'missing'}`);
    }
    expect(wrong).toEqual([]);
  }, 240_000);

  it('OCSP says revoked for every retired device certificate (openssl ocsp)', async () => {
    const issuing = path.join(dataDir, 'ca', 'device-ca-issuing.pem');
    const ids = [...serialOf.keys()];
    const wrong: string[] = [];
    for (let i = 0; i < ids.length; i += 16) {
      const batch = ids.slice(i, i + 16).map((id) => ({ id, file: tmp.write(`certs/${id}.pem`, certPemOf.get(id)!) }));
      const out = await opensslAny('ocsp', '-issuer', issuing, ...batch.flatMap((b) => ['-cert', b.file]), '-url', `http://127.0.0.1:${svc.httpPort}/ocsp`, '-CAfile', svc.chainPem);
      if (!out.out.includes('Response verify OK')) wrong.push(`batch ${i}: ${out.out}`);
      for (const b of batch) if (!out.out.includes(`${b.file}: revoked\n`)) wrong.push(`${b.id}: not revoked over OCSP`);
    }
    expect(wrong).toEqual([]);
  }, 120_000);

  it('the audit chain verifies, with one retirement record per device', async () => {
    const v = await svc.cli(['audit', 'verify']);
    expect(v.stdout).toMatch(/^audit log intact: \d+ records/);
    expect(v.code).toBe(0);
    // read beside the running service (WAL readers do not block it)
    const db = new Database(path.join(dataDir, 'device-ca.sqlite'), { readonly: true });
    try {
      const retired = db.prepare("SELECT subject FROM audit WHERE type = 'device.retired'").all() as { subject: string }[];
      expect(retired.length).toBe(DEVICES);
      expect(new Set(retired.map((a) => a.subject)).size).toBe(DEVICES);
    } finally {
      db.close();
    }
  }, 60_000);
});
