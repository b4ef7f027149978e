import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { cpuMsOf, freePort, procStat, serviceEnv } from './bench-process';

/**
 * ocsp-http-servers starts the two responders bench/ocsp-http compares, on 127.0.0.1 and free ports, each
 * under coreutils `timeout` so nothing outlives a crashed benchmark, and stops them with SIGTERM by pid:
 *   - `node dist/cli/main.js serve` as the operator runs it (cluster, default one worker per core);
 *   - `openssl ocsp -index ... -port P -rsigner ... -rkey ... -CA ...` (optionally -multi N).
 * It reads the CPU time of each server's whole process tree from /proc, so a figure can be given as server
 * CPU per response, which does not depend on how much of the two cores the load generator took.
 */

export { freePort, machineBusyMs, cpuMsOf } from './bench-process';

/** treeOf lists pid and all its descendants. */
export function treeOf(pid: number): number[] {
  const kids = new Map<number, number[]>();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const f = procStat(d);
    if (!f) continue;
    const ppid = Number(f[1]);
    if (!kids.has(ppid)) kids.set(ppid, []);
    kids.get(ppid)!.push(Number(d));
  }
  const out: number[] = [];
  const walk = (p: number) => {
    out.push(p);
    for (const c of kids.get(p) ?? []) walk(c);
  };
  walk(pid);
  return out;
}

export interface Responder {
  name: string;
  port: number;
  pid: number;
  logFile: string;
  /** processes: the serving processes (the `timeout` wrapper left out) */
  processes(): number[];
  cpuMs(): number;
  stop(): Promise<void>;
}

/** probe POSTs one OCSP request and resolves with the HTTP status and body, or rejects. */
export function probe(port: number, body: Buffer): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method: 'POST', path: '/ocsp', agent: false, headers: { 'Content-Type': 'application/ocsp-request', 'Content-Length': body.length } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.setTimeout(2000, () => req.destroy(new Error('probe timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

async function launch(o: {
  name: string;
  cmd: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
  logFile: string;
  port: number;
  probeBody: Buffer;
  /** processes: how many serving processes to wait for */
  processes: number;
  maxSeconds: number;
}): Promise<Responder> {
  const fd = fs.openSync(o.logFile, 'a');
  // timeout(1): SIGTERM to the wrapper is passed on to the server; after maxSeconds it stops it on its own
  const child: ChildProcess = spawn('timeout', ['--kill-after=10', String(o.maxSeconds), o.cmd, ...o.args], { env: o.env, cwd: o.cwd, stdio: ['ignore', fd, fd] });
  fs.closeSync(fd);
  let gone = false;
  const exited = new Promise<void>((resolve) => child.once('exit', () => ((gone = true), resolve())));
  const wrapper = child.pid!;
  const processes = () => treeOf(wrapper).filter((p) => p !== wrapper);
  const deadline = Date.now() + 30_000;
  let ok = 0;
  let last = '';
  // ready: all serving processes exist and 10 probes in a row were answered (new connection each)
  while (ok < 10) {
    if (gone || Date.now() > deadline) {
      if (!gone) child.kill('SIGKILL');
      throw new Error(`bench/ocsp-http: ${o.name} did not start (${gone ? 'exited' : 'timeout'}; ${last}); log ${o.logFile}:\n${fs.readFileSync(o.logFile, 'utf8').slice(-2000)}`);
    }
    try {
      const r = await probe(o.port, o.probeBody);
      if (r.status !== 200) throw new Error(`HTTP ${r.status}`);
      if (processes().length >= o.processes) ok++;
    } catch (e) {
      last = (e as Error).message;
      ok = 0;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    name: o.name,
    port: o.port,
    pid: wrapper,
    logFile: o.logFile,
    processes,
    cpuMs: () => cpuMsOf(processes()),
    async stop() {
      if (gone) return;
      const tree = processes();
      child.kill('SIGTERM');
      const t = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 15_000).unref());
      if ((await Promise.race([exited, t])) === 'timeout') {
        for (const p of tree) {
          try {
            process.kill(p, 'SIGKILL');
          } catch {
            // gone
          }
        }
        await exited;
      }
      // what outlived the wrapper: cluster workers still writing CPU profiles get a moment; openssl -multi's
      // forked responders outlive their parent's SIGTERM and are stopped by pid
      const alive = () => tree.filter((p) => fs.existsSync(`/proc/${p}`) && procStat(p)?.[0] !== 'Z');
      const signal = (sig: NodeJS.Signals) => {
        for (const p of alive()) {
          try {
            process.kill(p, sig);
          } catch {
            // gone meanwhile
          }
        }
      };
      const t0 = Date.now();
      let termed = false;
      while (alive().length && Date.now() - t0 < 10_000) {
        if (!termed && Date.now() - t0 > 1_000) {
          signal('SIGTERM');
          termed = true;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      signal('SIGKILL');
    },
  };
}

/**
 * startDeviceCa: `node dist/cli/main.js serve` on an existing data directory, both listeners on 127.0.0.1.
 * workers 0 = the service default (one per core).
 */
export async function startDeviceCa(o: {
  root: string;
  dataDir: string;
  name: string;
  logLevel: string;
  workers: number;
  nodeArgs?: string[];
  env?: Record<string, string>;
  maxSeconds: number;
  probeBody: Buffer;
}): Promise<Responder> {
  const [httpPort, httpsPort] = [await freePort(), await freePort()];
  const env = serviceEnv({
    DEVICE_CA_DATA: o.dataDir,
    DEVICE_CA_HTTP_PORT: String(httpPort),
    DEVICE_CA_HTTPS_PORT: String(httpsPort),
    DEVICE_CA_HTTP_HOST: '127.0.0.1',
    DEVICE_CA_HTTPS_HOST: '127.0.0.1',
    DEVICE_CA_PUBLIC_URL: `http://127.0.0.1:${httpPort}`,
    DEVICE_CA_LOG_LEVEL: o.logLevel,
    DEVICE_CA_SHUTDOWN_GRACE: '3s',
    ...(o.workers > 0 ? { DEVICE_CA_WORKERS: String(o.workers) } : {}),
    ...o.env,
  });
  const workers = o.workers > 0 ? o.workers : (await import('node:os')).availableParallelism();
  return launch({
    name: o.name,
    cmd: process.execPath,
    args: [...(o.nodeArgs ?? []), path.join(o.root, 'dist', 'cli', 'main.js'), 'serve'],
    env,
    cwd: o.dataDir,
    logFile: path.join(path.dirname(o.dataDir), `${o.name}.log`),
    port: httpPort,
    probeBody: o.probeBody,
    processes: workers > 1 ? workers + 1 : 1,
    maxSeconds: o.maxSeconds,
  });
}

/** startOpenssl: openssl's OCSP responder over the same certificates (index.txt), signing every reply. */
export async function startOpenssl(o: { dir: string; name: string; multi?: number; maxSeconds: number; probeBody: Buffer }): Promise<Responder> {
  const port = await freePort();
  const args = ['ocsp', '-index', 'index.txt', '-port', String(port), '-rsigner', 'ocsp.pem', '-rkey', 'ocsp.key', '-CA', 'issuing.pem', '-nrequest', '100000000'];
  if (o.multi && o.multi > 1) args.push('-multi', String(o.multi));
  return launch({
    name: o.name,
    cmd: 'openssl',
    args,
    env: process.env,
    cwd: o.dir,
    logFile: path.join(path.dirname(o.dir), `${o.name}.log`),
    port,
    probeBody: o.probeBody,
    processes: o.multi && o.multi > 1 ? o.multi + 1 : 1,
    maxSeconds: o.maxSeconds,
  });
}

/** startFloor: bench/ocsp-http-floor (plain node:http, `workers` processes) answering with one fixed response. */
export async function startFloor(o: { dir: string; name: string; workers: number; responseFile: string; maxSeconds: number; probeBody: Buffer }): Promise<Responder> {
  const port = await freePort();
  return launch({
    name: o.name,
    cmd: process.execPath,
    args: [path.join(__dirname, 'ocsp-http-floor.js'), String(port), String(o.workers), o.responseFile],
    env: process.env,
    cwd: o.dir,
    logFile: path.join(o.dir, `${o.name}.log`),
    port,
    probeBody: o.probeBody,
    processes: o.workers > 1 ? o.workers + 1 : 1,
    maxSeconds: o.maxSeconds,
  });
}
