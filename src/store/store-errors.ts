/**
 * withStoreErrors wraps every method of a store so that what its backend throws passes through map
 * first: one place turns a backend's own failures (SQLite's disk-full, I/O and corruption errors) into
 * DeviceCaError codes, whichever of the many store methods ran into them. Promises are mapped on
 * rejection; async iterables (paged reads such as revokedInShard) on the page that fails.
 */
export function withStoreErrors<S extends object>(store: S, map: (e: unknown) => unknown): S {
  const wrap = (v: unknown): unknown => {
    if (v instanceof Promise) return v.catch((e: unknown) => Promise.reject(map(e)));
    if (v !== null && typeof v === 'object' && Symbol.asyncIterator in v) return mapIterable(v as AsyncIterable<unknown>, map);
    return v;
  };
  return new Proxy(store, {
    get(target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function') return value;
      return function (this: unknown, ...args: unknown[]) {
        try {
          return wrap((value as (...a: unknown[]) => unknown).apply(this === receiver ? target : this, args));
        } catch (e) {
          throw map(e);
        }
      };
    },
  });
}

async function* mapIterable<T>(it: AsyncIterable<T>, map: (e: unknown) => unknown): AsyncIterable<T> {
  try {
    yield* it;
  } catch (e) {
    throw map(e);
  }
}
