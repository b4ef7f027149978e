import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';

/** SqliteStore leases and CA state: one holder at a time across store instances on one file, growing fences. */

let dir: string;
let file: string;
const open: SqliteStore[] = [];
const newStore = (): SqliteStore => {
  const s = new SqliteStore(file);
  open.push(s);
  return s;
};
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-lease-'));
  file = path.join(dir, 'device-ca.sqlite');
});
afterEach(async () => {
  for (const s of open.splice(0)) await s.close().catch(() => undefined);
  fs.rmSync(dir, { recursive: true, force: true });
});

const t0 = new Date('2030-01-01T00:00:00Z');
const at = (ms: number): Date => new Date(t0.getTime() + ms);

describe('acquireLease / releaseLease', () => {
  it('a second holder is refused while the first holds the lease; the holder renews with the same fence', async () => {
    const s = newStore();
    const a = await s.acquireLease('ca-duties', 'a', 30_000, t0);
    expect(a).toEqual({ fence: 1, expiresAt: at(30_000) });
    expect(await s.acquireLease('ca-duties', 'b', 30_000, at(10_000))).toBeNull();
    expect(await s.acquireLease('ca-duties', 'a', 30_000, at(20_000))).toEqual({ fence: 1, expiresAt: at(50_000) });
    // the renewal moved the expiry: b is still refused after the first expiry would have passed
    expect(await s.acquireLease('ca-duties', 'b', 30_000, at(40_000))).toBeNull();
  });

  it('an expired lease goes to the next holder with a larger fence; the old holder then is refused', async () => {
    const s = newStore();
    await s.acquireLease('ca-duties', 'a', 30_000, t0);
    const b = await s.acquireLease('ca-duties', 'b', 30_000, at(30_000));
    expect(b?.fence).toBe(2);
    expect(await s.acquireLease('ca-duties', 'a', 30_000, at(31_000))).toBeNull();
    const a = await s.acquireLease('ca-duties', 'a', 30_000, at(61_000));
    expect(a?.fence).toBe(3);
  });

  it('release hands the lease over at once, and the fence still grows', async () => {
    const s = newStore();
    await s.acquireLease('ca-duties', 'a', 30_000, t0);
    await s.releaseLease('ca-duties', 'b'); // not the holder: no effect
    expect(await s.acquireLease('ca-duties', 'b', 30_000, at(1)).then((l) => l?.fence ?? null)).toBeNull();
    await s.releaseLease('ca-duties', 'a');
    expect((await s.acquireLease('ca-duties', 'b', 30_000, at(2)))?.fence).toBe(2);
  });

  it('leases of different names are independent', async () => {
    const s = newStore();
    expect((await s.acquireLease('one', 'a', 30_000, t0))?.fence).toBe(1);
    expect((await s.acquireLease('two', 'b', 30_000, t0))?.fence).toBe(1);
  });

  it('two store instances on one file racing for a free lease: exactly one wins', async () => {
    const stores = [newStore(), newStore(), newStore()];
    for (let round = 0; round < 5; round++) {
      const now = at(round * 60_000); // every round starts after the previous lease expired
      const got = await Promise.all(stores.map((s, i) => s.acquireLease('ca-duties', `holder-${i}`, 30_000, now)));
      const winners = got.filter((g) => g !== null);
      expect(winners).toHaveLength(1);
      expect(winners[0]!.fence).toBe(round + 1);
    }
  });
});

describe('getCaState / saveCaState', () => {
  it('creates only once, then changes only from the version read (compare-and-set), visible to another instance', async () => {
    const a = newStore();
    const b = newStore();
    expect(await a.getCaState('hierarchy')).toBeNull();
    expect(await a.saveCaState('hierarchy', { n: 1 }, 0)).toBe(1);
    await expect(b.saveCaState('hierarchy', { n: 2 }, 0)).rejects.toMatchObject({ code: 'conflict' });
    expect(await b.getCaState('hierarchy')).toMatchObject({ value: { n: 1 }, version: 1 });
    expect(await b.saveCaState('hierarchy', { n: 2 }, 1)).toBe(2);
    await expect(a.saveCaState('hierarchy', { n: 3 }, 1)).rejects.toMatchObject({ code: 'conflict' });
    expect(await a.getCaState('hierarchy')).toMatchObject({ value: { n: 2 }, version: 2 });
  });

  it('appends the audit record in the same transaction, and not at all when the write is refused', async () => {
    const s = newStore();
    await s.saveCaState('ocsp-responder', { x: 1 }, 0, { type: 'ca.state.saved', actor: 'test', subject: 'ocsp-responder', data: {} });
    await expect(s.saveCaState('ocsp-responder', { x: 2 }, 0, { type: 'ca.state.saved', actor: 'test', subject: 'ocsp-responder', data: { refused: true } })).rejects.toMatchObject({ code: 'conflict' });
    const audit = (await s.listAudit({ subject: 'ocsp-responder' })).items;
    expect(audit.map((r) => r.data)).toEqual([{}]);
  });
});

describe('the SQLite file', () => {
  it('is created 0600 in a 0700 directory whatever the umask', async () => {
    const old = process.umask(0o022);
    try {
      file = path.join(dir, 'nested', 'store', 'device-ca.sqlite');
      const s = newStore();
      await s.acquireLease('x', 'a', 1000, t0); // a write: the -wal file exists now
    } finally {
      process.umask(old);
    }
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.statSync(file + '-wal').mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.join(dir, 'nested')).mode & 0o777).toBe(0o700);
  });
});
