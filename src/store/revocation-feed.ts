/**
 * RevocationFeed is an optional store capability: a store shared by several nodes tells every node when a
 * certificate's status changes (the Redis store publishes on a pub/sub channel in the same MULTI as the
 * change), so a node may keep certificate statuses in memory between requests and drop only the one that
 * changed (ca/ocsp-service.ts). A message may arrive after a request that must already see the change:
 * a store that has the feed also has a StatusGeneration (store/status-generation.ts), the barrier that
 * closes that window; the feed is what lets a change keep every other status in memory.
 *
 * Delivery is at most once (Redis pub/sub keeps nothing for a subscriber that is away): `onLive(false)`
 * says the feed may miss changes from now on, and `onLive(true)` says it listens again; a listener must
 * forget what it kept while the feed was not live.
 */
export interface RevocationFeed {
  /**
   * watchRevocations calls onChange(serial) for each status change, onLive on each change of the feed's
   * state, and onGeneration(generation, previous) with the StatusGeneration value each change set and the
   * one it replaced (null: none; undefined: not told), after that change's onChange (messages arrive in
   * commit order); returns the unsubscribe. A message may be lost while the feed stays live (ioredis'
   * Cluster subscriber moves to another node without a 'close'): a listener that skips the store's
   * generation read on a told generation checks that `previous` joins what it was told before.
   */
  watchRevocations(onChange: (serial: string) => void, onLive: (live: boolean) => void, onGeneration?: (generation: string, previous: string | null | undefined) => void): () => void;
}

/** isRevocationFeed: whether a store tells about status changes (RevocationFeed). */
export function isRevocationFeed(s: object): s is RevocationFeed {
  return typeof (s as Partial<RevocationFeed>).watchRevocations === 'function';
}
