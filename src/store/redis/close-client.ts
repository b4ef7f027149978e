import { Cluster, Redis } from 'ioredis';
import { closeHandler } from 'ioredis/built/redis/event_handler';

/** CLOSE_WAIT_MS: how long closeRedisClient waits for the server to close a connection after QUIT. */
const CLOSE_WAIT_MS = 2000;

/**
 * closeRedisClient ends an ioredis connection (standalone, Sentinel-managed or Cluster) and leaves
 * nothing behind in the process. Why not `quit()` then `disconnect()`: ioredis' disconnect() arms a
 * timer (disconnectTimeout, 2 s) that only the socket's next 'close' event clears; called on a
 * connection that QUIT already closed, that event never comes and the timer keeps the process (or
 * jest) alive for 2 s (issue 11). So: QUIT, and wait for the client's 'end' (at most CLOSE_WAIT_MS) when
 * it is connected ('ready'); any other state (Redis unreachable, reconnecting, never connected) ends
 * through disconnectRedisClient, without QUIT: ioredis answers an offline QUIT itself by calling
 * disconnect(), which is what armed the timer there.
 */
export async function closeRedisClient(c: Redis | Cluster): Promise<void> {
  const hasEnded = (): boolean => c.status === 'end';
  if (hasEnded()) return;
  let timer: NodeJS.Timeout | undefined;
  let onEnd: (() => void) | undefined;
  const ended = new Promise<void>((resolve) => {
    onEnd = resolve;
    c.once('end', resolve);
    timer = setTimeout(resolve, CLOSE_WAIT_MS);
  });
  if (c.status === 'ready' || c instanceof Cluster) {
    const quit = await c.quit().then(
      () => true,
      () => false,
    );
    if (!quit && !hasEnded()) disconnectRedisClient(c);
  } else {
    disconnectRedisClient(c);
  }
  // a socket still open or still connecting closes on its own 'close'; a dead one ended above already
  if (!hasEnded()) await ended;
  clearTimeout(timer);
  if (onEnd) c.off('end', onEnd);
}

/**
 * disconnectRedisClient is ioredis' disconnect() (stop reconnecting, close the socket at once) without
 * the leftover 2 s timer of a client whose socket has already closed. ioredis 5's disconnect() hands
 * the connector's last socket to its disconnectTimeout timer, cleared only by that socket's 'close';
 * while the client is reconnecting (Redis unreachable, or killed under a running store) that socket
 * closed long ago, and the client stays 'reconnecting' for good instead of reaching 'end'
 * (ioredis issue #1247). So: detach a destroyed socket from the connector first, and finish a client
 * that no socket 'close' will ever end the way ioredis ends one it closes while waiting ('wait'):
 * its close handler, which sees the manual close, rejects what is queued and sets 'end'. Cluster
 * clients are left to ioredis: their node connections do not reconnect (retryStrategy null), they end.
 */
export function disconnectRedisClient(c: Redis | Cluster): void {
  if (c.status === 'end') return;
  if (c instanceof Cluster) {
    c.disconnect();
    return;
  }
  const connector = (c as unknown as { connector?: { stream?: { destroyed?: boolean } } }).connector;
  if (connector?.stream?.destroyed) connector.stream = undefined;
  c.disconnect();
  if (c.status === 'reconnecting' || c.status === 'close') closeHandler(c)();
}
