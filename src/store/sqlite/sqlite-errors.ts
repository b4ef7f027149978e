import { DeviceCaError } from '../../errors/device-ca-error';

/**
 * UNAVAILABLE_CODES: SQLite primary result codes (https://www.sqlite.org/rescode.html) that say the store
 * itself cannot serve, whatever the request: the disk is full (SQLITE_FULL), the file cannot be read or
 * written (SQLITE_IOERR_*, SQLITE_CANTOPEN), its pages are damaged (SQLITE_CORRUPT, SQLITE_NOTADB), it
 * became read-only (SQLITE_READONLY_*), or another writer held the lock past busy_timeout (SQLITE_BUSY).
 * A client gets 503 with Retry-After for these instead of 500: the request was fine, the store was not.
 */
const UNAVAILABLE_CODES: ReadonlyMap<string, string> = new Map([
  ['SQLITE_FULL', 'disk full'],
  ['SQLITE_IOERR', 'I/O error'],
  ['SQLITE_CANTOPEN', 'cannot open the file'],
  ['SQLITE_CORRUPT', 'file corrupt'],
  ['SQLITE_NOTADB', 'file corrupt'],
  ['SQLITE_READONLY', 'read-only'],
  ['SQLITE_BUSY', 'locked by another writer'],
]);

/** STORE_RETRY_AFTER_SECONDS: what a client is told to wait; a lock clears fast, a full disk needs an operator. */
const STORE_RETRY_AFTER_SECONDS = { busy: 2, other: 30 };

/** primaryCode: SQLITE_IOERR_WRITE -> SQLITE_IOERR (extended result codes name their primary code first). */
function primaryCode(code: string): string {
  return code.split('_').slice(0, 2).join('_');
}

/**
 * sqliteFailure says why the store cannot serve when e is an SQLite error of UNAVAILABLE_CODES (a short
 * reason and how long a client should wait), or null for anything else (a constraint, a bug).
 */
export function sqliteFailure(e: unknown): { reason: string; retryAfterSeconds: number; detail: string } | null {
  // recognised by name and code, not instanceof: better-sqlite3 registers its SqliteError class once per
  // process, so a second copy of the module (a test runner's registry) throws instances of the first
  const err = e as { name?: unknown; code?: unknown; message?: unknown } | null;
  if (typeof err !== 'object' || err === null || err.name !== 'SqliteError' || typeof err.code !== 'string') return null;
  const code = err.code;
  const primary = primaryCode(code);
  const reason = UNAVAILABLE_CODES.get(primary);
  if (reason === undefined) return null;
  const retryAfterSeconds = primary === 'SQLITE_BUSY' ? STORE_RETRY_AFTER_SECONDS.busy : STORE_RETRY_AFTER_SECONDS.other;
  return { reason, retryAfterSeconds, detail: `${code}: ${String(err.message)}` };
}

/**
 * sqliteUnavailable returns the 'store-unavailable' error for an SQLite error that means the store cannot
 * serve, or null for anything else (those stay 'internal'). The message is short and safe for a client;
 * SQLite's own message goes to `detail` (logged only).
 */
export function sqliteUnavailable(e: unknown): DeviceCaError | null {
  const f = sqliteFailure(e);
  return f ? new DeviceCaError('store-unavailable', `store unavailable (${f.reason})`, { detail: f.detail, retryAfterSeconds: f.retryAfterSeconds, cause: e }) : null;
}

/** toStoreError: what a store method throws instead of e (unchanged unless sqliteUnavailable maps it). */
export function toStoreError(e: unknown): unknown {
  return sqliteUnavailable(e) ?? e;
}
