import * as crypto from 'node:crypto';
import * as path from 'node:path';
import { EnrollmentLoad, LoadDevice, endpointOf } from '../crash/enrollment-load';
import { buildCsr } from '../fixtures/build-csr';
import { opensslAny } from '../helpers/pki-client';
import { adminRequest, sendRaw } from '../helpers/raw-http';
import { RedisServer, hasRedisServer, startRedisServer } from '../helpers/redis-server';
import { RunningService, assertBuilt, startService } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * A node on the Redis store while redis-server is stopped (SIGTERM to its pid) and started again (issue
 * 11): OCSP keeps answering what it answered before from its pre-signed responses (until their
 * nextUpdate), enrollments and /healthz answer 503 with Retry-After, and after the restart everything is
 * served again with nothing lost.
 */
const describeIfRedis = hasRedisServer() ? describe : describe.skip;
if (!hasRedisServer()) process.stderr.write('redis-outage.test.ts: skipped (redis-server is not installed: scripts/install-test-deps.sh)\n');

let tmp: TmpDir;
let redis: RedisServer;
let node: RunningService;
let token: string;

beforeAll(async () => {
  assertBuilt();
  if (!hasRedisServer()) return;
  tmp = makeTmpDir('device-ca-redis-outage-');
  redis = await startRedisServer();
  node = await startService({ env: { DEVICE_CA_ENROLLMENT_SECRET_HASH_COST: '10', DEVICE_CA_STORE: redis.url }, readyTimeoutMs: 60_000 });
  const t = await node.cli(['tokens', 'create', '--scope', 'operator']);
  if (t.code !== 0) throw new Error(t.stderr);
  token = t.stdout.trim();
}, 120_000);

afterAll(async () => {
  await node?.stop();
  await redis?.stop();
  tmp?.cleanup();
});

async function register(id: string): Promise<LoadDevice> {
  const r = await adminRequest(endpointOf(node), token, 'POST', '/devices', { id, owner: 'fleet' });
  if (r.status !== 201) throw new Error(`register ${id}: HTTP ${r.status}`);
  return { id, secret: (JSON.parse(r.body.toString()) as { secret: string }).secret, key: crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey };
}

const enrollRaw = (d: LoadDevice) =>
  sendRaw(endpointOf(node), {
    listener: 'https',
    method: 'POST',
    path: '/.well-known/est/simpleenroll',
    headers: [
      ['Authorization', `Basic ${Buffer.from(`${d.id}:${d.secret}`).toString('base64')}`],
      ['Content-Type', 'application/pkcs10'],
    ],
    body: Buffer.from(buildCsr({ privateKey: d.key, subject: [{ type: 'CN', value: d.id }] }).toString('base64')),
  });

describeIfRedis('a Redis-backed node while Redis is down', () => {
  it('a revocation by another process (the CLI) changes the nonce-less OCSP answer the node had cached, within 1 s (pub/sub)', async () => {
    const load = new EnrollmentLoad([await register('feed-1')], 1);
    await load.run(endpointOf(node));
    const r = load.received[0];
    const crt = tmp.write('feed-1.pem', new crypto.X509Certificate(r.der).toString());
    const issuing = path.join(node.dataDir, 'ca', 'device-ca-issuing.pem');
    const ocsp = () => opensslAny('ocsp', '-no_nonce', '-issuer', issuing, '-cert', crt, '-url', `http://127.0.0.1:${node.httpPort}/ocsp`, '-CAfile', node.chainPem);
    expect((await ocsp()).out).toContain(`${crt}: good`);
    expect((await ocsp()).out).toContain(`${crt}: good`); // answered from the kept status
    const out = await node.cli(['revoke', r.serial, '--reason', 'keyCompromise']);
    expect(out.code).toBe(0);
    const deadline = Date.now() + 1000;
    let answer = (await ocsp()).out;
    while (!answer.includes(`${crt}: revoked`) && Date.now() < deadline) answer = (await ocsp()).out;
    expect(answer).toContain(`${crt}: revoked`);
    expect(answer).toMatch(/Reason: keyCompromise/);
  }, 60_000);

  it('OCSP answers from its pre-signed responses, enrollments and /healthz get 503 + Retry-After; after the restart all is served, nothing lost', async () => {
    const load = new EnrollmentLoad([await register('outage-1')], 1);
    await load.run(endpointOf(node));
    expect(load.received.length).toBe(1);
    const before = load.received[0];
    const waiting = await register('outage-2');
    const crt = tmp.write('outage-1.pem', new crypto.X509Certificate(before.der).toString());
    const issuing = path.join(node.dataDir, 'ca', 'device-ca-issuing.pem');
    const ocsp = (...extra: string[]) => opensslAny('ocsp', '-issuer', issuing, '-cert', crt, '-url', `http://127.0.0.1:${node.httpPort}/ocsp`, '-CAfile', node.chainPem, ...extra);
    const first = await ocsp('-no_nonce');
    expect(first.out).toContain('Response verify OK');
    expect(first.out).toContain(`${crt}: good`);

    await redis.stop({ keep: true });
    const during = await ocsp('-no_nonce');
    expect(during.out).toContain('Response verify OK');
    expect(during.out).toContain(`${crt}: good`);
    // a nonce asks for a freshly signed answer, which needs the status from the store: tryLater
    expect((await ocsp()).out).toMatch(/Responder Error: trylater/);
    const refused = await enrollRaw(waiting);
    expect(refused.kind === 'reply' && refused.status).toBe(503);
    expect(refused.kind === 'reply' && Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    const health = await sendRaw(endpointOf(node), { listener: 'http', method: 'GET', path: '/healthz', headers: [] });
    expect(health.kind === 'reply' && health.status).toBe(503);
    // /metrics shows the store's failures by operation and code
    const metrics = await sendRaw(endpointOf(node), { listener: 'http', method: 'GET', path: '/metrics', headers: [] });
    expect(metrics.kind === 'reply' && metrics.status).toBe(200);
    expect((metrics as { body: Buffer }).body.toString()).toMatch(/device_ca_store_errors_total\{backend="redis",operation="\w+",code="store-unavailable"\} [1-9]/);
    expect((metrics as { body: Buffer }).body.toString()).toMatch(/device_ca_store_operation_seconds_count\{backend="redis",operation="recordIssuance"\} [1-9]/);

    await redis.restart();
    let again = await enrollRaw(waiting);
    for (let i = 0; i < 50 && !(again.kind === 'reply' && again.status === 200); i++) {
      await new Promise((r) => setTimeout(r, 200));
      again = await enrollRaw(waiting);
    }
    expect(again.kind === 'reply' && again.status).toBe(200);
    const stored = await adminRequest(endpointOf(node), token, 'GET', `/certificates/${before.serial}`);
    expect(stored.status).toBe(200);
    expect(new crypto.X509Certificate((JSON.parse(stored.body.toString()) as { pem: string }).pem).raw.equals(before.der)).toBe(true);
    expect((await ocsp()).out).toContain(`${crt}: good`);
  }, 120_000);
});
