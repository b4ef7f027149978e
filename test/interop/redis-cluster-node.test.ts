import * as crypto from 'node:crypto';
import * as path from 'node:path';
import { endpointOf } from '../crash/enrollment-load';
import { opensslAny } from '../helpers/pki-client';
import { adminRequest } from '../helpers/raw-http';
import { RedisCluster, hasRedisServer, startRedisCluster } from '../helpers/redis-server';
import { RetryDevice, RetryingEnrollment } from '../helpers/retrying-enrollment';
import { RunningService, assertBuilt, startService } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * A running node on a 3-master Redis Cluster (issue 11), beyond the store contract suite: `serve` with
 * store.redis.cluster makes its CA in the cluster, a device enrolls over EST, the certificate is in the
 * store, and OCSP (openssl ocsp, verified against the node's chain) answers good, then revoked after a
 * revocation through the admin API.
 */
const describeIfRedis = hasRedisServer() ? describe : describe.skip;
if (!hasRedisServer()) process.stderr.write('redis-cluster-node.test.ts: skipped (redis-server is not installed: scripts/install-test-deps.sh)\n');

let tmp: TmpDir;
let cluster: RedisCluster;
let node: RunningService;
let token: string;

beforeAll(async () => {
  assertBuilt();
  if (!hasRedisServer()) return;
  tmp = makeTmpDir('device-ca-redis-cluster-node-');
  cluster = await startRedisCluster(3);
  node = await startService({
    env: { DEVICE_CA_ENROLLMENT_SECRET_HASH_COST: '10' },
    configYaml: ['store:', '  type: redis', '  redis:', '    cluster:', `      nodes: [${cluster.nodes.map((n) => `"${n}"`).join(', ')}]`, ''].join('\n'),
    readyTimeoutMs: 60_000,
  });
  const t = await node.cli(['tokens', 'create', '--scope', 'operator']);
  if (t.code !== 0) throw new Error(t.stderr);
  token = t.stdout.trim();
}, 120_000);

afterAll(async () => {
  await node?.stop();
  await cluster?.stop();
  tmp?.cleanup();
});

describeIfRedis('a node on a 3-master Redis Cluster', () => {
  it('enrolls a device over EST and answers OCSP for its certificate: good, then revoked', async () => {
    const r = await adminRequest(endpointOf(node), token, 'POST', '/devices', { id: 'cluster-1', owner: 'fleet' });
    expect(r.status).toBe(201);
    const device: RetryDevice = { id: 'cluster-1', secret: (JSON.parse(r.body.toString()) as { secret: string }).secret, key: crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey };
    const load = new RetryingEnrollment([device], 1, 30_000);
    await load.run([endpointOf(node)]);
    expect([...load.statuses.keys()]).toEqual(['200']);
    const got = load.acknowledged[0];

    const stored = await adminRequest(endpointOf(node), token, 'GET', `/certificates/${got.serial}`);
    expect(stored.status).toBe(200);
    expect(new crypto.X509Certificate((JSON.parse(stored.body.toString()) as { pem: string }).pem).raw.equals(got.der)).toBe(true);

    const crt = tmp.write('cluster-1.pem', new crypto.X509Certificate(got.der).toString());
    const issuing = path.join(node.dataDir, 'ca', 'device-ca-issuing.pem');
    const ocsp = () => opensslAny('ocsp', '-issuer', issuing, '-cert', crt, '-url', `http://127.0.0.1:${node.httpPort}/ocsp`, '-CAfile', node.chainPem);
    const good = await ocsp();
    expect(good.out).toContain('Response verify OK');
    expect(good.out).toContain(`${crt}: good`);

    const revoked = await adminRequest(endpointOf(node), token, 'POST', `/certificates/${got.serial}/revoke`, { reason: 'keyCompromise' });
    expect(revoked.status).toBe(200);
    const after = await ocsp();
    expect(after.out).toContain('Response verify OK');
    expect(after.out).toContain(`${crt}: revoked`);
  }, 120_000);
});
