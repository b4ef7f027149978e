import * as path from 'node:path';
import { nextAuditRecord } from '../../../src/audit/audit-chain';
import { auditLength } from '../../../src/audit/audit-range';
import { verifyAuditChain } from '../../../src/audit/audit-verify';
import { AuditBrowser, SCAN_BUDGET } from '../../../src/ra/audit-browser';
import { OPERATOR, Scope } from '../../../src/ra/device-lifecycle';
import { pageLimit, pageOf } from '../../../src/store/paging';
import { AuditRecord, AuditStore, Page } from '../../../src/store/store';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { makeTmpDir } from '../../helpers/tmp';

/**
 * AuditBrowser: the audit listing's filters and paging, and the chunked chain verification the console's
 * audit page loops over. A chain in memory (records made by nextAuditRecord at chosen times, read through
 * the listAudit contract) lets the tests place records in time and edit one; the last cases run on SQLite.
 */

const T0 = Date.parse('2026-11-01T00:00:00Z');
const HOUR = 3_600_000;

/** chain: n records one hour apart; record i (seq i+1) is about device d<i % 3>, type device.tick or cert.tick */
function chain(n: number): AuditRecord[] {
  const out: AuditRecord[] = [];
  for (let i = 0; i < n; i++) out.push(nextAuditRecord(out[i - 1] ?? null, { type: i % 2 ? 'cert.tick' : 'device.tick', actor: 'test', subject: `d${i % 3}`, data: { i } }, new Date(T0 + i * HOUR)));
  return out;
}

/** lister: listAudit over an array, with the stores' paging rules (seq cursor, clamped limit, one row more for next) */
function lister(records: AuditRecord[]): Pick<AuditStore, 'listAudit'> & { reads: number } {
  const l = {
    reads: 0,
    async listAudit(f: { subject?: string; after?: string; limit?: number }): Promise<Page<AuditRecord>> {
      l.reads++;
      const after = Number(f.after ?? 0);
      const limit = pageLimit(f);
      const rows = records.filter((r) => r.seq > after && (f.subject === undefined || r.subject === f.subject)).slice(0, limit + 1);
      return pageOf(rows, limit, (r) => String(r.seq));
    },
  };
  return l;
}

async function all(b: AuditBrowser, q: Omit<Parameters<AuditBrowser['list']>[1], 'after'>): Promise<number[]> {
  const seqs: number[] = [];
  let after: string | undefined;
  do {
    const p = await b.list(OPERATOR, { ...q, after });
    seqs.push(...p.items.map((r) => r.seq));
    after = p.next ?? undefined;
  } while (after);
  return seqs;
}

const acme: Scope = { kind: 'owner', owner: 'acme' };

describe('AuditBrowser.list', () => {
  const records = chain(50);
  const b = new AuditBrowser(lister(records));

  it('pages through the whole log in chain order', async () => {
    expect(await all(b, { limit: 7 })).toEqual(records.map((r) => r.seq));
  });

  it('filters by device, by type prefix, and both', async () => {
    expect(await all(b, { device: 'd1', limit: 4 })).toEqual(records.filter((r) => r.subject === 'd1').map((r) => r.seq));
    expect(await all(b, { type: 'cert.', limit: 4 })).toEqual(records.filter((r) => r.type === 'cert.tick').map((r) => r.seq));
    expect(await all(b, { device: 'd2', type: 'device.tick', limit: 100 })).toEqual(records.filter((r) => r.subject === 'd2' && r.type === 'device.tick').map((r) => r.seq));
  });

  it('keeps records in [from, to): from inclusive, to exclusive', async () => {
    const from = new Date(T0 + 10 * HOUR); // record seq 11
    const to = new Date(T0 + 20 * HOUR); // record seq 21, excluded
    expect(await all(b, { from, to, limit: 3 })).toEqual([11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
    expect(await all(b, { from: new Date(T0 + 10 * HOUR + 1), limit: 100 })).toEqual(records.slice(11).map((r) => r.seq));
    expect(await all(b, { to: new Date(T0 - 1), limit: 100 })).toEqual([]);
    expect(await all(b, { from: new Date(T0 + 1000 * HOUR), limit: 100 })).toEqual([]);
    expect(await all(b, { device: 'd0', from, to, limit: 100 })).toEqual([13, 16, 19]);
  });

  it('refuses a range that ends before it starts, and a cursor it did not give', async () => {
    await expect(b.list(OPERATOR, { from: new Date(T0 + HOUR), to: new Date(T0), limit: 10 })).rejects.toMatchObject({ code: 'bad-request' });
    await expect(b.list(OPERATOR, { after: 'x', limit: 10 })).rejects.toMatchObject({ code: 'bad-request' });
  });

  it('reads at most SCAN_BUDGET records per call when a type filter matches little: a short page with next', async () => {
    const big = chain(SCAN_BUDGET + 10);
    big[SCAN_BUDGET + 5] = { ...big[SCAN_BUDGET + 5], type: 'rare' };
    const l = lister(big);
    const p = await new AuditBrowser(l).list(OPERATOR, { type: 'rare', limit: 10 });
    expect(p.items).toEqual([]);
    expect(p.next).toBe(String(SCAN_BUDGET));
    const p2 = await new AuditBrowser(l).list(OPERATOR, { type: 'rare', limit: 10, after: p.next! });
    expect(p2.items.map((r) => r.seq)).toEqual([SCAN_BUDGET + 6]);
    expect(p2.next).toBeNull();
  });

  it('is the operator\u2019s: an owner scope is refused', async () => {
    await expect(b.list(acme, { limit: 10 })).rejects.toMatchObject({ code: 'forbidden' });
  });
});

describe('AuditBrowser.verify (chunked)', () => {
  async function loop(b: AuditBrowser, chunk: number) {
    let after = 0;
    let hash: string | undefined;
    const totals: number[] = [];
    for (;;) {
      const v = await b.verify(OPERATOR, { after, hash, limit: chunk });
      totals.push(v.total);
      if (v.done) return { v, totals };
      after = v.position.seq;
      hash = v.position.hash;
    }
  }

  it('walks a valid chain to its end in chunks and says how long it is', async () => {
    const records = chain(95);
    const { v, totals } = await loop(new AuditBrowser(lister(records)), 10);
    expect(v).toMatchObject({ ok: true, done: true, position: { seq: 95, hash: records[94].hash } });
    expect(totals).toHaveLength(10);
    expect(new Set(totals)).toEqual(new Set([95]));
  });

  it('finds an edited record, whichever chunk it is in, and stops there', async () => {
    for (const at of [0, 9, 10, 57, 94]) {
      const records = chain(95);
      records[at] = { ...records[at], data: { i: 'edited' } };
      const { v } = await loop(new AuditBrowser(lister(records)), 10);
      expect(v).toMatchObject({ ok: false, done: true, firstBad: { seq: at + 1 }, position: { seq: at } });
      expect(v.firstBad!.problem).toMatch(/edited/);
    }
  });

  it('says invalid when the position\u2019s record changed since the previous chunk, and refuses a position past the end', async () => {
    const records = chain(20);
    const b = new AuditBrowser(lister(records));
    const v = await b.verify(OPERATOR, { after: 10, hash: records[3].hash, limit: 5 });
    expect(v).toMatchObject({ ok: false, done: true, firstBad: { seq: 10, problem: expect.stringMatching(/changed/) } });
    await expect(b.verify(OPERATOR, { after: 21, hash: records[3].hash, limit: 5 })).rejects.toMatchObject({ code: 'bad-request' });
  });

  it('needs the hash after the first chunk; an owner scope is refused', async () => {
    const b = new AuditBrowser(lister(chain(5)));
    await expect(b.verify(OPERATOR, { after: 2, limit: 5 })).rejects.toMatchObject({ code: 'bad-request' });
    await expect(b.verify(acme, { after: 0, limit: 5 })).rejects.toMatchObject({ code: 'forbidden' });
  });

  it('on SQLite: chunks agree with verifyAuditChain, and the length search reads few records', async () => {
    const dir = makeTmpDir('device-ca-audit-browser-');
    const store = new SqliteStore(path.join(dir.path, 'device-ca.sqlite'));
    try {
      await Promise.all(Array.from({ length: 2345 }, (_, i) => store.appendAudit({ type: 'tick', actor: 'test', subject: `s${i}`, data: { i } })));
      const full = await verifyAuditChain(store);
      const { v } = await loop(new AuditBrowser(store), 1000);
      expect(v).toMatchObject({ ok: true, done: true, total: 2345, position: { seq: full.records, hash: full.lastHash } });
      const l = lister(chain(1000));
      expect(await auditLength(l)).toBe(1000);
      expect(l.reads).toBeLessThan(25);
      expect(await auditLength(lister([]))).toBe(0);
    } finally {
      await store.close();
      dir.cleanup();
    }
  });
});
