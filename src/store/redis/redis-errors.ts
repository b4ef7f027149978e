import { DeviceCaError } from '../../errors/device-ca-error';

/**
 * UNAVAILABLE_REPLIES: Redis error replies that say the server cannot serve, whatever the request: it is
 * loading its data set (LOADING), refuses writes because its last snapshot failed (MISCONF), is a replica
 * (READONLY), out of memory (OOM), or a Cluster slot is moving or down (TRYAGAIN, CLUSTERDOWN, MASTERDOWN).
 */
const UNAVAILABLE_REPLIES: ReadonlyMap<string, string> = new Map([
  ['LOADING', 'Redis is loading its data'],
  ['MISCONF', 'Redis cannot persist'],
  ['READONLY', 'Redis is read-only'],
  ['OOM', 'Redis out of memory'],
  ['TRYAGAIN', 'Redis Cluster slot moving'],
  ['CLUSTERDOWN', 'Redis Cluster down'],
  ['MASTERDOWN', 'Redis master down'],
  ['BUSY', 'Redis busy running a script'],
]);

/** REDIS_RETRY_AFTER_SECONDS: what a client is told to wait while Redis is unreachable or refusing. */
const REDIS_RETRY_AFTER_SECONDS = 5;

/**
 * redisUnavailable returns the 'store-unavailable' error for a failure that means Redis cannot serve (no
 * connection, a timed-out command, one of UNAVAILABLE_REPLIES), or null for anything else (a bug such as
 * WRONGTYPE stays 'internal'). Recognised by name, not instanceof, like sqlite-errors.ts.
 */
export function redisUnavailable(e: unknown): DeviceCaError | null {
  if (e instanceof DeviceCaError || typeof e !== 'object' || e === null) return null;
  const err = e as { name?: unknown; message?: unknown };
  const message = String(err.message ?? '');
  let reason: string | undefined;
  if (err.name === 'ReplyError') reason = UNAVAILABLE_REPLIES.get(message.split(' ')[0]);
  else if (err.name === 'MaxRetriesPerRequestError' || /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|EPIPE|Connection is closed|Stream isn't writeable|connect/i.test(message))
    reason = 'Redis unreachable';
  if (reason === undefined) return null;
  return new DeviceCaError('store-unavailable', `store unavailable (${reason})`, { detail: message, retryAfterSeconds: REDIS_RETRY_AFTER_SECONDS, cause: e });
}

/** toRedisStoreError: what a Redis store method throws instead of e (unchanged unless redisUnavailable maps it). */
export function toRedisStoreError(e: unknown): unknown {
  return redisUnavailable(e) ?? e;
}
