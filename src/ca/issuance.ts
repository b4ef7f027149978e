import * as crypto from 'node:crypto';
import { AuditStore, CertificateStore } from '../store/store';
import { AuthorizedRequest, CertificateAuthority, IssuedCertificate } from './certificate-authority';

/**
 * IssuanceRecord is what the store keeps beside a certificate, and the audit trail of its issuance
 * (ARCHITECTURE rule 9: intent before signing, result after, in the same transaction as the record).
 */
export interface IssuanceRecord {
  /** the device the certificate is for; null for the CA's own service certificates */
  deviceId: string | null;
  /** subject as text for listings, e.g. "O=acme, CN=dev-1" */
  subject: string;
  /** profile name kept with the certificate; defaults to the request's profile name */
  profile?: string;
  /** enrollment secret consumed by this issuance (fails 'unauthenticated' if used meanwhile) */
  consumeSecretId?: number;
  /** approved enrollment request this issuance settles */
  requestId?: string;
  audit: {
    /** audit event type of the result, e.g. 'certificate.issued'; the intent is recorded as 'certificate.issue.intent' */
    type?: string;
    actor: string;
    /** what the audit records are about: device id, or the service ('tls-server', 'ocsp-responder') */
    subject: string;
    /** extra fields of the intent record */
    intent?: Record<string, unknown>;
    /** extra fields of the result record; serial and notAfter are always added */
    data?: Record<string, unknown>;
  };
}

export type IssuanceStore = Pick<CertificateStore, 'recordIssuance'> & Pick<AuditStore, 'appendAudit'>;

/**
 * issueAndRecord is the one issuance path: record the intent, sign, then record certificate and result
 * together. Nothing issued reaches a caller before the store holds it. Device certificates (RA), the
 * TLS server certificate and the SCEP RA certificate go through here.
 */
export function issueAndRecord(ca: Pick<CertificateAuthority, 'issue'>, store: IssuanceStore, req: AuthorizedRequest, rec: IssuanceRecord, now = new Date()): Promise<IssuedCertificate> {
  return signAndRecord(store, { spki: req.spki, profile: rec.profile ?? req.profile }, () => ca.issue(req, now), rec);
}

/**
 * signAndRecord is issueAndRecord for certificates the CA builds from a fixed profile of its own (the
 * delegated OCSP responder certificate): same intent, sign, record sequence, with the signing step given.
 */
export async function signAndRecord(store: IssuanceStore, what: { spki: Buffer; profile: string }, sign: () => Promise<IssuedCertificate>, rec: IssuanceRecord): Promise<IssuedCertificate> {
  const type = rec.audit.type ?? 'certificate.issued';
  await store.appendAudit({ type: 'certificate.issue.intent', actor: rec.audit.actor, subject: rec.audit.subject, data: { profile: what.profile, ...rec.audit.intent } });
  const issued = await sign();
  await store.recordIssuance({
    cert: {
      serial: issued.serial,
      deviceId: rec.deviceId,
      issuer: issued.issuer,
      subject: rec.subject,
      profile: what.profile,
      notBefore: issued.notBefore,
      notAfter: issued.notAfter,
      shard: issued.shard,
      spkiSha256: crypto.createHash('sha256').update(what.spki).digest('hex'),
      der: issued.der,
    },
    consumeSecretId: rec.consumeSecretId,
    requestId: rec.requestId,
    audit: { type, actor: rec.audit.actor, subject: rec.audit.subject, data: { serial: issued.serial, ...rec.audit.data, notAfter: issued.notAfter.toISOString() } },
  });
  return issued;
}
