import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { certificateParts } from '../src/ca/certificate-parts';
import { parseCsr } from '../src/ra/csr';
import { MAX_BATCH } from '../src/ra/csr-verify-pool';
import { mainThreadCpuMicros } from './bench-table';
import { IssuanceRig, makeIssuanceRig } from './issuance';

/**
 * writer-pair compares `issuance.core.parallel` (32 in flight, CSR checks on the verify threads) with the
 * issuance records written by the store's writer thread (store.writerThread, store/sqlite/issuance-writer.ts)
 * and by the socket thread's own group commit. Both stores are open in one process and short slices of each
 * alternate (the order flips every round), each round between raw signatures with the issuing key: on a
 * shared machine two runs minutes apart differ by more than the two designs do. Per round and then as
 * medians: rates, ratios to the signature, the paired writer/inline ratio, the socket thread's CPU per
 * certificate, the batch latencies. `intent` also records the audit intent before each issuance, as the RA
 * does (2 writes per certificate); csrBatch sets the writer side's requests per message to a CSR verify thread
 * (the inline side keeps the default, MAX_BATCH). Not part of `npm run bench`:
 *   npx tsc -p tsconfig.bench.json && node dist-bench/bench/writer-pair.js [rounds=16] [sliceMs=2000] [core|intent] [csrBatch=4]
 */

const IN_FLIGHT = 32;

const median = (a: number[]): number => [...a].sort((x, y) => x - y)[a.length >> 1];
const percentile = (a: number[], p: number): number => [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(a.length * p))];

/** Slices: what one design's slices measured, one entry per round (batches: every batch's milliseconds). */
interface Slices {
  rate: number[];
  cpu: number[];
  /** process CPU (every thread: socket, CSR verify, writer, checkpoint) per certificate */
  processCpu: number[];
  batches: number[];
}

async function main(): Promise<void> {
  const rounds = Number(process.argv[2] ?? 16);
  const sliceMs = Number(process.argv[3] ?? 2000);
  const withIntent = process.argv[4] === 'intent';
  const csrBatch = Number(process.argv[5] ?? MAX_BATCH);
  const writer = await makeIssuanceRig({ writerThread: true, csrBatch });
  const inline = await makeIssuanceRig({ writerThread: false });
  try {
    const key = crypto.createPrivateKey(fs.readFileSync(writer.h.issuing.key.ref, 'utf8'));
    const tbs = certificateParts((await writer.ca.issue(writer.leafRequest(parseCsr(writer.pool[0])))).der).tbs;
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
      for (const end = Date.now() + sliceMs; Date.now() < end; ) {
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
    await slice(writer, null); // warm-up, both
    await slice(inline, null);
    const m = { writer: { rate: [], cpu: [], processCpu: [], batches: [] } as Slices, inline: { rate: [], cpu: [], processCpu: [], batches: [] } as Slices, sign: [] as number[] };
    for (let i = 0; i < rounds; i++) {
      const before = signRate();
      const order: [IssuanceRig, Slices][] = [
        [writer, m.writer],
        [inline, m.inline],
      ];
      if (i % 2) order.reverse();
      for (const [r, into] of order) await slice(r, into);
      m.sign.push((before + signRate()) / 2);
      process.stdout.write(
        `${JSON.stringify({ round: i, writer: Math.round(m.writer.rate[i]), inline: Math.round(m.inline.rate[i]), sign: Math.round(m.sign[i]), socketCpuWriter: Math.round(m.writer.cpu[i]), socketCpuInline: Math.round(m.inline.cpu[i]) })}\n`,
      );
    }
    // the writer's rows really are in the store, chained, and verify under the issuing key
    const last = (await writer.store.listCertificates({ deviceId: writer.deviceIds[1], limit: 1 })).items;
    if (!last.length || !new crypto.X509Certificate(last[0].der).verify(crypto.createPublicKey(key))) throw new Error('writer thread: issued certificate not recorded');
    const ratio = (s: Slices): number => median(s.rate.map((v, i) => v / m.sign[i]));
    const batches = (s: Slices): Record<string, number> => ({ p50: percentile(s.batches, 0.5), p99: percentile(s.batches, 0.99), max: percentile(s.batches, 1) });
    process.stdout.write(
      `${JSON.stringify({
        flow: withIntent ? 'intent + issuance' : 'issuance',
        writerCsrBatch: csrBatch,
        certsPerSecond: { writer: median(m.writer.rate), inline: median(m.inline.rate), sign: median(m.sign) },
        ratioToSign: { writer: ratio(m.writer), inline: ratio(m.inline) },
        pairedWriterOverInline: median(m.writer.rate.map((v, i) => v / m.inline.rate[i])),
        socketThreadMicrosPerCert: { writer: median(m.writer.cpu), inline: median(m.inline.cpu) },
        processMicrosPerCert: { writer: median(m.writer.processCpu), inline: median(m.inline.processCpu) },
        batchMs: { writer: batches(m.writer), inline: batches(m.inline) },
      })}\n`,
    );
  } finally {
    await writer.close();
    await inline.close();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error)?.stack ?? String(e)}\n`);
  process.exitCode = 1;
});
