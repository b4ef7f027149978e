import Database from 'better-sqlite3';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MIGRATIONS } from '../../../src/store/sqlite/migrations';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';

/**
 * Firmware group keys recorded before their members had a table (issue 13): each
 * `firmware-group-key:<id>` CA state record held its members as a JSON array. After the migration the
 * members are rows of firmware_group_key_members and the records no longer hold them; other CA state
 * records are left as they were.
 */

it('SQLite: group key records with a members list move their members to the member table, and lose the list', async () => {
  const at = MIGRATIONS.findIndex((m) => m.includes('CREATE TABLE firmware_group_key_members'));
  expect(at).toBeGreaterThan(0);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-fwgk-'));
  const file = path.join(dir, 'old.sqlite');
  const a = 'aa'.repeat(16);
  const b = 'bb'.repeat(16);
  try {
    const db = new Database(file);
    db.exec(`CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version (version) VALUES (${at});`);
    for (const m of MIGRATIONS.slice(0, at)) db.exec(m);
    const put = db.prepare('INSERT INTO ca_state (name, value, version, updated_at) VALUES (?, ?, ?, 1)');
    const old = (id: string, members: string[]) => ({ id, group: 'owner:acme', wrapped: 'ff', createdAt: '2026-11-01T00:00:00.000Z', members });
    put.run(`firmware-group-key:${a}`, JSON.stringify(old(a, ['dev-1', 'dev-2', 'dev-3'])), 3);
    put.run(`firmware-group-key:${b}`, JSON.stringify(old(b, [])), 1);
    put.run('firmware-group:owner:acme', JSON.stringify({ current: a }), 2);
    put.run('hierarchy', JSON.stringify({ members: ['not a group key'] }), 5);
    db.close();

    const store = new SqliteStore(file);
    expect(await store.firmwareGroupKeyMembership(a, ['dev-2', 'dev-4'])).toEqual({ members: 3, newcomers: ['dev-4'] });
    expect(await store.isFirmwareGroupKeyMember(a, 'dev-3')).toBe(true);
    expect(await store.isFirmwareGroupKeyMember(b, 'dev-1')).toBe(false);
    expect(await store.getCaState(`firmware-group-key:${a}`)).toMatchObject({
      value: { id: a, group: 'owner:acme', wrapped: 'ff', createdAt: '2026-11-01T00:00:00.000Z' },
      version: 4,
    });
    expect((await store.getCaState(`firmware-group-key:${a}`))?.value).not.toHaveProperty('members');
    expect((await store.getCaState(`firmware-group-key:${b}`))?.value).not.toHaveProperty('members');
    expect(await store.getCaState('firmware-group:owner:acme')).toMatchObject({ value: { current: a }, version: 2 });
    expect(await store.getCaState('hierarchy')).toMatchObject({ value: { members: ['not a group key'] }, version: 5 });
    await store.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
