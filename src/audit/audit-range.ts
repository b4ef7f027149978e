import { DeviceCaError } from '../errors/device-ca-error';
import { AuditStore, MAX_PAGE_LIMIT } from '../store/store';
import { AuditHead, GENESIS, auditLinkProblem } from './audit-chain';

type Lister = Pick<AuditStore, 'listAudit'>;

/** AuditRangeVerdict: one chunk of a chain verification, and where the next chunk starts. */
export interface AuditRangeVerdict {
  ok: boolean;
  /** checked: records verified in this chunk */
  checked: number;
  /** position: the last record that verified (seq 0 and GENESIS before the first): pass it back for the next chunk */
  position: AuditHead;
  /** done: the chain ends at `position` (or it broke) */
  done: boolean;
  firstBad?: { seq: number; problem: string };
}

/**
 * verifyAuditRange checks up to `max` records that follow `from` (the last record a previous chunk verified,
 * with its hash: the running hash; null to start at the first record) with the same link rule as
 * verifyAuditChain (auditLinkProblem). Calling it again with the returned `position` until `done` verifies
 * the whole chain exactly as one verifyAuditChain call would, in chunks a page can show progress between.
 */
export async function verifyAuditRange(store: Lister, from: AuditHead | null, max: number): Promise<AuditRangeVerdict> {
  let prev: AuditHead = from ?? { seq: 0, hash: GENESIS };
  if (from && from.seq > 0) {
    // the position must be a record of this chain with that hash: a record edited between two chunks, or a
    // position made up by the caller, is not silently skipped over
    const at = await recordAt(store, from.seq);
    if (!at) throw new DeviceCaError('bad-request', `after: the audit log has no record ${from.seq}`);
    if (at.hash !== from.hash)
      return {
        ok: false,
        checked: 0,
        position: { seq: from.seq - 1, hash: at.prevHash },
        done: true,
        firstBad: { seq: from.seq, problem: 'hash differs from the position given (the record changed since it was verified)' },
      };
  }
  let checked = 0;
  let after = String(prev.seq);
  while (checked < max) {
    const page = await store.listAudit({ after, limit: Math.min(MAX_PAGE_LIMIT, max - checked) });
    for (const r of page.items) {
      const problem = auditLinkProblem(prev.seq === 0 ? null : prev, r);
      if (problem) return { ok: false, checked, position: prev, done: true, firstBad: { seq: r.seq, problem } };
      prev = { seq: r.seq, hash: r.hash };
      checked++;
    }
    if (page.next === null) return { ok: true, checked, position: prev, done: true };
    after = page.next;
  }
  // a full chunk: done only if no record follows
  const more = await store.listAudit({ after: String(prev.seq), limit: 1 });
  return { ok: true, checked, position: prev, done: more.items.length === 0 };
}

/** recordAt: the record with this seq, or null past the end (one indexed read in either store). */
async function recordAt(store: Lister, seq: number) {
  const page = await store.listAudit({ after: String(seq - 1), limit: 1 });
  const r = page.items[0];
  return r && r.seq === seq ? r : null;
}

/**
 * auditLength: the number of records in the chain (the last seq), found by exponential then binary search
 * over seq with one-record reads: about 2·log2(n) indexed reads, so 40 at a million records, no scan.
 */
export async function auditLength(store: Lister): Promise<number> {
  if (!(await recordAt(store, 1))) return 0;
  let lo = 1;
  let hi = 2;
  while (await recordAt(store, hi)) {
    lo = hi;
    hi *= 2;
  }
  // lo exists, hi does not
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (await recordAt(store, mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

/**
 * firstSeqAtOrAfter: the first seq whose record is at or after `t` (length + 1 when none is), by binary
 * search over seq. Records are appended with the writer's clock and the chain's order is the order of
 * appending, so `at` does not go back along the chain except by the clock difference between writers
 * (milliseconds between the service's processes): a time bound is exact to that.
 */
export async function firstSeqAtOrAfter(store: Lister, t: Date, length: number): Promise<number> {
  let lo = 1;
  let hi = length + 1;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    const r = await recordAt(store, mid);
    if (r && r.at.getTime() >= t.getTime()) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}
