import { ByteSource } from '../cms/byte-source';

/**
 * Store interfaces. Every method is asynchronous because the shared Redis store (multi-node) implements
 * the same interfaces; the embedded SQLite store simply resolves at once. Each write method is atomic:
 * it either happens entirely or not at all.
 */

/**
 * DeviceState: `transferring` is the half-way point of a two-sided ownership transfer: the owner (or an
 * operator) has released the device to a named new owner (`pendingOwner`) who has not claimed it yet. Its
 * certificates are already revoked and it has no credential, so it cannot enroll.
 */
export type DeviceState = 'registered' | 'active' | 'suspended' | 'transferring' | 'retired';
export const DEVICE_STATES: readonly DeviceState[] = ['registered', 'active', 'suspended', 'transferring', 'retired'];

/** DeviceCounts: how many devices there are in each state, and the owners with most devices. */
export interface DeviceCounts {
  total: number;
  byState: Record<DeviceState, number>;
  /**
   * topOwners: at most the number asked for, most devices first, ties by owner name (no owner after every
   * name); which of several owners tied at the cut make it is the store's choice. Owners with no device are left out.
   */
  topOwners: { owner: string | null; count: number }[];
}

/** emptyDeviceCounts: a zero for every state, so a state without devices is still listed. */
export const emptyDeviceCounts = (): Record<DeviceState, number> => Object.fromEntries(DEVICE_STATES.map((s) => [s, 0])) as Record<DeviceState, number>;

export interface DeviceRecord {
  id: string;
  owner: string | null;
  label: string | null;
  state: DeviceState;
  /** pendingOwner: the new owner a `transferring` device was released to; null in every other state */
  pendingOwner: string | null;
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
  revocationReason: RevocationReason | null;
  invalidityDate: Date | null;
  createdAt: Date;
}

/** RevocationReason: RFC 5280 §5.3.1 names; removeFromCRL is not a reason one revokes with. */
export type RevocationReason =
  'unspecified' | 'keyCompromise' | 'cACompromise' | 'affiliationChanged' | 'superseded' | 'cessationOfOperation' | 'certificateHold' | 'privilegeWithdrawn' | 'aACompromise';
export const REVOCATION_REASONS: readonly RevocationReason[] = [
  'unspecified',
  'keyCompromise',
  'cACompromise',
  'affiliationChanged',
  'superseded',
  'cessationOfOperation',
  'certificateHold',
  'privilegeWithdrawn',
  'aACompromise',
];

/** CertificateChange: what one certificate's status became in a revocation or release. */
export interface CertificateChange {
  serial: string;
  issuer: string;
  shard: number;
  status: CertificateStatus;
  reason: RevocationReason | null;
}

export interface TokenRecord {
  id: string;
  hash: string; // sha256 hex of the bearer token (tokens are 256 random bits: a fast hash suffices)
  scope: string; // 'operator' | 'owner:<name>'
  description: string | null;
  createdAt: Date;
  revokedAt: Date | null;
}

export interface CrlRecord {
  issuer: string;
  shard: number;
  number: bigint;
  revision: number;
  thisUpdate: Date;
  nextUpdate: Date;
  entries: number;
  der: Buffer;
}

export interface RevokedRow {
  serial: string;
  revokedAt: Date;
  reason: RevocationReason | null;
  invalidityDate: Date | null;
}

export interface SecretRecord {
  id: number;
  deviceId: string;
  hash: string; // hmac-sha256$<key id>$<mac b64url>, or scrypt$<log2N>$<r>$<p>$<salt b64>$<hash b64> (ra/enrollment-secret.ts)
  expiresAt: Date;
  usedAt: Date | null;
  /** certSerial: the certificate the secret was spent on, so a lost reply can be repeated */
  certSerial: string | null;
}

export type RequestStatus = 'pending' | 'approved' | 'rejected' | 'issued';

/** EnrollOperation: what a request asks for, whatever protocol carried it (EST simpleenroll, simplereenroll, serverkeygen). */
export type EnrollOperation = 'enroll' | 'renew' | 'server-keygen';

export interface EnrollmentRequestRecord {
  id: string;
  deviceId: string;
  label: string;
  operation: EnrollOperation;
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

/**
 * PageRequest is a caller's cursor into a list: `after` is the `next` of the previous page (absent for the
 * first page), `limit` how many items the caller wants (default DEFAULT_PAGE_LIMIT). A store answers at
 * most MAX_PAGE_LIMIT items per call, whatever the limit asks; it never drops rows silently, because
 * `next` is set whenever more rows exist.
 */
export interface PageRequest {
  limit?: number;
  /** opaque cursor: the `next` of the previous page */
  after?: string;
}

/**
 * Page is one page of a list. `next` is an opaque cursor for the following page, or null when there are
 * no more rows: a caller that follows `next` until null sees every row (a short page does not mean the end).
 */
export interface Page<T> {
  items: T[];
  next: string | null;
}

/** DEFAULT_PAGE_LIMIT: items per page when the caller gives no limit. */
export const DEFAULT_PAGE_LIMIT = 100;
/** MAX_PAGE_LIMIT: the most items any store returns in one page (larger limits are clamped; `next` still leads on). */
export const MAX_PAGE_LIMIT = 1000;

export interface DeviceStore {
  /** createDevice inserts a device and its first secret together; 'conflict' if the id exists. */
  createDevice(d: Omit<DeviceRecord, 'createdAt' | 'updatedAt' | 'pendingOwner'>, secret: Omit<SecretRecord, 'id' | 'deviceId' | 'usedAt' | 'certSerial'>, audit: AuditInput): Promise<DeviceRecord>;
  /**
   * createDevices inserts many devices, each with its first secret and its audit record, in ONE
   * transaction (the bulk path of `devices import`): with skipExisting a taken id is passed over and
   * returned in `existing`; without, a taken id fails the whole batch with 'conflict' naming it and
   * nothing is written. Ids within one batch must be distinct.
   */
  createDevices(
    items: { device: Omit<DeviceRecord, 'createdAt' | 'updatedAt' | 'pendingOwner'>; secret: Omit<SecretRecord, 'id' | 'deviceId' | 'usedAt' | 'certSerial'>; audit: AuditInput }[],
    opts: { skipExisting: boolean },
  ): Promise<{ created: string[]; existing: string[] }>;
  getDevice(id: string): Promise<DeviceRecord | null>;
  /**
   * listDevices: devices in id order; idPrefix keeps the ids that start with it (device ids are ASCII
   * letters, digits and . _ @ -, so the ids with a prefix are the range [prefix, prefix + DEL)); label keeps
   * the devices with exactly that label, read from an index of (label, id) so a label search stays fast at
   * fleet scale.
   */
  listDevices(filter: { owner?: string; state?: DeviceState; idPrefix?: string; label?: string } & PageRequest): Promise<Page<DeviceRecord>>;
  /**
   * countDevices: devices by state and the owners with most devices, from counts the store keeps beside the
   * devices and changes in the same transaction as each device (SQLite triggers, Redis counters), so the
   * cost does not grow with the fleet. With `owner`: that owner's devices only.
   */
  countDevices(o: { owner?: string; topOwners: number }): Promise<DeviceCounts>;
  /** activeSecrets: unused, unexpired secrets of a device, newest first. */
  activeSecrets(deviceId: string, now: Date): Promise<SecretRecord[]>;
  /** spentSecrets: secrets of a device spent on a certificate at or after usedSince, newest first. */
  spentSecrets(deviceId: string, usedSince: Date): Promise<SecretRecord[]>;
}

export interface CertificateStore {
  getCertificate(serial: string): Promise<CertificateRecord | null>;
  /** listCertificates: certificates in serial order. */
  listCertificates(filter: { deviceId?: string; status?: CertificateStatus; owner?: string } & PageRequest): Promise<Page<CertificateRecord>>;
  /**
   * recordIssuance stores a certificate, marks the device active, consumes the secret (if given; fails
   * with 'unauthenticated' if it was consumed meanwhile) and links it to the certificate, settles the request (if given) and appends the
   * audit result, all in one transaction. Nothing is returned to a client before this resolves. A device
   * that is no longer registered or active (released, suspended or retired while the certificate was
   * being signed) fails with 'forbidden' and nothing is recorded.
   */
  recordIssuance(args: {
    cert: Omit<CertificateRecord, 'createdAt' | 'status' | 'revokedAt' | 'revocationReason' | 'invalidityDate'>;
    consumeSecretId?: number;
    requestId?: string;
    audit: AuditInput;
  }): Promise<void>;
  /**
   * countIssuedPerHour: device certificates (deviceId set; not the service's own) recorded in each of
   * `hours` hours, the first the UTC hour that holds `from`, by the time the store recorded them
   * (createdAt). Read from counters changed in the issuance's own transaction (SQLite trigger, Redis
   * HINCRBY), so the cost does not grow with the certificates. `hours` at most MAX_CHART_BUCKETS (chart-buckets.ts).
   */
  countIssuedPerHour(o: { from: Date; hours: number }): Promise<number[]>;
  /**
   * countExpiringPerDay: valid device certificates whose notAfter is in each of `days` UTC days, the first
   * the day that holds `from` (counting only notAfter >= from there). The later days come from per-day
   * counts kept in every status change's transaction (SQLite triggers), or from an index of valid
   * certificates by notAfter (Redis sorted set kept wherever a status changes, one ZCOUNT per day); the
   * first day from that index's range within the day. `days` at most MAX_CHART_BUCKETS.
   */
  countExpiringPerDay(o: { from: Date; days: number }): Promise<number[]>;
}

/**
 * AuthAttemptRules are what the RA decided about one authentication attempt; the store only applies them
 * atomically. Attempts count within the sliding window (now - windowSeconds, now].
 */
export interface AuthAttemptRules {
  windowSeconds: number;
  /** limit: attempts per key within the window; once reached, reservations are refused until the oldest leaves the window */
  limit: number;
  /**
   * evictable: the attempt may be dropped before its window ends, oldest first, so that at most
   * maxEvictable evictable attempts are stored (all keys together). The RA marks attempts on names that
   * are not registered devices, so a flood of made-up names has a fixed size and never pushes out a real
   * device's failures; a key's own attempts are at most `limit`, so the rest is bounded by the devices.
   */
  evictable: boolean;
  maxEvictable: number;
}

/** AuthAttemptReservation: a slot counted against the key (attemptId, and the attempts in the window including it) or a refusal until retryAt. */
export type AuthAttemptReservation = { allowed: true; attemptId: string; attempts: number } | { allowed: false; retryAt: Date };

export interface AuthFailureStore {
  /**
   * reserveAuthAttempt counts an attempt for key BEFORE its credential is checked: in one atomic step
   * (across workers and nodes) it forgets the key's attempts older than the window, and stores this one
   * only if fewer than rules.limit remain; otherwise it refuses with the time the oldest leaves the
   * window. It also drops expired attempts of other keys, a few per call, and evictable attempts beyond
   * rules.maxEvictable, so the table stays bounded without a sweeper. A stored attempt is a failure
   * unless forgiven.
   */
  reserveAuthAttempt(key: string, now: Date, rules: AuthAttemptRules): Promise<AuthAttemptReservation>;
  /** forgiveAuthAttempt removes a reserved attempt whose credential turned out right; unknown or evicted ids are ignored. */
  forgiveAuthAttempt(attemptId: string): Promise<void>;
  /** countAuthFailures: the attempts stored for key within the window, and the oldest of them. */
  countAuthFailures(key: string, now: Date, windowSeconds: number): Promise<{ count: number; oldest: Date | null }>;
}

export interface RequestStore {
  createRequest(r: Omit<EnrollmentRequestRecord, 'status' | 'certSerial' | 'createdAt' | 'decidedAt' | 'decidedBy'>, audit: AuditInput): Promise<EnrollmentRequestRecord>;
  findRequest(deviceId: string, csrSha256: string): Promise<EnrollmentRequestRecord | null>;
  /** listRequests: requests in id order. */
  listRequests(filter: { status?: RequestStatus } & PageRequest): Promise<Page<EnrollmentRequestRecord>>;
  /** decideRequest moves a pending request to approved or rejected; 'conflict' if it is not pending. */
  decideRequest(id: string, status: 'approved' | 'rejected', by: string, audit: AuditInput): Promise<EnrollmentRequestRecord>;
}

export interface AuditStore {
  /** appendAudit adds a record to the hash chain. */
  appendAudit(e: AuditInput): Promise<AuditRecord>;
  /** listAudit: records in chain (seq) order. */
  listAudit(filter: { subject?: string } & PageRequest): Promise<Page<AuditRecord>>;
}

/**
 * DeviceChange is one lifecycle step, applied atomically: the device row, its certificates, its secrets
 * and the audit record change together or not at all. The RA decides; the store only applies.
 */
export interface DeviceChange {
  deviceId: string;
  /** the change applies only if the device is in one of these states; otherwise 'conflict' */
  fromStates: DeviceState[];
  toState: DeviceState;
  /**
   * expect: the change applies only if the device still has this owner / pending owner (what the RA read
   * when it decided); otherwise 'conflict'. Closes the gap between the RA's check and the write.
   */
  expect?: { owner?: string | null; pendingOwner?: string | null };
  newOwner?: string | null;
  /** set (or with null, clear) the owner a transferring device was released to */
  pendingOwner?: string | null;
  /** revoke every unexpired certificate of the device (valid or on hold) with this reason */
  revoke?: { reason: RevocationReason; at: Date; holdOnly?: false } | { reason: 'certificateHold'; at: Date; holdOnly: true };
  /** put held certificates back to valid (certificateHold released) */
  releaseHolds?: boolean;
  deleteSecrets?: boolean;
  addSecret?: { hash: string; expiresAt: Date };
  /** cancel pending manual-approval requests */
  cancelRequests?: boolean;
  audit: AuditInput;
}

export interface RevocationStore {
  applyDeviceChange(c: DeviceChange): Promise<{ device: DeviceRecord; changed: CertificateChange[] }>;
  /**
   * revokeCertificate revokes one certificate; idempotent: an already revoked certificate is returned
   * unchanged (changed = false), except that a certificateHold may become a permanent revocation.
   */
  revokeCertificate(serial: string, reason: RevocationReason, at: Date, invalidityDate: Date | null, audit: AuditInput): Promise<{ cert: CertificateRecord; changed: boolean }>;
  /** releaseHold puts a certificate on hold back to valid; 'conflict' if it is not on hold. */
  releaseHold(serial: string, audit: AuditInput): Promise<CertificateRecord>;
  /** shardRevision changes whenever a certificate in the shard changes status. */
  shardRevision(issuer: string, shard: number): Promise<number>;
  /** revokedInShard streams the revoked, unexpired certificates of one shard in pages. */
  revokedInShard(issuer: string, shard: number, now: Date, pageSize?: number): AsyncIterable<RevokedRow[]>;
  /** nextCrlNumber allocates a monotonic CRL number for an issuer (RFC 5280 §5.2.3). */
  nextCrlNumber(issuer: string): Promise<bigint>;
  /** saveCrl keeps the newest CRL of a shard (never replaces a higher number with a lower one). */
  saveCrl(c: CrlRecord): Promise<void>;
  getCrl(issuer: string, shard: number): Promise<CrlRecord | null>;
  /** crlInfo: the newest CRL's metadata without its (possibly large) DER */
  crlInfo(issuer: string, shard: number): Promise<Omit<CrlRecord, 'der'> | null>;
  /** certificateStatus: the fields OCSP needs, without the certificate bytes */
  certificateStatus(serial: string): Promise<Pick<CertificateRecord, 'serial' | 'issuer' | 'status' | 'revokedAt' | 'revocationReason' | 'notAfter'> | null>;
}

export interface TokenStore {
  createToken(t: Omit<TokenRecord, 'createdAt' | 'revokedAt'>, audit: AuditInput): Promise<TokenRecord>;
  findToken(hash: string): Promise<TokenRecord | null>;
  /** listTokens: tokens oldest first. */
  listTokens(page: PageRequest): Promise<Page<TokenRecord>>;
  revokeToken(id: string, audit: AuditInput): Promise<TokenRecord>;
}

/**
 * ConsoleSessionRecord: one signed-in operator console session. The session id (the cookie) is kept only as
 * its SHA-256; the session holds the SHA-256 of the admin token it was exchanged for, so the token's scope
 * and revocation are read again on every request.
 * A session signed in with a pinned operator certificate holds `cert:<SHA-256 fingerprint>` in tokenHash
 * instead (ra/console-sessions.ts), and its pin is asked again on every request.
 */
export interface ConsoleSessionRecord {
  idHash: string;
  tokenHash: string;
  createdAt: Date;
  /** idleExpiresAt: the session ends here unless used before; each use moves it (never past expiresAt) */
  idleExpiresAt: Date;
  /** expiresAt: the absolute end, whatever the use */
  expiresAt: Date;
}

/**
 * ConsoleSessionStore keeps console sessions where every node sees them, so a session signed in on one
 * node works on the next and a sign-out ends it everywhere.
 */
export interface ConsoleSessionStore {
  createSession(s: ConsoleSessionRecord, now: Date): Promise<void>;
  /**
   * touchSession: the live session, its idle expiry moved to min(now + idleMs, expiresAt); null when there is
   * none or it has expired (idle or absolute).
   */
  touchSession(idHash: string, now: Date, idleMs: number): Promise<ConsoleSessionRecord | null>;
  /** deleteSession ends a session at once (sign-out); nothing happens for one that does not exist. */
  deleteSession(idHash: string): Promise<void>;
}

/** Lease is held by one holder until expiresAt; fence grows each time the lease changes hands. */
export interface Lease {
  /**
   * fence strictly increases on every change of holder (and when a holder re-takes a lease it had let
   * expire), so work stamped with an older fence can be told apart from the current holder's.
   */
  fence: number;
  expiresAt: Date;
}

/**
 * LeaseStore elects one process among all workers and nodes sharing the store for a periodic duty
 * (CRL publication, service certificate renewal). Each call is atomic across processes.
 */
export interface LeaseStore {
  /**
   * acquireLease takes the named lease for ttlMs from now, or renews it when holder already holds it;
   * null when another holder's lease has not yet expired.
   */
  acquireLease(name: string, holder: string, ttlMs: number, now: Date): Promise<Lease | null>;
  /** releaseLease lets the lease go at once if holder holds it (another process may take it next). */
  releaseLease(name: string, holder: string): Promise<void>;
}

/** CaStateEntry is one named CA state record: a JSON value owned by ca/, and its version for compare-and-set. */
export interface CaStateEntry {
  value: unknown;
  version: number;
  updatedAt: Date;
}

/**
 * CaStateStore keeps the CA's own state (its certificates, which key backs each role, the service
 * certificates) in the store, so every worker and every node sharing the store serves one CA.
 */
export interface CaStateStore {
  getCaState(name: string): Promise<CaStateEntry | null>;
  /**
   * saveCaState writes a record only if its version is still ifVersion (0: only if it does not exist
   * yet); 'conflict' otherwise. Returns the new version. The audit record, if given, is appended in
   * the same transaction.
   */
  saveCaState(name: string, value: unknown, ifVersion: number, audit?: AuditInput): Promise<number>;
}

/**
 * StoreHead is where a store's history stands: the audit chain's last record and the last CRL number
 * allocated for one issuer. Both only ever grow, so a store that shows less than was once recorded
 * elsewhere (ca/ca-identity.ts keeps that record in the data directory) was rolled back or replaced.
 */
export interface StoreHead {
  /** auditSeq: seq of the last audit record; 0 when there is none */
  auditSeq: number;
  /** auditHash: hash of that record; null when there is none */
  auditHash: string | null;
  /** crlNumber: the last CRL number allocated for the issuer; 0 before the first CRL */
  crlNumber: bigint;
}

/** IntegrityStore tells whether the store is the one it should be, and whether it can serve at all. */
export interface IntegrityStore {
  /** head reads where the store's history stands (audit chain head, issuer's last CRL number). */
  head(issuer: string): Promise<StoreHead>;
  /**
   * probe reads and writes the store the way a request does (the write is a tiny upsert of its own),
   * and fails with 'store-unavailable' when either cannot be done: a full disk, an I/O error, a corrupt file.
   */
  probe(now?: Date): Promise<void>;
}

/**
 * AkBindingStatus: `pending` while the device has not answered the credential challenge (MakeCredential),
 * `active` once it has (the AK is proven to live in the TPM of the certified EK), `revoked` when the device
 * is retired or transferred or the operator revokes it.
 */
export type AkBindingStatus = 'pending' | 'active' | 'revoked';

/**
 * TpmClockState: the clockInfo counters of a TPM attestation statement (TPM 2.0 Part 2 §10.11.1): clock
 * (milliseconds the TPM has run, kept across power cycles), resetCount (TPM Resets) and restartCount
 * (TPM Restarts and Resumes since the last Reset). None of them goes backwards on a genuine TPM.
 */
export interface TpmClockState {
  clock: bigint;
  resetCount: number;
  restartCount: number;
}

/** AkBindingRecord binds a TPM attestation key (by its TPM name) to a device and to the TPM's EK certificate. */
export interface AkBindingRecord {
  /** akName: hex of nameAlg || H(TPMT_PUBLIC), unique across devices */
  akName: string;
  deviceId: string;
  /** akPublic: the AK's TPMT_PUBLIC, to verify its signatures without the device sending it again */
  akPublic: Buffer;
  /** ekCertSha256: hex SHA-256 of the EK certificate DER: identifies the TPM */
  ekCertSha256: string;
  ekManufacturer: string | null;
  ekModel: string | null;
  status: AkBindingStatus;
  /** challengeSha256: hex SHA-256 of the credential the device must recover; kept after activation (a lost reply's repeat), null once revoked */
  challengeSha256: string | null;
  challengeExpiresAt: Date;
  createdAt: Date;
  activatedAt: Date | null;
  /** lastClock: the clockInfo of the newest statement this AK signed that was accepted; null before the first */
  lastClock: TpmClockState | null;
  /** akCertSerial: the AK certificate issued at activation (settleAkCertificate); null before */
  akCertSerial: string | null;
}

/** AkCertificateClaim: who issues an active AK's certificate (claimAkCertificate). */
export type AkCertificateClaim = { state: 'claimed' } | { state: 'busy' } | { state: 'issued'; serial: string };

/**
 * AttestationStore keeps TPM attestation state: single-use nonces (by SHA-256, so a stored nonce is useless
 * to whoever reads the database and a lookup by hash leaks nothing by its timing) and AK bindings. Each
 * method is atomic; the RA decides, the store applies. An optional capability (ARCHITECTURE rule 4): the
 * SQLite and Redis stores have it; isAttestationStore tells.
 */
export interface AttestationStore {
  /** saveNonce stores a nonce of a device; it also drops the device's expired nonces, and its oldest beyond maxPerDevice. */
  saveNonce(n: { deviceId: string; nonceSha256: string; expiresAt: Date }, now: Date, maxPerDevice: number): Promise<void>;
  /** consumeNonce deletes the device's unexpired nonce with this hash and says whether there was one: a nonce works once. */
  consumeNonce(deviceId: string, nonceSha256: string, now: Date): Promise<boolean>;
  /**
   * saveAkChallenge stores a pending binding (replacing a pending one of the same AK for the same device).
   * 'forbidden' if the EK is blocked (its device was retired); 'conflict' if the AK is bound to another
   * device or already active.
   */
  saveAkChallenge(b: Omit<AkBindingRecord, 'status' | 'createdAt' | 'activatedAt' | 'lastClock' | 'akCertSerial'>, now: Date, audit: AuditInput): Promise<AkBindingRecord>;
  /**
   * activateAk turns a pending binding active if the credential's hash matches and the challenge has not
   * expired; null (and nothing changes) otherwise. The audit record is appended in the same transaction.
   * The challenge's hash is kept until it expires: the same activation repeated before then (its reply was
   * lost) returns the active binding again, with no second audit record.
   */
  activateAk(akName: string, deviceId: string, challengeSha256: string, now: Date, audit: AuditInput): Promise<AkBindingRecord | null>;
  getAk(akName: string): Promise<AkBindingRecord | null>;
  /**
   * claimAkCertificate makes the issuance of an active AK's certificate happen once, however many
   * activations of it arrive at once (on any node): 'issued' with the serial once it has one; 'busy' while
   * another caller's claim lives; otherwise 'claimed' (the claim is the caller's until `until`, so a caller
   * that died frees it). null if the device has no active binding of this AK.
   */
  claimAkCertificate(akName: string, deviceId: string, until: Date, now: Date): Promise<AkCertificateClaim | null>;
  /** settleAkCertificate ends a claim: records the AK certificate's serial (the first one recorded stays), or just frees the claim (null: issuance failed). */
  settleAkCertificate(akName: string, serial: string | null): Promise<void>;
  /**
   * setAkClock records the clockInfo of an accepted statement on the AK's binding if its lastClock is still
   * `expected` (compare-and-set: of two statements accepted at once, only one moves it from a given value;
   * the other's caller reads again and decides again); false, and nothing changes, otherwise or without
   * such a binding. The RA decides whether `next` goes backwards; the store only applies.
   */
  setAkClock(akName: string, expected: TpmClockState | null, next: TpmClockState): Promise<boolean>;
  /** aksOfDevice: a device's bindings, newest first. */
  aksOfDevice(deviceId: string): Promise<AkBindingRecord[]>;
  /** revokeAks revokes every binding of a device; with blockEks its EKs may never register again (retirement). */
  revokeAks(deviceId: string, blockEks: boolean, now: Date, audit: AuditInput): Promise<number>;
}

/**
 * ScepOutcome: the final answer to a SCEP transaction: the certificate issued, or the refusal (the
 * DeviceCaError code and message the RA gave).
 */
export type ScepOutcome = { certSerial: string } | { errorCode: string; errorMessage: string };

/**
 * ScepTransactionRecord: what a SCEP transactionID (RFC 8894 §3.2.1.1) was first used for and, once
 * final, its answer, so a message sent again gets the same answer and another request under the same
 * transactionID can be refused. Kept until expiresAt.
 */
export interface ScepTransactionRecord {
  /** key: hex digest the RA derives from the requester's key and the transactionID */
  key: string;
  /** requestSha256: hex digest of what was asked (message type and CSR) */
  requestSha256: string;
  /** outcome: null while no final answer exists (new, or pending manual approval) */
  outcome: ScepOutcome | null;
  /** pending: set while the request waits for an operator (held), so a CertPoll can finish it */
  pending: ScepPending | null;
  expiresAt: Date;
}

/**
 * ScepPending: what a CertPoll (RFC 8894 §3.3.3) needs to finish a PKCSReq held for manual approval,
 * since the poll carries neither the CSR nor the challengePassword: the device, the queued request (by
 * the SHA-256 of its CSR) and the one-time secret the first message proved, spent at issuance.
 */
export interface ScepPending {
  deviceId: string;
  /** csrSha256: hex SHA-256 of the CSR DER, as the approval queue records it (findRequest) */
  csrSha256: string;
  /** secretId: the secret the PKCSReq authenticated with; issuance consumes it (recordIssuance consumeSecretId) */
  secretId: number;
}

/** ScepTransactionStore keeps SCEP transactions; each call is atomic across workers and nodes. */
export interface ScepTransactionStore {
  /**
   * claimScepTransaction stores a new, unsettled record unless an unexpired one with the same key exists
   * (an expired one is replaced), and returns the record in force: the new one or the existing one.
   */
  claimScepTransaction(rec: Omit<ScepTransactionRecord, 'outcome' | 'pending'>, now: Date): Promise<ScepTransactionRecord>;
  /** settleScepTransaction records the outcome of an unsettled record with this key and request; otherwise nothing changes. */
  settleScepTransaction(key: string, requestSha256: string, outcome: ScepOutcome): Promise<void>;
  /**
   * holdScepTransaction marks an unsettled record with this key and request as pending and keeps it until
   * expiresAt (a manual approval may take longer than the replay window); otherwise nothing changes.
   */
  holdScepTransaction(key: string, requestSha256: string, pending: ScepPending, expiresAt: Date, now: Date): Promise<void>;
  /** getScepTransaction: the unexpired record with this key, or null (a CertPoll looks its transaction up). */
  getScepTransaction(key: string, now: Date): Promise<ScepTransactionRecord | null>;
}

/**
 * FirmwareReleaseInfo: one firmware release as recorded (issue 13): what was released, signed by whom,
 * encrypted to which devices. The release bytes are read apart (openFirmwareRelease): they can be large.
 */
export interface FirmwareReleaseInfo {
  name: string;
  /** version: RFC 4108 verNum */
  version: number;
  /** sha256: hex SHA-256 of the plaintext image */
  sha256: string;
  signers: { name: string; role: string; serial: string; signingTime: string }[];
  /** recipients: device ids the image is encrypted to; null for a plain (unencrypted) release */
  recipients: string[] | null;
  /**
   * hardware: the package's RFC 4108 target hardware (§2.2.2 module type OIDs, §2.2.5 serials), so that
   * `latest` can skip a release for other hardware; empty or absent (a release recorded before it was
   * kept): any hardware
   */
  hardware?: { type: string; serial?: string }[];
  releasedAt: Date;
}

/** RELEASE_CHUNK_BYTES: the size of a stored release chunk (the last one of a release may be shorter). */
export const RELEASE_CHUNK_BYTES = 1 << 20;

/**
 * ReleaseBytes: a stored release's bytes: `length` in all, and `chunks()` reading them from the store as
 * the consumer asks for them (each piece a Buffer of its own, at most RELEASE_CHUNK_BYTES), so a server
 * sending them to a slow client holds one chunk, not the release.
 */
export interface ReleaseBytes {
  length: number;
  chunks(): AsyncIterable<Buffer>;
}

/**
 * FirmwareReleaseStore keeps firmware releases, one row per name and version, so a release does not grow
 * one shared record. Lists run by name, then newest version first (`firmwareReleaseKey` is the cursor).
 */
export interface FirmwareReleaseStore {
  /**
   * saveFirmwareRelease records a release with its DER bytes, replacing a release of the same name and
   * version (a re-release, e.g. to the devices enrolled since); 'conflict' when a higher version of the
   * name is recorded (anti-rollback, checked in the same transaction). The audit record is appended in
   * the same transaction. The bytes are read from `release` in pieces and written as pending chunks
   * first, each in a short write of its own, so a 64 MiB release never sits in memory whole nor holds
   * the store's writer for the whole copy; one final transaction checks the version, points the release
   * at its chunks (removing the chunks of a release it replaces) and appends the audit record. A process
   * killed before that transaction leaves only pending chunks, which no reader sees: SQLite removes them
   * when a store is opened and before each save (those of a process that is gone); Redis lets them expire
   * (RELEASE_PENDING_TTL_MS). Callers holding a Buffer pass bufferSource(buf).
   */
  saveFirmwareRelease(r: FirmwareReleaseInfo, release: ByteSource, audit: AuditInput): Promise<void>;
  getFirmwareRelease(name: string, version: number): Promise<FirmwareReleaseInfo | null>;
  /**
   * openFirmwareRelease: the release's bytes, read from the store piece by piece as they are consumed
   * (RELEASE_CHUNK_BYTES at most in memory), or null when no such release is recorded. A release replaced
   * while it is read ends the reading with 'conflict' instead of yielding bytes of two releases.
   */
  openFirmwareRelease(name: string, version: number): Promise<ReleaseBytes | null>;
  listFirmwareReleases(filter: { name?: string } & PageRequest): Promise<Page<FirmwareReleaseInfo>>;
}

/**
 * FirmwareReceiptInput: one verified RFC 4108 receipt (§3, 'loaded') or load error report (§4, 'error')
 * of a device for a release, as the RA hands it to the store.
 */
export interface FirmwareReceiptInput {
  name: string;
  version: number;
  deviceId: string;
  outcome: 'loaded' | 'error';
  /** errorCode: RFC 4108 §4 FirmwarePackageLoadErrorCode (errors only) */
  errorCode?: number;
  vendorErrorCode?: number;
  hwType: string;
  /** sha256: hex SHA-256 of the receipt's DER, what makes a repeat recognisable */
  sha256: string;
  at: Date;
}

/**
 * FirmwareReceiptRecord: what a device's receipts say about one firmware name: the version it runs (its
 * newest 'loaded' receipt) and its last load error, kept while that error is about a version above the
 * one it runs.
 */
export interface FirmwareReceiptRecord {
  name: string;
  deviceId: string;
  hwType: string;
  /** running: the version of the device's newest load receipt, null before its first */
  running: { version: number; at: Date } | null;
  /** error: the last load error report for a version above `running`, or null */
  error: { version: number; code: number; vendorCode: number | null; at: Date } | null;
  /** receiptSha256: hex SHA-256 of the last receipt recorded */
  receiptSha256: string;
  updatedAt: Date;
}

/**
 * FirmwareReceiptSummary: how many devices of one firmware name have a record, run each version (newest
 * first), and hold a load error of each RFC 4108 §4 code (the records whose `error` is set, by code).
 */
export interface FirmwareReceiptSummary {
  devices: number;
  versions: { version: number; devices: number }[];
  errors: { code: number; devices: number }[];
}

/**
 * FirmwareReceiptStore keeps one record per firmware name and device (issue 13, `firmware status`).
 * recordFirmwareReceipt folds a receipt into it in one transaction with its audit record:
 * - the same receipt as the last one recorded (same SHA-256) changes nothing and appends no audit record
 *   ('repeat': a device that lost the reply posts again);
 * - a 'loaded' receipt for a version below the one the device runs is 'conflict' (a replayed old receipt);
 * - a 'loaded' receipt sets `running` and clears an error about that version or below;
 * - an 'error' report sets `error` unless the device already runs that version or a later one.
 */
export interface FirmwareReceiptStore {
  recordFirmwareReceipt(r: FirmwareReceiptInput, audit: AuditInput): Promise<{ outcome: 'recorded' | 'repeat'; record: FirmwareReceiptRecord }>;
  getFirmwareReceipt(name: string, deviceId: string): Promise<FirmwareReceiptRecord | null>;
  /** listFirmwareReceipts: one name's records by device id (cursor: the device id) */
  listFirmwareReceipts(filter: { name: string } & PageRequest): Promise<Page<FirmwareReceiptRecord>>;
  /**
   * firmwareHardwareOf: the hwType of the device's newest receipt record of any firmware name (by
   * updatedAt; at the same time, the greatest name), or null when it has none: `latest` of a name the
   * device never reported on still knows its hardware.
   */
  firmwareHardwareOf(deviceId: string): Promise<string | null>;
  /**
   * firmwareReceiptSummary: one name's counts without reading its records (what `firmware status` shows
   * above its paged device rows): SQLite groups on indexes, Redis keeps counters in the receipt write.
   */
  firmwareReceiptSummary(name: string): Promise<FirmwareReceiptSummary>;
}

/** firmwareGroupKeyRecord: the CA state record of one firmware group key (ra/firmware-group-keys.ts), whose members FirmwareGroupKeyStore keeps. */
export function firmwareGroupKeyRecord(keyId: string): string {
  return `firmware-group-key:${keyId}`;
}

/**
 * FirmwareGroupKeyStore keeps which devices were given each firmware group key (issue 13, docs/firmware.md
 * "Group key"), one entry per (key id, device id) beside the key's CA state record, so a key fetch is one
 * indexed lookup and a release never rewrites the whole list.
 */
export interface FirmwareGroupKeyStore {
  /**
   * saveFirmwareGroupKey writes the key's CA state record (firmwareGroupKeyRecord: saveCaState's
   * compare-and-set on `ifVersion`, 'conflict' when it moved) and adds `addMembers` to the key's members,
   * with the audit record, in one transaction. Returns the record's new version.
   */
  saveFirmwareGroupKey(keyId: string, value: unknown, ifVersion: number, addMembers: readonly string[], audit: AuditInput): Promise<number>;
  /** isFirmwareGroupKeyMember: whether the device was given the key (one indexed lookup). */
  isFirmwareGroupKeyMember(keyId: string, deviceId: string): Promise<boolean>;
  /**
   * firmwareGroupKeyMembership compares the key's members with `candidates` (distinct device ids) without
   * reading the members out: how many members the key has, and which candidates are not among them. The
   * members that are not candidates number `members - (candidates.length - newcomers.length)`.
   */
  firmwareGroupKeyMembership(keyId: string, candidates: readonly string[]): Promise<{ members: number; newcomers: string[] }>;
}

/** FIRMWARE_VERSION_MAX: the largest verNum a store orders (Number.MAX_SAFE_INTEGER, 16 digits). */
const FIRMWARE_VERSION_MAX = Number.MAX_SAFE_INTEGER;

/**
 * firmwareReleaseKey: the sort key and page cursor of a release: the name, a space (below every name
 * character), and the version subtracted from FIRMWARE_VERSION_MAX in 16 digits, so that ordering by key
 * gives names in order and each name's newest version first, in SQLite and in a Redis lex sorted set alike.
 */
export function firmwareReleaseKey(name: string, version: number): string {
  return `${name} ${String(FIRMWARE_VERSION_MAX - version).padStart(16, '0')}`;
}

export interface Store
  extends
    DeviceStore,
    CertificateStore,
    AuthFailureStore,
    RequestStore,
    AuditStore,
    RevocationStore,
    TokenStore,
    ConsoleSessionStore,
    LeaseStore,
    CaStateStore,
    IntegrityStore,
    ScepTransactionStore,
    FirmwareReleaseStore,
    FirmwareReceiptStore,
    FirmwareGroupKeyStore {
  close(): Promise<void>;
}

/** isAttestationStore: whether a store keeps TPM attestation state (AttestationStore). */
export function isAttestationStore(s: object): s is AttestationStore {
  return typeof (s as Partial<AttestationStore>).saveNonce === 'function' && typeof (s as Partial<AttestationStore>).revokeAks === 'function';
}
