import * as crypto from 'node:crypto';
import { endpointOf } from '../crash/enrollment-load';
import { adminRequest } from '../helpers/raw-http';
import { hasRedisServer } from '../helpers/redis-server';
import { SentinelGroup, startSentinelGroup } from '../helpers/redis-sentinel';
import { RetryDevice, RetryingEnrollment } from '../helpers/retrying-enrollment';
import { RunningService, assertBuilt, startService } from '../helpers/service-process';

/**
 * A node on a Sentinel-managed Redis (issue 11): a master with two replicas and three Sentinels on
 * loopback; device-ca reaches the master through the Sentinels (store.redis.sentinel) and waits for one
 * replica after each write (store.redis.waitReplicas), so an acknowledged certificate is on a replica
 * before the device has it. Mid-stream the master is killed by pid (SIGKILL); the Sentinels promote a
 * replica and the node follows: during the failover the devices get 503 with Retry-After, never a 500,
 * and every certificate a device received is in the store afterwards, the audit chain intact.
 */
const describeIfRedis = hasRedisServer() ? describe : describe.skip;
if (!hasRedisServer()) process.stderr.write('redis-sentinel.test.ts: skipped (redis-server is not installed: scripts/install-test-deps.sh)\n');

let group: SentinelGroup;
let node: RunningService;
let token: string;

beforeAll(async () => {
  assertBuilt();
  if (!hasRedisServer()) return;
  group = await startSentinelGroup(2);
  node = await startService({
    env: { DEVICE_CA_ENROLLMENT_SECRET_HASH_COST: '10' },
    configYaml: [
      'store:',
      '  type: redis',
      '  url: redis://127.0.0.1/0',
      '  redis:',
      '    sentinel:',
      `      name: ${group.name}`,
      `      sentinels: [${group.sentinels.map((s) => `"${s}"`).join(', ')}]`,
      '    waitReplicas:',
      '      replicas: 1',
      '      timeoutMs: 1000',
      '',
    ].join('\n'),
    readyTimeoutMs: 60_000,
  });
  const t = await node.cli(['tokens', 'create', '--scope', 'operator']);
  if (t.code !== 0) throw new Error(t.stderr);
  token = t.stdout.trim();
}, 120_000);

afterAll(async () => {
  await node?.stop();
  await group?.stop();
});

async function register(id: string): Promise<RetryDevice> {
  const r = await adminRequest(endpointOf(node), token, 'POST', '/devices', { id, owner: 'fleet' });
  if (r.status !== 201) throw new Error(`register ${id}: HTTP ${r.status} ${r.body.toString()}`);
  return { id, secret: (JSON.parse(r.body.toString()) as { secret: string }).secret, key: crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey };
}

describeIfRedis('a node on Redis Sentinel while the master fails over', () => {
  it('keeps enrolling through a failover: 503 + Retry-After meanwhile, no 500, every acknowledged certificate in the store, the audit chain intact', async () => {
    const devices: RetryDevice[] = [];
    for (let i = 0; i < 40; i++) devices.push(await register(`sentinel-${i}`));
    const load = new RetryingEnrollment(devices, 4, 90_000);
    const running = load.run([endpointOf(node)]);
    while (load.acknowledged.length < 8) await new Promise((r) => setTimeout(r, 20));
    const before = load.acknowledged.length;
    const killed = await group.killMaster();
    await running;

    // the Sentinels promoted another server and the node followed it
    const now = await group.currentMasterPort();
    expect(now).not.toBe(killed);
    expect(load.gaveUp).toEqual([]);
    expect(load.acknowledged.length).toBe(devices.length);
    expect(load.acknowledged.length).toBeGreaterThan(before);
    // only 200, and 503 while there was no master: never a 500, and every 503 told the device when to come back
    for (const s of load.statuses.keys()) expect(['200', '503']).toContain(s);
    expect(load.statuses.get('503') ?? 0).toBeGreaterThan(0);
    expect(load.withoutRetryAfter).toBe(0);

    // nothing acknowledged lost: each certificate a device received is the one the new master holds
    for (const a of load.acknowledged) {
      const r = await adminRequest(endpointOf(node), token, 'GET', `/certificates/${a.serial}`);
      expect(r.status).toBe(200);
      expect(new crypto.X509Certificate((JSON.parse(r.body.toString()) as { pem: string }).pem).raw.equals(a.der)).toBe(true);
    }
    expect(new Set(load.acknowledged.map((a) => a.serial)).size).toBe(load.acknowledged.length);
    const v = await node.cli(['audit', 'verify']);
    expect(v.code).toBe(0);
    expect(v.stdout).toMatch(/^audit log intact/);
  }, 180_000);
});
