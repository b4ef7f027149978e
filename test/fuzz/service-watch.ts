import * as fs from 'node:fs';
import { RunningService } from '../helpers/service-process';

/**
 * service-watch observes a running service from outside, as an operator's monitoring would: the pids of
 * the primary and its workers and their summed resident memory from /proc, and new lines in its log
 * (a worker restart is logged as 'worker exited').
 */

/** servicePids: the primary and every process below it (cluster workers), read from /proc. */
export function servicePids(rootPid: number): number[] {
  const parent = new Map<number, number>();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'latin1');
      // the command name may hold spaces and parentheses: fields start after the last ')'
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parent.set(Number(d), ppid);
    } catch {
      // exited while we looked
    }
  }
  const out = parent.has(rootPid) ? [rootPid] : [];
  for (let i = 0; i < out.length; i++) for (const [pid, pp] of parent) if (pp === out[i]) out.push(pid);
  return out;
}

/** rssBytes: VmRSS of one process, 0 if it is gone. */
export function rssBytes(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'latin1'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** serviceRss: the summed RSS of the service's processes, and how many there are. */
export function serviceRss(rootPid: number): { bytes: number; processes: number } {
  const pids = servicePids(rootPid);
  return { bytes: pids.reduce((s, p) => s + rssBytes(p), 0), processes: pids.length };
}

/** LogWatch hands out the service log written since the last call. */
export class LogWatch {
  private offset: number;
  constructor(private readonly svc: RunningService) {
    this.offset = svc.logs().length;
  }

  /** fresh: log text since the previous call (the helper keeps the last 500 KB; a gap is possible only under a flood) */
  fresh(): string {
    const all = this.svc.logs();
    const start = this.offset <= all.length ? this.offset : 0;
    this.offset = all.length;
    return all.slice(start);
  }
}

/** WORKER_EXITED: what the primary logs when a worker dies and is replaced (src/cli/serve.ts). */
export const WORKER_EXITED = /worker exited/;
