import * as fs from 'node:fs';
import * as net from 'node:net';

/**
 * bench-process: what the server benchmarks share to start servers and account for their CPU: a free
 * loopback port, a clean service environment, and CPU time of processes and of the whole machine read from
 * /proc, so figures can be given as server CPU per request, independent of what the load generator took.
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

/** procStat: the fields of /proc/<pid>/stat after the command name; null when the process is gone. */
export function procStat(pid: number | string): string[] | null {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** cpuMsOf: utime + stime of the given processes (those still alive). */
export function cpuMsOf(pids: number[]): number {
  let t = 0;
  for (const p of pids) {
    const f = procStat(p);
    if (f) t += ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
  }
  return t;
}

/** childrenOf lists the pids whose parent is `pid` (the cluster workers of a primary). */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const f = procStat(d);
    if (f && Number(f[1]) === pid) out.push(Number(d));
  }
  return out;
}

/** machineBusyMs: CPU time spent not idle on the whole machine (all cores), from /proc/stat. */
export function machineBusyMs(): number {
  const cpu = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = cpu[3] + (cpu[4] ?? 0);
  return ((cpu.slice(0, 8).reduce((a, b) => a + b, 0) - idle) * 1000) / CLK_TCK;
}
