import { ChildProcess, execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { freePorts } from './ports';
import { TmpDir, makeTmpDir } from './tmp';

/**
 * service-process runs the built service (dist/cli/main.js) and other programs (curl, openssl) as child
 * processes, the way an operator and a device would. Interop tests need `npm run build` first (npm test
 * does it). Set DEVICE_CA_TEST_DEBUG=1 to see the service's log (level debug) on this process's stderr.
 */

export const REPO_ROOT = path.resolve(__dirname, '../..');
export const CLI_JS = path.join(REPO_ROOT, 'dist', 'cli', 'main.js');

/** assertBuilt fails with a message that says what to do when the service has not been built. */
export function assertBuilt(): void {
  if (!fs.existsSync(CLI_JS)) {
    throw new Error(`${CLI_JS} is missing: the interop tests run the built service. Run \`npx tsc -p tsconfig.build.json\` (or \`npm run build\`; \`npm test\` builds first).`);
  }
}

export interface ProcessResult {
  /** exit code; null when killed by a signal */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** stdoutBytes: stdout undecoded, for binary output (openssl -outform DER) */
  stdoutBytes: Buffer;
}

/** runProcess runs a program to completion and never rejects on a non-zero exit: the caller asserts on it. */
export function runProcess(file: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number; input?: string | Buffer } = {}): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      { env: opts.env ?? process.env, cwd: opts.cwd, timeout: opts.timeoutMs ?? 30_000, encoding: 'buffer', maxBuffer: 64 * 1024 * 1024, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & { code?: unknown; signal?: NodeJS.Signals | null; killed?: boolean }) | null;
        if (e && typeof e.code === 'string') {
          reject(new Error(`${file}: ${e.message}`)); // ENOENT and the like: the program could not run at all
          return;
        }
        if (e?.killed) {
          reject(new Error(`${file} ${args.join(' ')}: timed out after ${opts.timeoutMs ?? 30_000} ms\n${stderr.toString()}`));
          return;
        }
        resolve({ code: e ? ((e.code as number | undefined) ?? null) : 0, signal: e?.signal ?? null, stdout: stdout.toString('utf8'), stderr: stderr.toString('utf8'), stdoutBytes: stdout });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

/** serviceEnv: this process's environment without any DEVICE_CA_* variable, so a developer's settings cannot leak in. */
export function cleanEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('DEVICE_CA_')) env[k] = v;
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

/** runCli runs `node dist/cli/main.js <args>` with exactly the given environment (plus PATH and the like). */
export function runCli(args: string[], env: Record<string, string | undefined>, opts: { timeoutMs?: number } = {}): Promise<ProcessResult> {
  assertBuilt();
  return runProcess(process.execPath, [CLI_JS, ...args], { env: cleanEnv(env), cwd: REPO_ROOT, timeoutMs: opts.timeoutMs ?? 30_000 });
}

export interface StartOptions {
  /** extra environment for the service and its cli(); overrides the defaults below */
  env?: Record<string, string>;
  /** YAML written to a file that DEVICE_CA_CONFIG points at */
  configYaml?: string;
  /** DEVICE_CA_WORKERS; default 1 (one process, fastest start) */
  workers?: number;
  /** an existing data directory (kept on stop); default: a new one removed on stop */
  dataDir?: string;
  /** how long to wait for /healthz, ms; default 20 000 */
  readyTimeoutMs?: number;
  /** extra command-line arguments after `serve` (e.g. --accept-store-rollback) */
  args?: string[];
}

export interface RunningService {
  pid: number;
  httpsPort: number;
  httpPort: number;
  dataDir: string;
  /** est: https://localhost:<https port>/.well-known/est */
  est: string;
  /** chainPem: <data>/ca/chain.pem, the trust anchor file for clients (issuing CA then root) */
  chainPem: string;
  /** env: the environment the service runs with (DEVICE_CA_* only) */
  env: Record<string, string>;
  /** cli runs the command-line tool against this service's data and config */
  cli(args: string[]): Promise<ProcessResult>;
  /** logs: what the service wrote to stdout and stderr so far */
  logs(): string;
  /**
   * waitForLog polls logs() every 50 ms until predicate holds or ms (default 10 s) passed, and resolves to the log
   * either way: the caller asserts on it. A line the service wrote (an access line is written when the response
   * finishes) reaches this process through a pipe, possibly after the client already has its reply or the
   * process has exited, so a test that reads logs() once races the pipe.
   */
  waitForLog(predicate: (log: string) => boolean, ms?: number): Promise<string>;
  /** exited resolves when the process has exited */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** stop sends SIGTERM to the pid and waits; after timeoutMs (default 15 s) it kills the process group. Returns the exit code (null when killed). */
  stop(timeoutMs?: number): Promise<number | null>;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/** a last resort if a test file crashes before its afterAll: kill the process groups this file started */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const c of live) {
      try {
        if (c.pid) process.kill(-c.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

function httpStatus(url: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * waitForText polls read() every 50 ms until predicate holds or ms passed, and resolves to the last text read: a
 * bounded wait for output that travels through a pipe, never an assertion of its own (the caller asserts).
 */
export async function waitForText(read: () => string, predicate: (text: string) => boolean, ms = 10_000): Promise<string> {
  const end = Date.now() + ms;
  for (;;) {
    const text = read();
    if (predicate(text) || Date.now() >= end) return text;
    await sleep(50);
  }
}

/** PortTaken: the service could not bind a port freePorts had found free (another process took it meanwhile). */
class PortTaken extends Error {}

/**
 * startService spawns `node dist/cli/main.js serve` on free ports with its own data directory and waits
 * until http://127.0.0.1:<http>/healthz answers 200. The caller must stop() it (afterAll). A port is free
 * when freePorts looks and bound seconds later, once the service has started: a process that took it meanwhile
 * (an outgoing connection's local port, another test run on the machine) makes the start fail with
 * EADDRINUSE, and then it is tried again on new ports (three times at most), unless the caller chose them.
 */
export async function startService(opts: StartOptions = {}): Promise<RunningService> {
  const chosen = opts.env?.DEVICE_CA_HTTP_PORT !== undefined || opts.env?.DEVICE_CA_HTTPS_PORT !== undefined;
  for (let attempt = 1; ; attempt++) {
    const given = chosen || attempt >= 3 || opts.dataDir === undefined ? undefined : keepDataDir(opts.dataDir);
    try {
      return await startServiceOnce(opts);
    } catch (e) {
      if (!(e instanceof PortTaken) || chosen || attempt >= 3) throw e;
      given?.restore();
    } finally {
      given?.drop();
    }
  }
}

/**
 * keepDataDir remembers a caller's data directory as it is before a start (absent, or a copy of what it
 * holds): serve makes the CA, its keys and certificates and their audit records before it binds, so a start
 * that fails on a taken port has written there, and its retry must begin on the directory as the caller gave
 * it. A store outside the directory (Redis) keeps what the failed start wrote: a retry there is a restart.
 */
function keepDataDir(dir: string): { restore(): void; drop(): void } {
  const copy = fs.existsSync(dir) ? makeTmpDir('device-ca-svc-keep-') : undefined;
  if (copy) fs.cpSync(dir, copy.file('d'), { recursive: true });
  return {
    restore() {
      fs.rmSync(dir, { recursive: true, force: true });
      if (copy) fs.cpSync(copy.file('d'), dir, { recursive: true });
    },
    drop() {
      copy?.cleanup();
    },
  };
}

async function startServiceOnce(opts: StartOptions): Promise<RunningService> {
  assertBuilt();
  installExitHook();
  const work: TmpDir = makeTmpDir('device-ca-svc-');
  const dataDir = opts.dataDir ?? work.file('data');
  const [httpsPort, httpPort] = await freePorts(2);
  const debug = process.env.DEVICE_CA_TEST_DEBUG === '1';
  const env: Record<string, string> = {
    DEVICE_CA_DATA: dataDir,
    DEVICE_CA_HTTPS_PORT: String(httpsPort),
    DEVICE_CA_HTTP_PORT: String(httpPort),
    DEVICE_CA_WORKERS: String(opts.workers ?? 1),
    DEVICE_CA_LOG_LEVEL: debug ? 'debug' : 'warn',
  };
  if (opts.configYaml !== undefined) env.DEVICE_CA_CONFIG = work.write('config.yaml', opts.configYaml);
  Object.assign(env, opts.env ?? {});

  const child = spawn(process.execPath, [CLI_JS, 'serve', ...(opts.args ?? [])], { env: cleanEnv(env), cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  live.add(child);
  let output = '';
  const collect = (b: Buffer) => {
    output += b.toString('utf8');
    if (output.length > 1_000_000) output = output.slice(-500_000);
    if (debug) process.stderr.write(b);
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      live.delete(child);
      resolve({ code, signal });
    });
  });
  let hasExited = false;
  void exited.then(() => (hasExited = true));

  const killGroup = () => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // gone already
    }
  };

  let stopped: Promise<number | null> | undefined;
  const svc: RunningService = {
    pid: child.pid!,
    httpsPort,
    httpPort,
    dataDir,
    est: `https://localhost:${httpsPort}/.well-known/est`,
    chainPem: path.join(dataDir, 'ca', 'chain.pem'),
    env,
    cli: (args) => runCli(args, env),
    logs: () => output,
    waitForLog: (predicate, ms) => waitForText(() => output, predicate, ms),
    exited,
    stop(timeoutMs = 15_000) {
      stopped ??= (async () => {
        if (!hasExited) {
          try {
            process.kill(child.pid!, 'SIGTERM');
          } catch {
            // exited meanwhile
          }
        }
        const timer = setTimeout(killGroup, timeoutMs);
        const { code } = await exited;
        clearTimeout(timer);
        work.cleanup();
        return code;
      })();
      return stopped;
    },
  };

  const deadline = Date.now() + (opts.readyTimeoutMs ?? 20_000);
  for (;;) {
    if (hasExited) {
      const { code, signal } = await exited;
      work.cleanup();
      const message = `device-ca serve exited (code ${code}, signal ${signal}) before it was healthy:\n${output}`;
      throw /listen EADDRINUSE: address already in use/.test(output) ? new PortTaken(message) : new Error(message);
    }
    if ((await httpStatus(`http://127.0.0.1:${httpPort}/healthz`, 1000)) === 200) return svc;
    if (Date.now() > deadline) {
      await svc.stop(2000);
      throw new Error(`device-ca serve was not healthy within ${opts.readyTimeoutMs ?? 20_000} ms:\n${output}`);
    }
    await sleep(100);
  }
}
