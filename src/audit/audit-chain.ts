import * as crypto from 'node:crypto';
import { AuditInput, AuditRecord } from '../store/store';

/** GENESIS is the prevHash of the first audit record. */
export const GENESIS = '0'.repeat(64);

/** AuditHead is the last record of a chain: all a store needs to append the next one. */
export type AuditHead = Pick<AuditRecord, 'seq' | 'hash'>;

/**
 * auditHash chains a record to its predecessor: SHA-256 over the previous hash and a canonical JSON
 * of the record's content. Editing, removing or reordering any record breaks every later hash.
 */
export function auditHash(prevHash: string, r: Pick<AuditRecord, 'seq' | 'at' | 'type' | 'actor' | 'subject' | 'data'>): string {
  const body = JSON.stringify([r.seq, r.at.toISOString(), r.type, r.actor, r.subject, canonical(r.data)]);
  return crypto.createHash('sha256').update(prevHash).update(body).digest('hex');
}

/**
 * nextAuditRecord builds the record that follows `head` (null for an empty chain): seq one more, prevHash
 * the head's hash, and the hash over the data exactly as a store keeps it. Every store appends through
 * this, inside the transaction that read the head, so the chain's shape is defined once.
 */
export function nextAuditRecord(head: AuditHead | null, e: AuditInput, at: Date): AuditRecord {
  const seq = head ? head.seq + 1 : 1;
  const prevHash = head ? head.hash : GENESIS;
  // hash what is stored: JSON turns Dates into strings and drops undefined; hashing the live object would
  // make the chain unverifiable from the store
  const data = JSON.parse(JSON.stringify(e.data ?? {})) as Record<string, unknown>;
  const rec = { seq, at, type: e.type, actor: e.actor, subject: e.subject, data };
  return { ...rec, prevHash, hash: auditHash(prevHash, rec) };
}

/**
 * auditLinkProblem checks one record against the one before it (`prev`, null before the first): why the
 * link is broken, or null when it holds. Shared by `audit verify` and the store contract tests.
 */
export function auditLinkProblem(prev: AuditHead | null, r: AuditRecord): string | null {
  const expected = prev ? prev.seq + 1 : 1;
  if (r.seq !== expected) return `expected record ${expected}, found ${r.seq} (a record was removed or reordered)`;
  if (r.prevHash !== (prev ? prev.hash : GENESIS)) return 'prevHash does not match the previous record';
  if (auditHash(r.prevHash, r) !== r.hash) return 'content does not match its hash (the record was edited)';
  return null;
}

function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === 'object')
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, canonical((v as Record<string, unknown>)[k])]),
    );
  return v;
}
