import * as fs from 'node:fs';
import { RunningService } from '../helpers/service-process';
import { servicePids } from '../fuzz/service-watch';

/** alive: the process exists and is not a zombie. */
export const alive = (pid: number): boolean => {
  try {
    return !/^\S+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'latin1'));
  } catch {
    return false;
  }
};

/**
 * killWhole: SIGKILL to the service's process group and to every pid found under it (primary and
 * workers); waits until all are gone and returns their pids. The data directory stays for a restart.
 */
export async function killWhole(s: RunningService): Promise<number[]> {
  const pids = servicePids(s.pid);
  try {
    process.kill(-s.pid, 'SIGKILL');
  } catch {
    // the group is gone already
  }
  for (const p of pids) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // dead
    }
  }
  await s.exited;
  const end = Date.now() + 10_000;
  while (pids.some(alive)) {
    if (Date.now() > end) throw new Error(`processes ${pids.filter(alive).join(', ')} survived SIGKILL`);
    await new Promise((r) => setTimeout(r, 50));
  }
  await s.stop(); // removes the run's scratch directory; the data directory stays
  return pids;
}
