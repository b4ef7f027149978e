import { loadConfig } from '../../../src/config/load-config';

/** DEVICE_CA_STORE (public contract): one variable selects the store, for the quick path `DEVICE_CA_STORE=redis://... npm start`. */
describe('DEVICE_CA_STORE', () => {
  it('a redis:// URL selects the shared Redis store with that URL', () => {
    const cfg = loadConfig({ env: { DEVICE_CA_STORE: 'redis://10.0.0.5:6380/2' } });
    expect(cfg.store).toMatchObject({ type: 'redis', url: 'redis://10.0.0.5:6380/2', allowNoPersistence: false });
    expect(loadConfig({ env: { DEVICE_CA_STORE: 'rediss://user:pw@redis.example:6379/0' } }).store).toMatchObject({ type: 'redis', url: 'rediss://user:pw@redis.example:6379/0' });
  });

  it('anything else is an SQLite file (relative to dataDir)', () => {
    expect(loadConfig({ env: { DEVICE_CA_STORE: '/srv/ca.sqlite' } }).store).toMatchObject({ type: 'sqlite', path: '/srv/ca.sqlite' });
    expect(loadConfig({ env: { DEVICE_CA_STORE: 'x.sqlite', DEVICE_CA_DATA: '/srv/d' } }).store.path).toBe('/srv/d/x.sqlite');
  });

  it('without it the store is the embedded SQLite file', () => {
    expect(loadConfig({ env: {} }).store).toMatchObject({ type: 'sqlite', allowNoPersistence: false });
    expect(loadConfig({ env: {} }).store.url).toBeUndefined();
  });

  it('store.type redis without a URL, or a URL that is not redis://, is a config error naming the key', () => {
    expect(() => loadConfig({ env: {}, overrides: { 'store.type': 'redis' } })).toThrow(/store\.url/);
    expect(() => loadConfig({ env: {}, overrides: { 'store.type': 'redis', 'store.url': 'http://x' } })).toThrow(/store\.url/);
  });
});
