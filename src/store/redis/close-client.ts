import { Cluster, Redis } from 'ioredis';

/** CLOSE_WAIT_MS: how long closeRedisClient waits for the server to close a connection after QUIT. */
const CLOSE_WAIT_MS = 2000;

/**
 * closeRedisClient ends an ioredis connection (standalone, Sentinel-managed or Cluster) and leaves
 * nothing behind in the process. Why not `quit()` then `disconnect()`: ioredis' disconnect() arms a
 * timer (disconnectTimeout, 2 s) that only the socket's next 'close' event clears; called on a
 * connection that QUIT already closed, that event never comes and the timer keeps the process (or
 * jest) alive for 2 s (issue 11). So: QUIT, and wait for the client's 'end' (at most CLOSE_WAIT_MS) when
 * it was connected; disconnect() only when QUIT failed, where it is what stops the reconnection attempts.
 * Closing while Redis is unreachable still leaves ioredis' timer (its QUIT calls disconnect() itself).
 */
export async function closeRedisClient(c: Redis | Cluster): Promise<void> {
  const hasEnded = (): boolean => c.status === 'end';
  if (hasEnded()) return;
  // without a connection (Redis unreachable, reconnecting) ioredis answers QUIT itself and no 'end' follows
  const connected = c.status === 'ready' || c.status === 'connect' || c.status === 'connecting';
  let timer: NodeJS.Timeout | undefined;
  const ended = new Promise<void>((resolve) => {
    c.once('end', resolve);
    timer = setTimeout(resolve, CLOSE_WAIT_MS);
  });
  const quit = await c.quit().then(
    () => true,
    () => false,
  );
  if (!quit && !hasEnded()) c.disconnect();
  if (connected) await ended;
  clearTimeout(timer);
}
