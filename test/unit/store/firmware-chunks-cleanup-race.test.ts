import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as os from 'node:os';
import * as path from 'node:path';
import { readReleaseBytes } from '../../../src/store/release-chunks';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { RELEASE_CHUNK_BYTES, firmwareReleaseKey } from '../../../src/store/store';
import { makeTmpDir } from '../../helpers/tmp';

/**
 * SQLite pending chunk sets (issue 13, review): the store's clean-up reads the pending sets, judges their
 * writers, then deletes in a transaction of its own. A writer it misjudged as gone (another pid namespace
 * under the same host name: containers with --network host, or hostNetwork pods sharing the volume) can
 * commit its release in between (the clean-up's BEGIN IMMEDIATE waits for that very commit). The
 * committed release must keep its chunks: the clean-up deletes a set's chunks only when it removed the
 * set's pending row.
 */

const PENDING_SELECT = 'SELECT set_id, pid, host, pid_ns, boot_id, started_at FROM firmware_release_pending';

afterEach(() => jest.restoreAllMocks());

it('a release committed between the clean-up reading the pending sets and deleting them keeps its chunks', async () => {
  const dir = makeTmpDir('device-ca-fwchunks-race-');
  const file = path.join(dir.path, 'store.sqlite');
  try {
    await new SqliteStore(file).close();
    const deadPid = Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
    expect(deadPid).toBeGreaterThan(0);
    const bytes = crypto.randomBytes(4096);
    // the writer (pid of another namespace, dead as seen from here) has written its chunk set and is about to commit
    const writer = new Database(file);
    writer.prepare('INSERT INTO firmware_release_pending (set_id, pid, host, started_at) VALUES (?, ?, ?, ?)').run('live', deadPid, os.hostname(), Date.now());
    writer.prepare('INSERT INTO firmware_release_chunks (set_id, seq, bytes) VALUES (?, 0, ?)').run('live', bytes);
    const commit = (): void => {
      writer
        .transaction(() => {
          writer.prepare('DELETE FROM firmware_release_pending WHERE set_id = ?').run('live');
          writer
            .prepare(
              `INSERT INTO firmware_releases (sort_key, name, version, sha256, signers, recipients, hardware, released_at, der, chunk_set, length, chunk_count)
               VALUES (?, 'fw', 1, ?, '[]', NULL, NULL, 1000, X'', 'live', ?, 1)`,
            )
            .run(firmwareReleaseKey('fw', 1), '00'.repeat(32), bytes.length);
        })
        .immediate();
    };
    // the writer's final transaction lands right after the clean-up's read of the pending sets
    const prepare = Database.prototype.prepare;
    jest.spyOn(Database.prototype, 'prepare').mockImplementation(function (this: Database.Database, sql: string) {
      const st = prepare.call(this, sql);
      if (sql !== PENDING_SELECT) return st;
      return new Proxy(st, {
        get(target, prop) {
          if (prop !== 'all') return Reflect.get(target, prop, target) as unknown;
          return () => {
            const rows = (target as Database.Statement<[]>).all();
            commit();
            return rows;
          };
        },
      });
    });
    const store = new SqliteStore(file);
    jest.restoreAllMocks();
    writer.close();
    try {
      const got = await store.openFirmwareRelease('fw', 1);
      expect(got?.length).toBe(bytes.length);
      expect((await readReleaseBytes(got!)).equals(bytes)).toBe(true);
    } finally {
      await store.close();
    }
  } finally {
    dir.cleanup();
  }
});

it('a save whose pending set is removed meanwhile stops at its next chunk, refused as a conflict, and leaves no chunk', async () => {
  const dir = makeTmpDir('device-ca-fwchunks-race-');
  const file = path.join(dir.path, 'store.sqlite');
  const store = new SqliteStore(file);
  const other = new Database(file);
  try {
    const CHUNKS = 16;
    let pulled = 0;
    const piece = Buffer.alloc(RELEASE_CHUNK_BYTES, 7);
    const source = {
      length: CHUNKS * RELEASE_CHUNK_BYTES,
      read: () => {
        throw new Error('not used');
      },
      *chunks() {
        for (let i = 0; i < CHUNKS; i++) {
          // another process's clean-up takes the set for a dead writer's once two chunks are written
          if (i === 2) other.prepare('DELETE FROM firmware_release_pending').run();
          pulled++;
          yield piece;
        }
      },
    };
    const info = { name: 'fw', version: 1, sha256: '00'.repeat(32), signers: [], recipients: null, releasedAt: new Date(1000) };
    const refused = await store.saveFirmwareRelease(info, source, { type: 'firmware.released', actor: 'test', subject: 'firmware:fw', data: {} }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(DeviceCaError);
    expect((refused as DeviceCaError).code).toBe('conflict');
    expect(pulled).toBeLessThanOrEqual(4);
    expect(other.prepare('SELECT COUNT(*) AS n FROM firmware_release_chunks').get()).toEqual({ n: 0 });
    expect(await store.getFirmwareRelease('fw', 1)).toBeNull();
  } finally {
    other.close();
    await store.close();
    dir.cleanup();
  }
});
