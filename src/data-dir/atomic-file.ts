import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { removeIfInterrupted } from './interrupt-clean-up';
import { PROCESS_TABLE, processRuns, writtenBeforeThisBoot } from './process-identity';

/**
 * atomic-file: the one way device-ca writes files into its data directory. Files are created 0600 and
 * directories 0700 whatever the process umask (keys, CA state and the store must not be readable by
 * other local users, issue 8 point 10), and a file is replaced by rename, so a reader (or a crash)
 * sees the old content or the new one, never half of it. The rename is made durable: the file is fsynced
 * before it and its directory after it (renameDurably), since a rename is a change of the directory, and
 * without that fsync a power loss can lose the new name although the store already recorded what the file
 * holds (a firmware release, a key reference).
 *
 * Temporary files are named `<file>.tmp-<table>-<boot>-<pid>-<random>` (temporaryPath): a later writer
 * into the same directory removes those whose writer is provably gone (removeDeadWritersTemporaries), e.g.
 * after kill -9 of `firmware release`.
 */

/** PRIVATE_FILE_MODE: owner read/write only. */
export const PRIVATE_FILE_MODE = 0o600;
/** PRIVATE_DIR_MODE: owner only. */
export const PRIVATE_DIR_MODE = 0o700;

/**
 * ensurePrivateDir creates dir and any missing parents with mode 0700 (chmod after mkdir, because
 * mkdir's mode is filtered by the umask). Directories that already exist are left as they are: an
 * operator may have chosen their mode.
 */
export function ensurePrivateDir(dir: string): void {
  const abs = path.resolve(dir);
  const missing: string[] = [];
  for (let d = abs; !fs.existsSync(d); d = path.dirname(d)) {
    missing.unshift(d);
    if (path.dirname(d) === d) break;
  }
  for (const d of missing) {
    try {
      fs.mkdirSync(d, { mode: PRIVATE_DIR_MODE });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e; // another process made it meanwhile
      continue;
    }
    fs.chmodSync(d, PRIVATE_DIR_MODE);
  }
}

/**
 * writeFileAtomic writes data to a temporary file beside file (unique per process and call, so two
 * writers never share one temporary file), fsyncs it and renames it over file. mode defaults to 0600
 * and is set with fchmod, so the umask cannot widen or narrow it.
 */
export function writeFileAtomic(file: string, data: string | Buffer, mode: number = PRIVATE_FILE_MODE): void {
  writeFileAtomicWith(file, (fd) => fs.writeFileSync(fd, data), mode);
}

/**
 * writeFileAtomicWith is writeFileAtomic for content written in pieces (a streamed firmware package):
 * `write` writes to the temporary file's descriptor; if it throws, the temporary file is removed and
 * `file` is left as it was.
 */
export function writeFileAtomicWith<T>(file: string, write: (fd: number) => T, mode: number = PRIVATE_FILE_MODE): T {
  const { tmp, fd } = openTemporary(file, mode);
  let result: T;
  try {
    result = write(fd);
    fs.fsyncSync(fd);
  } catch (e) {
    discard(tmp, fd);
    throw e;
  }
  return renameOver(tmp, fd, file, result);
}

/**
 * writeFileAtomicAsync is writeFileAtomicWith for a writer that awaits between its pieces (a firmware
 * release: the CA's signature, then the store's record, before the file may appear): the temporary file
 * is renamed over `file` only when `write` resolves, and removed when it rejects.
 */
export async function writeFileAtomicAsync<T>(file: string, write: (fd: number) => Promise<T>, mode: number = PRIVATE_FILE_MODE): Promise<T> {
  const { tmp, fd } = openTemporary(file, mode);
  // interrupt-clean-up.ts: a CLI interrupted while this awaits removes the temporary file
  const keep = removeIfInterrupted(() => fs.rmSync(tmp, { force: true }));
  let result: T;
  try {
    result = await write(fd);
    fs.fsyncSync(fd);
  } catch (e) {
    keep();
    discard(tmp, fd);
    throw e;
  }
  keep();
  return renameOver(tmp, fd, file, result);
}

/** openTemporary creates the temporary file beside `file` (unique per process and call) with `mode`. */
function openTemporary(file: string, mode: number): { tmp: string; fd: number } {
  ensurePrivateDir(path.dirname(file));
  removeDeadWritersTemporaries(path.dirname(file));
  const tmp = temporaryPath(file);
  const fd = fs.openSync(tmp, 'wx+', mode); // readable too: a streamed release is read back (its content moved, its bytes recorded)
  OPEN_TEMPORARIES.add(path.resolve(tmp));
  try {
    fs.fchmodSync(fd, mode);
  } catch (e) {
    discard(tmp, fd);
    throw e;
  }
  return { tmp, fd };
}

function discard(tmp: string, fd: number): void {
  fs.closeSync(fd);
  fs.rmSync(tmp, { force: true });
  OPEN_TEMPORARIES.delete(path.resolve(tmp));
}

function renameOver<T>(tmp: string, fd: number, file: string, result: T): T {
  fs.closeSync(fd);
  try {
    renameDurably(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  } finally {
    OPEN_TEMPORARIES.delete(path.resolve(tmp));
  }
  return result;
}

/**
 * fsyncDirectory makes the directory entries of `dir` durable (a created, renamed or linked name).
 * A file system that cannot fsync a directory (EINVAL: some network and FUSE file systems) has nothing
 * more to give, and is not an error.
 */
export function fsyncDirectory(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EINVAL') throw e;
  } finally {
    fs.closeSync(fd);
  }
}

/** fsyncDirectoryAsync is fsyncDirectory for callers that must not block the event loop (the CRL files). */
export async function fsyncDirectoryAsync(dir: string): Promise<void> {
  const fh = await fs.promises.open(dir, 'r');
  try {
    await fh.sync();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EINVAL') throw e;
  } finally {
    await fh.close();
  }
}

/** renameDurably renames `from` over `to` and fsyncs the directory of `to`; `from` must already be fsynced. */
export function renameDurably(from: string, to: string): void {
  fs.renameSync(from, to);
  fsyncDirectory(path.dirname(path.resolve(to)));
}

/** OPEN_TEMPORARIES: the temporary files this process is writing (its own pid on them does not mean it is alive). */
const OPEN_TEMPORARIES = new Set<string>();

/**
 * withTemporaryPath gives `write` a new temporary file name beside `file` (temporaryPath) and counts it as
 * this process's open temporary file until `write` settles, so that an atomic write into the same directory
 * meanwhile (one event loop, another request) does not take it for the leftover of a pid taken over.
 * Every writer that awaits between creating its temporary file and renaming it must use this.
 */
export async function withTemporaryPath<T>(file: string, write: (tmp: string) => Promise<T>): Promise<T> {
  const tmp = temporaryPath(file);
  const key = path.resolve(tmp);
  OPEN_TEMPORARIES.add(key);
  const keep = removeIfInterrupted(() => fs.rmSync(tmp, { force: true }));
  try {
    return await write(tmp);
  } finally {
    keep();
    OPEN_TEMPORARIES.delete(key);
  }
}

/**
 * TABLE_TAG: 12 hex digits of SHA-256(host, pid namespace) and the first 8 of the boot id, or null where
 * /proc does not tell them (then temporary files carry only the pid and are never removed by another
 * process). The boot part may be short: a writer of another boot is gone whatever its pid, and two boots
 * that share 8 hex digits only make the clean-up ask the pid table, which keeps a file whose pid runs.
 */
const TABLE_TAG: { table: string; boot: string } | null =
  PROCESS_TABLE.pidNs !== null && PROCESS_TABLE.bootId !== null
    ? {
        table: crypto.createHash('sha256').update(`${PROCESS_TABLE.host}\0${PROCESS_TABLE.pidNs}`).digest('hex').slice(0, 12),
        boot: PROCESS_TABLE.bootId.replace(/-/g, '').slice(0, 8).toLowerCase(),
      }
    : null;

/** TEMPORARY_NAME: what temporaryPath appends: `.tmp-<table>-<boot>-<pid>-<random>`. */
const TEMPORARY_NAME = /\.tmp-([0-9a-f]{12})-([0-9a-f]{8})-([1-9][0-9]{0,9})-[0-9a-f]{8}$/;

/** temporaryPath: a new temporary file name beside `file` that names this writer (see removeDeadWritersTemporaries). */
export function temporaryPath(file: string): string {
  const random = crypto.randomBytes(4).toString('hex');
  return TABLE_TAG ? `${file}.tmp-${TABLE_TAG.table}-${TABLE_TAG.boot}-${process.pid}-${random}` : `${file}.tmp-${process.pid}-${random}`;
}

/**
 * removeDeadWritersTemporaries removes the temporary files of temporaryPath's naming in `dir` whose writer
 * is provably gone: written in this host's pid namespace (same table tag) by another boot and last modified
 * before this boot began (an earlier boot: another machine of the same host name and pid namespace shares
 * the tag, process-identity.ts BOOTED_AT_MS), or by a pid of this boot that no longer runs, or by this very
 * pid when this process is not writing that file (a pid taken over). A file of another host or namespace,
 * of another boot written since this one began, or of a pid that runs (even one reused by an unrelated
 * process), is kept. Returns the names removed. Errors (a directory that cannot be read) are not the writer's concern.
 */
export function removeDeadWritersTemporaries(dir: string): string[] {
  if (!TABLE_TAG) return [];
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const m = TEMPORARY_NAME.exec(name);
    if (!m || m[1] !== TABLE_TAG.table) continue;
    const full = path.resolve(dir, name);
    const pid = Number(m[3]);
    const gone = m[2] !== TABLE_TAG.boot ? writtenBeforeThisBoot(full) : pid === process.pid ? !OPEN_TEMPORARIES.has(full) : !processRuns(pid);
    if (!gone) continue;
    fs.rmSync(full, { force: true });
    removed.push(name);
  }
  return removed;
}

/**
 * writeNewFileSync creates `file`, which must not exist ('wx': EEXIST otherwise, so another process's file is
 * never clobbered), writes `data` and fsyncs it before closing. The caller fsyncs the directory when the
 * name itself must survive a power loss (a key file, a lock).
 */
export function writeNewFileSync(file: string, data: string | Buffer, mode: number): void {
  const fd = fs.openSync(file, 'wx', mode);
  try {
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * createPrivateFile creates an empty file with mode 0600 unless it exists (used for the SQLite file,
 * which SQLite would otherwise create with the umask's mode; its -wal and -shm files copy this mode).
 */
export function createPrivateFile(file: string): void {
  ensurePrivateDir(path.dirname(file));
  let fd: number;
  try {
    fd = fs.openSync(file, 'wx', PRIVATE_FILE_MODE);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return;
    throw e;
  }
  try {
    fs.fchmodSync(fd, PRIVATE_FILE_MODE);
  } finally {
    fs.closeSync(fd);
  }
}
