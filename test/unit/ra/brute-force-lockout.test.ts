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
    // one scrypt check per counted attempt (the device has one active secret)
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
