import * as crypto from 'node:crypto';
import { DeviceCaError, isDeviceCaError } from '../errors/device-ca-error';
import { DAY_MS, HOUR_MS } from '../store/chart-buckets';
import { DeviceState, MAX_PAGE_LIMIT, Store } from '../store/store';
import { DeviceLifecycle, Scope } from './device-lifecycle';
import { RegistrationAuthority } from './registration-authority';

/** ConsoleOverviewReply: what the console's first page shows. */
export interface ConsoleOverviewReply {
  scope: string;
  devices: { total: number; byState: Record<DeviceState, number>; byOwner: { owner: string | null; count: number }[] };
  /** pendingApprovals: requests waiting for an operator; null for an owner scope (the queue is the operator's) */
  pendingApprovals: number | null;
  crlShards: { shard: number; number: string | null; thisUpdate: Date | null; nextUpdate: Date | null; entries: number | null }[];
  ocspResponder: { notAfter: Date; subject: string } | null;
  store: { healthy: boolean; problem: string | null };
  /** keyBackend: whether the issuing CA's signing key can be used now (KeyHealth: probed, never signed with) */
  keyBackend: { healthy: boolean; problem: string | null };
}

/**
 * ConsoleChartReply: one overview chart, `counts[i]` for the bucket that starts at start + i * bucketSeconds
 * (UTC hours or days). `from` is where counting begins when it is inside the first bucket (expiring: now).
 */
export interface ConsoleChartReply {
  start: Date;
  from: Date;
  bucketSeconds: number;
  counts: number[];
}

/** CHART_HOURS: "enrollments per hour over the last 7 days", the current hour last. */
export const CHART_HOURS = 7 * 24;
/** CHART_DAYS: "certificates expiring in the next 90 days", today first. */
export const CHART_DAYS = 90;

export interface ConsoleOverviewOptions {
  store: Store;
  lifecycle: DeviceLifecycle;
  ra: RegistrationAuthority;
  issuer: string;
  crlShards: number;
  /** ocspResponderCertificate: the responder certificate this process serves now (renewals swap it) */
  ocspResponderCertificate: () => Buffer | null;
  /** storeHealth: resolves when the store reads and writes (StoreHealth.check) */
  storeHealth: () => Promise<void>;
  /** keyHealth: resolves when the CA signing key is usable (KeyHealth.check: cached, bounded by a timeout) */
  keyHealth: () => Promise<void>;
  /** now: the clock the charts' ranges are taken from (tests set it) */
  now?: () => Date;
}

/** OWNERS_SHOWN: the owners with most devices listed on the overview; the rest are summed as "others" by the page. */
const OWNERS_SHOWN = 20;

/**
 * ConsoleOverview assembles the console's overview for a scope: an owner scope counts its own devices only
 * (through DeviceLifecycle.listDevices, the same scope rule as the admin API) and does not see the approval
 * queue. Device counts come from the counts the store keeps beside the devices (Store.countDevices), so
 * the overview costs the same for ten devices and a million.
 */
export class ConsoleOverview {
  constructor(private readonly o: ConsoleOverviewOptions) {}

  /**
   * enrollmentsPerHour: device certificates recorded in each UTC hour of the last 7 days (Store.countIssuedPerHour,
   * counters kept at issuance). Operators only: the store keeps fleet-wide figures, and an owner's share
   * would have to be counted under the owner the device had at each issuance; an owner is refused
   * (403) rather than shown the fleet's, as the approval queue is the operator's.
   */
  async enrollmentsPerHour(scope: Scope): Promise<ConsoleChartReply> {
    this.operatorOnly(scope);
    const now = this.now();
    const start = new Date((Math.floor(now.getTime() / HOUR_MS) - (CHART_HOURS - 1)) * HOUR_MS);
    return { start, from: start, bucketSeconds: HOUR_MS / 1000, counts: await this.o.store.countIssuedPerHour({ from: start, hours: CHART_HOURS }) };
  }

  /**
   * expiringPerDay: valid device certificates by the UTC day their notAfter falls on, today (from now on)
   * and the next 89 days (Store.countExpiringPerDay, an index range over those days only). Operators only, as
   * enrollmentsPerHour.
   */
  async expiringPerDay(scope: Scope): Promise<ConsoleChartReply> {
    this.operatorOnly(scope);
    const now = this.now();
    const start = new Date(Math.floor(now.getTime() / DAY_MS) * DAY_MS);
    return { start, from: now, bucketSeconds: DAY_MS / 1000, counts: await this.o.store.countExpiringPerDay({ from: now, days: CHART_DAYS }) };
  }

  private now(): Date {
    return this.o.now ? this.o.now() : new Date();
  }

  private operatorOnly(scope: Scope): void {
    if (scope.kind !== 'operator') throw new DeviceCaError('forbidden', 'the certificate charts are for operators: they count the whole fleet');
  }

  async overview(scope: Scope): Promise<ConsoleOverviewReply> {
    const counts = await this.o.lifecycle.countDevices(scope, OWNERS_SHOWN);
    let pendingApprovals: number | null = null;
    if (scope.kind === 'operator') {
      let after: string | undefined;
      pendingApprovals = 0;
      do {
        const page = await this.o.ra.listRequests({ status: 'pending', after, limit: MAX_PAGE_LIMIT });
        pendingApprovals += page.items.length;
        after = page.next ?? undefined;
      } while (after);
    }
    const crlShards = await Promise.all(
      Array.from({ length: this.o.crlShards }, async (_x, shard) => {
        const c = await this.o.store.crlInfo(this.o.issuer, shard);
        return { shard, number: c ? c.number.toString() : null, thisUpdate: c?.thisUpdate ?? null, nextUpdate: c?.nextUpdate ?? null, entries: c?.entries ?? null };
      }),
    );
    const der = this.o.ocspResponderCertificate();
    const ocsp = der ? new crypto.X509Certificate(der) : null;
    const [problem, keyProblem] = await Promise.all([problemOf(this.o.storeHealth(), 'store probe failed'), problemOf(this.o.keyHealth(), 'key backend probe failed')]);
    return {
      scope: scope.kind === 'operator' ? 'operator' : `owner:${scope.owner}`,
      devices: { total: counts.total, byState: counts.byState, byOwner: counts.topOwners },
      pendingApprovals,
      crlShards,
      ocspResponder: ocsp ? { notAfter: new Date(ocsp.validTo), subject: ocsp.subject } : null,
      store: { healthy: problem === null, problem },
      keyBackend: { healthy: keyProblem === null, problem: keyProblem },
    };
  }
}

/** problemOf: null when a health check resolves, else its short reason (a DeviceCaError's message, never its detail). */
function problemOf(check: Promise<void>, fallback: string): Promise<string | null> {
  return check.then(
    () => null,
    (e: unknown) => (isDeviceCaError(e) ? e.message : fallback),
  );
}
