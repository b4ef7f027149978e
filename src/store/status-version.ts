/**
 * StatusVersion is an optional store capability of a store that every process of the service reads on one
 * machine (SQLite): statusVersion() returns a number that changes whenever anything may have been committed
 * to the store since the last call, by this process or by any other. It lets ca/ocsp-service.ts keep
 * certificate statuses in memory between requests and still answer a revocation made by any process on the
 * very next request: a changed version forgets every status kept. It costs one shared-memory check instead
 * of a row read, and says nothing about which row changed, so a busy writer (issuance) just means the
 * statuses are read again, as without it.
 */
export interface StatusVersion {
  statusVersion(): number;
  /**
   * statusVersionReader (optional): statusVersion as a plain function, for a caller that checks it on every
   * request (ca/ocsp-service.ts). Taken once through the wrappers the service puts around its store
   * (store-metrics, store-errors), the function it returns is not wrapped itself: each check is the read
   * alone, without a timer and an error mapping around it.
   */
  statusVersionReader?(): () => number;
}

/** hasStatusVersion: whether a store offers statusVersion() (StatusVersion). */
export function hasStatusVersion(s: object): s is StatusVersion {
  return typeof (s as Partial<StatusVersion>).statusVersion === 'function';
}
