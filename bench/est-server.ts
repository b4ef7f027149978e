import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { childrenOf, cpuMsOf, serviceEnv } from './bench-process';

/**
 * est-server starts `device-ca serve` (cli/main.js of the compiled service) as the operator would, on loopback ports, and
 * stops it with SIGTERM by pid. It also reads the CPU time of the server's process tree (primary and
 * cluster workers) from /proc, so a figure can be given as server CPU per request, which does not
 * depend on how much of the two cores the load generator took.
 */

export { freePort, machineBusyMs, serviceEnv } from './bench-process';

/** procCpuMs: utime + stime of one process; 0 when it is gone. */
const procCpuMs = (pid: number): number => cpuMsOf([pid]);

export interface ServerHandle {
  pid: number;
  httpsPort: number;
  httpPort: number;
  logFile: string;
  /** cpuMs: CPU time used so far by the primary and its live workers */
  cpuMs(): number;
  /** primaryCpuMs: the cluster primary's part (it accepts connections and hands them to workers) */
  primaryCpuMs(): number;
  workers(): number[];
  alive(): boolean;
  logTail(): string;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** serviceDir: the compiled service; <serviceDir>/cli/main.js is the device-ca command */
  serviceDir: string;
  dataDir: string;
  httpsPort: number;
  httpPort: number;
  /** more DEVICE_CA_* settings (e.g. DEVICE_CA_ENROLLMENT_SECRET_HASH_COST) */
  env?: Record<string, string>;
  /** node flags for the server (e.g. --cpu-prof); cluster workers inherit them */
  nodeArgs?: string[];
  startTimeoutMs?: number;
}

/**
 * startServer spawns `node <serviceDir>/cli/main.js serve` with the service's defaults (one worker per core,
 * log level info) bound to 127.0.0.1, and resolves once the primary logs "device-ca is serving".
 */
export async function startServer(o: StartOptions): Promise<ServerHandle> {
  const logFile = path.join(o.dataDir, `serve-${Date.now()}.log`);
  fs.mkdirSync(o.dataDir, { recursive: true });
  const fd = fs.openSync(logFile, 'a');
  const env = serviceEnv({
    DEVICE_CA_DATA: o.dataDir,
    DEVICE_CA_HTTPS_PORT: String(o.httpsPort),
    DEVICE_CA_HTTP_PORT: String(o.httpPort),
    DEVICE_CA_HTTPS_HOST: '127.0.0.1',
    DEVICE_CA_HTTP_HOST: '127.0.0.1',
    DEVICE_CA_SHUTDOWN_GRACE: '3s',
    ...o.env,
  });
  const child: ChildProcess = spawn(process.execPath, [...(o.nodeArgs ?? []), path.join(o.serviceDir, 'cli', 'main.js'), 'serve'], { env, stdio: ['ignore', fd, fd], cwd: o.dataDir });
  fs.closeSync(fd);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let gone = false;
  void exited.then(() => (gone = true));
  const pid = child.pid!;
  const deadline = Date.now() + (o.startTimeoutMs ?? 30_000);
  for (;;) {
    const log = fs.readFileSync(logFile, 'utf8');
    if (log.includes('device-ca is serving')) break;
    if (gone || Date.now() > deadline) {
      if (!gone) child.kill('SIGKILL');
      throw new Error(`bench/est: server did not start (${gone ? 'exited' : 'timeout'}); log ${logFile}:\n${log.slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const workers = () => childrenOf(pid);
  return {
    pid,
    httpsPort: o.httpsPort,
    httpPort: o.httpPort,
    logFile,
    workers,
    alive: () => !gone,
    logTail: () =>
      fs
        .readFileSync(logFile, 'utf8')
        .split('\n')
        .filter((l) => !l.includes('"msg":"request"'))
        .slice(-15)
        .join('\n'),
    cpuMs: () => procCpuMs(pid) + workers().reduce((a, w) => a + procCpuMs(w), 0),
    primaryCpuMs: () => procCpuMs(pid),
    async stop() {
      if (gone) return;
      const ws = workers();
      child.kill('SIGTERM');
      const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 10_000).unref());
      if ((await Promise.race([exited, timer])) === 'timeout') {
        for (const w of ws) {
          try {
            process.kill(w, 'SIGKILL');
          } catch {
            // already gone
          }
        }
        child.kill('SIGKILL');
        await exited;
      }
      // workers leave after the primary: give them a moment so their CPU profiles are written
      const until = Date.now() + 10_000;
      while (ws.some((w) => fs.existsSync(`/proc/${w}`)) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    },
  };
}
