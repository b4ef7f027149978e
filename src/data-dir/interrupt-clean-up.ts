import * as os from 'node:os';

/**
 * interrupt-clean-up: what a CLI process removes when it is interrupted (SIGINT: Ctrl-C; SIGTERM: kill, a
 * container stop; SIGHUP: a closed terminal) while it holds files that only mean something while it runs:
 * a writer lock (`<out>.lock`, writer-lock.ts) and the temporary file of a write that awaits
 * (atomic-file.ts). Without it, an interrupted `firmware release` left both; the next release removes them
 * only when it can judge the writer gone, which it cannot from another container (a `docker run --rm` per
 * command), where the lock was refused until an operator removed it.
 *
 * Only where nothing else handles the signal: a process with its own handler (the service's graceful stop,
 * src/cli/serve.ts) lets its writes in flight finish, so their files must stay. After the clean-up the
 * signal is raised again with its default action, so the exit status still says which signal ended it
 * (pid 1 of a container, which that does not end, exits with 128 + the signal's number).
 */

const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/** CLEAN_UPS: what to remove if interrupted now, by the registration that added it. */
const CLEAN_UPS = new Map<symbol, () => void>();

/**
 * removeIfInterrupted registers `cleanUp` (synchronous, best effort) to run if the process is interrupted
 * before the returned function is called; that function unregisters it.
 */
export function removeIfInterrupted(cleanUp: () => void): () => void {
  const key = Symbol('clean-up');
  if (CLEAN_UPS.size === 0) for (const s of SIGNALS) process.on(s, onSignal);
  CLEAN_UPS.set(key, cleanUp);
  return () => {
    if (!CLEAN_UPS.delete(key)) return;
    if (CLEAN_UPS.size === 0) for (const s of SIGNALS) process.removeListener(s, onSignal);
  };
}

function onSignal(signal: NodeJS.Signals): void {
  if (process.listenerCount(signal) > 1) return; // another handler owns the shutdown (see the module comment)
  const cleanUps = [...CLEAN_UPS.values()];
  CLEAN_UPS.clear();
  for (const s of SIGNALS) process.removeListener(s, onSignal);
  for (const c of cleanUps) {
    try {
      c();
    } catch {
      // best effort: the process ends either way, and the next writer judges what is left
    }
  }
  process.kill(process.pid, signal); // no listener now: the default action ends the process
  // still here: pid 1 of a container (the kernel ignores a signal pid 1 does not handle); the lock is gone,
  // so this writer must not go on
  process.exit(128 + (os.constants.signals[signal] ?? 0));
}
