import Database from 'better-sqlite3';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { TmpDir, makeTmpDir } from '../../helpers/tmp';

/**
 * SqliteStore's group commit while another connection (another cluster worker, the CLI) holds SQLite's
 * write lock: the writes wait on a timer, not inside a synchronous call with the event loop stopped, and
 * commit, in the order they were made, once the lock is free; past busy_timeout they fail as
 * 'store-unavailable' with nothing written.
 */

let tmp: TmpDir;
let store: SqliteStore | undefined;
let other: Database.Database | undefined;
beforeEach(() => {
  tmp = makeTmpDir('device-ca-group-busy-');
});
afterEach(async () => {
  if (other?.inTransaction) other.exec('ROLLBACK');
  other?.close();
  other = undefined;
  await store?.close();
  store = undefined;
  tmp.cleanup();
});

const audit = (subject: string) => ({ type: 'test.write', actor: 'test', subject, data: {} });
const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** holdWriteLock opens a second connection to the store's file and takes the write lock, with a write of its own. */
function holdWriteLock(file: string): Database.Database {
  const db = new Database(file);
  db.pragma('busy_timeout = 0');
  db.exec('BEGIN IMMEDIATE');
  db.prepare('INSERT INTO store_probe (id, at) VALUES (1, 42) ON CONFLICT(id) DO UPDATE SET at = excluded.at').run();
  return db;
}

test('writes wait for the lock holder on a timer (the holder on the same thread can commit meanwhile), then commit in order', async () => {
  const file = tmp.file('store.sqlite');
  store = new SqliteStore(file);
  other = holdWriteLock(file);
  const settled: string[] = [];
  const first = [store.appendAudit(audit('a')), store.appendAudit(audit('b'))].map((p, i) =>
    p.then(
      (r) => (settled.push(`ok ${i}`), r),
      (e: unknown) => {
        settled.push(`failed ${i}: ${(e as Error).message}`);
        throw e;
      },
    ),
  );
  // a blocking busy handler would hold this thread until busy_timeout and then fail both writes
  await tick(30);
  expect(settled).toEqual([]);
  // a write made while the group waits joins it
  const third = store.appendAudit(audit('c'));
  await tick(10);
  other.exec('COMMIT');
  const recs = await Promise.all([...first, third]);
  expect(recs.map((r) => [r.seq, r.subject])).toEqual([
    [1, 'a'],
    [2, 'b'],
    [3, 'c'],
  ]);
  const page = await store.listAudit({});
  expect(page.items.map((r) => r.subject)).toEqual(['a', 'b', 'c']);
  expect(page.items[1].prevHash).toBe(page.items[0].hash);
  // the other connection's write is there too
  expect((other.prepare('SELECT at FROM store_probe WHERE id = 1').get() as { at: number }).at).toBe(42);
}, 30_000);

test("past busy_timeout the waiting writes fail as 'store-unavailable' with nothing written, and later writes succeed", async () => {
  const file = tmp.file('store.sqlite');
  store = new SqliteStore(file, { busyTimeoutMs: 50 });
  other = holdWriteLock(file);
  const failed = await store.appendAudit(audit('a')).then(
    () => null,
    (e: unknown) => e,
  );
  expect(failed).toBeInstanceOf(DeviceCaError);
  expect((failed as DeviceCaError).code).toBe('store-unavailable');
  expect((failed as DeviceCaError).retryAfterSeconds).toBe(2);
  other.exec('COMMIT');
  expect((await store.listAudit({})).items).toEqual([]);
  const rec = await store.appendAudit(audit('b'));
  expect([rec.seq, rec.subject]).toEqual([1, 'b']);
}, 30_000);

test('close commits the writes still queued', async () => {
  const file = tmp.file('store.sqlite');
  const s = new SqliteStore(file);
  const w = s.appendAudit(audit('a'));
  await s.close();
  await expect(w).resolves.toMatchObject({ seq: 1, subject: 'a' });
  store = new SqliteStore(file);
  expect((await store.listAudit({})).items.map((r) => r.subject)).toEqual(['a']);
});
