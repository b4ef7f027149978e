import type * as crypto from 'node:crypto';
import * as os from 'node:os';
import { Worker } from 'node:worker_threads';
import { DeviceCaError } from '../errors/device-ca-error';
import { KeyAlgorithm } from '../keys/key-backend';
import { ParsedCsr, UnverifiedCsr, keyAlgorithmFromDetails, readCsr, rejectSignature } from './csr';

/**
 * WORKER_SOURCE is the verifying thread's whole program. Each message is a batch (packJobs): the bytes of
 * every request in one transferred ArrayBuffer, and per request its offsets, hash and key input (a JWK for
 * P-256/P-384 points, else the SPKI DER from the buffer). For each it imports the public key and verifies
 * the signature, then answers the whole batch in one message with each key's type and details. It is
 * evaluated from this string (Worker eval), so the same code runs from the compiled service and under
 * ts-jest, and needs nothing but node:crypto.
 */
const WORKER_SOURCE = `
const crypto = require('node:crypto');
const { parentPort } = require('node:worker_threads');
parentPort.on('message', (m) => {
  const bytes = Buffer.from(m.buf);
  const out = [];
  for (const j of m.jobs) {
    try {
      const key = crypto.createPublicKey(j.jwk ? { key: j.jwk, format: 'jwk' } : { key: bytes.subarray(j.key[0], j.key[1]), format: 'der', type: 'spki' });
      const ec = key.asymmetricKeyType === 'ec';
      let ok = false;
      try {
        ok = crypto.verify(j.hash, bytes.subarray(j.data[0], j.data[1]), ec ? { key, dsaEncoding: 'der' } : key, bytes.subarray(j.sig[0], j.sig[1]));
      } catch {
        ok = false;
      }
      const d = key.asymmetricKeyDetails || {};
      out.push({ id: j.id, imported: true, ok, keyType: key.asymmetricKeyType, namedCurve: d.namedCurve, modulusLength: d.modulusLength });
    } catch {
      out.push({ id: j.id, imported: false, ok: false });
    }
  }
  parentPort.postMessage(out);
});
`;

/**
 * MAX_BATCH: requests handed to one verifying thread in one message (one round trip for all of them). 16
 * rather than 4: with 32 issuances in flight on 2 threads, the socket thread's CPU per certificate fell 7-20%
 * and the process' 4-12% in four same-process pairs (bench/csr-batch-pair.ts), each message and wake-up
 * shared by up to 4 times as many requests; the verified requests then reach the signing code in larger
 * groups, which also fills the store's group commit.
 */
export const MAX_BATCH = 16;

/** VerifyMessage is what a verifying thread receives: the requests' bytes and where each part lies in them. */
export interface VerifyMessage {
  buf: ArrayBuffer;
  jobs: { id: number; hash: string; jwk?: crypto.JsonWebKey; key?: [number, number]; data: [number, number]; sig: [number, number] }[];
}

/**
 * packJobs copies the bytes a thread needs (signed data, signature, SPKI DER when not a JWK) into one
 * fresh ArrayBuffer, transferred with the message rather than cloned. Posting the request's own Buffers
 * would clone the whole ArrayBuffer behind each view: a small request carved from Node's 8 KiB pool slab
 * or from a large body buffer costs that slab's size per message (about 200 µs of the socket thread's time
 * per request in the issuance profile).
 */
export function packJobs(jobs: { id: number; csr: UnverifiedCsr }[]): VerifyMessage {
  let total = 0;
  for (const { csr } of jobs) {
    const v = csr.verify;
    total += v.data.length + v.sig.length + (v.keyInput.format === 'jwk' ? 0 : (v.keyInput.key as Buffer).length);
  }
  const bytes = Buffer.from(new ArrayBuffer(total));
  let p = 0;
  const put = (b: Buffer): [number, number] => {
    b.copy(bytes, p);
    p += b.length;
    return [p - b.length, p];
  };
  const out: VerifyMessage['jobs'] = [];
  for (const { id, csr } of jobs) {
    const v = csr.verify;
    // readCsr makes a JWK (format 'jwk') or SPKI DER in a Buffer, nothing else
    const keyPart = v.keyInput.format === 'jwk' ? { jwk: v.keyInput.key as crypto.JsonWebKey } : { key: put(v.keyInput.key as Buffer) };
    out.push({ id, hash: v.hash, ...keyPart, data: put(v.data), sig: put(v.sig) });
  }
  return { buf: bytes.buffer as ArrayBuffer, jobs: out };
}

/**
 * csrVerifyThreads sizes one process' pool when `serve` forks worker processes (config `workers`, 0 = one
 * per core): the cores divided among the processes, at least one thread each. A verify thread per core
 * in every worker process would put cores x workers threads on the cores, each process' socket thread
 * then competing with the other processes' verify threads.
 */
export function csrVerifyThreads(workers: number, cores: number = os.availableParallelism()): number {
  const processes = workers > 0 ? workers : cores;
  return Math.max(1, Math.floor(cores / processes));
}

interface Reply {
  id: number;
  imported: boolean;
  ok: boolean;
  keyType?: string;
  namedCurve?: string;
  modulusLength?: number;
}

/** Slot is one verifying thread and the batch it is working on (null: idle). */
interface Slot {
  w: Worker;
  busy: Job[] | null;
}

interface Job {
  id: number;
  csr: UnverifiedCsr;
  resolve: (c: ParsedCsr) => void;
  reject: (e: unknown) => void;
}

/**
 * CsrVerifyPool parses PKCS#10 requests on the calling thread (the DER walk is cheap) and leaves the
 * expensive part, key import and signature verification (about 80% of parseCsr), to worker threads, so
 * the thread that owns the sockets spends its time encoding, signing and recording. It has one thread per
 * core by default (the service passes csrVerifyThreads: the cores shared among its worker processes) and a bounded queue: beyond maxQueued waiting requests it refuses new ones with
 * 'rate-limited' (429 + Retry-After) rather than letting memory and latency grow without bound. The
 * verdicts are exactly parseCsr's (same errors, same ParsedCsr).
 */
export class CsrVerifyPool {
  private readonly workers: Slot[] = [];
  private readonly waiting: Job[] = [];
  private nextId = 0;
  private closed = false;
  private readonly maxQueued: number;
  private readonly maxBatch: number;

  /** maxBatch: requests per message to a thread (default MAX_BATCH; bench/csr-batch-pair.ts measures others) */
  constructor(opts: { threads?: number; maxQueued?: number; maxBatch?: number } = {}) {
    const threads = Math.max(1, opts.threads ?? os.availableParallelism());
    this.maxQueued = opts.maxQueued ?? 1024;
    this.maxBatch = Math.max(1, opts.maxBatch ?? MAX_BATCH);
    for (let i = 0; i < threads; i++) this.spawn();
  }

  /** size: the number of verifying threads. */
  get size(): number {
    return this.workers.length;
  }

  /** parse: parseCsr with the signature checked on a worker thread. */
  parse(der: Buffer): Promise<ParsedCsr> {
    if (this.closed) return Promise.reject(new DeviceCaError('internal', 'CSR verification pool is closed'));
    let csr: UnverifiedCsr;
    try {
      csr = readCsr(der);
    } catch (e) {
      return Promise.reject(e);
    }
    if (this.waiting.length >= this.maxQueued) return Promise.reject(new DeviceCaError('rate-limited', 'server busy; try later', { retryAfterSeconds: 1 }));
    return new Promise<ParsedCsr>((resolve, reject) => {
      this.waiting.push({ id: ++this.nextId, csr, resolve, reject });
      this.dispatch();
    });
  }

  /** close stops the threads; requests still queued are refused. */
  async close(): Promise<void> {
    this.closed = true;
    for (const j of this.waiting.splice(0)) j.reject(new DeviceCaError('internal', 'CSR verification pool is closed'));
    await Promise.all(this.workers.map((s) => s.w.terminate()));
  }

  private spawn(): void {
    const slot: Slot = { w: new Worker(WORKER_SOURCE, { eval: true }), busy: null };
    // the pool must not keep a CLI or a test process alive on its own
    slot.w.unref();
    slot.w.on('message', (replies: Reply[]) => {
      const jobs = slot.busy;
      slot.busy = null;
      if (jobs) {
        const byId = new Map(replies.map((r) => [r.id, r]));
        for (const job of jobs) {
          const r = byId.get(job.id);
          if (r) settle(job, r);
          else job.reject(new DeviceCaError('internal', 'CSR verification failed', { detail: 'no verdict from the verifying thread' }));
        }
      }
      this.dispatch();
    });
    slot.w.on('error', (e) => {
      // a thread that died takes its requests with it; a new thread takes its place
      const jobs = slot.busy;
      slot.busy = null;
      for (const job of jobs ?? []) job.reject(new DeviceCaError('internal', 'CSR verification failed', { detail: (e as Error)?.message, cause: e }));
      const i = this.workers.indexOf(slot);
      if (i >= 0) this.workers.splice(i, 1);
      if (!this.closed) this.spawn();
      this.dispatch();
    });
    this.workers.push(slot);
  }

  /**
   * dispatch hands waiting requests to idle threads, each an even share of the queue among all threads, at
   * most maxBatch (MAX_BATCH): under load one message carries several requests (one round trip instead of
   * one per request), the even share keeping every thread busy; when idle a request leaves alone at once.
   */
  private dispatch(): void {
    for (const slot of this.workers) {
      if (slot.busy || !this.waiting.length) continue;
      const n = Math.min(this.maxBatch, Math.ceil(this.waiting.length / this.workers.length));
      const jobs = this.waiting.splice(0, n);
      slot.busy = jobs;
      const msg = packJobs(jobs);
      slot.w.postMessage(msg, [msg.buf]);
    }
  }
}

/** settle turns a worker's verdict into parseCsr's result or error. */
function settle(job: Job, r: Reply): void {
  try {
    if (!r.imported) rejectSignature('key');
    if (!r.ok) rejectSignature('signature');
    const algorithm: KeyAlgorithm | null = job.csr.verify.algorithm ?? keyAlgorithmFromDetails(r.keyType, r.namedCurve, r.modulusLength);
    job.resolve(job.csr.complete(r.keyType ?? 'other', algorithm));
  } catch (e) {
    job.reject(e);
  }
}
