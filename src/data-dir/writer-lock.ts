import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DeviceCaError } from '../errors/device-ca-error';
import { ensurePrivateDir, fsyncDirectory, temporaryPath, writeNewFileSync } from './atomic-file';
import { removeIfInterrupted } from './interrupt-clean-up';
import { PROCESS_TABLE, ProcessTable, processRuns, processStartTicks, writtenBeforeThisBoot } from './process-identity';

/**
 * writer-lock: one writer at a time for a file written by several steps that must agree (a firmware
 * release: written to a temporary file, recorded in the store, renamed over --out). Two `firmware release`
 * runs to the same --out would otherwise each record their own bytes and each rename their own file, in
 * any order: the file left at --out could be the one the store no longer holds.
 *
 * The lock is the file `<file>.lock`, holding the writer's identity as JSON (host, pid namespace, boot id,
 * pid, its start time in ticks since boot, since, and a random nonce that tells this lock from a later one of the same writer: inode numbers
 * are reused at once). It is made complete in a temporary file and hard-linked into place, so it never exists
 * half written, and the link fails (EEXIST) while another writer holds it. A lock whose writer is provably
 * gone (process-identity.ts: same host and pid namespace, and another boot with the lock older than this
 * boot, or a pid of this boot that no longer runs or now runs a process started at another time; a kill -9)
 * is stale and is broken; one of another host or namespace, or that cannot be read, is not,
 * and the refusal names the file for the operator to remove.
 */

/** LockHolder: what a lock file says about its writer. */
interface LockHolder extends ProcessTable {
  pid: number;
  since: string;
  /** started: the writer's start time (processStartTicks); absent in locks of this format's first version */
  started?: number;
  nonce?: string;
}

/** WriterLock: a lock held by this process; release() removes it (only if it is still this lock). */
export interface WriterLock {
  readonly path: string;
  /**
   * assertHeld throws DeviceCaError 'conflict' unless the lock is still this one (same text, nonce
   * included): an operator removed it by hand, or a stale-lock break lost it, and another writer may hold
   * it now. A writer calls it before its commit point (a release: before the store records it), so a
   * writer that lost the lock records nothing.
   */
  assertHeld(): void;
  release(): void;
}

/** HELD: the locks this process holds (its own pid on a lock file does not make that lock live otherwise). */
const HELD = new Set<string>();

/**
 * lockForWriting takes `<file>.lock` for this process, or throws DeviceCaError 'conflict' naming the
 * writer that holds it. `what` says what is being written, for the message.
 */
export function lockForWriting(file: string, what: string): WriterLock {
  const lock = `${path.resolve(file)}.lock`;
  ensurePrivateDir(path.dirname(lock));
  const started = processStartTicks(process.pid);
  const me: LockHolder = {
    ...PROCESS_TABLE,
    pid: process.pid,
    since: new Date().toISOString(),
    ...(started !== null ? { started } : {}),
    nonce: crypto.randomBytes(16).toString('hex'),
  };
  // a few rounds: a stale lock broken here may be taken by another writer before this one links its own
  for (let round = 0; round < 3; round++) {
    const text = linkLock(lock, me);
    if (text !== null) {
      HELD.add(lock);
      // interrupt-clean-up.ts: a CLI interrupted (Ctrl-C, kill, container stop) while it holds the lock releases it
      const keep = removeIfInterrupted(() => releaseLock(lock, text));
      return {
        path: lock,
        assertHeld: () => {
          if (!stillHeld(lock, text)) throw new DeviceCaError('conflict', `${what}: ${lock} is no longer this writer's (removed, or taken by another writer); nothing was recorded, run it again`);
        },
        release: () => {
          keep();
          releaseLock(lock, text);
        },
      };
    }
    let seen: { holder: LockHolder | null; text: string };
    try {
      const read = fs.readFileSync(lock, 'utf8');
      seen = { text: read, holder: parseHolder(read) };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue; // released meanwhile: try again
      throw e;
    }
    if (!seen.holder || !writerGone(seen.holder, lock)) throw new DeviceCaError('conflict', `${what}: ${describe(seen.holder, lock)}`);
    breakStale(lock, seen.text);
  }
  throw new DeviceCaError('conflict', `${what}: other writers keep taking ${lock}; try again`);
}

/** linkLock creates the lock complete (temporary file, fsync, link); returns its text, or null when it exists. */
function linkLock(lock: string, me: LockHolder): string | null {
  const tmp = temporaryPath(lock);
  const text = `${JSON.stringify(me)}\n`;
  writeNewFileSync(tmp, text, 0o644);
  try {
    fs.linkSync(tmp, lock);
    fsyncDirectory(path.dirname(lock));
    return text;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return null;
    throw e;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

function parseHolder(text: string): LockHolder | null {
  try {
    const h = JSON.parse(text) as Partial<LockHolder>;
    if (typeof h.host !== 'string' || !Number.isSafeInteger(h.pid) || (h.pid as number) <= 0) return null;
    return {
      host: h.host,
      pidNs: typeof h.pidNs === 'string' ? h.pidNs : null,
      bootId: typeof h.bootId === 'string' ? h.bootId : null,
      pid: h.pid as number,
      since: String(h.since),
      ...(Number.isSafeInteger(h.started) ? { started: h.started } : {}),
    };
  } catch {
    return null;
  }
}

/** writerGone: whether the lock's writer provably no longer runs (see the module comment). */
function writerGone(h: LockHolder, lock: string): boolean {
  if (h.host !== PROCESS_TABLE.host || h.pidNs === null || h.pidNs !== PROCESS_TABLE.pidNs || h.bootId === null || PROCESS_TABLE.bootId === null) return false;
  // another boot is over only if the lock predates this boot: another machine of the same host name and pid namespace differs by boot id alone
  if (h.bootId !== PROCESS_TABLE.bootId) return writtenBeforeThisBoot(lock);
  if (h.pid === process.pid) return !HELD.has(lock);
  if (!processRuns(h.pid)) return true;
  // the pid runs: the writer only if it is the process that started then (a killed writer's pid may be reused)
  const started = h.started === undefined ? null : processStartTicks(h.pid);
  return started !== null && started !== h.started;
}

function describe(h: LockHolder | null, lock: string): string {
  if (!h) return `${lock} exists and does not name its writer; if no writer runs, remove it`;
  const here = h.host === PROCESS_TABLE.host && h.pidNs === PROCESS_TABLE.pidNs && h.bootId === PROCESS_TABLE.bootId;
  return here
    ? `another writer (pid ${h.pid}, since ${h.since}) is writing it (${lock}); wait for it to finish, or choose another output file`
    : `a writer on host ${h.host} (pid ${h.pid}, since ${h.since}, another host, container or boot) holds ${lock}; if it no longer runs, remove that file`;
}

/**
 * breakStale removes a stale lock, and only that one: it is renamed away first and its text (with its
 * writer's nonce) compared with the one judged stale. A live lock another writer linked in meanwhile (it
 * broke the same stale lock first) is linked back; if yet another writer has taken the name by then, the
 * one renamed away is dropped and that writer's release() leaves the name alone (releaseLock compares too).
 */
function breakStale(lock: string, staleText: string): void {
  const aside = temporaryPath(`${lock}.stale`);
  try {
    fs.renameSync(lock, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return; // another writer broke it
    throw e;
  }
  try {
    if (fs.readFileSync(aside, 'utf8') !== staleText) {
      try {
        fs.linkSync(aside, lock);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
    }
  } finally {
    fs.rmSync(aside, { force: true });
  }
}

/** stillHeld: whether `lock` still holds `text` (this writer's identity and nonce). */
function stillHeld(lock: string, text: string): boolean {
  try {
    return fs.readFileSync(lock, 'utf8') === text;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/** releaseLock removes the lock if it is still the one this process linked (same text, nonce included). */
function releaseLock(lock: string, text: string): void {
  HELD.delete(lock);
  try {
    if (fs.readFileSync(lock, 'utf8') === text) fs.rmSync(lock, { force: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}
