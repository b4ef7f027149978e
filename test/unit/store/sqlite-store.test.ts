import Database from 'better-sqlite3';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GENESIS, auditHash } from '../../../src/audit/audit-chain';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { MIGRATIONS } from '../../../src/store/sqlite/migrations';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { AuditInput, AuditRecord } from '../../../src/store/store';

/** SqliteStore: schema, atomicity of the multi-row writes, the audit hash chain, and the failure window. */

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

async function rejectionOf(p: Promise<unknown>): Promise<DeviceCaError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(DeviceCaError);
  return e as DeviceCaError;
}

/** verifyChain recomputes every hash from the stored records; returns the first broken seq or null. */
function verifyChain(records: AuditRecord[]): number | null {
  let prev = GENESIS;
  for (const [i, r] of records.entries()) {
    if (r.seq !== i + 1 || r.prevHash !== prev || auditHash(prev, r) !== r.hash) return r.seq;
    prev = r.hash;
  }
  return null;
}

describe('migrations', () => {
  it('a new file gets the whole schema and the current version', () => {
    const tables = raw((db) => (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string }[]).map((r) => r.name));
    expect(tables).toEqual(expect.arrayContaining(['audit', 'auth_failures', 'certificates', 'devices', 'requests', 'schema_version', 'secrets']));
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

describe('devices', () => {
  it('createDevice conflict: second create of an id fails and writes nothing', async () => {
    await store.createDevice({ id: 'dev-1', owner: 'a', label: 'first', state: 'registered' }, secret, audit('device.create', 'dev-1'));
    const err = await rejectionOf(store.createDevice({ id: 'dev-1', owner: 'b', label: 'second', state: 'registered' }, secret, audit('device.create', 'dev-1')));
    expect(err.code).toBe('conflict');
    expect(await store.getDevice('dev-1')).toMatchObject({ owner: 'a', label: 'first' });
    expect(count('secrets')).toBe(1);
    expect(count('audit')).toBe(1);
  });

  it('activeSecrets: unused and unexpired only, newest first', async () => {
    const now = new Date();
    await store.createDevice({ id: 'dev-1', owner: null, label: null, state: 'registered' }, { hash: 'h1', expiresAt: new Date(now.getTime() + 1000) }, audit('device.create', 'dev-1'));
    expect((await store.activeSecrets('dev-1', now)).map((s) => s.hash)).toEqual(['h1']);
    expect(await store.activeSecrets('dev-1', new Date(now.getTime() + 1000))).toEqual([]);
    expect(await store.activeSecrets('dev-2', now)).toEqual([]);
  });
});

describe('recordIssuance', () => {
  beforeEach(async () => {
    await store.createDevice({ id: 'dev-1', owner: null, label: null, state: 'registered' }, secret, audit('device.create', 'dev-1'));
  });

  it('stores the certificate, activates the device, consumes the secret and appends audit, together', async () => {
    const [s] = await store.activeSecrets('dev-1', new Date());
    await store.recordIssuance({ cert: cert('aa01', 'dev-1'), consumeSecretId: s.id, audit: audit('cert.issue', 'aa01', { serial: 'aa01' }) });
    const c = await store.getCertificate('aa01');
    expect(c).toMatchObject({ serial: 'aa01', deviceId: 'dev-1', status: 'valid', shard: 3, revokedAt: null });
    expect(c!.der.equals(Buffer.from('der of aa01'))).toBe(true);
    expect(c!.notAfter.toISOString()).toBe('2026-01-01T00:00:00.000Z');
    expect((await store.getDevice('dev-1'))!.state).toBe('active');
    expect(await store.activeSecrets('dev-1', new Date())).toEqual([]);
    expect((await store.listAudit({})).map((a) => a.type)).toEqual(['device.create', 'cert.issue']);
  });

  it('the secret is single use: the second consume is unauthenticated and writes nothing', async () => {
    const [s] = await store.activeSecrets('dev-1', new Date());
    await store.recordIssuance({ cert: cert('aa01', 'dev-1'), consumeSecretId: s.id, audit: audit('cert.issue', 'aa01') });
    const before = { certs: count('certificates'), audit: count('audit') };
    const err = await rejectionOf(store.recordIssuance({ cert: cert('aa02', 'dev-1'), consumeSecretId: s.id, audit: audit('cert.issue', 'aa02') }));
    expect(err.code).toBe('unauthenticated');
    expect(await store.getCertificate('aa02')).toBeNull();
    expect(count('certificates')).toBe(before.certs);
    expect(count('audit')).toBe(before.audit);
  });

  it('two connections on one file (two workers): exactly one consume of a secret wins', async () => {
    const other = new SqliteStore(file);
    try {
      const [s] = await store.activeSecrets('dev-1', new Date());
      const results = await Promise.allSettled([
        store.recordIssuance({ cert: cert('bb01', 'dev-1'), consumeSecretId: s.id, audit: audit('cert.issue', 'bb01') }),
        other.recordIssuance({ cert: cert('bb02', 'dev-1'), consumeSecretId: s.id, audit: audit('cert.issue', 'bb02') }),
      ]);
      expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
      expect(((results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason as DeviceCaError).code).toBe('unauthenticated');
      expect(count('certificates')).toBe(1);
    } finally {
      await other.close();
    }
  });

  it('a failing insert (duplicate serial) rolls back the secret consumption and the audit record', async () => {
    await store.recordIssuance({ cert: cert('cc01', null), audit: audit('cert.issue', 'cc01') });
    const [s] = await store.activeSecrets('dev-1', new Date());
    await expect(store.recordIssuance({ cert: cert('cc01', 'dev-1'), consumeSecretId: s.id, audit: audit('cert.issue', 'cc01') })).rejects.toThrow();
    expect((await store.activeSecrets('dev-1', new Date())).map((x) => x.id)).toEqual([s.id]);
    expect((await store.getDevice('dev-1'))!.state).toBe('registered');
    expect(count('audit')).toBe(2);
  });

  it.each(['transferring', 'suspended', 'retired'] as const)('a device %s while its certificate was signed: forbidden, nothing recorded', async (state) => {
    await store.applyDeviceChange({ deviceId: 'dev-1', fromStates: ['registered'], toState: state, pendingOwner: state === 'transferring' ? 'bravo' : null, audit: audit(`device.${state}`, 'dev-1') });
    const before = { certs: count('certificates'), audit: count('audit') };
    const err = await rejectionOf(store.recordIssuance({ cert: cert('ee01', 'dev-1'), audit: audit('cert.issue', 'ee01') }));
    expect([err.code, err.message]).toEqual(['forbidden', `device is ${state}`]);
    expect(await store.getCertificate('ee01')).toBeNull();
    expect({ certs: count('certificates'), audit: count('audit') }).toEqual(before);
    expect((await store.getDevice('dev-1'))!.state).toBe(state);
  });

  it('settles an approved request to issued with the serial', async () => {
    await store.createRequest({ id: 'req-1', deviceId: 'dev-1', label: 'default', operation: 'simpleenroll', csrSha256: 'ab', csr: Buffer.from('csr') }, audit('request.create', 'req-1'));
    await store.decideRequest('req-1', 'approved', 'admin', audit('request.approve', 'req-1'));
    await store.recordIssuance({ cert: cert('dd01', 'dev-1'), requestId: 'req-1', audit: audit('cert.issue', 'dd01') });
    expect(await store.getRequest('req-1')).toMatchObject({ status: 'issued', certSerial: 'dd01', decidedBy: 'admin' });
  });
});

describe('audit chain', () => {
  it('hashes link: seq 1..n, prevHash = previous hash (GENESIS first), hash recomputes with auditHash', async () => {
    await store.createDevice({ id: 'dev-1', owner: null, label: null, state: 'registered' }, secret, audit('device.create', 'dev-1', { owner: null, z: 1, a: [1, 'x'] }));
    await store.appendAudit(audit('note', 'dev-1', { nested: { b: 2, a: 1 }, text: 'ünïcode' }));
    await store.createRequest({ id: 'req-1', deviceId: 'dev-1', label: 'default', operation: 'simpleenroll', csrSha256: 'ab', csr: Buffer.from('csr') }, audit('request.create', 'req-1'));
    await store.decideRequest('req-1', 'rejected', 'admin', audit('request.reject', 'req-1'));
    const [s] = await store.activeSecrets('dev-1', new Date());
    await store.recordIssuance({ cert: cert('ee01', 'dev-1'), consumeSecretId: s.id, audit: audit('cert.issue', 'ee01', { serial: 'ee01' }) });
    for (let i = 0; i < 20; i++) await store.appendAudit(audit('tick', `t${i}`, { i }));

    const all = await store.listAudit({ limit: 1000 });
    expect(all).toHaveLength(25);
    expect(all[0].prevHash).toBe(GENESIS);
    expect(verifyChain(all)).toBeNull();
    // pages follow the chain
    const page2 = await store.listAudit({ after: String(all[9].seq), limit: 5 });
    expect(page2.map((r) => r.seq)).toEqual([11, 12, 13, 14, 15]);
    expect((await store.listAudit({ subject: 'req-1' })).map((r) => r.type)).toEqual(['request.create', 'request.reject']);
  });

  it('the returned record equals the stored one', async () => {
    const rec = await store.appendAudit(audit('x', 'y', { k: 'v' }));
    const [stored] = await store.listAudit({});
    expect(stored).toEqual(rec);
  });

  it('editing a stored record breaks the chain from that record on (the check has teeth)', async () => {
    for (let i = 0; i < 5; i++) await store.appendAudit(audit('tick', `t${i}`, { i }));
    await store.close();
    const db = new Database(file);
    db.prepare('UPDATE audit SET data = ? WHERE seq = 3').run(JSON.stringify({ i: 99 }));
    db.close();
    store = new SqliteStore(file);
    expect(verifyChain(await store.listAudit({}))).toBe(3);
  });

  // BUG (src/audit/audit-chain.ts canonical + src/store/sqlite/sqlite-store.ts appendAuditSync): the hash is
  // computed over the in-memory data, but the store keeps JSON.stringify(data). A Date (or Buffer) hashes as
  // {} (or its index keys) yet is stored as an ISO string, so the chain cannot be re-verified from the store.
  // Flip to it() once the hash is computed over the JSON that is stored.
  it('audit data with a Date re-verifies from the store', async () => {
    await store.appendAudit(audit('cert.issue', 'ff01', { notAfter: new Date('2026-01-01T00:00:00Z') }));
    expect(verifyChain(await store.listAudit({}))).toBeNull();
  });
});

describe('authentication failures', () => {
  const t0 = new Date('2030-01-01T00:00:00Z');
  const at = (s: number): Date => new Date(t0.getTime() + s * 1000);

  it('counts failures inside the window, per key, and forgets old ones', async () => {
    expect(await store.recordAuthFailure('dev-1', at(0), 10)).toBe(1);
    expect(await store.recordAuthFailure('dev-1', at(1), 10)).toBe(2);
    expect(await store.recordAuthFailure('dev-2', at(1), 10)).toBe(1);
    expect(await store.recordAuthFailure('dev-1', at(2), 10)).toBe(3);
    expect(await store.countAuthFailures('dev-1', at(5), 10)).toEqual({ count: 3, oldest: at(0) });
    // the window is (now - window, now]: a failure exactly window seconds old no longer counts
    expect(await store.countAuthFailures('dev-1', at(10), 10)).toEqual({ count: 2, oldest: at(1) });
    expect(await store.countAuthFailures('dev-1', at(30), 10)).toEqual({ count: 0, oldest: null });
    expect(await store.recordAuthFailure('dev-1', at(11), 10)).toBe(2); // at(0) and at(1) dropped, at(2) kept
    expect(await store.countAuthFailures('dev-2', at(5), 10)).toEqual({ count: 1, oldest: at(1) });
  });

  it('clearAuthFailures resets one key only', async () => {
    await store.recordAuthFailure('dev-1', at(0), 60);
    await store.recordAuthFailure('dev-2', at(0), 60);
    await store.clearAuthFailures('dev-1');
    expect((await store.countAuthFailures('dev-1', at(1), 60)).count).toBe(0);
    expect((await store.countAuthFailures('dev-2', at(1), 60)).count).toBe(1);
  });
});

describe('manual approval requests', () => {
  const newRequest = (id: string) => store.createRequest({ id, deviceId: 'dev-1', label: 'default', operation: 'simpleenroll', csrSha256: `sha-${id}`, csr: Buffer.from(`csr-${id}`) }, audit('request.create', id));

  it('pending -> approved; a second decision is a conflict and writes nothing', async () => {
    const r = await newRequest('req-1');
    expect(r).toMatchObject({ status: 'pending', certSerial: null, decidedAt: null, decidedBy: null });
    const d = await store.decideRequest('req-1', 'approved', 'alice', audit('request.approve', 'req-1'));
    expect(d).toMatchObject({ id: 'req-1', status: 'approved', decidedBy: 'alice' });
    expect(await store.getRequest('req-1')).toMatchObject({ status: 'approved', decidedBy: 'alice' });
    const auditBefore = count('audit');
    for (const next of ['approved', 'rejected'] as const) {
      const err = await rejectionOf(store.decideRequest('req-1', next, 'bob', audit('request.decide', 'req-1')));
      expect(err.code).toBe('conflict');
    }
    expect(await store.getRequest('req-1')).toMatchObject({ status: 'approved', decidedBy: 'alice' });
    expect(count('audit')).toBe(auditBefore);
  });

  it('pending -> rejected, then no approval', async () => {
    await newRequest('req-2');
    expect((await store.decideRequest('req-2', 'rejected', 'alice', audit('request.reject', 'req-2'))).status).toBe('rejected');
    expect((await rejectionOf(store.decideRequest('req-2', 'approved', 'alice', audit('request.approve', 'req-2')))).code).toBe('conflict');
  });

  it('issued requests cannot be decided again; unknown ids are not-found', async () => {
    await newRequest('req-3');
    await store.decideRequest('req-3', 'approved', 'alice', audit('request.approve', 'req-3'));
    await store.recordIssuance({ cert: cert('aa03', 'dev-1'), requestId: 'req-3', audit: audit('cert.issue', 'aa03') });
    expect((await rejectionOf(store.decideRequest('req-3', 'rejected', 'alice', audit('request.reject', 'req-3')))).code).toBe('conflict');
    expect((await rejectionOf(store.decideRequest('nope', 'approved', 'alice', audit('request.approve', 'nope')))).code).toBe('not-found');
  });

  it('findRequest and listRequests by status', async () => {
    await newRequest('req-a');
    await newRequest('req-b');
    await store.decideRequest('req-b', 'approved', 'alice', audit('request.approve', 'req-b'));
    expect((await store.findRequest('dev-1', 'sha-req-a'))!.csr.equals(Buffer.from('csr-req-a'))).toBe(true);
    expect(await store.findRequest('dev-1', 'sha-none')).toBeNull();
    expect((await store.listRequests({ status: 'pending' })).map((r) => r.id)).toEqual(['req-a']);
    expect((await store.listRequests({})).map((r) => r.id)).toEqual(['req-a', 'req-b']);
  });
});
