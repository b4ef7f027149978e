/**
 * RevocationFeed is an optional store capability: a store shared by several nodes tells every node when a
 * certificate's status changes (the Redis store publishes on a pub/sub channel in the same MULTI as the
 * change), so a node may keep certificate statuses in memory between requests and still answer a
 * revocation made through any other node within the time a message takes (ca/ocsp-service.ts).
 *
 * Delivery is at most once (Redis pub/sub keeps nothing for a subscriber that is away): `onLive(false)`
 * says the feed may miss changes from now on, and `onLive(true)` says it listens again; a listener must
 * forget what it kept while the feed was not live.
 */
export interface RevocationFeed {
  /** watchRevocations calls onChange(serial) for each status change and onLive on each change of the feed's state; returns the unsubscribe. */
  watchRevocations(onChange: (serial: string) => void, onLive: (live: boolean) => void): () => void;
}

/** isRevocationFeed: whether a store tells about status changes (RevocationFeed). */
export function isRevocationFeed(s: object): s is RevocationFeed {
  return typeof (s as Partial<RevocationFeed>).watchRevocations === 'function';
}
