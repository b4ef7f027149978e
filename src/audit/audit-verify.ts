import { AuditStore } from '../store/store';
import { GENESIS, auditHash } from './audit-chain';

export interface AuditVerdict {
  ok: boolean;
  records: number;
  /** firstBad: the sequence number where the chain breaks, and why */
  firstBad?: { seq: number; problem: string };
  lastHash: string;
}

/**
 * verifyAuditChain walks the whole audit log in order and checks that sequence numbers run without gaps
 * from 1, every prevHash is the previous record's hash and every hash matches the record's content:
 * an edited, removed or reordered record breaks it. (Cutting records off the end leaves a valid, shorter
 * chain: compare `lastHash` with a copy kept elsewhere to detect that.)
 */
export async function verifyAuditChain(store: AuditStore, pageSize = 5000): Promise<AuditVerdict> {
  let prev = GENESIS;
  let expected = 1;
  let after: string | undefined;
  for (;;) {
    const page = await store.listAudit({ after, limit: pageSize });
    for (const r of page) {
      const bad = (problem: string): AuditVerdict => ({ ok: false, records: expected - 1, firstBad: { seq: r.seq, problem }, lastHash: prev });
      if (r.seq !== expected) return bad(`expected record ${expected}, found ${r.seq} (a record was removed or reordered)`);
      if (r.prevHash !== prev) return bad('prevHash does not match the previous record');
      if (auditHash(prev, r) !== r.hash) return bad('content does not match its hash (the record was edited)');
      prev = r.hash;
      expected++;
    }
    if (page.length < pageSize) return { ok: true, records: expected - 1, lastHash: prev };
    after = String(page[page.length - 1].seq);
  }
}
