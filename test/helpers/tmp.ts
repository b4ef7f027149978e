import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/**
 * TmpDir is a private temporary directory for one test file or service. cleanup() removes it; set
 * DEVICE_CA_TEST_KEEP=1 to keep it (its path is printed) when debugging a failure.
 */
export interface TmpDir {
  path: string;
  /** file: the absolute path of name inside the directory (sub-directories are created) */
  file(name: string): string;
  /** write: writes data to name and returns its path */
  write(name: string, data: string | Buffer): string;
  read(name: string): Buffer;
  cleanup(): void;
}

export function makeTmpDir(prefix = 'device-ca-test-'): TmpDir {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  let removed = false;
  const file = (name: string): string => {
    const p = path.join(dir, name);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    return p;
  };
  return {
    path: dir,
    file,
    write(name, data) {
      const p = file(name);
      fs.writeFileSync(p, data);
      return p;
    },
    read: (name) => fs.readFileSync(path.join(dir, name)),
    cleanup() {
      if (removed) return;
      removed = true;
      if (process.env.DEVICE_CA_TEST_KEEP === '1') {
        process.stderr.write(`keeping test directory ${dir}\n`);
        return;
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** filesHash: file name -> SHA-256 of its bytes, for every file in dir (to show files were left untouched). */
export function filesHash(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of fs.readdirSync(dir).sort())
    out[f] = crypto
      .createHash('sha256')
      .update(fs.readFileSync(path.join(dir, f)))
      .digest('hex');
  return out;
}
