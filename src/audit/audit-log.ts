import { AuditInput, AuditRecord, AuditStore } from '../store/store';

/**
 * AuditLog is the audit API (ARCHITECTURE rule 9): callers record intent before acting and the result
 * after. Results that change state are appended by the store in the same transaction as the change
 * (see CertificateStore.recordIssuance), so a record and its effect never disagree.
 */
export class AuditLog {
  constructor(private readonly store: AuditStore) {}

  /** intent records what is about to happen (e.g. signing) before it happens. */
  intent(type: string, actor: string, subject: string, data: Record<string, unknown> = {}): Promise<AuditRecord> {
    return this.store.appendAudit({ type: `${type}.intent`, actor, subject, data });
  }

  /** event records something that happened without another state change (a refusal, a login failure). */
  event(type: string, actor: string, subject: string, data: Record<string, unknown> = {}): Promise<AuditRecord> {
    return this.store.appendAudit({ type, actor, subject, data });
  }

  /** input builds the record a store appends inside its own transaction. */
  static input(type: string, actor: string, subject: string, data: Record<string, unknown> = {}): AuditInput {
    return { type, actor, subject, data };
  }
}
