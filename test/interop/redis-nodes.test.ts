import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildCsr } from '../fixtures/build-csr';
import { EnrollmentLoad, LoadDevice, certFromCertsOnly, endpointOf, normalSerial } from '../crash/enrollment-load';
import { openssl, opensslAny } from '../helpers/pki-client';
import { Endpoint, RawReply, adminRequest, sendRaw } from '../helpers/raw-http';
import { RedisServer, hasRedisServer, startRedisServer } from '../helpers/redis-server';
import { RunningService, assertBuilt, startService } from '../helpers/service-process';
import { TmpDir, filesHash, makeTmpDir } from '../helpers/tmp';

/**
 * Many nodes, one CA (issue 11): one redis-server with AOF and three device-ca nodes (one worker each) on
 * their own ports and data directories, sharing the store (DEVICE_CA_STORE) and the CA key files (node 1
 * makes the CA; its keys/ directory is copied into the others' data directories, as README says). The
 * nodes must act as one CA: one issuing certificate, a one-time secret spent once across all of them, a
 * revocation through one node seen by the OCSP and CRL of the others, and a node killed with SIGKILL
 * mid-stream losing nothing that a client received.
 */

const describeIfRedis = hasRedisServer() ? describe : describe.skip;
if (!hasRedisServer()) process.stderr.write('redis-nodes.test.ts: skipped (redis-server is not installed: scripts/install-test-deps.sh)\n');

const ENV = { DEVICE_CA_ENROLLMENT_SECRET_HASH_COST: '10' };

let tmp: TmpDir;
let redis: RedisServer;
const nodes: RunningService[] = [];
let token: string;
let keysAfterNode1: Record<string, string>;

const startNode = (dataDir: string) => startService({ dataDir, env: { ...ENV, DEVICE_CA_STORE: redis.url }, readyTimeoutMs: 60_000 });

const admin = (ep: Endpoint, method: string, p: string, body?: unknown): Promise<RawReply> => adminRequest(ep, token, method, p, body);

async function register(ep: Endpoint, id: string): Promise<LoadDevice> {
  const r = await admin(ep, 'POST', '/devices', { id, owner: 'fleet' });
  if (r.status !== 201) throw new Error(`register ${id}: HTTP ${r.status} ${r.body.toString()}`);
  return { id, secret: (JSON.parse(r.body.toString()) as { secret: string }).secret, key: crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey };
}

/** storedCertificates: the certificates the store holds for devices whose id starts with prefix (admin API, one page). */
async function storedCertificates(ep: Endpoint, prefix: string): Promise<{ serial: string; deviceId: string; pem?: string }[]> {
  const list = await admin(ep, 'GET', '/certificates?limit=1000');
  expect(list.status).toBe(200);
  return (JSON.parse(list.body.toString()) as { items: { serial: string; deviceId: string }[] }).items.filter((c) => c.deviceId?.startsWith(prefix));
}

/** crlOf: a CRL shard from a node's plain-HTTP listener, verified by openssl against the node's chain; its number and text. */
async function crlOf(node: RunningService, shard: string): Promise<{ number: bigint; text: string }> {
  const reply = await sendRaw(endpointOf(node), { listener: 'http', method: 'GET', path: `/crl/device-ca-issuing/${shard}.crl`, headers: [] });
  if (reply.kind !== 'reply' || reply.status !== 200) throw new Error(`CRL shard ${shard}: ${reply.kind === 'reply' ? reply.status : reply.error}`);
  const der = tmp.write(`crl/${node.httpPort}-${shard}-${crypto.randomUUID()}.crl`, reply.body);
  const v = await opensslAny('crl', '-inform', 'DER', '-in', der, '-CAfile', node.chainPem, '-noout');
  expect(v.out.trim()).toBe('verify OK');
  const text = (await openssl('crl', '-inform', 'DER', '-in', der, '-noout', '-text')).stdout;
  const n = /X509v3 CRL Number:\s*\n\s*(\d+)/.exec(text);
  if (!n) throw new Error(`CRL without a number:\n${text}`);
  return { number: BigInt(n[1]), text };
}

/** killNode: SIGKILL to the node's process group (one worker: one process); waits for its exit. */
async function killNode(node: RunningService): Promise<void> {
  try {
    process.kill(-node.pid, 'SIGKILL');
  } catch {
    // gone already
  }
  await node.exited;
  await node.stop(); // removes the run's scratch directory
}

const keyFiles = (dataDir: string): Record<string, string> => filesHash(path.join(dataDir, 'keys'));

beforeAll(async () => {
  assertBuilt();
  if (!hasRedisServer()) return;
  tmp = makeTmpDir('device-ca-redis-nodes-');
  redis = await startRedisServer();
  // node 1 makes the CA in the shared store and its key files in its data directory
  const first = tmp.file('node1');
  nodes.push(await startNode(first));
  keysAfterNode1 = keyFiles(first);
  // the other nodes reach the same key files: keys/ (CA, OCSP responder, SCEP RA keys) and tls/ (HTTPS
  // keys) are one shared directory each, as a network file system mounted on every node would be; a
  // renewal by whichever node holds the CA duties lease writes its new key there for all (README)
  for (const name of ['node2', 'node3']) {
    const dataDir = tmp.file(name);
    fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    for (const d of ['keys', 'tls']) fs.symlinkSync(path.join(first, d), path.join(dataDir, d));
    nodes.push(await startNode(dataDir));
  }
  const t = await nodes[0].cli(['tokens', 'create', '--scope', 'operator']);
  if (t.code !== 0) throw new Error(t.stderr);
  token = t.stdout.trim();
}, 180_000);

afterAll(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
  await redis?.stop();
  tmp?.cleanup();
});

describeIfRedis('three device-ca nodes sharing one Redis store', () => {
  it('nodes 2 and 3 find node 1 CA: the same issuing certificate everywhere, no second CA key', async () => {
    const issuing = nodes.map((n) => new crypto.X509Certificate(fs.readFileSync(path.join(n.dataDir, 'ca', 'device-ca-issuing.pem'))).raw);
    expect(issuing[1].equals(issuing[0])).toBe(true);
    expect(issuing[2].equals(issuing[0])).toBe(true);
    // and what each node serves to devices (EST /cacerts, RFC 7030 §4.1.3) is that certificate
    for (const n of nodes) {
      const r = await sendRaw(endpointOf(n), { listener: 'https', method: 'GET', path: '/.well-known/est/cacerts', headers: [] });
      expect(r.kind === 'reply' && r.status).toBe(200);
      const p7 = Buffer.from((r as RawReply).body.toString('latin1'), 'base64');
      expect(p7.includes(issuing[0])).toBe(true);
    }
    // a node that had made its own CA (or responder) would have written new key files beside node 1's
    expect(keyFiles(nodes[0].dataDir)).toEqual(keysAfterNode1);
  });

  it('a node with its own data directory refuses to start and names what it lacks: without tls/ the HTTPS key the store names, without keys/ the CA key file; nothing is written to the shared keys/', async () => {
    const keysOnly = tmp.file('node-keys-only');
    fs.mkdirSync(keysOnly, { recursive: true, mode: 0o700 });
    fs.symlinkSync(path.join(nodes[0].dataDir, 'keys'), path.join(keysOnly, 'keys'));
    await expect(startNode(keysOnly)).rejects.toThrow(
      /exited \(code 3[\s\S]*the HTTPS key \S+\/tls\/server-[0-9a-f]+\.key named by the store is not there: nodes that share a store must share the data directory's tls\/ and keys\//,
    );
    const bare = tmp.file('node-bare');
    fs.mkdirSync(bare, { recursive: true, mode: 0o700 });
    await expect(startNode(bare)).rejects.toThrow(/exited \(code [1-9][\s\S]*cannot read key file \S+\/keys\/device-ca-issuing-\S+\.key\.pem/);
    expect(keyFiles(nodes[0].dataDir)).toEqual(keysAfterNode1);
  });

  it('50 concurrent enrollments with one secret and one CSR over the three nodes: exactly one certificate, carried by every 200', async () => {
    const d = await register(endpointOf(nodes[0]), 'same-secret-1');
    const csr = Buffer.from(buildCsr({ privateKey: d.key, subject: [{ type: 'CN', value: d.id }] }).toString('base64'));
    const replies = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        sendRaw(
          endpointOf(nodes[i % 3]),
          {
            listener: 'https',
            method: 'POST',
            path: '/.well-known/est/simpleenroll',
            headers: [
              ['Authorization', `Basic ${Buffer.from(`${d.id}:${d.secret}`).toString('base64')}`],
              ['Content-Type', 'application/pkcs10'],
            ],
            body: csr,
          },
          30_000,
        ),
      ),
    );
    const statuses = new Map<string, number>();
    for (const r of replies) {
      const k = r.kind === 'reply' ? String(r.status) : `transport: ${r.error}`;
      statuses.set(k, (statuses.get(k) ?? 0) + 1);
    }
    process.stdout.write(`one secret, 50 concurrent enrollments over 3 nodes: ${[...statuses].map(([s, n]) => `${s}:${n}`).join(' ')}\n`);
    // the surplus is refused as a spent secret (401) or as attempts over the lockout limit (429), nothing else
    expect([...statuses.keys()].filter((s) => !['200', '401', '429'].includes(s))).toEqual([]);
    // a repeat of the CSR that spent the secret gets the certificate it made (a device whose reply was
    // lost retries), so every 200 carries the same certificate, and the store holds that one alone
    const ok = replies.filter((r): r is RawReply => r.kind === 'reply' && r.status === 200);
    expect(ok.length).toBeGreaterThanOrEqual(1);
    const certs = ok.map((r) => certFromCertsOnly(Buffer.from(r.body.toString('latin1'), 'base64')));
    const der = certs[0];
    expect(certs.filter((c) => !c.equals(der)).length).toBe(0);
    const stored = await storedCertificates(endpointOf(nodes[1]), 'same-secret-');
    expect(stored.map((c) => c.serial)).toEqual([normalSerial(new crypto.X509Certificate(der).serialNumber)]);
    const got = await admin(endpointOf(nodes[2]), 'GET', `/certificates/${stored[0].serial}`);
    expect(new crypto.X509Certificate((JSON.parse(got.body.toString()) as { pem: string }).pem).raw.equals(der)).toBe(true);
  }, 120_000);

  it('a revocation through node 1 (CLI) is revoked on node 3 OCSP at once and listed in node 2 CRL, crlNumber increasing', async () => {
    const [a, b, c] = nodes;
    const load = new EnrollmentLoad([await register(endpointOf(b), 'revoke-1')], 1);
    await load.run(endpointOf(b));
    expect(load.received.length).toBe(1);
    const r = load.received[0];
    const crt = tmp.write('revoke-1.pem', new crypto.X509Certificate(r.der).toString());
    const issuing = path.join(c.dataDir, 'ca', 'device-ca-issuing.pem');
    const ocsp = async (node: RunningService, ...extra: string[]) => {
      const out = await opensslAny('ocsp', '-issuer', issuing, '-cert', crt, '-url', `http://127.0.0.1:${node.httpPort}/ocsp`, '-CAfile', node.chainPem, ...extra);
      expect(out.out).toContain('Response verify OK');
      return out.out;
    };
    expect(await ocsp(c)).toContain(`${crt}: good`);
    // nonce-less: the pre-signed answer, repeated from memory while node 3 keeps the status (revocation feed)
    for (let i = 0; i < 3; i++) expect(await ocsp(c, '-no_nonce')).toContain(`${crt}: good`);
    const shard = /\/crl\/device-ca-issuing\/(\d+)\.crl/.exec(r.der.toString('latin1'))![1];
    const before = await crlOf(b, shard);
    expect(before.text).not.toMatch(new RegExp(`Serial Number: 0*${r.serial.toUpperCase()}\\n`));

    const out = await a.cli(['revoke', r.serial, '--reason', 'keyCompromise']);
    expect(out.code).toBe(0);
    // OCSP on node 3 learns the change from the shared store's feed: the very next answer says revoked, the
    // nonce-less one it had kept too
    expect(await ocsp(c, '-no_nonce')).toContain(`${crt}: revoked`);
    const answer = await ocsp(c);
    expect(answer).toContain(`${crt}: revoked`);
    expect(answer).toMatch(/Reason: keyCompromise/);

    // node 2's CRL lists it once the shard is re-issued (by whichever node did it), with a higher number
    let after = await crlOf(b, shard);
    const deadline = Date.now() + 15_000;
    while (!new RegExp(`Serial Number: 0*${r.serial.toUpperCase()}\\n`).test(after.text) && Date.now() < deadline) {
      await new Promise((res) => setTimeout(res, 200));
      after = await crlOf(b, shard);
    }
    expect(after.text).toMatch(new RegExp(`Serial Number: 0*${r.serial.toUpperCase()}\\n`));
    expect(after.number).toBeGreaterThan(before.number);
    // every node serves that CRL or a later one: numbers never go back across nodes
    for (const n of nodes) expect((await crlOf(n, shard)).number).toBeGreaterThanOrEqual(after.number);
  }, 120_000);

  it('kill -9 of one node mid-stream: the others keep serving, every received certificate is in the store, serials unique', async () => {
    const ep = endpointOf(nodes[0]);
    const devices: LoadDevice[][] = [[], [], []];
    for (let i = 0; i < 60; i += 6) {
      const batch = await Promise.all(Array.from({ length: 6 }, (_, j) => register(ep, `multi-${i + j}`)));
      batch.forEach((d, j) => devices[(i + j) % 3].push(d));
    }
    const loads = devices.map((ds) => new EnrollmentLoad(ds, 3));
    const eps = nodes.map(endpointOf);
    const running = loads.map((l, i) => l.run(eps[i]));
    // kill node 3 while its clients have requests in flight
    const t0 = Date.now();
    while ((loads[2].inFlight === 0 || loads[2].received.length < 2) && loads[2].remaining > 0 && Date.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 5));
    const inFlight = loads[2].inFlight;
    loads[2].stop();
    await killNode(nodes[2]);
    await Promise.all(running);
    // the survivors served their whole queues
    expect(loads[0].received.length).toBe(devices[0].length);
    expect(loads[1].received.length).toBe(devices[1].length);
    // node 3's devices, the interrupted ones included, go to node 1 (a load balancer's failover)
    await loads[2].run(eps[0]);
    const refused = [...loads[2].stats.refused].map(([s, n]) => `${s}:${n}`).join(' ');
    process.stdout.write(
      `kill -9 of node 3 with ${inFlight} requests in flight: ${loads.map((l) => l.received.length).join('/')} certificates received, ${loads[2].stats.interrupted} interrupted, refused ${refused || 'none'}\n`,
    );
    expect(loads[2].remaining).toBe(0);

    const received = loads.flatMap((l) => l.received);
    const missing: string[] = [];
    for (const r of received) {
      const got = await admin(eps[1], 'GET', `/certificates/${r.serial}`);
      if (got.status !== 200) missing.push(`${r.deviceId} ${r.serial}: HTTP ${got.status}`);
      else if (!new crypto.X509Certificate((JSON.parse(got.body.toString()) as { pem: string }).pem).raw.equals(r.der)) missing.push(`${r.deviceId} ${r.serial}: stored bytes differ`);
    }
    expect(missing).toEqual([]);
    expect(new Set(received.map((r) => r.serial)).size).toBe(received.length);
    const stored = await storedCertificates(eps[0], 'multi-');
    expect(new Set(stored.map((c) => c.serial)).size).toBe(stored.length);
    expect(stored.length).toBeGreaterThanOrEqual(received.length);
    // one device, one certificate, across nodes and the crash
    const perDevice = new Map<string, number>();
    for (const c of stored) perDevice.set(c.deviceId, (perDevice.get(c.deviceId) ?? 0) + 1);
    expect([...perDevice].filter(([, n]) => n > 1)).toEqual([]);
    // the audit chain written by three nodes at once is still one chain
    const v = await nodes[0].cli(['audit', 'verify']);
    expect(v.stdout).toMatch(/^audit log intact: \d+ records/);
    expect(v.code).toBe(0);
  }, 180_000);
});
