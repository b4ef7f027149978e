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
  return auditHashOfTail(prevHash, r.seq, auditTail(r));
}

/**
 * auditTail is the part of a record's hashed JSON that does not depend on its place in the chain: the
 * array [seq, at, type, actor, subject, canonical data] without its opening "[seq," (JSON of an integer
 * seq is its decimal digits), so it can be serialized before the head is read (issuance-writer.ts).
 */
export function auditTail(r: Pick<AuditRecord, 'at' | 'type' | 'actor' | 'subject' | 'data'>): string {
  return JSON.stringify([r.at.toISOString(), r.type, r.actor, r.subject, canonical(r.data)]).slice(1);
}

/**
 * auditHashOfTail is the chaining step itself, once the seq and the previous hash are known. The SQLite
 * writer thread repeats this one line in its source (issuance-writer.ts); the store contract suite checks
 * that chain with auditLinkProblem.
 */
export function auditHashOfTail(prevHash: string, seq: number, tail: string): string {
  return crypto.createHash('sha256').update(prevHash).update(`[${seq},${tail}`).digest('hex');
}

/** PreparedAudit is an audit record before its place in the chain is known: content, stored JSON, hashed tail. */
export interface PreparedAudit {
  at: Date;
  type: string;
  actor: string;
  subject: string;
  data: Record<string, unknown>;
  /** data as the store keeps it (JSON) */
  dataJson: string;
  tail: string;
}

/**
 * prepareAudit serializes a record's content once: what is stored is what is hashed (JSON turns Dates into
 * strings and drops undefined; hashing the live object would make the chain unverifiable from the store).
 */
export function prepareAudit(e: AuditInput, at: Date): PreparedAudit {
  const dataJson = JSON.stringify(e.data ?? {});
  const data = JSON.parse(dataJson) as Record<string, unknown>;
  const p = { at, type: e.type, actor: e.actor, subject: e.subject, data };
  return { ...p, dataJson, tail: auditTail(p) };
}

/** chainPrepared places a prepared record after `head` (null for an empty chain). */
export function chainPrepared(head: AuditHead | null, p: PreparedAudit): AuditRecord {
  const seq = head ? head.seq + 1 : 1;
  const prevHash = head ? head.hash : GENESIS;
  return { seq, at: p.at, type: p.type, actor: p.actor, subject: p.subject, data: p.data, prevHash, hash: auditHashOfTail(prevHash, seq, p.tail) };
}

/**
 * nextAuditRecord builds the record that follows `head` (null for an empty chain): seq one more, prevHash
 * the head's hash, and the hash over the data exactly as a store keeps it. Every store appends through
 * this (or prepareAudit + chainPrepared), inside the transaction that read the head, so the chain's shape
 * is defined once.
 */
export function nextAuditRecord(head: AuditHead | null, e: AuditInput, at: Date): AuditRecord {
  return chainPrepared(head, prepareAudit(e, at));
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
