import * as crypto from 'node:crypto';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { SigningKey } from '../src/keys/key-backend';
import * as pkcs11js from 'pkcs11js';
import { parsePkcs11Uri } from '../src/keys/pkcs11/pkcs11-uri';
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

/**
 * rawCSignCeiling is the token's own rate: C_SignInit + C_Sign (CKM_ECDSA on a SHA-256 digest) in a
 * tight loop on this thread, through pkcs11js with nothing of device-ca around it (no hash, no thread
 * hop, no DER). It bounds what any PKCS#11 signing path can reach with one token thread, so the rows
 * above read against it say how much of the remaining gap to software is the token's. It opens its own
 * session on the token the backend logged in to (the login belongs to the application, PKCS#11 §5.6).
 */
function rawCSignCeiling(module: string, ref: string, seconds: number): { perSecond: number; cpuMicros: number } {
  const uri = parsePkcs11Uri(ref);
  const lib = new pkcs11js.PKCS11();
  lib.load(module);
  try {
    lib.C_Initialize({ flags: 2 });
  } catch (e) {
    if (!/CKR_CRYPTOKI_ALREADY_INITIALIZED/.test(String((e as Error).message))) throw e;
  }
  const slot = lib.C_GetSlotList(true).find((s) => lib.C_GetTokenInfo(s).label.trim() === uri.token);
  if (!slot) throw new Error(`token ${uri.token} not found`);
  const session = lib.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
  try {
    lib.C_FindObjectsInit(session, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
      { type: pkcs11js.CKA_ID, value: uri.id },
    ]);
    const [key] = lib.C_FindObjects(session, 1);
    lib.C_FindObjectsFinal(session);
    if (!key) throw new Error(`key ${ref} not found`);
    const digest = crypto.createHash('sha256').update('bench').digest();
    const out = Buffer.alloc(128);
    const deadline = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
    const start = process.hrtime.bigint();
    const cpu0 = process.cpuUsage();
    let n = 0;
    while (process.hrtime.bigint() < deadline) {
      for (let i = 0; i < 20; i++, n++) {
        lib.C_SignInit(session, { mechanism: pkcs11js.CKM_ECDSA }, key);
        lib.C_Sign(session, digest, out);
      }
    }
    const cpu = process.cpuUsage(cpu0);
    return { perSecond: n / (Number(process.hrtime.bigint() - start) / 1e9), cpuMicros: (cpu.user + cpu.system) / n };
  } finally {
    lib.C_CloseSession(session);
  }
}

/** softwareCeiling is the software key's bare rate under the same loop: crypto.sign, P-256, SHA-256. */
function softwareCeiling(key: crypto.KeyObject, seconds: number): { perSecond: number; cpuMicros: number } {
  const data = Buffer.from('bench');
  const deadline = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
  const start = process.hrtime.bigint();
  const cpu0 = process.cpuUsage();
  let n = 0;
  while (process.hrtime.bigint() < deadline) {
    for (let i = 0; i < 20; i++, n++) crypto.sign('sha256', data, key);
  }
  const cpu = process.cpuUsage(cpu0);
  return { perSecond: n / (Number(process.hrtime.bigint() - start) / 1e9), cpuMicros: (cpu.user + cpu.system) / n };
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
    const swPrivate = generateKeyPair('ecdsa-p256').privateKey;
    const software = softwareSigningKey(swPrivate, 'ecdsa-p256', 'memory');
    // a benchmark of a broken path is worthless: check the signatures first
    for (const k of [software, ...hsmKeys]) {
      const d = Buffer.from('check');
      if (!verifies(k, d, await k.sign(d))) throw new Error(`signature by ${k.ref} does not verify`);
    }

    const contenders: Record<string, SigningKey> = { software };
    threadCounts.forEach((n, i) => (contenders[`threads${n}`] = hsmKeys[i]));
    const best: Record<string, Run> = {};
    for (const k of Object.keys(contenders)) await throughput(contenders[k], IN_FLIGHT, 0.2); // warm-up
    let rawBest = { perSecond: 0, cpuMicros: 0 };
    let swBare = { perSecond: 0, cpuMicros: 0 };
    for (let r = 0; r < ROUNDS; r++) {
      for (const [name, key] of Object.entries(contenders)) {
        const run = await throughput(key, IN_FLIGHT, SECONDS_PER_ROUND);
        if (!best[name] || run.perSecond > best[name].perSecond) best[name] = run;
      }
      const raw = rawCSignCeiling(target.module, generated.ref, SECONDS_PER_ROUND / 2);
      if (raw.perSecond > rawBest.perSecond) rawBest = raw;
      const bare = softwareCeiling(swPrivate, SECONDS_PER_ROUND / 2);
      if (bare.perSecond > swBare.perSecond) swBare = bare;
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
    rows.push({
      name: `ceiling: C_SignInit + C_Sign (CKM_ECDSA, P-256) in a loop on one thread, pkcs11js alone (${where})`,
      figure: `${fmtRate(rawBest.perSecond, 'sig')} (${rawBest.cpuMicros.toFixed(1)} µs CPU/sig)`,
      baseline: `crypto.sign in the same loop: ${fmtRate(swBare.perSecond, 'sig')} (${swBare.cpuMicros.toFixed(1)} µs)`,
      ratio: rawBest.perSecond / swBare.perSecond,
      note: 'the best ratio one token thread can give any signing row; best of each round',
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
