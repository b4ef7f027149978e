import * as fs from 'node:fs';
import * as os from 'node:os';

/**
 * process-identity: how device-ca names a writing process so that another process can later tell whether
 * that writer is gone (the store's pending release chunk sets, SQLite migration 28; the temporary files and
 * lock files beside a firmware release's --out, data-dir/atomic-file.ts and data-dir/writer-lock.ts).
 * A pid only means something in the process table it was taken from: the same host name, pid namespace
 * and boot. A writer in another container under the same host name is never judged by our pid table.
 */

/** ProcessTable: what tells this process's pid table from another's on the same host name. */
export interface ProcessTable {
  host: string;
  /** pidNs: readlink /proc/self/ns/pid (e.g. "pid:[4026531836]"); null where /proc does not tell (not Linux) */
  pidNs: string | null;
  /** bootId: /proc/sys/kernel/random/boot_id; null where /proc does not tell */
  bootId: string | null;
}

/** PROCESS_TABLE: this process's table (read once: none of it changes while the process runs, the host name aside). */
export const PROCESS_TABLE: ProcessTable = {
  host: os.hostname(),
  pidNs: readOrNull(() => fs.readlinkSync('/proc/self/ns/pid')),
  bootId: readOrNull(() => fs.readFileSync('/proc/sys/kernel/random/boot_id', 'latin1').trim()),
};

/**
 * BOOTED_AT_MS: when this machine booted (/proc/stat btime, ms since the epoch); null where /proc does not tell.
 * A boot id unlike ours does not say that boot is over: two machines of one host name in the initial pid
 * namespace (whose inode, 4026531836, is the same on every Linux host) or in pid namespaces that happen to get
 * the same inode share a pid table name, and a volume they share (an NFS --out) holds files of both boots.
 * A file of another boot that was last written before this boot began is an earlier boot's (writtenBeforeThisBoot).
 */
export const BOOTED_AT_MS: number | null = bootedAtMs();

function bootedAtMs(): number | null {
  const btime = readOrNull(() => /^btime (\d+)$/m.exec(fs.readFileSync('/proc/stat', 'latin1'))?.[1] ?? '');
  return btime === null ? null : Number(btime) * 1000;
}

/**
 * writtenBeforeThisBoot: whether `file` was last modified before this machine booted, so that a writer of
 * another boot that left it is provably gone (see BOOTED_AT_MS); false when that cannot be told.
 */
export function writtenBeforeThisBoot(file: string): boolean {
  if (BOOTED_AT_MS === null) return false;
  try {
    return fs.statSync(file).mtimeMs < BOOTED_AT_MS;
  } catch {
    return false;
  }
}

function readOrNull(read: () => string): string | null {
  try {
    return read() || null;
  } catch {
    return null;
  }
}

/**
 * processStartTicks: when process `pid` of this table started, in clock ticks since boot (/proc/<pid>/stat
 * field 22, proc(5)); null where /proc does not tell. A pid names one process only together with this: after
 * a kill -9 the pid may be given to another process, which starts later. No wall clock is involved, so a
 * clock step cannot make a live writer look like another process.
 */
export function processStartTicks(pid: number): number | null {
  try {
    // the fields after the command name (which may hold spaces and parentheses) start at field 3
    const fields = fs
      .readFileSync(`/proc/${pid}/stat`, 'latin1')
      .replace(/^.*\) /s, '')
      .split(' ');
    const ticks = Number(fields[19]);
    return Number.isSafeInteger(ticks) ? ticks : null;
  } catch {
    return null;
  }
}

/** processRuns: whether a process of this host's table runs (a zombie, killed and not yet reaped, does not). */
export function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    return !/^\S+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'latin1'));
  } catch {
    return true; // no /proc: kill(0) said it runs
  }
}
