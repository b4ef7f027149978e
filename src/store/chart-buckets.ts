import { DeviceCaError } from '../errors/device-ca-error';

/** MAX_CHART_BUCKETS: the most buckets Store.countIssuedPerHour / countExpiringPerDay answer (a week of hours is 168). */
export const MAX_CHART_BUCKETS = 400;
export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;

/** chartBuckets: a bucket count checked against MAX_CHART_BUCKETS ('bad-request' below 1 or beyond it), so no store walks an unbounded range. */
export function chartBuckets(n: number): number {
  if (!Number.isInteger(n) || n < 1 || n > MAX_CHART_BUCKETS) throw new DeviceCaError('bad-request', `chart buckets: 1 to ${MAX_CHART_BUCKETS}`);
  return n;
}
