import { Worker } from 'node:worker_threads';

/**
 * CHECKPOINT_INTERVAL_MS: how often the checkpointing thread looks at the WAL (a read of the wal-index
 * header, no lock) and checkpoints when CHECKPOINT_MIN_FRAMES wait or CHECKPOINT_MAX_DELAY_MS passed. At
 * a few thousand issuances a second that is a few hundred pages per checkpoint.
 */
export const CHECKPOINT_INTERVAL_MS = 100;

/**
 * CHECKPOINT_MIN_FRAMES: the WAL frames not yet copied into the database file that make the thread
 * checkpoint at once; fewer wait until CHECKPOINT_MAX_DELAY_MS after the last checkpoint. A checkpoint
 * costs two fsyncs and copies each page once however often it was rewritten meanwhile (the audit chain's
 * last page, index pages near the end): checkpointing every 100 ms whatever the backlog cost the mTLS
 * re-enrollment bench about 0.15 ms of server CPU per request, with every worker's thread doing it.
 * SQLite's own automatic checkpoint waits for 1000 frames too.
 */
export const CHECKPOINT_MIN_FRAMES = 1000;

/** CHECKPOINT_MAX_DELAY_MS: the longest committed frames wait for a checkpoint while the WAL grows slowly. */
export const CHECKPOINT_MAX_DELAY_MS = 1000;

/**
 * FALLBACK_AUTOCHECKPOINT_PAGES: the writing connection's own wal_autocheckpoint while a checkpointing
 * thread runs: a safety net (the thread died or cannot keep up) that keeps the WAL bounded (32 MiB at
 * 4 KiB pages), far above what the thread leaves behind.
 */
export const FALLBACK_AUTOCHECKPOINT_PAGES = 8000;

/**
 * WORKER_SOURCE is the checkpointing thread's whole program: its own connection to the store file, a
 * PASSIVE checkpoint when the backlog calls for one (it never takes the write lock and never waits on a
 * busy handler, so writers go on meanwhile), synchronous=NORMAL so the checkpoint syncs the WAL before
 * copying and the database file after, as SQLite's own checkpoints do. The backlog is mxFrame (the WAL's
 * last committed frame, wal-index header offset 16) minus nBackfill (frames already copied, checkpoint
 * info at offset 96), read from the -shm file without a lock (https://sqlite.org/walformat.html, 2.1): a
 * torn read only moves one checkpoint by one interval. Without a readable -shm it checkpoints every
 * interval, as before. Evaluated from this string so the compiled service and ts-jest run the same code;
 * better-sqlite3 is loaded from the path the parent resolved.
 */
const WORKER_SOURCE = `
const fs = require('node:fs');
const os = require('node:os');
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.module);
const db = new Database(workerData.file, { fileMustExist: true });
db.pragma('synchronous = NORMAL');
let shm = -1;
try {
  shm = fs.openSync(workerData.file + '-shm', 'r');
} catch {
  shm = -1;
}
const hdr = Buffer.alloc(100);
/** backlog: WAL frames committed but not yet in the database file; null when the -shm cannot tell */
const backlog = () => {
  if (shm < 0) return null;
  try {
    if (fs.readSync(shm, hdr, 0, 100, 0) < 100) return null;
  } catch {
    return null;
  }
  // the wal-index holds its integers in the machine's byte order
  const at = (o) => (os.endianness() === 'LE' ? hdr.readUInt32LE(o) : hdr.readUInt32BE(o));
  return Math.max(0, at(16) - at(96));
};
// failing: the code of the last checkpoint's error, reported to the store once when it starts and once
// when a checkpoint succeeds again (a checkpoint busy with another process' is no error: the pragma
// answers busy=1 and the next round tries again)
let failing = null;
let last = Date.now();
const timer = setInterval(() => {
  const waiting = backlog();
  if (failing === null && waiting !== null) {
    if (waiting === 0) {
      last = Date.now();
      return;
    }
    if (waiting < workerData.minFrames && Date.now() - last < workerData.maxDelayMs) return;
  }
  last = Date.now();
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
    if (failing !== null) {
      failing = null;
      parentPort.postMessage({ failure: null });
    }
  } catch (e) {
    const code = e && typeof e.code === 'string' ? e.code : 'SQLITE_ERROR';
    if (code === failing) return;
    failing = code;
    parentPort.postMessage({ failure: { code, message: String(e && e.message) } });
  }
}, workerData.intervalMs);
parentPort.on('message', (m) => {
  if (m !== 'close') return;
  clearInterval(timer);
  if (shm >= 0) fs.closeSync(shm);
  db.close();
  parentPort.close();
});
`;

/** CheckpointFailure: SQLite's error code and message from a failed checkpoint on the thread. */
export interface CheckpointFailure {
  code: string;
  message: string;
}

/**
 * WalCheckpointer moves SQLite's WAL checkpoints off the thread that owns the sockets. With SQLite's
 * automatic checkpoint (every 1000 WAL pages) the commit that crosses the mark copies the WAL into the
 * database file and syncs both, on the committing thread: in the issuance profile that was 10-40 ms
 * stalls, most of a commit's cost averaged over all of them. Here a thread of its own checkpoints when
 * CHECKPOINT_MIN_FRAMES wait, or CHECKPOINT_MAX_DELAY_MS after its last checkpoint (looking every
 * CHECKPOINT_INTERVAL_MS), while the writing connection keeps only a high fallback mark. Durability is
 * unchanged: commits are as synchronous=NORMAL makes them, checkpoints sync as before.
 */
export class WalCheckpointer {
  private readonly worker: Worker;
  private readonly exited: Promise<void>;

  /**
   * onFailure hears the thread's checkpoint errors as they start ({ code, message } of SQLite's error: the
   * database file could not take the WAL's pages, e.g. SQLITE_FULL) and end (null), for the store's health.
   * backlog: when a checkpoint is due (tests shorten it); after a failed one the thread tries every interval.
   */
  constructor(
    file: string,
    onFailure: (e: CheckpointFailure | null) => void = () => undefined,
    intervalMs = CHECKPOINT_INTERVAL_MS,
    backlog: { minFrames: number; maxDelayMs: number } = { minFrames: CHECKPOINT_MIN_FRAMES, maxDelayMs: CHECKPOINT_MAX_DELAY_MS },
  ) {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { file, intervalMs, ...backlog, module: require.resolve('better-sqlite3') } });
    this.worker.on('message', (m: { failure?: CheckpointFailure | null }) => {
      if (m && m.failure !== undefined) onFailure(m.failure);
    });
    // the checkpoints must not keep a CLI or a test process alive on their own
    this.worker.unref();
    this.exited = new Promise((resolve) => this.worker.once('exit', () => resolve()));
    // a thread that fails leaves the writing connection's fallback checkpoints in charge
    this.worker.on('error', () => undefined);
  }

  /**
   * close stops the thread after it closed its connection (so the last connection to close is the
   * store's). The thread is referenced meanwhile: unreferenced, a process with nothing else to do would
   * exit before the thread answered, leaving whoever awaits close() (and everything after it) undone.
   */
  async close(): Promise<void> {
    this.worker.ref();
    this.worker.postMessage('close');
    await this.exited;
  }
}
