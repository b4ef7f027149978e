import * as fs from 'node:fs';
import * as path from 'node:path';
import { oid, seq } from '../../../src/der/der-writer';
import { OID } from '../../../src/der/oids';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { generateKeyPair } from '../../../src/keys/software-key-backend';
import { ParsedCsr, parseCsr, readCsr } from '../../../src/ra/csr';
import { CsrVerifyPool, MAX_BATCH, csrVerifyThreads, packJobs } from '../../../src/ra/csr-verify-pool';
import { buildCsr } from '../../fixtures/build-csr';

/**
 * CsrVerifyPool checks CSR signatures on worker threads; its verdicts must be parseCsr's, byte for byte
 * and error for error, and its queue is bounded.
 */

const fixtureDir = path.join(__dirname, '../../fixtures/csr');
const fixture = (f: string): Buffer => fs.readFileSync(path.join(fixtureDir, f));

type Outcome = { ok: ParsedCsr } | { code: string; message: string };
const inThread = (der: Buffer): Outcome => {
  try {
    return { ok: parseCsr(der) };
  } catch (e) {
    if (!(e instanceof DeviceCaError)) return { code: 'escape', message: (e as Error).message };
    return { code: e.code, message: e.message };
  }
};
const onPool = (pool: CsrVerifyPool, der: Buffer): Promise<Outcome> =>
  pool.parse(der).then(
    (ok) => ({ ok }),
    (e: unknown) => (e instanceof DeviceCaError ? { code: e.code, message: e.message } : { code: 'escape', message: (e as Error).message }),
  );

let pool: CsrVerifyPool;
beforeAll(() => {
  pool = new CsrVerifyPool({ threads: 2 });
});
afterAll(() => pool.close());

describe('CsrVerifyPool', () => {
  it('has one thread per requested core', () => {
    expect(pool.size).toBe(2);
  });

  it.each(['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'rsa-3072'] as const)('a %s request: the same ParsedCsr as parseCsr', async (alg) => {
    const der = buildCsr({ privateKey: generateKeyPair(alg).privateKey, challengePassword: { value: 'pw', type: 'utf8' }, sans: [{ type: 'dns', value: 'a.example' }] });
    const out = await pool.parse(der);
    expect(out.keyAlgorithm).toBe(alg);
    expect(out).toEqual(parseCsr(der));
  });

  it('a tampered signature: bad-csr "CSR signature does not verify", as parseCsr says', async () => {
    const der = Buffer.from(buildCsr({ privateKey: generateKeyPair('ecdsa-p256').privateKey }));
    der[der.length - 1] ^= 0x01;
    expect(await onPool(pool, der)).toEqual({ code: 'bad-csr', message: 'CSR signature does not verify' });
    expect(inThread(der)).toEqual({ code: 'bad-csr', message: 'CSR signature does not verify' });
  });

  it('an RSA key labelled ecdsa-with-SHA256: refused on the pool as parseCsr refuses it', async () => {
    const der = buildCsr({ privateKey: generateKeyPair('rsa-2048').privateKey, signatureAlgorithm: seq(oid(OID.ecdsaWithSHA256)) });
    const expected = { code: 'bad-csr', message: `CSR signature algorithm ${OID.ecdsaWithSHA256} is not for its rsa key` };
    expect(await onPool(pool, der)).toEqual(expected);
    expect(inThread(der)).toEqual(expected);
  });

  it('malformed DER is refused before any thread is asked: bad-request', async () => {
    expect(await onPool(pool, Buffer.from('30800000', 'hex'))).toMatchObject({ code: 'bad-request' });
  });

  it('fuzz: on 1 500 mutated requests the pool and parseCsr agree on every verdict', async () => {
    const seeds = fs
      .readdirSync(fixtureDir)
      .filter((f) => f.endsWith('.der'))
      .map(fixture);
    expect(seeds.length).toBeGreaterThan(2);
    let state = 0x5eed;
    const rnd = (n: number): number => {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      return state % n;
    };
    const inputs: Buffer[] = [];
    for (let i = 0; i < 1500; i++) {
      const input = Buffer.from(seeds[i % seeds.length]);
      // every fifth stays intact, so successes are compared too
      if (i % 5) for (let j = 0, n = 1 + rnd(3); j < n; j++) input[rnd(input.length)] = rnd(256);
      inputs.push(input);
    }
    const got = await Promise.all(inputs.map((d) => onPool(pool, d)));
    const want = inputs.map(inThread);
    const differ = got.map((g, i) => ({ i, g, w: want[i] })).filter((x) => JSON.stringify(x.g) !== JSON.stringify(x.w));
    expect(differ).toEqual([]);
    expect(got.filter((g) => 'ok' in g).length).toBeGreaterThanOrEqual(300);
  });

  it('beyond maxQueued waiting requests: rate-limited with Retry-After, and the queued ones still complete', async () => {
    const small = new CsrVerifyPool({ threads: 1, maxQueued: 2 });
    try {
      const der = buildCsr({ privateKey: generateKeyPair('rsa-2048').privateKey });
      const settled = await Promise.allSettled(Array.from({ length: 6 }, () => small.parse(der)));
      // one on the thread, two waiting; the other three refused at once
      expect(settled.filter((r) => r.status === 'fulfilled')).toHaveLength(3);
      const refused = settled.flatMap((r) => (r.status === 'rejected' ? [r.reason as DeviceCaError] : []));
      expect(refused.map((e) => [e.code, e.message, e.retryAfterSeconds])).toEqual(Array.from({ length: 3 }, () => ['rate-limited', 'server busy; try later', 1]));
    } finally {
      await small.close();
    }
  });

  it('a request carved from a large buffer: the thread gets only its signed data, signature and key, in one transferred buffer', async () => {
    for (const alg of ['ecdsa-p256', 'rsa-2048'] as const) {
      const csr = buildCsr({ privateKey: generateKeyPair(alg).privateKey });
      const big = Buffer.alloc(1 << 20);
      csr.copy(big, 4096);
      const der = big.subarray(4096, 4096 + csr.length);
      const v = readCsr(der).verify;
      const msg = packJobs([{ id: 7, csr: readCsr(der) }]);
      // the SPKI travels as bytes only when it is not a JWK (RSA); never the 1 MiB around the request
      const keyBytes = alg === 'rsa-2048' ? parseCsr(csr).spki.length : 0;
      expect(msg.buf.byteLength).toBe(v.data.length + v.sig.length + keyBytes);
      const j = msg.jobs[0];
      expect(Buffer.from(msg.buf, j.data[0], j.data[1] - j.data[0]).equals(v.data)).toBe(true);
      expect(Buffer.from(msg.buf, j.sig[0], j.sig[1] - j.sig[0]).equals(v.sig)).toBe(true);
      expect(await pool.parse(der)).toEqual(parseCsr(csr));
    }
  });

  it('many requests at once go in batches; each keeps its own verdict', async () => {
    const good = Array.from({ length: 3 * MAX_BATCH }, () => buildCsr({ privateKey: generateKeyPair('ecdsa-p256').privateKey }));
    const bad = good.map((d, i) => {
      const t = Buffer.from(d);
      if (i % 3 === 0) t[t.length - 1] ^= 0x01;
      return t;
    });
    const got = await Promise.all(bad.map((d) => onPool(pool, d)));
    expect(got).toEqual(bad.map(inThread));
    expect(got.filter((g) => 'code' in g)).toHaveLength(MAX_BATCH);
  });

  it('a smaller maxBatch (bench/csr-batch-pair.ts) hands the same requests over in more messages, verdicts unchanged', async () => {
    const p = new CsrVerifyPool({ threads: 1, maxBatch: 1 });
    try {
      const ders = Array.from({ length: 3 }, () => buildCsr({ privateKey: generateKeyPair('ecdsa-p256').privateKey }));
      ders[1] = Buffer.from(ders[1]);
      ders[1][ders[1].length - 1] ^= 0x01;
      expect(await Promise.all(ders.map((d) => onPool(p, d)))).toEqual(ders.map(inThread));
    } finally {
      await p.close();
    }
  });

  it('after close: refused, not hung', async () => {
    const p = new CsrVerifyPool({ threads: 1 });
    await p.close();
    await expect(p.parse(buildCsr({ privateKey: generateKeyPair('ecdsa-p256').privateKey }))).rejects.toMatchObject({ code: 'internal' });
  });
});

describe('csrVerifyThreads: the cores shared among the worker processes', () => {
  test.each([
    // [workers setting, cores, threads per process]
    [0, 2, 1], // one worker per core: one verify thread each, not two
    [0, 8, 1],
    [2, 2, 1],
    [2, 8, 4],
    [1, 4, 4], // a single process keeps every core
    [3, 8, 2],
    [16, 4, 1], // more processes than cores: still one thread each
    [0, 1, 1],
  ])('workers %i on %i cores: %i thread(s) per process', (workers, cores, threads) => {
    expect(csrVerifyThreads(workers, cores)).toBe(threads);
  });
});
