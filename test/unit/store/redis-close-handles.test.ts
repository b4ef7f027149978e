import { createHook } from 'node:async_hooks';
import { RedisStore } from '../../../src/store/redis/redis-store';
import { hasRedisServer, startRedisServer } from '../../helpers/redis-server';

/**
 * Issue 11: "Jest did not exit one second after the test run" after the Redis suites. ioredis'
 * disconnect() on a connection that had already closed (after QUIT, or a refused connection in the
 * helper's PING loop) armed a 2 s timer nothing cleared. This test watches every timer and socket
 * ioredis creates while a redis-server is started, a store writes, subscribes and closes, and the
 * server stops: none that keeps the process alive may remain.
 */

/** Tracked: an async resource ioredis created, with the stack that created it (the failure message). */
interface Tracked {
  type: string;
  resource: { hasRef?: () => boolean };
  stack: string;
}

it('starting redis-server, a RedisStore writing, subscribing and closing, and stopping the server leave no ioredis timer or socket behind', async () => {
  if (!hasRedisServer()) throw new Error('redis-server is not installed: run scripts/install-test-deps.sh (Debian package redis-server)');
  const live = new Map<number, Tracked>();
  const limit = Error.stackTraceLimit;
  const hook = createHook({
    init(id, type, _trigger, resource) {
      if (type !== 'Timeout' && type !== 'TCPWRAP') return;
      Error.stackTraceLimit = 60;
      const stack = new Error().stack ?? '';
      Error.stackTraceLimit = limit;
      if (stack.includes('ioredis')) live.set(id, { type, resource: resource as Tracked['resource'], stack });
    },
    destroy(id) {
      live.delete(id);
    },
  });
  hook.enable();
  try {
    const server = await startRedisServer();
    try {
      // whether QUIT's socket has closed when close() continues is a race: ten rounds make the old fault certain
      for (let round = 0; round < 10; round++) {
        const store = new RedisStore({ url: server.url });
        const other = new RedisStore({ url: server.url });
        let subscribed = false;
        store.watchRevocations(
          () => undefined,
          (l) => (subscribed = l),
        );
        const id = `d-${round}`;
        await store.createDevice(
          { id, owner: null, label: null, state: 'registered' },
          { hash: 'h', expiresAt: new Date(Date.now() + 86400_000) },
          { type: 'device.registered', actor: 'test', subject: id, data: {} },
        );
        expect((await other.getDevice(id))?.state).toBe('registered');
        for (let i = 0; i < 100 && !subscribed; i++) await new Promise((r) => setImmediate(r));
        await Promise.all([store.close(), other.close()]);
      }
    } finally {
      await server.stop();
    }
    await new Promise((r) => setImmediate(r));
    const left = [...live.values()].filter((t) => t.type === 'TCPWRAP' || t.resource.hasRef?.() !== false);
    expect(left.map((t) => `${t.type}\n${t.stack}`)).toEqual([]);
  } finally {
    hook.disable();
  }
});
