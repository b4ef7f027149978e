import * as crypto from 'node:crypto';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { SigningKey } from '../src/keys/key-backend';
import { Pkcs11BackendOptions, Pkcs11KeyBackend, defaultSignerThreads } from '../src/keys/pkcs11/pkcs11-key-backend';
import { generateKeyPair, softwareSigningKey } from '../src/keys/software-key-backend';
import { SoftHsm, createSoftHsm } from '../test/helpers/softhsm';
import { BenchRow, fmtRate } from './bench-table';

/**
 * benchPkcs11Sign measures ECDSA P-256 signatures per second through Pkcs11KeyBackend (hash in Node,
 * C_SignInit + CKM_ECDSA C_Sign on a token thread, batched, DER conversion), with 64 signatures in
 * flight, for 1, 2 and 4 token threads (signerThreads). The baseline, measured round-robin in the same
 * run, is the software key (Node crypto, synchronous) under the same load. It also reports the
 * main-thread time per signature and the event loop's p99 delay while signing, which is what the token
 * threads are for.
 *
 * Token: a throw-away SoftHSM2 token (test/helpers/softhsm.ts), or a real one when PKCS11_MODULE,
 * PKCS11_TOKEN and PKCS11_PIN are set.
 */

const IN_FLIGHT = 64;
const ROUNDS = 3;
const SECONDS_PER_ROUND = 1;

interface Run {
  perSecond: number;
  loopP99Ms: number;
  /** mainThreadMicrosPerOp is event-loop active time per signature: what the JavaScript thread pays. */
  mainThreadMicrosPerOp: number;
}

/** throughput keeps `inFlight` sign() calls outstanding for `seconds` and counts completions. */
async function throughput(key: SigningKey, inFlight: number, seconds: number): Promise<Run> {
  const data = Array.from({ length: 256 }, (_, i) => Buffer.from(`bench message ${i}`));
  const h = monitorEventLoopDelay({ resolution: 1 });
  const deadline = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
  let done = 0;
  const start = process.hrtime.bigint();
  const elu0 = performance.eventLoopUtilization();
  h.enable();
  await Promise.all(
    Array.from({ length: inFlight }, async (_, w) => {
      for (let i = w; process.hrtime.bigint() < deadline; i += inFlight) {
        await key.sign(data[i % data.length]);
        done++;
      }
    }),
  );
  h.disable();
  const elu = performance.eventLoopUtilization(elu0);
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  return { perSecond: done / elapsed, loopP99Ms: h.percentile(99) / 1e6, mainThreadMicrosPerOp: (elu.active * 1000) / done };
}

/** idleLoopDelay is the event loop's p99 delay with nothing to do: the floor the delay figure is read against. */
async function idleLoopDelay(seconds: number): Promise<number> {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  h.disable();
  return h.percentile(99) / 1e6;
}

function verifies(key: SigningKey, data: Buffer, sig: Buffer): boolean {
  return crypto.verify('sha256', data, { key: crypto.createPublicKey({ key: key.spki, format: 'der', type: 'spki' }), dsaEncoding: 'der' }, sig);
}

export async function benchPkcs11Sign(): Promise<BenchRow[]> {
  let hsm: SoftHsm | undefined;
  let target: Omit<Pkcs11BackendOptions, 'signerThreads'>;
  if (process.env.PKCS11_MODULE) {
    target = { module: process.env.PKCS11_MODULE, token: process.env.PKCS11_TOKEN, pin: process.env.PKCS11_PIN ?? '' };
  } else {
    hsm = createSoftHsm();
    target = { module: hsm.module, token: 'ca', pin: hsm.pin };
  }
  const threadCounts = [1, 2, 4];
  const backends = await Promise.all(threadCounts.map((n) => new Pkcs11KeyBackend({ ...target, signerThreads: n }).open()));
  try {
    const generated = await backends[0].generate('issuing', 'ecdsa-p256', `bench-${crypto.randomBytes(4).toString('hex')}`);
    const hsmKeys = await Promise.all(backends.map((b) => b.load(generated.ref)));
    const software = softwareSigningKey(generateKeyPair('ecdsa-p256').privateKey, 'ecdsa-p256', 'memory');
    // a benchmark of a broken path is worthless: check the signatures first
    for (const k of [software, ...hsmKeys]) {
      const d = Buffer.from('check');
      if (!verifies(k, d, await k.sign(d))) throw new Error(`signature by ${k.ref} does not verify`);
    }

    const contenders: Record<string, SigningKey> = { software };
    threadCounts.forEach((n, i) => (contenders[`threads${n}`] = hsmKeys[i]));
    const best: Record<string, Run> = {};
    for (const k of Object.keys(contenders)) await throughput(contenders[k], IN_FLIGHT, 0.2); // warm-up
    for (let r = 0; r < ROUNDS; r++) {
      for (const [name, key] of Object.entries(contenders)) {
        const run = await throughput(key, IN_FLIGHT, SECONDS_PER_ROUND);
        if (!best[name] || run.perSecond > best[name].perSecond) best[name] = run;
      }
    }

    const sw = best.software;
    const where = hsm ? 'SoftHSM 2' : `token "${target.token}"`;
    const dflt = defaultSignerThreads();
    const rows: BenchRow[] = threadCounts.map((n) => ({
      name: `ECDSA P-256 sign via pkcs11 (${where}), ${n} token thread${n > 1 ? 's' : ''}, ${IN_FLIGHT} in flight`,
      figure: fmtRate(best[`threads${n}`].perSecond, 'sig'),
      baseline: `software key ${fmtRate(sw.perSecond, 'sig')}`,
      ratio: best[`threads${n}`].perSecond / sw.perSecond,
      note: n === dflt ? 'default on this machine (cores - 1, 1 to 4)' : undefined,
    }));
    rows.push({
      name: `main-thread time per pkcs11 signature, 1 token thread (hash, message, DER; C_SignInit + C_Sign on the token thread)`,
      figure: `${best.threads1.mainThreadMicrosPerOp.toFixed(1)} µs`,
      baseline: `software signature ${sw.mainThreadMicrosPerOp.toFixed(1)} µs`,
      ratio: best.threads1.mainThreadMicrosPerOp / sw.mainThreadMicrosPerOp,
      note: 'event-loop active time / signatures',
    });
    const idle = await idleLoopDelay(SECONDS_PER_ROUND);
    rows.push({
      name: `event-loop delay p99 while signing via pkcs11, 1 token thread, ${IN_FLIGHT} in flight`,
      figure: `${best.threads1.loopP99Ms.toFixed(2)} ms`,
      baseline: `idle loop ${idle.toFixed(2)} ms`,
      ratio: best.threads1.loopP99Ms / idle,
      note: `software signing under the same load holds the loop for the whole ${SECONDS_PER_ROUND} s round`,
    });
    return rows;
  } finally {
    for (const b of backends) await b.close();
    hsm?.cleanup();
  }
}

if (require.main === module) {
  benchPkcs11Sign().then(
    (rows) => console.table(rows),
    (e: unknown) => {
      console.error(e);
      process.exitCode = 1;
    },
  );
}
