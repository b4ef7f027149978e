import { Counter, Histogram, Registry } from 'prom-client';
import { isDeviceCaError } from '../errors/device-ca-error';

/** STORE_SECONDS_BUCKETS: store calls take from tens of microseconds (SQLite reads) to seconds (Redis unreachable). */
const STORE_SECONDS_BUCKETS = [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/**
 * withStoreMetrics wraps every method of a store that returns a promise so that /metrics shows how long
 * store calls take and how they fail, per operation (the method's name, a bounded set):
 * `device_ca_store_operation_seconds{backend, operation}` and
 * `device_ca_store_errors_total{backend, operation, code}` (the DeviceCaError code, e.g. store-unavailable
 * while Redis is unreachable). Wrap outside withStoreErrors, so the codes are the mapped ones.
 */
export function withStoreMetrics<S extends object>(store: S, registry: Registry, backend: string): S {
  const seconds =
    (registry.getSingleMetric('device_ca_store_operation_seconds') as Histogram<'backend' | 'operation'> | undefined) ??
    new Histogram({
      name: 'device_ca_store_operation_seconds',
      help: 'store calls by backend and operation',
      labelNames: ['backend', 'operation'],
      buckets: STORE_SECONDS_BUCKETS,
      registers: [registry],
    });
  const errors =
    (registry.getSingleMetric('device_ca_store_errors_total') as Counter<'backend' | 'operation' | 'code'> | undefined) ??
    new Counter({ name: 'device_ca_store_errors_total', help: 'failed store calls by backend, operation and error code', labelNames: ['backend', 'operation', 'code'], registers: [registry] });
  return new Proxy(store, {
    get(target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function' || typeof prop !== 'string') return value;
      return function (this: unknown, ...args: unknown[]) {
        // the timer starts before the call: SQLite does its work synchronously inside it
        const end = seconds.startTimer({ backend, operation: prop });
        const out: unknown = (value as (...a: unknown[]) => unknown).apply(this === receiver ? target : this, args);
        if (!(out instanceof Promise)) return out;
        return out.then(
          (v: unknown) => (end(), v),
          (e: unknown) => {
            end();
            errors.inc({ backend, operation: prop, code: isDeviceCaError(e) ? e.code : 'internal' });
            throw e;
          },
        );
      };
    },
  });
}
