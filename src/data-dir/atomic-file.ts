import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * atomic-file: the one way device-ca writes files into its data directory. Files are created 0600 and
 * directories 0700 whatever the process umask (keys, CA state and the store must not be readable by
 * other local users, issue 8 point 10), and a file is replaced by rename, so a reader (or a crash)
 * sees the old content or the new one, never half of it.
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
  let result: T;
  try {
    result = await write(fd);
    fs.fsyncSync(fd);
  } catch (e) {
    discard(tmp, fd);
    throw e;
  }
  return renameOver(tmp, fd, file, result);
}

/** openTemporary creates the temporary file beside `file` (unique per process and call) with `mode`. */
function openTemporary(file: string, mode: number): { tmp: string; fd: number } {
  ensurePrivateDir(path.dirname(file));
  const tmp = `${file}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  const fd = fs.openSync(tmp, 'wx+', mode); // readable too: a streamed release is read back (its content moved, its bytes recorded)
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
}

function renameOver<T>(tmp: string, fd: number, file: string, result: T): T {
  fs.closeSync(fd);
  try {
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  return result;
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
