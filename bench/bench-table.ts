import * as fs from 'node:fs';
import * as os from 'node:os';

/**
 * bench-table: the shape every benchmark module returns and the table run.ts prints. Machines are noisy,
 * so each figure stands beside a baseline measured in the same run, and the ratio is what to compare
 * across machines and commits.
 */
export interface BenchRow {
  /**
   * id names the row across runs and commits (one of BENCH_IDS) for the rows the performance targets are
   * set on; reference rows have none. A row's name may change with its wording, its id does not.
   */
  id?: BenchId;
  name: string;
  /** the measured figure, with its unit ("5 210 cert/s") */
  figure: string;
  /** what the figure is compared with, measured in the same process and run, with its unit */
  baseline: string;
  /** figure / baseline in the sense the name gives (speed-up, share, fraction of the raw rate) */
  ratio: number;
  note?: string;
}

/**
 * BENCH_IDS are the stable ids `npm run bench -- --json` gives the rows the performance issue sets targets
 * on, each with the baseline it is compared with in the same run.
 */
export const BENCH_IDS = [
  /** issuance core, 32 in flight, P-256, one core / raw ECDSA P-256 sign with the same key */
  'issuance.core.parallel',
  /** EST simpleenroll with HTTP Basic, default settings, a new TLS connection each / GET /cacerts the same way */
  'est.enroll.basic',
  /** EST simplereenroll over mTLS / GET /cacerts presenting the same client certificates */
  'est.reenroll.mtls',
  /** OCSP cached answers, keep-alive c=32 / a node:http cluster answering one fixed response, same client */
  'ocsp.cached.keepalive',
  /** OCSP with a nonce, a new connection per request / openssl ocsp driven the same way */
  'ocsp.nonce.newconn',
  /** issuance core with the issuing key on SoftHSM2 / the same core with a software key */
  'pkcs11.issuance',
  /** live OCSP responses with the responder key on SoftHSM2 / with a software key */
  'pkcs11.ocsp.live',
  /** a CRL of 1,000,000 entries from paged store entries / openssl ca -gencrl (ratio: speed-up) */
  'crl.1m',
  /** bench/scale: each on a store of BENCH_SCALE_N devices and certificates / the same on an empty store */
  'scale.issuance',
  'scale.reenroll',
  'scale.ocsp',
  'scale.crl',
  /** bench/scale: filling the store (rows/s, store size) and `devices import` (devices/s); no baseline ratio target */
  'scale.populate',
  'scale.import',
  /** bench/tpm-attestation: attestations verified per second on one core / the raw signature checks of the same evidence */
  'tpm.attestation.verify',
  /** bench/redis-http, the built service, one worker per node: a node on Redis / a node on SQLite (target 0.8) */
  'redis.enroll.basic',
  'redis.reenroll.mtls',
  'redis.ocsp.cached',
  /** bench/redis-http: 2 nodes on one Redis / 1 node (target 1.6) */
  'redis.nodes2.enroll.basic',
  'redis.nodes2.reenroll.mtls',
  /** bench/redis-http: the same two rows with keep-alive clients (one TLS connection per lane, reused) */
  'redis.nodes2.enroll.basic.keepalive',
  'redis.nodes2.reenroll.mtls.keepalive',
  /**
   * bench/redis-http, DERIVED from CPU per request (bench/redis-capacity: one core per node, one for Redis),
   * beside the raw rows above: a Redis node / a SQLite node (target 0.8), 2 nodes / 1 node (target 1.6)
   */
  'redis.enroll.basic.cpu',
  'redis.reenroll.mtls.cpu',
  'redis.nodes2.enroll.basic.derived',
  'redis.nodes2.reenroll.mtls.derived',
  'redis.nodes2.enroll.basic.keepalive.derived',
  'redis.nodes2.reenroll.mtls.keepalive.derived',
  /** bench/redis-http: Redis commands per cached OCSP answer on a Redis node (INFO commandstats; target <= 1, the bench fails above) */
  'redis.ocsp.cached.commands',
] as const;

export type BenchId = (typeof BENCH_IDS)[number];

/** BenchFunction is what each bench module exports (benchIssuance, benchCrl, ...). */
export type BenchFunction = () => Promise<BenchRow[]>;

export interface Measurement {
  iterations: number;
  seconds: number;
  perSecond: number;
  microsPerOp: number;
  /** process CPU time (all threads) per op, µs */
  cpuMicrosPerOp: number;
  /** CPU time of the thread that ran op (the main thread) per op, µs; NaN where /proc cannot tell */
  threadCpuMicrosPerOp: number;
}

/**
 * mainThreadCpuMicros: the main thread's CPU time (user + system) from /proc/self/task/<pid>/stat, in µs
 * (clock-tick resolution, 10 ms: fine over a timed run); NaN off Linux. process.cpuUsage counts every
 * thread, so it cannot tell the socket thread's share from the worker threads'.
 */
export function mainThreadCpuMicros(): number {
  try {
    const fields = fs.readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1e6) / CLOCK_TICKS;
  } catch {
    return NaN;
  }
}
/** CLOCK_TICKS: USER_HZ of /proc times, 100 on every Linux architecture Node runs on */
const CLOCK_TICKS = 100;

/**
 * measure runs op until both minIterations and minSeconds are reached (after warmup runs that are not
 * timed) and returns its rate. op may be sync or async; an async op is awaited one at a time.
 */
export async function measure(op: (i: number) => unknown, opts: { minIterations?: number; minSeconds?: number; warmup?: number; maxIterations?: number } = {}): Promise<Measurement> {
  const minIterations = opts.minIterations ?? 200;
  const minNs = BigInt(Math.round((opts.minSeconds ?? 1) * 1e9));
  const maxIterations = opts.maxIterations ?? Number.MAX_SAFE_INTEGER;
  const warmup = opts.warmup ?? 50;
  for (let i = 0; i < warmup; i++) await op(i);
  const cpu0 = process.cpuUsage();
  const thread0 = mainThreadCpuMicros();
  const start = process.hrtime.bigint();
  let n = 0;
  let elapsed = 0n;
  // check the clock every 16 ops: hrtime is cheap but not free next to a 20 µs op
  while (n < maxIterations && (n < minIterations || elapsed < minNs)) {
    for (let k = 0; k < 16 && n < maxIterations; k++, n++) {
      const r = op(warmup + n);
      if (r && typeof (r as Promise<unknown>).then === 'function') await r;
    }
    elapsed = process.hrtime.bigint() - start;
  }
  const seconds = Number(elapsed) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const thread = mainThreadCpuMicros() - thread0;
  return { iterations: n, seconds, perSecond: n / seconds, microsPerOp: (seconds * 1e6) / n, cpuMicrosPerOp: (cpu.user + cpu.system) / n, threadCpuMicrosPerOp: thread / n };
}

export interface Contender {
  op: (i: number) => unknown;
  /** per round */
  minIterations?: number;
  /** per round */
  minSeconds?: number;
  warmup?: number;
}

/**
 * bestOfRounds measures several contenders round-robin (a, b, c, a, b, c, ...) and keeps each one's best
 * round. On a shared, noisy machine a burst of load then hits every contender alike instead of skewing one
 * ratio, and the best round is the least disturbed one. Each op gets indexes that never repeat.
 */
export async function bestOfRounds<K extends string>(contenders: Record<K, Contender>, rounds = 5): Promise<Record<K, Measurement & { rounds: number; totalIterations: number }>> {
  const keys = Object.keys(contenders) as K[];
  const best = {} as Record<K, Measurement & { rounds: number; totalIterations: number }>;
  const next = {} as Record<K, number>;
  for (const k of keys) next[k] = 0;
  for (let r = 0; r < rounds; r++) {
    for (const k of keys) {
      const c = contenders[k];
      const base = next[k];
      const m = await measure((i) => c.op(base + i), { minIterations: c.minIterations, minSeconds: c.minSeconds, warmup: r === 0 ? c.warmup : 0 });
      next[k] = base + (r === 0 ? (c.warmup ?? 50) : 0) + m.iterations + 16;
      const total = (best[k]?.totalIterations ?? 0) + m.iterations;
      if (!best[k] || m.perSecond > best[k].perSecond) best[k] = { ...m, rounds: rounds, totalIterations: total };
      else best[k].totalIterations = total;
    }
  }
  return best;
}

/** fmtRate prints a rate with thin grouping: 5210.4 -> "5 210/s". */
export function fmtRate(perSecond: number, unit = ''): string {
  const v = perSecond >= 100 ? Math.round(perSecond).toLocaleString('en-US').replace(/,/g, ' ') : perSecond.toPrecision(3);
  return `${v} ${unit}/s`.replace(' /s', '/s');
}

export function fmtMicros(us: number): string {
  return us >= 1000 ? `${(us / 1000).toFixed(2)} ms` : `${us.toFixed(1)} µs`;
}

export function fmtRatio(r: number): string {
  if (!Number.isFinite(r)) return String(r);
  return r >= 100 ? `${r.toFixed(0)}x` : r >= 10 ? `${r.toFixed(1)}x` : `${r.toFixed(2)}x`;
}

export interface Section {
  module: string;
  rows?: BenchRow[];
  /** "skipped: not present", "failed: <message>" */
  status?: string;
  seconds?: number;
}

/** formatTable lays the sections out as one plain-text table, a column per field. */
export function formatTable(sections: Section[]): string {
  const header = ['bench', 'measurement', 'figure', 'baseline (same run)', 'ratio', 'note'];
  const lines: string[][] = [];
  for (const s of sections) {
    if (!s.rows) {
      lines.push([s.module, s.status ?? '', '', '', '', '']);
      continue;
    }
    s.rows.forEach((r, i) => lines.push([i === 0 ? s.module : '', r.name, r.figure, r.baseline, fmtRatio(r.ratio), r.note ?? '']));
  }
  const widths = header.map((h, c) => Math.min(c === 5 ? 80 : 200, Math.max(h.length, ...lines.map((l) => l[c].length))));
  const fmt = (cells: string[]): string =>
    cells
      .map((v, c) => (c === 4 ? v.padStart(widths[c]) : v.padEnd(widths[c])))
      .join('  ')
      .trimEnd();
  return [fmt(header), widths.map((w) => '-'.repeat(w)).join('  '), ...lines.map(fmt)].join('\n');
}

/** JsonRow is one row of `--json` output: the module it came from and the row, id null for reference rows. */
export interface JsonRow {
  id: BenchId | null;
  module: string;
  name: string;
  figure: string;
  baseline: string;
  ratio: number | null;
  note: string | null;
}

/** BenchJson is what `npm run bench -- --json` prints on stdout: one object, rows flat in run order. */
export interface BenchJson {
  machine: string;
  rows: JsonRow[];
  /** modules that produced no rows, with why ("skipped: not present", "failed: ...") */
  modules: { module: string; status: string | null; seconds: number | null }[];
}

/**
 * benchJson flattens the sections into BenchJson. A ratio that is not a finite number (a baseline of 0)
 * becomes null, since JSON has no NaN or Infinity.
 */
export function benchJson(machine: string, sections: Section[]): BenchJson {
  const rows: JsonRow[] = [];
  for (const s of sections)
    for (const r of s.rows ?? [])
      rows.push({ id: r.id ?? null, module: s.module, name: r.name, figure: r.figure, baseline: r.baseline, ratio: Number.isFinite(r.ratio) ? r.ratio : null, note: r.note ?? null });
  return { machine, rows, modules: sections.map((s) => ({ module: s.module, status: s.status ?? null, seconds: s.seconds ?? null })) };
}

/** machineLine says where the figures come from; ratios travel between machines, rates do not. */
export function machineLine(): string {
  const cpus = os.cpus();
  return `node ${process.version}, ${cpus[0]?.model ?? 'unknown CPU'} x${cpus.length}, ${os.platform()} ${os.release()}, ${new Date().toISOString()}`;
}
