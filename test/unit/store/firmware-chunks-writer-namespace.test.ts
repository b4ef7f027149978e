import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { bufferSource } from '../../../src/cms/byte-source';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { RELEASE_CHUNK_BYTES } from '../../../src/store/store';
import { makeTmpDir } from '../../helpers/tmp';

/**
 * SQLite pending chunk sets name their writer's process table (migration 28): the pid namespace and the
 * boot id beside pid and host. The clean-up removes a set only when its writer is of this host, this pid
 * namespace and this boot and its pid no longer runs; a writer in another container under the same host
 * name (--network host, pods sharing the volume) keeps its set while it writes. A set older than 24 h goes
 * whoever wrote it; a row of the version before (no namespace) is judged by host and pid, as before.
 */

/** mine: this process's pid namespace and boot id, read as the store reads them (null where /proc does not tell) */
const read = (f: () => string): string | null => {
  try {
    return f() || null;
  } catch {
    return null;
  }
};
const mine = {
  pidNs: read(() => fs.readlinkSync('/proc/self/ns/pid')),
  bootId: read(() => fs.readFileSync('/proc/sys/kernel/random/boot_id', 'latin1').trim()),
};
const OTHER_NS = 'pid:[1]'; // no real pid namespace has inode 1
const OTHER_BOOT = '00000000-0000-4000-8000-000000000000';
const HOUR = 3600_000;

let dir: ReturnType<typeof makeTmpDir>;
let file: string;
let deadPid: number;
beforeEach(async () => {
  dir = makeTmpDir('device-ca-fwchunks-ns-');
  file = path.join(dir.path, 'store.sqlite');
  await new SqliteStore(file).close();
  deadPid = Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
  expect(deadPid).toBeGreaterThan(0);
});
afterEach(() => dir.cleanup());

/** pendingAfterOpen: writes these pending sets (one chunk each), opens a store, and gives the sets left, with their chunks */
async function pendingAfterOpen(rows: [set: string, pid: number, host: string, pidNs: string | null, bootId: string | null, startedAt: number][]): Promise<string[]> {
  const db = new Database(file);
  for (const [set, pid, host, pidNs, bootId, startedAt] of rows) {
    db.prepare('INSERT INTO firmware_release_pending (set_id, pid, host, pid_ns, boot_id, started_at) VALUES (?, ?, ?, ?, ?, ?)').run(set, pid, host, pidNs, bootId, startedAt);
    db.prepare("INSERT INTO firmware_release_chunks (set_id, seq, bytes) VALUES (?, 0, X'01')").run(set);
  }
  db.close();
  await new SqliteStore(file).close();
  const check = new Database(file, { readonly: true });
  try {
    const pending = (check.prepare('SELECT set_id FROM firmware_release_pending ORDER BY set_id').all() as { set_id: string }[]).map((r) => r.set_id);
    const chunks = (check.prepare('SELECT DISTINCT set_id FROM firmware_release_chunks ORDER BY set_id').all() as { set_id: string }[]).map((r) => r.set_id);
    expect(chunks).toEqual(pending);
    return pending;
  } finally {
    check.close();
  }
}

it('a dead pid of another pid namespace or another boot on this host name is not judged: its set stays; of this namespace and boot it goes', async () => {
  const now = Date.now();
  const host = os.hostname();
  const left = await pendingAfterOpen([
    ['dead-here', deadPid, host, mine.pidNs, mine.bootId, now],
    ['other-namespace', deadPid, host, OTHER_NS, mine.bootId, now],
    ['other-boot', deadPid, host, mine.pidNs, OTHER_BOOT, now],
    ['this-pid-other-namespace', process.pid, host, OTHER_NS, mine.bootId, now],
    ['running-here', process.ppid, host, mine.pidNs, mine.bootId, now],
  ]);
  // where /proc tells nothing (not Linux), the store's own rows carry no namespace and are judged by host and pid
  expect(left).toEqual(['other-boot', 'other-namespace', 'running-here', 'this-pid-other-namespace']);
});

it('a row written before migration 28 (no namespace) is judged by host and pid, as before', async () => {
  const now = Date.now();
  const left = await pendingAfterOpen([
    ['old-dead', deadPid, os.hostname(), null, null, now],
    ['old-running', process.ppid, os.hostname(), null, null, now],
    ['old-elsewhere', deadPid, 'another-host', null, null, now],
  ]);
  expect(left).toEqual(['old-elsewhere', 'old-running']);
});

it('a set older than 24 h goes whoever wrote it; one just younger of a writer not judged stays', async () => {
  const now = Date.now();
  const left = await pendingAfterOpen([
    ['stale-other-namespace', deadPid, os.hostname(), OTHER_NS, mine.bootId, now - 25 * HOUR],
    ['stale-other-host', deadPid, 'another-host', null, null, now - 25 * HOUR],
    ['stale-running', process.ppid, os.hostname(), mine.pidNs, mine.bootId, now - 25 * HOUR],
    ['young-other-namespace', deadPid, os.hostname(), OTHER_NS, mine.bootId, now - 23 * HOUR],
  ]);
  expect(left).toEqual(['young-other-namespace']);
});

it("a save names this process's pid namespace and boot id in its pending row", async () => {
  const store = new SqliteStore(file);
  const seen: unknown[] = [];
  const look = new Database(file, { readonly: true });
  const piece = Buffer.alloc(RELEASE_CHUNK_BYTES, 7);
  try {
    const source = {
      ...bufferSource(Buffer.concat([piece, piece])),
      *chunks() {
        yield piece;
        seen.push(...look.prepare('SELECT pid, host, pid_ns, boot_id FROM firmware_release_pending').all());
        yield piece;
      },
    };
    await store.saveFirmwareRelease({ name: 'fw', version: 1, sha256: '00'.repeat(32), signers: [], recipients: null, releasedAt: new Date(1000) }, source, {
      type: 'firmware.released',
      actor: 'test',
      subject: 'firmware:fw',
      data: { version: 1 },
    });
    expect(seen).toEqual([{ pid: process.pid, host: os.hostname(), pid_ns: mine.pidNs, boot_id: mine.bootId }]);
  } finally {
    look.close();
    await store.close();
  }
});
