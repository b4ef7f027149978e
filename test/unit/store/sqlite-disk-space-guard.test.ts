import * as fs from 'node:fs';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { DiskSpaceGuard } from '../../../src/store/sqlite/disk-space-guard';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { TmpDir, makeTmpDir } from '../../helpers/tmp';

/**
 * The SQLite store's disk space guard: a store whose file system has no room refuses writes (503) before
 * they start and its health probe says so, even where the write itself would have fitted into WAL space
 * a checkpoint freed (the checkpointing thread makes that the common case). A full file system is
 * /dev/full here: the scratch file `<store>-space` is a link to it, so every write to it fails with ENOSPC
 * as on a full disk (a real full disk, through the service, is test/interop/store-unavailable.test.ts).
 */

let tmp: TmpDir;
beforeEach(() => {
  tmp = makeTmpDir('device-ca-space-');
});
afterEach(() => tmp.cleanup());

const device = (id: string) =>
  [
    { id, owner: null, label: null, state: 'registered' as const },
    { hash: 'hmac$x', expiresAt: new Date(Date.now() + 86400_000) },
    { type: 'device.create', actor: 'test', subject: id, data: {} },
  ] as const;

/** refusal: what a promise rejected with, as a user of the store sees it */
async function refusal(p: Promise<unknown>): Promise<{ code: string; message: string; retryAfterSeconds?: number }> {
  try {
    await p;
  } catch (e) {
    if (!(e instanceof DeviceCaError)) throw e;
    return { code: e.code, message: e.message, retryAfterSeconds: e.retryAfterSeconds };
  }
  throw new Error('not refused');
}

describe.each([
  ['with the checkpointing thread', true],
  ["with SQLite's own checkpoints", false],
])('a store on a file system without room (%s)', (_name, backgroundCheckpoint) => {
  it('refuses writes with store-unavailable before they start, its probe says disk full, and both recover when room is back', async () => {
    const file = tmp.file('store.sqlite');
    fs.symlinkSync('/dev/full', `${file}-space`);
    const store = new SqliteStore(file, { backgroundCheckpoint });
    try {
      expect(await refusal(store.probe())).toEqual({ code: 'store-unavailable', message: 'store write failed (disk full)', retryAfterSeconds: 30 });
      // a write with its own transaction, and one in the group commit (the audit intent of an issuance)
      expect(await refusal(store.createDevice(...device('d1')))).toEqual({ code: 'store-unavailable', message: 'store unavailable (disk full)', retryAfterSeconds: 30 });
      expect(await refusal(store.appendAudit({ type: 'x', actor: 'test', subject: 's', data: {} }))).toMatchObject({ code: 'store-unavailable', message: 'store unavailable (disk full)' });
      // nothing half-written, and reads go on
      expect(await store.getDevice('d1')).toBeNull();
      expect((await store.listAudit({})).items).toEqual([]);

      fs.unlinkSync(`${file}-space`);
      await store.probe();
      await store.createDevice(...device('d1'));
      expect((await store.getDevice('d1'))?.state).toBe('registered');
      expect((await store.listAudit({})).items.map((r) => r.type)).toEqual(['device.create']);
      // the scratch file holds nothing and only the store's owner reads it
      const st = fs.statSync(`${file}-space`);
      expect({ size: st.size, mode: st.mode & 0o777 }).toEqual({ size: 0, mode: 0o600 });
    } finally {
      await store.close();
    }
  });
});

describe('DiskSpaceGuard', () => {
  it('asks the file system again on a write once the last answer is recheckMs old, not before', () => {
    const file = tmp.file('g.sqlite');
    fs.symlinkSync('/dev/full', `${file}-space`);
    let t = 0;
    const guard = new DiskSpaceGuard(file, 1000, 4096, () => t);
    try {
      expect(() => guard.assertWritable()).toThrow('store unavailable (disk full)');
      fs.unlinkSync(`${file}-space`);
      t = 999;
      expect(() => guard.assertWritable()).toThrow('store unavailable (disk full)');
      t = 1000;
      expect(() => guard.assertWritable()).not.toThrow();
      // and the other way round: room gone, noticed at the next recheck
      fs.unlinkSync(`${file}-space`);
      fs.symlinkSync('/dev/full', `${file}-space`);
      guard.close(); // the open scratch file would still have room: the link stands for a full mount
      t = 2000;
      expect(() => guard.assertWritable()).toThrow('store unavailable (disk full)');
    } finally {
      guard.close();
    }
  });

  it("a checkpoint that met another connection's lock (SQLITE_BUSY, SQLITE_LOCKED) refuses nothing: it is not about the disk", () => {
    const guard = new DiskSpaceGuard(tmp.file('b.sqlite'));
    try {
      for (const code of ['SQLITE_BUSY', 'SQLITE_BUSY_RECOVERY', 'SQLITE_BUSY_SNAPSHOT', 'SQLITE_LOCKED', 'SQLITE_LOCKED_SHAREDCACHE']) {
        guard.setCheckpointFailure({ code, message: 'database is locked' });
        expect(guard.failure()).toBeNull();
        expect(() => guard.assertWritable()).not.toThrow();
      }
      // a lock met after a real failure leaves the failure standing until a checkpoint succeeds
      guard.setCheckpointFailure({ code: 'SQLITE_FULL', message: 'database or disk is full' });
      guard.setCheckpointFailure({ code: 'SQLITE_BUSY', message: 'database is locked' });
      expect(guard.failure()?.reason).toBe('disk full');
    } finally {
      guard.close();
    }
  });

  it("a checkpoint the thread could not finish refuses writes and fails the probe's check until a checkpoint succeeds", () => {
    const guard = new DiskSpaceGuard(tmp.file('c.sqlite'));
    try {
      expect(guard.check()).toBeNull();
      guard.setCheckpointFailure({ code: 'SQLITE_FULL', message: 'database or disk is full' });
      expect(guard.check()).toEqual({ reason: 'disk full', detail: 'WAL checkpoint: SQLITE_FULL: database or disk is full' });
      expect(() => guard.assertWritable()).toThrow('store unavailable (disk full)');
      guard.setCheckpointFailure({ code: 'SQLITE_IOERR_WRITE', message: 'disk I/O error' });
      expect(guard.failure()?.reason).toBe('I/O error');
      guard.setCheckpointFailure(null);
      expect(guard.check()).toBeNull();
      expect(() => guard.assertWritable()).not.toThrow();
    } finally {
      guard.close();
    }
  });
});
