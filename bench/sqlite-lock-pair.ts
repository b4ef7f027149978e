import { fork } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';

/**
 * sqlite-lock-pair: what two processes writing one SQLite store (two `serve` workers) do to each other's
 * event loop. Each opens the store as a worker does (checkpointing thread on) and keeps 16 grouped writes
 * (appendAudit) in flight; each reports writes per second, CPU per write and its event-loop delay (p50, p99,
 * max: while a synchronous SQLite call sleeps in the busy handler, nothing else on that loop runs). With
 * SQLITE_PAIR_COMPARE_DIR (another compiled service, e.g. `git archive` of the base commit built with
 * `npx tsc -p tsconfig.build.json`, its dist/) the two builds alternate, so one run on a shared machine
 * compares them. Not part of `npm run bench`:
 *   npx tsc -p tsconfig.bench.json && SQLITE_PAIR_COMPARE_DIR=/tmp/base/dist node dist-bench/bench/sqlite-lock-pair.js [rounds=3] [seconds=3]
 * `perf trace -s -e clock_nanosleep -- node ...` counts the busy handler's sleeps (none on the loop since the
 * group commit retries on a timer).
 */

interface ChildResult {
  writes: number;
  cpuUsPerWrite: number;
  loopP50: number;
  loopP99: number;
  loopMax: number;
}

const IN_FLIGHT = 16;

/** child: one writing process; argv: --child <serviceDir> <file> <seconds> */
async function child(serviceDir: string, file: string, seconds: number): Promise<void> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { SqliteStore } = require(path.join(serviceDir, 'store', 'sqlite', 'sqlite-store.js')) as typeof import('../src/store/sqlite/sqlite-store');
  const store = new SqliteStore(file, { backgroundCheckpoint: true });
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  let writes = 0;
  const until = Date.now() + seconds * 1000;
  const c0 = process.cpuUsage();
  const loop = async () => {
    while (Date.now() < until) {
      await store.appendAudit({ type: 'bench.write', actor: 'bench', subject: `p${process.pid}`, data: { n: writes } });
      writes++;
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, loop));
  h.disable();
  const c = process.cpuUsage(c0);
  const r: ChildResult = { writes, cpuUsPerWrite: (c.user + c.system) / writes, loopP50: h.percentile(50) / 1e6, loopP99: h.percentile(99) / 1e6, loopMax: h.max / 1e6 };
  await store.close();
  process.send!(r, () => process.exit(0));
}

/** pair runs two writing processes on a new store of serviceDir's schema for `seconds`. */
async function pair(serviceDir: string, seconds: number): Promise<ChildResult[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-lock-pair-'));
  try {
    const file = path.join(dir, 'store.sqlite');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { SqliteStore } = require(path.join(serviceDir, 'store', 'sqlite', 'sqlite-store.js')) as typeof import('../src/store/sqlite/sqlite-store');
    await new SqliteStore(file).close(); // schema first, so the two do not race to migrate
    return await Promise.all(
      [0, 1].map(
        () =>
          new Promise<ChildResult>((resolve, reject) => {
            const c = fork(__filename, ['--child', serviceDir, file, String(seconds)]);
            c.once('message', (m) => resolve(m as ChildResult));
            c.once('exit', (code) => code !== 0 && reject(new Error(`sqlite-lock-pair: a writer exited with ${code}`)));
          }),
      ),
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const rounds = Number(process.argv[2] ?? 3);
  const seconds = Number(process.argv[3] ?? 3);
  const dirs = [path.join(__dirname, '..', 'src'), ...(process.env.SQLITE_PAIR_COMPARE_DIR ? [path.resolve(process.env.SQLITE_PAIR_COMPARE_DIR)] : [])];
  const f = (x: number) => x.toFixed(1);
  for (let r = 0; r < rounds; r++) {
    // the order flips every round
    for (const d of r % 2 ? [...dirs].reverse() : dirs) {
      const res = await pair(d, seconds);
      console.log(
        `${d}: writes/s ${res.map((x) => f(x.writes / seconds)).join(' + ')}  CPU ${res.map((x) => f(x.cpuUsPerWrite)).join('/')} us/write  ` +
          `loop delay p50 ${res.map((x) => f(x.loopP50)).join('/')} p99 ${res.map((x) => f(x.loopP99)).join('/')} max ${res.map((x) => f(x.loopMax)).join('/')} ms`,
      );
    }
  }
}

if (process.argv[2] === '--child') void child(process.argv[3], process.argv[4], Number(process.argv[5]));
else
  main().catch((e) => {
    console.error(e);
    process.exitCode = 1;
  });
