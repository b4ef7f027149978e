import { Redis } from 'ioredis';
import { RedisStore } from '../../../src/store/redis/redis-store';
import { RedisServer, hasRedisServer, startRedisServer } from '../../helpers/redis-server';
import { describeStoreContract } from '../../store-contract/store-contract';
import { redisReleaseHooks } from '../../store-contract/redis-release-hooks';

/**
 * The store contract on the shared Redis store, against a real redis-server (AOF on) started for this
 * file: every test gets an empty database (FLUSHDB); `another` is a second node's client of the same data.
 */
let server: RedisServer;
beforeAll(async () => {
  if (!hasRedisServer()) throw new Error('redis-server is not installed: run scripts/install-test-deps.sh (Debian package redis-server)');
  server = await startRedisServer();
});
afterAll(async () => {
  await server?.stop();
});

describeStoreContract(
  'redis',
  async () => {
    const admin = new Redis(server.url);
    await admin.flushdb();
    const opened: RedisStore[] = [];
    const open = () => {
      const s = new RedisStore({ url: server.url });
      opened.push(s);
      return s;
    };
    const store = open();
    return {
      store,
      another: async () => open(),
      tamperAudit: async (seq, data) => {
        const key = '{dca}:audit:rec';
        const row = JSON.parse((await admin.hget(key, String(seq)))!) as Record<string, unknown>;
        await admin.hset(key, String(seq), JSON.stringify({ ...row, data }));
      },
      ...redisReleaseHooks(admin),
      cleanup: async () => {
        await Promise.allSettled(opened.map((s) => s.close()));
        admin.disconnect();
      },
    };
  },
  { attestation: true },
);
