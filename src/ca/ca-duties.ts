import { LeaseStore } from '../store/store';

/** CA_DUTIES_LEASE names the lease whose holder publishes CRLs and renews the service certificates. */
export const CA_DUTIES_LEASE = 'ca-duties';

export interface CaDutiesOptions {
  store: LeaseStore;
  /** holder names this process uniquely among every worker and node sharing the store */
  holder: string;
  /** how long the lease lasts without renewal: a holder that dies loses it after this */
  leaseTtlMs: number;
  /** how often the lease is renewed (holder) or tried (others), and the service certificates checked */
  intervalMs: number;
  /** onAcquire starts the holder-only timers (CRL publication) */
  onAcquire(): void;
  /** onLose stops them: the lease expired (a stalled process) or this process stops */
  onLose(): void;
  /** renew runs on the holder each interval: issue what is due and save it to the store */
  renew(fence: number): Promise<void>;
  /** reload runs on every process each interval: pick up what the holder saved */
  reload(): Promise<void>;
  onError(what: 'renewal' | 'reload' | 'lease', e: unknown): void;
  now?: () => Date;
}

/**
 * CaDuties runs the CA's periodic work in exactly one process among all workers and nodes sharing a
 * store: CRL publication and the renewal of the OCSP responder and HTTPS certificates happen only
 * while this process holds the CA_DUTIES_LEASE. Every process reloads the service certificates from
 * the store, so a renewal by the holder reaches all of them within one interval. The lease (not a
 * process chosen at start-up) decides, so when the holder dies another takes over once it expires.
 */
export class CaDuties {
  private timer?: NodeJS.Timeout;
  private stopped = true;
  private held: number | null = null;
  private running?: Promise<void>;

  constructor(private readonly o: CaDutiesOptions) {}

  /** holding: the fence of the lease this process holds, or null. */
  get holding(): number | null {
    return this.held;
  }

  /** start runs the first round now and then one every intervalMs. */
  start(): void {
    this.stopped = false;
    const loop = async () => {
      await this.tick();
      if (this.stopped) return;
      this.timer = setTimeout(loop, this.o.intervalMs);
      this.timer.unref();
    };
    void loop();
  }

  /** tick is one round: take or renew the lease, renew certificates if holding it, reload. */
  tick(): Promise<void> {
    this.running ??= this.round().finally(() => (this.running = undefined));
    return this.running;
  }

  private async round(): Promise<void> {
    const now = (this.o.now ?? (() => new Date()))();
    let fence: number | null = null;
    try {
      fence = (await this.o.store.acquireLease(CA_DUTIES_LEASE, this.o.holder, this.o.leaseTtlMs, now))?.fence ?? null;
    } catch (e) {
      this.o.onError('lease', e); // a store outage: act as if the lease was lost
    }
    if (fence !== null && this.held === null) this.o.onAcquire();
    if (fence === null && this.held !== null) this.o.onLose();
    this.held = fence;
    if (fence !== null) {
      try {
        await this.o.renew(fence);
      } catch (e) {
        this.o.onError('renewal', e);
      }
    }
    try {
      await this.o.reload();
    } catch (e) {
      this.o.onError('reload', e);
    }
  }

  /** stop ends the rounds and lets the lease go at once, so another process takes over without waiting for it to expire. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
    if (this.held !== null) {
      this.held = null;
      this.o.onLose();
      await this.o.store.releaseLease(CA_DUTIES_LEASE, this.o.holder).catch((e: unknown) => this.o.onError('lease', e));
    }
  }
}

/** CA_DUTIES_INTERVAL_MS: rounds every 10 s; a renewal reaches every worker within this. */
export const CA_DUTIES_INTERVAL_MS = 10_000;
/** CA_DUTIES_LEASE_TTL_MS: three missed rounds and another process takes over. */
export const CA_DUTIES_LEASE_TTL_MS = 30_000;
