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
  // one wrapper per method, made on its first use: a new closure on every call was garbage on every store call
  const wrappers = new WrapperCache();
  return new Proxy(store, {
    get(target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function') return value;
      return wrappers.get(
        prop,
        value as (...a: unknown[]) => unknown,
        (fn) =>
          function (this: unknown, ...args: unknown[]) {
            try {
              return wrap(fn.apply(this === receiver ? target : this, args));
            } catch (e) {
              throw map(e);
            }
          },
      );
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

type Method = (...a: unknown[]) => unknown;

/**
 * WrapperCache keeps the wrapper a store proxy made for each method, keyed by property and checked against
 * the method it wrapped (a property that now holds another function gets a new wrapper), so a proxy's get
 * allocates nothing on the hot paths that call the store several times per request.
 */
export class WrapperCache {
  private readonly byProp = new Map<PropertyKey, { fn: Method; wrapper: Method }>();

  get(prop: PropertyKey, fn: Method, make: (fn: Method) => Method): Method {
    const e = this.byProp.get(prop);
    if (e && e.fn === fn) return e.wrapper;
    const wrapper = make(fn);
    this.byProp.set(prop, { fn, wrapper });
    return wrapper;
  }
}
