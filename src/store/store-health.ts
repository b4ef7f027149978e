import { DeviceCaError, isDeviceCaError } from '../errors/device-ca-error';
import { IntegrityStore } from './store';

/** STORE_HEALTH_TTL_MS: a probe result is reused this long, so a /healthz poller costs at most one write a second. */
export const STORE_HEALTH_TTL_MS = 1000;

/**
 * StoreHealth answers /healthz from a real read and write of the store (IntegrityStore.probe), run at
 * most once per ttlMs whatever the number of callers: a store that has filled its disk or lost pages
 * answers every write with an error, and a health check that only read would keep such a node in a load
 * balancer's pool.
 */
export class StoreHealth {
  private last?: { at: number; error: DeviceCaError | null };
  private running?: Promise<DeviceCaError | null>;

  constructor(
    private readonly store: Pick<IntegrityStore, 'probe'>,
    private readonly ttlMs = STORE_HEALTH_TTL_MS,
    private readonly now: () => number = Date.now,
  ) {}

  /** check resolves when the store can read and write; otherwise rejects with 'store-unavailable' and a short reason. */
  async check(): Promise<void> {
    const t = this.now();
    let error: DeviceCaError | null;
    if (this.last && t - this.last.at < this.ttlMs) error = this.last.error;
    else {
      this.running ??= this.store
        .probe(new Date(t))
        .then(
          () => null,
          (e: unknown) => (isDeviceCaError(e) ? e : new DeviceCaError('store-unavailable', 'store probe failed', { detail: (e as Error)?.message, retryAfterSeconds: 30, cause: e })),
        )
        .then((err) => {
          this.last = { at: t, error: err };
          this.running = undefined;
          return err;
        });
      error = await this.running;
    }
    if (error) throw error;
  }
}
