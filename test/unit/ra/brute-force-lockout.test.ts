import Database from 'better-sqlite3';
import * as crypto from 'node:crypto';
import * as enrollmentSecret from '../../../src/ra/enrollment-secret';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { RaHarness, makeRaHarness, secretProof } from './ra-harness';

/**
 * The brute-force lockout of enrollment secrets as a device (or an attacker) meets it through the RA:
 * the attempt is counted before the secret is checked, so parallel guesses cannot overtake the limit.
 */

let h: RaHarness;
let n = 0;
const nextId = (): string => `lock-${++n}`;
beforeAll(async () => {
  h = await makeRaHarness();
});
afterAll(() => h?.close());
afterEach(() => jest.restoreAllMocks());

/** outcome: 'issued' or the error code, with the Retry-After the RA asked for */
async function outcome(id: string, secret: string): Promise<{ code: string; retryAfter?: number }> {
  try {
    const out = await h.enroll('default', 'enroll', h.csr(id).der, secretProof(id, secret));
    return { code: out.status };
  } catch (e) {
    if (!(e instanceof DeviceCaError)) throw e;
    return { code: e.code, retryAfter: e.retryAfterSeconds };
  }
}

const tally = (codes: string[]): Record<string, number> => codes.reduce<Record<string, number>>((t, c) => ({ ...t, [c]: (t[c] ?? 0) + 1 }), {});

describe('brute-force lockout under concurrency', () => {
  it('50 concurrent wrong secrets for one device: at most authFailureLimit (5) are checked, the rest are rate-limited with Retry-After', async () => {
    const id = nextId();
    const secret = await h.register(id);
    const verify = jest.spyOn(enrollmentSecret, 'verifySecret');
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => outcome(id, `wrong-${i}`)));
    expect(tally(results.map((r) => r.code))).toEqual({ unauthenticated: 5, 'rate-limited': 45 });
    for (const r of results.filter((x) => x.code === 'rate-limited')) {
      expect(r.retryAfter).toBeGreaterThan(0);
      expect(r.retryAfter).toBeLessThanOrEqual(h.cfg.enrollment.authFailureWindow);
    }
    // one secret check per counted attempt (the device has one active secret)
    expect(verify).toHaveBeenCalledTimes(5);
    expect((await h.store.countAuthFailures(`basic:${id}`, h.now(), h.cfg.enrollment.authFailureWindow)).count).toBe(5);
    expect((await h.audit('auth.locked')).filter((a) => a.subject === id)).toHaveLength(1);

    // locked: the right secret within the window is refused too; the device waits out the window
    verify.mockClear();
    expect(await outcome(id, secret)).toMatchObject({ code: 'rate-limited' });
    expect(verify).not.toHaveBeenCalled();
    h.advance(h.cfg.enrollment.authFailureWindow + 1);
    expect(await outcome(id, secret)).toEqual({ code: 'issued' });
  });

  it('the right secret among concurrent wrong ones is not held against the device: its attempt is forgiven', async () => {
    const id = nextId();
    const secret = await h.register(id);
    const results = await Promise.all([outcome(id, 'wrong-1'), outcome(id, secret), outcome(id, 'wrong-2')]);
    expect(results.map((r) => r.code)).toEqual(['unauthenticated', 'issued', 'unauthenticated']);
    // the two wrong guesses count; the successful attempt does not (and does not clear them either)
    expect((await h.store.countAuthFailures(`basic:${id}`, h.now(), h.cfg.enrollment.authFailureWindow)).count).toBe(2);
  });
});

describe('a flood of made-up user names', () => {
  let f: RaHarness;
  beforeAll(async () => {
    f = await makeRaHarness({ overrides: { 'enrollment.authFailureMaxUnknown': 100 } });
  });
  afterAll(() => f?.close());

  it('400 random names: the store keeps at most authFailureMaxUnknown of them, and a locked device stays locked', async () => {
    const id = 'flooded-device';
    const secret = await f.register(id);
    const attempt = async (user: string, pw: string): Promise<string> =>
      f.enroll('default', 'enroll', f.csr(id).der, secretProof(user, pw)).then(
        (out) => out.status,
        (e: unknown) => (e instanceof DeviceCaError ? e.code : Promise.reject(e)),
      );
    for (let i = 0; i < 5; i++) expect(await attempt(id, `wrong-${i}`)).toBe('unauthenticated');
    const names = Array.from({ length: 400 }, () => crypto.randomBytes(12).toString('hex'));
    for (let i = 0; i < names.length; i += 20) {
      const codes = await Promise.all(names.slice(i, i + 20).map((u) => attempt(u, 'guess')));
      expect(new Set(codes)).toEqual(new Set(['unauthenticated']));
    }
    const db = new Database(f.cfg.store.path, { readonly: true });
    try {
      const r = db.prepare('SELECT COUNT(*) AS n, COALESCE(SUM(evictable), 0) AS ev FROM auth_attempts').get() as { n: number; ev: number };
      expect(r).toEqual({ n: 105, ev: 100 });
    } finally {
      db.close();
    }
    // the newest names are still counted, the oldest were dropped
    expect((await f.store.countAuthFailures(`basic:${names[399]}`, f.now(), f.cfg.enrollment.authFailureWindow)).count).toBe(1);
    expect((await f.store.countAuthFailures(`basic:${names[0]}`, f.now(), f.cfg.enrollment.authFailureWindow)).count).toBe(0);
    expect(await attempt(id, secret)).toBe('rate-limited');
  });

  it('names that cannot be device ids (300 characters, spaces, colons) are locked out like any other, under keys no longer than a device id', async () => {
    const long = 'x'.repeat(300);
    for (const user of [long, 'a b', `${'y'.repeat(199)}:z`]) {
      for (let i = 0; i < 5; i++) expect(await outcomeOf(f, user, `guess-${i}`)).toBe('unauthenticated');
      expect(await outcomeOf(f, user, 'guess-6')).toBe('rate-limited');
    }
    // a name differing only after the 200th character is its own name
    expect(await outcomeOf(f, `${long}!`, 'guess')).toBe('unauthenticated');
    const db = new Database(f.cfg.store.path, { readonly: true });
    try {
      expect((db.prepare('SELECT MAX(LENGTH(key)) AS n FROM auth_attempts').get() as { n: number }).n).toBeLessThanOrEqual('basic:'.length + 128);
    } finally {
      db.close();
    }
  });
});

async function outcomeOf(harness: RaHarness, user: string, pw: string): Promise<string> {
  try {
    return (await harness.enroll('default', 'enroll', harness.csr('any').der, secretProof(user, pw))).status;
  } catch (e) {
    if (e instanceof DeviceCaError) return e.code;
    throw e;
  }
}
