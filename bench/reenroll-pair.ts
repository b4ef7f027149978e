import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { procStat } from './bench-process';
import type { ClientRequest } from './est-client';
import { LoadClients, get, postCsr } from './est';
import { enrollPool, ensureDataDir, loadDist } from './est-fixtures';
import { ServerHandle, freePort, serviceEnv, startServer } from './est-server';

/**
 * reenroll-pair compares two builds of the service on `est.reenroll.mtls` (simplereenroll over mTLS, a new
 * TLS connection each, bench/est.ts) in one run: both servers are up side by side, each with its own data
 * directory and pool of enrolled devices, and short slices of load alternate between them (the order flips
 * every round), each slice's server CPU read from /proc per thread. On a shared machine two bench runs
 * minutes apart differ by more than a cut does; a same-run pair does not. Per round: re-enrollments per
 * second and server CPU per re-enrollment of each side, and B/A; then medians, and the CPU of each kind of
 * thread (socket thread, CSR verify, WAL checkpoint, libuv pool, V8 helpers) per re-enrollment. With
 * `cacerts`, each slice is followed by GET /cacerts with the same client certificates on the same server,
 * the row's baseline, so each side's ratio by CPU is given too. Not part of `npm run bench`:
 *   npx tsc -p tsconfig.bench.json && node dist-bench/bench/reenroll-pair.js <serviceDirA> <serviceDirB> [rounds=4] [sliceSeconds=4] [cacerts]
 * (a service dir is a compiled src/, e.g. a copy of dist-bench/src made before the change). REENROLL_PAIR_ENV_A / _B: JSON
 * objects of DEVICE_CA_* settings for one side's server (the same build under two settings).
 */

const median = (a: number[]): number => [...a].sort((x, y) => x - y)[a.length >> 1];

/** threadCpu: utime + stime in ms of every thread of the server (primary and workers), by thread name. */
function threadCpu(s: ServerHandle): Map<string, number> {
  const out = new Map<string, number>();
  for (const pid of [s.pid, ...s.workers()]) {
    let tids: string[] = [];
    try {
      tids = fs.readdirSync(`/proc/${pid}/task`);
    } catch {
      continue;
    }
    for (const tid of tids) {
      let name = '?';
      try {
        name = fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      } catch {
        continue;
      }
      const f = procStat(`${pid}/task/${tid}`);
      if (!f) continue;
      const key = `${pid === s.pid ? 'primary' : 'worker'} ${tid === String(pid) ? 'main' : name}`;
      out.set(key, (out.get(key) ?? 0) + ((Number(f[11]) + Number(f[12])) * 1000) / 100);
    }
  }
  return out;
}

interface Side {
  name: string;
  server: ServerHandle;
  reenroll: ClientRequest[];
  cacerts: ClientRequest[];
  identities: { certPem: string; keyPem: string }[];
  rate: number[];
  cpu: number[];
  baseCpu: number[];
  threads: Map<string, number>[];
}

async function prepare(name: string, dir: string, tmp: string, pool: number, extra: Record<string, string>): Promise<Side> {
  const dist = loadDist(path.resolve(dir));
  const dataDir = path.join(tmp, name);
  const [httpsPort, httpPort] = [await freePort(), await freePort()];
  const env = serviceEnv({ DEVICE_CA_DATA: dataDir, DEVICE_CA_HTTPS_PORT: String(httpsPort), DEVICE_CA_HTTP_PORT: String(httpPort) });
  await ensureDataDir(dist, env);
  const devices = await enrollPool(dist, env, 'pool', pool);
  const server = await startServer({ serviceDir: path.resolve(dir), dataDir, httpsPort, httpPort, env: extra });
  return {
    name,
    server,
    identities: devices.map((d) => ({ certPem: d.certPem, keyPem: d.keyPem })),
    reenroll: devices.map((d, i) => ({ http: postCsr(httpsPort, '/.well-known/est/simplereenroll', d.csr), identity: i })),
    cacerts: devices.map((_, i) => ({ http: get(httpsPort, '/.well-known/est/cacerts'), identity: i })),
    rate: [],
    cpu: [],
    baseCpu: [],
    threads: [],
  };
}

async function main(): Promise<void> {
  const [dirA, dirB] = [process.argv[2], process.argv[3]];
  if (!dirA || !dirB) throw new Error('usage: reenroll-pair <serviceDirA> <serviceDirB> [rounds] [sliceSeconds] [cacerts]');
  const rounds = Number(process.argv[4] ?? 4);
  const sliceMs = Number(process.argv[5] ?? 4) * 1000;
  const withBase = process.argv[6] === 'cacerts';
  const concurrency = 16;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-reenroll-pair-'));
  const sides: Side[] = [];
  const client = await LoadClients.start(os.availableParallelism());
  try {
    const envOf = (v: string | undefined): Record<string, string> => (v ? (JSON.parse(v) as Record<string, string>) : {});
    sides.push(await prepare('a', dirA, tmp, 64, envOf(process.env.REENROLL_PAIR_ENV_A)), await prepare('b', dirB, tmp, 64, envOf(process.env.REENROLL_PAIR_ENV_B)));
    const slice = async (s: Side, requests: ClientRequest[], durationMs: number) => {
      const base = { port: s.server.httpsPort, concurrency, cycle: true, identities: s.identities, requests };
      const c0 = s.server.cpuMs();
      const t0 = threadCpu(s.server);
      const r = await client.run({ ...base, durationMs });
      const cpu = s.server.cpuMs() - c0;
      const t1 = threadCpu(s.server);
      if (r.ok === 0 || r.failed > 0) throw new Error(`side ${s.name}: ${r.failed} failed of ${r.ok + r.failed}: ${r.firstError}; log: ${s.server.logTail()}`);
      const perThread = new Map([...t1].map(([k, v]) => [k, (v - (t0.get(k) ?? 0)) / r.ok]));
      return { rate: (r.ok * 1000) / r.elapsedMs, cpuPerOp: cpu / r.ok, perThread };
    };
    for (const s of sides) {
      await slice(s, s.reenroll, 1500); // warm-up
      if (withBase) await slice(s, s.cacerts, 1000);
    }
    for (let i = 0; i < rounds; i++) {
      const order = i % 2 ? [...sides].reverse() : sides;
      for (const s of order) {
        const m = await slice(s, s.reenroll, sliceMs);
        s.rate.push(m.rate);
        s.cpu.push(m.cpuPerOp);
        s.threads.push(m.perThread);
        if (withBase) s.baseCpu.push((await slice(s, s.cacerts, sliceMs / 2)).cpuPerOp);
      }
      const [a, b] = sides;
      process.stdout.write(
        `${JSON.stringify({ round: i, rateA: +a.rate[i].toFixed(1), rateB: +b.rate[i].toFixed(1), cpuMsA: +a.cpu[i].toFixed(3), cpuMsB: +b.cpu[i].toFixed(3), cpuBOverA: +(b.cpu[i] / a.cpu[i]).toFixed(3), rateBOverA: +(b.rate[i] / a.rate[i]).toFixed(3) })}\n`,
      );
    }
    const [a, b] = sides;
    const threads = (s: Side) => {
      const keys = new Set(s.threads.flatMap((m) => [...m.keys()]));
      return Object.fromEntries(
        [...keys]
          .map((k) => [k, Math.round(1000 * median(s.threads.map((m) => m.get(k) ?? 0)))] as const)
          .filter(([, v]) => v > 0)
          .sort((x, y) => y[1] - x[1]),
      );
    };
    process.stdout.write(
      `${JSON.stringify(
        {
          a: dirA,
          b: dirB,
          reenrollPerSecond: { a: median(a.rate), b: median(b.rate) },
          serverCpuMsPerReenroll: { a: median(a.cpu), b: median(b.cpu) },
          pairedCpuBOverA: median(a.cpu.map((v, i) => b.cpu[i] / v)),
          pairedRateBOverA: median(a.rate.map((v, i) => b.rate[i] / v)),
          ...(withBase ? { cacertsMtlsCpuMs: { a: median(a.baseCpu), b: median(b.baseCpu) }, ratioByCpu: { a: median(a.baseCpu) / median(a.cpu), b: median(b.baseCpu) / median(b.cpu) } } : {}),
          threadMicrosPerReenroll: { a: threads(a), b: threads(b) },
        },
        null,
        1,
      )}\n`,
    );
  } finally {
    for (const s of sides) await s.server.stop();
    await client.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error)?.stack ?? String(e)}\n`);
  process.exitCode = 1;
});
