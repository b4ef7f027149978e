import * as crypto from 'node:crypto';
import * as path from 'node:path';
import { openssl, opensslAny } from '../helpers/pki-client';
import { Endpoint, RawReply, adminRequest, sendRaw } from '../helpers/raw-http';
import { RunningService, assertBuilt, startService } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';
import { SeededRandom } from '../fuzz/seeded-random';
import { EnrollmentLoad, endpointOf, registerLoadDevices } from './enrollment-load';
import { killWhole } from './kill-whole';

/**
 * Crash safety (issue 8): EST enrollment under load from concurrent clients while the WHOLE service
 * (primary and both workers) is killed with SIGKILL mid-stream, several times, restarting on the same
 * data directory each time. Afterwards every certificate a client received (a complete 200) must be in
 * the store byte for byte, serials must be unique, the audit chain must verify, and OCSP and the CRL
 * must answer for every received certificate (a few revoked after the last restart, the rest good).
 * KILL9_SEED picks the kill times (default fixed); KILL9_KILLS the number of kills (default 4).
 */

const SEED = Number(process.env.KILL9_SEED ?? 9) >>> 0;
const KILLS = Number(process.env.KILL9_KILLS ?? 4);
const DEVICES = 160;
const CLIENTS = 6;
const ENV = { DEVICE_CA_ENROLLMENT_SECRET_HASH_COST: '10' };

let tmp: TmpDir;
let dataDir: string;
let svc: RunningService;
let token: string;
let load: EnrollmentLoad;
const kills: { pids: number[]; inFlight: number; receivedBefore: number }[] = [];

const start = () => startService({ workers: 2, dataDir, env: ENV, readyTimeoutMs: 60_000 });

const admin = (ep: Endpoint, method: string, p: string, body?: unknown): Promise<RawReply> => adminRequest(ep, token, method, p, body);

beforeAll(async () => {
  assertBuilt();
  tmp = makeTmpDir('device-ca-kill9-');
  dataDir = tmp.file('data');
  svc = await start();
  const t = await svc.cli(['tokens', 'create', '--scope', 'operator']);
  if (t.code !== 0) throw new Error(t.stderr);
  token = t.stdout.trim();
  const ep = endpointOf(svc);
  const devices = await registerLoadDevices(ep, token, 'crash', DEVICES);
  load = new EnrollmentLoad(devices, CLIENTS);
}, 120_000);

afterAll(async () => {
  await (svc as RunningService | undefined)?.stop();
  tmp?.cleanup();
});

describe('kill -9 of the whole service during enrollment', () => {
  it(`survives ${KILLS} kills mid-stream and restarts on the same data each time`, async () => {
    const rng = new SeededRandom(SEED);
    for (let k = 0; k < KILLS; k++) {
      const running = load.run(endpointOf(svc));
      // let the clients get going, then kill while requests are in flight
      const wait = rng.range(150, 700);
      const t0 = Date.now();
      while (Date.now() - t0 < wait || load.inFlight === 0) {
        if (load.remaining === 0 && load.inFlight === 0) break;
        await new Promise((r) => setTimeout(r, 10));
      }
      const inFlight = load.inFlight;
      const receivedBefore = load.received.length;
      load.stop();
      const pids = await killWhole(svc);
      await running;
      kills.push({ pids, inFlight, receivedBefore });
      svc = await start();
    }
    // the last run: the interrupted devices retry and the rest of the queue enrolls
    await load.run(endpointOf(svc));
    const refused = [...load.stats.refused].map(([s, n]) => `${s}:${n}`).join(' ');
    process.stdout.write(
      `kill -9 campaign (seed ${SEED}): ${kills.length} kills of ${kills.map((k) => k.pids.length).join('/')} processes with ${kills.map((k) => k.inFlight).join('/')} requests in flight; ` +
        `${load.stats.sent} enrollments sent, ${load.stats.received} certificates received, ${load.stats.interrupted} interrupted, refused ${refused || 'none'}\n`,
    );
    expect(kills.every((k) => k.pids.length === 3)).toBe(true); // primary and 2 workers each time
    expect(kills.some((k) => k.inFlight > 0)).toBe(true); // the kills hit requests mid-stream
    expect(load.stats.interrupted).toBeGreaterThan(0);
    expect(load.received.length).toBeGreaterThan(DEVICES / 2);
  }, 240_000);

  it('every certificate a client received is in the store, byte for byte, and no serial repeats', async () => {
    const ep = endpointOf(svc);
    const missing: string[] = [];
    for (const r of load.received) {
      const got = await admin(ep, 'GET', `/certificates/${r.serial}`);
      if (got.status !== 200) {
        missing.push(`${r.deviceId} ${r.serial}: HTTP ${got.status}`);
        continue;
      }
      const pem = (JSON.parse(got.body.toString()) as { pem: string }).pem;
      if (!new crypto.X509Certificate(pem).raw.equals(r.der)) missing.push(`${r.deviceId} ${r.serial}: stored bytes differ`);
    }
    process.stdout.write(`kill -9 campaign: ${load.received.length} received certificates checked in the store, ${missing.length} lost\n`);
    expect(missing).toEqual([]);
    const serials = load.received.map((r) => r.serial);
    expect(new Set(serials).size).toBe(serials.length);
    // the store as a whole: every serial once (a crash must not leave a half-written duplicate)
    const list = await admin(ep, 'GET', '/certificates?limit=1000');
    const stored = (JSON.parse(list.body.toString()) as { items: { serial: string; deviceId: string }[] }).items.filter((c) => c.deviceId?.startsWith('crash-'));
    expect(new Set(stored.map((c) => c.serial)).size).toBe(stored.length);
    expect(stored.length).toBeGreaterThanOrEqual(load.received.length);
    // one device, one certificate: a retried enrollment whose first reply was lost must not issue twice
    const perDevice = new Map<string, number>();
    for (const c of stored) perDevice.set(c.deviceId, (perDevice.get(c.deviceId) ?? 0) + 1);
    expect([...perDevice].filter(([, n]) => n > 1)).toEqual([]);
    // and the operator's tool agrees, for a sample
    for (const r of load.received.slice(0, 2)) {
      const show = await svc.cli(['certs', 'show', r.serial, '--json']);
      expect(show.code).toBe(0);
      expect(new crypto.X509Certificate((JSON.parse(show.stdout) as { pem: string }).pem).raw.equals(r.der)).toBe(true);
    }
  }, 120_000);

  it('device-ca audit verify passes over every record written across the crashes', async () => {
    const r = await svc.cli(['audit', 'verify']);
    process.stdout.write(`kill -9 campaign: ${r.stdout.trim()}\n`);
    expect(r.stdout).toMatch(/^audit log intact: \d+ records/);
    expect(r.code).toBe(0);
  });

  it('OCSP and the CRL answer for every received certificate: revoked ones revoked, the rest good', async () => {
    const issuing = path.join(dataDir, 'ca', 'device-ca-issuing.pem');
    const revoked = load.received.slice(0, 3);
    for (const r of revoked) {
      const out = await svc.cli(['revoke', r.serial, '--reason', 'keyCompromise']);
      expect(out.code).toBe(0);
    }
    const revokedSet = new Set(revoked.map((r) => r.serial));
    const files = load.received.map((r, i) => ({ r, file: tmp.write(`certs/${i}.pem`, new crypto.X509Certificate(r.der).toString()) }));
    // openssl ocsp with up to 16 certificates per request (RFC 6960 requestList; the service answers 16)
    const wrong: string[] = [];
    for (let i = 0; i < files.length; i += 16) {
      const batch = files.slice(i, i + 16);
      const out = await opensslAny('ocsp', '-issuer', issuing, ...batch.flatMap((b) => ['-cert', b.file]), '-url', `http://127.0.0.1:${svc.httpPort}/ocsp`, '-CAfile', svc.chainPem);
      if (!out.out.includes('Response verify OK')) wrong.push(`batch ${i}: ${out.out}`);
      for (const b of batch) {
        const want = revokedSet.has(b.r.serial) ? 'revoked' : 'good';
        if (!out.out.includes(`${b.file}: ${want}\n`)) wrong.push(`${b.r.serial}: expected ${want}`);
      }
    }
    expect(wrong).toEqual([]);

    // the CRL of each received certificate's shard, from this service, verified by openssl
    const texts = new Map<string, string>();
    const crlText = async (shard: string): Promise<string> => {
      if (!texts.has(shard)) {
        const deadline = Date.now() + 20_000; // bounded, with room for a loaded machine's late timer
        for (;;) {
          const reply = await sendRaw(endpointOf(svc), { listener: 'http', method: 'GET', path: `/crl/device-ca-issuing/${shard}.crl`, headers: [] });
          if (reply.kind !== 'reply' || reply.status !== 200) throw new Error(`CRL shard ${shard}: ${reply.kind === 'reply' ? reply.status : reply.error}`);
          const der = tmp.write(`crl/${shard}.crl`, reply.body);
          const v = await opensslAny('crl', '-inform', 'DER', '-in', der, '-CAfile', svc.chainPem, '-noout');
          expect(v.out.trim()).toBe('verify OK');
          const text = (await openssl('crl', '-inform', 'DER', '-in', der, '-noout', '-text')).stdout;
          const pending = revoked.some((r) => shardPath.get(r.serial) === shard && !text.includes(`Serial Number: ${r.serial.toUpperCase()}`));
          if (!pending || Date.now() > deadline) {
            texts.set(shard, text);
            break;
          }
          await new Promise((r) => setTimeout(r, 250)); // re-issued within crl.checkInterval of the revocation
        }
      }
      return texts.get(shard)!;
    };
    const shardPath = new Map<string, string>();
    // the CRL distribution point URI is an IA5String in the certificate: its shard number read from the bytes
    for (const { r } of files) shardPath.set(r.serial, /\/crl\/device-ca-issuing\/(\d+)\.crl/.exec(r.der.toString('latin1'))![1]);
    const crlWrong: string[] = [];
    for (const { r } of files) {
      const text = await crlText(shardPath.get(r.serial)!);
      const listed = new RegExp(`Serial Number: 0*${r.serial.toUpperCase()}\\n`).test(text);
      if (listed !== revokedSet.has(r.serial)) crlWrong.push(`${r.serial} (shard ${shardPath.get(r.serial)}): ${listed ? 'listed' : 'not listed'}`);
    }
    expect(crlWrong).toEqual([]);
    process.stdout.write(`kill -9 campaign: OCSP and CRL checked for ${files.length} certificates (${revoked.length} revoked after the last restart)\n`);
  }, 180_000);
});
