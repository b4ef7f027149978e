import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildCsr } from '../fixtures/build-csr';
import { NameAttribute } from '../../src/ca/name';
import { EnrollmentLoad, LoadDevice, certFromCertsOnly, endpointOf, normalSerial } from '../crash/enrollment-load';
import { opensslAny } from '../helpers/pki-client';
import { adminRequest, sendRaw } from '../helpers/raw-http';
import { RedisServer, hasRedisServer, startRedisServer } from '../helpers/redis-server';
import { RunningService, assertBuilt, runCli, startService } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * From one node to many (issue 11): a CA that ran on the embedded SQLite store is copied with
 * `device-ca store copy` into an empty redis-server, and a node started on the Redis store with the same
 * data directory (its keys) serves the same CA: the device re-enrolls with the certificate it got
 * before the move, OCSP says that certificate is good, the admin token still works, the audit chain
 * verifies. A second copy into the now non-empty Redis is refused.
 */
const describeIfRedis = hasRedisServer() ? describe : describe.skip;
if (!hasRedisServer()) process.stderr.write('store-copy.test.ts: skipped (redis-server is not installed: scripts/install-test-deps.sh)\n');

const ENV = { DEVICE_CA_ENROLLMENT_SECRET_HASH_COST: '10' };
let tmp: TmpDir;
let redis: RedisServer;
let node: RunningService | undefined;
let token: string;
let device: LoadDevice;
let oldCert: { serial: string; der: Buffer };
let dataDir: string;

beforeAll(async () => {
  assertBuilt();
  if (!hasRedisServer()) return;
  tmp = makeTmpDir('device-ca-store-copy-');
  dataDir = tmp.file('data');
  redis = await startRedisServer();
  // a single node on SQLite: a device enrolls
  node = await startService({ dataDir, env: ENV });
  const t = await node.cli(['tokens', 'create', '--scope', 'operator']);
  if (t.code !== 0) throw new Error(t.stderr);
  token = t.stdout.trim();
  const r = await adminRequest(endpointOf(node), token, 'POST', '/devices', { id: 'moved-1', owner: 'fleet' });
  if (r.status !== 201) throw new Error(`register: HTTP ${r.status}`);
  device = { id: 'moved-1', secret: (JSON.parse(r.body.toString()) as { secret: string }).secret, key: crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey };
  const load = new EnrollmentLoad([device], 1);
  await load.run(endpointOf(node));
  if (load.received.length !== 1) throw new Error('the enrollment on SQLite failed');
  oldCert = load.received[0];
  await node.stop();
  node = undefined;
}, 120_000);

afterAll(async () => {
  await node?.stop();
  await redis?.stop();
  tmp?.cleanup();
});

describeIfRedis('device-ca store copy: SQLite to Redis', () => {
  it('copies and verifies; a second copy into the same Redis is refused', async () => {
    const out = await runCli(['store', 'copy', '--from', dataDir, '--to', redis.url], { ...ENV, DEVICE_CA_DATA: dataDir });
    expect(out.stderr).toContain(`copying ${path.join(dataDir, 'device-ca.sqlite')} to redis://127.0.0.1:${redis.port}/0`);
    expect(out.stderr).toMatch(/\n {2}certificate: \d+\n/);
    expect(out.stdout).toMatch(/copied in [\d.]+ s and verified:\n {2}devices 1, secrets 1, certificates (\d+) \(0 revoked\)/);
    expect(out.stdout).toMatch(/audit chain intact: \d+ records, last hash [0-9a-f]{64}/);
    expect(out.code).toBe(0);

    const again = await runCli(['store', 'copy', '--from', dataDir, '--to', redis.url], { ...ENV, DEVICE_CA_DATA: dataDir });
    expect(again.stderr).toContain('device-ca: the target store is not empty (it holds a CA, an audit chain, devices, certificates, admin tokens)');
    expect(again.code).toBe(1);

    const missing = await runCli(['store', 'copy', '--from', tmp.file('nothing-here'), '--to', redis.url], { ...ENV, DEVICE_CA_DATA: dataDir });
    expect(missing.stderr).toContain('no such file or directory');
    expect(missing.code).toBe(3);
  }, 60_000);

  it('a node on the Redis store serves the same CA: OCSP good for the old serial, re-enrollment with the old certificate, the old token', async () => {
    node = await startService({ dataDir, env: { ...ENV, DEVICE_CA_STORE: redis.url }, readyTimeoutMs: 60_000 });
    const ep = endpointOf(node);
    const crt = tmp.write('old.pem', new crypto.X509Certificate(oldCert.der).toString());
    const issuing = path.join(dataDir, 'ca', 'device-ca-issuing.pem');
    const ocsp = await opensslAny('ocsp', '-issuer', issuing, '-cert', crt, '-url', `http://127.0.0.1:${node.httpPort}/ocsp`, '-CAfile', node.chainPem);
    expect(ocsp.out).toContain('Response verify OK');
    expect(ocsp.out).toContain(`${crt}: good`);

    // a renewal repeats the current certificate's subject (RFC 7030 §4.2.2)
    const subject = new crypto.X509Certificate(oldCert.der).subject.split('\n').map((l) => ({ type: l.slice(0, l.indexOf('=')) as NameAttribute['type'], value: l.slice(l.indexOf('=') + 1) }));
    const csr = buildCsr({ privateKey: device.key, subject });
    const pem = (k: crypto.KeyObject) => k.export({ type: 'pkcs8', format: 'pem' }).toString();
    const r = await sendRaw(ep, {
      listener: 'https',
      method: 'POST',
      path: '/.well-known/est/simplereenroll',
      headers: [['Content-Type', 'application/pkcs10']],
      body: Buffer.from(csr.toString('base64')),
      clientCert: { cert: new crypto.X509Certificate(oldCert.der).toString(), key: pem(device.key) },
    });
    expect(r.kind === 'reply' && `${r.status} ${r.status === 200 ? '' : r.body.toString()}`).toBe('200 ');
    const renewed = new crypto.X509Certificate(certFromCertsOnly(Buffer.from((r as { body: Buffer }).body.toString('latin1'), 'base64')));
    expect(normalSerial(renewed.serialNumber)).not.toBe(oldCert.serial);
    expect(renewed.issuer).toBe(new crypto.X509Certificate(oldCert.der).issuer);
    expect(renewed.checkIssued(new crypto.X509Certificate(fs.readFileSync(issuing)))).toBe(true);

    const list = await adminRequest(ep, token, 'GET', '/certificates?limit=100');
    expect(list.status).toBe(200);
    const serials = (JSON.parse(list.body.toString()) as { items: { serial: string; deviceId: string }[] }).items.filter((c) => c.deviceId === device.id).map((c) => c.serial);
    expect(serials.sort()).toEqual([oldCert.serial, normalSerial(renewed.serialNumber)].sort());

    const v = await node.cli(['audit', 'verify']);
    expect(v.stdout).toMatch(/^audit log intact: \d+ records/);
    expect(v.code).toBe(0);
  }, 120_000);
});
