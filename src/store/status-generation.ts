/**
 * StatusGeneration is an optional store capability of a store that several nodes share over the network
 * (Redis): statusGeneration() reads a value that every write changing a certificate's status (revoke, hold,
 * release, a device change revoking its certificates) or adding certificates by a copy sets to a fresh
 * random value in the same transaction. A node that reads it AFTER a request arrived learns whether any
 * status changed since the statuses it keeps were read, whichever node or process changed it: the barrier
 * ca/ocsp-service.ts puts before every answer from memory, so a revocation whose call returned on node A is
 * in the next answer of node B even when B's pub/sub message (RevocationFeed) is still on its way.
 *
 * Random rather than counted (as SQLite's status generation since migration 27): a store restored from a
 * backup, or a failover to a replica that lost the last writes, followed by as many changes, cannot bring
 * back a value a node read before. An issuance does not change it: an absent status (null, "unknown")
 * must not be kept under it. A store that never changed a status answers null.
 */
export interface StatusGeneration {
  statusGeneration(): Promise<string | null>;
}

/** hasStatusGeneration: whether a store offers statusGeneration() (StatusGeneration). */
export function hasStatusGeneration(s: object): s is StatusGeneration {
  return typeof (s as Partial<StatusGeneration>).statusGeneration === 'function';
}
