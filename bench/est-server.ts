import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

/**
 * est-server starts `device-ca serve` (cli/main.js of the compiled service) as the operator would, on loopback ports, and
 * stops it with SIGTERM by pid. It also reads the CPU time of the server's process tree (primary and
 * cluster workers) from /proc, so a figure can be given as server CPU per request, which does not
 * depend on how much of the two cores the load generator took.
 */

/** freePort asks the kernel for an unused loopback port. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** serviceEnv: the process environment without any DEVICE_CA_* setting, plus the given ones. */
export function serviceEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('DEVICE_CA_')) env[k] = v;
  return { ...env, ...extra };
}

const CLK_TCK = 100; // USER_HZ on Linux

/** procCpuMs: utime + stime of one process, from /proc/<pid>/stat; 0 when it is gone. */
function procCpuMs(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
  } catch {
    return 0;
  }
}

/** childrenOf lists the pids whose parent is `pid` (the cluster workers of the primary). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(d));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** machineBusyMs: CPU time spent not idle on the whole machine (all cores), from /proc/stat. */
export function machineBusyMs(): number {
  const cpu = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = cpu[3] + (cpu[4] ?? 0);
  return ((cpu.slice(0, 8).reduce((a, b) => a + b, 0) - idle) * 1000) / CLK_TCK;
}

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
    logTail: () => fs.readFileSync(logFile, 'utf8').split('\n').filter((l) => !l.includes('"msg":"request"')).slice(-15).join('\n'),
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
