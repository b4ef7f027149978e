import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as os from 'node:os';
import * as path from 'node:path';
import { bufferSource } from '../../../src/cms/byte-source';
import { readReleaseBytes } from '../../../src/store/release-chunks';
import { MIGRATIONS } from '../../../src/store/sqlite/migrations';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { RELEASE_CHUNK_BYTES, firmwareReleaseKey } from '../../../src/store/store';
import { makeTmpDir } from '../../helpers/tmp';

/**
 * SQLite: release bytes in chunks (issue 13). A store written before the chunk tables serves its releases
 * (one `der` value each) after the migration and takes chunked ones beside them; pending chunk sets whose
 * writer is gone are removed when a store is opened, those of a running writer are kept.
 */

const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');
const info = (version: number) => ({ name: 'fw', version, sha256: '00'.repeat(32), signers: [], recipients: null, releasedAt: new Date(1000) });
const audit = (version: number) => ({ type: 'firmware.released', actor: 'test', subject: 'firmware:fw', data: { version } });

it('a store of the version before: its one-value releases are served after the migration, and new releases are chunked beside them', async () => {
  const at = MIGRATIONS.findIndex((m) => m.includes('CREATE TABLE firmware_release_chunks'));
  expect(at).toBeGreaterThan(0);
  const dir = makeTmpDir('device-ca-fwchunks-');
  const file = path.join(dir.path, 'old.sqlite');
  try {
    const db = new Database(file);
    db.exec(`CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version (version) VALUES (${at});`);
    for (const m of MIGRATIONS.slice(0, at)) db.exec(m);
    const old = crypto.randomBytes(2 * RELEASE_CHUNK_BYTES + 512);
    db.prepare(`INSERT INTO firmware_releases (sort_key, name, version, sha256, signers, recipients, released_at, der) VALUES (?, 'fw', 1, ?, '[]', NULL, 1000, ?)`).run(
      firmwareReleaseKey('fw', 1),
      '00'.repeat(32),
      old,
    );
    db.close();

    const store = new SqliteStore(file);
    expect(await store.getFirmwareRelease('fw', 1)).toEqual(info(1));
    const r = await store.openFirmwareRelease('fw', 1);
    expect(r?.length).toBe(old.length);
    const pieces: number[] = [];
    for await (const c of r!.chunks()) pieces.push(c.length);
    expect(pieces).toEqual([RELEASE_CHUNK_BYTES, RELEASE_CHUNK_BYTES, 512]);
    expect(sha(await readReleaseBytes(r!))).toBe(sha(old));

    const next = crypto.randomBytes(RELEASE_CHUNK_BYTES + 1);
    await store.saveFirmwareRelease(info(2), bufferSource(next), audit(2));
    expect(sha(await readReleaseBytes((await store.openFirmwareRelease('fw', 2))!))).toBe(sha(next));
    expect(sha(await readReleaseBytes((await store.openFirmwareRelease('fw', 1))!))).toBe(sha(old));
    await store.close();

    const check = new Database(file, { readonly: true });
    const rows = check.prepare('SELECT version, chunk_set IS NOT NULL AS chunked, length(der) AS der FROM firmware_releases ORDER BY version').all();
    expect(rows).toEqual([
      { version: 1, chunked: 0, der: old.length },
      { version: 2, chunked: 1, der: 0 },
    ]);
    expect(check.prepare('SELECT COUNT(*) AS n FROM firmware_release_chunks').get()).toEqual({ n: 2 });
    check.close();
  } finally {
    dir.cleanup();
  }
});

it('opening a store removes the pending chunks of writers that are gone (a dead pid; this pid, saving nothing) and keeps a running writer’s', async () => {
  const dir = makeTmpDir('device-ca-fwchunks-');
  const file = path.join(dir.path, 'store.sqlite');
  try {
    await new SqliteStore(file).close();
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    const deadPid = Number(dead.stdout);
    expect(deadPid).toBeGreaterThan(0);
    const db = new Database(file);
    // rows as the version before migration 28 wrote them (no pid namespace, no boot id), started just now
    const pend = db.prepare(`INSERT INTO firmware_release_pending (set_id, pid, host, started_at) VALUES (?, ?, ?, ${Date.now()})`);
    const chunk = db.prepare("INSERT INTO firmware_release_chunks (set_id, seq, bytes) VALUES (?, 0, X'01')");
    for (const [set, pid, host] of [
      ['dead', deadPid, os.hostname()],
      ['mine', process.pid, os.hostname()],
      ['running', process.ppid, os.hostname()],
      ['elsewhere', deadPid, 'another-host'],
    ] as const) {
      pend.run(set, pid, host);
      chunk.run(set);
    }
    db.close();

    const store = new SqliteStore(file);
    const check = new Database(file, { readonly: true });
    expect(check.prepare('SELECT set_id FROM firmware_release_pending ORDER BY set_id').all()).toEqual([{ set_id: 'elsewhere' }, { set_id: 'running' }]);
    expect(check.prepare('SELECT set_id FROM firmware_release_chunks ORDER BY set_id').all()).toEqual([{ set_id: 'elsewhere' }, { set_id: 'running' }]);
    check.close();
    await store.close();
  } finally {
    dir.cleanup();
  }
});
