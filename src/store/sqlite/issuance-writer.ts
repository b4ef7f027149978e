import { Worker } from 'node:worker_threads';
import { PreparedAudit } from '../../audit/audit-chain';
import { DeviceCaError } from '../../errors/device-ca-error';
import { AuditRecord, CertificateRecord } from '../store';
import { sqliteUnavailable } from './sqlite-errors';

/**
 * WORKER_SOURCE is the writer thread's whole program: its own connection to the store file (WAL, same
 * pragmas as the store's), and for each message one IMMEDIATE transaction in which every job runs inside
 * its own savepoint (a refused job rolls back alone), answered with one message after COMMIT returned.
 * The jobs are the store's issuance writes: an audit append ('a') and recordIssuance ('i', the same
 * checks and rows as SqliteStore.recordIssuance). The audit hash step is auditHashOfTail
 * (audit/audit-chain.ts) written out once more: the thread cannot load TypeScript, and the store
 * contract suite verifies every chain it writes. Errors leave as plain objects: { dc: code } for the
 * store's own refusals, { sqlite: code } for SQLite's (mapped by the caller as the store maps them).
 * Evaluated from this string so the compiled service and ts-jest run the same code.
 */
const WORKER_SOURCE = `
const crypto = require('node:crypto');
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.module);
const db = new Database(workerData.file, { fileMustExist: true });
db.pragma('synchronous = NORMAL');
db.pragma('busy_timeout = 10000');
db.pragma('foreign_keys = ON');
if (workerData.autocheckpoint) db.pragma('wal_autocheckpoint = ' + workerData.autocheckpoint);
const GENESIS = '0'.repeat(64);
const head = db.prepare('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1');
const insAudit = db.prepare('INSERT INTO audit (seq, at, type, actor, subject, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
const devState = db.prepare('SELECT state FROM devices WHERE id = ?');
const consume = db.prepare('UPDATE secrets SET used_at = ?, cert_serial = ? WHERE id = ? AND used_at IS NULL');
const insCert = db.prepare("INSERT INTO certificates (serial, device_id, issuer, subject, profile, not_before, not_after, shard, spki_sha256, der, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'valid', ?)");
const activate = db.prepare("UPDATE devices SET state = 'active', updated_at = ? WHERE id = ? AND state = 'registered'");
const settleRequest = db.prepare("UPDATE requests SET status = 'issued', cert_serial = ? WHERE id = ? AND status = 'approved'");
const savepoint = db.prepare('SAVEPOINT job');
const release = db.prepare('RELEASE job');
const rollback = db.prepare('ROLLBACK TO job');
class Refused { constructor(code, message) { this.dc = code; this.message = message; } }
function audit(a) {
  const last = head.get();
  const seq = last ? Number(last.seq) + 1 : 1;
  const prev = last ? String(last.hash) : GENESIS;
  const hash = crypto.createHash('sha256').update(prev).update('[' + seq + ',' + a.tail).digest('hex');
  insAudit.run(seq, a.at, a.type, a.actor, a.subject, a.data, prev, hash);
  return { seq, prev, hash };
}
function issuance(j, bytes) {
  if (j.deviceId !== null) {
    const d = devState.get(j.deviceId);
    if (d && d.state !== 'registered' && d.state !== 'active') throw new Refused('forbidden', 'device is ' + d.state);
  }
  if (j.secretId !== null && consume.run(j.now, j.serial, j.secretId).changes !== 1) throw new Refused('unauthenticated', 'enrollment secret already used');
  insCert.run(j.serial, j.deviceId, j.issuer, j.subject, j.profile, j.notBefore, j.notAfter, j.shard, j.spki, bytes.subarray(j.der[0], j.der[1]), j.now);
  if (j.deviceId !== null) activate.run(j.now, j.deviceId);
  if (j.requestId !== null) settleRequest.run(j.serial, j.requestId);
  return audit(j.audit);
}
const failure = (e) => (e instanceof Refused ? { dc: e.dc, message: e.message } : { sqlite: e && typeof e.code === 'string' ? e.code : null, message: String(e && e.message) });
const batch = db.transaction((m) => {
  const bytes = m.buf ? Buffer.from(m.buf) : null;
  const out = [];
  for (const j of m.jobs) {
    savepoint.run();
    try {
      const v = j.k === 'a' ? audit(j) : issuance(j, bytes);
      release.run();
      out.push({ ok: v });
    } catch (e) {
      rollback.run();
      release.run();
      out.push({ err: failure(e) });
    }
  }
  return out;
});
parentPort.on('message', (m) => {
  if (m === 'close') {
    db.close();
    parentPort.close();
    return;
  }
  let out;
  try {
    out = batch.immediate(m);
  } catch (e) {
    parentPort.postMessage({ all: failure(e) });
    return;
  }
  parentPort.postMessage({ out });
});
`;

/** IssuanceInput is SqliteStore.recordIssuance's argument with the audit record already prepared. */
export interface IssuanceInput {
  cert: Omit<CertificateRecord, 'status' | 'revokedAt' | 'revocationReason' | 'invalidityDate' | 'createdAt'>;
  consumeSecretId?: number;
  requestId?: string;
  audit: PreparedAudit;
}

/** AuditJob / IssuanceJob: what crosses to the thread (primitives; the DER as offsets into the batch's buffer). */
interface AuditJob {
  k: 'a';
  at: number;
  type: string;
  actor: string;
  subject: string;
  data: string;
  tail: string;
}
interface IssuanceJob {
  k: 'i';
  now: number;
  serial: string;
  deviceId: string | null;
  issuer: string;
  subject: string;
  profile: string;
  notBefore: number;
  notAfter: number;
  shard: number;
  spki: string;
  der: [number, number];
  secretId: number | null;
  requestId: string | null;
  audit: Omit<AuditJob, 'k'>;
}
interface Failure {
  dc?: string;
  sqlite?: string | null;
  message: string;
}
interface Reply {
  out?: ({ ok: { seq: number; prev: string; hash: string } } | { err: Failure })[];
  all?: Failure;
}

interface Pending {
  job: AuditJob | IssuanceJob;
  der?: Buffer;
  prepared: PreparedAudit;
  resolve: (r: AuditRecord) => void;
  reject: (e: unknown) => void;
}

const auditJob = (p: PreparedAudit): AuditJob => ({ k: 'a', at: p.at.getTime(), type: p.type, actor: p.actor, subject: p.subject, data: p.dataJson, tail: p.tail });

/**
 * IssuanceWriter records issuances and audit appends on a thread that owns its own better-sqlite3
 * connection to the store file (WAL: the store's connection, the checkpointing thread and every other
 * process share it, writers serialized by SQLite's lock), so the thread that owns the sockets only
 * encodes, signs and posts. Group commit as SqliteStore's: at most one batch is at the thread; what
 * arrives meanwhile waits and leaves as the next batch when the thread answers, so under load one
 * transaction serves many issuances. A caller's promise settles only after COMMIT returned on the thread:
 * nothing is acknowledged before it is as durable as the store's own commits (synchronous=NORMAL, WAL).
 */
export class IssuanceWriter {
  private readonly worker: Worker;
  private waiting: Pending[] = [];
  private inFlight: Pending[] | null = null;
  private closed = false;
  private readonly exited: Promise<void>;
  private dead: Error | null = null;
  private sendScheduled = false;

  /** autocheckpoint: the connection's wal_autocheckpoint (pages); the store's own when a checkpointing thread runs */
  constructor(file: string, opts: { autocheckpoint?: number } = {}) {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { file, module: require.resolve('better-sqlite3'), autocheckpoint: opts.autocheckpoint ?? 0 } });
    this.worker.on('message', (m: Reply) => this.answered(m));
    this.worker.on('error', (e) => {
      // the thread died: what it held is not known to be committed; the callers get 'store-unavailable',
      // and later writes too (the store is closed and opened again by a restart)
      this.dead = e;
      const lost = [...(this.inFlight ?? []), ...this.waiting];
      this.inFlight = null;
      this.waiting = [];
      for (const p of lost) p.reject(new DeviceCaError('store-unavailable', 'store writer stopped', { detail: e.message, retryAfterSeconds: 30, cause: e }));
    });
    this.exited = new Promise((resolve) => this.worker.once('exit', () => resolve()));
    this.worker.unref();
  }

  /** appendAudit: one audit record, chained on the thread; the record as stored. */
  appendAudit(p: PreparedAudit): Promise<AuditRecord> {
    return this.enqueue(auditJob(p), p);
  }

  /** recordIssuance: SqliteStore.recordIssuance on the thread (certificate, device, secret, request, audit: one savepoint). */
  async recordIssuance(a: IssuanceInput, now: Date): Promise<void> {
    const c = a.cert;
    const { k: _k, ...audit } = auditJob(a.audit);
    const job: IssuanceJob = {
      k: 'i',
      now: now.getTime(),
      serial: c.serial,
      deviceId: c.deviceId,
      issuer: c.issuer,
      subject: c.subject,
      profile: c.profile,
      notBefore: c.notBefore.getTime(),
      notAfter: c.notAfter.getTime(),
      shard: c.shard,
      spki: c.spkiSha256,
      der: [0, 0],
      secretId: a.consumeSecretId ?? null,
      requestId: a.requestId ?? null,
      audit,
    };
    await this.enqueue(job, a.audit, c.der);
  }

  private enqueue(job: AuditJob | IssuanceJob, prepared: PreparedAudit, der?: Buffer): Promise<AuditRecord> {
    if (this.closed) return Promise.reject(new DeviceCaError('internal', 'store is closed'));
    if (this.dead) return Promise.reject(new DeviceCaError('store-unavailable', 'store writer stopped', { detail: this.dead.message, retryAfterSeconds: 30 }));
    return new Promise<AuditRecord>((resolve, reject) => {
      this.waiting.push({ job, der, prepared, resolve, reject });
      if (!this.inFlight && !this.sendScheduled) {
        // the writes of this event-loop turn leave together (one message, one transaction)
        this.sendScheduled = true;
        setImmediate(() => {
          this.sendScheduled = false;
          if (!this.inFlight) this.send();
        });
      }
    });
  }

  /**
   * send posts everything waiting as one batch. The DER of every certificate is copied into one fresh
   * ArrayBuffer that is transferred, not cloned: a Buffer carved from Node's pool slab would clone the
   * whole slab per certificate.
   */
  private send(): void {
    if (!this.waiting.length) return;
    const batch = this.waiting;
    this.waiting = [];
    this.inFlight = batch;
    let total = 0;
    for (const p of batch) if (p.der) total += p.der.length;
    const bytes = total ? Buffer.from(new ArrayBuffer(total)) : null;
    let at = 0;
    for (const p of batch)
      if (p.der && bytes && p.job.k === 'i') {
        p.der.copy(bytes, at);
        p.job.der = [at, at + p.der.length];
        at += p.der.length;
      }
    const buf = bytes ? (bytes.buffer as ArrayBuffer) : null;
    this.worker.ref(); // a batch at the thread keeps the process alive until it is answered
    this.worker.postMessage({ buf, jobs: batch.map((p) => p.job) }, buf ? [buf] : []);
  }

  private answered(m: Reply): void {
    const batch = this.inFlight ?? [];
    this.inFlight = null;
    this.worker.unref();
    if (m.all) {
      const e = toError(m.all);
      for (const p of batch) p.reject(e);
    } else {
      const out = m.out ?? [];
      batch.forEach((p, i) => {
        const r = out[i];
        if (r && 'ok' in r) {
          const a = p.prepared;
          p.resolve({ seq: r.ok.seq, at: a.at, type: a.type, actor: a.actor, subject: a.subject, data: a.data, prevHash: r.ok.prev, hash: r.ok.hash });
        }
        else p.reject(r ? toError(r.err) : new DeviceCaError('internal', 'store write failed', { detail: 'no answer from the writer thread' }));
      });
    }
    this.send();
  }

  /** pending: whether a write is queued or at the thread (close waits for them). */
  get pending(): boolean {
    return this.inFlight !== null || this.waiting.length > 0;
  }

  /** close answers every queued write, then stops the thread after it closed its connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    while (this.pending && !this.dead) await new Promise<void>((resolve) => setImmediate(resolve));
    this.closed = true;
    if (this.dead) return;
    this.worker.ref();
    this.worker.postMessage('close');
    await this.exited;
  }
}

/** toError: the store's error for a failure on the thread, as SqliteStore's group commit maps them. */
function toError(f: Failure): DeviceCaError {
  if (f.dc) return new DeviceCaError(f.dc as ConstructorParameters<typeof DeviceCaError>[0], f.message);
  const e = Object.assign(new Error(f.message), { name: 'SqliteError', code: f.sqlite ?? undefined });
  return sqliteUnavailable(e) ?? new DeviceCaError('internal', 'store write failed', { detail: f.message, cause: e });
}
