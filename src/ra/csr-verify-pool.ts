import * as os from 'node:os';
import { Worker } from 'node:worker_threads';
import { DeviceCaError } from '../errors/device-ca-error';
import { KeyAlgorithm } from '../keys/key-backend';
import { ParsedCsr, UnverifiedCsr, keyAlgorithmFromDetails, readCsr, rejectSignature } from './csr';

/**
 * WORKER_SOURCE is the verifying thread's whole program: import the public key (the input readCsr made:
 * a JWK for P-256/P-384 points, else the SPKI DER) and verify the request's signature, then answer with
 * the key's type and details. It is evaluated from this string (Worker eval), so the same code runs from
 * the compiled service and under ts-jest, and needs nothing but node:crypto.
 */
const WORKER_SOURCE = `
const crypto = require('node:crypto');
const { parentPort } = require('node:worker_threads');
parentPort.on('message', (m) => {
  let out;
  try {
    const key = crypto.createPublicKey(m.keyInput);
    const ec = key.asymmetricKeyType === 'ec';
    let ok = false;
    try {
      ok = crypto.verify(m.hash, m.data, ec ? { key, dsaEncoding: 'der' } : key, m.sig);
    } catch {
      ok = false;
    }
    const d = key.asymmetricKeyDetails || {};
    out = { id: m.id, imported: true, ok, keyType: key.asymmetricKeyType, namedCurve: d.namedCurve, modulusLength: d.modulusLength };
  } catch {
    out = { id: m.id, imported: false, ok: false };
  }
  parentPort.postMessage(out);
});
`;

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
  private readonly workers: { w: Worker; busy: Job | null }[] = [];
  private readonly waiting: Job[] = [];
  private nextId = 0;
  private closed = false;
  private readonly maxQueued: number;

  constructor(opts: { threads?: number; maxQueued?: number } = {}) {
    const threads = Math.max(1, opts.threads ?? os.availableParallelism());
    this.maxQueued = opts.maxQueued ?? 1024;
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
    const slot: { w: Worker; busy: Job | null } = { w: new Worker(WORKER_SOURCE, { eval: true }), busy: null };
    // the pool must not keep a CLI or a test process alive on its own
    slot.w.unref();
    slot.w.on('message', (r: Reply) => {
      const job = slot.busy;
      slot.busy = null;
      if (job && job.id === r.id) settle(job, r);
      this.dispatch();
    });
    slot.w.on('error', (e) => {
      // a thread that died takes its request with it; a new thread takes its place
      const job = slot.busy;
      slot.busy = null;
      job?.reject(new DeviceCaError('internal', 'CSR verification failed', { detail: (e as Error)?.message, cause: e }));
      const i = this.workers.indexOf(slot);
      if (i >= 0) this.workers.splice(i, 1);
      if (!this.closed) this.spawn();
      this.dispatch();
    });
    this.workers.push(slot);
  }

  private dispatch(): void {
    for (const slot of this.workers) {
      if (slot.busy || !this.waiting.length) continue;
      const job = this.waiting.shift()!;
      slot.busy = job;
      const v = job.csr.verify;
      slot.w.postMessage({ id: job.id, keyInput: v.keyInput, hash: v.hash, data: v.data, sig: v.sig });
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
