import { DeviceCaError } from '../../errors/device-ca-error';

/**
 * SessionPool hands PKCS#11 sessions out one operation at a time: a session runs one cryptographic
 * operation at a time (CKR_OPERATION_ACTIVE otherwise), so hundreds of concurrent sign() calls queue
 * here in FIFO order instead of failing at the token.
 *
 * It also owns recovery. When an operation fails with an error the `classify.recoverable` test accepts
 * (session closed, login lost, stale handle), the pool waits for the other in-flight operations of that
 * generation to finish, closes every session, reconnects (open + login) once for all callers, and the
 * failed operation is retried once. A failure `classify.fatal` accepts during connect (a wrong PIN)
 * poisons the pool: the token is never asked again, since every wrong PIN counts toward its lockout.
 *
 * It is generic over the session type so its concurrency rules are unit-tested without a token.
 */
export interface SessionSource<S> {
  /** connect opens `size` sessions and logs in. */
  connect(size: number): Promise<S[]> | S[];
  /** disconnect closes sessions, best effort (they may already be gone). */
  disconnect(sessions: S[]): void;
}

export interface Lease<S> {
  readonly session: S;
  /** generation counts reconnects; handles cached under an older generation are stale. */
  readonly generation: number;
}

export interface SessionPoolClassifier {
  recoverable(e: unknown): boolean;
  fatal(e: unknown): boolean;
}

type State = 'disconnected' | 'connecting' | 'connected' | 'closed';

interface Waiter<S> {
  resolve(lease: Lease<S> | undefined): void;
  reject(e: unknown): void;
}

export class SessionPool<S> {
  private state: State = 'disconnected';
  private all: S[] = [];
  private idle: S[] = [];
  private busy = 0;
  private waiters: Waiter<S>[] = [];
  private connecting?: Promise<void>;
  private drained?: () => void;
  private fatalError?: unknown;
  private gen = 0;
  /** reconnects counts recoveries after the first connect; exported for metrics and tests. */
  reconnects = 0;

  constructor(
    private readonly source: SessionSource<S>,
    readonly size: number,
    private readonly classify: SessionPoolClassifier,
  ) {
    if (!Number.isInteger(size) || size < 1) throw new DeviceCaError('config', `session pool size must be a positive integer, got ${size}`);
  }

  get generation(): number {
    return this.gen;
  }

  /** inFlight is the number of leased sessions; queued is the number of callers waiting for one. */
  get inFlight(): number {
    return this.busy;
  }
  get queued(): number {
    return this.waiters.length;
  }

  /** connected: sessions are open and no reconnect is under way. */
  get connected(): boolean {
    return this.state === 'connected';
  }

  /**
   * recover is run()'s recovery for an operation that ran outside the pool (on a token thread) with
   * handles of generation `seenGen` and failed recoverably: the sessions are replaced once, however many
   * callers report the same generation.
   */
  recover(seenGen: number): Promise<void> {
    return this.reconnect(seenGen);
  }

  /** open connects now, so a bad PIN or missing token fails at start-up rather than on the first signature. */
  async open(): Promise<void> {
    await this.ensureConnected();
  }

  /** run leases a session for one operation; on a recoverable failure it reconnects and retries once. */
  async run<T>(op: (lease: Lease<S>) => Promise<T>): Promise<T> {
    let retried = false;
    for (;;) {
      const lease = await this.acquire();
      let failure: unknown;
      try {
        return await op(lease);
      } catch (e) {
        failure = e;
      } finally {
        this.release(lease);
      }
      if (retried || !this.classify.recoverable(failure)) throw failure;
      retried = true;
      await this.reconnect(lease.generation);
    }
  }

  async close(): Promise<void> {
    if (this.state === 'closed') return;
    if (this.connecting) await this.connecting.catch(() => undefined);
    this.state = 'closed';
    const closed = new DeviceCaError('key-backend', 'PKCS#11 key backend is closed');
    for (const w of this.waiters.splice(0)) w.reject(closed);
    await this.drain();
    const sessions = this.all;
    this.all = [];
    this.idle = [];
    if (sessions.length) this.source.disconnect(sessions);
  }

  private async ensureConnected(): Promise<void> {
    if (this.fatalError) throw this.fatalError;
    if (this.state === 'closed') throw new DeviceCaError('key-backend', 'PKCS#11 key backend is closed');
    if (this.state === 'disconnected') await this.reconnect(this.gen);
    else if (this.connecting) await this.connecting;
  }

  private async acquire(): Promise<Lease<S>> {
    for (;;) {
      await this.ensureConnected();
      // state may have moved on while ensureConnected's promise settled
      if (this.fatalError) throw this.fatalError;
      if (this.state === 'closed') throw new DeviceCaError('key-backend', 'PKCS#11 key backend is closed');
      if (this.state === 'disconnected') continue;
      if (this.state === 'connected' && this.idle.length > 0) {
        this.busy++;
        return { session: this.idle.pop()!, generation: this.gen };
      }
      // undefined: woken without a session (a reconnect failed or finished): loop and look again
      const lease = await new Promise<Lease<S> | undefined>((resolve, reject) => this.waiters.push({ resolve, reject }));
      if (lease) return lease;
    }
  }

  private release(lease: Lease<S>): void {
    this.busy--;
    if (this.state !== 'connected' || lease.generation !== this.gen) {
      // a reconnect is draining, or the session belongs to a closed generation: never hand it out again
      if (this.busy === 0) this.drained?.();
      return;
    }
    const next = this.waiters.shift();
    if (next) {
      this.busy++;
      next.resolve({ session: lease.session, generation: this.gen });
    } else {
      this.idle.push(lease.session);
    }
  }

  private drain(): Promise<void> {
    if (this.busy === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.drained = () => {
        this.drained = undefined;
        resolve();
      };
    });
  }

  /** reconnect replaces every session once, however many callers saw generation `seenGen` fail. */
  private reconnect(seenGen: number): Promise<void> {
    if (this.connecting) return this.connecting;
    if (this.state === 'connected' && seenGen !== this.gen) return Promise.resolve(); // someone already did
    if (this.fatalError) return Promise.reject(this.fatalError);
    if (this.state === 'closed') return Promise.reject(new DeviceCaError('key-backend', 'PKCS#11 key backend is closed'));
    this.connecting = this.doReconnect().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async doReconnect(): Promise<void> {
    const wasConnected = this.all.length > 0;
    this.state = 'connecting';
    const old = this.all;
    this.all = [];
    this.idle = [];
    // Let in-flight operations on the old sessions finish before closing them: not every module
    // survives C_CloseSession under a C_Sign running on another thread.
    await this.drain();
    if (old.length) this.source.disconnect(old);
    this.gen++;
    let sessions: S[];
    try {
      sessions = await this.source.connect(this.size);
    } catch (e) {
      if (this.classify.fatal(e)) this.fatalError = e;
      this.state = 'disconnected';
      for (const w of this.waiters.splice(0)) w.reject(e);
      throw e;
    }
    if (wasConnected) this.reconnects++;
    this.all = sessions;
    this.idle = [...sessions];
    this.state = 'connected';
    while (this.waiters.length && this.idle.length) {
      this.busy++;
      this.waiters.shift()!.resolve({ session: this.idle.pop()!, generation: this.gen });
    }
  }
}
