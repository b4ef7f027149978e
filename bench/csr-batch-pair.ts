import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { verifyAuditChain } from '../src/audit/audit-verify';
import { certificateParts } from '../src/ca/certificate-parts';
import { parseCsr } from '../src/ra/csr';
import { MAX_BATCH } from '../src/ra/csr-verify-pool';
import { mainThreadCpuMicros } from './bench-table';
import { IssuanceRig, makeIssuanceRig } from './issuance';

/**
 * csr-batch-pair compares `issuance.core.parallel` (32 in flight, CSR checks on the verify threads) with two
 * sizes of the CSR verify pool's batches (requests per message to a verify thread, CsrVerifyPool maxBatch).
 * Both rigs are open in one process and short slices of each alternate (the order flips every round), each
 * round between raw signatures with the issuing key: on a shared machine two runs minutes apart differ by
 * more than the two settings do. Per round and then as medians: rates, ratios to the signature, the paired
 * a/b ratio, the socket thread's CPU and the process' CPU per certificate, the batch latencies. `intent`
 * also records the audit intent before each issuance, as the RA does (2 writes per certificate). Side a
 * defaults to MAX_BATCH, side b to 4 (the size before MAX_BATCH was raised). Not part of `npm run bench`:
 *   npx tsc -p tsconfig.bench.json && node dist-bench/bench/csr-batch-pair.js [rounds=16] [sliceMs=2000] [core|intent] [a=MAX_BATCH] [b=4]
 */

const IN_FLIGHT = 32;

const median = (a: number[]): number => [...a].sort((x, y) => x - y)[a.length >> 1];
const percentile = (a: number[], p: number): number => [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(a.length * p))];

/** Slices: what one side's slices measured, one entry per round (batches: every batch's milliseconds). */
interface Slices {
  rate: number[];
  cpu: number[];
  /** process CPU (every thread: socket, CSR verify, checkpoint) per certificate */
  processCpu: number[];
  batches: number[];
}

async function main(): Promise<void> {
  const rounds = Number(process.argv[2] ?? 16);
  const sliceMs = Number(process.argv[3] ?? 2000);
  const withIntent = process.argv[4] === 'intent';
  const side = (spec: string): { csrBatch: number } => {
    if (!/^[1-9]\d*$/.test(spec)) throw new Error(`CSR batch ${spec}: a positive integer`);
    return { csrBatch: Number(spec) };
  };
  const specA = process.argv[5] ?? String(MAX_BATCH);
  const specB = process.argv[6] ?? '4';
  const a = await makeIssuanceRig(side(specA));
  const b = await makeIssuanceRig(side(specB));
  try {
    const key = crypto.createPrivateKey(fs.readFileSync(a.h.issuing.key.ref, 'utf8'));
    const tbs = certificateParts((await a.ca.issue(a.leafRequest(parseCsr(a.pool[0])))).der).tbs;
    let next = 0;
    const one = async (r: IssuanceRig, i: number): Promise<void> => {
      if (withIntent) {
        const id = r.deviceIds[i % r.deviceIds.length];
        await r.store.appendAudit({ type: 'certificate.issue.intent', actor: `device:${id}`, subject: id, data: { profile: 'default' } });
      }
      await r.issuePooled(i);
    };
    const slice = async (r: IssuanceRig, into: Slices | null): Promise<void> => {
      const t0 = process.hrtime.bigint();
      const c0 = mainThreadCpuMicros();
      const p0 = process.cpuUsage();
      let n = 0;
      for (const end = Date.now() + sliceMs; Date.now() < end;) {
        const b0 = process.hrtime.bigint();
        await Promise.all(Array.from({ length: IN_FLIGHT }, () => one(r, next++)));
        into?.batches.push(Number(process.hrtime.bigint() - b0) / 1e6);
        n += IN_FLIGHT;
      }
      into?.rate.push(n / (Number(process.hrtime.bigint() - t0) / 1e9));
      into?.cpu.push((mainThreadCpuMicros() - c0) / n);
      const p = process.cpuUsage(p0);
      into?.processCpu.push((p.user + p.system) / n);
    };
    const signRate = (): number => {
      const t0 = process.hrtime.bigint();
      let n = 0;
      for (const end = Date.now() + sliceMs / 3; Date.now() < end; n += 50) for (let k = 0; k < 50; k++) crypto.sign('sha256', tbs, { key, dsaEncoding: 'der' });
      return n / (Number(process.hrtime.bigint() - t0) / 1e9);
    };
    await slice(a, null); // warm-up, both
    await slice(b, null);
    const m = { a: { rate: [], cpu: [], processCpu: [], batches: [] } as Slices, b: { rate: [], cpu: [], processCpu: [], batches: [] } as Slices, sign: [] as number[] };
    for (let i = 0; i < rounds; i++) {
      const before = signRate();
      const order: [IssuanceRig, Slices][] = [
        [a, m.a],
        [b, m.b],
      ];
      if (i % 2) order.reverse();
      for (const [r, into] of order) await slice(r, into);
      m.sign.push((before + signRate()) / 2);
      process.stdout.write(
        `${JSON.stringify({ round: i, a: Math.round(m.a.rate[i]), b: Math.round(m.b.rate[i]), sign: Math.round(m.sign[i]), socketCpuA: Math.round(m.a.cpu[i]), socketCpuB: Math.round(m.b.cpu[i]) })}\n`,
      );
    }
    // both sides' rows really are in the store and verify under the issuing key; both chains hold
    for (const r of [a, b]) {
      const last = (await r.store.listCertificates({ deviceId: r.deviceIds[1], limit: 1 })).items;
      const issuer = crypto.createPublicKey(crypto.createPrivateKey(fs.readFileSync(r.h.issuing.key.ref, 'utf8')));
      if (!last.length || !new crypto.X509Certificate(last[0].der).verify(issuer)) throw new Error('issued certificate not recorded');
      const chain = await verifyAuditChain(r.store);
      if (!chain.ok) throw new Error(`audit chain broken: ${JSON.stringify(chain.firstBad)}`);
    }
    const ratio = (s: Slices): number => median(s.rate.map((v, i) => v / m.sign[i]));
    const batches = (s: Slices): Record<string, number> => ({ p50: percentile(s.batches, 0.5), p99: percentile(s.batches, 0.99), max: percentile(s.batches, 1) });
    process.stdout.write(
      `${JSON.stringify({
        flow: withIntent ? 'intent + issuance' : 'issuance',
        a: specA,
        b: specB,
        certsPerSecond: { a: median(m.a.rate), b: median(m.b.rate), sign: median(m.sign) },
        ratioToSign: { a: ratio(m.a), b: ratio(m.b) },
        pairedAOverB: median(m.a.rate.map((v, i) => v / m.b.rate[i])),
        socketThreadMicrosPerCert: { a: median(m.a.cpu), b: median(m.b.cpu) },
        processMicrosPerCert: { a: median(m.a.processCpu), b: median(m.b.processCpu) },
        batchMs: { a: batches(m.a), b: batches(m.b) },
      })}\n`,
    );
  } finally {
    await a.close();
    await b.close();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error)?.stack ?? String(e)}\n`);
  process.exitCode = 1;
});
