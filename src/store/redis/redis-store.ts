import * as crypto from 'node:crypto';
import { ChainableCommander, Cluster, Redis, RedisOptions } from 'ioredis';
import { nextAuditRecord } from '../../audit/audit-chain';
import { DeviceCaError } from '../../errors/device-ca-error';
import { ByteSource } from '../../cms/byte-source';
import { distinctIds } from '../batch';
import { releaseChunksOf, storedReleaseBytes, wholeReleaseBytes } from '../release-chunks';
import { applyFirmwareReceipt } from '../firmware-receipt-rule';
import { chartBuckets, DAY_MS, HOUR_MS } from '../chart-buckets';
import { pageLimit, pageOf } from '../paging';
import {
  AkBindingRecord,
  AkCertificateClaim,
  TpmClockState,
  AttestationStore,
  AuditInput,
  AuditRecord,
  AuthAttemptReservation,
  AuthAttemptRules,
  CaStateEntry,
  ConsoleSessionRecord,
  CertificateChange,
  CertificateRecord,
  CertificateStatus,
  CrlRecord,
  DeviceChange,
  DeviceCounts,
  DeviceRecord,
  DeviceState,
  DEVICE_STATES,
  emptyDeviceCounts,
  EnrollmentRequestRecord,
  FirmwareReceiptInput,
  FirmwareReceiptRecord,
  FirmwareReceiptSummary,
  FirmwareReleaseInfo,
  firmwareGroupKeyRecord,
  RELEASE_CHUNK_BYTES,
  ReleaseBytes,
  firmwareReleaseKey,
  Lease,
  Page,
  PageRequest,
  RequestStatus,
  RevocationReason,
  RevokedRow,
  ScepOutcome,
  ScepPending,
  ScepTransactionRecord,
  SecretRecord,
  Store,
  StoreHead,
  TokenRecord,
} from '../store';
import { RevocationFeed } from '../revocation-feed';
import { StatusGeneration } from '../status-generation';
import { SnapshotRow, SnapshotTarget } from '../store-snapshot';
import { AUDITED_WRITE_LUA, AuditedWriteBatch, AuditedWrites } from './audited-write-script';
import { closeRedisClient, disconnectRedisClient } from './close-client';
import { redisUnavailable } from './redis-errors';

/** AUTH_PURGE_BATCH: expired authentication attempts (of any key) dropped per reservation, as in the SQLite store */
const AUTH_PURGE_BATCH = 32;
/** TX_ATTEMPTS: optimistic transactions retried this often when another client wrote a watched key meanwhile */
const TX_ATTEMPTS = 200;
/** SCAN_BATCH: members read per round when a filtered list walks a sorted set */
const SCAN_BATCH = 500;

/** KEY_PREFIX: every key carries one hash tag, so every multi-key step lands in one Redis Cluster slot. */
export const KEY_PREFIX = '{dca}';
/** GROUP_MEMBER_BATCH: device ids per SADD / SMISMEMBER of a firmware group key's members. */
const GROUP_MEMBER_BATCH = 1000;

type Json = Record<string, unknown>;
type Tx = ChainableCommander;
/** RedisClient: a connection to a standalone (or Sentinel-managed) server, or a Cluster client; the commands are the same. */
type RedisClient = Redis | Cluster;
const ms = (d: Date): number => d.getTime();
const dateOrNull = (v: unknown): Date | null => (v === null || v === undefined ? null : new Date(Number(v)));
const seqCursor = (after: string | undefined): number => {
  if (after === undefined || after === '') return 0;
  if (!/^\d{1,15}$/.test(after)) throw new DeviceCaError('bad-request', 'after: not a cursor of this list');
  return Number(after);
};
/** lexAfter: the ZRANGEBYLEX lower bound strictly after a cursor ('-' from the start). */
const lexAfter = (after: string | undefined): string => (after ? `(${after}` : '-');

type IssuanceArgs = Parameters<Store['recordIssuance']>[0];
/** AuditedWrite: a write of the hot path committed in batches by one script call (RedisStore.commitAudited) */
type AuditedWrite = { kind: 'audit'; e: AuditInput } | { kind: 'issuance'; args: IssuanceArgs };
type AuditedJob = { w: AuditedWrite; resolve: (v: unknown) => void; reject: (e: unknown) => void };
/** AuditedPlan: a batch decided on one view: the script's arguments, and each job's result or refusal */
type AuditedPlan = { batch: AuditedWriteBatch; accepted: number; newHead: string; outcomes: ({ value: unknown } | { error: unknown })[] };
/** headValue: the audit head as stored, "<seq>:<hash>" */
/** newStatusGeneration: a fresh status generation (StatusGeneration): 64 random bits, never a count a restore could repeat */
const newStatusGeneration = (): string => crypto.randomBytes(8).toString('hex');
const headValue = (r: { seq: number; hash: string }): string => `${r.seq}:${r.hash}`;
/** parseHead: the stored head back (null: an empty chain) */
function parseHead(v: string | null): { seq: number; hash: string } | null {
  if (!v) return null;
  const i = v.indexOf(':');
  return { seq: Number(v.slice(0, i)), hash: v.slice(i + 1) };
}

/** CertMeta: a certificate without its DER (kept under its own key, so status reads stay small). */
type CertMeta = Omit<CertificateRecord, 'der' | 'notBefore' | 'notAfter' | 'revokedAt' | 'invalidityDate' | 'createdAt'> & {
  notBefore: number;
  notAfter: number;
  revokedAt: number | null;
  invalidityDate: number | null;
  createdAt: number;
};
type SecretRow = { id: number; deviceId: string; hash: string; expiresAt: number; usedAt: number | null; certSerial: string | null };
type DeviceRow = Omit<DeviceRecord, 'createdAt' | 'updatedAt'> & { createdAt: number; updatedAt: number };
type RequestRow = Omit<EnrollmentRequestRecord, 'csr' | 'createdAt' | 'decidedAt'> & { csr: string; createdAt: number; decidedAt: number | null };
type SessionRow = { tokenHash: string; createdAt: number; expiresAt: number };
type TokenRow = Omit<TokenRecord, 'createdAt' | 'revokedAt'> & { createdAt: number; revokedAt: number | null };
type AuditRow = Omit<AuditRecord, 'at'> & { at: number };
type AttemptRow = { key: string; at: number };
/** NonceRow: a TPM nonce's times; `n` orders nonces saved in the same millisecond (SQLite's rowid) */
type NonceRow = { expiresAt: number; createdAt: number; n: number };
type AkRow = Omit<AkBindingRecord, 'akPublic' | 'challengeExpiresAt' | 'createdAt' | 'activatedAt' | 'lastClock'> & {
  akPublic: string;
  challengeExpiresAt: number;
  createdAt: number;
  activatedAt: number | null;
  /** lastClock: clock as decimal text (a UINT64; JSON has no bigint); absent in rows written before it existed */
  lastClock?: { clock: string; resetCount: number; restartCount: number } | null;
  /** akCertSerial, certClaimUntil (ms): absent in rows written before them */
  akCertSerial?: string | null;
  certClaimUntil?: number | null;
};

/**
 * RedisStoreOptions: how to reach Redis. `url` is redis://[user:pass@]host:port/db (rediss:// for TLS).
 */
export interface RedisStoreOptions {
  /** url: the server (standalone); with sentinel, only its user, password, db and TLS are used; ignored with cluster */
  url: string;
  /** sentinel: the master `name` as the Sentinels at `sentinels` (host:port) know it; ioredis follows failovers */
  sentinel?: { name: string; sentinels: string[] };
  /** cluster: seed nodes (host:port) of a Redis Cluster; every key is in the one slot of the hash tag */
  cluster?: { nodes: string[] };
  /**
   * waitReplicas: after each write, WAIT until this many replicas acknowledged it (or timeoutMs); fewer is
   * 'store-unavailable' (the write itself is done on the master: a device that retries gets the same
   * certificate through the lost-reply repeat). Not with cluster.
   */
  waitReplicas?: { replicas: number; timeoutMs: number };
  /** prefix: the hash-tagged key prefix (tests give each suite its own) */
  prefix?: string;
  /** connectTimeoutMs: a command fails with 'store-unavailable' instead of waiting longer for a connection */
  connectTimeoutMs?: number;
}

/**
 * RedisStore is the shared store for several nodes: every node (and every worker) holds two connections,
 * a reader and a writer. The hot audited writes (audit appends and recorded issuances) are queued and
 * committed in batches by one script call each (commitAudited, audited-write-script.ts): the script checks
 * that what Node read is unchanged and that the head is the one Node chained to, then writes; when only
 * the head moved (another node appended first) Node chains the same batch to the new head and sends it
 * again without reading. Every other write is one optimistic transaction (WATCH, reads, MULTI ... EXEC,
 * retried when a watched key changed), with the same all-or-nothing steps as the SQLite store. Every
 * write that appends to the audit chain is conditional on the chain's head, which keeps one chain without
 * forks, and makes the head the guard of every device, secret, certificate, request and token change
 * (all of them are audited). The hashes are computed in Node (audit-chain.ts), not in Lua, since Redis'
 * Lua has no SHA-256.
 *
 * Key layout: `{dca}:<kind>:<id>` JSON strings (DER and CRLs as raw bytes), and sorted sets for every list
 * (lexicographic for ids and serials, scores for sequence numbers and times): no KEYS or SCAN. One hash
 * tag means one Cluster slot: correct under Cluster, but the whole CA lives on one master (a first
 * version's trade-off; device-ca's write rate is far below one Redis master's).
 */
export class RedisStore implements Store, AttestationStore, SnapshotTarget, RevocationFeed, StatusGeneration {
  /** r: the reader connection (auto-pipelined); w: the writer, one transaction at a time (WATCH is per connection) */
  readonly r: RedisClient;
  private readonly w: RedisClient;
  private readonly p: string;
  private writeChain: Promise<unknown> = Promise.resolve();
  private readonly waitReplicas?: { replicas: number; timeoutMs: number };
  /**
   * barrier: the connection of statusGeneration, opened at its first call, without auto-pipelining: one GET
   * per event-loop turn costs the node about half the CPU it costs through the pipelined reader (bench/redis-http)
   */
  private barrier?: RedisClient;
  /** barrierTimeoutMs: how long statusGeneration waits for its GET before it gives up ('store-unavailable') */
  private readonly barrierTimeoutMs: number;
  /** closed: close() was called; no connection opens after it */
  private closed = false;
  /** subscribers: the pub/sub connections of watchRevocations, closed with the store */
  private readonly subscribers = new Set<RedisClient>();
  /** auditedQueue: audited writes waiting for the next batch (queueAudited); draining: a batch is being committed */
  private auditedQueue: AuditedJob[] = [];
  private draining = false;
  /**
   * writeStats: how this client's writes went, for the benchmarks' profile (bench/redis-store): writes
   * committed, and commits refused because another client wrote a watched key first (each one retried).
   */
  readonly writeStats = { commits: 0, conflicts: 0 };

  constructor(opts: RedisStoreOptions) {
    this.p = opts.prefix ?? KEY_PREFIX;
    if (opts.waitReplicas && opts.cluster) throw new DeviceCaError('config', 'store.redis.waitReplicas does not work with store.redis.cluster');
    this.waitReplicas = opts.waitReplicas;
    this.barrierTimeoutMs = opts.connectTimeoutMs ?? 2000;
    const common: RedisOptions = {
      // a command waits for one reconnection attempt at most, then fails: the client gets 503 + Retry-After
      maxRetriesPerRequest: 1,
      connectTimeout: opts.connectTimeoutMs ?? 2000,
      lazyConnect: false,
      retryStrategy: (times) => Math.min(times * 200, 2000),
    };
    const open = (o: RedisOptions, pipelined: boolean): RedisClient => {
      if (opts.cluster)
        return new Cluster(opts.cluster.nodes.map(hostPort), {
          redisOptions: o,
          enableAutoPipelining: pipelined,
          clusterRetryStrategy: (times) => Math.min(times * 200, 2000),
        });
      if (opts.sentinel) {
        const u = new URL(opts.url);
        return new Redis({
          ...o,
          enableAutoPipelining: pipelined,
          sentinels: opts.sentinel.sentinels.map(hostPort),
          name: opts.sentinel.name,
          username: u.username ? decodeURIComponent(u.username) : undefined,
          password: u.password ? decodeURIComponent(u.password) : undefined,
          db: Number(u.pathname.slice(1) || 0),
          tls: u.protocol === 'rediss:' ? {} : undefined,
        });
      }
      return new Redis(opts.url, { ...o, enableAutoPipelining: pipelined });
    };
    this.r = open(common, true);
    this.w = open(common, false);
    // connection errors are reported through the command that fails; without a listener ioredis logs them
    this.r.on('error', () => undefined);
    this.w.on('error', () => undefined);
  }

  private k(...parts: (string | number)[]): string {
    return [this.p, ...parts].join(':');
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.writeChain.catch(() => undefined);
    const subs = [...this.subscribers];
    this.subscribers.clear();
    if (this.barrier) subs.push(this.barrier);
    this.barrier = undefined;
    await Promise.all([closeRedisClient(this.r), closeRedisClient(this.w), ...subs.map((s) => closeRedisClient(s))]);
  }

  /**
   * checkPersistence refuses a Redis that keeps nothing across its own restart (neither AOF nor RDB
   * snapshots): certificates acknowledged to devices would vanish. CONFIG may be disabled (managed
   * Redis): then INFO persistence decides, and an RDB-only server is trusted when its last save worked.
   */
  async checkPersistence(): Promise<void> {
    const info = String(await this.r.info('persistence'));
    const field = (name: string): string | undefined => new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim();
    if (field('aof_enabled') === '1') return;
    let save: string | undefined;
    try {
      const got = (await this.r.config('GET', 'save')) as string[];
      save = got[1];
    } catch {
      save = field('rdb_last_bgsave_status') === 'ok' && field('rdb_changes_since_last_save') !== undefined ? 'unknown' : undefined;
    }
    if (save !== undefined && save.trim() !== '') return;
    throw new DeviceCaError(
      'config',
      'the Redis store has no persistence (neither appendonly nor save): certificates would be lost when Redis restarts; enable AOF (appendonly yes), or set store.allowNoPersistence: true',
    );
  }

  // ---- transactions ----
  /** serial runs fn after every earlier write of this client: one transaction at a time on the writer connection. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.writeChain.then(fn, fn);
    this.writeChain = run.catch(() => undefined);
    return run;
  }

  /**
   * tx runs one optimistic transaction: WATCH `watch`, let `body` read (on the writer) and queue its writes,
   * EXEC; when another client changed a watched key, everything is read again. `body` throws to refuse
   * (nothing is written). Audited bodies watch the audit head (see auditTo).
   */
  private tx<T>(watch: string[], body: (m: Tx) => Promise<T>): Promise<T> {
    return this.serial(async () => {
      for (let attempt = 0; attempt < TX_ATTEMPTS; attempt++) {
        await this.w.watch(...watch);
        const m = this.w.multi();
        let result: T;
        try {
          result = await body(m);
        } catch (e) {
          await this.w.unwatch(); // the queued writes are never sent: MULTI goes out only with exec()
          throw e;
        }
        const replies = await m.exec();
        if (replies === null) {
          this.writeStats.conflicts++;
          if (attempt > 3) await new Promise((res) => setTimeout(res, Math.random() * Math.min(attempt, 20)));
          continue; // a watched key changed: read again
        }
        for (const [err] of replies) if (err) throw err;
        this.writeStats.commits++;
        if (replies.length && this.waitReplicas) await this.awaitReplicas(this.waitReplicas);
        return result;
      }
      throw new DeviceCaError('store-unavailable', 'store busy (too many concurrent writers)', { retryAfterSeconds: 2 });
    });
  }

  /** awaitReplicas: WAIT on the writer connection (the replication offset of its last write). */
  private async awaitReplicas(w: { replicas: number; timeoutMs: number }): Promise<void> {
    const acked = await (this.w as Redis).wait(w.replicas, w.timeoutMs);
    if (acked < w.replicas) throw new DeviceCaError('store-unavailable', `store write not replicated (${acked} of ${w.replicas} replicas within ${w.timeoutMs} ms)`, { retryAfterSeconds: 5 });
  }

  private get headKey(): string {
    return this.k('audit', 'head');
  }

  /** auditTo reads the chain's head (watched by the caller's tx) and queues the next record. */
  private async auditTo(m: Tx, e: AuditInput, at: Date, head?: { seq: number; hash: string } | null): Promise<AuditRecord> {
    const h = head !== undefined ? head : await this.readHead(this.w);
    const rec = nextAuditRecord(h, e, at);
    this.queueAudit(m, rec);
    return rec;
  }

  private queueAudit(m: Tx, rec: AuditRecord): void {
    this.queueAuditRecord(m, rec);
    m.set(this.headKey, headValue(rec));
  }

  /** queueAuditRecord queues a record and its subject index entry; the head is set by the caller. */
  private queueAuditRecord(m: AuditedWrites, rec: AuditRecord): void {
    const row: AuditRow = { ...rec, at: ms(rec.at) };
    m.hset(this.k('audit', 'rec'), String(rec.seq), JSON.stringify(row));
    m.zadd(this.k('audit', 'subject', rec.subject), rec.seq, String(rec.seq));
  }

  private async readHead(c: RedisClient): Promise<{ seq: number; hash: string } | null> {
    return parseHead(await c.get(this.headKey));
  }

  private async getJson<T>(c: RedisClient, key: string): Promise<T | null> {
    const v = await c.get(key);
    return v === null ? null : (JSON.parse(v) as T);
  }

  private async mgetJson<T>(c: RedisClient, keys: string[]): Promise<(T | null)[]> {
    if (keys.length === 0) return [];
    return (await c.mget(...keys)).map((v) => (v === null ? null : (JSON.parse(v) as T)));
  }

  // ---- audit ----
  /** appendAudit: one record, committed with whatever else this client has queued (see commitAudited). */
  appendAudit(e: AuditInput): Promise<AuditRecord> {
    return this.queueAudited<AuditRecord>({ kind: 'audit', e });
  }

  /**
   * queueAudited queues an audited write of the hot path (audit appends, recorded issuances) and starts
   * a commit unless one is under way: what arrives while a batch is on its way to Redis goes in the next
   * batch, so a busy node sends one script call for many writes (a group commit).
   */
  private queueAudited<T>(w: AuditedWrite): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.auditedQueue.push({ w, resolve: resolve as (v: unknown) => void, reject });
      if (!this.draining) {
        this.draining = true;
        void this.drainAudited();
      }
    });
  }

  private async drainAudited(): Promise<void> {
    try {
      while (this.auditedQueue.length)
        await this.serial(() => {
          const jobs = this.auditedQueue;
          this.auditedQueue = [];
          return this.commitAudited(jobs);
        });
    } finally {
      this.draining = false;
    }
  }

  /**
   * commitAudited commits a batch of audited writes with one script call (AUDITED_WRITE_LUA) and settles
   * each job: read every value the jobs check (one pipelined round trip), decide each job in order on
   * that view (a refused job is rejected and writes nothing; the later jobs see the earlier ones'
   * writes), chain the accepted jobs' audit records to the head, send. When another node appended first
   * the script answers the new head and the same batch is chained to it and sent again, with no reads;
   * when a checked value changed, everything is read and decided again. Never throws.
   */
  private async commitAudited(jobs: AuditedJob[]): Promise<void> {
    let plan: AuditedPlan | undefined;
    try {
      for (let attempt = 0; attempt < TX_ATTEMPTS; attempt++) {
        const view = await this.readAudited(jobs);
        let head = view.head;
        for (let rechain = 0; rechain < TX_ATTEMPTS; rechain++) {
          plan = this.planAudited(jobs, view.values, parseHead(head));
          if (plan.accepted === 0) return this.settleAudited(jobs, plan);
          const reply = (await this.auditedScript()(...plan.batch.args(head ?? '', plan.newHead))) as string[];
          if (reply[0] === 'ok') {
            this.writeStats.commits++;
            const replicated = this.waitReplicas
              ? await this.awaitReplicas(this.waitReplicas).then(
                  () => null,
                  (e: unknown) => ({ error: e }),
                )
              : null;
            // too few replicas: the committed writes' callers get that error, the refused ones their refusal
            return this.settleAudited(jobs, replicated ? { ...plan, outcomes: plan.outcomes.map((o) => ('error' in o ? o : replicated)) } : plan);
          }
          this.writeStats.conflicts++;
          if (reply[0] !== 'head') break; // a checked value changed: read again
          head = reply[1] === '' ? null : reply[1];
        }
        if (attempt > 3) await new Promise((res) => setTimeout(res, Math.random() * Math.min(attempt, 20)));
      }
      throw new DeviceCaError('store-unavailable', 'store busy (too many concurrent writers)', { retryAfterSeconds: 2 });
    } catch (e) {
      for (const j of jobs) j.reject(e);
    }
  }

  private settleAudited(jobs: AuditedJob[], plan: AuditedPlan): void {
    jobs.forEach((j, i) => {
      const out = plan.outcomes[i];
      if ('error' in out) j.reject(out.error);
      else j.resolve(out.value);
    });
  }

  /** auditedScript: the script as a command of the writer connection (EVALSHA, EVAL once when Redis lacks it). */
  private auditedScript(): (...args: (string | number | Buffer)[]) => Promise<unknown> {
    const w = this.w as unknown as { dcaAuditedWrite?: (...args: (string | number | Buffer)[]) => Promise<unknown> };
    if (!w.dcaAuditedWrite) this.w.defineCommand('dcaAuditedWrite', { lua: AUDITED_WRITE_LUA });
    return w.dcaAuditedWrite!.bind(this.w);
  }

  /** readAudited: the head and every value the jobs' decisions read, in one round trip on the writer. */
  private async readAudited(jobs: AuditedJob[]): Promise<{ head: string | null; values: Map<string, string | null> }> {
    const keys = new Set<string>();
    for (const { w } of jobs) if (w.kind === 'issuance') for (const k of this.issuanceKeys(w.args)) keys.add(k);
    const list = [...keys];
    const [head, ...values] = await Promise.all([this.w.get(this.headKey), ...list.map((k) => this.w.get(k))]);
    return { head, values: new Map(list.map((k, i) => [k, values[i]])) };
  }

  /** issuanceKeys: what recordIssuance decides on: the device, the secret, the serial's record, the request. */
  private issuanceKeys(a: IssuanceArgs): string[] {
    const keys = [this.k('cert', a.cert.serial)];
    if (a.cert.deviceId !== null) keys.push(this.k('dev', a.cert.deviceId));
    if (a.consumeSecretId !== undefined) keys.push(this.k('secret', a.consumeSecretId));
    if (a.requestId !== undefined) keys.push(this.k('req', a.requestId));
    return keys;
  }

  /**
   * planAudited decides every job on `read` (what Redis held) in order, chaining the accepted jobs'
   * records to `head`; each value a decision used becomes a check of the batch.
   */
  private planAudited(jobs: AuditedJob[], read: Map<string, string | null>, head: { seq: number; hash: string } | null): AuditedPlan {
    const batch = new AuditedWriteBatch(this.headKey);
    const checked = new Set<string>();
    // what Redis holds after the earlier jobs of the batch; each key read checked as it was before the batch
    const get = (key: string): string | null => {
      if (!checked.has(key)) {
        checked.add(key);
        batch.expect(key, read.get(key) ?? null);
      }
      const written = batch.lastSet(key);
      return written !== undefined ? String(written) : (read.get(key) ?? null);
    };
    const now = new Date();
    let accepted = 0;
    const outcomes: AuditedPlan['outcomes'] = jobs.map(({ w }) => {
      try {
        let rec: AuditRecord;
        if (w.kind === 'audit') rec = nextAuditRecord(head, w.e, now);
        else {
          this.planIssuance(w.args, get, batch, now); // refuses before it queues any write
          rec = nextAuditRecord(head, w.args.audit, now);
        }
        this.queueAuditRecord(batch, rec);
        head = rec;
        accepted++;
        return { value: w.kind === 'audit' ? rec : undefined };
      } catch (error) {
        return { error };
      }
    });
    return { batch, accepted, outcomes, newHead: head ? headValue(head) : '' };
  }

  /** planIssuance: recordIssuance's checks on the batch's view, then its writes (nothing queued when it refuses). */
  private planIssuance(args: IssuanceArgs, get: (key: string) => string | null, m: AuditedWrites, now: Date): void {
    const c = args.cert;
    const parse = <T>(v: string | null): T | null => (v === null ? null : (JSON.parse(v) as T));
    const dev = c.deviceId !== null ? parse<DeviceRow>(get(this.k('dev', c.deviceId))) : null;
    const secret = args.consumeSecretId !== undefined ? parse<SecretRow>(get(this.k('secret', args.consumeSecretId))) : null;
    const serialTaken = get(this.k('cert', c.serial)) !== null;
    const req = args.requestId !== undefined ? parse<RequestRow>(get(this.k('req', args.requestId))) : null;
    // the RA checked the device's state before signing; a release, suspension or retirement that
    // committed meanwhile must not be outlived by a certificate recorded after it
    if (dev && dev.state !== 'registered' && dev.state !== 'active') throw new DeviceCaError('forbidden', `device is ${dev.state}`);
    if (args.consumeSecretId !== undefined && (!secret || secret.usedAt !== null)) throw new DeviceCaError('unauthenticated', 'enrollment secret already used');
    if (serialTaken) throw new DeviceCaError('internal', 'store write failed', { detail: `certificate serial ${c.serial} exists` });
    if (secret) m.set(this.k('secret', secret.id), JSON.stringify({ ...secret, usedAt: ms(now), certSerial: c.serial }));
    const { der, ...fields } = c;
    const meta: CertMeta = {
      ...fields,
      notBefore: ms(c.notBefore),
      notAfter: ms(c.notAfter),
      status: 'valid',
      revokedAt: null,
      revocationReason: null,
      invalidityDate: null,
      createdAt: ms(now),
    };
    m.set(this.k('cert', c.serial), JSON.stringify(meta));
    m.set(this.k('cert-der', c.serial), der);
    m.zadd(this.k('certs'), 0, c.serial);
    if (c.deviceId !== null) m.zadd(this.k('dev-certs', c.deviceId), 0, c.serial);
    this.chartCertificate(m, meta);
    if (dev && dev.state === 'registered') {
      m.set(this.k('dev', dev.id), JSON.stringify({ ...dev, state: 'active', updatedAt: ms(now) }));
      this.trackDevice(m, dev, -1);
      this.trackDevice(m, { id: dev.id, owner: dev.owner, state: 'active' }, 1);
    }
    if (req && req.status === 'approved') m.set(this.k('req', req.id), JSON.stringify({ ...req, status: 'issued', certSerial: c.serial }));
  }

  async listAudit(filter: { subject?: string } & PageRequest): Promise<Page<AuditRecord>> {
    const after = seqCursor(filter.after);
    const limit = pageLimit(filter);
    let seqs: string[];
    if (filter.subject !== undefined) seqs = await this.r.zrangebyscore(this.k('audit', 'subject', filter.subject), `(${after}`, '+inf', 'LIMIT', 0, limit + 1);
    else {
      const head = await this.readHead(this.r);
      const last = Math.min(head?.seq ?? 0, after + limit + 1);
      seqs = [];
      for (let s = after + 1; s <= last; s++) seqs.push(String(s));
    }
    const rows = seqs.length ? await this.r.hmget(this.k('audit', 'rec'), ...seqs) : [];
    const records = rows.filter((v): v is string => v !== null).map((v) => auditFromRow(JSON.parse(v) as AuditRow));
    return pageOf(records, limit, (r) => String(r.seq));
  }

  // ---- devices and secrets ----
  async createDevice(
    d: Omit<DeviceRecord, 'createdAt' | 'updatedAt' | 'pendingOwner'>,
    secret: Omit<SecretRecord, 'id' | 'deviceId' | 'usedAt' | 'certSerial'>,
    audit: AuditInput,
  ): Promise<DeviceRecord> {
    const devKey = this.k('dev', d.id);
    return this.tx([this.headKey, devKey], async (m) => {
      if (await this.w.exists(devKey)) throw new DeviceCaError('conflict', `device ${d.id} already exists`);
      const now = new Date();
      const rec: DeviceRecord = { ...d, pendingOwner: null, createdAt: now, updatedAt: now };
      m.set(devKey, JSON.stringify(deviceRow(rec)));
      m.zadd(this.k('devs'), 0, d.id);
      this.indexLabel(m, rec);
      this.trackDevice(m, rec, 1);
      await this.addSecretTo(m, d.id, secret.hash, secret.expiresAt);
      await this.auditTo(m, audit, now);
      return rec;
    });
  }

  async createDevices(
    items: { device: Omit<DeviceRecord, 'createdAt' | 'updatedAt' | 'pendingOwner'>; secret: Omit<SecretRecord, 'id' | 'deviceId' | 'usedAt' | 'certSerial'>; audit: AuditInput }[],
    opts: { skipExisting: boolean },
  ): Promise<{ created: string[]; existing: string[] }> {
    distinctIds(items.map((i) => i.device.id));
    if (items.length === 0) return { created: [], existing: [] };
    const devKeys = items.map((i) => this.k('dev', i.device.id));
    return this.tx([this.headKey, ...devKeys], async (m) => {
      const taken = await this.w.mget(...devKeys);
      const created: string[] = [];
      const existing: string[] = [];
      const fresh = items.filter((it, i) => {
        if (taken[i] === null) return true;
        if (!opts.skipExisting) throw new DeviceCaError('conflict', `device ${it.device.id} already exists`);
        existing.push(it.device.id);
        return false;
      });
      if (fresh.length === 0) return { created, existing };
      const now = new Date();
      // secret ids from the counter outside the transaction, as addSecretTo: a retry skips ids, never reuses them
      const last = await this.w.incrby(this.k('secret', 'seq'), fresh.length);
      let head = await this.readHead(this.w);
      fresh.forEach(({ device: d, secret, audit }, i) => {
        const rec: DeviceRecord = { ...d, pendingOwner: null, createdAt: now, updatedAt: now };
        m.set(this.k('dev', d.id), JSON.stringify(deviceRow(rec)));
        m.zadd(this.k('devs'), 0, d.id);
        this.indexLabel(m, rec);
        this.trackDevice(m, rec, 1);
        const id = last - fresh.length + 1 + i;
        const row: SecretRow = { id, deviceId: d.id, hash: secret.hash, expiresAt: ms(secret.expiresAt), usedAt: null, certSerial: null };
        m.set(this.k('secret', id), JSON.stringify(row));
        m.zadd(this.k('dev-secrets', d.id), id, String(id));
        const a = nextAuditRecord(head, audit, now);
        this.queueAudit(m, a);
        head = { seq: a.seq, hash: a.hash };
        created.push(d.id);
      });
      return { created, existing };
    });
  }

  /**
   * indexLabel queues a device into its label's sorted set (`devs-label:<label>`, ids in lexicographic
   * order, as `devs`), in the transaction that creates it: a label search walks that set, not every
   * device. A device's label is set when it is created and never changes.
   */
  private indexLabel(m: Tx, d: { id: string; label: string | null }): void {
    if (d.label !== null) m.zadd(this.k('devs-label', d.label), 0, d.id);
  }

  /**
   * trackDevice queues, for one device entering (1) or leaving (-1) an owner and state, the change of the
   * device counts and of the search sets, in the transaction (or audited batch) that writes the device, so
   * no write path can change a device without them: `dev-counts` holds `<state>|*` (the fleet) and
   * `<state>|<owner key>` fields, `dev-owners` each owner's devices as a sorted-set score;
   * `devs-owner:<owner>` and `devs-state:<state>` hold the ids (score 0, lexicographic order = id order, as
   * `devs`), so an owner or state search reads its own set instead of walking every device. A device
   * without an owner is in no owner set (no search asks for it). Leaving then entering the same set (a state
   * change that keeps the owner) removes then adds: the id stays.
   */
  private trackDevice(m: AuditedWrites, d: { id: string; owner: string | null; state: DeviceState }, by: 1 | -1): void {
    const o = ownerKey(d.owner);
    m.hincrby(this.k('dev-counts'), `${d.state}|*`, by);
    m.hincrby(this.k('dev-counts'), `${d.state}|${o}`, by);
    m.zincrby(this.k('dev-owners'), by, o);
    const sets = d.owner === null ? [this.k('devs-state', d.state)] : [this.k('devs-state', d.state), this.k('devs-owner', d.owner)];
    for (const key of sets) {
      if (by === 1) m.zadd(key, 0, d.id);
      else m.zrem(key, d.id);
    }
  }

  async countDevices(o: { owner?: string; topOwners: number }): Promise<DeviceCounts> {
    const field = o.owner === undefined ? '*' : ownerKey(o.owner);
    let counts: Map<string, number>;
    let owners: [string, number][];
    // a store written by an earlier version has devices but no counts yet: counted once, then kept
    const walked = (await this.r.exists(...this.deviceIndexFlags)) === this.deviceIndexFlags.length ? null : await this.rebuildDeviceCounts();
    if (walked) {
      counts = walked.counts;
      owners = [...walked.owners].filter(([, n]) => n > 0);
    } else {
      // MULTI on the reader: one consistent view; on the writer it would end a transaction's WATCH
      const m = this.r.multi().hmget(this.k('dev-counts'), ...DEVICE_STATES.map((s) => `${s}|${field}`));
      if (o.owner === undefined && o.topOwners > 0) m.zrevrangebyscore(this.k('dev-owners'), '+inf', '(0', 'WITHSCORES', 'LIMIT', 0, o.topOwners);
      const replies = (await m.exec()) ?? [];
      for (const [err] of replies) if (err) throw err;
      counts = new Map((replies[0][1] as (string | null)[]).map((v, i) => [`${DEVICE_STATES[i]}|${field}`, Number(v ?? 0)]));
      const flat = (replies[1]?.[1] ?? []) as string[];
      owners = [];
      for (let i = 0; i < flat.length; i += 2) owners.push([flat[i], Number(flat[i + 1])]);
    }
    const byState = emptyDeviceCounts();
    let total = 0;
    for (const s of DEVICE_STATES) {
      byState[s] = counts.get(`${s}|${field}`) ?? 0;
      total += byState[s];
    }
    let topOwners: DeviceCounts['topOwners'] = [];
    if (o.owner !== undefined) topOwners = total > 0 && o.topOwners > 0 ? [{ owner: o.owner, count: total }] : [];
    else
      topOwners = owners
        .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
        .slice(0, o.topOwners)
        .map(([key, count]) => ({ owner: key === '-' ? null : key.slice(1), count }));
    return { total, byState, topOwners };
  }

  /**
   * deviceIndexFlags: what rebuildDeviceCounts sets once the counts (`dev-counts-ready`), the label sets
   * (`dev-labels-ready`) and the owner and state sets (`dev-index-ready`) hold every device; a store
   * written by an earlier version lacks one or more of them.
   */
  private get deviceIndexFlags(): string[] {
    return [this.k('dev-counts-ready'), this.k('dev-labels-ready'), this.k('dev-index-ready')];
  }

  /**
   * rebuildDeviceCounts counts every device once (a store written before the counts existed) and saves the
   * counts, fills the label sets (`indexLabel`) and rewrites the owner and state sets (`trackDevice`) only if
   * no device was written meanwhile: every device write moves the audit head, a copy into
   * the store adds to `devs`; either makes it count again. After three tries (a busy fleet) it returns the
   * walk's counts without saving them (exact as of the walk, like a listing), and the next call tries again.
   */
  private async rebuildDeviceCounts(): Promise<{ counts: Map<string, number>; owners: Map<string, number> } | null> {
    let counts = new Map<string, number>();
    let owners = new Map<string, number>();
    for (let attempt = 0; attempt < 3; attempt++) {
      const [head, n] = await Promise.all([this.w.get(this.headKey), this.w.zcard(this.k('devs'))]);
      counts = new Map<string, number>();
      owners = new Map<string, number>();
      const labels: [string, string][] = [];
      const sets = new Map<string, string[]>();
      const index = (key: string, id: string) => {
        const ids = sets.get(key);
        if (ids) ids.push(id);
        else sets.set(key, [id]);
      };
      const add = (k: string, map: Map<string, number>) => map.set(k, (map.get(k) ?? 0) + 1);
      for (let start = 0; ; start += 1000) {
        const ids = await this.w.zrange(this.k('devs'), start, start + 999);
        if (ids.length === 0) break;
        const rows = await this.mgetJson<DeviceRow>(
          this.w,
          ids.map((id) => this.k('dev', id)),
        );
        for (const r of rows) {
          if (!r) continue;
          if (r.label !== null) labels.push([r.label, r.id]);
          add(`${r.state}|*`, counts);
          add(`${r.state}|${ownerKey(r.owner)}`, counts);
          add(ownerKey(r.owner), owners);
          index(this.k('devs-state', r.state), r.id);
          if (r.owner !== null) index(this.k('devs-owner', r.owner), r.id);
        }
      }
      const saved = await this.tx([this.headKey, this.k('devs')], async (m) => {
        const [head2, n2] = await Promise.all([this.w.get(this.headKey), this.w.zcard(this.k('devs'))]);
        if (head2 !== head || n2 !== n) return false;
        // the owner and state sets are rewritten whole: every state's, and every owner's the counts knew
        // (an owner's set is written exactly when its count is); what a write left meanwhile is replaced
        const known = await this.w.zrange(this.k('dev-owners'), 0, -1);
        const stale = [...DEVICE_STATES.map((st) => this.k('devs-state', st)), ...known.filter((o) => o.startsWith('+')).map((o) => this.k('devs-owner', o.slice(1)))];
        for (let i = 0; i < stale.length; i += 1000) m.del(...stale.slice(i, i + 1000));
        for (const [key, ids] of sets) for (let i = 0; i < ids.length; i += 10_000) m.zadd(key, ...ids.slice(i, i + 10_000).flatMap((id) => [0, id]));
        m.set(this.k('dev-index-ready'), '1');
        m.del(this.k('dev-counts'), this.k('dev-owners'));
        if (counts.size) m.hset(this.k('dev-counts'), Object.fromEntries(counts));
        if (owners.size) m.zadd(this.k('dev-owners'), ...[...owners].flatMap(([k, v]) => [v, k]));
        m.set(this.k('dev-counts-ready'), '1');
        // the label sets: adding is idempotent and a label never changes, so sets written meanwhile stay right
        for (const [label, id] of labels) m.zadd(this.k('devs-label', label), 0, id);
        m.set(this.k('dev-labels-ready'), '1');
        return true;
      });
      if (saved) return null;
    }
    return { counts, owners };
  }

  private async addSecretTo(m: Tx, deviceId: string, hash: string, expiresAt: Date): Promise<void> {
    // ids come from a counter outside the transaction: a retried transaction skips one, never reuses one
    const id = await this.w.incr(this.k('secret', 'seq'));
    const row: SecretRow = { id, deviceId, hash, expiresAt: ms(expiresAt), usedAt: null, certSerial: null };
    m.set(this.k('secret', id), JSON.stringify(row));
    m.zadd(this.k('dev-secrets', deviceId), id, String(id));
  }

  async getDevice(id: string): Promise<DeviceRecord | null> {
    const row = await this.getJson<DeviceRow>(this.r, this.k('dev', id));
    return row ? deviceFromRow(row) : null;
  }

  /**
   * listDevices reads the sorted set of each filter given (`devs-label:<label>`, `devs-owner:<owner>`,
   * `devs-state:<state>`; `devs` without one) from `after` by ZRANGEBYLEX, within the id prefix's range.
   * With two or three filters it walks the smallest set (ZCARD) and keeps the ids the other sets hold
   * (ZMSCORE per batch), so no filter walks the fleet. The device rows are checked against the filters
   * again: a device changed between the set read and the row read is answered as the row says. A store
   * written before the sets has them filled once, by the first search or overview (rebuildDeviceCounts);
   * while a busy fleet keeps that from saving, every device is walked and filtered.
   */
  async listDevices(filter: { owner?: string; state?: DeviceState; idPrefix?: string; label?: string } & PageRequest): Promise<Page<DeviceRecord>> {
    const limit = pageLimit(filter);
    const wanted: string[] = [];
    if (filter.label !== undefined) wanted.push(this.k('devs-label', filter.label));
    if (filter.owner !== undefined) wanted.push(this.k('devs-owner', filter.owner));
    if (filter.state !== undefined) wanted.push(this.k('devs-state', filter.state));
    const indexed = wanted.length > 0 && ((await this.r.exists(...this.deviceIndexFlags)) === this.deviceIndexFlags.length || (await this.rebuildDeviceCounts()) === null);
    let walk = this.k('devs');
    let others: string[] = [];
    if (indexed) {
      const sizes = wanted.length > 1 ? await Promise.all(wanted.map((key) => this.r.zcard(key))) : [0];
      const smallest = sizes.indexOf(Math.min(...sizes));
      walk = wanted[smallest];
      others = wanted.filter((_, i) => i !== smallest);
    }
    const p = filter.idPrefix;
    // with a prefix: the lexicographic range [p, p + DEL), entered at the cursor when it is inside it
    const range = p === undefined ? undefined : { from: filter.after !== undefined && filter.after >= p ? `(${filter.after}` : `[${p}`, to: `(${p}\x7f` };
    const rows = await this.scanLex(walk, filter.after, limit + 1, range, async (members) => {
      let ids = members;
      for (const key of others) {
        if (ids.length === 0) break;
        const scores = await this.r.zmscore(key, ...ids);
        ids = ids.filter((_, i) => scores[i] !== null);
      }
      if (ids.length === 0) return [];
      const devs = await this.mgetJson<DeviceRow>(
        this.r,
        ids.map((id) => this.k('dev', id)),
      );
      return devs.filter(
        (x): x is DeviceRow =>
          x !== null &&
          (filter.owner === undefined || x.owner === filter.owner) &&
          (filter.state === undefined || x.state === filter.state) &&
          (filter.label === undefined || x.label === filter.label),
      );
    });
    return pageOf(rows.map(deviceFromRow), limit, (d) => d.id);
  }

  /**
   * scanLex walks a lexicographic sorted set from after, batch by batch (growing while the filter keeps
   * few), keeping what `load` returns for each batch, until `want` items are found or the set ends: a filter never hides rows behind a page.
   */
  private async scanLex<T>(key: string, after: string | undefined, want: number, range: { from: string; to: string } | undefined, load: (members: string[]) => Promise<T[]>): Promise<T[]> {
    const out: T[] = [];
    let from = range?.from ?? lexAfter(after);
    // a filter that keeps few members: each round reads twice as many, up to 16 times the first round's
    for (let grow = 1; ; grow = Math.min(grow * 2, 16)) {
      const batch = Math.max(want - out.length, Math.min(SCAN_BATCH, want * 4) * grow);
      const members = await this.r.zrangebylex(key, from, range?.to ?? '+', 'LIMIT', 0, batch);
      if (members.length === 0) return out;
      for (const item of await load(members)) {
        out.push(item);
        if (out.length >= want) return out;
      }
      if (members.length < batch) return out;
      from = `(${members[members.length - 1]}`;
    }
  }

  private async secretsOf(c: RedisClient, deviceId: string): Promise<SecretRow[]> {
    const ids = await c.zrevrange(this.k('dev-secrets', deviceId), 0, -1);
    return (
      await this.mgetJson<SecretRow>(
        c,
        ids.map((id) => this.k('secret', id)),
      )
    ).filter((x): x is SecretRow => x !== null);
  }

  async activeSecrets(deviceId: string, now: Date): Promise<SecretRecord[]> {
    return (await this.secretsOf(this.r, deviceId)).filter((s) => s.usedAt === null && s.expiresAt > ms(now)).map(secretFromRow);
  }

  async spentSecrets(deviceId: string, usedSince: Date): Promise<SecretRecord[]> {
    return (await this.secretsOf(this.r, deviceId)).filter((s) => s.usedAt !== null && s.usedAt >= ms(usedSince) && s.certSerial !== null).map(secretFromRow);
  }

  // ---- certificates ----
  async getCertificate(serial: string): Promise<CertificateRecord | null> {
    const [meta, der] = await Promise.all([this.getJson<CertMeta>(this.r, this.k('cert', serial)), this.r.getBuffer(this.k('cert-der', serial))]);
    return meta && der ? certFromRow(meta, der) : null;
  }

  async listCertificates(filter: { deviceId?: string; status?: CertificateStatus; owner?: string } & PageRequest): Promise<Page<CertificateRecord>> {
    const limit = pageLimit(filter);
    const index = filter.deviceId !== undefined ? this.k('dev-certs', filter.deviceId) : this.k('certs');
    const rows = await this.scanLex(index, filter.after, limit + 1, undefined, async (serials) => {
      let metas = (
        await this.mgetJson<CertMeta>(
          this.r,
          serials.map((s) => this.k('cert', s)),
        )
      ).filter((x): x is CertMeta => x !== null && (filter.status === undefined || x.status === filter.status));
      if (filter.owner !== undefined) {
        const devIds = [...new Set(metas.map((x) => x.deviceId).filter((x): x is string => x !== null))];
        const devs = await this.mgetJson<DeviceRow>(
          this.r,
          devIds.map((id) => this.k('dev', id)),
        );
        const owned = new Set(devs.filter((x) => x !== null && x.owner === filter.owner).map((x) => x!.id));
        metas = metas.filter((x) => x.deviceId !== null && owned.has(x.deviceId));
      }
      if (metas.length === 0) return [];
      const ders = await this.r.mgetBuffer(...metas.map((x) => this.k('cert-der', x.serial)));
      return metas.map((x, i) => certFromRow(x, ders[i] ?? Buffer.alloc(0)));
    });
    return pageOf(rows, limit, (c) => c.serial);
  }

  /**
   * recordIssuance: the certificate, its device's state, the consumed secret, the settled request and the
   * audit result, committed by one script call with other audited writes of this client (commitAudited):
   * no WATCH, and the promise settles only after Redis has applied it (the certificate is acknowledged
   * by Redis before it is returned).
   */
  recordIssuance(args: IssuanceArgs): Promise<void> {
    return this.queueAudited<void>({ kind: 'issuance', args });
  }

  /**
   * chartCertificate queues a newly recorded device certificate into the overview charts' keys, in the
   * transaction that records it: `cert-hours` (a hash: UTC hour number -> certificates recorded in it,
   * HINCRBY) and, while it is valid, the expiry index (indexExpiry).
   */
  private chartCertificate(m: AuditedWrites, meta: CertMeta): void {
    if (meta.deviceId === null) return;
    m.hincrby(this.k('cert-hours'), String(Math.floor(meta.createdAt / HOUR_MS)), 1);
    // a certificate is recorded once, into a store that never held it: only a valid one enters the index
    if (meta.status === 'valid') m.zadd(this.k('certs-expiry'), meta.notAfter, meta.serial);
  }

  /**
   * indexExpiry keeps `certs-expiry`, the valid device certificates scored by notAfter, in step with a
   * certificate's status: every status change goes through setCertStatus, which calls this, and ZADD/ZREM
   * are idempotent, so a repeated change cannot count twice (per-day counters would need the old status).
   */
  private indexExpiry(m: Tx, meta: CertMeta): void {
    if (meta.deviceId === null) return;
    if (meta.status === 'valid') m.zadd(this.k('certs-expiry'), meta.notAfter, meta.serial);
    else m.zrem(this.k('certs-expiry'), meta.serial);
  }

  async countIssuedPerHour(o: { from: Date; hours: number }): Promise<number[]> {
    const first = Math.floor(ms(o.from) / HOUR_MS);
    const hours = Array.from({ length: chartBuckets(o.hours) }, (_x, i) => first + i);
    const walked = (await this.r.exists(this.k('cert-charts-ready'))) === 1 ? null : await this.rebuildCertCharts();
    if (walked) return hours.map((h) => walked.hours.get(h) ?? 0);
    return (await this.r.hmget(this.k('cert-hours'), ...hours.map(String))).map((v) => Number(v ?? 0));
  }

  async countExpiringPerDay(o: { from: Date; days: number }): Promise<number[]> {
    const firstDay = Math.floor(ms(o.from) / DAY_MS);
    // bucket i: [start of day firstDay + i, start of the next day), the first from `from` on
    const bounds = Array.from({ length: chartBuckets(o.days) }, (_x, i) => [i === 0 ? ms(o.from) : (firstDay + i) * DAY_MS, (firstDay + i + 1) * DAY_MS]);
    const walked = (await this.r.exists(this.k('cert-charts-ready'))) === 1 ? null : await this.rebuildCertCharts();
    if (walked) {
      // the walk's notAfter times, sorted: each day is two binary searches
      const t = walked.expiry.sort((x, y) => x - y);
      const below = (v: number) => {
        let lo = 0;
        let hi = t.length;
        while (lo < hi) {
          const mid = (lo + hi) >> 1;
          if (t[mid] < v) lo = mid + 1;
          else hi = mid;
        }
        return lo;
      };
      return bounds.map(([a, b]) => below(b) - below(a));
    }
    // MULTI on the reader: one consistent view of the index, one ZCOUNT (O(log n)) per day
    const m = this.r.multi();
    for (const [a, b] of bounds) m.zcount(this.k('certs-expiry'), a, `(${b}`);
    const replies = (await m.exec()) ?? [];
    return replies.map(([err, n]) => {
      if (err) throw err;
      return Number(n);
    });
  }

  /**
   * rebuildCertCharts fills `cert-hours` and `certs-expiry` once, for a store written before them, by
   * walking every certificate; it saves them only if no certificate was written meanwhile (every
   * certificate write moves the audit head, a copy adds to `certs`), as rebuildDeviceCounts. After three
   * tries (a busy CA) it returns the walk's figures unsaved and the next call tries again.
   */
  private async rebuildCertCharts(): Promise<{ hours: Map<number, number>; expiry: number[] } | null> {
    let hours = new Map<number, number>();
    let expiry: number[] = [];
    for (let attempt = 0; attempt < 3; attempt++) {
      const [head, n] = await Promise.all([this.w.get(this.headKey), this.w.zcard(this.k('certs'))]);
      hours = new Map<number, number>();
      expiry = [];
      const valid: [number, string][] = [];
      for (let start = 0; ; start += 1000) {
        const serials = await this.w.zrange(this.k('certs'), start, start + 999);
        if (serials.length === 0) break;
        const metas = await this.mgetJson<CertMeta>(
          this.w,
          serials.map((x) => this.k('cert', x)),
        );
        for (const c of metas) {
          if (!c || c.deviceId === null) continue;
          const h = Math.floor(c.createdAt / HOUR_MS);
          hours.set(h, (hours.get(h) ?? 0) + 1);
          if (c.status === 'valid') {
            expiry.push(c.notAfter);
            valid.push([c.notAfter, c.serial]);
          }
        }
      }
      const saved = await this.tx([this.headKey, this.k('certs')], async (m) => {
        const [head2, n2] = await Promise.all([this.w.get(this.headKey), this.w.zcard(this.k('certs'))]);
        if (head2 !== head || n2 !== n) return false;
        m.del(this.k('cert-hours'), this.k('certs-expiry'));
        if (hours.size) m.hset(this.k('cert-hours'), Object.fromEntries([...hours].map(([h, c]) => [String(h), c])));
        for (let i = 0; i < valid.length; i += 1000) m.zadd(this.k('certs-expiry'), ...valid.slice(i, i + 1000).flatMap(([t, serial]) => [t, serial]));
        m.set(this.k('cert-charts-ready'), '1');
        return true;
      });
      if (saved) return null;
    }
    return { hours, expiry };
  }

  // ---- authentication attempts ----
  /**
   * reserveAuthAttempt decides on the key's own attempts (`auth:key:<key>`), so that set is what the
   * transaction watches, with `auth:ev` when the attempt is evictable (the count it bounds). The global
   * index `auth:all` is not watched: every reservation and every forgiveness writes it, so watching it
   * made reservations for unrelated devices, on this node (a forgiveness on the reader connection) and
   * on others, retry each other (bench/redis-http counted about one retry per Basic enrollment; issue 11).
   * The purge it feeds needs no watch: attempt ids are never reused and a stored attempt never changes,
   * so dropping an attempt another client dropped first is a no-op.
   */
  async reserveAuthAttempt(key: string, now: Date, rules: AuthAttemptRules): Promise<AuthAttemptReservation> {
    const cutoff = ms(now) - rules.windowSeconds * 1000;
    const all = this.k('auth', 'all');
    const ev = this.k('auth', 'ev');
    const keyZ = this.k('auth', 'key', key);
    return this.tx(rules.evictable ? [ev, keyZ] : [keyZ], async (m): Promise<AuthAttemptReservation> => {
      const drop = new Map<string, string>(); // attempt id -> its key
      // one round trip for the reads that do not depend on each other: the expired attempts of any key,
      // oldest first, a few per call (as the SQLite store), and the key's own attempts
      const [oldest, mine] = await Promise.all([this.w.zrange(all, 0, AUTH_PURGE_BATCH - 1), this.w.zrange(keyZ, 0, -1, 'WITHSCORES')]);
      const rows = await this.mgetJson<AttemptRow>(
        this.w,
        oldest.map((id) => this.k('auth', 'a', id)),
      );
      rows.forEach((r, i) => {
        if (r === null) drop.set(oldest[i], '');
        else if (r.at <= cutoff) drop.set(oldest[i], r.key);
      });
      const live: { id: string; at: number }[] = [];
      for (let i = 0; i < mine.length; i += 2) {
        const at = Number(mine[i + 1]);
        if (at <= cutoff) drop.set(mine[i], key);
        else live.push({ id: mine[i], at });
      }
      const n = live.length;
      let result: AuthAttemptReservation;
      if (n >= rules.limit) {
        const first = Math.min(...live.map((x) => x.at));
        result = { allowed: false, retryAt: new Date(first + rules.windowSeconds * 1000) };
      } else {
        const id = await this.w.incr(this.k('auth', 'seq'));
        m.set(this.k('auth', 'a', id), JSON.stringify({ key, at: ms(now) } satisfies AttemptRow));
        m.zadd(all, id, String(id));
        m.zadd(keyZ, ms(now), String(id));
        if (rules.evictable) {
          m.zadd(ev, id, String(id));
          const count = (await this.w.zcard(ev)) + 1;
          const excess = count - rules.maxEvictable;
          if (excess > 0) {
            const gone = await this.w.zrange(ev, 0, excess - 1);
            const goneRows = await this.mgetJson<AttemptRow>(
              this.w,
              gone.map((g) => this.k('auth', 'a', g)),
            );
            gone.forEach((g, i) => drop.set(g, goneRows[i]?.key ?? ''));
          }
        }
        result = { allowed: true, attemptId: String(id), attempts: n + 1 };
      }
      for (const [id, k] of drop) this.dropAttempt(m, id, k);
      return result;
    });
  }

  private dropAttempt(m: Tx, id: string, key: string): void {
    m.del(this.k('auth', 'a', id));
    m.zrem(this.k('auth', 'all'), id);
    m.zrem(this.k('auth', 'ev'), id);
    if (key !== '') m.zrem(this.k('auth', 'key', key), id);
  }

  async forgiveAuthAttempt(attemptId: string): Promise<void> {
    if (!/^\d{1,15}$/.test(attemptId)) return;
    const row = await this.getJson<AttemptRow>(this.r, this.k('auth', 'a', attemptId));
    if (!row) return;
    const m = this.r.multi();
    this.dropAttempt(m, attemptId, row.key);
    await m.exec();
  }

  async countAuthFailures(key: string, now: Date, windowSeconds: number): Promise<{ count: number; oldest: Date | null }> {
    const got = await this.r.zrangebyscore(this.k('auth', 'key', key), `(${ms(now) - windowSeconds * 1000}`, '+inf', 'WITHSCORES');
    return { count: got.length / 2, oldest: got.length ? new Date(Number(got[1])) : null };
  }

  // ---- manual approval queue ----
  async createRequest(r: Parameters<Store['createRequest']>[0], audit: AuditInput): Promise<EnrollmentRequestRecord> {
    const key = this.k('req', r.id);
    return this.tx([this.headKey, key], async (m) => {
      if (await this.w.exists(key)) throw new DeviceCaError('conflict', `request ${r.id} already exists`);
      const now = new Date();
      const rec: EnrollmentRequestRecord = { ...r, status: 'pending', certSerial: null, createdAt: now, decidedAt: null, decidedBy: null };
      m.set(key, JSON.stringify(requestRow(rec)));
      m.zadd(this.k('reqs'), 0, r.id);
      m.zadd(this.k('dev-reqs', r.deviceId), 0, r.id);
      m.set(this.k('req-by-csr', r.deviceId, r.csrSha256), r.id);
      await this.auditTo(m, audit, now);
      return rec;
    });
  }

  async findRequest(deviceId: string, csrSha256: string): Promise<EnrollmentRequestRecord | null> {
    const id = await this.r.get(this.k('req-by-csr', deviceId, csrSha256));
    if (id === null) return null;
    const row = await this.getJson<RequestRow>(this.r, this.k('req', id));
    return row ? requestFromRow(row) : null;
  }

  async listRequests(filter: { status?: RequestStatus } & PageRequest): Promise<Page<EnrollmentRequestRecord>> {
    const limit = pageLimit(filter);
    const rows = await this.scanLex(this.k('reqs'), filter.after, limit + 1, undefined, async (ids) =>
      (
        await this.mgetJson<RequestRow>(
          this.r,
          ids.map((id) => this.k('req', id)),
        )
      ).filter((x): x is RequestRow => x !== null && (filter.status === undefined || x.status === filter.status)),
    );
    return pageOf(rows.map(requestFromRow), limit, (r) => r.id);
  }

  async decideRequest(id: string, status: 'approved' | 'rejected', by: string, audit: AuditInput): Promise<EnrollmentRequestRecord> {
    return this.tx([this.headKey], async (m) => {
      const row = await this.getJson<RequestRow>(this.w, this.k('req', id));
      if (!row) throw new DeviceCaError('not-found', `no request ${id}`);
      if (row.status !== 'pending') throw new DeviceCaError('conflict', `request ${id} is ${row.status}, not pending`);
      const now = new Date();
      const next: RequestRow = { ...row, status, decidedAt: ms(now), decidedBy: by };
      m.set(this.k('req', id), JSON.stringify(next));
      await this.auditTo(m, audit, now);
      return requestFromRow(next);
    });
  }

  // ---- revocation and lifecycle ----
  private shardKey(issuer: string, shard: number): string {
    return this.k('shard-rev', issuer, shard);
  }

  /**
   * setCertStatus queues a status change: the record, the shard's revision, the shard's revoked index, the
   * expiry index, and a new status generation (statusGeneration), with the serial and then the generation
   * published (watchRevocations) as "<previous>><new>": `gen` holds the generation the transaction read
   * (its key watched) and moves on to the new one, so a listener can tell a message it never got (a chain
   * that does not join) from one that is late.
   */
  private setCertStatus(m: Tx, meta: CertMeta, gen: { value: string | null }): void {
    m.set(this.k('cert', meta.serial), JSON.stringify(meta));
    m.incr(this.shardKey(meta.issuer, meta.shard));
    const revokedIdx = this.k('shard-revoked', meta.issuer, meta.shard);
    if (meta.status === 'revoked') m.zadd(revokedIdx, 0, meta.serial);
    else m.zrem(revokedIdx, meta.serial);
    this.indexExpiry(m, meta);
    const generation = newStatusGeneration();
    m.set(this.statusGenerationKey, generation);
    // every node's OCSP status cache forgets this serial when EXEC commits (watchRevocations), then learns
    // the generation that change set and the one before it: from then on the generation alone says nothing
    // else changed, if the node was told every change since the generation its statuses were kept under
    m.publish(this.revocationChannel, meta.serial);
    m.publish(this.generationChannel, `${gen.value ?? ''}>${generation}`);
    gen.value = generation;
  }

  /** readStatusGeneration: the generation a transaction that watches its key chains its changes to (setCertStatus). */
  private async readStatusGeneration(): Promise<{ value: string | null }> {
    return { value: await this.w.get(this.statusGenerationKey) };
  }

  private get revocationChannel(): string {
    return this.k('revocations');
  }

  /** generationChannel: where setCertStatus publishes the generation it set (a channel of its own: nodes of a version before it read every message on revocationChannel as a serial) */
  private get generationChannel(): string {
    return this.k('status-gens');
  }

  private get statusGenerationKey(): string {
    return this.k('status-gen');
  }

  /**
   * statusGeneration (StatusGeneration, store/status-generation.ts): the value every status change sets in
   * its MULTI (setCertStatus) and every copied batch of certificates (importSnapshot), read from the master
   * on a connection of its own (`barrier`): a GET sent after another node's EXEC returned sees what it set.
   */
  async statusGeneration(): Promise<string | null> {
    // after close(), fails as every other call does, without opening a connection
    if (this.closed) return await this.r.get(this.statusGenerationKey);
    if (!this.barrier) {
      this.barrier = this.r instanceof Cluster ? this.r.duplicate(undefined, { enableAutoPipelining: false }) : this.r.duplicate({ enableAutoPipelining: false });
      this.barrier.on('error', () => undefined);
    }
    const barrier = this.barrier;
    // bounded: every OCSP answer of the node waits for this one read (ca/coalesced-read.ts), and a Redis
    // that keeps the connection but answers nothing (a hung host, a partition without a reset) would hold
    // them all for as long; ioredis has no such bound by default (no commandTimeout, and a Cluster's
    // offline queue waits while the cluster reconnects). On a timeout the connection is dropped (what it
    // has queued fails with it) and the next call opens a new one.
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        if (this.barrier === barrier) this.barrier = undefined;
        disconnectRedisClient(barrier);
        reject(new DeviceCaError('store-unavailable', `store unavailable (Redis did not answer within ${this.barrierTimeoutMs} ms)`, { retryAfterSeconds: 5 }));
      }, this.barrierTimeoutMs);
    });
    try {
      return await Promise.race([barrier.get(this.statusGenerationKey), timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * watchRevocations subscribes (on a connection of its own: a subscribed connection runs no other
   * command) to the channels setCertStatus publishes on. It is live once SUBSCRIBE is acknowledged, and
   * again after each reconnection once the subscription is renewed; not live while disconnected.
   */
  watchRevocations(onChange: (serial: string) => void, onLive: (live: boolean) => void, onGeneration?: (generation: string, previous: string | null | undefined) => void): () => void {
    // under Cluster, PUBLISH reaches every node, so a subscription on any node hears it
    const sub: RedisClient = this.r instanceof Cluster ? this.r.duplicate() : this.r.duplicate({ enableAutoPipelining: false, autoResubscribe: false, maxRetriesPerRequest: null });
    sub.on('error', () => undefined);
    let closed = false;
    // ioredis emits 'close' again for each failed reconnection while Redis is away: onLive is told changes only
    // (RevocationFeed), so the state is kept here
    let live: boolean | undefined;
    const report = (now: boolean) => {
      if (closed || now === live) return;
      live = now;
      onLive(now);
    };
    const channels = onGeneration ? [this.revocationChannel, this.generationChannel] : [this.revocationChannel];
    const subscribe = () =>
      void sub.subscribe(...channels).then(
        () => report(true),
        () => undefined,
      );
    sub.on('ready', subscribe);
    sub.on('close', () => report(false));
    // one connection: the messages of both channels arrive in the order the MULTIs published them
    const generationChannel = this.generationChannel;
    sub.on('message', (channel: string, message: string) => {
      if (channel !== generationChannel) return onChange(message);
      // "<previous>><new>" (setCertStatus); a bare value (a node of the first version) has no previous to chain to
      const at = message.indexOf('>');
      if (at < 0) onGeneration?.(message, undefined);
      else onGeneration?.(message.slice(at + 1), at === 0 ? null : message.slice(0, at));
    });
    this.subscribers.add(sub);
    return () => {
      closed = true;
      this.subscribers.delete(sub);
      disconnectRedisClient(sub);
    };
  }

  async applyDeviceChange(c: DeviceChange): Promise<{ device: DeviceRecord; changed: CertificateChange[] }> {
    return this.tx([this.headKey, this.statusGenerationKey], async (m) => {
      const now = new Date();
      const row = await this.getJson<DeviceRow>(this.w, this.k('dev', c.deviceId));
      if (!row) throw new DeviceCaError('not-found', `no device ${c.deviceId}`);
      if (!c.fromStates.includes(row.state)) throw new DeviceCaError('conflict', `device ${c.deviceId} is ${row.state}`);
      const pending = row.pendingOwner ?? null;
      if ((c.expect?.owner !== undefined && c.expect.owner !== row.owner) || (c.expect?.pendingOwner !== undefined && c.expect.pendingOwner !== pending))
        throw new DeviceCaError('conflict', `device ${c.deviceId} changed meanwhile; try again`);
      const changed: CertificateChange[] = [];
      if (c.revoke || c.releaseHolds) {
        const serials = await this.w.zrange(this.k('dev-certs', c.deviceId), 0, -1);
        const metas = (
          await this.mgetJson<CertMeta>(
            this.w,
            serials.map((s) => this.k('cert', s)),
          )
        ).filter((x): x is CertMeta => x !== null);
        const held = (x: CertMeta) => x.status === 'revoked' && x.revocationReason === 'certificateHold';
        const gen = await this.readStatusGeneration();
        for (const x of metas) {
          if (c.revoke && x.notAfter > ms(now) && (c.revoke.holdOnly ? x.status === 'valid' : x.status === 'valid' || held(x))) {
            this.setCertStatus(m, { ...x, status: 'revoked', revokedAt: ms(c.revoke.at), revocationReason: c.revoke.reason }, gen);
            changed.push({ serial: x.serial, issuer: x.issuer, shard: x.shard, status: 'revoked', reason: c.revoke.reason });
          }
        }
        if (c.releaseHolds)
          for (const x of metas)
            if (held(x)) {
              this.setCertStatus(m, { ...x, status: 'valid', revokedAt: null, revocationReason: null }, gen);
              changed.push({ serial: x.serial, issuer: x.issuer, shard: x.shard, status: 'valid', reason: null });
            }
      }
      if (c.deleteSecrets) {
        const ids = await this.w.zrange(this.k('dev-secrets', c.deviceId), 0, -1);
        if (ids.length) m.del(...ids.map((id) => this.k('secret', id)));
        m.del(this.k('dev-secrets', c.deviceId));
      }
      if (c.addSecret) await this.addSecretTo(m, c.deviceId, c.addSecret.hash, c.addSecret.expiresAt);
      if (c.cancelRequests) {
        const ids = await this.w.zrange(this.k('dev-reqs', c.deviceId), 0, -1);
        const reqs = await this.mgetJson<RequestRow>(
          this.w,
          ids.map((id) => this.k('req', id)),
        );
        for (const r of reqs)
          if (r && (r.status === 'pending' || r.status === 'approved')) m.set(this.k('req', r.id), JSON.stringify({ ...r, status: 'rejected', decidedAt: ms(now), decidedBy: 'lifecycle' }));
      }
      const owner = c.newOwner !== undefined ? c.newOwner : row.owner;
      const pendingOwner = c.pendingOwner !== undefined ? c.pendingOwner : pending;
      const next: DeviceRow = { ...row, state: c.toState, owner, pendingOwner, updatedAt: ms(now) };
      m.set(this.k('dev', c.deviceId), JSON.stringify(next));
      if (row.owner !== next.owner || row.state !== next.state) {
        this.trackDevice(m, row, -1);
        this.trackDevice(m, next, 1);
      }
      await this.auditTo(m, { ...c.audit, data: { ...c.audit.data, certificates: changed.map((x) => x.serial) } }, now);
      return { device: deviceFromRow(next), changed };
    });
  }

  async revokeCertificate(serial: string, reason: RevocationReason, at: Date, invalidityDate: Date | null, audit: AuditInput): Promise<{ cert: CertificateRecord; changed: boolean }> {
    return this.tx([this.headKey, this.statusGenerationKey], async (m) => {
      const [meta, der, gen] = await Promise.all([this.getJson<CertMeta>(this.w, this.k('cert', serial)), this.w.getBuffer(this.k('cert-der', serial)), this.readStatusGeneration()]);
      if (!meta) throw new DeviceCaError('not-found', `no certificate with serial ${serial}`);
      const cur = certFromRow(meta, der ?? Buffer.alloc(0));
      const onHold = cur.status === 'revoked' && cur.revocationReason === 'certificateHold';
      if (cur.status === 'revoked' && !(onHold && reason !== 'certificateHold')) return { cert: cur, changed: false };
      this.setCertStatus(m, { ...meta, status: 'revoked', revokedAt: ms(at), revocationReason: reason, invalidityDate: invalidityDate ? ms(invalidityDate) : null }, gen);
      await this.auditTo(m, audit, new Date());
      return { cert: { ...cur, status: 'revoked' as const, revokedAt: at, revocationReason: reason, invalidityDate }, changed: true };
    });
  }

  async releaseHold(serial: string, audit: AuditInput): Promise<CertificateRecord> {
    return this.tx([this.headKey, this.statusGenerationKey], async (m) => {
      const [meta, der, gen] = await Promise.all([this.getJson<CertMeta>(this.w, this.k('cert', serial)), this.w.getBuffer(this.k('cert-der', serial)), this.readStatusGeneration()]);
      if (!meta) throw new DeviceCaError('not-found', `no certificate with serial ${serial}`);
      if (!(meta.status === 'revoked' && meta.revocationReason === 'certificateHold')) throw new DeviceCaError('conflict', `certificate ${serial} is not on hold`);
      this.setCertStatus(m, { ...meta, status: 'valid', revokedAt: null, revocationReason: null }, gen);
      await this.auditTo(m, audit, new Date());
      return { ...certFromRow(meta, der ?? Buffer.alloc(0)), status: 'valid' as const, revokedAt: null, revocationReason: null };
    });
  }

  async shardRevision(issuer: string, shard: number): Promise<number> {
    return Number((await this.r.get(this.shardKey(issuer, shard))) ?? 0);
  }

  async *revokedInShard(issuer: string, shard: number, now: Date, pageSize = 10000): AsyncIterable<RevokedRow[]> {
    const idx = this.k('shard-revoked', issuer, shard);
    let from = '-';
    for (;;) {
      const serials = await this.r.zrangebylex(idx, from, '+', 'LIMIT', 0, pageSize);
      if (serials.length === 0) return;
      const metas = await this.mgetJson<CertMeta>(
        this.r,
        serials.map((s) => this.k('cert', s)),
      );
      const page = metas
        .filter((x): x is CertMeta => x !== null && x.status === 'revoked' && x.notAfter > ms(now))
        .map((x) => ({ serial: x.serial, revokedAt: new Date(x.revokedAt ?? 0), reason: x.revocationReason, invalidityDate: dateOrNull(x.invalidityDate) }));
      if (page.length) yield page;
      if (serials.length < pageSize) return;
      from = `(${serials[serials.length - 1]}`;
    }
  }

  async nextCrlNumber(issuer: string): Promise<bigint> {
    return BigInt(await this.r.incr(this.k('crl-number', issuer)));
  }

  async saveCrl(c: CrlRecord): Promise<void> {
    const metaKey = this.k('crl', c.issuer, c.shard);
    await this.tx([metaKey], async (m) => {
      const cur = await this.getJson<{ number: string }>(this.w, metaKey);
      if (cur && BigInt(cur.number) >= c.number) return;
      const { der, ...info } = c;
      m.set(metaKey, JSON.stringify({ ...info, number: String(c.number), thisUpdate: ms(c.thisUpdate), nextUpdate: ms(c.nextUpdate) }));
      m.set(this.k('crl-der', c.issuer, c.shard), der);
    });
  }

  async getCrl(issuer: string, shard: number): Promise<CrlRecord | null> {
    // one MULTI: the metadata and the bytes of the same CRL
    const replies = await this.r
      .multi()
      .get(this.k('crl', issuer, shard))
      .getBuffer(this.k('crl-der', issuer, shard))
      .exec();
    const meta = replies?.[0]?.[1] as string | null;
    const der = replies?.[1]?.[1] as Buffer | null;
    if (!meta || !der) return null;
    return { ...crlInfoFromJson(meta), der };
  }

  async crlInfo(issuer: string, shard: number): Promise<Omit<CrlRecord, 'der'> | null> {
    const meta = await this.r.get(this.k('crl', issuer, shard));
    return meta ? crlInfoFromJson(meta) : null;
  }

  async certificateStatus(serial: string): Promise<Pick<CertificateRecord, 'serial' | 'issuer' | 'status' | 'revokedAt' | 'revocationReason' | 'notAfter'> | null> {
    const x = await this.getJson<CertMeta>(this.r, this.k('cert', serial));
    if (!x) return null;
    return { serial, issuer: x.issuer, status: x.status, revokedAt: dateOrNull(x.revokedAt), revocationReason: x.revocationReason, notAfter: new Date(x.notAfter) };
  }

  // ---- admin API tokens ----
  private tokenMember(createdAt: number, id: string): string {
    return `${String(createdAt).padStart(15, '0')}:${id}`;
  }

  async createToken(t: Omit<TokenRecord, 'createdAt' | 'revokedAt'>, audit: AuditInput): Promise<TokenRecord> {
    const key = this.k('tok', t.id);
    return this.tx([this.headKey, key], async (m) => {
      if (await this.w.exists(key)) throw new DeviceCaError('conflict', `token ${t.id} already exists`);
      const now = new Date();
      const rec: TokenRecord = { ...t, createdAt: now, revokedAt: null };
      m.set(key, JSON.stringify({ ...rec, createdAt: ms(now), revokedAt: null } satisfies TokenRow));
      m.set(this.k('tok-hash', t.hash), t.id);
      m.zadd(this.k('toks'), 0, this.tokenMember(ms(now), t.id));
      await this.auditTo(m, audit, now);
      return rec;
    });
  }

  async findToken(hash: string): Promise<TokenRecord | null> {
    const id = await this.r.get(this.k('tok-hash', hash));
    if (id === null) return null;
    const row = await this.getJson<TokenRow>(this.r, this.k('tok', id));
    return row ? tokenFromRow(row) : null;
  }

  async listTokens(page: PageRequest): Promise<Page<TokenRecord>> {
    // cursor "<created ms>:<id>": creation order, ties broken by id
    const limit = pageLimit(page);
    let from = '-';
    if (page.after) {
      const m = /^(\d{1,15}):(.+)$/.exec(page.after);
      if (!m) throw new DeviceCaError('bad-request', 'after: not a cursor of this list');
      from = `(${this.tokenMember(Number(m[1]), m[2])}`;
    }
    const members = await this.r.zrangebylex(this.k('toks'), from, '+', 'LIMIT', 0, limit + 1);
    const rows = await this.mgetJson<TokenRow>(
      this.r,
      members.map((x) => this.k('tok', x.slice(16))),
    );
    return pageOf(rows.filter((x): x is TokenRow => x !== null).map(tokenFromRow), limit, (t) => `${t.createdAt.getTime()}:${t.id}`);
  }

  async revokeToken(id: string, audit: AuditInput): Promise<TokenRecord> {
    return this.tx([this.headKey], async (m) => {
      const row = await this.getJson<TokenRow>(this.w, this.k('tok', id));
      if (!row) throw new DeviceCaError('not-found', `no token ${id}`);
      const now = new Date();
      const next: TokenRow = { ...row, revokedAt: row.revokedAt ?? ms(now) };
      if (row.revokedAt === null) m.set(this.k('tok', id), JSON.stringify(next));
      await this.auditTo(m, audit, now);
      return tokenFromRow(next);
    });
  }

  // ---- SCEP transactions ----
  async claimScepTransaction(rec: Omit<ScepTransactionRecord, 'outcome' | 'pending'>, now: Date): Promise<ScepTransactionRecord> {
    const key = this.k('scep-tx', rec.key);
    return this.tx([key], async (m): Promise<ScepTransactionRecord> => {
      const row = await this.getJson<ScepTransactionRow>(this.w, key);
      if (row && row.expiresAt > ms(now)) return scepTransactionFromRow(rec.key, row);
      const fresh: ScepTransactionRow = { requestSha256: rec.requestSha256, outcome: null, pending: null, expiresAt: ms(rec.expiresAt) };
      // Redis drops the key itself once it has expired (on the caller's clock, at least a second from now)
      m.set(key, JSON.stringify(fresh), 'PX', Math.max(1000, ms(rec.expiresAt) - ms(now)));
      return { ...rec, outcome: null, pending: null };
    });
  }

  async holdScepTransaction(key: string, requestSha256: string, pending: ScepPending, expiresAt: Date, now: Date): Promise<void> {
    const k = this.k('scep-tx', key);
    await this.tx([k], async (m) => {
      const row = await this.getJson<ScepTransactionRow>(this.w, k);
      if (!row || row.requestSha256 !== requestSha256 || row.outcome !== null || row.expiresAt <= ms(now)) return;
      const until = Math.max(row.expiresAt, ms(expiresAt));
      m.set(k, JSON.stringify({ ...row, pending, expiresAt: until }), 'PX', Math.max(1000, until - ms(now)));
    });
  }

  async getScepTransaction(key: string, now: Date): Promise<ScepTransactionRecord | null> {
    const row = await this.getJson<ScepTransactionRow>(this.w, this.k('scep-tx', key));
    return row && row.expiresAt > ms(now) ? scepTransactionFromRow(key, row) : null;
  }

  async settleScepTransaction(key: string, requestSha256: string, outcome: ScepOutcome): Promise<void> {
    const k = this.k('scep-tx', key);
    await this.tx([k], async (m) => {
      const row = await this.getJson<ScepTransactionRow>(this.w, k);
      if (row && row.requestSha256 === requestSha256 && row.outcome === null) m.set(k, JSON.stringify({ ...row, outcome }), 'KEEPTTL');
    });
  }

  // ---- operator console sessions ----
  // one key per session, which Redis itself deletes at the idle expiry (PEXPIREAT); the record holds the rest
  async createSession(c: ConsoleSessionRecord, _now: Date): Promise<void> {
    const row: SessionRow = { tokenHash: c.tokenHash, createdAt: ms(c.createdAt), expiresAt: ms(c.expiresAt) };
    await this.w.multi().set(this.k('session', c.idHash), JSON.stringify(row)).pexpireat(this.k('session', c.idHash), ms(c.idleExpiresAt)).exec();
  }

  async touchSession(idHash: string, now: Date, idleMs: number): Promise<ConsoleSessionRecord | null> {
    const key = this.k('session', idHash);
    const row = await this.getJson<SessionRow>(this.w, key);
    if (!row) return null;
    if (row.expiresAt <= ms(now)) {
      await this.w.del(key);
      return null;
    }
    const idle = Math.min(ms(now) + idleMs, row.expiresAt);
    // PEXPIREAT on a key a sign-out deleted in between answers 0 and creates nothing
    if ((await this.w.pexpireat(key, idle)) !== 1) return null;
    return { idHash, tokenHash: row.tokenHash, createdAt: new Date(row.createdAt), idleExpiresAt: new Date(idle), expiresAt: new Date(row.expiresAt) };
  }

  async deleteSession(idHash: string): Promise<void> {
    await this.w.del(this.k('session', idHash));
  }

  // ---- leases ----
  async acquireLease(name: string, holder: string, ttlMs: number, now: Date): Promise<Lease | null> {
    const key = this.k('lease', name);
    return this.tx([key], async (m): Promise<Lease | null> => {
      const row = await this.getJson<{ holder: string; fence: number; expiresAt: number }>(this.w, key);
      const expiresAt = ms(now) + ttlMs;
      let fence = 1;
      if (row) {
        const live = row.expiresAt > ms(now);
        if (live && row.holder !== holder) return null;
        // a renewal by the live holder keeps its fence; any new tenure gets the next one
        fence = live ? row.fence : row.fence + 1;
      }
      m.set(key, JSON.stringify({ holder, fence, expiresAt }));
      return { fence, expiresAt: new Date(expiresAt) };
    });
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    const key = this.k('lease', name);
    await this.tx([key], async (m) => {
      const row = await this.getJson<{ holder: string; fence: number; expiresAt: number }>(this.w, key);
      // the record stays (expired) so the fence keeps growing from where it was
      if (row && row.holder === holder) m.set(key, JSON.stringify({ ...row, expiresAt: 0 }));
    });
  }

  // ---- integrity and health ----
  async head(issuer: string): Promise<StoreHead> {
    const replies = await this.r.multi().get(this.headKey).get(this.k('crl-number', issuer)).exec();
    const h = replies?.[0]?.[1] as string | null;
    const crl = replies?.[1]?.[1] as string | null;
    const i = h ? h.indexOf(':') : -1;
    return { auditSeq: h ? Number(h.slice(0, i)) : 0, auditHash: h ? h.slice(i + 1) : null, crlNumber: crl ? BigInt(crl) : 0n };
  }

  async probe(now = new Date()): Promise<void> {
    try {
      await Promise.all([this.r.get(this.headKey), this.r.get(this.k('ca-state', 'hierarchy'))]);
    } catch (e) {
      throw probeError('read', e);
    }
    try {
      // a real write: a Redis that cannot persist (MISCONF) or is out of memory (OOM) refuses it
      await this.r.set(this.k('probe'), String(ms(now)));
    } catch (e) {
      throw probeError('write', e);
    }
  }

  // ---- TPM attestation ----
  // {dca}:tpm-nonces:<device> hash nonceSha256 -> NonceRow; {dca}:tpm-ak:<akName> AkRow;
  // {dca}:tpm-dev-aks:<device> sorted set of AK names by creation time; {dca}:tpm-blocked-ek:<ekSha256>.
  async saveNonce(n: { deviceId: string; nonceSha256: string; expiresAt: Date }, now: Date, maxPerDevice: number): Promise<void> {
    const key = this.k('tpm-nonces', n.deviceId);
    await this.tx([key], async (m) => {
      const all = Object.entries(await this.w.hgetall(key)).map(([h, v]) => ({ h, ...(JSON.parse(v) as NonceRow) }));
      const live = all.filter((x) => x.expiresAt > ms(now) && x.h !== n.nonceSha256);
      const seq = all.reduce((hi, x) => Math.max(hi, x.n), 0) + 1;
      live.push({ h: n.nonceSha256, expiresAt: ms(n.expiresAt), createdAt: ms(now), n: seq });
      // keep the newest maxPerDevice: a device asking again and again cannot grow the hash
      live.sort((a, b) => b.createdAt - a.createdAt || b.n - a.n);
      const keep = live.slice(0, Math.max(0, maxPerDevice));
      const kept = new Set(keep.map((x) => x.h));
      const drop = all.filter((x) => !kept.has(x.h)).map((x) => x.h);
      if (drop.length) m.hdel(key, ...drop);
      const mine = keep.find((x) => x.h === n.nonceSha256);
      if (mine) m.hset(key, mine.h, JSON.stringify({ expiresAt: mine.expiresAt, createdAt: mine.createdAt, n: mine.n } satisfies NonceRow));
    });
  }

  async consumeNonce(deviceId: string, nonceSha256: string, now: Date): Promise<boolean> {
    const key = this.k('tpm-nonces', deviceId);
    return this.tx([key], async (m) => {
      const v = await this.w.hget(key, nonceSha256);
      if (v === null || (JSON.parse(v) as NonceRow).expiresAt <= ms(now)) return false;
      m.hdel(key, nonceSha256); // EXEC fails (and the read repeats) if another node consumed it meanwhile
      return true;
    });
  }

  async saveAkChallenge(b: Omit<AkBindingRecord, 'status' | 'createdAt' | 'activatedAt' | 'lastClock' | 'akCertSerial'>, now: Date, audit: AuditInput): Promise<AkBindingRecord> {
    const akKey = this.k('tpm-ak', b.akName);
    const blockedKey = this.k('tpm-blocked-ek', b.ekCertSha256);
    return this.tx([this.headKey, akKey, blockedKey], async (m) => {
      if (await this.w.exists(blockedKey)) throw new DeviceCaError('forbidden', 'this TPM belonged to a retired device and may not register again');
      const old = await this.getJson<AkRow>(this.w, akKey);
      if (old && (old.deviceId !== b.deviceId || old.status !== 'pending')) throw new DeviceCaError('conflict', 'this attestation key is already registered');
      const rec: AkBindingRecord = { ...b, status: 'pending', createdAt: now, activatedAt: null, lastClock: null, akCertSerial: null };
      m.set(akKey, JSON.stringify(akRow(rec)));
      m.zadd(this.k('tpm-dev-aks', b.deviceId), ms(now), b.akName);
      await this.auditTo(m, audit, now);
      return rec;
    });
  }

  async activateAk(akName: string, deviceId: string, challengeSha256: string, now: Date, audit: AuditInput): Promise<AkBindingRecord | null> {
    const akKey = this.k('tpm-ak', akName);
    return this.tx([this.headKey, akKey], async (m) => {
      const row = await this.getJson<AkRow>(this.w, akKey);
      if (!row || row.deviceId !== deviceId || row.status === 'revoked' || row.challengeSha256 !== challengeSha256 || row.challengeExpiresAt <= ms(now)) return null;
      // a repeat of this activation (its reply was lost) while the challenge lives: the binding as it is, no audit
      if (row.status === 'active') return akFromRow(row);
      const next: AkRow = { ...row, status: 'active', activatedAt: ms(now) };
      m.set(akKey, JSON.stringify(next));
      await this.auditTo(m, audit, now);
      return akFromRow(next);
    });
  }

  async getAk(akName: string): Promise<AkBindingRecord | null> {
    const row = await this.getJson<AkRow>(this.r, this.k('tpm-ak', akName));
    return row ? akFromRow(row) : null;
  }

  async claimAkCertificate(akName: string, deviceId: string, until: Date, now: Date): Promise<AkCertificateClaim | null> {
    const akKey = this.k('tpm-ak', akName);
    return this.tx([akKey], async (m) => {
      const row = await this.getJson<AkRow>(this.w, akKey);
      if (!row || row.deviceId !== deviceId || row.status !== 'active') return null;
      if (row.akCertSerial) return { state: 'issued', serial: row.akCertSerial };
      if (row.certClaimUntil && row.certClaimUntil > ms(now)) return { state: 'busy' };
      m.set(akKey, JSON.stringify({ ...row, certClaimUntil: ms(until) } satisfies AkRow)); // EXEC fails if another claimed meanwhile
      return { state: 'claimed' };
    });
  }

  async settleAkCertificate(akName: string, serial: string | null): Promise<void> {
    const akKey = this.k('tpm-ak', akName);
    await this.tx([akKey], async (m) => {
      const row = await this.getJson<AkRow>(this.w, akKey);
      if (row) m.set(akKey, JSON.stringify({ ...row, akCertSerial: row.akCertSerial ?? serial, certClaimUntil: null } satisfies AkRow));
    });
  }

  async setAkClock(akName: string, expected: TpmClockState | null, next: TpmClockState): Promise<boolean> {
    const akKey = this.k('tpm-ak', akName);
    return this.tx([akKey], async (m) => {
      const row = await this.getJson<AkRow>(this.w, akKey);
      if (!row || JSON.stringify(row.lastClock ?? null) !== JSON.stringify(clockRow(expected))) return false;
      m.set(akKey, JSON.stringify({ ...row, lastClock: clockRow(next) } satisfies AkRow));
      return true;
    });
  }

  async aksOfDevice(deviceId: string): Promise<AkBindingRecord[]> {
    const names = await this.r.zrange(this.k('tpm-dev-aks', deviceId), 0, -1);
    const rows = await this.mgetJson<AkRow>(
      this.r,
      names.map((x) => this.k('tpm-ak', x)),
    );
    // newest first, ties by name (as the SQLite store); a binding moved to another device is not this device's
    return rows
      .filter((x): x is AkRow => x !== null && x.deviceId === deviceId)
      .sort((a, b) => b.createdAt - a.createdAt || (a.akName < b.akName ? -1 : a.akName > b.akName ? 1 : 0))
      .map(akFromRow);
  }

  async revokeAks(deviceId: string, blockEks: boolean, now: Date, audit: AuditInput): Promise<number> {
    const idx = this.k('tpm-dev-aks', deviceId);
    return this.tx([this.headKey, idx], async (m) => {
      const names = await this.w.zrange(idx, 0, -1);
      const rows = (
        await this.mgetJson<AkRow>(
          this.w,
          names.map((x) => this.k('tpm-ak', x)),
        )
      ).filter((x): x is AkRow => x !== null && x.deviceId === deviceId);
      if (blockEks) {
        for (const ek of new Set(rows.map((x) => x.ekCertSha256))) m.set(this.k('tpm-blocked-ek', ek), JSON.stringify({ deviceId, blockedAt: ms(now) }), 'NX');
      }
      let n = 0;
      for (const x of rows)
        if (x.status !== 'revoked') {
          m.set(this.k('tpm-ak', x.akName), JSON.stringify({ ...x, status: 'revoked', challengeSha256: null } satisfies AkRow));
          n++;
        }
      await this.auditTo(m, audit, now);
      return n;
    });
  }

  // ---- snapshot import (device-ca store copy) ----
  private imported: { maxSecretId: number; head: { seq: number; hash: string } | null; caState: Extract<SnapshotRow, { kind: 'ca-state' }>['row'][] } | null = null;

  private get copyMarkKey(): string {
    return this.k('copy', 'incomplete');
  }

  /** holdsData names what the store holds already (its CA, audit chain, devices, ...): empty for an empty store. */
  async holdsData(): Promise<string[]> {
    const probes: [string, string][] = [
      [this.copyMarkKey, 'an unfinished copy'],
      [this.k('ca-state', 'hierarchy'), 'a CA'],
      [this.headKey, 'an audit chain'],
      [this.k('devs'), 'devices'],
      [this.k('certs'), 'certificates'],
      [this.k('toks'), 'admin tokens'],
      [this.k('reqs'), 'enrollment requests'],
    ];
    const found = await Promise.all(probes.map(([key]) => this.r.exists(key)));
    return probes.filter((_, i) => found[i] === 1).map(([, what]) => what);
  }

  /** beginImport marks the store as holding an unfinished copy (refused if anything else marked it first). */
  async beginImport(): Promise<void> {
    const ok = await this.w.set(this.copyMarkKey, new Date().toISOString(), 'NX');
    if (ok !== 'OK') throw new DeviceCaError('conflict', 'another copy into this store is under way or was interrupted');
    this.imported = { maxSecretId: 0, head: null, caState: [] };
  }

  /**
   * importSnapshot writes one batch (one MULTI) in this store's key layout, as the rows were recorded:
   * ids, times and audit hashes unchanged. The CA state is held back until finishImport, so a copy that
   * stops half-way never shows a CA.
   */
  async importSnapshot(rows: SnapshotRow[]): Promise<void> {
    const st = this.imported;
    if (!st) throw new DeviceCaError('internal', 'importSnapshot before beginImport');
    // release bytes first, chunk by chunk as they are read from the source (one chunk in memory), under
    // new chunk set ids; the rows naming them follow in the batch's MULTI. Without a time to live:
    // abortImport removes everything an unfinished copy wrote
    const copiedChunks = new Map<object, { set: string; count: number }>();
    for (const x of rows) {
      if (x.kind !== 'firmware-release') continue;
      const set = crypto.randomBytes(16).toString('hex');
      let count = 0;
      let length = 0;
      for await (const c of x.row.bytes.chunks())
        for (let at = 0; at < c.length; at += RELEASE_CHUNK_BYTES) {
          const piece = c.subarray(at, Math.min(c.length, at + RELEASE_CHUNK_BYTES));
          await this.w.set(this.chunkKey(set, count++), piece);
          length += piece.length;
        }
      if (length !== x.row.bytes.length) throw new DeviceCaError('internal', `release ${x.row.name}@${x.row.version}: ${length} bytes read, ${x.row.bytes.length} expected`);
      copiedChunks.set(x.row, { set, count });
    }
    const m = this.w.multi();
    // copied certificates are statuses a node may have read as absent: a new generation (statusGeneration)
    if (rows.some((x) => x.kind === 'certificate')) m.set(this.statusGenerationKey, newStatusGeneration());
    for (const x of rows) {
      switch (x.kind) {
        case 'device':
          m.set(this.k('dev', x.row.id), JSON.stringify(deviceRow(x.row)));
          m.zadd(this.k('devs'), 0, x.row.id);
          this.indexLabel(m, x.row);
          this.trackDevice(m, x.row, 1);
          break;
        case 'secret': {
          const r = x.row;
          const row: SecretRow = { id: r.id, deviceId: r.deviceId, hash: r.hash, expiresAt: ms(r.expiresAt), usedAt: r.usedAt ? ms(r.usedAt) : null, certSerial: r.certSerial };
          m.set(this.k('secret', r.id), JSON.stringify(row));
          m.zadd(this.k('dev-secrets', r.deviceId), r.id, String(r.id));
          st.maxSecretId = Math.max(st.maxSecretId, r.id);
          break;
        }
        case 'certificate': {
          const { der, ...c } = x.row;
          const meta: CertMeta = {
            ...c,
            notBefore: ms(c.notBefore),
            notAfter: ms(c.notAfter),
            revokedAt: c.revokedAt ? ms(c.revokedAt) : null,
            invalidityDate: c.invalidityDate ? ms(c.invalidityDate) : null,
            createdAt: ms(c.createdAt),
          };
          m.set(this.k('cert', c.serial), JSON.stringify(meta));
          m.set(this.k('cert-der', c.serial), der);
          m.zadd(this.k('certs'), 0, c.serial);
          if (c.deviceId !== null) m.zadd(this.k('dev-certs', c.deviceId), 0, c.serial);
          if (c.status === 'revoked') m.zadd(this.k('shard-revoked', c.issuer, c.shard), 0, c.serial);
          this.chartCertificate(m, meta);
          break;
        }
        case 'request': {
          const r = x.row;
          m.set(this.k('req', r.id), JSON.stringify(requestRow(r)));
          m.zadd(this.k('reqs'), 0, r.id);
          m.zadd(this.k('dev-reqs', r.deviceId), 0, r.id);
          m.set(this.k('req-by-csr', r.deviceId, r.csrSha256), r.id); // rows come oldest first: the newest wins, as findRequest
          break;
        }
        case 'token': {
          const t = x.row;
          m.set(this.k('tok', t.id), JSON.stringify({ ...t, createdAt: ms(t.createdAt), revokedAt: t.revokedAt ? ms(t.revokedAt) : null } satisfies TokenRow));
          m.set(this.k('tok-hash', t.hash), t.id);
          m.zadd(this.k('toks'), 0, this.tokenMember(ms(t.createdAt), t.id));
          break;
        }
        case 'crl': {
          const { der, ...info } = x.row;
          m.set(this.k('crl', info.issuer, info.shard), JSON.stringify({ ...info, number: String(info.number), thisUpdate: ms(info.thisUpdate), nextUpdate: ms(info.nextUpdate) }));
          m.set(this.k('crl-der', info.issuer, info.shard), der);
          break;
        }
        case 'crl-number':
          m.set(this.k('crl-number', x.row.issuer), x.row.last.toString());
          break;
        case 'shard-revision':
          m.set(this.shardKey(x.row.issuer, x.row.shard), String(x.row.revision));
          break;
        case 'tpm-ak':
          m.set(this.k('tpm-ak', x.row.akName), JSON.stringify(akRow(x.row)));
          m.zadd(this.k('tpm-dev-aks', x.row.deviceId), ms(x.row.createdAt), x.row.akName);
          break;
        case 'tpm-blocked-ek':
          m.set(this.k('tpm-blocked-ek', x.row.ekCertSha256), JSON.stringify({ deviceId: x.row.deviceId, blockedAt: ms(x.row.blockedAt) }));
          break;
        case 'tpm-nonce': {
          const n = x.row;
          m.hset(this.k('tpm-nonces', n.deviceId), n.nonceSha256, JSON.stringify({ expiresAt: ms(n.expiresAt), createdAt: ms(n.createdAt), n: ms(n.createdAt) } satisfies NonceRow));
          break;
        }
        case 'audit':
          // the record and its subject index; the head is set once, by finishImport
          m.hset(this.k('audit', 'rec'), String(x.row.seq), JSON.stringify({ ...x.row, at: ms(x.row.at) } satisfies AuditRow));
          m.zadd(this.k('audit', 'subject', x.row.subject), x.row.seq, String(x.row.seq));
          st.head = { seq: x.row.seq, hash: x.row.hash };
          break;
        case 'ca-state':
          st.caState.push(x.row);
          break;
        case 'firmware-release': {
          const { bytes: _bytes, ...info } = x.row;
          const key = firmwareReleaseKey(info.name, info.version);
          const at = copiedChunks.get(x.row);
          if (!at) throw new DeviceCaError('internal', `the chunks of release ${key} were not copied`);
          m.set(this.k('fw-rel', key), JSON.stringify({ ...info, releasedAt: ms(info.releasedAt), chunkSet: at.set, length: x.row.bytes.length, chunks: at.count } satisfies ReleaseRow));
          m.zadd(this.k('fw-rels'), 0, key);
          break;
        }
        case 'firmware-receipt':
          m.set(this.k('fw-rcpt', x.row.name, x.row.deviceId), JSON.stringify(receiptToJson(x.row)));
          m.zadd(this.k('fw-rcpt-dev', x.row.deviceId), ms(x.row.updatedAt), x.row.name);
          m.zadd(this.k('fw-rcpts', x.row.name), 0, x.row.deviceId);
          this.countReceipt(m, x.row.name, null, x.row);
          break;
        case 'firmware-group-key-member':
          m.sadd(this.k('fw-gk-members', x.row.keyId), x.row.deviceId);
          break;
      }
    }
    const replies = await m.exec();
    for (const [err] of replies ?? []) if (err) throw err;
  }

  /** finishImport writes the CA state, the audit head and the secret id counter in one MULTI, and clears the mark. */
  async finishImport(): Promise<void> {
    const st = this.imported;
    if (!st) throw new DeviceCaError('internal', 'finishImport before beginImport');
    const m = this.w.multi();
    for (const c of st.caState) m.set(this.k('ca-state', c.name), JSON.stringify({ value: c.value, version: c.version, updatedAt: ms(c.updatedAt) }));
    if (st.head) m.set(this.headKey, `${st.head.seq}:${st.head.hash}`);
    if (st.maxSecretId > 0) m.set(this.k('secret', 'seq'), String(st.maxSecretId));
    m.del(this.copyMarkKey);
    const replies = await m.exec();
    for (const [err] of replies ?? []) if (err) throw err;
    this.imported = null;
  }

  /**
   * abortImport deletes every key of this store's prefix: the store was empty when the copy began
   * (holdsData), so everything there is the unfinished copy's. A SCAN, run only by the CLI, never by serve.
   */
  async abortImport(): Promise<void> {
    const match = `${this.p.replace(/[*?[\]\\]/g, (c) => `\\${c}`)}:*`;
    // under Cluster every key of this store is on the master of its one slot; SCAN runs per master
    const servers: Redis[] = this.w instanceof Cluster ? this.w.nodes('master') : [this.w];
    for (const server of servers) {
      let cursor = '0';
      do {
        const [next, keys] = await server.scan(cursor, 'MATCH', match, 'COUNT', 1000);
        cursor = next;
        if (keys.length) await server.unlink(...keys);
      } while (cursor !== '0');
    }
    this.imported = null;
  }

  // ---- CA state ----
  async getCaState(name: string): Promise<CaStateEntry | null> {
    const row = await this.getJson<{ value: unknown; version: number; updatedAt: number }>(this.r, this.k('ca-state', name));
    return row ? { value: row.value, version: row.version, updatedAt: new Date(row.updatedAt) } : null;
  }

  async saveCaState(name: string, value: unknown, ifVersion: number, audit?: AuditInput): Promise<number> {
    const key = this.k('ca-state', name);
    return this.tx(audit ? [this.headKey, key] : [key], async (m) => {
      const { next, now } = await this.setCaStateIn(m, name, key, value, ifVersion);
      if (audit) await this.auditTo(m, audit, now);
      return next;
    });
  }

  /** setCaStateIn: the compare-and-set of one CA state record inside a transaction (saveCaState, saveFirmwareGroupKey). */
  private async setCaStateIn(m: Tx, name: string, key: string, value: unknown, ifVersion: number): Promise<{ next: number; now: Date }> {
    const row = await this.getJson<{ version: number }>(this.w, key);
    const current = row ? row.version : 0;
    if (current !== ifVersion) throw new DeviceCaError('conflict', `CA state ${name} changed meanwhile (version ${current}, expected ${ifVersion})`);
    const now = new Date();
    const next = current + 1;
    m.set(key, JSON.stringify({ value, version: next, updatedAt: ms(now) }));
    return { next, now };
  }

  // ---- firmware group key members ----
  // fw-gk-members:<key id>: a set of device ids, under the store's prefix (its hash tag: one slot, so the
  // CA state record, the set and the audit head change in one MULTI under Cluster too)
  async saveFirmwareGroupKey(keyId: string, value: unknown, ifVersion: number, addMembers: readonly string[], audit: AuditInput): Promise<number> {
    const name = firmwareGroupKeyRecord(keyId);
    const key = this.k('ca-state', name);
    return this.tx([this.headKey, key], async (m) => {
      const { next, now } = await this.setCaStateIn(m, name, key, value, ifVersion);
      for (let i = 0; i < addMembers.length; i += GROUP_MEMBER_BATCH) m.sadd(this.k('fw-gk-members', keyId), ...addMembers.slice(i, i + GROUP_MEMBER_BATCH));
      await this.auditTo(m, audit, now);
      return next;
    });
  }

  async isFirmwareGroupKeyMember(keyId: string, deviceId: string): Promise<boolean> {
    return (await this.r.sismember(this.k('fw-gk-members', keyId), deviceId)) === 1;
  }

  async firmwareGroupKeyMembership(keyId: string, candidates: readonly string[]): Promise<{ members: number; newcomers: string[] }> {
    const set = this.k('fw-gk-members', keyId);
    // one MULTI: the count and the comparison see the same members
    const m = this.r.multi().scard(set);
    for (let i = 0; i < candidates.length; i += GROUP_MEMBER_BATCH) m.smismember(set, ...candidates.slice(i, i + GROUP_MEMBER_BATCH));
    const replies = (await m.exec()) ?? [];
    for (const [err] of replies) if (err) throw err;
    const flags = replies.slice(1).flatMap(([, r]) => r as number[]);
    return { members: Number(replies[0]?.[1] ?? 0), newcomers: candidates.filter((_, i) => flags[i] !== 1) };
  }

  // ---- firmware releases ----
  // fw-rels: lex sorted set of firmwareReleaseKey members; fw-rel:<key> the JSON row (ReleaseRow), which
  // names its chunk set: fw-rel-chunk:<set>:<seq> the bytes in RELEASE_CHUNK_BYTES pieces. A release of an
  // earlier version has no chunk set: fw-rel-der:<key> holds its bytes in one value.
  private chunkKey(set: string, seq: number): string {
    return this.k('fw-rel-chunk', set, seq);
  }

  private chunkKeys(set: string, count: number): string[] {
    return Array.from({ length: count }, (_, i) => this.chunkKey(set, i));
  }

  /**
   * saveFirmwareRelease (Redis): the chunks are written first, each by a SET of its own with a time to
   * live (RELEASE_PENDING_TTL_MS), so chunks of a writer that dies expire unseen; the final transaction
   * (WATCH on the audit head, the release index, the row and the chunks) checks the version and that
   * every chunk is still there, PERSISTs the chunks,
   * writes the row naming them, unlinks the chunks (or the one value) of the release it replaces and
   * appends the audit record. Every key carries the store's hash tag: one slot under Cluster.
   */
  async saveFirmwareRelease(r: FirmwareReleaseInfo, release: ByteSource, audit: AuditInput): Promise<void> {
    const index = this.k('fw-rels');
    const key = firmwareReleaseKey(r.name, r.version);
    const rowKey = this.k('fw-rel', key);
    const newest = async (c: RedisClient): Promise<number | null> => {
      const top = await c.zrangebylex(index, `[${r.name} `, `(${r.name}!`, 'LIMIT', 0, 1);
      const row = top.length ? await this.getJson<ReleaseRow>(c, this.k('fw-rel', top[0])) : null;
      return row ? row.version : null;
    };
    const below = (top: number | null): DeviceCaError | null =>
      top !== null && top > r.version ? new DeviceCaError('conflict', `version ${r.version} is below the released version ${top} of ${r.name}`) : null;
    const early = below(await newest(this.r)); // refused before any byte is written; checked again at the end
    if (early) throw early;
    const set = crypto.randomBytes(16).toString('hex');
    let count = 0;
    let committed = false;
    try {
      for (const chunk of releaseChunksOf(release)) {
        const k = this.chunkKey(set, count++);
        // one write at a time on the writer connection, between the other writers' transactions
        await this.serial(() => this.w.set(k, chunk, 'PX', RELEASE_PENDING_TTL_MS));
      }
      const keys = this.chunkKeys(set, count);
      // a full time to live again before the final transaction: none can expire before EXEC
      const kept = await this.serial(async () => Promise.all(keys.map((k) => this.w.pexpire(k, RELEASE_PENDING_TTL_MS))));
      if (kept.some((n) => n !== 1)) throw new DeviceCaError('store-unavailable', 'the chunks of this release expired before it was saved; save it again', { retryAfterSeconds: 1 });
      // the chunks are watched too: one that expires or is evicted (volatile-* maxmemory policies pick keys
      // with a time to live) before EXEC aborts it, and the check below refuses the save on the next attempt
      await this.tx([this.headKey, index, rowKey, ...keys], async (m) => {
        const late = below(await newest(this.w));
        if (late) throw late;
        if (keys.length > 0 && (await this.w.exists(...keys)) !== keys.length)
          throw new DeviceCaError('store-unavailable', 'the chunks of this release expired or were evicted before it was saved; save it again', { retryAfterSeconds: 1 });
        const old = await this.getJson<ReleaseRow>(this.w, rowKey);
        for (const k of keys) m.persist(k);
        m.set(rowKey, JSON.stringify({ ...r, releasedAt: ms(r.releasedAt), chunkSet: set, length: release.length, chunks: count } satisfies ReleaseRow));
        if (old?.chunkSet !== undefined) {
          const gone = this.chunkKeys(old.chunkSet, old.chunks ?? 0);
          if (gone.length) m.unlink(...gone);
        }
        m.unlink(this.k('fw-rel-der', key));
        m.zadd(index, 0, key);
        await this.auditTo(m, audit, new Date());
      });
      committed = true;
    } finally {
      if (!committed && count > 0) {
        const keys = this.chunkKeys(set, count);
        // best effort: what is not removed here expires
        await this.serial(() => this.w.unlink(...keys)).catch(() => undefined);
      }
    }
  }

  async getFirmwareRelease(name: string, version: number): Promise<FirmwareReleaseInfo | null> {
    const row = await this.getJson<ReleaseRow>(this.r, this.k('fw-rel', firmwareReleaseKey(name, version)));
    return row ? releaseFromRow(row) : null;
  }

  async openFirmwareRelease(name: string, version: number): Promise<ReleaseBytes | null> {
    const key = firmwareReleaseKey(name, version);
    const row = await this.getJson<ReleaseRow>(this.r, this.k('fw-rel', key));
    if (!row) return null;
    if (row.chunkSet === undefined) {
      // a release of an earlier version: one value, read whole as then
      const der = await this.r.getBuffer(this.k('fw-rel-der', key));
      return der ? wholeReleaseBytes(der) : null;
    }
    const set = row.chunkSet;
    return storedReleaseBytes(row.length ?? 0, row.chunks ?? 0, (seq) => this.r.getBuffer(this.chunkKey(set, seq)));
  }

  async listFirmwareReleases(filter: { name?: string } & PageRequest): Promise<Page<FirmwareReleaseInfo>> {
    const limit = pageLimit(filter);
    const from = filter.after !== undefined ? `(${filter.after}` : filter.name !== undefined ? `[${filter.name} ` : '-';
    const to = filter.name !== undefined ? `(${filter.name}!` : '+';
    const rows = await this.scanLex(this.k('fw-rels'), undefined, limit + 1, { from, to }, async (keys) =>
      (
        await this.mgetJson<ReleaseRow>(
          this.r,
          keys.map((x) => this.k('fw-rel', x)),
        )
      ).filter((x): x is ReleaseRow => x !== null),
    );
    return pageOf(rows.map(releaseFromRow), limit, (r) => firmwareReleaseKey(r.name, r.version));
  }

  // ---- firmware receipts ----
  // fw-rcpts:<name>: lex sorted set of device ids; fw-rcpt:<name>:<device> the JSON record;
  // fw-rcpt-sum:<name>: hash of counters kept in the same MULTI as the record (countReceipt): n (devices),
  // v:<running version>, e:<load error code>
  async recordFirmwareReceipt(r: FirmwareReceiptInput, audit: AuditInput): Promise<{ outcome: 'recorded' | 'repeat'; record: FirmwareReceiptRecord }> {
    const key = this.k('fw-rcpt', r.name, r.deviceId);
    return this.tx([this.headKey, key], async (m) => {
      const row = await this.getJson<ReceiptRow>(this.w, key);
      const prev = row ? receiptFromJson(row) : null;
      const next = applyFirmwareReceipt(prev, r);
      if (next === 'repeat') return { outcome: 'repeat' as const, record: prev! };
      m.set(key, JSON.stringify(receiptToJson(next)));
      m.zadd(this.k('fw-rcpts', r.name), 0, r.deviceId);
      m.zadd(this.k('fw-rcpt-dev', r.deviceId), ms(next.updatedAt), r.name);
      this.countReceipt(m, r.name, prev, next);
      await this.auditTo(m, audit, new Date());
      return { outcome: 'recorded' as const, record: next };
    });
  }

  /** countReceipt queues the counter changes from prev to next (a record replaced, or a first one) in the write's MULTI. */
  private countReceipt(m: Tx, name: string, prev: FirmwareReceiptRecord | null, next: FirmwareReceiptRecord): void {
    const key = this.k('fw-rcpt-sum', name);
    if (!prev) m.hincrby(key, 'n', 1);
    if (prev?.running?.version !== next.running?.version) {
      if (prev?.running) m.hincrby(key, `v:${prev.running.version}`, -1);
      if (next.running) m.hincrby(key, `v:${next.running.version}`, 1);
    }
    if (prev?.error?.code !== next.error?.code) {
      if (prev?.error) m.hincrby(key, `e:${prev.error.code}`, -1);
      if (next.error) m.hincrby(key, `e:${next.error.code}`, 1);
    }
  }

  async firmwareReceiptSummary(name: string): Promise<FirmwareReceiptSummary> {
    const h = await this.r.hgetall(this.k('fw-rcpt-sum', name));
    const counted = (prefix: string): [number, number][] =>
      Object.entries(h)
        .filter(([f, n]) => f.startsWith(prefix) && Number(n) > 0)
        .map(([f, n]) => [Number(f.slice(prefix.length)), Number(n)]);
    return {
      devices: Number(h.n ?? 0),
      versions: counted('v:')
        .map(([version, devices]) => ({ version, devices }))
        .sort((p, q) => q.version - p.version),
      errors: counted('e:')
        .map(([code, devices]) => ({ code, devices }))
        .sort((p, q) => p.code - q.code),
    };
  }

  async getFirmwareReceipt(name: string, deviceId: string): Promise<FirmwareReceiptRecord | null> {
    const row = await this.getJson<ReceiptRow>(this.r, this.k('fw-rcpt', name, deviceId));
    return row ? receiptFromJson(row) : null;
  }

  // fw-rcpt-dev:<device>: sorted set of the names it has a record of, scored by the record's updatedAt (ms)
  async firmwareHardwareOf(deviceId: string): Promise<string | null> {
    const [name] = await this.r.zrevrange(this.k('fw-rcpt-dev', deviceId), 0, 0);
    if (name === undefined) return null;
    return (await this.getJson<ReceiptRow>(this.r, this.k('fw-rcpt', name, deviceId)))?.hwType ?? null;
  }

  async listFirmwareReceipts(filter: { name: string } & PageRequest): Promise<Page<FirmwareReceiptRecord>> {
    const limit = pageLimit(filter);
    const rows = await this.scanLex(this.k('fw-rcpts', filter.name), filter.after, limit + 1, undefined, async (ids) =>
      (
        await this.mgetJson<ReceiptRow>(
          this.r,
          ids.map((id) => this.k('fw-rcpt', filter.name, id)),
        )
      ).filter((x): x is ReceiptRow => x !== null),
    );
    return pageOf(rows.map(receiptFromJson), limit, (r) => r.deviceId);
  }
}

/** ReceiptRow: a firmware receipt record's JSON row (times in ms). */
interface ReceiptRow {
  name: string;
  deviceId: string;
  hwType: string;
  running: { version: number; at: number } | null;
  error: { version: number; code: number; vendorCode: number | null; at: number } | null;
  receiptSha256: string;
  updatedAt: number;
}

function receiptFromJson(r: ReceiptRow): FirmwareReceiptRecord {
  return {
    ...r,
    running: r.running ? { version: r.running.version, at: new Date(r.running.at) } : null,
    error: r.error ? { ...r.error, at: new Date(r.error.at) } : null,
    updatedAt: new Date(r.updatedAt),
  };
}

function receiptToJson(r: FirmwareReceiptRecord): ReceiptRow {
  return { ...r, running: r.running ? { version: r.running.version, at: ms(r.running.at) } : null, error: r.error ? { ...r.error, at: ms(r.error.at) } : null, updatedAt: ms(r.updatedAt) };
}

/** ReleaseRow: a firmware release's JSON row (times in ms). */
/** ReleaseRow: fw-rel:<key>; chunkSet, length, chunks: where its bytes are (absent: fw-rel-der:<key>, an earlier version's row) */
type ReleaseRow = Omit<FirmwareReleaseInfo, 'releasedAt'> & { releasedAt: number; chunkSet?: string; length?: number; chunks?: number };

function releaseFromRow(row: ReleaseRow): FirmwareReleaseInfo {
  // the storage fields stay out of the record
  const { chunkSet: _set, length: _length, chunks: _chunks, releasedAt, ...info } = row;
  return { ...info, releasedAt: new Date(releasedAt) };
}

/**
 * RELEASE_PENDING_TTL_MS: how long a release chunk written by a save lives before the save's final
 * transaction makes it permanent: chunks of a writer that died expire after this (far beyond the time a
 * save of a 64 MiB release takes; each chunk's clock starts when it is written and is reset before the end).
 */
export const RELEASE_PENDING_TTL_MS = 3_600_000;

/** hostPort: "host:port" (IPv6 in brackets) as ioredis wants a node. */
function hostPort(s: string): { host: string; port: number } {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(s);
  if (!m) throw new DeviceCaError('config', `not host:port: ${s}`);
  return { host: m[1], port: Number(m[2]) };
}

/** probeError: 'store-unavailable' naming which half of the probe failed and why (the /healthz reason). */
function probeError(what: 'read' | 'write', e: unknown): DeviceCaError {
  const u = redisUnavailable(e);
  const reason = u ? u.message.replace(/^store unavailable \((.*)\)$/, '$1') : 'unexpected error';
  return new DeviceCaError('store-unavailable', `store ${what} failed (${reason})`, {
    detail: u?.detail ?? (e as Error)?.message,
    retryAfterSeconds: u?.retryAfterSeconds ?? 30,
    cause: e,
  });
}

/** ownerKey: the counters' name for an owner: '-' for none, '+' and the name otherwise (so no name is mistaken for none). */
const ownerKey = (owner: string | null): string => (owner === null ? '-' : '+' + owner);

function deviceRow(d: DeviceRecord): DeviceRow {
  return { ...d, createdAt: ms(d.createdAt), updatedAt: ms(d.updatedAt) };
}
function deviceFromRow(r: DeviceRow): DeviceRecord {
  return { id: r.id, owner: r.owner, label: r.label, state: r.state, pendingOwner: r.pendingOwner ?? null, createdAt: new Date(r.createdAt), updatedAt: new Date(r.updatedAt) };
}
function secretFromRow(r: SecretRow): SecretRecord {
  return { id: r.id, deviceId: r.deviceId, hash: r.hash, expiresAt: new Date(r.expiresAt), usedAt: dateOrNull(r.usedAt), certSerial: r.certSerial };
}
function certFromRow(r: CertMeta, der: Buffer): CertificateRecord {
  return {
    serial: r.serial,
    deviceId: r.deviceId,
    issuer: r.issuer,
    subject: r.subject,
    profile: r.profile,
    notBefore: new Date(r.notBefore),
    notAfter: new Date(r.notAfter),
    shard: r.shard,
    spkiSha256: r.spkiSha256,
    der,
    status: r.status,
    revokedAt: dateOrNull(r.revokedAt),
    revocationReason: r.revocationReason,
    invalidityDate: dateOrNull(r.invalidityDate),
    createdAt: new Date(r.createdAt),
  };
}
function requestRow(r: EnrollmentRequestRecord): RequestRow {
  return { ...r, csr: r.csr.toString('base64'), createdAt: ms(r.createdAt), decidedAt: r.decidedAt ? ms(r.decidedAt) : null };
}
function requestFromRow(r: RequestRow): EnrollmentRequestRecord {
  return {
    id: r.id,
    deviceId: r.deviceId,
    label: r.label,
    operation: r.operation,
    csrSha256: r.csrSha256,
    csr: Buffer.from(r.csr, 'base64'),
    status: r.status,
    certSerial: r.certSerial,
    createdAt: new Date(r.createdAt),
    decidedAt: dateOrNull(r.decidedAt),
    decidedBy: r.decidedBy,
  };
}
function akRow(a: AkBindingRecord): AkRow {
  return {
    ...a,
    akPublic: a.akPublic.toString('base64'),
    challengeExpiresAt: ms(a.challengeExpiresAt),
    createdAt: ms(a.createdAt),
    activatedAt: a.activatedAt ? ms(a.activatedAt) : null,
    lastClock: clockRow(a.lastClock),
  };
}
function clockRow(c: TpmClockState | null): AkRow['lastClock'] {
  return c ? { clock: c.clock.toString(), resetCount: c.resetCount, restartCount: c.restartCount } : null;
}
function akFromRow(r: AkRow): AkBindingRecord {
  return {
    akName: r.akName,
    deviceId: r.deviceId,
    akPublic: Buffer.from(r.akPublic, 'base64'),
    ekCertSha256: r.ekCertSha256,
    ekManufacturer: r.ekManufacturer,
    ekModel: r.ekModel,
    status: r.status,
    challengeSha256: r.challengeSha256,
    challengeExpiresAt: new Date(r.challengeExpiresAt),
    createdAt: new Date(r.createdAt),
    activatedAt: dateOrNull(r.activatedAt),
    akCertSerial: r.akCertSerial ?? null,
    lastClock: r.lastClock ? { clock: BigInt(r.lastClock.clock), resetCount: r.lastClock.resetCount, restartCount: r.lastClock.restartCount } : null,
  };
}
function tokenFromRow(r: TokenRow): TokenRecord {
  return { id: r.id, hash: r.hash, scope: r.scope, description: r.description, createdAt: new Date(r.createdAt), revokedAt: dateOrNull(r.revokedAt) };
}
function auditFromRow(r: AuditRow): AuditRecord {
  return { seq: r.seq, at: new Date(r.at), type: r.type, actor: r.actor, subject: r.subject, data: r.data, prevHash: r.prevHash, hash: r.hash };
}
function crlInfoFromJson(s: string): Omit<CrlRecord, 'der'> {
  const j = JSON.parse(s) as Json;
  return {
    issuer: String(j.issuer),
    shard: Number(j.shard),
    number: BigInt(String(j.number)),
    revision: Number(j.revision),
    thisUpdate: new Date(Number(j.thisUpdate)),
    nextUpdate: new Date(Number(j.nextUpdate)),
    entries: Number(j.entries),
  };
}

interface ScepTransactionRow {
  requestSha256: string;
  outcome: ScepOutcome | null;
  /** pending: absent in rows written before CertPoll was served */
  pending?: ScepPending | null;
  expiresAt: number;
}

function scepTransactionFromRow(key: string, row: ScepTransactionRow): ScepTransactionRecord {
  return { key, requestSha256: row.requestSha256, outcome: row.outcome, pending: row.pending ?? null, expiresAt: new Date(row.expiresAt) };
}
