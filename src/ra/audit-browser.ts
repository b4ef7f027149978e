import { GENESIS } from '../audit/audit-chain';
import { AuditRangeVerdict, auditLength, firstSeqAtOrAfter, verifyAuditRange } from '../audit/audit-range';
import { DeviceCaError } from '../errors/device-ca-error';
import { AuditRecord, AuditStore, MAX_PAGE_LIMIT, Page } from '../store/store';
import { Scope } from './device-lifecycle';

/** AuditQuery: the filters of the audit listing; `type` matches an event type or a prefix of it ("device." for every device event). */
export interface AuditQuery {
  device?: string;
  type?: string;
  /** from: records at or after; to: records before (exclusive) */
  from?: Date;
  to?: Date;
  after?: string;
  limit: number;
}

/**
 * SCAN_BUDGET: the most records one listing call reads to fill a page when a filter (type) is not on an
 * index. A page may then hold fewer than `limit` items with `next` set: the listing's rule that a short
 * page is not the end, only a null `next` is. It bounds the cost of a call whatever the log's size.
 */
export const SCAN_BUDGET = 5000;

/** VERIFY_CHUNK_MAX: the most records one verification call checks (a few milliseconds of SHA-256). */
export const VERIFY_CHUNK_MAX = 10_000;

/**
 * AuditBrowser decides what the audit listing and the chunked chain verification answer. Both are the
 * operator's: the log spans every owner's devices, tokens and the CA's own events, so an owner-scoped
 * caller is refused (403) and reads its devices' history on the device (DeviceLifecycle.deviceAudit).
 * The device filter is the store's subject index; a time range becomes a seq range by binary search
 * (audit-range.ts); the type filter reads at most SCAN_BUDGET records per call. What "valid" means is
 * audit/audit-chain.ts auditLinkProblem, through verifyAuditRange.
 */
export class AuditBrowser {
  constructor(private readonly store: Pick<AuditStore, 'listAudit'>) {}

  private requireOperator(scope: Scope): void {
    if (scope.kind !== 'operator') throw new DeviceCaError('forbidden', 'the audit log is for operator scope only (an owner reads its devices\u2019 history on the device)');
  }

  async list(scope: Scope, q: AuditQuery): Promise<Page<AuditRecord>> {
    this.requireOperator(scope);
    if (q.from && q.to && q.to.getTime() <= q.from.getTime()) throw new DeviceCaError('bad-request', 'to: must be after from');
    let after = cursor(q.after);
    let last = Infinity;
    if (q.from || q.to) {
      const length = await auditLength(this.store);
      if (q.from) after = Math.max(after, (await firstSeqAtOrAfter(this.store, q.from, length)) - 1);
      if (q.to) last = (await firstSeqAtOrAfter(this.store, q.to, length)) - 1;
    }
    const items: AuditRecord[] = [];
    let read = 0;
    while (after < last) {
      const page = await this.store.listAudit({ subject: q.device, after: String(after), limit: Math.min(MAX_PAGE_LIMIT, SCAN_BUDGET - read) });
      for (const r of page.items) {
        if (r.seq > last) return { items, next: null };
        read++;
        after = r.seq;
        if (q.type === undefined || r.type.startsWith(q.type)) items.push(r);
        if (items.length === q.limit) return { items, next: r.seq < last ? String(r.seq) : null };
      }
      if (page.next === null) return { items, next: null };
      if (read >= SCAN_BUDGET) return { items, next: String(after) };
    }
    return { items, next: null };
  }

  /**
   * verify checks the chunk of the chain after `after` (a seq; 0 for the start) whose record has the hash
   * `hash` (the running hash the previous chunk returned), and says how long the chain is now, so a page
   * can draw progress. A chain verified chunk by chunk is verified exactly as `device-ca audit verify` does.
   */
  async verify(scope: Scope, o: { after: number; hash?: string; limit: number }): Promise<AuditRangeVerdict & { total: number }> {
    this.requireOperator(scope);
    if (o.after > 0 && o.hash === undefined) throw new DeviceCaError('bad-request', 'hash: is required after the first chunk (the position the previous chunk returned)');
    const from = o.after === 0 ? null : { seq: o.after, hash: o.hash ?? GENESIS };
    const verdict = await verifyAuditRange(this.store, from, Math.min(o.limit, VERIFY_CHUNK_MAX));
    return { ...verdict, total: await auditLength(this.store) };
  }
}

function cursor(after: string | undefined): number {
  if (after === undefined) return 0;
  if (!/^\d{1,15}$/.test(after)) throw new DeviceCaError('bad-request', 'after: not a cursor of this list');
  return Number(after);
}
