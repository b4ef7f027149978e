import * as fs from 'node:fs';
import { DeviceCaError } from '../../errors/device-ca-error';
import { sqliteFailure } from './sqlite-errors';

/**
 * SPACE_PROBE_BYTES: what the guard asks the file system for: room for a group commit of issuances
 * (about 16 pages each of 4 KiB), so a store with less is refused before it is half way through one.
 */
export const SPACE_PROBE_BYTES = 64 * 1024;

/** SPACE_RECHECK_MS: how long a space check is trusted by the write path (the probe always checks again). */
export const SPACE_RECHECK_MS = 1000;

/** SPACE_RETRY_AFTER_SECONDS: a full disk needs an operator; as sqlite-errors.ts tells clients for SQLITE_FULL. */
const SPACE_RETRY_AFTER_SECONDS = 30;

/** SpaceFailure: why the store cannot take a write now: a short reason for /healthz and clients, the detail for the log. */
export interface SpaceFailure {
  reason: string;
  detail: string;
}

/** ERRNO_REASONS: file system errors of the space probe, worded as sqlite-errors.ts words SQLite's. */
const ERRNO_REASONS: ReadonlyMap<string, string> = new Map([
  ['ENOSPC', 'disk full'],
  ['EDQUOT', 'disk full'],
  ['EROFS', 'read-only'],
  ['EACCES', 'read-only'],
  ['EPERM', 'read-only'],
]);

/**
 * DiskSpaceGuard says whether the SQLite store can grow, for its health probe and its writes. In WAL mode
 * a write lands in the -wal file, and once a checkpoint has copied the WAL into the database file SQLite
 * writes the next frames over the WAL's old space: with checkpoints every 100 ms (wal-checkpointer.ts),
 * and now and then with SQLite's own, a store on a full disk still commits (and a probe that only writes
 * a row still passes) until the checkpoint that must grow the database file fails, and from then on each
 * write fails only once the WAL outgrows its old size. So the guard asks the file system itself: it
 * writes SPACE_PROBE_BYTES into a scratch file beside the store (`<store>-space`) and truncates it again
 * (the space is reserved at write() by ext4, XFS, btrfs and tmpfs alike, and released at once; the file
 * stays empty), and it keeps the last failure the checkpointing thread reported (the database file could
 * not take the WAL's pages). While either says no, writes are refused with 'store-unavailable' (503 +
 * Retry-After) before they start, as they were when the WAL had to grow, and /healthz says why.
 */
export class DiskSpaceGuard {
  private fd = -1;
  private checkedAt = -Infinity;
  private spaceFailure: SpaceFailure | null = null;
  private checkpointFailure: SpaceFailure | null = null;
  private readonly scratch: Buffer;

  constructor(
    private readonly storeFile: string,
    private readonly recheckMs = SPACE_RECHECK_MS,
    bytes = SPACE_PROBE_BYTES,
    private readonly now: () => number = Date.now,
  ) {
    this.scratch = Buffer.alloc(bytes);
  }

  /** scratchFile: the file the space check writes into and empties again. */
  get scratchFile(): string {
    return `${this.storeFile}-space`;
  }

  /**
   * check asks the file system for SPACE_PROBE_BYTES now and returns why the store cannot grow (the
   * checkpoint's failure first: it is about the database file itself), or null.
   */
  check(): SpaceFailure | null {
    this.checkedAt = this.now();
    this.spaceFailure = this.askForSpace();
    return this.failure();
  }

  /** failure: the last known reason the store cannot grow, without checking again. */
  failure(): SpaceFailure | null {
    return this.checkpointFailure ?? this.spaceFailure;
  }

  /**
   * assertWritable is the write path's gate: it checks the file system again when the last check is older
   * than recheckMs (so every process of a service notices, not only the one /healthz asked), and throws
   * 'store-unavailable' while the store cannot grow.
   */
  assertWritable(): void {
    if (this.now() - this.checkedAt >= this.recheckMs) this.check();
    const f = this.checkpointFailure ?? this.spaceFailure;
    if (f) throw new DeviceCaError('store-unavailable', `store unavailable (${f.reason})`, { detail: f.detail, retryAfterSeconds: SPACE_RETRY_AFTER_SECONDS });
  }

  /**
   * setCheckpointFailure records what the checkpointing thread saw: an SQLite error of its last checkpoint
   * ({ code, message }) or null once a checkpoint succeeded again. Busy checkpoints are not reported.
   */
  setCheckpointFailure(e: { code: string; message: string } | null): void {
    if (!e) {
      this.checkpointFailure = null;
      return;
    }
    // a checkpoint that met another connection's lock (SQLITE_BUSY_*, SQLITE_LOCKED_*) says nothing about
    // the disk: the next round tries again, and the writes must not be refused meanwhile
    if (/^SQLITE_(BUSY|LOCKED)(_|$)/.test(e.code)) return;
    const f = sqliteFailure({ name: 'SqliteError', code: e.code, message: e.message });
    this.checkpointFailure = { reason: f?.reason ?? 'I/O error', detail: `WAL checkpoint: ${f?.detail ?? `${e.code}: ${e.message}`}` };
  }

  /** close lets go of the scratch file (the store closes). */
  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }

  private askForSpace(): SpaceFailure | null {
    try {
      if (this.fd < 0) this.fd = fs.openSync(this.scratchFile, 'w', 0o600);
      fs.writeSync(this.fd, this.scratch, 0, this.scratch.length, 0);
      return null;
    } catch (e) {
      const code = String((e as NodeJS.ErrnoException)?.code ?? 'EIO');
      // opened again by the next check: an operator may have replaced the file or the mount meanwhile
      this.close();
      return { reason: ERRNO_REASONS.get(code) ?? 'I/O error', detail: `${this.scratchFile}: ${(e as Error)?.message ?? code}` };
    } finally {
      // the space was reserved (or refused); give it back so the file never holds anything
      if (this.fd >= 0) {
        try {
          fs.ftruncateSync(this.fd, 0);
        } catch {
          // truncating to zero frees space; it has no reason to fail, and the next check truncates again
        }
      }
    }
  }
}
