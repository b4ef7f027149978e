import { Gauge, Registry } from 'prom-client';
import { CaStateStore } from '../store/store';
import { RootCrlInfo, readRootCrl, rootCrlWarning } from './root-crl';

/** ROOT_CRL_CHECK_INTERVAL_MS: how often a worker re-reads the root CRL from the store (a new one is rare). */
export const ROOT_CRL_CHECK_INTERVAL_MS = 60_000;

/** WatchedRoot: a published root: its name (URL /crl/<name>.crl), certificate and CRL record in the store. */
export interface WatchedRoot {
  name: string;
  der: Buffer;
  record: string;
}

/**
 * RootCrlWatch serves the root CRLs from the store and watches their nextUpdate: the service cannot renew
 * them (the root key is not opened by `serve`, and often lives offline), so an operator must, and is told
 * 30 days ahead by a log warning, the metric device_ca_root_crl_next_update_timestamp_seconds (the
 * soonest nextUpdate of all published roots) and a /healthz?detail line. After `ca rollover-root` two
 * roots publish a CRL each until the old one expires; roots() is read at each check, so a root added by
 * a rollover while serving is watched and served from the next minute on.
 */
export class RootCrlWatch {
  private readonly infos = new Map<string, { info: RootCrlInfo | null; readAt: number }>();
  private problems: string[] = [];
  private timer?: NodeJS.Timeout;
  private readonly gauge: Gauge;
  private readonly roots: () => WatchedRoot[];

  constructor(
    roots: WatchedRoot[] | (() => WatchedRoot[]),
    private readonly store: Pick<CaStateStore, 'getCaState'>,
    registry: Registry,
    private readonly onWarning: (message: string) => void,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.roots = Array.isArray(roots) ? () => roots : roots;
    this.gauge = new Gauge({
      name: 'device_ca_root_crl_next_update_timestamp_seconds',
      help: 'the soonest nextUpdate of the root CRLs in the store (Unix time; 0 when one is missing); renew it with `device-ca ca root-crl [--root <name>]` before then',
      registers: [registry],
    });
  }

  /** names: the roots whose CRLs are served (/crl/<name>.crl). */
  names(): string[] {
    return this.roots().map((r) => r.name);
  }

  /** current returns the named root's CRL in the store (default: the first root), re-read at most once a second; null when none. */
  async current(name?: string): Promise<RootCrlInfo | null> {
    const root = name === undefined ? this.roots()[0] : this.roots().find((r) => r.name === name);
    if (!root) return null;
    const known = this.infos.get(root.name);
    if (known && Date.now() - known.readAt <= 1000) return known.info;
    const info = await readRootCrl(this.store as CaStateStore, root.der, root.record);
    this.infos.set(root.name, { info, readAt: Date.now() });
    return info;
  }

  /** check re-reads every root CRL, updates the metric and, when one is missing or lapses within 30 days, warns (once per distinct problem). */
  async check(): Promise<string | null> {
    this.infos.clear();
    const problems: string[] = [];
    let soonest: number | null = null;
    for (const r of this.roots()) {
      const info = await this.current(r.name);
      const at = info ? Math.floor(info.nextUpdate.getTime() / 1000) : 0;
      soonest = soonest === null ? at : Math.min(soonest, at);
      const problem = rootCrlWarning(info, r.name, this.now());
      if (problem) problems.push(problem);
    }
    this.gauge.set(soonest ?? 0);
    // logged when it appears or changes, not every minute
    for (const p of problems) if (!this.problems.includes(p)) this.onWarning(p);
    this.problems = problems;
    return this.warning;
  }

  /** warning: the last check's problems, for /healthz?detail; null when none. */
  get warning(): string | null {
    return this.problems.length ? this.problems.join('; ') : null;
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
