import * as fs from 'node:fs';
import { nextAuditRecord } from '../../../src/audit/audit-chain';
import { verifyAuditChain } from '../../../src/audit/audit-verify';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { Store } from '../../../src/store/store';
import { TmpDir, makeTmpDir } from '../../helpers/tmp';

/**
 * The SQLite store's writer thread (store.writerThread, store/sqlite/issuance-writer.ts): issuance records and
 * audit appends committed by a thread with its own connection. The store contract suite runs on it
 * (sqlite-writer-thread-store-contract.test.ts); these are the cases that depend on its batching, its close
 * and its sharing of the file with connections that write on their own thread.
 */

let tmp: TmpDir;
beforeEach(() => {
  tmp = makeTmpDir('device-ca-writer-');
});
afterEach(() => tmp.cleanup());

const device = (id: string): Parameters<Store['createDevice']> => [
  { id, owner: null, label: null, state: 'registered' },
  { hash: 'hmac$x', expiresAt: new Date(Date.now() + 86400_000) },
  { type: 'device.create', actor: 'test', subject: id, data: {} },
];

const issuance = (serial: string, deviceId: string): Parameters<Store['recordIssuance']>[0] => ({
  cert: {
    serial,
    deviceId,
    issuer: 'CN=Test Issuing CA',
    subject: `CN=${deviceId}`,
    profile: 'default',
    notBefore: new Date(1_700_000_000_000),
    notAfter: new Date(1_800_000_000_000),
    shard: 3,
    spkiSha256: 'ab'.repeat(32),
    der: Buffer.from(`der of ${serial}`),
  },
  audit: { type: 'certificate.issued', actor: `device:${deviceId}`, subject: deviceId, data: { serial } },
});

/** outcome: what a store call settled with, as its caller sees it */
async function outcome(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return e instanceof DeviceCaError ? e.code : `not a DeviceCaError: ${String(e)}`;
  }
}

describe('SQLite store with the writer thread', () => {
  it('refuses one write of a batch alone: the others, their audit records and the chain are stored', async () => {
    const file = tmp.file('store.sqlite');
    const store = new SqliteStore(file, { writerThread: true });
    try {
      await store.createDevice(...device('d1'));
      await store.recordIssuance(issuance('01', 'd1'));
      // one event-loop turn: one batch, one transaction; '01' is stored already (a constraint: 'internal')
      const got = await Promise.all([
        outcome(store.recordIssuance(issuance('02', 'd1'))),
        outcome(store.recordIssuance(issuance('01', 'd1'))),
        outcome(store.appendAudit({ type: 'note', actor: 'test', subject: 'd1', data: { n: 1 } })),
        outcome(store.recordIssuance(issuance('03', 'd1'))),
      ]);
      expect(got).toEqual(['ok', 'internal', 'ok', 'ok']);
      expect((await store.listCertificates({ deviceId: 'd1' })).items.map((c) => [c.serial, c.der.toString()]).sort()).toEqual([
        ['01', 'der of 01'],
        ['02', 'der of 02'],
        ['03', 'der of 03'],
      ]);
      expect((await store.listAudit({})).items.map((r) => `${r.type} ${JSON.stringify(r.data)}`)).toEqual([
        'device.create {}',
        'certificate.issued {"serial":"01"}',
        'certificate.issued {"serial":"02"}',
        'note {"n":1}',
        'certificate.issued {"serial":"03"}',
      ]);
      expect((await store.getDevice('d1'))?.state).toBe('active');
      expect(await verifyAuditChain(store)).toMatchObject({ ok: true, records: 5 });
    } finally {
      await store.close();
    }
  });

  it('answers the audit record as stored (seq, hashes) and chains with a connection that writes on its own thread', async () => {
    const file = tmp.file('store.sqlite');
    const threaded = new SqliteStore(file, { writerThread: true });
    // a second worker process of the service with the writer thread off
    const inline = new SqliteStore(file);
    try {
      const recs = [];
      for (let i = 0; i < 6; i++) {
        const [a, b] = await Promise.all([
          threaded.appendAudit({ type: 't', actor: 'threaded', subject: 's', data: { i, at: new Date(0), drop: undefined } }),
          inline.appendAudit({ type: 't', actor: 'inline', subject: 's', data: { i } }),
        ]);
        recs.push(a, b);
      }
      const stored = (await inline.listAudit({})).items;
      expect(stored).toHaveLength(12);
      const bySeq = new Map(stored.map((r) => [r.seq, r]));
      // what appendAudit answered is exactly the record the store holds
      for (const r of recs) expect(bySeq.get(r.seq)).toEqual(r);
      expect(recs.find((r) => r.actor === 'threaded')?.data).toEqual({ i: 0, at: '1970-01-01T00:00:00.000Z' });
      expect(await verifyAuditChain(inline)).toMatchObject({ ok: true, records: 12 });
    } finally {
      await threaded.close();
      await inline.close();
    }
  });

  it('close answers every write still queued, and they are in the file when it is opened again', async () => {
    const file = tmp.file('store.sqlite');
    const store = new SqliteStore(file, { writerThread: true });
    await store.createDevice(...device('d1'));
    const pending = Array.from({ length: 40 }, (_, i) => outcome(store.recordIssuance(issuance(`s${String(i).padStart(2, '0')}`, 'd1'))));
    await store.close();
    expect(await Promise.all(pending)).toEqual(pending.map(() => 'ok'));
    const again = new SqliteStore(file);
    try {
      expect((await again.listCertificates({ deviceId: 'd1', limit: 100 })).items).toHaveLength(40);
      expect(await verifyAuditChain(again)).toMatchObject({ ok: true, records: 41 });
      // and a write after close is refused, not lost
      expect(await outcome(store.appendAudit({ type: 'late', actor: 'test', subject: 's', data: {} }))).toBe('internal');
    } finally {
      await again.close();
    }
  });

  it('refuses an issuance with store-unavailable before it starts while the store cannot grow, writing nothing', async () => {
    const file = tmp.file('store.sqlite');
    const before = new SqliteStore(file);
    await before.createDevice(...device('d1'));
    await before.close();
    // a full mount, as in sqlite-disk-space-guard.test.ts: the guard's scratch file is a link to /dev/full
    fs.rmSync(`${file}-space`, { force: true });
    fs.symlinkSync('/dev/full', `${file}-space`);
    const store = new SqliteStore(file, { writerThread: true, backgroundCheckpoint: true });
    try {
      await expect(store.probe()).rejects.toMatchObject({ code: 'store-unavailable' });
      expect(await outcome(store.recordIssuance(issuance('01', 'd1')))).toBe('store-unavailable');
      expect((await store.listCertificates({ deviceId: 'd1' })).items).toEqual([]);
      expect((await store.listAudit({})).items.map((r) => r.type)).toEqual(['device.create']);
      expect((await store.getDevice('d1'))?.state).toBe('registered');
    } finally {
      fs.rmSync(`${file}-space`, { force: true });
      await store.close();
    }
  });
});

describe('audit hash', () => {
  it('is the one the chain had before the hash was split for the writer thread (a fixed vector)', () => {
    // computed by the code before the split (nextAuditRecord of commit 7e7cd3f)
    const r = nextAuditRecord(
      { seq: 41, hash: 'ab'.repeat(32) },
      { type: 'certificate.issued', actor: 'device:d-1', subject: 'd-1', data: { z: 1, a: { y: [2, { c: 'é', b: null }], x: new Date(0) }, u: undefined } },
      new Date(1_700_000_000_123),
    );
    expect(r).toEqual({
      seq: 42,
      at: new Date(1_700_000_000_123),
      type: 'certificate.issued',
      actor: 'device:d-1',
      subject: 'd-1',
      data: { z: 1, a: { y: [2, { c: 'é', b: null }], x: '1970-01-01T00:00:00.000Z' } },
      prevHash: 'ab'.repeat(32),
      hash: '7f3c5c3386c8213c9a5b4c0eea3029e0170920d95aa16497ce9345d506acbdcb',
    });
  });
});
