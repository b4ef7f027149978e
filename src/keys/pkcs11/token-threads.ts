import { Worker } from 'node:worker_threads';
import { DeviceCaError } from '../../errors/device-ca-error';

/**
 * TokenJob is one private-key operation for a token thread: C_SignInit + C_Sign or C_DecryptInit +
 * C_Decrypt with the key object `key` (a handle the main thread found; PKCS#11 §6.7: object handles are
 * shared by every session of one application, so a handle found on one thread's session is valid on
 * another's). `pss` carries CK_RSA_PKCS_PSS_PARAMS.
 */
export interface TokenJob {
  op: 'sign' | 'decrypt';
  mechanism: number;
  pss?: { hashAlg: number; mgf: number; saltLen: number };
  key: Buffer;
  input: Buffer;
  /** maxOut is the output buffer size: 1024 covers ECDSA P-384 and RSA-3072 signatures. */
  maxOut?: number;
}

/**
 * WORKER_SOURCE is a token thread's whole program. It loads the same PKCS#11 library (dlopen hands back
 * the process' one copy, already initialized by the main thread, so C_Initialize answers
 * CKR_CRYPTOKI_ALREADY_INITIALIZED and the login, which belongs to the application, covers its
 * sessions), opens one session of its own on the slot each batch names, and runs each batch's jobs one
 * after the other with the synchronous calls: blocking is what this thread is for. A job that fails
 * answers the CKR name in its message; a failure that means the session is gone drops the session, so
 * the next job opens a new one. It is evaluated from this string (Worker eval), so the same code runs
 * from the compiled service and under ts-jest.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const pkcs11js = require(workerData.pkcs11js);
const lib = new pkcs11js.PKCS11();
lib.load(workerData.module);
try {
  lib.C_Initialize({ flags: 2 });
} catch (e) {
  if (!/CKR_CRYPTOKI_ALREADY_INITIALIZED/.test(String(e && e.message))) throw e;
}
const DROP = /CKR_(SESSION_HANDLE_INVALID|SESSION_CLOSED|DEVICE_REMOVED|DEVICE_ERROR|TOKEN_NOT_PRESENT|CRYPTOKI_NOT_INITIALIZED|OPERATION_ACTIVE|OPERATION_NOT_INITIALIZED|SLOT_ID_INVALID)/;
const buf = (u) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);
let session = null;
let sessionSlot = null;
function closeSession() {
  if (session) {
    try { lib.C_CloseSession(session); } catch {}
  }
  session = null;
}
function run(slot, job) {
  if (session && !sessionSlot.equals(slot)) closeSession();
  if (!session) {
    session = lib.C_OpenSession(slot, pkcs11js.CKF_RW_SESSION | pkcs11js.CKF_SERIAL_SESSION);
    sessionSlot = slot;
  }
  const mech = job.pss
    ? { mechanism: job.mechanism, parameter: { type: pkcs11js.CK_PARAMS_RSA_PSS, hashAlg: job.pss.hashAlg, mgf: job.pss.mgf, saltLen: job.pss.saltLen } }
    : { mechanism: job.mechanism, parameter: null };
  const out = Buffer.alloc(job.maxOut || 1024);
  if (job.op === 'sign') {
    lib.C_SignInit(session, mech, buf(job.key));
    return new Uint8Array(lib.C_Sign(session, buf(job.input), out));
  }
  lib.C_DecryptInit(session, mech, buf(job.key));
  return new Uint8Array(lib.C_Decrypt(session, buf(job.input), out));
}
parentPort.on('message', (m) => {
  if (m.close) {
    closeSession();
    parentPort.postMessage({ closed: true });
    return;
  }
  const slot = Buffer.from(m.slot);
  const results = m.jobs.map((job) => {
    try {
      return { out: run(slot, job) };
    } catch (e) {
      const message = String((e && e.message) || e);
      if (DROP.test(message)) closeSession();
      return { error: message };
    }
  });
  parentPort.postMessage({ results });
});
`;

interface Pending {
  job: TokenJob;
  resolve: (out: Buffer) => void;
  reject: (e: unknown) => void;
}

interface Thread {
  w: Worker;
  batch: Pending[] | null;
  /** answered: the thread has answered a batch, so it loaded the module; one that dies before is not replaced. */
  answered: boolean;
}

/** MAX_BATCH bounds one message: a thread answers a batch at once, so a huge one would hold every reply back. */
const MAX_BATCH = 64;

/**
 * TokenThreads runs a PKCS#11 backend's private-key operations on worker threads that own their
 * sessions, so no PKCS#11 call of the signing path runs on the thread that owns the sockets (before,
 * C_SignInit ran there and C_Sign on the libuv pool, where it also competed with scrypt and file I/O).
 * Operations queued while every thread is busy go to the next free thread as one message (batching):
 * one postMessage and one reply per batch rather than per signature. The session pool on the main thread
 * keeps the rest (login, key lookup, recovery); a failed job rejects with an Error whose message holds
 * the CKR name, so the backend's recovery rules (pkcs11-errors.ts) apply unchanged.
 */
export class TokenThreads {
  private readonly threads: Thread[] = [];
  private readonly queue: Pending[] = [];
  private closed = false;

  constructor(
    private readonly module: string,
    private readonly slot: () => Buffer,
    count: number,
  ) {
    if (!Number.isInteger(count) || count < 1) throw new DeviceCaError('config', `PKCS#11 signer threads must be a positive integer, got ${count}`);
    for (let i = 0; i < count; i++) this.spawn();
  }

  /** size: the number of token threads. */
  get size(): number {
    return this.threads.length;
  }

  run(job: TokenJob): Promise<Buffer> {
    if (this.closed) return Promise.reject(new DeviceCaError('key-backend', 'PKCS#11 key backend is closed'));
    return new Promise<Buffer>((resolve, reject) => {
      this.queue.push({ job, resolve, reject });
      this.dispatch();
    });
  }

  /** close lets every thread finish its batch, closes their sessions and stops them; queued jobs are refused. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const refused = new DeviceCaError('key-backend', 'PKCS#11 key backend is closed');
    for (const p of this.queue.splice(0)) p.reject(refused);
    await Promise.all(
      this.threads.map(async (t) => {
        // the thread handles messages in order: the close comes after its batch
        await new Promise<void>((resolve) => {
          const done = (m: { closed?: boolean }): void => {
            if (m?.closed) resolve();
          };
          t.w.on('message', done);
          t.w.once('exit', () => resolve());
          t.w.postMessage({ close: true });
        });
        await t.w.terminate();
      }),
    );
  }

  private spawn(): void {
    const t: Thread = { w: new Worker(WORKER_SOURCE, { eval: true, workerData: { module: this.module, pkcs11js: require.resolve('pkcs11js') } }), batch: null, answered: false };
    // the threads must not keep a CLI or a test process alive on their own
    t.w.unref();
    t.w.on('message', (m: { results?: ({ out: Uint8Array } | { error: string })[] }) => {
      if (!m.results) return;
      t.answered = true;
      const batch = t.batch ?? [];
      t.batch = null;
      batch.forEach((p, i) => {
        const r = m.results![i];
        if (r && 'out' in r) p.resolve(Buffer.from(r.out.buffer, r.out.byteOffset, r.out.byteLength));
        else p.reject(new Error(r?.error ?? 'PKCS#11 token thread answered nothing'));
      });
      this.dispatch();
    });
    const lost = (e: unknown): void => {
      // a thread that died (a crash in the module, a failed load) takes its batch with it; another takes its place
      const batch = t.batch ?? [];
      t.batch = null;
      for (const p of batch) p.reject(new DeviceCaError('key-backend', 'PKCS#11 token thread failed', { detail: (e as Error)?.message ?? String(e), cause: e }));
      const i = this.threads.indexOf(t);
      if (i >= 0) this.threads.splice(i, 1);
      if (!this.closed && t.answered) this.spawn();
      if (!this.threads.length) {
        for (const p of this.queue.splice(0)) p.reject(new DeviceCaError('key-backend', 'PKCS#11 token threads could not start', { detail: (e as Error)?.message ?? String(e), cause: e }));
      }
      this.dispatch();
    };
    t.w.on('error', lost);
    t.w.on('exit', (code) => {
      if (this.threads.includes(t)) lost(new Error(`token thread exited with code ${code}`));
    });
    this.threads.push(t);
  }

  private dispatch(): void {
    let idle = this.threads.filter((t) => !t.batch).length;
    for (const t of this.threads) {
      if (!this.queue.length) return;
      if (t.batch) continue;
      // share what is queued among the idle threads
      const batch = this.queue.splice(0, Math.min(MAX_BATCH, Math.ceil(this.queue.length / idle--)));
      t.batch = batch;
      t.w.postMessage({
        slot: new Uint8Array(this.slot()),
        jobs: batch.map((p) => ({
          op: p.job.op,
          mechanism: p.job.mechanism,
          pss: p.job.pss,
          key: new Uint8Array(p.job.key),
          input: new Uint8Array(p.job.input),
          maxOut: p.job.maxOut,
        })),
      });
    }
  }
}
