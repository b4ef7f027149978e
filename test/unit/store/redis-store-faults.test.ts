import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { checkStoreDurable, createStore } from '../../../src/store/create-store';
import { StoreHealth } from '../../../src/store/store-health';
import { freePort } from '../../helpers/ports';
import { hasRedisServer, startRedisServer } from '../../helpers/redis-server';

/** The Redis store's start-up and fault behaviour against real redis-server processes. */
describe('Redis store: persistence check and outages', () => {
  beforeAll(() => {
    if (!hasRedisServer()) throw new Error('redis-server is not installed: run scripts/install-test-deps.sh (Debian package redis-server)');
  });
  const cfgFor = (url: string, allowNoPersistence = false) => ({ store: { type: 'redis' as const, path: 'unused', url, allowNoPersistence } });
  const errorOf = async (p: Promise<unknown>): Promise<DeviceCaError> => {
    try {
      await p;
    } catch (e) {
      expect(e).toBeInstanceOf(DeviceCaError);
      return e as DeviceCaError;
    }
    throw new Error('expected a rejection');
  };

  it('refuses a Redis with neither AOF nor RDB unless store.allowNoPersistence; accepts one with AOF', async () => {
    const bare = await startRedisServer({ persistence: 'none' });
    const aof = await startRedisServer();
    const stores = [createStore(cfgFor(bare.url)), createStore(cfgFor(aof.url))];
    try {
      const e = await errorOf(checkStoreDurable(cfgFor(bare.url), stores[0]));
      expect([e.code, e.message]).toEqual(['config', expect.stringContaining('allowNoPersistence')]);
      await checkStoreDurable(cfgFor(bare.url, true), stores[0]);
      await checkStoreDurable(cfgFor(aof.url), stores[1]);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
      await bare.stop();
      await aof.stop();
    }
  });

  it('an unreachable Redis is store-unavailable with Retry-After for reads, writes and the health probe', async () => {
    const store = createStore(cfgFor(`redis://127.0.0.1:${await freePort()}/0`));
    try {
      for (const call of [() => store.getDevice('dev-1'), () => store.appendAudit({ type: 't', actor: 'a', subject: 's', data: {} }), () => store.probe()]) {
        const e = await errorOf(call());
        expect(e.code).toBe('store-unavailable');
        expect(e.retryAfterSeconds).toBeGreaterThan(0);
      }
      await expect(new StoreHealth(store).check()).rejects.toMatchObject({ code: 'store-unavailable' });
    } finally {
      await store.close();
    }
  });

  it('Redis stopped and started again: 503-class errors during the outage, then the same data and service (AOF)', async () => {
    const server = await startRedisServer();
    const store = createStore(cfgFor(server.url));
    try {
      await store.createDevice(
        { id: 'dev-1', owner: null, label: null, state: 'registered' },
        { hash: 'h', expiresAt: new Date(Date.now() + 60_000) },
        { type: 'device.create', actor: 't', subject: 'dev-1', data: {} },
      );
      await server.stop({ keep: true });
      expect((await errorOf(store.getDevice('dev-1'))).code).toBe('store-unavailable');
      await server.restart();
      let dev = null;
      for (let i = 0; i < 100 && dev === null; i++) dev = await store.getDevice('dev-1').catch(() => new Promise<null>((r) => setTimeout(() => r(null), 100)));
      expect(dev).toMatchObject({ id: 'dev-1', state: 'registered' });
      await store.probe();
      expect((await store.head('x')).auditSeq).toBe(1);
    } finally {
      await store.close();
      await server.stop();
    }
  });
});
