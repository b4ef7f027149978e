import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';

/** SqliteStore files: the lease and CA-state semantics are in the store contract suite (test/store-contract). */

let dir: string;
let file: string;
const open: SqliteStore[] = [];
const newStore = (): SqliteStore => {
  const s = new SqliteStore(file);
  open.push(s);
  return s;
};
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-lease-'));
  file = path.join(dir, 'device-ca.sqlite');
});
afterEach(async () => {
  for (const s of open.splice(0)) await s.close().catch(() => undefined);
  fs.rmSync(dir, { recursive: true, force: true });
});

const t0 = new Date('2030-01-01T00:00:00Z');

describe('the SQLite file', () => {
  it('is created 0600 in a 0700 directory whatever the umask', async () => {
    const old = process.umask(0o022);
    try {
      file = path.join(dir, 'nested', 'store', 'device-ca.sqlite');
      const s = newStore();
      await s.acquireLease('x', 'a', 1000, t0); // a write: the -wal file exists now
    } finally {
      process.umask(old);
    }
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.statSync(file + '-wal').mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.join(dir, 'nested')).mode & 0o777).toBe(0o700);
  });
});
