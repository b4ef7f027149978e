/**
 * Store interfaces. Every method is asynchronous because the shared Redis store (multi-node) implements
 * the same interfaces; the embedded SQLite store simply resolves at once. Each write method is atomic:
 * it either happens entirely or not at all.
 */

export type DeviceState = 'registered' | 'active' | 'suspended' | 'retired';

export interface DeviceRecord {
  id: string;
  owner: string | null;
  label: string | null;
  state: DeviceState;
  createdAt: Date;
  updatedAt: Date;
}

export type CertificateStatus = 'valid' | 'revoked';

export interface CertificateRecord {
  serial: string; // lowercase hex
  deviceId: string | null;
  issuer: string; // CA name
  subject: string;
  profile: string;
  notBefore: Date;
  notAfter: Date;
  shard: number;
  spkiSha256: string; // hex; tells renew from rekey
  der: Buffer;
  status: CertificateStatus;
  revokedAt: Date | null;
  revocationReason: string | null;
  createdAt: Date;
}

export interface SecretRecord {
  id: number;
  deviceId: string;
  hash: string; // scrypt$<log2N>$<r>$<p>$<salt b64>$<hash b64>
  expiresAt: Date;
  usedAt: Date | null;
}

export type RequestStatus = 'pending' | 'approved' | 'rejected' | 'issued';

export interface EnrollmentRequestRecord {
  id: string;
  deviceId: string;
  label: string;
  operation: 'simpleenroll' | 'simplereenroll' | 'serverkeygen';
  csrSha256: string;
  csr: Buffer;
  status: RequestStatus;
  certSerial: string | null;
  createdAt: Date;
  decidedAt: Date | null;
  decidedBy: string | null;
}

export interface AuditRecord {
  seq: number;
  at: Date;
  type: string;
  actor: string;
  subject: string; // device id, serial or request id the event is about
  data: Record<string, unknown>;
  prevHash: string;
  hash: string;
}

export type AuditInput = Pick<AuditRecord, 'type' | 'actor' | 'subject' | 'data'>;

export interface Page {
  limit?: number;
  /** opaque cursor from the previous page's last item (id or serial) */
  after?: string;
}

export interface DeviceStore {
  /** createDevice inserts a device and its first secret together; 'conflict' if the id exists. */
  createDevice(d: Omit<DeviceRecord, 'createdAt' | 'updatedAt'>, secret: Omit<SecretRecord, 'id' | 'deviceId' | 'usedAt'>, audit: AuditInput): Promise<DeviceRecord>;
  getDevice(id: string): Promise<DeviceRecord | null>;
  listDevices(filter: { owner?: string; state?: DeviceState } & Page): Promise<DeviceRecord[]>;
  /** activeSecrets: unused, unexpired secrets of a device, newest first. */
  activeSecrets(deviceId: string, now: Date): Promise<SecretRecord[]>;
}

export interface CertificateStore {
  getCertificate(serial: string): Promise<CertificateRecord | null>;
  listCertificates(filter: { deviceId?: string; status?: CertificateStatus } & Page): Promise<CertificateRecord[]>;
  /**
   * recordIssuance stores a certificate, marks the device active, consumes the secret (if given; fails
   * with 'unauthenticated' if it was consumed meanwhile), settles the request (if given) and appends the
   * audit result, all in one transaction. Nothing is returned to a client before this resolves.
   */
  recordIssuance(args: {
    cert: Omit<CertificateRecord, 'createdAt' | 'status' | 'revokedAt' | 'revocationReason'>;
    consumeSecretId?: number;
    requestId?: string;
    audit: AuditInput;
  }): Promise<void>;
}

export interface AuthFailureStore {
  /** recordAuthFailure counts one failure for key; returns failures within the window, including this one. */
  recordAuthFailure(key: string, now: Date, windowSeconds: number): Promise<number>;
  countAuthFailures(key: string, now: Date, windowSeconds: number): Promise<{ count: number; oldest: Date | null }>;
  clearAuthFailures(key: string): Promise<void>;
}

export interface RequestStore {
  createRequest(r: Omit<EnrollmentRequestRecord, 'status' | 'certSerial' | 'createdAt' | 'decidedAt' | 'decidedBy'>, audit: AuditInput): Promise<EnrollmentRequestRecord>;
  getRequest(id: string): Promise<EnrollmentRequestRecord | null>;
  findRequest(deviceId: string, csrSha256: string): Promise<EnrollmentRequestRecord | null>;
  listRequests(filter: { status?: RequestStatus } & Page): Promise<EnrollmentRequestRecord[]>;
  /** decideRequest moves a pending request to approved or rejected; 'conflict' if it is not pending. */
  decideRequest(id: string, status: 'approved' | 'rejected', by: string, audit: AuditInput): Promise<EnrollmentRequestRecord>;
}

export interface AuditStore {
  /** appendAudit adds a record to the hash chain. */
  appendAudit(e: AuditInput): Promise<AuditRecord>;
  listAudit(filter: Page & { subject?: string }): Promise<AuditRecord[]>;
}

export interface Store extends DeviceStore, CertificateStore, AuthFailureStore, RequestStore, AuditStore {
  close(): Promise<void>;
}
