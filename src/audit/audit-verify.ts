import { everyItem } from '../store/paging';
import { AuditStore, MAX_PAGE_LIMIT } from '../store/store';
import { AuditHead, GENESIS, auditLinkProblem } from './audit-chain';

export interface AuditVerdict {
  ok: boolean;
  records: number;
  /** firstBad: the sequence number where the chain breaks, and why */
  firstBad?: { seq: number; problem: string };
  lastHash: string;
}

/**
 * verifyAuditChain walks the whole audit log in order, following the store's `next` cursor until it is
 * null, and checks that sequence numbers run without gaps from 1, every prevHash is the previous record's
 * hash and every hash matches the record's content: an edited, removed or reordered record breaks it.
 * (Cutting records off the end leaves a valid, shorter chain: compare `lastHash` with a copy kept
 * elsewhere to detect that.)
 */
export async function verifyAuditChain(store: Pick<AuditStore, 'listAudit'>, pageSize = MAX_PAGE_LIMIT): Promise<AuditVerdict> {
  let prev: AuditHead | null = null;
  for await (const r of everyItem((after) => store.listAudit({ after, limit: pageSize }))) {
    const problem = auditLinkProblem(prev, r);
    if (problem) return { ok: false, records: prev ? prev.seq : 0, firstBad: { seq: r.seq, problem }, lastHash: prev ? prev.hash : GENESIS };
    prev = r;
  }
  return { ok: true, records: prev ? prev.seq : 0, lastHash: prev ? prev.hash : GENESIS };
}
