import { Worker } from 'node:worker_threads';

/**
 * CHECKPOINT_INTERVAL_MS: how often the checkpointing thread copies committed WAL frames into the
 * database file. At a few thousand issuances a second that is a few hundred pages per checkpoint.
 */
export const CHECKPOINT_INTERVAL_MS = 100;

/**
 * FALLBACK_AUTOCHECKPOINT_PAGES: the writing connection's own wal_autocheckpoint while a checkpointing
 * thread runs: a safety net (the thread died or cannot keep up) that keeps the WAL bounded (32 MiB at
 * 4 KiB pages), far above what the thread leaves behind.
 */
export const FALLBACK_AUTOCHECKPOINT_PAGES = 8000;

/**
 * WORKER_SOURCE is the checkpointing thread's whole program: its own connection to the store file, a
 * PASSIVE checkpoint every interval (it never takes the write lock and never waits on a busy handler, so
 * writers go on meanwhile), synchronous=NORMAL so the checkpoint syncs the WAL before copying and the
 * database file after, as SQLite's own checkpoints do. Evaluated from this string so the compiled
 * service and ts-jest run the same code; better-sqlite3 is loaded from the path the parent resolved.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.module);
const db = new Database(workerData.file, { fileMustExist: true });
db.pragma('synchronous = NORMAL');
// failing: the code of the last checkpoint's error, reported to the store once when it starts and once
// when a checkpoint succeeds again (a checkpoint busy with another process' is no error: the pragma
// answers busy=1 and the next round tries again)
let failing = null;
const timer = setInterval(() => {
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
 * stalls, most of a commit's cost averaged over all of them. Here a thread of its own checkpoints every
 * CHECKPOINT_INTERVAL_MS while the writing connection keeps only a high fallback mark. Durability is
 * unchanged: commits are as synchronous=NORMAL makes them, checkpoints sync as before.
 */
export class WalCheckpointer {
  private readonly worker: Worker;
  private readonly exited: Promise<void>;

  /**
   * onFailure hears the thread's checkpoint errors as they start ({ code, message } of SQLite's error: the
   * database file could not take the WAL's pages, e.g. SQLITE_FULL) and end (null), for the store's health.
   */
  constructor(file: string, onFailure: (e: CheckpointFailure | null) => void = () => undefined, intervalMs = CHECKPOINT_INTERVAL_MS) {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { file, intervalMs, module: require.resolve('better-sqlite3') } });
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
