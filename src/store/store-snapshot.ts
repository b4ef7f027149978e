import {
  AkBindingRecord,
  AuditRecord,
  CertificateRecord,
  CrlRecord,
  DeviceRecord,
  EnrollmentRequestRecord,
  FirmwareReceiptRecord,
  FirmwareReleaseInfo,
  ReleaseBytes,
  SecretRecord,
  TokenRecord,
} from './store';

/**
 * SnapshotRow is one stored row of a CA, as `device-ca store copy` moves it from one store to another:
 * everything a node needs to serve the same CA (devices, secrets, certificates with their status, the
 * approval queue, the audit chain as recorded, admin tokens, CRLs, CRL numbers and shard revisions, the
 * CA state, TPM attestation state, firmware releases with their bytes, firmware receipts). Leases, authentication attempts, SCEP transactions (the replay
 * answers kept for enrollment.retryWindow) and console sessions are not rows of a snapshot: they are
 * about running processes and recent requests, and start afresh in the target (operators sign in to
 * the console again; a SCEP client resending a message sent before the copy is answered as new).
 */
export type SnapshotRow =
  | { kind: 'device'; row: DeviceRecord }
  | { kind: 'secret'; row: SecretRecord }
  | { kind: 'certificate'; row: CertificateRecord }
  | { kind: 'request'; row: EnrollmentRequestRecord }
  | { kind: 'audit'; row: AuditRecord }
  | { kind: 'token'; row: TokenRecord }
  | { kind: 'crl'; row: CrlRecord }
  /** crl-number: the last CRL number given out for an issuer (the next is one more) */
  | { kind: 'crl-number'; row: { issuer: string; last: bigint } }
  | { kind: 'shard-revision'; row: { issuer: string; shard: number; revision: number } }
  | { kind: 'ca-state'; row: { name: string; value: unknown; version: number; updatedAt: Date } }
  | { kind: 'tpm-ak'; row: AkBindingRecord }
  | { kind: 'tpm-blocked-ek'; row: { ekCertSha256: string; deviceId: string; blockedAt: Date } }
  | { kind: 'tpm-nonce'; row: { deviceId: string; nonceSha256: string; expiresAt: Date; createdAt: Date } }
  /** firmware-release: the row, and its bytes to be read chunk by chunk while the target writes them */
  | { kind: 'firmware-release'; row: FirmwareReleaseInfo & { bytes: ReleaseBytes } }
  | { kind: 'firmware-receipt'; row: FirmwareReceiptRecord }
  | { kind: 'firmware-group-key-member'; row: { keyId: string; deviceId: string } };

export type SnapshotKind = SnapshotRow['kind'];

/** SNAPSHOT_KINDS: every kind, in the order a copy writes them (the CA state after what it refers to). */
export const SNAPSHOT_KINDS: readonly SnapshotKind[] = [
  'device',
  'secret',
  'certificate',
  'request',
  'token',
  'crl',
  'crl-number',
  'shard-revision',
  'tpm-ak',
  'tpm-blocked-ek',
  'tpm-nonce',
  'firmware-release',
  'firmware-receipt',
  'firmware-group-key-member',
  'audit',
  'ca-state',
];

/** SnapshotSource: a store that can hand out all its rows, read from one consistent point in time. */
export interface SnapshotSource {
  /** exportSnapshot yields every row in batches of at most batchSize, kind by kind in SNAPSHOT_KINDS order. */
  exportSnapshot(batchSize: number): AsyncIterable<SnapshotRow[]>;
}

/**
 * SnapshotTarget: a store that can take a copy. importSnapshot writes one batch as it was recorded (the
 * audit chain keeps its hashes); finishImport makes the copy whole (counters past the copied ids, the
 * audit head); abortImport removes what an unfinished copy wrote.
 */
export interface SnapshotTarget {
  /** holdsData: what the store already holds (empty when nothing): a copy goes only into an empty store */
  holdsData(): Promise<string[]>;
  beginImport(): Promise<void>;
  importSnapshot(rows: SnapshotRow[]): Promise<void>;
  finishImport(): Promise<void>;
  abortImport(): Promise<void>;
}

export function isSnapshotSource(s: object): s is SnapshotSource {
  return typeof (s as Partial<SnapshotSource>).exportSnapshot === 'function';
}

export function isSnapshotTarget(s: object): s is SnapshotTarget {
  return typeof (s as Partial<SnapshotTarget>).importSnapshot === 'function' && typeof (s as Partial<SnapshotTarget>).holdsData === 'function';
}
