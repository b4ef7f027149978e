import { Gauge, Registry } from 'prom-client';
import { CaStateStore } from '../store/store';
import { RootCrlInfo, readRootCrl, rootCrlWarning } from './root-crl';

/** ROOT_CRL_CHECK_INTERVAL_MS: how often a worker re-reads the root CRL from the store (a new one is rare). */
export const ROOT_CRL_CHECK_INTERVAL_MS = 60_000;

/**
 * RootCrlWatch serves the root CRL from the store and watches its nextUpdate: the service cannot renew it
 * (the root key is not opened by `serve`, and often lives offline), so an operator must, and is told 30
 * days ahead by a log warning, the metric device_ca_root_crl_next_update_timestamp_seconds and a
 * /healthz?detail line.
 */
export class RootCrlWatch {
  private info: RootCrlInfo | null = null;
  private readAt = 0;
  private problem: string | null = null;
  private timer?: NodeJS.Timeout;
  private readonly gauge: Gauge;

  constructor(
    readonly name: string,
    private readonly rootDer: Buffer,
    private readonly store: Pick<CaStateStore, 'getCaState'>,
    registry: Registry,
    private readonly onWarning: (message: string) => void,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.gauge = new Gauge({
      name: 'device_ca_root_crl_next_update_timestamp_seconds',
      help: 'nextUpdate of the root CRL in the store (Unix time; 0 when there is none); renew it with `device-ca ca root-crl` before then',
      registers: [registry],
    });
  }

  /** current returns the root CRL in the store, re-read at most once a second. */
  async current(): Promise<RootCrlInfo | null> {
    if (Date.now() - this.readAt > 1000) {
      this.info = await readRootCrl(this.store as CaStateStore, this.rootDer);
      this.readAt = Date.now();
    }
    return this.info;
  }

  /** check re-reads the root CRL, updates the metric and, when it is missing or lapses within 30 days, warns (once per distinct problem). */
  async check(): Promise<string | null> {
    this.readAt = 0;
    const info = await this.current();
    this.gauge.set(info ? Math.floor(info.nextUpdate.getTime() / 1000) : 0);
    const problem = rootCrlWarning(info, this.name, this.now());
    // logged when it appears or changes, not every minute
    if (problem && problem !== this.problem) this.onWarning(problem);
    this.problem = problem;
    return problem;
  }

  /** warning: the last check's problem, for /healthz?detail. */
  get warning(): string | null {
    return this.problem;
  }

  start(onError: (e: unknown) => void): void {
    const tick = () => void this.check().catch(onError);
    tick();
    this.timer = setInterval(tick, ROOT_CRL_CHECK_INTERVAL_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
