import { ChildProcess, spawn } from 'node:child_process';
import { Redis } from 'ioredis';
import { RedisStore } from '../../../src/store/redis/redis-store';
import { freePort } from '../../helpers/ports';
import { RedisServer, hasRedisServer, startRedisServer } from '../../helpers/redis-server';
import { TmpDir, makeTmpDir } from '../../helpers/tmp';

/**
 * store.redis.waitReplicas against a real primary and replica (redis-server --replicaof): a write returns
 * once the replica has it; with the replica stopped (by pid) the write is 'store-unavailable' after the
 * timeout, and what was written on the primary is there (a retry finds it); in a batch of issuances the
 * committed ones get that error and a refused one its own.
 */
let primary: RedisServer;
let replica: ChildProcess;
let replicaDir: TmpDir;

beforeAll(async () => {
  if (!hasRedisServer()) throw new Error('redis-server is not installed: run scripts/install-test-deps.sh (Debian package redis-server)');
  primary = await startRedisServer();
  replicaDir = makeTmpDir('device-ca-redis-replica-');
  const port = await freePort();
  replica = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--dir', replicaDir.path, '--replicaof', '127.0.0.1', String(primary.port)], {
    stdio: 'ignore',
  });
  const admin = new Redis(primary.url);
  try {
    // bounded by time, not by a count of tries: a loaded machine starts the replica and syncs it later
    for (const end = Date.now() + 30_000; Date.now() < end;) {
      if (/slave0:.*state=online/.test(String(await admin.info('replication')))) return; // connected and past the initial sync
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('the replica did not connect');
  } finally {
    admin.disconnect();
  }
}, 60_000);

afterAll(async () => {
  if (replica && replica.exitCode === null && replica.signalCode === null) {
    const gone = new Promise((r) => replica.once('exit', r));
    replica.kill('SIGTERM');
    await gone;
  }
  replicaDir?.cleanup();
  await primary?.stop();
});

const audit = (subject: string) => ({ type: 'token.created', actor: 'test', subject, data: {} });

it('a write waits for the replica; without it, store-unavailable after the timeout, and the write is on the primary', async () => {
  // 2 s for the replica's acknowledgement: a loaded machine may take longer than a few hundred ms for a write the
  // replica is there to take, and the first write below must not be refused for that
  const store = new RedisStore({ url: primary.url, waitReplicas: { replicas: 1, timeoutMs: 2000 } });
  try {
    await store.createToken({ id: 'tok-1', hash: 'h1', scope: 'operator', description: null }, audit('tok-1'));
    // SIGKILL: gone at once (a SIGTERM'd redis-server flushes its AOF first, seconds on a busy disk)
    const gone = new Promise((r) => replica.once('exit', r));
    replica.kill('SIGKILL');
    await gone;
    await expect(store.createToken({ id: 'tok-2', hash: 'h2', scope: 'operator', description: null }, audit('tok-2'))).rejects.toMatchObject({
      code: 'store-unavailable',
      message: 'store write not replicated (0 of 1 replicas within 2000 ms)',
    });
    expect(await store.findToken('h2')).toMatchObject({ id: 'tok-2' });
    // reads do not wait
    expect(await store.findToken('h1')).toMatchObject({ id: 'tok-1' });

    // a batch of issuances (one script call): the committed one is not replicated, the refused one keeps its own refusal
    const cert = {
      deviceId: null,
      issuer: 'device-ca-issuing',
      subject: 'CN=svc',
      profile: 'default',
      notBefore: new Date(),
      notAfter: new Date(Date.now() + 86400_000),
      shard: 0,
      spkiSha256: 'ab',
      der: Buffer.from([0x30, 0x00]),
    };
    const results = await Promise.allSettled([
      store.recordIssuance({ cert: { ...cert, serial: '0a01' }, audit: audit('0a01') }),
      store.recordIssuance({ cert: { ...cert, serial: '0a01' }, audit: audit('0a01-again') }),
    ]);
    expect(results.map((r) => (r.status === 'rejected' ? (r.reason as { code: string }).code : 'ok'))).toEqual(['store-unavailable', 'internal']);
    expect(await store.getCertificate('0a01')).toMatchObject({ serial: '0a01', subject: 'CN=svc' });
  } finally {
    await store.close();
  }
});

it('waitReplicas with cluster is a config error', () => {
  expect(() => new RedisStore({ url: 'redis://x', cluster: { nodes: ['127.0.0.1:1'] }, waitReplicas: { replicas: 1, timeoutMs: 10 } })).toThrow(/waitReplicas does not work with/);
});
