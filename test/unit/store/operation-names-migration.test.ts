import Database from 'better-sqlite3';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MIGRATIONS } from '../../../src/store/sqlite/migrations';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';

/**
 * Migration 4 on a store written by the previous release: queued requests get the protocol-neutral
 * operation names (enroll, renew, server-keygen), and secrets spent before it are linked to no
 * certificate, so they can never be repeated.
 */
it('renames simpleenroll/simplereenroll/serverkeygen requests and leaves old spent secrets unlinked', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-mig4-'));
  const file = path.join(dir, 'old.sqlite');
  try {
    const db = new Database(file);
    db.exec('CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version (version) VALUES (3);');
    for (const m of MIGRATIONS.slice(0, 3)) db.exec(m);
    db.exec("INSERT INTO devices (id, owner, label, state, created_at, updated_at) VALUES ('dev-1', NULL, NULL, 'active', 1, 1)");
    db.exec("INSERT INTO secrets (device_id, hash, expires_at, used_at) VALUES ('dev-1', 'h', 9999999999999, " + Date.now() + ')');
    const ins = db.prepare("INSERT INTO requests (id, device_id, label, operation, csr_sha256, csr, status, created_at) VALUES (?, 'dev-1', 'default', ?, 'x', x'00', 'pending', ?)");
    ['simpleenroll', 'simplereenroll', 'serverkeygen'].forEach((op, i) => ins.run(`r${i}`, op, i));
    db.close();

    const store = new SqliteStore(file);
    const operations = (await store.listRequests({})).items.map((r) => [r.id, r.operation]);
    expect(operations).toEqual([
      ['r0', 'enroll'],
      ['r1', 'renew'],
      ['r2', 'server-keygen'],
    ]);
    expect(await store.spentSecrets('dev-1', new Date(0))).toEqual([]);
    await store.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
