import Database from 'better-sqlite3';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { nextAuditRecord } from '../../audit/audit-chain';
import { createPrivateFile } from '../../data-dir/atomic-file';
import { PROCESS_TABLE, processRuns } from '../../data-dir/process-identity';
import { DeviceCaError } from '../../errors/device-ca-error';
import {
  AkBindingRecord,
  AkCertificateClaim,
  TpmClockState,
  AkBindingStatus,
  AttestationStore,
  AuditInput,
  AuditRecord,
  AuthAttemptReservation,
  AuthAttemptRules,
  CertificateRecord,
  CertificateStatus,
  DeviceCounts,
  DeviceRecord,
  DeviceState,
  DEVICE_STATES,
  emptyDeviceCounts,
  CertificateChange,
  CaStateEntry,
  ConsoleSessionRecord,
  CrlRecord,
  Lease,
  DeviceChange,
  EnrollmentRequestRecord,
  FirmwareReceiptInput,
  FirmwareReceiptRecord,
  FirmwareReceiptSummary,
  FirmwareReleaseInfo,
  firmwareGroupKeyRecord,
  ReleaseBytes,
  firmwareReleaseKey,
  Page,
  PageRequest,
  RevocationReason,
  RevokedRow,
  TokenRecord,
  RequestStatus,
  ScepOutcome,
  ScepPending,
  ScepTransactionRecord,
  SecretRecord,
  Store,
  StoreHead,
} from '../store';
import { ByteSource } from '../../cms/byte-source';
import { distinctIds } from '../batch';
import { releaseChunksOf, storedReleaseBytes, wholeReleaseBytes } from '../release-chunks';
import { applyFirmwareReceipt } from '../firmware-receipt-rule';
import { chartBuckets, DAY_MS, HOUR_MS } from '../chart-buckets';
import { pageLimit, pageOf } from '../paging';
import { SnapshotRow, SnapshotSource } from '../store-snapshot';
import { MIGRATIONS } from './migrations';
import { sqliteFailure, sqliteUnavailable } from './sqlite-errors';
import { StatusVersion } from '../status-version';
import { DiskSpaceGuard } from './disk-space-guard';
import { FALLBACK_AUTOCHECKPOINT_PAGES, WalCheckpointer } from './wal-checkpointer';

type Row = Record<string, unknown>;
/** BUSY_TIMEOUT_MS: how long a write waits for another connection's write lock before it fails as 'store-unavailable' */
const BUSY_TIMEOUT_MS = 10_000;
/** BUSY_RETRY_MAX_MS: the longest pause between a waiting group commit's attempts to take the write lock (SqliteStore.waitForLock) */
const BUSY_RETRY_MAX_MS = 4;
/** AUTH_PURGE_BATCH: expired authentication attempts (of any key) dropped per reservation */
const AUTH_PURGE_BATCH = 32;
const ms = (d: Date): number => d.getTime();
const date = (v: unknown): Date => new Date(Number(v));
/** conditions: the WHERE clauses of a filtered list, one per filter that is set (undefined = not filtered). */
function conditions(...filters: [clause: string, value: unknown][]): { where: string[]; args: unknown[] } {
  const set = filters.filter(([, v]) => v !== undefined);
  return { where: set.map(([c]) => c), args: set.map(([, v]) => v) };
}
const dateOrNull = (v: unknown): Date | null => (v === null || v === undefined ? null : new Date(Number(v)));
/** seqCursor reads an audit cursor: the seq of the last record of the previous page. */
const seqCursor = (after: string | undefined): number => {
  if (after === undefined || after === '') return 0;
  if (!/^\d{1,15}$/.test(after)) throw new DeviceCaError('bad-request', 'after: not a cursor of this list');
  return Number(after);
};

/**
 * listDevicesSql: the devices page's query. One lower bound on id (the cursor or the prefix, whichever is
 * further), so the range starts there; and the index named with INDEXED BY, so the plan cannot drift to a
 * walk of every device when the store has no statistics (a deployed store never runs ANALYZE): a label
 * search reads (label, id) (migration 16), an owner search (owner, id) and a state search (state, id)
 * (migration 17), each in id order, so a page costs the same for an owner of ten devices and of a million,
 * and a state few devices are in is not found by reading them all. With several filters the first of
 * label, owner, state chooses the index and the others are checked on its rows.
 */
export function listDevicesSql(filter: { owner?: string; state?: DeviceState; idPrefix?: string; label?: string; after?: string }, limit: number): { sql: string; args: unknown[] } {
  const p = filter.idPrefix;
  const fromPrefix = p !== undefined && (filter.after ?? '') < p;
  const { where, args } = conditions(
    fromPrefix ? ['id >= ?', p] : ['id > ?', filter.after ?? ''],
    ['id < ?', p === undefined ? undefined : p + '\x7f'],
    ['owner = ?', filter.owner],
    ['state = ?', filter.state],
    ['label = ?', filter.label],
  );
  const index =
    filter.label !== undefined ? ' INDEXED BY devices_label' : filter.owner !== undefined ? ' INDEXED BY devices_owner_id' : filter.state !== undefined ? ' INDEXED BY devices_state_id' : '';
  return { sql: `SELECT * FROM devices${index} WHERE ${where.join(' AND ')} ORDER BY id LIMIT ?`, args: [...args, limit + 1] };
}

/**
 * FIRMWARE_RUNNING_SUMMARY_SQL counts one firmware name's devices per running version (NULL: no load
 * receipt yet) on the index firmware_receipts_running (migration 22): a covering index scan of that
 * name's entries, no receipt row read (test/unit/store/sqlite-firmware-summary-plan.test.ts).
 */
export const FIRMWARE_RUNNING_SUMMARY_SQL = 'SELECT running_version AS v, COUNT(*) AS n FROM firmware_receipts WHERE name = ? GROUP BY running_version';
/** FIRMWARE_ERROR_SUMMARY_SQL: the same per load error code, on firmware_receipts_error. */
export const FIRMWARE_ERROR_SUMMARY_SQL = 'SELECT error_code AS c, COUNT(*) AS n FROM firmware_receipts WHERE name = ? AND error_code IS NOT NULL GROUP BY error_code ORDER BY error_code';

/**
 * REVOKED_IN_SHARD_SQL is one page of a CRL shard's entries, in serial order. `status = 'revoked'` is
 * written out (not bound) so SQLite can use the partial index certificates_crl_revoked (migration 12),
 * which covers every column read here.
 */
/** WAL_INDEX_HEADER: bytes of one copy of the wal-index header (WalIndexHdr) at the start of the -shm file */
const WAL_INDEX_HEADER = 48;

/**
 * openWalIndex opens the -shm file for statusVersion, only when the database really is in WAL mode (a file
 * system without shared memory leaves it in another journal mode, where a leftover -shm would never change)
 * and the file is there; otherwise statusVersion is unavailable and OCSP reads every status from the store.
 */
function openWalIndex(db: Database.Database, file: string): { fd: number; last: Buffer; now: Buffer; version: number; gen: number } | undefined {
  if (file === ':memory:' || String(db.pragma('journal_mode', { simple: true })).toLowerCase() !== 'wal') return undefined;
  try {
    return { fd: fs.openSync(`${file}-shm`, 'r'), last: Buffer.alloc(WAL_INDEX_HEADER), now: Buffer.alloc(WAL_INDEX_HEADER), version: 0, gen: -1 };
  } catch {
    return undefined;
  }
}

export const REVOKED_IN_SHARD_SQL =
  "SELECT serial, revoked_at, revocation_reason, invalidity_date FROM certificates WHERE issuer = ? AND shard = ? AND status = 'revoked' AND not_after > ? AND serial > ? ORDER BY serial LIMIT ?";

/**
 * SqliteStore is the embedded default store: one file, WAL journal, shared safely by the worker
 * processes of one machine (each opens its own connection; writers serialize on SQLite's lock).
 * synchronous=NORMAL in WAL mode keeps every committed transaction across a process crash.
 */
export class SqliteStore implements Store, AttestationStore, SnapshotSource, StatusVersion {
  private readonly db: Database.Database;
  /**
   * stmts caches prepared statements by SQL text (preparing costs more than running on the issuance path),
   * each with whether it writes (then stmt() asks the disk space guard first)
   */
  private readonly stmts = new Map<string, { s: Database.Statement; writes: boolean }>();
  /** space: refuses writes while the store cannot grow (disk-space-guard.ts); none for ':memory:' */
  private readonly space: DiskSpaceGuard | null = null;

  /** checkpointer: WAL checkpoints on a thread of their own (option backgroundCheckpoint), else SQLite's on commit */
  private readonly checkpointer: WalCheckpointer | null = null;

  /**
   * backgroundCheckpoint: checkpoint the WAL on a thread of its own (wal-checkpointer.ts) instead of in
   * the commit that crosses SQLite's 1000-page mark; the service's stores (createStore) use it unless
   * `store.checkpointThread` is off. Its checkpoint errors reach the disk space guard, so /healthz and
   * the writes see a database file that cannot take the WAL's pages.
   */
  constructor(file: string, opts: { backgroundCheckpoint?: boolean; busyTimeoutMs?: number } = {}) {
    // the file holds enrollment secrets' hashes and the CA state: 0600 in a 0700 directory, whatever the umask
    if (file !== ':memory:') createPrivateFile(file);
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.busyTimeoutMs = opts.busyTimeoutMs ?? BUSY_TIMEOUT_MS;
    this.db.pragma(`busy_timeout = ${this.busyTimeoutMs}`);
    this.db.pragma('foreign_keys = ON');
    this.migrate();
    this.removeOrphanedReleaseChunks();
    if (file !== ':memory:') this.space = new DiskSpaceGuard(file);
    if (opts.backgroundCheckpoint && this.space) {
      const space = this.space;
      this.db.pragma(`wal_autocheckpoint = ${FALLBACK_AUTOCHECKPOINT_PAGES}`);
      this.checkpointer = new WalCheckpointer(file, (f) => space.setCheckpointFailure(f));
    }
    // the group commit's own transaction control, outside stmt(): the disk space guard refuses its writes, not these
    this.control = {
      begin: this.db.prepare('BEGIN IMMEDIATE'),
      commit: this.db.prepare('COMMIT'),
      rollback: this.db.prepare('ROLLBACK'),
    };
    this.probeWrite = this.db.prepare('INSERT INTO store_probe (id, at) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET at = excluded.at');
    this.statusStmt = this.db.prepare('SELECT issuer, status, revoked_at, revocation_reason, not_after FROM certificates WHERE serial = ?');
    this.statusGenStmt = this.db.prepare('SELECT gen FROM status_generation WHERE id = 1');
    this.walIndex = openWalIndex(this.db, file);
  }
  private readonly statusStmt: Database.Statement;
  /** busyTimeoutMs: how long a write waits for another connection's write lock (BUSY_TIMEOUT_MS unless a test sets it) */
  private readonly busyTimeoutMs: number;
  /** control: the group commit's BEGIN IMMEDIATE, COMMIT and ROLLBACK (beginGroup) */
  private readonly control: Record<'begin' | 'commit' | 'rollback', Database.Statement>;
  /** statusGenStmt: the status generation (migration 26), read by statusVersion when the wal-index header moved */
  private readonly statusGenStmt: Database.Statement;
  /** probeWrite: the health probe's write, outside stmt() so the disk space guard does not refuse it first */
  private readonly probeWrite: Database.Statement;
  /** walIndex: the -shm file, the wal-index header and the status generation last seen (statusVersion) */
  private readonly walIndex?: { fd: number; last: Buffer; now: Buffer; version: number; gen: number };

  private stmt(sql: string): Database.Statement {
    let e = this.stmts.get(sql);
    if (!e) {
      const s = this.db.prepare(sql);
      // SAVEPOINT, RELEASE and ROLLBACK TO count as read-only (sqlite3_stmt_readonly): a refused job still rolls back
      e = { s, writes: !s.readonly };
      this.stmts.set(sql, e);
    }
    // a write while the store cannot grow: refused before it runs (inside a transaction, which rolls back)
    if (e.writes && this.space) this.space.assertWritable();
    return e.s;
  }

  private migrate(): void {
    this.db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)');
    this.db
      .transaction(() => {
        const row = this.db.prepare('SELECT version FROM schema_version').get() as Row | undefined;
        let v = row ? Number(row.version) : 0;
        if (!row) this.db.prepare('INSERT INTO schema_version (version) VALUES (0)').run();
        if (v > MIGRATIONS.length) throw new DeviceCaError('config', `store schema version ${v} is newer than this device-ca (${MIGRATIONS.length})`);
        for (; v < MIGRATIONS.length; v++) this.db.exec(MIGRATIONS[v]);
        this.db.prepare('UPDATE schema_version SET version = ?').run(v);
      })
      .immediate();
  }

  async close(): Promise<void> {
    if (this.queue.length) this.flush(true); // nothing queued is lost, even while another connection holds the lock
    await this.checkpointer?.close();
    this.space?.close();
    this.db.close();
    if (this.walIndex && this.walIndex.fd >= 0) {
      fs.closeSync(this.walIndex.fd);
      this.walIndex.fd = -1;
    }
  }

  // ---- audit ----
  private appendAuditSync(e: AuditInput, at = new Date()): AuditRecord {
    const last = this.stmt('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1').get() as Row | undefined;
    const rec = nextAuditRecord(last ? { seq: Number(last.seq), hash: String(last.hash) } : null, e, at);
    this.stmt('INSERT INTO audit (seq, at, type, actor, subject, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)').run(
      rec.seq,
      ms(at),
      rec.type,
      rec.actor,
      rec.subject,
      JSON.stringify(rec.data),
      rec.prevHash,
      rec.hash,
    );
    return rec;
  }

  async appendAudit(e: AuditInput): Promise<AuditRecord> {
    return this.grouped(() => this.appendAuditSync(e));
  }

  // ---- group commit ----
  private queue: { fn: () => unknown; resolve: (v: unknown) => void; reject: (e: unknown) => void }[] = [];
  private flushScheduled = false;
  /** busyRetry: the timer of a group commit waiting for another connection's write lock (beginGroup), with when it first found it taken */
  private busyRetry: { timer: NodeJS.Timeout; since: number; delayMs: number } | null = null;

  /**
   * grouped runs a write in the next group commit: the writes queued during one event-loop turn share one
   * IMMEDIATE transaction, each inside its own savepoint, so one failing write rolls back alone. A caller's
   * promise settles only after the whole group committed, so "recorded before returned" still holds, and
   * under load one fsync-free commit serves many issuances.
   */
  private grouped<T>(fn: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ fn, resolve: resolve as (v: unknown) => void, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /**
   * beginGroup opens the group commit's IMMEDIATE transaction without waiting for the write lock when
   * another connection (a cluster worker, another node's CLI) holds it: false then, and flush() tries again on
   * a timer. SQLite's busy handler would instead sleep inside the synchronous call (1, 2, 5, 10, 15 ... 100 ms,
   * up to busy_timeout) with the event loop stopped: in the mTLS re-enroll bench the workers spent hundreds
   * of milliseconds at a time so, no TLS handshake served meanwhile. busy_timeout is 0 only for this BEGIN;
   * the connection's other transactions keep BUSY_TIMEOUT_MS. `blocking` (close) waits as they do.
   */
  private beginGroup(blocking: boolean): boolean {
    const c = this.control;
    if (blocking) {
      c.begin.run();
      return true;
    }
    // by exec, not a cached statement: SQLite applies PRAGMA busy_timeout when it compiles the pragma, so
    // running a prepared one again changes nothing (5 us for the pair)
    this.db.exec('PRAGMA busy_timeout = 0');
    try {
      c.begin.run();
      return true;
    } catch (e) {
      const code = (e as { code?: unknown })?.code;
      if (typeof code === 'string' && code.startsWith('SQLITE_BUSY')) return false;
      throw e;
    } finally {
      this.db.exec(`PRAGMA busy_timeout = ${this.busyTimeoutMs}`);
    }
  }

  /**
   * waitForLock schedules the next attempt of a group commit whose BEGIN found the write lock taken: after
   * 1 ms, doubling to BUSY_RETRY_MAX_MS, while writes queued meanwhile join the group. Past the connection's
   * busy_timeout the queued writes fail as SQLite's busy handler would have failed them (SQLITE_BUSY:
   * 'store-unavailable', 503 with Retry-After), nothing of them written.
   */
  private waitForLock(): void {
    const now = Date.now();
    const since = this.busyRetry?.since ?? now;
    if (now - since >= this.busyTimeoutMs) {
      this.busyRetry = null;
      this.flushScheduled = false;
      const jobs = this.queue;
      this.queue = [];
      const e = new DeviceCaError('store-unavailable', 'store unavailable (locked by another writer)', { detail: `SQLITE_BUSY: write lock held for ${now - since} ms`, retryAfterSeconds: 2 });
      for (const j of jobs) j.reject(e);
      return;
    }
    const delayMs = this.busyRetry ? Math.min(this.busyRetry.delayMs * 2, BUSY_RETRY_MAX_MS) : 1;
    this.busyRetry = { since, delayMs, timer: setTimeout(() => this.flush(), delayMs) };
  }

  private flush(blocking = false): void {
    if (this.busyRetry) clearTimeout(this.busyRetry.timer);
    if (this.queue.length === 0) {
      this.busyRetry = null;
      this.flushScheduled = false;
      return;
    }
    // the write lock first: while another connection holds it the jobs stay queued and the event loop runs
    let begun: boolean;
    try {
      begun = this.beginGroup(blocking);
    } catch (e) {
      this.busyRetry = null;
      this.flushScheduled = false;
      const jobs = this.queue;
      this.queue = [];
      for (const j of jobs) j.reject(e);
      return;
    }
    if (!begun) return this.waitForLock();
    this.busyRetry = null;
    this.flushScheduled = false;
    const jobs = this.queue;
    this.queue = [];
    const results: { ok: boolean; v: unknown }[] = [];
    // each job in its own savepoint, by cached statements: db.transaction(fn) per job built new wrapper
    // functions for every write (8% of recordIssuance's time in a profile)
    const savepoint = this.stmt('SAVEPOINT job');
    const release = this.stmt('RELEASE job');
    const rollback = this.stmt('ROLLBACK TO job');
    try {
      for (const j of jobs) {
        savepoint.run();
        try {
          const v = j.fn();
          release.run();
          results.push({ ok: true, v });
        } catch (e) {
          rollback.run();
          release.run();
          // one error class leaves the store: a full disk or a damaged file is 'store-unavailable',
          // SQLite's other errors 'internal' (detail logged only)
          results.push({
            ok: false,
            v: e instanceof DeviceCaError ? e : (sqliteUnavailable(e) ?? new DeviceCaError('internal', 'store write failed', { detail: (e as Error)?.message, cause: e })),
          });
        }
      }
      this.control.commit.run();
    } catch (e) {
      // as db.transaction() does: whatever failed, the group's transaction is not left open
      if (this.db.inTransaction) this.control.rollback.run();
      for (const j of jobs) j.reject(e);
      return;
    }
    jobs.forEach((j, i) => (results[i].ok ? j.resolve(results[i].v) : j.reject(results[i].v)));
  }

  async listAudit(filter: { subject?: string } & PageRequest): Promise<Page<AuditRecord>> {
    const after = seqCursor(filter.after);
    const limit = pageLimit(filter);
    const rows = (
      filter.subject !== undefined
        ? this.stmt('SELECT * FROM audit WHERE seq > ? AND subject = ? ORDER BY seq LIMIT ?').all(after, filter.subject, limit + 1)
        : this.stmt('SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT ?').all(after, limit + 1)
    ) as Row[];
    return pageOf(rows.map(auditFromRow), limit, (r) => String(r.seq));
  }

  // ---- devices and secrets ----
  async createDevice(
    d: Omit<DeviceRecord, 'createdAt' | 'updatedAt' | 'pendingOwner'>,
    secret: Omit<SecretRecord, 'id' | 'deviceId' | 'usedAt' | 'certSerial'>,
    audit: AuditInput,
  ): Promise<DeviceRecord> {
    const now = new Date();
    return this.db
      .transaction(() => {
        if (this.stmt('SELECT 1 FROM devices WHERE id = ?').get(d.id)) throw new DeviceCaError('conflict', `device ${d.id} already exists`);
        this.stmt('INSERT INTO devices (id, owner, label, state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)').run(d.id, d.owner, d.label, d.state, ms(now), ms(now));
        this.stmt('INSERT INTO secrets (device_id, hash, expires_at) VALUES (?, ?, ?)').run(d.id, secret.hash, ms(secret.expiresAt));
        this.appendAuditSync(audit, now);
        return { ...d, pendingOwner: null, createdAt: now, updatedAt: now };
      })
      .immediate();
  }

  async createDevices(
    items: { device: Omit<DeviceRecord, 'createdAt' | 'updatedAt' | 'pendingOwner'>; secret: Omit<SecretRecord, 'id' | 'deviceId' | 'usedAt' | 'certSerial'>; audit: AuditInput }[],
    opts: { skipExisting: boolean },
  ): Promise<{ created: string[]; existing: string[] }> {
    distinctIds(items.map((i) => i.device.id));
    const now = new Date();
    return this.db
      .transaction(() => {
        const created: string[] = [];
        const existing: string[] = [];
        for (const { device: d, secret, audit } of items) {
          if (this.stmt('SELECT 1 FROM devices WHERE id = ?').get(d.id)) {
            if (!opts.skipExisting) throw new DeviceCaError('conflict', `device ${d.id} already exists`);
            existing.push(d.id);
            continue;
          }
          this.stmt('INSERT INTO devices (id, owner, label, state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)').run(d.id, d.owner, d.label, d.state, ms(now), ms(now));
          this.stmt('INSERT INTO secrets (device_id, hash, expires_at) VALUES (?, ?, ?)').run(d.id, secret.hash, ms(secret.expiresAt));
          this.appendAuditSync(audit, now);
          created.push(d.id);
        }
        return { created, existing };
      })
      .immediate();
  }

  async getDevice(id: string): Promise<DeviceRecord | null> {
    const r = this.stmt('SELECT * FROM devices WHERE id = ?').get(id) as Row | undefined;
    return r ? deviceFromRow(r) : null;
  }

  async listDevices(filter: { owner?: string; state?: DeviceState; idPrefix?: string; label?: string } & PageRequest): Promise<Page<DeviceRecord>> {
    const limit = pageLimit(filter);
    const q = listDevicesSql(filter, limit);
    const rows = this.stmt(q.sql).all(...q.args) as Row[];
    return pageOf(rows.map(deviceFromRow), limit, (d) => d.id);
  }

  async countDevices(o: { owner?: string; topOwners: number }): Promise<DeviceCounts> {
    const key = o.owner === undefined ? undefined : '+' + o.owner;
    const where = key === undefined ? '' : 'WHERE owner_key = ?';
    const args = key === undefined ? [] : [key];
    // one read transaction: the two sums agree even while another process writes
    return this.db.transaction(() => {
      const byState = emptyDeviceCounts();
      let total = 0;
      for (const r of this.stmt(`SELECT state, SUM(n) AS n FROM device_counts ${where} GROUP BY state`).all(...args) as Row[]) {
        if ((DEVICE_STATES as string[]).includes(String(r.state))) byState[String(r.state) as DeviceState] = Number(r.n);
        total += Number(r.n);
      }
      const top = this.stmt(`SELECT owner_key, SUM(n) AS n FROM device_counts ${where} GROUP BY owner_key HAVING SUM(n) > 0 ORDER BY n DESC, owner_key LIMIT ?`).all(...args, o.topOwners) as Row[];
      return { total, byState, topOwners: top.map((r) => ({ owner: String(r.owner_key) === '-' ? null : String(r.owner_key).slice(1), count: Number(r.n) })) };
    })();
  }

  async activeSecrets(deviceId: string, now: Date): Promise<SecretRecord[]> {
    const rows = this.stmt('SELECT * FROM secrets WHERE device_id = ? AND used_at IS NULL AND expires_at > ? ORDER BY id DESC').all(deviceId, ms(now)) as Row[];
    return rows.map(secretFromRow);
  }

  async spentSecrets(deviceId: string, usedSince: Date): Promise<SecretRecord[]> {
    const rows = this.stmt('SELECT * FROM secrets WHERE device_id = ? AND used_at >= ? AND cert_serial IS NOT NULL ORDER BY id DESC').all(deviceId, ms(usedSince)) as Row[];
    return rows.map(secretFromRow);
  }

  // ---- certificates ----
  async getCertificate(serial: string): Promise<CertificateRecord | null> {
    const r = this.stmt('SELECT * FROM certificates WHERE serial = ?').get(serial) as Row | undefined;
    return r ? certFromRow(r) : null;
  }

  async listCertificates(filter: { deviceId?: string; status?: CertificateStatus; owner?: string } & PageRequest): Promise<Page<CertificateRecord>> {
    const limit = pageLimit(filter);
    const { where, args } = conditions(
      ['serial > ?', filter.after ?? ''],
      ['device_id = ?', filter.deviceId],
      ['status = ?', filter.status],
      ['device_id IN (SELECT id FROM devices WHERE owner = ?)', filter.owner],
    );
    const rows = this.stmt(`SELECT * FROM certificates WHERE ${where.join(' AND ')} ORDER BY serial LIMIT ?`).all(...args, limit + 1) as Row[];
    return pageOf(rows.map(certFromRow), limit, (c) => c.serial);
  }

  async recordIssuance(args: Parameters<Store['recordIssuance']>[0]): Promise<void> {
    const c = args.cert;
    const now = new Date();
    return this.grouped(() => {
      // the RA checked the device's state before signing; a release, suspension or retirement that
      // committed meanwhile must not be outlived by a certificate recorded after it
      if (c.deviceId !== null) {
        const d = this.stmt('SELECT state FROM devices WHERE id = ?').get(c.deviceId) as Row | undefined;
        if (d && d.state !== 'registered' && d.state !== 'active') throw new DeviceCaError('forbidden', `device is ${String(d.state)}`);
      }
      if (args.consumeSecretId !== undefined) {
        const r = this.stmt('UPDATE secrets SET used_at = ?, cert_serial = ? WHERE id = ? AND used_at IS NULL').run(ms(now), c.serial, args.consumeSecretId);
        if (r.changes !== 1) throw new DeviceCaError('unauthenticated', 'enrollment secret already used');
      }
      this.stmt(
        `INSERT INTO certificates (serial, device_id, issuer, subject, profile, not_before, not_after, shard, spki_sha256, der, status, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'valid', ?)`,
      ).run(c.serial, c.deviceId, c.issuer, c.subject, c.profile, ms(c.notBefore), ms(c.notAfter), c.shard, c.spkiSha256, c.der, ms(now));
      if (c.deviceId !== null) this.stmt("UPDATE devices SET state = 'active', updated_at = ? WHERE id = ? AND state = 'registered'").run(ms(now), c.deviceId);
      if (args.requestId !== undefined) this.stmt("UPDATE requests SET status = 'issued', cert_serial = ? WHERE id = ? AND status = 'approved'").run(c.serial, args.requestId);
      this.appendAuditSync(args.audit, now);
    });
  }

  async countIssuedPerHour(o: { from: Date; hours: number }): Promise<number[]> {
    const first = Math.floor(ms(o.from) / HOUR_MS);
    const out = new Array<number>(chartBuckets(o.hours)).fill(0);
    for (const r of this.stmt('SELECT hour, n FROM cert_issued_hours WHERE hour >= ? AND hour < ?').all(first, first + o.hours) as Row[]) out[Number(r.hour) - first] = Number(r.n);
    return out;
  }

  async countExpiringPerDay(o: { from: Date; days: number }): Promise<number[]> {
    const firstDay = Math.floor(ms(o.from) / DAY_MS);
    const out = new Array<number>(chartBuckets(o.days)).fill(0);
    // one read transaction: the day counts and the index agree even while another process writes
    return this.db.transaction(() => {
      // today from `from` on: the partial index's range within one day (INDEXED BY: the plan cannot drift
      // to a scan); certificates that expired earlier today are still 'valid' rows, the day count has them
      const today = this.stmt(
        `SELECT COUNT(*) AS n FROM certificates INDEXED BY certificates_valid_expiry
           WHERE status = 'valid' AND device_id IS NOT NULL AND not_after >= ? AND not_after < ?`,
      ).get(ms(o.from), (firstDay + 1) * DAY_MS) as Row;
      out[0] = Number(today.n);
      // the later days from the counts the triggers keep (cert_expiry_days): one row per day
      for (const r of this.stmt('SELECT day, n FROM cert_expiry_days WHERE day > ? AND day < ?').all(firstDay, firstDay + o.days) as Row[]) out[Number(r.day) - firstDay] = Number(r.n);
      return out;
    })();
  }

  // ---- authentication attempts ----
  async reserveAuthAttempt(key: string, now: Date, rules: AuthAttemptRules): Promise<AuthAttemptReservation> {
    const cutoff = ms(now) - rules.windowSeconds * 1000;
    // in the group commit: the count and the insert are still one IMMEDIATE transaction, shared with the
    // other writes of this event-loop turn (two fewer commits per Basic enrollment)
    return this.grouped((): AuthAttemptReservation => {
      // expired attempts of any key, oldest first, a few per call: they leave AUTH_PURGE_BATCH times
      // faster than attempts arrive, at a bounded cost per attempt
      this.stmt('DELETE FROM auth_attempts WHERE id IN (SELECT id FROM auth_attempts ORDER BY id LIMIT ?) AND at <= ?').run(AUTH_PURGE_BATCH, cutoff);
      this.stmt('DELETE FROM auth_attempts WHERE key = ? AND at <= ?').run(key, cutoff);
      const r = this.stmt('SELECT COUNT(*) AS n, MIN(at) AS oldest FROM auth_attempts WHERE key = ?').get(key) as Row;
      const n = Number(r.n);
      if (n >= rules.limit) return { allowed: false, retryAt: new Date(Number(r.oldest) + rules.windowSeconds * 1000) };
      const id = Number(this.stmt('INSERT INTO auth_attempts (key, at, evictable) VALUES (?, ?, ?)').run(key, ms(now), rules.evictable ? 1 : 0).lastInsertRowid);
      // ids only grow (AUTOINCREMENT), so the evictable attempts left have ids in (id - maxEvictable, id]
      if (rules.evictable) this.stmt('DELETE FROM auth_attempts WHERE evictable = 1 AND id <= ?').run(id - rules.maxEvictable);
      return { allowed: true, attemptId: String(id), attempts: n + 1 };
    });
  }

  async forgiveAuthAttempt(attemptId: string): Promise<void> {
    if (!/^\d{1,15}$/.test(attemptId)) return;
    return this.grouped(() => void this.stmt('DELETE FROM auth_attempts WHERE id = ?').run(Number(attemptId)));
  }

  async countAuthFailures(key: string, now: Date, windowSeconds: number): Promise<{ count: number; oldest: Date | null }> {
    const r = this.stmt('SELECT COUNT(*) AS n, MIN(at) AS oldest FROM auth_attempts WHERE key = ? AND at > ?').get(key, ms(now) - windowSeconds * 1000) as Row;
    return { count: Number(r.n), oldest: dateOrNull(r.oldest) };
  }

  // ---- manual approval queue ----
  async createRequest(r: Parameters<Store['createRequest']>[0], audit: AuditInput): Promise<EnrollmentRequestRecord> {
    const now = new Date();
    return this.db
      .transaction(() => {
        this.db
          .prepare("INSERT INTO requests (id, device_id, label, operation, csr_sha256, csr, status, created_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)")
          .run(r.id, r.deviceId, r.label, r.operation, r.csrSha256, r.csr, ms(now));
        this.appendAuditSync(audit, now);
        return { ...r, status: 'pending' as const, certSerial: null, createdAt: now, decidedAt: null, decidedBy: null };
      })
      .immediate();
  }

  async findRequest(deviceId: string, csrSha256: string): Promise<EnrollmentRequestRecord | null> {
    const r = this.stmt('SELECT * FROM requests WHERE device_id = ? AND csr_sha256 = ? ORDER BY created_at DESC LIMIT 1').get(deviceId, csrSha256) as Row | undefined;
    return r ? requestFromRow(r) : null;
  }

  async listRequests(filter: { status?: RequestStatus } & PageRequest): Promise<Page<EnrollmentRequestRecord>> {
    const limit = pageLimit(filter);
    const rows = (
      filter.status !== undefined
        ? this.stmt('SELECT * FROM requests WHERE id > ? AND status = ? ORDER BY id LIMIT ?').all(filter.after ?? '', filter.status, limit + 1)
        : this.stmt('SELECT * FROM requests WHERE id > ? ORDER BY id LIMIT ?').all(filter.after ?? '', limit + 1)
    ) as Row[];
    return pageOf(rows.map(requestFromRow), limit, (r) => r.id);
  }

  async decideRequest(id: string, status: 'approved' | 'rejected', by: string, audit: AuditInput): Promise<EnrollmentRequestRecord> {
    const now = new Date();
    return this.db
      .transaction(() => {
        const r = this.stmt('SELECT * FROM requests WHERE id = ?').get(id) as Row | undefined;
        if (!r) throw new DeviceCaError('not-found', `no request ${id}`);
        if (r.status !== 'pending') throw new DeviceCaError('conflict', `request ${id} is ${r.status}, not pending`);
        this.stmt('UPDATE requests SET status = ?, decided_at = ?, decided_by = ? WHERE id = ?').run(status, ms(now), by, id);
        this.appendAuditSync(audit, now);
        return { ...requestFromRow(r), status, decidedAt: now, decidedBy: by };
      })
      .immediate();
  }

  // ---- revocation and lifecycle ----
  private bumpShard(issuer: string, shard: number): void {
    this.db.prepare('INSERT INTO crl_shards (issuer, shard, revision) VALUES (?, ?, 1) ON CONFLICT(issuer, shard) DO UPDATE SET revision = revision + 1').run(issuer, shard);
  }

  async applyDeviceChange(c: DeviceChange): Promise<{ device: DeviceRecord; changed: CertificateChange[] }> {
    const now = new Date();
    return this.db
      .transaction(() => {
        const row = this.stmt('SELECT * FROM devices WHERE id = ?').get(c.deviceId) as Row | undefined;
        if (!row) throw new DeviceCaError('not-found', `no device ${c.deviceId}`);
        const state = String(row.state) as DeviceState;
        if (!c.fromStates.includes(state)) throw new DeviceCaError('conflict', `device ${c.deviceId} is ${state}`);
        const pending = row.pending_owner === null || row.pending_owner === undefined ? null : String(row.pending_owner);
        if ((c.expect?.owner !== undefined && c.expect.owner !== row.owner) || (c.expect?.pendingOwner !== undefined && c.expect.pendingOwner !== pending))
          throw new DeviceCaError('conflict', `device ${c.deviceId} changed meanwhile; try again`);
        const changed: CertificateChange[] = [];
        if (c.revoke) {
          // holdOnly: valid -> hold. Otherwise: valid or held -> revoked with the reason.
          const sql = c.revoke.holdOnly
            ? "SELECT serial, issuer, shard FROM certificates WHERE device_id = ? AND status = 'valid' AND not_after > ?"
            : "SELECT serial, issuer, shard FROM certificates WHERE device_id = ? AND not_after > ? AND (status = 'valid' OR revocation_reason = 'certificateHold')";
          const certs = this.stmt(sql).all(c.deviceId, ms(now)) as Row[];
          const upd = this.stmt("UPDATE certificates SET status = 'revoked', revoked_at = ?, revocation_reason = ? WHERE serial = ?");
          for (const x of certs) {
            upd.run(ms(c.revoke.at), c.revoke.reason, x.serial);
            this.bumpShard(String(x.issuer), Number(x.shard));
            changed.push({ serial: String(x.serial), issuer: String(x.issuer), shard: Number(x.shard), status: 'revoked', reason: c.revoke.reason });
          }
        }
        if (c.releaseHolds) {
          const held = this.stmt("SELECT serial, issuer, shard FROM certificates WHERE device_id = ? AND status = 'revoked' AND revocation_reason = 'certificateHold'").all(c.deviceId) as Row[];
          const upd = this.stmt("UPDATE certificates SET status = 'valid', revoked_at = NULL, revocation_reason = NULL WHERE serial = ?");
          for (const x of held) {
            upd.run(x.serial);
            this.bumpShard(String(x.issuer), Number(x.shard));
            changed.push({ serial: String(x.serial), issuer: String(x.issuer), shard: Number(x.shard), status: 'valid', reason: null });
          }
        }
        if (c.deleteSecrets) this.stmt('DELETE FROM secrets WHERE device_id = ?').run(c.deviceId);
        if (c.addSecret) this.stmt('INSERT INTO secrets (device_id, hash, expires_at) VALUES (?, ?, ?)').run(c.deviceId, c.addSecret.hash, ms(c.addSecret.expiresAt));
        if (c.cancelRequests)
          this.stmt("UPDATE requests SET status = 'rejected', decided_at = ?, decided_by = 'lifecycle' WHERE device_id = ? AND status IN ('pending', 'approved')").run(ms(now), c.deviceId);
        const owner = c.newOwner !== undefined ? c.newOwner : row.owner;
        const pendingOwner = c.pendingOwner !== undefined ? c.pendingOwner : pending;
        this.stmt('UPDATE devices SET state = ?, owner = ?, pending_owner = ?, updated_at = ? WHERE id = ?').run(c.toState, owner, pendingOwner, ms(now), c.deviceId);
        this.appendAuditSync({ ...c.audit, data: { ...c.audit.data, certificates: changed.map((x) => x.serial) } }, now);
        return { device: deviceFromRow({ ...row, state: c.toState, owner, pending_owner: pendingOwner, updated_at: ms(now) }), changed };
      })
      .immediate();
  }

  async revokeCertificate(serial: string, reason: RevocationReason, at: Date, invalidityDate: Date | null, audit: AuditInput): Promise<{ cert: CertificateRecord; changed: boolean }> {
    return this.db
      .transaction(() => {
        const r = this.stmt('SELECT * FROM certificates WHERE serial = ?').get(serial) as Row | undefined;
        if (!r) throw new DeviceCaError('not-found', `no certificate with serial ${serial}`);
        const cur = certFromRow(r);
        const onHold = cur.status === 'revoked' && cur.revocationReason === 'certificateHold';
        if (cur.status === 'revoked' && !(onHold && reason !== 'certificateHold')) return { cert: cur, changed: false };
        this.stmt("UPDATE certificates SET status = 'revoked', revoked_at = ?, revocation_reason = ?, invalidity_date = ? WHERE serial = ?").run(
          ms(at),
          reason,
          invalidityDate ? ms(invalidityDate) : null,
          serial,
        );
        this.bumpShard(cur.issuer, cur.shard);
        this.appendAuditSync(audit);
        return { cert: { ...cur, status: 'revoked' as const, revokedAt: at, revocationReason: reason, invalidityDate }, changed: true };
      })
      .immediate();
  }

  async releaseHold(serial: string, audit: AuditInput): Promise<CertificateRecord> {
    return this.db
      .transaction(() => {
        const r = this.stmt('SELECT * FROM certificates WHERE serial = ?').get(serial) as Row | undefined;
        if (!r) throw new DeviceCaError('not-found', `no certificate with serial ${serial}`);
        const cur = certFromRow(r);
        if (!(cur.status === 'revoked' && cur.revocationReason === 'certificateHold')) throw new DeviceCaError('conflict', `certificate ${serial} is not on hold`);
        this.stmt("UPDATE certificates SET status = 'valid', revoked_at = NULL, revocation_reason = NULL WHERE serial = ?").run(serial);
        this.bumpShard(cur.issuer, cur.shard);
        this.appendAuditSync(audit);
        return { ...cur, status: 'valid' as const, revokedAt: null, revocationReason: null };
      })
      .immediate();
  }

  async shardRevision(issuer: string, shard: number): Promise<number> {
    const r = this.stmt('SELECT revision FROM crl_shards WHERE issuer = ? AND shard = ?').get(issuer, shard) as Row | undefined;
    return r ? Number(r.revision) : 0;
  }

  async *revokedInShard(issuer: string, shard: number, now: Date, pageSize = 10000): AsyncIterable<RevokedRow[]> {
    // keyset pagination: each page is its own short read, so writers are never blocked for long
    const stmt = this.stmt(REVOKED_IN_SHARD_SQL);
    stmt.raw(true);
    let after = '';
    for (;;) {
      const rows = stmt.all(issuer, shard, ms(now), after, pageSize) as unknown[][];
      if (rows.length === 0) return;
      yield rows.map((x) => ({ serial: String(x[0]), revokedAt: date(x[1]), reason: x[2] === null ? null : (String(x[2]) as RevocationReason), invalidityDate: dateOrNull(x[3]) }));
      if (rows.length < pageSize) return;
      after = String(rows[rows.length - 1][0]);
    }
  }

  async nextCrlNumber(issuer: string): Promise<bigint> {
    return this.db
      .transaction(() => {
        this.stmt('INSERT INTO crl_numbers (issuer, next_number) VALUES (?, 1) ON CONFLICT(issuer) DO UPDATE SET next_number = next_number + 1').run(issuer);
        return BigInt((this.stmt('SELECT next_number FROM crl_numbers WHERE issuer = ?').get(issuer) as Row).next_number as number);
      })
      .immediate();
  }

  async saveCrl(c: CrlRecord): Promise<void> {
    this.db
      .prepare(
        `INSERT INTO crls (issuer, shard, number, revision, this_update, next_update, entries, der) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT(issuer, shard) DO UPDATE SET number = excluded.number, revision = excluded.revision, this_update = excluded.this_update,
           next_update = excluded.next_update, entries = excluded.entries, der = excluded.der WHERE excluded.number > crls.number`,
      )
      .run(c.issuer, c.shard, Number(c.number), c.revision, ms(c.thisUpdate), ms(c.nextUpdate), c.entries, c.der);
  }

  async getCrl(issuer: string, shard: number): Promise<CrlRecord | null> {
    const r = this.stmt('SELECT * FROM crls WHERE issuer = ? AND shard = ?').get(issuer, shard) as Row | undefined;
    if (!r) return null;
    return {
      issuer: String(r.issuer),
      shard: Number(r.shard),
      number: BigInt(r.number as number),
      revision: Number(r.revision),
      thisUpdate: date(r.this_update),
      nextUpdate: date(r.next_update),
      entries: Number(r.entries),
      der: r.der as Buffer,
    };
  }

  async crlInfo(issuer: string, shard: number): Promise<Omit<CrlRecord, 'der'> | null> {
    const r = this.stmt('SELECT issuer, shard, number, revision, this_update, next_update, entries FROM crls WHERE issuer = ? AND shard = ?').get(issuer, shard) as Row | undefined;
    if (!r) return null;
    return {
      issuer: String(r.issuer),
      shard: Number(r.shard),
      number: BigInt(r.number as number),
      revision: Number(r.revision),
      thisUpdate: date(r.this_update),
      nextUpdate: date(r.next_update),
      entries: Number(r.entries),
    };
  }

  /**
   * statusVersion (StatusVersion, store/status-version.ts): changes when a certificate's status may have been
   * changed since the last call, by any connection. It first reads the first copy of the wal-index header
   * from the -shm file (https://sqlite.org/walformat.html §2.1: iChange, mxFrame, the last frame's checksum
   * and the salts), which every commit rewrites before it returns, whichever process made it: one pread
   * without a lock (a read transaction, even PRAGMA data_version, takes the WAL read lock, which costs as much
   * as the row read it would save once the worker processes contend for it, bench/ocsp-http). Only when the
   * header moved does it read the status generation (migrations 26 and 27: a value the triggers on `certificates`
   * set afresh at random with every status change and every delete, in the same transaction), so a commit that changed no
   * status (issuance, a lease renewal, a CRL, an audit record: most commits of a busy CA) keeps the version,
   * and the OCSP statuses kept under it (bench/scale: every commit used to send each worker back to the
   * certificates table for every status it kept). A header read in the middle of a commit is at worst a
   * change seen once more, never a change missed: that commit has not returned yet, and the generation is
   * read after the header, so it holds at least every commit the header showed.
   *
   * A certificate added does not move the generation: a caller must not keep an absent row (null).
   */
  statusVersion(): number {
    const w = this.walIndex;
    if (!w) throw new DeviceCaError('internal', 'statusVersion: no wal-index (an in-memory database, or not in WAL mode)');
    if (fs.readSync(w.fd, w.now, 0, WAL_INDEX_HEADER, 0) !== WAL_INDEX_HEADER) throw new DeviceCaError('internal', 'statusVersion: short read of the wal-index header');
    if (!w.now.equals(w.last)) {
      const gen = Number((this.statusGenStmt.get() as Row).gen);
      // the header is taken as seen only once the generation read succeeded: a failed read is tried again
      w.now.copy(w.last);
      if (gen !== w.gen) {
        w.gen = gen;
        w.version++;
      }
    }
    return w.version;
  }

  /** statusVersionReader (StatusVersion): statusVersion, unwrapped by the service's store wrappers */
  statusVersionReader(): () => number {
    return () => this.statusVersion();
  }

  async certificateStatus(serial: string): Promise<Pick<CertificateRecord, 'serial' | 'issuer' | 'status' | 'revokedAt' | 'revocationReason' | 'notAfter'> | null> {
    const r = this.statusStmt.get(serial) as Row | undefined;
    if (!r) return null;
    return {
      serial,
      issuer: String(r.issuer),
      status: String(r.status) as CertificateStatus,
      revokedAt: dateOrNull(r.revoked_at),
      revocationReason: r.revocation_reason === null ? null : (String(r.revocation_reason) as RevocationReason),
      notAfter: date(r.not_after),
    };
  }

  // ---- admin API tokens ----
  async createToken(t: Omit<TokenRecord, 'createdAt' | 'revokedAt'>, audit: AuditInput): Promise<TokenRecord> {
    const now = new Date();
    return this.db
      .transaction(() => {
        this.stmt('INSERT INTO tokens (id, hash, scope, description, created_at) VALUES (?, ?, ?, ?, ?)').run(t.id, t.hash, t.scope, t.description, ms(now));
        this.appendAuditSync(audit, now);
        return { ...t, createdAt: now, revokedAt: null };
      })
      .immediate();
  }

  async findToken(hash: string): Promise<TokenRecord | null> {
    const r = this.stmt('SELECT * FROM tokens WHERE hash = ?').get(hash) as Row | undefined;
    return r ? tokenFromRow(r) : null;
  }

  async listTokens(page: PageRequest): Promise<Page<TokenRecord>> {
    // cursor "<created ms>:<id>": creation order, ties broken by id
    const limit = pageLimit(page);
    let rows: Row[];
    if (page.after) {
      const m = /^(\d{1,15}):(.+)$/.exec(page.after);
      if (!m) throw new DeviceCaError('bad-request', 'after: not a cursor of this list');
      rows = this.stmt('SELECT * FROM tokens WHERE created_at > ? OR (created_at = ? AND id > ?) ORDER BY created_at, id LIMIT ?').all(Number(m[1]), Number(m[1]), m[2], limit + 1) as Row[];
    } else rows = this.stmt('SELECT * FROM tokens ORDER BY created_at, id LIMIT ?').all(limit + 1) as Row[];
    return pageOf(rows.map(tokenFromRow), limit, (t) => `${t.createdAt.getTime()}:${t.id}`);
  }

  async revokeToken(id: string, audit: AuditInput): Promise<TokenRecord> {
    const now = new Date();
    return this.db
      .transaction(() => {
        const r = this.stmt('SELECT * FROM tokens WHERE id = ?').get(id) as Row | undefined;
        if (!r) throw new DeviceCaError('not-found', `no token ${id}`);
        if (r.revoked_at === null) this.stmt('UPDATE tokens SET revoked_at = ? WHERE id = ?').run(ms(now), id);
        this.appendAuditSync(audit, now);
        return { ...tokenFromRow(r), revokedAt: dateOrNull(r.revoked_at) ?? now };
      })
      .immediate();
  }
  // ---- SCEP transactions ----
  async claimScepTransaction(rec: Omit<ScepTransactionRecord, 'outcome' | 'pending'>, now: Date): Promise<ScepTransactionRecord> {
    return this.db
      .transaction((): ScepTransactionRecord => {
        // expired rows go a few at a time, so the table stays bounded without a sweeper
        this.stmt('DELETE FROM scep_transactions WHERE key IN (SELECT key FROM scep_transactions WHERE expires_at <= ? LIMIT 16)').run(ms(now));
        const row = this.stmt('SELECT * FROM scep_transactions WHERE key = ? AND expires_at > ?').get(rec.key, ms(now)) as Row | undefined;
        if (row) return scepTransactionFromRow(row);
        this.stmt('INSERT OR REPLACE INTO scep_transactions (key, request_sha256, outcome, pending, expires_at) VALUES (?, ?, NULL, NULL, ?)').run(rec.key, rec.requestSha256, ms(rec.expiresAt));
        return { ...rec, outcome: null, pending: null };
      })
      .immediate();
  }

  async settleScepTransaction(key: string, requestSha256: string, outcome: ScepOutcome): Promise<void> {
    this.stmt('UPDATE scep_transactions SET outcome = ? WHERE key = ? AND request_sha256 = ? AND outcome IS NULL').run(JSON.stringify(outcome), key, requestSha256);
  }

  async holdScepTransaction(key: string, requestSha256: string, pending: ScepPending, expiresAt: Date, now: Date): Promise<void> {
    this.stmt('UPDATE scep_transactions SET pending = ?, expires_at = MAX(expires_at, ?) WHERE key = ? AND request_sha256 = ? AND outcome IS NULL AND expires_at > ?').run(
      JSON.stringify(pending),
      ms(expiresAt),
      key,
      requestSha256,
      ms(now),
    );
  }

  async getScepTransaction(key: string, now: Date): Promise<ScepTransactionRecord | null> {
    const row = this.stmt('SELECT * FROM scep_transactions WHERE key = ? AND expires_at > ?').get(key, ms(now)) as Row | undefined;
    return row ? scepTransactionFromRow(row) : null;
  }

  // ---- leases ----
  async acquireLease(name: string, holder: string, ttlMs: number, now: Date): Promise<Lease | null> {
    return this.db
      .transaction((): Lease | null => {
        const row = this.stmt('SELECT holder, fence, expires_at FROM leases WHERE name = ?').get(name) as Row | undefined;
        const expiresAt = ms(now) + ttlMs;
        if (!row) {
          this.stmt('INSERT INTO leases (name, holder, fence, expires_at) VALUES (?, ?, 1, ?)').run(name, holder, expiresAt);
          return { fence: 1, expiresAt: new Date(expiresAt) };
        }
        const live = Number(row.expires_at) > ms(now);
        if (live && row.holder !== holder) return null;
        // a renewal by the live holder keeps its fence; any new tenure gets the next one
        const fence = live ? Number(row.fence) : Number(row.fence) + 1;
        this.stmt('UPDATE leases SET holder = ?, fence = ?, expires_at = ? WHERE name = ?').run(holder, fence, expiresAt, name);
        return { fence, expiresAt: new Date(expiresAt) };
      })
      .immediate();
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    // the row stays (expired) so the fence keeps growing from where it was
    this.stmt('UPDATE leases SET expires_at = 0 WHERE name = ? AND holder = ?').run(name, holder);
  }

  // ---- operator console sessions ----
  async createSession(c: ConsoleSessionRecord, now: Date): Promise<void> {
    this.db
      .transaction(() => {
        // sessions nobody signed out of end here, a page of them at each sign-in
        this.stmt('DELETE FROM console_sessions WHERE id_hash IN (SELECT id_hash FROM console_sessions WHERE idle_expires_at <= ? LIMIT 100)').run(ms(now));
        this.stmt('INSERT INTO console_sessions (id_hash, token_hash, created_at, idle_expires_at, expires_at) VALUES (?, ?, ?, ?, ?)').run(
          c.idHash,
          c.tokenHash,
          ms(c.createdAt),
          ms(c.idleExpiresAt),
          ms(c.expiresAt),
        );
      })
      .immediate();
  }

  async touchSession(idHash: string, now: Date, idleMs: number): Promise<ConsoleSessionRecord | null> {
    return this.db
      .transaction((): ConsoleSessionRecord | null => {
        const r = this.stmt('SELECT * FROM console_sessions WHERE id_hash = ?').get(idHash) as Row | undefined;
        if (!r) return null;
        if (Number(r.idle_expires_at) <= ms(now) || Number(r.expires_at) <= ms(now)) {
          this.stmt('DELETE FROM console_sessions WHERE id_hash = ?').run(idHash);
          return null;
        }
        const idle = Math.min(ms(now) + idleMs, Number(r.expires_at));
        this.stmt('UPDATE console_sessions SET idle_expires_at = ? WHERE id_hash = ?').run(idle, idHash);
        return { idHash, tokenHash: String(r.token_hash), createdAt: date(r.created_at), idleExpiresAt: new Date(idle), expiresAt: date(r.expires_at) };
      })
      .immediate();
  }

  async deleteSession(idHash: string): Promise<void> {
    this.stmt('DELETE FROM console_sessions WHERE id_hash = ?').run(idHash);
  }

  // ---- integrity and health ----
  async head(issuer: string): Promise<StoreHead> {
    return this.db
      .transaction((): StoreHead => {
        const last = this.stmt('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1').get() as Row | undefined;
        const crl = this.stmt('SELECT next_number FROM crl_numbers WHERE issuer = ?').get(issuer) as Row | undefined;
        return { auditSeq: last ? Number(last.seq) : 0, auditHash: last ? String(last.hash) : null, crlNumber: crl ? BigInt(crl.next_number as number) : 0n };
      })
      .deferred();
  }

  async probe(now = new Date()): Promise<void> {
    try {
      // the pages most requests touch: the schema, the audit chain's head, the CA record
      this.stmt('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1').get();
      this.stmt("SELECT version FROM ca_state WHERE name = 'hierarchy'").get();
    } catch (e) {
      throw probeError('read', e);
    }
    try {
      // a real write (a WAL frame): BEGIN IMMEDIATE alone takes the lock but would not notice a full disk
      this.db.transaction(() => this.probeWrite.run(ms(now))).immediate();
    } catch (e) {
      throw probeError('write', e);
    }
    // and room to grow: the write above may have gone into WAL space a checkpoint freed (disk-space-guard.ts)
    const f = this.space?.check();
    if (f) throw new DeviceCaError('store-unavailable', `store write failed (${f.reason})`, { detail: f.detail, retryAfterSeconds: 30 });
  }

  // ---- TPM attestation ----
  async saveNonce(n: { deviceId: string; nonceSha256: string; expiresAt: Date }, now: Date, maxPerDevice: number): Promise<void> {
    this.db
      .transaction(() => {
        this.stmt('DELETE FROM tpm_nonces WHERE device_id = ? AND expires_at <= ?').run(n.deviceId, ms(now));
        this.stmt('INSERT INTO tpm_nonces (device_id, nonce_sha256, expires_at, created_at) VALUES (?, ?, ?, ?)').run(n.deviceId, n.nonceSha256, ms(n.expiresAt), ms(now));
        // keep the newest maxPerDevice: a device asking again and again cannot grow the table
        this.stmt('DELETE FROM tpm_nonces WHERE device_id = ? AND rowid NOT IN (SELECT rowid FROM tpm_nonces WHERE device_id = ? ORDER BY created_at DESC, rowid DESC LIMIT ?)').run(
          n.deviceId,
          n.deviceId,
          maxPerDevice,
        );
      })
      .immediate();
  }

  async consumeNonce(deviceId: string, nonceSha256: string, now: Date): Promise<boolean> {
    return this.stmt('DELETE FROM tpm_nonces WHERE device_id = ? AND nonce_sha256 = ? AND expires_at > ?').run(deviceId, nonceSha256, ms(now)).changes === 1;
  }

  async saveAkChallenge(b: Omit<AkBindingRecord, 'status' | 'createdAt' | 'activatedAt' | 'lastClock' | 'akCertSerial'>, now: Date, audit: AuditInput): Promise<AkBindingRecord> {
    return this.db
      .transaction(() => {
        if (this.stmt('SELECT 1 FROM tpm_blocked_eks WHERE ek_cert_sha256 = ?').get(b.ekCertSha256)) {
          throw new DeviceCaError('forbidden', 'this TPM belonged to a retired device and may not register again');
        }
        const old = this.stmt('SELECT device_id, status FROM tpm_aks WHERE ak_name = ?').get(b.akName) as Row | undefined;
        if (old && (String(old.device_id) !== b.deviceId || String(old.status) !== 'pending')) {
          throw new DeviceCaError('conflict', 'this attestation key is already registered');
        }
        this.stmt('DELETE FROM tpm_aks WHERE ak_name = ?').run(b.akName);
        this.stmt(
          `INSERT INTO tpm_aks (ak_name, device_id, ak_public, ek_cert_sha256, ek_manufacturer, ek_model, status, challenge_sha256, challenge_expires_at, created_at)
           VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)`,
        ).run(b.akName, b.deviceId, b.akPublic, b.ekCertSha256, b.ekManufacturer, b.ekModel, b.challengeSha256, ms(b.challengeExpiresAt), ms(now));
        this.appendAuditSync(audit, now);
        return { ...b, status: 'pending' as const, createdAt: now, activatedAt: null, lastClock: null, akCertSerial: null };
      })
      .immediate();
  }

  async activateAk(akName: string, deviceId: string, challengeSha256: string, now: Date, audit: AuditInput): Promise<AkBindingRecord | null> {
    return this.db
      .transaction(() => {
        const changed = this.stmt(
          `UPDATE tpm_aks SET status = 'active', activated_at = ?
           WHERE ak_name = ? AND device_id = ? AND status = 'pending' AND challenge_sha256 = ? AND challenge_expires_at > ?`,
        ).run(ms(now), akName, deviceId, challengeSha256, ms(now)).changes;
        if (changed !== 1) {
          // a repeat of this activation (its reply was lost) while the challenge lives: the binding as it is, no audit
          const r = this.stmt(`SELECT * FROM tpm_aks WHERE ak_name = ? AND device_id = ? AND status = 'active' AND challenge_sha256 = ? AND challenge_expires_at > ?`).get(
            akName,
            deviceId,
            challengeSha256,
            ms(now),
          ) as Row | undefined;
          return r ? akFromRow(r) : null;
        }
        this.appendAuditSync(audit, now);
        return akFromRow(this.stmt('SELECT * FROM tpm_aks WHERE ak_name = ?').get(akName) as Row);
      })
      .immediate();
  }

  async getAk(akName: string): Promise<AkBindingRecord | null> {
    const r = this.stmt('SELECT * FROM tpm_aks WHERE ak_name = ?').get(akName) as Row | undefined;
    return r ? akFromRow(r) : null;
  }

  async claimAkCertificate(akName: string, deviceId: string, until: Date, now: Date): Promise<AkCertificateClaim | null> {
    return this.db
      .transaction((): AkCertificateClaim | null => {
        const r = this.stmt("SELECT cert_serial, cert_claim_until FROM tpm_aks WHERE ak_name = ? AND device_id = ? AND status = 'active'").get(akName, deviceId) as Row | undefined;
        if (!r) return null;
        if (r.cert_serial !== null) return { state: 'issued', serial: String(r.cert_serial) };
        if (r.cert_claim_until !== null && Number(r.cert_claim_until) > ms(now)) return { state: 'busy' };
        this.stmt('UPDATE tpm_aks SET cert_claim_until = ? WHERE ak_name = ?').run(ms(until), akName);
        return { state: 'claimed' };
      })
      .immediate();
  }

  async settleAkCertificate(akName: string, serial: string | null): Promise<void> {
    this.stmt('UPDATE tpm_aks SET cert_serial = COALESCE(cert_serial, ?), cert_claim_until = NULL WHERE ak_name = ?').run(serial, akName);
  }

  async setAkClock(akName: string, expected: TpmClockState | null, next: TpmClockState): Promise<boolean> {
    const [c, r, s] = expected ? [expected.clock.toString(), expected.resetCount, expected.restartCount] : [null, null, null];
    return (
      this.stmt('UPDATE tpm_aks SET last_clock = ?, last_reset_count = ?, last_restart_count = ? WHERE ak_name = ? AND last_clock IS ? AND last_reset_count IS ? AND last_restart_count IS ?').run(
        next.clock.toString(),
        next.resetCount,
        next.restartCount,
        akName,
        c,
        r,
        s,
      ).changes === 1
    );
  }

  async aksOfDevice(deviceId: string): Promise<AkBindingRecord[]> {
    return (this.stmt('SELECT * FROM tpm_aks WHERE device_id = ? ORDER BY created_at DESC, ak_name').all(deviceId) as Row[]).map(akFromRow);
  }

  async revokeAks(deviceId: string, blockEks: boolean, now: Date, audit: AuditInput): Promise<number> {
    return this.db
      .transaction(() => {
        if (blockEks) {
          this.stmt('INSERT OR IGNORE INTO tpm_blocked_eks (ek_cert_sha256, device_id, blocked_at) SELECT DISTINCT ek_cert_sha256, device_id, ? FROM tpm_aks WHERE device_id = ?').run(
            ms(now),
            deviceId,
          );
        }
        const n = this.stmt("UPDATE tpm_aks SET status = 'revoked', challenge_sha256 = NULL WHERE device_id = ? AND status != 'revoked'").run(deviceId).changes;
        this.appendAuditSync(audit, now);
        return n;
      })
      .immediate();
  }

  // ---- snapshot (device-ca store copy) ----
  /**
   * exportSnapshot reads every row inside one read transaction: in WAL mode the rows are those of one
   * moment, even if a node still writes meanwhile (what it writes later is not in this snapshot).
   */
  async *exportSnapshot(batchSize: number): AsyncIterable<SnapshotRow[]> {
    // [sql, row, read whole]: firmware releases are read whole (they are few, and without their bytes):
    // while an iterate() is open the connection runs no other statement, and the copy reads their chunks
    // between batches
    const tables: [string, (r: Row) => SnapshotRow, boolean?][] = [
      ['SELECT * FROM devices ORDER BY id', (r) => ({ kind: 'device', row: deviceFromRow(r) })],
      ['SELECT * FROM secrets ORDER BY id', (r) => ({ kind: 'secret', row: secretFromRow(r) })],
      ['SELECT * FROM certificates ORDER BY serial', (r) => ({ kind: 'certificate', row: certFromRow(r) })],
      ['SELECT * FROM requests ORDER BY created_at, id', (r) => ({ kind: 'request', row: requestFromRow(r) })],
      ['SELECT * FROM tokens ORDER BY created_at, id', (r) => ({ kind: 'token', row: tokenFromRow(r) })],
      ['SELECT * FROM crls ORDER BY issuer, shard', (r) => ({ kind: 'crl', row: crlFromRow(r) })],
      ['SELECT * FROM crl_numbers ORDER BY issuer', (r) => ({ kind: 'crl-number', row: { issuer: String(r.issuer), last: BigInt(r.next_number as number) } })],
      ['SELECT * FROM crl_shards ORDER BY issuer, shard', (r) => ({ kind: 'shard-revision', row: { issuer: String(r.issuer), shard: Number(r.shard), revision: Number(r.revision) } })],
      ['SELECT * FROM tpm_aks ORDER BY ak_name', (r) => ({ kind: 'tpm-ak', row: akFromRow(r) })],
      [
        'SELECT * FROM tpm_blocked_eks ORDER BY ek_cert_sha256',
        (r) => ({ kind: 'tpm-blocked-ek', row: { ekCertSha256: String(r.ek_cert_sha256), deviceId: String(r.device_id), blockedAt: date(r.blocked_at) } }),
      ],
      [
        'SELECT * FROM tpm_nonces ORDER BY device_id, created_at, rowid',
        (r) => ({ kind: 'tpm-nonce', row: { deviceId: String(r.device_id), nonceSha256: String(r.nonce_sha256), expiresAt: date(r.expires_at), createdAt: date(r.created_at) } }),
      ],
      // without the bytes: each row's are read chunk by chunk while the copy writes them (releaseBytesOf)
      [
        `SELECT sort_key, ${RELEASE_COLUMNS}, ${RELEASE_BYTES_COLUMNS} FROM firmware_releases ORDER BY sort_key`,
        (r) => ({ kind: 'firmware-release', row: { ...releaseFromRow(r), bytes: this.releaseBytesOf(String(r.sort_key), r) } }),
        true,
      ],
      ['SELECT * FROM firmware_receipts ORDER BY name, device_id', (r) => ({ kind: 'firmware-receipt', row: receiptFromRow(r) })],
      ['SELECT * FROM firmware_group_key_members ORDER BY key_id, device_id', (r) => ({ kind: 'firmware-group-key-member', row: { keyId: String(r.key_id), deviceId: String(r.device_id) } })],
      ['SELECT * FROM audit ORDER BY seq', (r) => ({ kind: 'audit', row: auditFromRow(r) })],
      [
        'SELECT * FROM ca_state ORDER BY name',
        (r) => ({ kind: 'ca-state', row: { name: String(r.name), value: JSON.parse(String(r.value)) as unknown, version: Number(r.version), updatedAt: date(r.updated_at) } }),
      ],
    ];
    this.db.exec('BEGIN');
    try {
      for (const [sql, map, whole] of tables) {
        let batch: SnapshotRow[] = [];
        const rows = whole ? (this.db.prepare(sql).all() as Row[]) : (this.db.prepare(sql).iterate() as IterableIterator<Row>);
        for (const r of rows) {
          batch.push(map(r));
          if (batch.length >= batchSize) {
            yield batch;
            batch = [];
          }
        }
        if (batch.length) yield batch;
      }
    } finally {
      this.db.exec('COMMIT');
    }
  }

  // ---- CA state ----
  async getCaState(name: string): Promise<CaStateEntry | null> {
    const row = this.stmt('SELECT value, version, updated_at FROM ca_state WHERE name = ?').get(name) as Row | undefined;
    return row ? { value: JSON.parse(String(row.value)) as unknown, version: Number(row.version), updatedAt: date(row.updated_at) } : null;
  }

  async saveCaState(name: string, value: unknown, ifVersion: number, audit?: AuditInput): Promise<number> {
    const now = new Date();
    return this.db
      .transaction(() => {
        const next = this.saveCaStateSync(name, value, ifVersion, now);
        if (audit) this.appendAuditSync(audit, now);
        return next;
      })
      .immediate();
  }

  /** saveCaStateSync: saveCaState's compare-and-set write, inside the caller's transaction. */
  private saveCaStateSync(name: string, value: unknown, ifVersion: number, now: Date): number {
    const row = this.stmt('SELECT version FROM ca_state WHERE name = ?').get(name) as Row | undefined;
    const current = row ? Number(row.version) : 0;
    if (current !== ifVersion) throw new DeviceCaError('conflict', `CA state ${name} changed meanwhile (version ${current}, expected ${ifVersion})`);
    const next = current + 1;
    this.stmt(
      'INSERT INTO ca_state (name, value, version, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value, version = excluded.version, updated_at = excluded.updated_at',
    ).run(name, JSON.stringify(value), next, ms(now));
    return next;
  }

  // ---- firmware group key members (migration 24) ----
  async saveFirmwareGroupKey(keyId: string, value: unknown, ifVersion: number, addMembers: readonly string[], audit: AuditInput): Promise<number> {
    const now = new Date();
    return this.db
      .transaction(() => {
        const next = this.saveCaStateSync(firmwareGroupKeyRecord(keyId), value, ifVersion, now);
        const add = this.stmt('INSERT OR IGNORE INTO firmware_group_key_members (key_id, device_id) VALUES (?, ?)');
        for (const d of addMembers) add.run(keyId, d);
        this.appendAuditSync(audit, now);
        return next;
      })
      .immediate();
  }

  async isFirmwareGroupKeyMember(keyId: string, deviceId: string): Promise<boolean> {
    return this.stmt('SELECT 1 FROM firmware_group_key_members WHERE key_id = ? AND device_id = ?').get(keyId, deviceId) !== undefined;
  }

  async firmwareGroupKeyMembership(keyId: string, candidates: readonly string[]): Promise<{ members: number; newcomers: string[] }> {
    // one read transaction: the count and the comparison see the same members
    return this.db.transaction(() => {
      const members = Number((this.stmt('SELECT COUNT(*) AS n FROM firmware_group_key_members WHERE key_id = ?').get(keyId) as Row).n);
      const newcomers = (
        this.stmt('SELECT j.value AS id FROM json_each(?) j WHERE NOT EXISTS (SELECT 1 FROM firmware_group_key_members m WHERE m.key_id = ? AND m.device_id = j.value) ORDER BY j.key').all(
          JSON.stringify(candidates),
          keyId,
        ) as Row[]
      ).map((r) => String(r.id));
      return { members, newcomers };
    })();
  }

  // ---- firmware releases ----
  /**
   * removeOrphanedReleaseChunks deletes the pending chunk sets whose writer is gone: written in this host's
   * process table (same host name, pid namespace and boot: PROCESS_TABLE) by a process that no longer runs,
   * or by this process but by no save under way (a pid a restarted process took over); and any set older
   * than PENDING_SET_MAX_AGE_MS, whoever wrote it. Runs when a store is opened and before each save. Sets of
   * another host, pid namespace or boot are otherwise left alone: their pid means nothing here (a writer in
   * another container under the same host name would look gone). A row without a namespace (written before
   * migration 28, or where none could be read) is judged by host and pid alone, as before.
   */
  private removeOrphanedReleaseChunks(): void {
    const rows = this.db.prepare('SELECT set_id, pid, host, pid_ns, boot_id, started_at FROM firmware_release_pending').all() as Row[];
    const host = os.hostname();
    const staleBefore = Date.now() - PENDING_SET_MAX_AGE_MS;
    const gone = rows
      .filter((r) => {
        if (Number(r.started_at) < staleBefore) return true;
        if (String(r.host) !== host) return false;
        if (r.pid_ns !== null && (r.pid_ns !== PROCESS_TABLE.pidNs || r.boot_id !== PROCESS_TABLE.bootId)) return false;
        return Number(r.pid) === process.pid ? !RELEASES_BEING_WRITTEN.has(String(r.set_id)) : !processRuns(Number(r.pid));
      })
      .map((r) => String(r.set_id));
    if (gone.length) this.db.transaction(() => gone.forEach((id) => this.discardChunkSet(id, true))).immediate();
  }

  /**
   * discardChunkSet deletes a chunk set and its pending row. `onlyPending` (the clean-up): only when its
   * pending row is still there; the rows were read before this transaction, whose BEGIN IMMEDIATE may have
   * waited for that very writer's final transaction, which deleted the row and made the set a release's.
   */
  private discardChunkSet(setId: string, onlyPending = false): void {
    const pending = this.stmt('DELETE FROM firmware_release_pending WHERE set_id = ?').run(setId).changes;
    if (onlyPending && pending === 0) return;
    this.stmt('DELETE FROM firmware_release_chunks WHERE set_id = ?').run(setId);
  }

  async saveFirmwareRelease(r: FirmwareReleaseInfo, release: ByteSource, audit: AuditInput): Promise<void> {
    this.removeOrphanedReleaseChunks();
    const newest = (): number | null => {
      const top = this.stmt('SELECT MAX(version) AS v FROM firmware_releases WHERE name = ?').get(r.name) as Row;
      return top.v === null ? null : Number(top.v);
    };
    const below = (top: number | null): DeviceCaError | null =>
      top !== null && top > r.version ? new DeviceCaError('conflict', `version ${r.version} is below the released version ${top} of ${r.name}`) : null;
    const early = below(newest()); // refused before any byte is written; checked again at the end
    if (early) throw early;
    const setId = crypto.randomBytes(16).toString('hex');
    RELEASES_BEING_WRITTEN.add(setId);
    let committed = false;
    try {
      this.stmt('INSERT INTO firmware_release_pending (set_id, pid, host, pid_ns, boot_id, started_at) VALUES (?, ?, ?, ?, ?, ?)').run(
        setId,
        process.pid,
        os.hostname(),
        PROCESS_TABLE.pidNs,
        PROCESS_TABLE.bootId,
        Date.now(),
      );
      let count = 0;
      for (const chunk of releaseChunksOf(release)) {
        // one short transaction per chunk; other writers (and this process's requests) run in between. Only
        // while the set is pending: one a clean-up took for a dead writer's stops here, leaving no chunk behind
        const added = this.stmt('INSERT INTO firmware_release_chunks (set_id, seq, bytes) SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM firmware_release_pending WHERE set_id = ?)').run(
          setId,
          count++,
          chunk,
          setId,
        );
        if (added.changes !== 1) throw new DeviceCaError('conflict', "the chunks of this release were removed while it was saved (taken for a dead writer's); save it again");
        await new Promise((res) => setImmediate(res));
      }
      const now = new Date();
      const key = firmwareReleaseKey(r.name, r.version);
      this.db
        .transaction(() => {
          if (this.stmt('DELETE FROM firmware_release_pending WHERE set_id = ?').run(setId).changes !== 1)
            throw new DeviceCaError('conflict', "the chunks of this release were removed while it was saved (taken for a dead writer's); save it again");
          const late = below(newest());
          if (late) throw late;
          const old = this.stmt('SELECT chunk_set FROM firmware_releases WHERE sort_key = ?').get(key) as Row | undefined;
          this.stmt(
            `INSERT INTO firmware_releases (sort_key, name, version, sha256, signers, recipients, hardware, released_at, der, chunk_set, length, chunk_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, X'', ?, ?, ?)
             ON CONFLICT(sort_key) DO UPDATE SET sha256 = excluded.sha256, signers = excluded.signers, recipients = excluded.recipients, hardware = excluded.hardware,
               released_at = excluded.released_at, der = excluded.der, chunk_set = excluded.chunk_set, length = excluded.length, chunk_count = excluded.chunk_count`,
          ).run(
            key,
            r.name,
            r.version,
            r.sha256,
            JSON.stringify(r.signers),
            r.recipients === null ? null : JSON.stringify(r.recipients),
            r.hardware === undefined ? null : JSON.stringify(r.hardware),
            ms(r.releasedAt),
            setId,
            release.length,
            count,
          );
          // the replaced release's chunks go in the same transaction: nothing is left that no row points at
          if (old?.chunk_set !== null && old?.chunk_set !== undefined) this.stmt('DELETE FROM firmware_release_chunks WHERE set_id = ?').run(String(old.chunk_set));
          this.appendAuditSync(audit, now);
        })
        .immediate();
      committed = true;
    } finally {
      RELEASES_BEING_WRITTEN.delete(setId);
      if (!committed) {
        try {
          this.db.transaction(() => this.discardChunkSet(setId)).immediate();
        } catch {
          // left pending: the next save or store open removes it (its writer is no longer saving it)
        }
      }
    }
  }

  async getFirmwareRelease(name: string, version: number): Promise<FirmwareReleaseInfo | null> {
    const row = this.stmt(`SELECT ${RELEASE_COLUMNS} FROM firmware_releases WHERE sort_key = ?`).get(firmwareReleaseKey(name, version)) as Row | undefined;
    return row ? releaseFromRow(row) : null;
  }

  async openFirmwareRelease(name: string, version: number): Promise<ReleaseBytes | null> {
    const key = firmwareReleaseKey(name, version);
    const row = this.stmt(`SELECT ${RELEASE_BYTES_COLUMNS} FROM firmware_releases WHERE sort_key = ?`).get(key) as Row | undefined;
    return row ? this.releaseBytesOf(key, row) : null;
  }

  /**
   * releaseBytesOf: the bytes of a release row (RELEASE_BYTES_COLUMNS): its chunks one by one, or, for a
   * row of an earlier version, its one `der` value, read when the bytes are asked for.
   */
  private releaseBytesOf(key: string, row: Row): ReleaseBytes {
    if (row.chunk_set === null || row.chunk_set === undefined) {
      const length = Number(row.byte_length);
      const der = this.stmt('SELECT der, chunk_set FROM firmware_releases WHERE sort_key = ?');
      return {
        length,
        async *chunks() {
          const got = der.get(key) as Row | undefined;
          if (!got || got.chunk_set !== null || (got.der as Buffer).length !== length) throw new DeviceCaError('conflict', 'the firmware release was replaced while it was read');
          yield* wholeReleaseBytes(got.der as Buffer).chunks();
        },
      };
    }
    const set = String(row.chunk_set);
    const chunk = this.stmt('SELECT bytes FROM firmware_release_chunks WHERE set_id = ? AND seq = ?');
    return storedReleaseBytes(Number(row.length), Number(row.chunk_count), async (seq) => ((chunk.get(set, seq) as Row | undefined)?.bytes as Buffer | undefined) ?? null);
  }

  async listFirmwareReleases(filter: { name?: string } & PageRequest): Promise<Page<FirmwareReleaseInfo>> {
    const limit = pageLimit(filter);
    const rows = (
      filter.name !== undefined
        ? this.stmt(`SELECT ${RELEASE_COLUMNS} FROM firmware_releases WHERE sort_key > ? AND name = ? ORDER BY sort_key LIMIT ?`).all(filter.after ?? '', filter.name, limit + 1)
        : this.stmt(`SELECT ${RELEASE_COLUMNS} FROM firmware_releases WHERE sort_key > ? ORDER BY sort_key LIMIT ?`).all(filter.after ?? '', limit + 1)
    ) as Row[];
    return pageOf(rows.map(releaseFromRow), limit, (r) => firmwareReleaseKey(r.name, r.version));
  }

  // ---- firmware receipts ----
  async recordFirmwareReceipt(r: FirmwareReceiptInput, audit: AuditInput): Promise<{ outcome: 'recorded' | 'repeat'; record: FirmwareReceiptRecord }> {
    return this.db
      .transaction(() => {
        const row = this.stmt('SELECT * FROM firmware_receipts WHERE name = ? AND device_id = ?').get(r.name, r.deviceId) as Row | undefined;
        const prev = row ? receiptFromRow(row) : null;
        const next = applyFirmwareReceipt(prev, r);
        if (next === 'repeat') return { outcome: 'repeat' as const, record: prev! };
        this.stmt(
          `INSERT INTO firmware_receipts (name, device_id, hw_type, running_version, running_at, error_version, error_code, error_vendor_code, error_at, receipt_sha256, updated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (name, device_id) DO UPDATE SET hw_type = excluded.hw_type, running_version = excluded.running_version, running_at = excluded.running_at,
             error_version = excluded.error_version, error_code = excluded.error_code, error_vendor_code = excluded.error_vendor_code, error_at = excluded.error_at,
             receipt_sha256 = excluded.receipt_sha256, updated_at = excluded.updated_at`,
        ).run(
          next.name,
          next.deviceId,
          next.hwType,
          next.running?.version ?? null,
          next.running ? ms(next.running.at) : null,
          next.error?.version ?? null,
          next.error?.code ?? null,
          next.error?.vendorCode ?? null,
          next.error ? ms(next.error.at) : null,
          next.receiptSha256,
          ms(next.updatedAt),
        );
        this.appendAuditSync(audit, new Date());
        return { outcome: 'recorded' as const, record: next };
      })
      .immediate();
  }

  async getFirmwareReceipt(name: string, deviceId: string): Promise<FirmwareReceiptRecord | null> {
    const row = this.stmt('SELECT * FROM firmware_receipts WHERE name = ? AND device_id = ?').get(name, deviceId) as Row | undefined;
    return row ? receiptFromRow(row) : null;
  }

  async firmwareHardwareOf(deviceId: string): Promise<string | null> {
    const row = this.stmt('SELECT hw_type FROM firmware_receipts WHERE device_id = ? ORDER BY updated_at DESC, name DESC LIMIT 1').get(deviceId) as Row | undefined;
    return row ? String(row.hw_type) : null;
  }

  async listFirmwareReceipts(filter: { name: string } & PageRequest): Promise<Page<FirmwareReceiptRecord>> {
    const limit = pageLimit(filter);
    const rows = this.stmt('SELECT * FROM firmware_receipts WHERE name = ? AND device_id > ? ORDER BY device_id LIMIT ?').all(filter.name, filter.after ?? '', limit + 1) as Row[];
    return pageOf(rows.map(receiptFromRow), limit, (r) => r.deviceId);
  }

  async firmwareReceiptSummary(name: string): Promise<FirmwareReceiptSummary> {
    const running = this.stmt(FIRMWARE_RUNNING_SUMMARY_SQL).all(name) as { v: number | null; n: number }[];
    const errors = this.stmt(FIRMWARE_ERROR_SUMMARY_SQL).all(name) as { c: number; n: number }[];
    return {
      devices: running.reduce((t, r) => t + r.n, 0),
      versions: running
        .filter((r) => r.v !== null)
        .map((r) => ({ version: Number(r.v), devices: r.n }))
        .sort((p, q) => q.version - p.version),
      errors: errors.map((r) => ({ code: r.c, devices: r.n })),
    };
  }
}

/** receiptFromRow: a firmware_receipts row as a FirmwareReceiptRecord. */
function receiptFromRow(r: Row): FirmwareReceiptRecord {
  return {
    name: String(r.name),
    deviceId: String(r.device_id),
    hwType: String(r.hw_type),
    running: r.running_version === null ? null : { version: Number(r.running_version), at: date(r.running_at) },
    error:
      r.error_version === null
        ? null
        : { version: Number(r.error_version), code: Number(r.error_code), vendorCode: r.error_vendor_code === null ? null : Number(r.error_vendor_code), at: date(r.error_at) },
    receiptSha256: String(r.receipt_sha256),
    updatedAt: date(r.updated_at),
  };
}

/** RELEASE_COLUMNS: a release's row without its bytes. */
const RELEASE_COLUMNS = 'name, version, sha256, signers, recipients, hardware, released_at';
/** RELEASE_BYTES_COLUMNS: where a release's bytes are (releaseBytesOf), without reading them. */
const RELEASE_BYTES_COLUMNS = 'chunk_set, length, chunk_count, CASE WHEN chunk_set IS NULL THEN length(der) END AS byte_length';

/**
 * RELEASES_BEING_WRITTEN: the pending chunk sets this process is writing (every SqliteStore of the
 * process): a pending set of this pid that is not here belongs to a process that had the pid before.
 */
const RELEASES_BEING_WRITTEN = new Set<string>();

/**
 * PENDING_SET_MAX_AGE_MS: a pending chunk set older than this (24 h) is removed whoever wrote it: no save of
 * a release (at most a few hundred MiB, a short write per chunk) takes that long, and a set of a writer the
 * clean-up cannot judge (another host, pid namespace or boot) must not stay for ever. A save still running
 * then is refused ('conflict', save again) rather than recording missing bytes.
 */
const PENDING_SET_MAX_AGE_MS = 24 * 3600_000;

function releaseFromRow(r: Row): FirmwareReleaseInfo {
  return {
    name: String(r.name),
    version: Number(r.version),
    sha256: String(r.sha256),
    signers: JSON.parse(String(r.signers)) as FirmwareReleaseInfo['signers'],
    recipients: r.recipients === null ? null : (JSON.parse(String(r.recipients)) as string[]),
    ...(r.hardware === null || r.hardware === undefined ? {} : { hardware: JSON.parse(String(r.hardware)) as NonNullable<FirmwareReleaseInfo['hardware']> }),
    releasedAt: date(r.released_at),
  };
}

/** probeError: 'store-unavailable' naming which half of the probe failed and why (the /healthz reason). */
function probeError(what: 'read' | 'write', e: unknown): DeviceCaError {
  const f = sqliteFailure(e);
  return new DeviceCaError('store-unavailable', `store ${what} failed (${f?.reason ?? 'unexpected error'})`, {
    detail: f?.detail ?? (e as Error)?.message,
    retryAfterSeconds: f?.retryAfterSeconds ?? 30,
    cause: e,
  });
}

function deviceFromRow(r: Row): DeviceRecord {
  return {
    id: String(r.id),
    owner: r.owner === null ? null : String(r.owner),
    label: r.label === null ? null : String(r.label),
    state: String(r.state) as DeviceState,
    pendingOwner: r.pending_owner === null || r.pending_owner === undefined ? null : String(r.pending_owner),
    createdAt: date(r.created_at),
    updatedAt: date(r.updated_at),
  };
}

function certFromRow(r: Row): CertificateRecord {
  return {
    serial: String(r.serial),
    deviceId: r.device_id === null ? null : String(r.device_id),
    issuer: String(r.issuer),
    subject: String(r.subject),
    profile: String(r.profile),
    notBefore: date(r.not_before),
    notAfter: date(r.not_after),
    shard: Number(r.shard),
    spkiSha256: String(r.spki_sha256),
    der: r.der as Buffer,
    status: String(r.status) as CertificateStatus,
    revokedAt: dateOrNull(r.revoked_at),
    revocationReason: r.revocation_reason === null ? null : (String(r.revocation_reason) as RevocationReason),
    invalidityDate: dateOrNull(r.invalidity_date),
    createdAt: date(r.created_at),
  };
}

function requestFromRow(r: Row): EnrollmentRequestRecord {
  return {
    id: String(r.id),
    deviceId: String(r.device_id),
    label: String(r.label),
    operation: String(r.operation) as EnrollmentRequestRecord['operation'],
    csrSha256: String(r.csr_sha256),
    csr: r.csr as Buffer,
    status: String(r.status) as RequestStatus,
    certSerial: r.cert_serial === null ? null : String(r.cert_serial),
    createdAt: date(r.created_at),
    decidedAt: dateOrNull(r.decided_at),
    decidedBy: r.decided_by === null ? null : String(r.decided_by),
  };
}

function auditFromRow(r: Row): AuditRecord {
  return {
    seq: Number(r.seq),
    at: date(r.at),
    type: String(r.type),
    actor: String(r.actor),
    subject: String(r.subject),
    data: JSON.parse(String(r.data)) as AuditRecord['data'],
    prevHash: String(r.prev_hash),
    hash: String(r.hash),
  };
}

function secretFromRow(r: Row): SecretRecord {
  return {
    id: Number(r.id),
    deviceId: String(r.device_id),
    hash: String(r.hash),
    expiresAt: date(r.expires_at),
    usedAt: dateOrNull(r.used_at),
    certSerial: r.cert_serial === null || r.cert_serial === undefined ? null : String(r.cert_serial),
  };
}

function crlFromRow(r: Row): CrlRecord {
  return {
    issuer: String(r.issuer),
    shard: Number(r.shard),
    number: BigInt(r.number as number),
    revision: Number(r.revision),
    thisUpdate: date(r.this_update),
    nextUpdate: date(r.next_update),
    entries: Number(r.entries),
    der: r.der as Buffer,
  };
}

function akFromRow(r: Row): AkBindingRecord {
  return {
    akName: String(r.ak_name),
    deviceId: String(r.device_id),
    akPublic: Buffer.from(r.ak_public as Uint8Array),
    ekCertSha256: String(r.ek_cert_sha256),
    ekManufacturer: r.ek_manufacturer === null ? null : String(r.ek_manufacturer),
    ekModel: r.ek_model === null ? null : String(r.ek_model),
    status: String(r.status) as AkBindingStatus,
    challengeSha256: r.challenge_sha256 === null ? null : String(r.challenge_sha256),
    challengeExpiresAt: date(r.challenge_expires_at),
    createdAt: date(r.created_at),
    activatedAt: dateOrNull(r.activated_at),
    akCertSerial: r.cert_serial === null || r.cert_serial === undefined ? null : String(r.cert_serial),
    lastClock: r.last_clock === null || r.last_clock === undefined ? null : { clock: BigInt(String(r.last_clock)), resetCount: Number(r.last_reset_count), restartCount: Number(r.last_restart_count) },
  };
}

function tokenFromRow(r: Row): TokenRecord {
  return {
    id: String(r.id),
    hash: String(r.hash),
    scope: String(r.scope),
    description: r.description === null ? null : String(r.description),
    createdAt: date(r.created_at),
    revokedAt: dateOrNull(r.revoked_at),
  };
}

function scepTransactionFromRow(r: Row): ScepTransactionRecord {
  return {
    key: String(r.key),
    requestSha256: String(r.request_sha256),
    outcome: r.outcome === null ? null : (JSON.parse(String(r.outcome)) as ScepOutcome),
    pending: r.pending === null ? null : (JSON.parse(String(r.pending)) as ScepPending),
    expiresAt: new Date(Number(r.expires_at)),
  };
}
