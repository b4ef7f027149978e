import { Cluster, Redis } from 'ioredis';

/** CLOSE_WAIT_MS: how long closeRedisClient waits for the server to close a connection after QUIT. */
const CLOSE_WAIT_MS = 2000;

/**
 * closeRedisClient ends an ioredis connection (standalone, Sentinel-managed or Cluster) and leaves
 * nothing behind in the process. Why not `quit()` then `disconnect()`: ioredis' disconnect() arms a
 * timer (disconnectTimeout, 2 s) that only the socket's next 'close' event clears; called on a
 * connection that QUIT already closed, that event never comes and the timer keeps the process (or
 * jest) alive for 2 s (issue 11). So: QUIT, and wait for the client's 'end'; disconnect() only when
 * QUIT failed (server unreachable), where it is what stops the reconnection attempts.
 */
export async function closeRedisClient(c: Redis | Cluster): Promise<void> {
  const hasEnded = (): boolean => c.status === 'end';
  if (hasEnded()) return;
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
  await ended;
  clearTimeout(timer);
}
