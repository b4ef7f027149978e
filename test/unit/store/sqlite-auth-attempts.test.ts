import Database from 'better-sqlite3';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { MIGRATIONS } from '../../../src/store/sqlite/migrations';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { AuthAttemptRules } from '../../../src/store/store';
import { TmpDir, makeTmpDir } from '../../helpers/tmp';

/**
 * The authentication-attempt table of the SQLite store on disk: a flood of made-up user names leaves it
 * at a fixed size (rows and bytes), and a registered device's lockout survives the flood.
 */

let dir: TmpDir;
beforeEach(() => {
  dir = makeTmpDir('device-ca-auth-attempts-');
});
afterEach(() => dir.cleanup());

const rows = (file: string): { all: number; evictable: number } => {
  const db = new Database(file, { readonly: true });
  try {
    const r = db.prepare('SELECT COUNT(*) AS all_, COALESCE(SUM(evictable), 0) AS ev FROM auth_attempts').get() as { all_: number; ev: number };
    return { all: r.all_, evictable: r.ev };
  } finally {
    db.close();
  }
};
/** bytes: the database file and its write-ahead log, what the flood could grow */
const bytes = (file: string): number => [file, `${file}-wal`].reduce((n, f) => n + (fs.existsSync(f) ? fs.statSync(f).size : 0), 0);

it('100,000 random user names: at most maxEvictable rows stay, the file stops growing, and a locked device stays locked', async () => {
  const file = dir.file('device-ca.sqlite');
  const store = new SqliteStore(file);
  const window = 900;
  const device: AuthAttemptRules = { windowSeconds: window, limit: 5, evictable: false, maxEvictable: 10_000 };
  const unknown: AuthAttemptRules = { ...device, evictable: true };
  const t0 = Date.now();
  try {
    for (let i = 0; i < 5; i++) expect((await store.reserveAuthAttempt('basic:dev-real', new Date(t0), device)).allowed).toBe(true);
    // names as long as a device id may be (128 characters), so the size measured is the worst a name can do
    const name = (): string => `basic:${crypto.randomBytes(96).toString('base64url')}`;
    let half = 0;
    let allowed = 0;
    for (let i = 1; i <= 100_000; i++) {
      if ((await store.reserveAuthAttempt(name(), new Date(t0 + i), unknown)).allowed) allowed++;
      if (i === 50_000) half = bytes(file);
    }
    expect(allowed).toBe(100_000);
    const after = rows(file);
    expect(after.evictable).toBe(10_000);
    expect(after.all).toBe(10_005);
    // pages freed by evicted rows are reused: the second 50,000 names add (next to) nothing
    expect(bytes(file)).toBeLessThanOrEqual(half * 1.1);
    expect(bytes(file)).toBeLessThan(16 * 1024 * 1024);
    // the device's five failures were not pushed out: still locked until the first leaves the window
    expect(await store.reserveAuthAttempt('basic:dev-real', new Date(t0 + 100_001), device)).toEqual({ allowed: false, retryAt: new Date(t0 + window * 1000) });
  } finally {
    await store.close();
  }
}, 180_000); // about 0.2 ms per reservation: 20-40 s on a shared machine

it('migration 7 keeps the failures a previous release stored, as evictable attempts in time order', async () => {
  const file = dir.file('old.sqlite');
  const db = new Database(file);
  db.exec('CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version (version) VALUES (6);');
  for (const m of MIGRATIONS.slice(0, 6)) db.exec(m);
  const now = Date.now();
  const ins = db.prepare('INSERT INTO auth_failures (key, at) VALUES (?, ?)');
  ins.run('basic:dev-1', now - 2000);
  ins.run('basic:dev-2', now - 3000);
  ins.run('basic:dev-1', now - 1000);
  db.close();

  const store = new SqliteStore(file);
  try {
    expect(await store.countAuthFailures('basic:dev-1', new Date(now), 900)).toEqual({ count: 2, oldest: new Date(now - 2000) });
    expect(await store.countAuthFailures('basic:dev-2', new Date(now), 900)).toEqual({ count: 1, oldest: new Date(now - 3000) });
    const r = await store.reserveAuthAttempt('basic:dev-1', new Date(now), { windowSeconds: 900, limit: 3, evictable: false, maxEvictable: 100 });
    expect(r).toMatchObject({ allowed: true, attempts: 3 });
  } finally {
    await store.close();
  }
  const check = new Database(file, { readonly: true });
  try {
    expect(check.prepare('SELECT key, at, evictable FROM auth_attempts ORDER BY id').all()).toEqual([
      { key: 'basic:dev-2', at: now - 3000, evictable: 1 },
      { key: 'basic:dev-1', at: now - 2000, evictable: 1 },
      { key: 'basic:dev-1', at: now - 1000, evictable: 1 },
      { key: 'basic:dev-1', at: now, evictable: 0 },
    ]);
    expect(check.prepare("SELECT name FROM sqlite_master WHERE name = 'auth_failures'").all()).toEqual([]);
  } finally {
    check.close();
  }
  expect(rows(file).all).toBe(4);
});
