import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { isLoginFailure, isRecoverable, loginError } from '../../../src/keys/pkcs11/pkcs11-errors';
import { SessionPool, SessionSource } from '../../../src/keys/pkcs11/session-pool';

/**
 * SessionPool rules, checked with a fake token whose sessions fail with CKR_OPERATION_ACTIVE when
 * used twice at once, and which can lose all sessions or reject the PIN on demand.
 */

class FakeSession {
  busy = false;
  closed = false;
  ops = 0;
  constructor(readonly generation: number) {}
}

class FakeToken implements SessionSource<FakeSession> {
  connects = 0;
  disconnects = 0;
  /** nextConnectError is thrown by the next connect (once). */
  nextConnectError?: Error;
  sessions: FakeSession[] = [];
  maxConcurrent = 0;
  private concurrent = 0;

  connect(size: number): FakeSession[] {
    this.connects++;
    const e = this.nextConnectError;
    if (e) {
      this.nextConnectError = undefined;
      throw e;
    }
    this.sessions = Array.from({ length: size }, () => new FakeSession(this.connects));
    return this.sessions;
  }

  disconnect(sessions: FakeSession[]): void {
    this.disconnects++;
    for (const s of sessions) s.closed = true;
  }

  /** closeAll is C_CloseAllSessions by someone else. */
  closeAll(): void {
    for (const s of this.sessions) s.closed = true;
  }

  /** op is one cryptographic operation taking `ms` on the token. */
  async op(s: FakeSession, ms = 1): Promise<number> {
    if (s.closed) throw new Error('CKR_SESSION_HANDLE_INVALID');
    if (s.busy) throw new Error('CKR_OPERATION_ACTIVE');
    s.busy = true;
    this.concurrent++;
    this.maxConcurrent = Math.max(this.maxConcurrent, this.concurrent);
    await new Promise((r) => setTimeout(r, ms));
    this.concurrent--;
    s.busy = false;
    s.ops++;
    return s.generation;
  }
}

const classify = { recoverable: isRecoverable, fatal: isLoginFailure };

describe('SessionPool', () => {
  test('500 concurrent operations on 4 sessions: none overlaps on a session, at most 4 at once, all succeed', async () => {
    const token = new FakeToken();
    const pool = new SessionPool(token, 4, classify);
    const results = await Promise.all(Array.from({ length: 500 }, () => pool.run(({ session }) => token.op(session))));
    expect(results).toHaveLength(500);
    expect(token.maxConcurrent).toBe(4);
    expect(token.sessions.reduce((n, s) => n + s.ops, 0)).toBe(500);
    expect(token.sessions.every((s) => s.ops > 50)).toBe(true); // work is spread over all sessions
    expect(token.connects).toBe(1);
    expect(pool.inFlight).toBe(0);
    expect(pool.queued).toBe(0);
  });

  test('waiters are served in FIFO order', async () => {
    const token = new FakeToken();
    const pool = new SessionPool(token, 1, classify);
    const order: number[] = [];
    await Promise.all(Array.from({ length: 20 }, (_, i) => pool.run(async ({ session }) => (await token.op(session), order.push(i)))));
    expect(order).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });

  test('sessions closed under the pool: one reconnect for 100 failing callers, each retried once, all succeed', async () => {
    const token = new FakeToken();
    const pool = new SessionPool(token, 4, classify);
    await pool.open();
    token.closeAll();
    const gens = await Promise.all(Array.from({ length: 100 }, () => pool.run(({ session }) => token.op(session))));
    expect(gens.every((g) => g === 2)).toBe(true);
    expect(token.connects).toBe(2);
    expect(token.disconnects).toBe(1);
    expect(pool.reconnects).toBe(1);
    expect(pool.generation).toBe(2);
  });

  test('a reconnect waits for in-flight operations on old sessions before closing them', async () => {
    const token = new FakeToken();
    const pool = new SessionPool(token, 2, classify);
    await pool.open();
    let slowSession: FakeSession | undefined;
    let closedUnderSlow = false;
    const slow = pool.run(async ({ session }) => {
      slowSession = session;
      const g = await token.op(session, 30);
      closedUnderSlow = session.closed;
      return g;
    });
    await new Promise((r) => setImmediate(r));
    token.sessions.find((s) => s !== slowSession)!.closed = true; // the other session dies
    const failing = pool.run(({ session }) => token.op(session));
    expect(await slow).toBe(1);
    expect(closedUnderSlow).toBe(false);
    expect(await failing).toBe(2);
    expect(slowSession!.closed).toBe(true); // closed by the reconnect, after the slow operation
  });

  test('an operation that fails again after the reconnect surfaces its error; no second reconnect', async () => {
    const token = new FakeToken();
    const pool = new SessionPool(token, 2, classify);
    let calls = 0;
    await expect(
      pool.run(async () => {
        calls++;
        throw new Error('CKR_DEVICE_REMOVED');
      }),
    ).rejects.toThrow('CKR_DEVICE_REMOVED');
    expect(calls).toBe(2);
    expect(token.connects).toBe(2);
  });

  test('errors that a new session cannot fix are not retried', async () => {
    const token = new FakeToken();
    const pool = new SessionPool(token, 2, classify);
    let calls = 0;
    await expect(
      pool.run(async () => {
        calls++;
        throw new Error('CKR_DATA_LEN_RANGE');
      }),
    ).rejects.toThrow('CKR_DATA_LEN_RANGE');
    expect(calls).toBe(1);
    expect(token.connects).toBe(1);
  });

  test('a wrong PIN on re-login poisons the pool: every later call gets that error and connect is never called again', async () => {
    const token = new FakeToken();
    const pool = new SessionPool(token, 2, classify);
    await pool.open();
    const pinError = loginError(new Error('CKR_PIN_INCORRECT'), 'ca');
    expect(isLoginFailure(pinError)).toBe(true);
    token.nextConnectError = pinError;
    token.closeAll();
    const results = await Promise.allSettled(Array.from({ length: 10 }, () => pool.run(({ session }) => token.op(session))));
    expect(results.every((r) => r.status === 'rejected' && r.reason === pinError)).toBe(true);
    await expect(pool.run(({ session }) => token.op(session))).rejects.toBe(pinError);
    await expect(pool.open()).rejects.toBe(pinError);
    expect(token.connects).toBe(2);
  });

  test('a token missing at connect is not fatal: the next call connects again', async () => {
    const token = new FakeToken();
    const pool = new SessionPool(token, 2, classify);
    token.nextConnectError = new DeviceCaError('config', 'PKCS#11 token "ca" not found');
    await expect(pool.open()).rejects.toThrow('not found');
    expect(await pool.run(({ session }) => token.op(session))).toBe(2);
  });

  test('close waits for in-flight operations, rejects queued ones, closes sessions; later calls fail', async () => {
    const token = new FakeToken();
    const pool = new SessionPool(token, 1, classify);
    const inFlight = pool.run(({ session }) => token.op(session, 20));
    await new Promise((r) => setImmediate(r));
    const queued = pool.run(({ session }) => token.op(session)).catch((e: unknown) => e);
    await pool.close();
    expect(await inFlight).toBe(1);
    expect(await queued).toMatchObject({ code: 'key-backend', message: expect.stringMatching(/closed/) });
    expect(token.sessions.every((s) => s.closed)).toBe(true);
    await expect(pool.run(({ session }) => token.op(session))).rejects.toMatchObject({ code: 'key-backend' });
  });

  test('a pool size below 1 is a config error', () => {
    expect(() => new SessionPool(new FakeToken(), 0, classify)).toThrow(expect.objectContaining({ code: 'config' }));
  });
});
