import { RedisStore } from '../../../src/store/redis/redis-store';
import { RedisServer, hasRedisServer, startRedisServer } from '../../helpers/redis-server';

/**
 * Issue 11, from the bench/redis-http profile: a Basic enrollment reserves an authentication attempt
 * (a WATCH/MULTI transaction on the writer connection) and forgives it once the secret is right. The
 * transaction watched the global index of attempts, which every reservation and forgiveness writes, so
 * enrollments of unrelated devices made each other's reservations retry, on one node and across nodes.
 * Only attempts of the same key (and the evictable count) may make a reservation read again.
 */
let server: RedisServer;
beforeAll(async () => {
  if (!hasRedisServer()) throw new Error('redis-server is not installed: run scripts/install-test-deps.sh (Debian package redis-server)');
  server = await startRedisServer();
});
afterAll(async () => {
  await server?.stop();
});

it('reservations and forgiveness for different devices on two nodes never make a reservation retry, and every slot is counted right', async () => {
  const nodes = [new RedisStore({ url: server.url }), new RedisStore({ url: server.url })];
  try {
    const rules = { windowSeconds: 600, limit: 5, evictable: false, maxEvictable: 100 };
    const now = new Date();
    // what the secret authenticator does for each enrollment: reserve, then forgive when the secret is right
    const enrollments = Array.from({ length: 120 }, async (_, i) => {
      const node = nodes[i % 2];
      const r = await node.reserveAuthAttempt(`basic:dev-${i}`, now, rules);
      if (!r.allowed) throw new Error(`dev-${i} refused`);
      expect(r.attempts).toBe(1);
      // a third of them failed: kept as a failure
      if (i % 3) await node.forgiveAuthAttempt(r.attemptId);
    });
    await Promise.all(enrollments);
    expect(nodes.map((n) => n.writeStats.conflicts)).toEqual([0, 0]);
    const counts = await Promise.all(Array.from({ length: 120 }, async (_, i) => (await nodes[0].countAuthFailures(`basic:dev-${i}`, now, 600)).count));
    expect(counts).toEqual(Array.from({ length: 120 }, (_, i) => (i % 3 ? 0 : 1)));
  } finally {
    await Promise.all(nodes.map((n) => n.close()));
  }
});
