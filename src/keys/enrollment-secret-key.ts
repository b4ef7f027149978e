import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PRIVATE_FILE_MODE, ensurePrivateDir, fsyncDirectory, temporaryPath } from '../data-dir/atomic-file';
import { DeviceCaError } from '../errors/device-ca-error';

/** ENROLLMENT_SECRET_KEY_FILE: the server key's file name in the keys directory, beside the CA's key files. */
export const ENROLLMENT_SECRET_KEY_FILE = 'enrollment-secret.key';

const loaded = new Map<string, Buffer>();

/**
 * enrollmentSecretKey returns the 256-bit server key that one-time enrollment secrets are stored under
 * (HMAC-SHA-256, ra/enrollment-secret.ts), from `<keysDir>/enrollment-secret.key` (64 hex digits), creating
 * the file (0600) when it is not there. Several workers may start at once: the key is written to a temporary
 * file and hard-linked into place, so exactly one key wins and every process reads that one. Read once per
 * process and directory. Every node of a cluster needs the same file, as it needs the CA's key files.
 */
export function enrollmentSecretKey(keysDir: string): Buffer {
  return serverKeyFile(keysDir, ENROLLMENT_SECRET_KEY_FILE, 'an enrollment secret key');
}

/**
 * serverKeyFile: a 256-bit key the service keeps in `<keysDir>/<fileName>` (64 hex digits), created (0600)
 * on first use as enrollmentSecretKey describes; `what` names it in the error for a file that is not one.
 * Other server keys (the firmware group key-encryption key) use the same file rules.
 */
export function serverKeyFile(keysDir: string, fileName: string, what: string): Buffer {
  const file = path.resolve(keysDir, fileName);
  let key = loaded.get(file);
  if (!key) {
    if (!fs.existsSync(file)) createKeyFile(file);
    key = parseKeyFile(file, what);
    loaded.set(file, key);
  }
  return key;
}

/** createKeyFile writes a new random key unless another process got there first (link fails with EEXIST). */
function createKeyFile(file: string): void {
  ensurePrivateDir(path.dirname(file));
  const tmp = temporaryPath(file);
  const fd = fs.openSync(tmp, 'wx', PRIVATE_FILE_MODE);
  try {
    fs.fchmodSync(fd, PRIVATE_FILE_MODE);
    fs.writeFileSync(fd, `${crypto.randomBytes(32).toString('hex')}\n`);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.linkSync(tmp, file);
    fsyncDirectory(path.dirname(file)); // the new name survives a power loss, as the secrets stored under the key do
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

function parseKeyFile(file: string, what: string): Buffer {
  const text = fs.readFileSync(file, 'utf8').trim();
  if (!/^[0-9a-f]{64}$/i.test(text)) throw new DeviceCaError('config', `${file}: not ${what} (64 hex digits expected)`);
  return Buffer.from(text, 'hex');
}
