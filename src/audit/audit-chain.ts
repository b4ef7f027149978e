import * as crypto from 'node:crypto';
import { AuditRecord } from '../store/store';

/** GENESIS is the prevHash of the first audit record. */
export const GENESIS = '0'.repeat(64);

/**
 * auditHash chains a record to its predecessor: SHA-256 over the previous hash and a canonical JSON
 * of the record's content. Editing, removing or reordering any record breaks every later hash.
 */
export function auditHash(prevHash: string, r: Pick<AuditRecord, 'seq' | 'at' | 'type' | 'actor' | 'subject' | 'data'>): string {
  const body = JSON.stringify([r.seq, r.at.toISOString(), r.type, r.actor, r.subject, canonical(r.data)]);
  return crypto.createHash('sha256').update(prevHash).update(body).digest('hex');
}

function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === 'object') return Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical((v as Record<string, unknown>)[k])]));
  return v;
}
