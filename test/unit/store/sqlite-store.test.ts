import Database from 'better-sqlite3';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { MIGRATIONS } from '../../../src/store/sqlite/migrations';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { AuditInput } from '../../../src/store/store';

/**
 * SqliteStore beyond the store contract (test/store-contract, run on SQLite by sqlite-store-contract.test.ts):
 * schema migrations, and what is on disk after group commits.
 */

let dir: string;
let file: string;
let store: SqliteStore;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-store-'));
  file = path.join(dir, 'db', 'device-ca.sqlite');
  store = new SqliteStore(file);
});
afterEach(async () => {
  await store.close().catch(() => undefined);
  fs.rmSync(dir, { recursive: true, force: true });
});

const audit = (type: string, subject: string, data: Record<string, unknown> = {}): AuditInput => ({ type, actor: 'test', subject, data });
const secret = { hash: 'scrypt$12$8$1$c2FsdA==$aGFzaA==', expiresAt: new Date(Date.now() + 86400_000) };

function cert(serial: string, deviceId: string | null): Parameters<SqliteStore['recordIssuance']>[0]['cert'] {
  return {
    serial,
    deviceId,
    issuer: 'device-ca-issuing',
    subject: `CN=${deviceId}`,
    profile: 'default',
    notBefore: new Date('2025-01-01T00:00:00Z'),
    notAfter: new Date('2026-01-01T00:00:00Z'),
    shard: 3,
    spkiSha256: crypto.createHash('sha256').update(serial).digest('hex'),
    der: Buffer.from(`der of ${serial}`),
  };
}

/** raw opens the same file without the store, to look at what really is on disk. */
function raw<T>(f: (db: Database.Database) => T): T {
  const db = new Database(file, { readonly: true });
  try {
    return f(db);
  } finally {
    db.close();
  }
}
const count = (table: string): number => raw((db) => (db.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n);

describe('migrations', () => {
  it('a new file gets the whole schema and the current version', () => {
    const tables = raw((db) => (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string }[]).map((r) => r.name));
    expect(tables).toEqual(expect.arrayContaining(['audit', 'auth_attempts', 'certificates', 'devices', 'requests', 'schema_version', 'secrets']));
    expect(raw((db) => db.prepare('SELECT version FROM schema_version').all())).toEqual([{ version: MIGRATIONS.length }]);
    expect(raw((db) => db.pragma('journal_mode', { simple: true }))).toBe('wal');
  });

  it('reopening is idempotent and keeps the data', async () => {
    await store.createDevice({ id: 'dev-1', owner: 'o', label: null, state: 'registered' }, secret, audit('device.create', 'dev-1'));
    await store.close();
    for (let i = 0; i < 3; i++) {
      store = new SqliteStore(file);
      expect(await store.getDevice('dev-1')).toMatchObject({ id: 'dev-1', owner: 'o', state: 'registered' });
      await store.close();
    }
    expect(raw((db) => db.prepare('SELECT version FROM schema_version').all())).toEqual([{ version: MIGRATIONS.length }]);
    expect(count('devices')).toBe(1);
    expect(count('audit')).toBe(1);
    store = new SqliteStore(file);
  });

  it('a schema newer than the code is refused with a config error', async () => {
    await store.close();
    const db = new Database(file);
    db.prepare('UPDATE schema_version SET version = ?').run(MIGRATIONS.length + 1);
    db.close();
    let err: unknown;
    try {
      store = new SqliteStore(file);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DeviceCaError);
    expect((err as DeviceCaError).code).toBe('config');
    store = { close: async () => undefined } as unknown as SqliteStore;
  });
});

describe('on disk', () => {
  it('close() commits writes still queued for the group commit: nothing acknowledged-to-be is lost', async () => {
    await store.createDevice({ id: 'dev-1', owner: null, label: null, state: 'registered' }, secret, audit('device.create', 'dev-1'));
    const pending = [store.appendAudit(audit('tick', 'a')), store.appendAudit(audit('tick', 'b'))];
    await store.close();
    await Promise.all(pending);
    expect(raw((db) => db.prepare('SELECT seq, type, subject FROM audit ORDER BY seq').all())).toEqual([
      { seq: 1, type: 'device.create', subject: 'dev-1' },
      { seq: 2, type: 'tick', subject: 'a' },
      { seq: 3, type: 'tick', subject: 'b' },
    ]);
    store = new SqliteStore(file);
  });

  it('a failing write in a group commit rolls back alone; the others in the same group are on disk', async () => {
    await store.createDevice({ id: 'dev-1', owner: null, label: null, state: 'registered' }, secret, audit('device.create', 'dev-1'));
    await store.recordIssuance({ cert: cert('aa01', null), audit: audit('cert.issue', 'aa01') });
    const results = await Promise.allSettled([
      store.recordIssuance({ cert: cert('aa02', 'dev-1'), audit: audit('cert.issue', 'aa02') }),
      store.recordIssuance({ cert: cert('aa01', 'dev-1'), audit: audit('cert.issue', 'aa01-again') }),
      store.appendAudit(audit('tick', 'after')),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(raw((db) => db.prepare('SELECT serial, device_id FROM certificates ORDER BY serial').all())).toEqual([
      { serial: 'aa01', device_id: null },
      { serial: 'aa02', device_id: 'dev-1' },
    ]);
    expect(raw((db) => (db.prepare('SELECT subject FROM audit ORDER BY seq').all() as { subject: string }[]).map((r) => r.subject))).toEqual(['dev-1', 'aa01', 'aa02', 'after']);
    expect(count('audit')).toBe(4);
  });
});
