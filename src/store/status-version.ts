/**
 * StatusVersion is an optional store capability of a store that every process of the service reads on one
 * machine (SQLite): statusVersion() returns a number that changes whenever a stored certificate's status may
 * have changed (or a certificate was removed) since the last call, by this process or by any other. It lets
 * ca/ocsp-service.ts keep certificate statuses in memory between requests and still answer a revocation made
 * by any process on the very next request: a changed version forgets every status kept. It costs one
 * shared-memory check while nothing was committed, and one small row read after a commit, never the
 * certificate's own row read, so commits that change no status (issuance, leases, CRLs) keep the statuses.
 * A certificate ADDED does not change it: an absent status (null, "unknown") must not be kept under it.
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
