/** types: the JSON the console reads, as the admin API and the console API send it. */
export interface Device {
  id: string;
  owner: string | null;
  label: string | null;
  state: 'registered' | 'active' | 'suspended' | 'transferring' | 'retired';
  pendingOwner: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface Certificate {
  serial: string;
  deviceId: string | null;
  subject: string;
  profile: string;
  notBefore: string;
  notAfter: string;
  status: 'valid' | 'revoked';
  revokedAt: string | null;
  revocationReason: string | null;
}

export interface CertificateDetail extends Certificate {
  pem: string;
  decoded: null | {
    subject: string;
    issuer: string;
    serialNumber: string;
    validFrom: string;
    validTo: string;
    subjectAltName: string | null;
    keyUsage: string[];
    publicKey: string;
    fingerprintSha256: string;
    ca: boolean;
  };
}

export interface EnrollmentRequest {
  id: string;
  deviceId: string;
  label: string;
  operation: string;
  csrSha256: string;
  status: 'pending' | 'approved' | 'rejected' | 'issued';
  createdAt: string;
}

export interface Page<T> {
  items: T[];
  next: string | null;
}

export interface AuditRecord {
  seq: number;
  at: string;
  type: string;
  actor: string;
  subject: string | null;
  data: Record<string, unknown>;
}

/** AuditVerdict: one chunk of GET /audit/verify; pass `position` back until `done` */
export interface AuditVerdict {
  ok: boolean;
  checked: number;
  position: { seq: number; hash: string };
  done: boolean;
  total: number;
  firstBad?: { seq: number; problem: string };
}

export interface Overview {
  scope: string;
  devices: { total: number; byState: Record<string, number>; byOwner: { owner: string | null; count: number }[] };
  pendingApprovals: number | null;
  crlShards: { shard: number; number: string | null; thisUpdate: string | null; nextUpdate: string | null; entries: number | null }[];
  ocspResponder: { notAfter: string; subject: string } | null;
  store: { healthy: boolean; problem: string | null };
  keyBackend: { healthy: boolean; problem: string | null };
}

/** ChartSeries: GET /overview/enrollments and /overview/expiring (ConsoleChartReply): counts[i] starts at start + i * bucketSeconds. */
export interface ChartSeries {
  start: string;
  from: string;
  bucketSeconds: number;
  counts: number[];
}

export interface Session {
  csrf: string;
  scope: string;
}
