import Database from 'better-sqlite3';
import * as fs from 'node:fs';
import { loadConfig } from '../../../src/config/load-config';
import { createStore } from '../../../src/store/create-store';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { WalCheckpointer } from '../../../src/store/sqlite/wal-checkpointer';
import { TmpDir, makeTmpDir } from '../../helpers/tmp';

/**
 * SqliteStore with backgroundCheckpoint (as createStore opens it for the service unless store.checkpointThread is off): the WAL is copied into
 * the database file by a thread of its own, well before SQLite's 1000-page mark would make a commit on
 * the socket thread do it.
 */

let tmp: TmpDir;
beforeEach(() => {
  tmp = makeTmpDir('device-ca-checkpoint-');
});
afterEach(() => tmp.cleanup());

/** devicesInMainFile: the devices the database file alone holds (a copy without its -wal), 0 if none. */
function devicesInMainFile(file: string): number {
  const copy = tmp.file(`copy-${Date.now()}-${Math.random()}.sqlite`);
  fs.copyFileSync(file, copy);
  const db = new Database(copy, { readonly: true });
  try {
    return Number((db.prepare('SELECT COUNT(*) AS n FROM devices').get() as { n: number }).n);
  } catch {
    return 0; // the schema itself is still only in the WAL
  } finally {
    db.close();
  }
}

async function createDevices(store: Pick<SqliteStore, 'createDevice'>, n: number): Promise<void> {
  for (let i = 0; i < n; i++)
    await store.createDevice(
      { id: `dev-${i}`, owner: null, label: null, state: 'registered' },
      { hash: 'hmac$x', expiresAt: new Date(Date.now() + 86400_000) },
      { type: 'device.create', actor: 'test', subject: `dev-${i}`, data: {} },
    );
}

describe('WAL checkpoints on their own thread', () => {
  it('committed rows reach the database file while the store stays open, far below 1000 WAL pages', async () => {
    const file = tmp.file('store.sqlite');
    const store = new SqliteStore(file, { backgroundCheckpoint: true });
    try {
      await createDevices(store, 20);
      let n = 0;
      for (let i = 0; i < 100 && n < 20; i++) {
        await new Promise((r) => setTimeout(r, 100));
        n = devicesInMainFile(file);
      }
      expect(n).toBe(20);
      // and the store reads as before
      expect((await store.getDevice('dev-19'))?.state).toBe('registered');
    } finally {
      await store.close();
    }
    // closed with its thread: everything is in the file and the store opens again
    expect(devicesInMainFile(file)).toBe(20);
    const again = new SqliteStore(file, { backgroundCheckpoint: true });
    try {
      expect((await again.getDevice('dev-0'))?.id).toBe('dev-0');
    } finally {
      await again.close();
    }
  });

  it('without the option the commits leave the rows in the WAL until SQLite checkpoints (the old behaviour the option replaces)', async () => {
    const file = tmp.file('plain.sqlite');
    const store = new SqliteStore(file);
    try {
      await createDevices(store, 20);
      await new Promise((r) => setTimeout(r, 300));
      expect(devicesInMainFile(file)).toBe(0);
    } finally {
      await store.close();
    }
  });
});

describe('store.checkpointThread', () => {
  it('createStore runs the thread by default (rows reach the database file) and not when the key is false', async () => {
    const dataDir = tmp.file('data');
    const on = createStore(loadConfig({ env: { DEVICE_CA_DATA: dataDir } }));
    const offCfg = loadConfig({ env: { DEVICE_CA_DATA: dataDir }, overrides: { store: { path: 'off.sqlite', checkpointThread: false } } });
    const off = createStore(offCfg);
    try {
      await createDevices(on, 20);
      await createDevices(off, 20);
      const onFile = loadConfig({ env: { DEVICE_CA_DATA: dataDir } }).store.path;
      let n = 0;
      for (let i = 0; i < 100 && n < 20; i++) {
        await new Promise((r) => setTimeout(r, 100));
        n = devicesInMainFile(onFile);
      }
      expect(n).toBe(20);
      expect(devicesInMainFile(offCfg.store.path)).toBe(0);
    } finally {
      await on.close();
      await off.close();
    }
  });
});

describe('closing', () => {
  it('keeps the process alive until the checkpointing thread is done, so whoever awaits close() goes on', async () => {
    const store = new SqliteStore(tmp.file('closing.sqlite'), { backgroundCheckpoint: true });
    await createDevices(store, 1);
    const closing = store.close();
    // with nothing else to do, an unreferenced thread would let the process exit here (the bench did)
    expect(process.getActiveResourcesInfo()).toContain('MessagePort');
    await closing;
  });
});

describe('when the thread checkpoints', () => {
  /** pendingRows: the rows of t the database file alone holds (a copy without its -wal), 0 before any checkpoint. */
  const pendingRows = (file: string): number => {
    const copy = tmp.file(`main-${Date.now()}-${Math.random()}.sqlite`);
    fs.copyFileSync(file, copy);
    const db = new Database(copy, { readonly: true });
    try {
      return Number((db.prepare('SELECT COUNT(*) AS n FROM t').get() as { n: number }).n);
    } catch {
      return 0;
    } finally {
      db.close();
    }
  };

  it('leaves a small backlog in the WAL until the delay, and checkpoints at once when enough frames wait', async () => {
    const file = tmp.file('backlog.sqlite');
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('wal_autocheckpoint = 0');
    db.exec('CREATE TABLE t (x BLOB)');
    db.pragma('wal_checkpoint(TRUNCATE)'); // the table is in the database file, the WAL empty
    const ins = db.prepare('INSERT INTO t VALUES (randomblob(3000))');
    for (let i = 0; i < 5; i++) ins.run(); // a few frames
    // a delay no test reaches: only the backlog can make this thread checkpoint
    const ck = new WalCheckpointer(file, () => undefined, 10, { minFrames: 100, maxDelayMs: 3_600_000 });
    try {
      // many rounds of the thread pass (every 10 ms) without a checkpoint: the 5 rows stay in the WAL only
      for (let i = 0; i < 20; i++) {
        await new Promise((r) => setTimeout(r, 25));
        expect(pendingRows(file)).toBe(0);
      }
      for (let i = 0; i < 150; i++) ins.run(); // now well over 100 frames
      let n = 0;
      for (let i = 0; i < 200 && n === 0; i++) {
        await new Promise((r) => setTimeout(r, 50));
        n = pendingRows(file);
      }
      // the thread checkpointed once 100 frames waited (it runs beside the inserts: maybe before the last of
      // them); what came after stays in the WAL, fewer than 100 frames
      expect(n).toBeGreaterThanOrEqual(95);
      expect(n).toBeLessThanOrEqual(155);
    } finally {
      await ck.close();
      db.close();
    }
  });

  it('checkpoints a small backlog once the delay passed', async () => {
    const file = tmp.file('delay.sqlite');
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('wal_autocheckpoint = 0');
    db.exec('CREATE TABLE t (x BLOB)');
    for (let i = 0; i < 5; i++) db.prepare('INSERT INTO t VALUES (randomblob(3000))').run();
    const ck = new WalCheckpointer(file, () => undefined, 10, { minFrames: 1_000_000, maxDelayMs: 200 });
    try {
      let n = 0;
      for (let i = 0; i < 200 && n < 5; i++) {
        await new Promise((r) => setTimeout(r, 50));
        n = pendingRows(file);
      }
      expect(n).toBe(5);
    } finally {
      await ck.close();
      db.close();
    }
  });
});
