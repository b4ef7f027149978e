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
 * the next job opens a new one. A batch arrives as one transferred buffer and is answered as one
 * (packBatch, settleBatch). It is evaluated from this string (Worker eval), so the same code runs
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
let session = null;
let sessionSlot = null;
// out is reused by every job: C_Sign/C_Decrypt write into it, and the reply copies what they wrote
let out = Buffer.alloc(1024);
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
  if (out.length < job.maxOut) out = Buffer.alloc(job.maxOut);
  const room = out.subarray(0, job.maxOut);
  if (job.op === 'sign') {
    lib.C_SignInit(session, mech, job.key);
    return lib.C_Sign(session, job.input, room);
  }
  lib.C_DecryptInit(session, mech, job.key);
  return lib.C_Decrypt(session, job.input, room);
}
// runBatch reads the jobs packBatch (token-threads.ts) wrote, runs them, and packs the reply settleBatch reads
function runBatch(slot, b) {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const n = v.getUint32(0);
  const reply = [];
  let size = 0;
  let at = 4;
  for (let i = 0; i < n; i++) {
    const job = { op: b[at] === 0 ? 'sign' : 'decrypt', mechanism: v.getUint32(at + 2), maxOut: v.getUint32(at + 18) };
    if (b[at + 1] === 1) job.pss = { hashAlg: v.getUint32(at + 6), mgf: v.getUint32(at + 10), saltLen: v.getUint32(at + 14) };
    const keyLen = v.getUint16(at + 22);
    const inputLen = v.getUint32(at + 24);
    at += 28;
    job.key = b.subarray(at, at + keyLen);
    at += keyLen;
    job.input = b.subarray(at, at + inputLen);
    at += inputLen;
    let status = 0;
    let bytes;
    try {
      bytes = Buffer.from(run(slot, job));
    } catch (e) {
      const message = String((e && e.message) || e);
      if (DROP.test(message)) closeSession();
      status = 1;
      bytes = Buffer.from(message, 'utf8');
    }
    reply.push(status, bytes);
    size += 5 + bytes.length;
  }
  const r = Buffer.allocUnsafeSlow(size);
  let w = 0;
  for (let i = 0; i < reply.length; i += 2) {
    r[w] = reply[i];
    r.writeUInt32BE(reply[i + 1].length, w + 1);
    reply[i + 1].copy(r, w + 5);
    w += 5 + reply[i + 1].length;
  }
  return r.buffer;
}
parentPort.on('message', (m) => {
  if (m.close) {
    closeSession();
    parentPort.postMessage({ closed: true });
    return;
  }
  const reply = runBatch(Buffer.from(m.slot), Buffer.from(m.batch));
  parentPort.postMessage({ reply }, [reply]);
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

/** JOB_HEADER: op (1), PSS present (1), mechanism, hashAlg, mgf, saltLen, maxOut (4 each), key length (2), input length (4). */
const JOB_HEADER = 28;

/**
 * packBatch writes a batch into one ArrayBuffer, transferred rather than cloned to the token thread: the
 * structured clone of an object and two byte arrays per job was the largest share of the socket
 * thread's own cost per signature (a --cpu-prof of bench/pkcs11-sign.ts). Layout: job count (4), then
 * per job JOB_HEADER, the key handle and the input; WORKER_SOURCE's runBatch reads it.
 */
function packBatch(batch: readonly { job: TokenJob }[]): ArrayBuffer {
  let size = 4;
  for (const { job } of batch) {
    if (job.key.length > 0xffff) throw new DeviceCaError('key-backend', `PKCS#11 object handle of ${job.key.length} octets`);
    size += JOB_HEADER + job.key.length + job.input.length;
  }
  const b = new Uint8Array(size);
  const v = new DataView(b.buffer);
  v.setUint32(0, batch.length);
  let at = 4;
  for (const { job } of batch) {
    b[at] = job.op === 'sign' ? 0 : 1;
    b[at + 1] = job.pss ? 1 : 0;
    v.setUint32(at + 2, job.mechanism);
    v.setUint32(at + 6, job.pss?.hashAlg ?? 0);
    v.setUint32(at + 10, job.pss?.mgf ?? 0);
    v.setUint32(at + 14, job.pss?.saltLen ?? 0);
    v.setUint32(at + 18, job.maxOut ?? 1024);
    v.setUint16(at + 22, job.key.length);
    v.setUint32(at + 24, job.input.length);
    at += JOB_HEADER;
    b.set(job.key, at);
    at += job.key.length;
    b.set(job.input, at);
    at += job.input.length;
  }
  return b.buffer;
}

/**
 * settleBatch reads a token thread's packed reply (per job: status 0 = output, 1 = error message in
 * UTF-8; a 4-octet length; the octets) and settles the batch's promises in order. Each output is a view
 * of the one transferred reply, not a copy; a reply cut short rejects the jobs it does not cover.
 */
function settleBatch(batch: readonly Pending[], reply: ArrayBuffer): void {
  const bytes = Buffer.from(reply);
  let at = 0;
  for (const p of batch) {
    const len = at + 5 <= bytes.length ? bytes.readUInt32BE(at + 1) : -1;
    if (len < 0 || at + 5 + len > bytes.length) {
      p.reject(new Error('PKCS#11 token thread answered nothing'));
      continue;
    }
    const out = bytes.subarray(at + 5, at + 5 + len);
    if (bytes[at] === 0) p.resolve(out);
    else p.reject(new Error(out.toString('utf8')));
    at += 5 + len;
  }
}

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
    t.w.on('message', (m: { reply?: ArrayBuffer }) => {
      if (!m.reply) return;
      t.answered = true;
      const batch = t.batch ?? [];
      t.batch = null;
      settleBatch(batch, m.reply);
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
      const packed = packBatch(batch);
      t.w.postMessage({ slot: new Uint8Array(this.slot()), batch: packed }, [packed]);
    }
  }
}
