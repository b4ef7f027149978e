import { Registry } from 'prom-client';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { withStoreMetrics } from '../../../src/store/store-metrics';

/** withStoreMetrics: every store call is timed per operation, and failures are counted by their error code, in /metrics' text. */
it('times each promise-returning call per operation and counts failures by code; other values pass through untouched', async () => {
  const registry = new Registry();
  let down = false;
  const fake = {
    async getDevice(id: string) {
      if (down) throw new DeviceCaError('store-unavailable', 'store unavailable (Redis unreachable)');
      return { id };
    },
    async probe() {
      throw new Error('bug');
    },
    watch(): () => void {
      return () => undefined;
    },
    name: 'fake',
  };
  const s = withStoreMetrics(fake, registry, 'redis');
  expect(await s.getDevice('d1')).toEqual({ id: 'd1' });
  await s.getDevice('d2');
  down = true;
  await expect(s.getDevice('d3')).rejects.toMatchObject({ code: 'store-unavailable' });
  await expect(s.probe()).rejects.toThrow('bug');
  expect(typeof s.watch()).toBe('function');
  expect(s.name).toBe('fake');
  const text = await registry.metrics();
  expect(text).toContain('device_ca_store_operation_seconds_count{backend="redis",operation="getDevice"} 3');
  expect(text).toContain('device_ca_store_operation_seconds_count{backend="redis",operation="probe"} 1');
  expect(text).toContain('device_ca_store_errors_total{backend="redis",operation="getDevice",code="store-unavailable"} 1');
  expect(text).toContain('device_ca_store_errors_total{backend="redis",operation="probe",code="internal"} 1');
  expect(text).not.toContain('operation="watch"');
  // a second wrap on the same registry (another store of the same worker) shares the metrics
  await withStoreMetrics(fake, registry, 'sqlite')
    .probe()
    .catch(() => undefined);
  expect(await registry.metrics()).toContain('device_ca_store_errors_total{backend="sqlite",operation="probe",code="internal"} 1');
});

/** withStoreMetrics times the synchronous part of a call too: SQLite does its work before the promise is made. */
it('counts the time a store spends synchronously before it returns its promise', async () => {
  const registry = new Registry();
  const fake = {
    async countDevices() {
      return 1;
    },
  };
  // a store method that works synchronously for 30 ms, then hands back a settled promise (as SqliteStore does)
  const busy = {
    countDevices(): Promise<number> {
      const until = Date.now() + 30;
      while (Date.now() < until) {
        /* SQLite's synchronous work */
      }
      return fake.countDevices();
    },
  };
  await withStoreMetrics(busy, registry, 'sqlite').countDevices();
  const text = await registry.metrics();
  const sum = Number(/device_ca_store_operation_seconds_sum\{backend="sqlite",operation="countDevices"\} ([0-9.e-]+)/.exec(text)?.[1]);
  expect(sum).toBeGreaterThanOrEqual(0.025);
});
