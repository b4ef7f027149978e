import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { certificateParts } from '../src/ca/certificate-parts';
import { parseCsr } from '../src/ra/csr';
import { mainThreadCpuMicros } from './bench-table';
import { IssuanceRig, makeIssuanceRig } from './issuance';

/**
 * checkpoint-pair compares `issuance.core.parallel` (32 in flight, CSR checks on the verify threads) with and
 * without the WAL checkpointing thread on a shared machine, where two runs minutes apart differ by more than
 * the two settings do: both stores are open in one process and short slices of each alternate (the order
 * flips every round), each round between two raw signatures with the issuing key. It prints each round and
 * then the medians: rates, ratios to the signature, the paired on/off ratio, the socket thread's CPU per
 * certificate, and the batch latencies. Not part of `npm run bench` (about a minute per 10 rounds):
 *   npx tsc -p tsconfig.bench.json && node dist-bench/bench/checkpoint-pair.js [rounds=20] [sliceMs=2000]
 */

const IN_FLIGHT = 32;

const median = (a: number[]): number => [...a].sort((x, y) => x - y)[a.length >> 1];
const percentile = (a: number[], p: number): number => [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(a.length * p))];

/** Slices: what one setting's slices measured, one entry per round (batches: every batch's milliseconds). */
interface Slices {
  rate: number[];
  cpu: number[];
  batches: number[];
}

async function rig(thread: boolean): Promise<IssuanceRig> {
  process.env.BENCH_BACKGROUND_CHECKPOINT = thread ? '1' : '0';
  return makeIssuanceRig();
}

async function main(): Promise<void> {
  const rounds = Number(process.argv[2] ?? 20);
  const sliceMs = Number(process.argv[3] ?? 2000);
  const on = await rig(true);
  const off = await rig(false);
  try {
    const key = crypto.createPrivateKey(fs.readFileSync(on.h.issuing.key.ref, 'utf8'));
    const tbs = certificateParts((await on.ca.issue(on.leafRequest(parseCsr(on.pool[0])))).der).tbs;
    let next = 0;
    const slice = async (r: IssuanceRig, into: Slices | null): Promise<void> => {
      const t0 = process.hrtime.bigint();
      const c0 = mainThreadCpuMicros();
      let n = 0;
      for (const end = Date.now() + sliceMs; Date.now() < end;) {
        const b0 = process.hrtime.bigint();
        await Promise.all(Array.from({ length: IN_FLIGHT }, () => r.issuePooled(next++)));
        into?.batches.push(Number(process.hrtime.bigint() - b0) / 1e6);
        n += IN_FLIGHT;
      }
      into?.rate.push(n / (Number(process.hrtime.bigint() - t0) / 1e9));
      into?.cpu.push((mainThreadCpuMicros() - c0) / n);
    };
    const signRate = (): number => {
      const t0 = process.hrtime.bigint();
      let n = 0;
      for (const end = Date.now() + sliceMs / 3; Date.now() < end; n += 50) for (let k = 0; k < 50; k++) crypto.sign('sha256', tbs, { key, dsaEncoding: 'der' });
      return n / (Number(process.hrtime.bigint() - t0) / 1e9);
    };
    await slice(on, null); // warm-up, both
    await slice(off, null);
    const m = { on: { rate: [], cpu: [], batches: [] } as Slices, off: { rate: [], cpu: [], batches: [] } as Slices, sign: [] as number[] };
    for (let i = 0; i < rounds; i++) {
      const before = signRate();
      for (const [r, into] of i % 2
        ? ([
            [off, m.off],
            [on, m.on],
          ] as const)
        : ([
            [on, m.on],
            [off, m.off],
          ] as const))
        await slice(r, into);
      m.sign.push((before + signRate()) / 2);
      process.stdout.write(
        `${JSON.stringify({ round: i, on: Math.round(m.on.rate[i]), off: Math.round(m.off.rate[i]), sign: Math.round(m.sign[i]), socketCpuOn: Math.round(m.on.cpu[i]), socketCpuOff: Math.round(m.off.cpu[i]) })}\n`,
      );
    }
    const ratio = (s: Slices) => median(s.rate.map((v, i) => v / m.sign[i]));
    const batches = (s: Slices) => ({ p50: percentile(s.batches, 0.5), p99: percentile(s.batches, 0.99), max: percentile(s.batches, 1) });
    process.stdout.write(
      `${JSON.stringify({
        certsPerSecond: { on: median(m.on.rate), off: median(m.off.rate), sign: median(m.sign) },
        ratioToSign: { on: ratio(m.on), off: ratio(m.off) },
        pairedOnOverOff: median(m.on.rate.map((v, i) => v / m.off.rate[i])),
        socketThreadMicrosPerCert: { on: median(m.on.cpu), off: median(m.off.cpu) },
        batchMs: { on: batches(m.on), off: batches(m.off) },
      })}\n`,
    );
  } finally {
    await on.close();
    await off.close();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error)?.stack ?? String(e)}\n`);
  process.exitCode = 1;
});
