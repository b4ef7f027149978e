import { createHook } from 'node:async_hooks';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { toRedisStoreError } from '../../../src/store/redis/redis-errors';
import { RedisStore } from '../../../src/store/redis/redis-store';
import { withStoreErrors } from '../../../src/store/store-errors';
import { freePort } from '../../helpers/ports';
import { hasRedisServer, startRedisServer } from '../../helpers/redis-server';

/**
 * Issue 11: "Jest did not exit one second after the test run" after the Redis suites. ioredis'
 * disconnect() on a connection that had already closed (after QUIT, a refused connection in the
 * helper's PING loop, or a client reconnecting to a Redis that is down) armed a 2 s timer nothing
 * cleared. These tests watch every timer and socket ioredis creates while stores write, subscribe and
 * close, against a running redis-server, a port with nothing listening, and a redis-server killed
 * under the store: none that keeps the process alive may remain once close() has resolved.
 */

/** Tracked: an async resource ioredis created, with the stack that created it (the failure message). */
interface Tracked {
  type: string;
  resource: { hasRef?: () => boolean };
  stack: string;
}

/** trackIoredisHandles records the timers and sockets created from ioredis code until stop(). */
function trackIoredisHandles(): { left(): Promise<string[]>; stop(): void } {
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
  return {
    async left() {
      await new Promise((r) => setImmediate(r));
      return [...live.values()].filter((t) => t.type === 'TCPWRAP' || t.resource.hasRef?.() !== false).map((t) => `${t.type}\n${t.stack}`);
    },
    stop: () => hook.disable(),
  };
}

/** openStore: a RedisStore with the errors the service sees (createStore's wrapping: 'store-unavailable' while Redis is down). */
const openStore = (url: string): RedisStore => withStoreErrors(new RedisStore({ url }), toRedisStoreError);

/** failureOf: the DeviceCaError code a store call failed with (the call must fail). */
async function failureOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return e instanceof DeviceCaError ? e.code : String(e);
  }
  throw new Error('expected the call to fail');
}

/** untilReconnecting waits (in 10 ms steps, at most 5 s) until the store's reader is between two connection attempts: the state of issue 11. */
async function untilReconnecting(store: RedisStore): Promise<void> {
  for (let i = 0; i < 500 && store.r.status !== 'reconnecting'; i++) await new Promise((r) => setTimeout(r, 10));
  expect(store.r.status).toBe('reconnecting');
}

const device = (id: string) =>
  [
    { id, owner: null, label: null, state: 'registered' as const },
    { hash: 'h', expiresAt: new Date(Date.now() + 86400_000) },
    { type: 'device.registered', actor: 'test', subject: id, data: {} },
  ] as const;

beforeAll(() => {
  if (!hasRedisServer()) throw new Error('redis-server is not installed: run scripts/install-test-deps.sh (Debian package redis-server)');
});

it('starting redis-server, a RedisStore writing, subscribing and closing, and stopping the server leave no ioredis timer or socket behind', async () => {
  const handles = trackIoredisHandles();
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
        await store.createDevice(...device(id));
        expect((await other.getDevice(id))?.state).toBe('registered');
        expect(await other.statusGeneration()).toBeNull(); // the OCSP barrier's own connection, closed with the store
        for (let i = 0; i < 100 && !subscribed; i++) await new Promise((r) => setImmediate(r));
        await Promise.all([store.close(), other.close()]);
      }
    } finally {
      await server.stop();
    }
    expect(await handles.left()).toEqual([]);
  } finally {
    handles.stop();
  }
});

it('a RedisStore opened against a port with nothing listening closes at once, reconnecting or not yet connected, and leaves no ioredis timer or socket', async () => {
  const handles = trackIoredisHandles();
  try {
    const url = `redis://127.0.0.1:${await freePort()}/0`;
    // closed before its first connection attempt has settled
    const fresh = openStore(url);
    fresh.watchRevocations(
      () => undefined,
      () => undefined,
    );
    await fresh.close();
    // closed while reconnecting: a read and a write have failed, so both connections retried
    const store = openStore(url);
    store.watchRevocations(
      () => undefined,
      () => undefined,
    );
    expect(await failureOf(store.getDevice('d-1'))).toBe('store-unavailable');
    expect(await failureOf(store.createDevice(...device('d-1')))).toBe('store-unavailable');
    expect(await failureOf(store.statusGeneration())).toBe('store-unavailable');
    await untilReconnecting(store);
    await store.close();
    expect(store.r.status).toBe('end');
    // a call after close() fails instead of waiting in ioredis' offline queue for a reconnection that will not come
    expect(await failureOf(store.getDevice('d-1'))).toBe('store-unavailable');
    expect(await failureOf(store.statusGeneration())).toBe('store-unavailable');
    expect(await handles.left()).toEqual([]);
  } finally {
    handles.stop();
  }
});

it('a RedisStore whose redis-server was killed under it closes and leaves no ioredis timer or socket', async () => {
  const handles = trackIoredisHandles();
  try {
    const server = await startRedisServer();
    try {
      const store = openStore(server.url);
      let live = false;
      store.watchRevocations(
        () => undefined,
        (l) => (live = l),
      );
      await store.createDevice(...device('d-1'));
      for (let i = 0; i < 100 && !live; i++) await new Promise((r) => setTimeout(r, 10));
      expect(live).toBe(true);
      expect(await store.statusGeneration()).toBeNull();
      await server.kill();
      expect(await failureOf(store.getDevice('d-1'))).toBe('store-unavailable');
      expect(await failureOf(store.statusGeneration())).toBe('store-unavailable');
      expect(await failureOf(store.createDevice(...device('d-2')))).toBe('store-unavailable');
      for (let i = 0; i < 100 && live; i++) await new Promise((r) => setTimeout(r, 10));
      expect(live).toBe(false);
      await untilReconnecting(store);
      await store.close();
      expect(store.r.status).toBe('end');
    } finally {
      await server.stop();
    }
    expect(await handles.left()).toEqual([]);
  } finally {
    handles.stop();
  }
});
