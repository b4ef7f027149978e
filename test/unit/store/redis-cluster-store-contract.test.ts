import { Cluster } from 'ioredis';
import { RedisStore } from '../../../src/store/redis/redis-store';
import { RedisCluster, hasRedisServer, startRedisCluster } from '../../helpers/redis-server';
import { describeStoreContract } from '../../store-contract/store-contract';
import { redisReleaseHooks } from '../../store-contract/redis-release-hooks';

/**
 * The store contract on a 3-master Redis Cluster (redis-server --cluster-enabled yes x3, joined by
 * redis-cli --cluster create): the store speaks to it through the ioredis Cluster client
 * (store.redis.cluster.nodes); every key carries the one hash tag, so every transaction is in one slot.
 */
let cluster: RedisCluster;
let admin: Cluster;
beforeAll(async () => {
  if (!hasRedisServer()) throw new Error('redis-server is not installed: run scripts/install-test-deps.sh (Debian package redis-server)');
  cluster = await startRedisCluster(3);
  admin = new Cluster(cluster.nodes.map((n) => ({ host: n.split(':')[0], port: Number(n.split(':')[1]) })));
}, 60_000);
afterAll(async () => {
  admin?.disconnect();
  await cluster?.stop();
});

describeStoreContract(
  'redis cluster',
  async () => {
    await Promise.all(admin.nodes('master').map((n) => n.flushdb()));
    const opened: RedisStore[] = [];
    const open = () => {
      const s = new RedisStore({ url: 'redis://unused', cluster: { nodes: cluster.nodes } });
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
      },
    };
  },
  { attestation: true },
);
