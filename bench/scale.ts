import { spawnSync, fork, ChildProcess } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CertificateAuthority } from '../src/ca/certificate-authority';
import { certificateParts } from '../src/ca/certificate-parts';
import { CrlPublisher } from '../src/ca/crl-publisher';
import { loadCa } from '../src/ca/ca-hierarchy';
import { certIdHashes, encodeCertId } from '../src/ca/ocsp-codec';
import { loadConfig, publicBaseUrl } from '../src/config/load-config';
import { Config } from '../src/config/schema';
import { KeyBackend } from '../src/keys/key-backend';
import { buildCertificateAuthority, ensureCa, ensureOcspResponder, openKeyBackend, openRegistrationAuthority } from '../src/main';
import { parseCsr } from '../src/ra/csr';
import { SqliteStore } from '../src/store/sqlite/sqlite-store';
import { BenchId, BenchRow, bestOfRounds, fmtMicros, fmtRate } from './bench-table';
import type { ClientJob as EstJob, ClientResult as EstResult } from './est-client';
import { csrFor, repoRoot, serviceDir } from './est-fixtures';
import { ServerHandle, freePort, startServer } from './est-server';
import type { ClientJob as OcspJob, ClientMessage as OcspMessage, ClientResult as OcspResult, ClientRequestSpec } from './ocsp-http-client';
import { ocspRequest } from './ocsp-http-fixtures';
import { PopulateResult, populateStore, storeBytes } from './scale-populate';

/**
 * bench/scale: is the cost of each hot path flat as the fleet grows? Two stores in one run:
 *   - full: BENCH_SCALE_N devices (default 1 000 000), each with one certificate, one in ten revoked, spread
 *     over the CRL shards as issuance spreads them (bench/scale-populate: prepared statements, large
 *     transactions, the rows the real code writes; one DER re-used for every populated row);
 *   - baseline ("empty"): the same CA setup with nothing but the revoked certificates one CRL shard holds in
 *     the full store (so the CRL row compares the same CRL, and every other row an empty store).
 * On each, the same measurements, round-robin where they run in process:
 *   scale.issuance  the issuance core in process, 32 in flight (parseCsr -> CA.issue -> recordIssuance), as bench/issuance
 *   scale.reenroll  EST simplereenroll over mTLS, new TLS connection each, `device-ca serve`, as bench/est
 *   scale.ocsp      OCSP cached (no nonce), keep-alive c=32, `device-ca serve`, as bench/ocsp-http; the requests
 *                   name certificates spread over the whole store (good and revoked)
 *   scale.crl       re-issue of one CRL shard (read its revoked rows, sign, save, audit), CrlPublisher.publish
 * Ratio = full / baseline (target >= 0.8). Also reported: the populate rate, the store size on disk, and
 * `device-ca devices import` (the real CLI, default settings) on BENCH_SCALE_IMPORT_N devices (20 000).
 *
 * Run: npx tsc -p tsconfig.bench.json && node dist-bench/bench/run.js scale (or node dist-bench/bench/scale.js).
 * Knobs: BENCH_SCALE_N (1 000 000; 100 000 while developing on a shared machine), BENCH_SCALE_IMPORT_N (20 000),
 * BENCH_SCALE_SECONDS (4, per server measurement), BENCH_SCALE_ROUNDS (2, server rounds), BENCH_SCALE_KEEP=1.
 */

const TARGET = 0.8;
const IN_FLIGHT = 32;
const ISSUANCE_POOL = 200;
const REENROLL_POOL = 64;
const SHARD = 0;

function envNumber(name: string, dflt: number): number {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v > 0 ? Math.round(v) : dflt;
}

const log = (l: string): void => void process.stderr.write(`bench/scale: ${l}\n`);

interface Side {
  name: 'baseline' | 'full';
  dataDir: string;
  cfg: Config;
  issuer: string;
  issuingDer: Buffer;
  responderSpkiPem: string;
  /** reenroll: enrolled devices (certificate, key, renewal CSR) */
  pool: { certPem: string; keyPem: string; csr: Buffer; serial: string }[];
  /** ocsp: certificates to ask about, with the status the answer must give */
  ocsp: { serial: string; status: 'good' | 'revoked' }[];
  populated?: PopulateResult;
  bytes: number;
}

/** prepare: a data directory with the CA, the OCSP responder and an enrolled device pool (through the RA). */
async function prepare(name: Side['name'], root: string): Promise<Side> {
  const dataDir = path.join(root, name);
  const cfg = loadConfig({ env: { DEVICE_CA_DATA: dataDir } });
  const keys: KeyBackend = openKeyBackend(cfg);
  const store = new SqliteStore(cfg.store.path);
  let issuer: string;
  let issuingDer: Buffer;
  let responderSpkiPem: string;
  try {
    const { ca } = await ensureCa(cfg, keys, store);
    const r = await ensureOcspResponder(cfg, keys, buildCertificateAuthority(cfg, ca), store);
    issuer = ca.issuing.name;
    issuingDer = ca.issuing.der;
    responderSpkiPem = new crypto.X509Certificate(r.cert).publicKey.export({ type: 'spki', format: 'pem' }) as string;
  } finally {
    await store.close();
    await keys.close();
  }
  const h = await openRegistrationAuthority(cfg);
  const pool: Side['pool'] = [];
  try {
    for (let i = 0; i < REENROLL_POOL; i++) {
      const id = `scale-pool-${String(i).padStart(3, '0')}`;
      const key = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
      const csr = csrFor(key, id, 'bench-owner');
      const { secret } = await h.ra.registerDevice({ id, owner: 'bench-owner', actor: 'bench' });
      const out = await h.ra.enroll({ profile: 'default', operation: 'enroll', csr, proofs: { secret: { deviceId: id, secret } } });
      if (out.status !== 'issued' || !out.certificate) throw new Error(`bench/scale: enrollment of ${id} did not issue (${out.status})`);
      pool.push({
        certPem: new crypto.X509Certificate(out.certificate).toString(),
        keyPem: key.export({ type: 'pkcs8', format: 'pem' }) as string,
        csr,
        serial: certificateParts(out.certificate).serial,
      });
    }
  } finally {
    await h.close();
  }
  return { name, dataDir, cfg, issuer, issuingDer, responderSpkiPem, pool, ocsp: pool.map((p) => ({ serial: p.serial, status: 'good' })), bytes: 0 };
}

// ------------------------------------------------------------------ in process: issuance and CRL

interface InProcess {
  store: SqliteStore;
  keys: KeyBackend;
  ca: CertificateAuthority;
  crl: CrlPublisher;
  issueOne(i: number): Promise<void>;
  close(): Promise<void>;
}

/** inProcess: the issuance core and the CRL publisher on a side's store, with ISSUANCE_POOL registered devices. */
async function inProcess(s: Side): Promise<InProcess> {
  const keys = openKeyBackend(s.cfg);
  const store = new SqliteStore(s.cfg.store.path);
  const h = await loadCa(s.cfg, keys, store);
  const ca = buildCertificateAuthority(s.cfg, h);
  const crl = new CrlPublisher(h.issuing, store, s.cfg.crl, publicBaseUrl(s.cfg));
  const ids = Array.from({ length: ISSUANCE_POOL }, (_, i) => `scale-iss-${String(i).padStart(4, '0')}`);
  await store.createDevices(
    ids.map((id) => ({
      device: { id, owner: 'bench', label: null, state: 'registered' as const },
      secret: { hash: 'scrypt$12$8$1$x$y', expiresAt: new Date(Date.now() + 86_400_000) },
      audit: { type: 'device.create', actor: 'bench', subject: id, data: {} },
    })),
    { skipExisting: false },
  );
  const key = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const csrs = ids.map((id) => csrFor(key, id, 'bench'));
  return {
    store,
    keys,
    ca,
    crl,
    async issueOne(i) {
      const csr = parseCsr(csrs[i % ISSUANCE_POOL]);
      const cn = csr.subject.find((a) => a.type === 'CN')!.value;
      if (csr.keyType !== 'ec') throw new Error('pool request is not EC');
      const c = await ca.issue({ profile: 'default', subject: [{ type: 'CN', value: cn }], spki: csr.spki, keyType: 'ec', sans: csr.sans });
      await store.recordIssuance({
        cert: {
          serial: c.serial,
          deviceId: cn,
          issuer: c.issuer,
          subject: `CN=${cn}`,
          profile: 'default',
          notBefore: c.notBefore,
          notAfter: c.notAfter,
          shard: c.shard,
          spkiSha256: crypto.createHash('sha256').update(csr.spki).digest('hex'),
          der: c.der,
        },
        audit: { type: 'certificate.issued', actor: `device:${cn}`, subject: c.serial, data: { deviceId: cn, profile: 'default', serial: c.serial, shard: c.shard, issuer: c.issuer } },
      });
    },
    async close() {
      await store.close();
      await keys.close();
    },
  };
}

// ------------------------------------------------------------------ servers: re-enrollment and OCSP

/** clientRun forks a load generator (est-client or ocsp-http-client) and returns its one result. */
function clientRun<R>(
  file: string,
  message: object,
  onMessage: (m: { type: string; result?: R; message?: string }) => R | Error | undefined,
  timeoutMs: number,
  opts: { waitReady: boolean },
): Promise<R> {
  const child: ChildProcess = fork(path.join(__dirname, file), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  if (!opts.waitReady) child.send(message);
  return new Promise<R>((resolve, reject) => {
    const timer = setTimeout(() => (child.kill('SIGKILL'), reject(new Error(`bench/scale: ${file} timed out`))), timeoutMs);
    const done = (f: () => void) => (clearTimeout(timer), f(), child.connected && child.disconnect());
    child.on('message', (m: { type: string; result?: R; message?: string }) => {
      const r = onMessage(m);
      if (r instanceof Error) done(() => reject(r));
      else if (r !== undefined) done(() => resolve(r));
      else if (m.type === 'ready') child.send(message);
    });
    child.on('exit', (code) => (clearTimeout(timer), reject(new Error(`bench/scale: ${file} exited (${code}) without a result`))));
  });
}

function postCsr(port: number, csr: Buffer): string {
  const body = csr.toString('base64').replace(/(.{64})/g, '$1\r\n') + '\r\n';
  return `POST /.well-known/est/simplereenroll HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/pkcs10\r\nContent-Transfer-Encoding: base64\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

/** Rate: requests per second, and the server's CPU per request (its whole process tree, from /proc), µs */
interface Rate {
  rate: number;
  cpuUs: number;
}

async function measureReenroll(s: Side, server: ServerHandle, seconds: number): Promise<Rate> {
  const job = (durationMs: number): EstJob => ({
    port: server.httpsPort,
    concurrency: 16,
    durationMs,
    cycle: true,
    identities: s.pool.map((p) => ({ certPem: p.certPem, keyPem: p.keyPem })),
    requests: s.pool.map((p, i) => ({ http: postCsr(server.httpsPort, p.csr), identity: i })),
  });
  const run = (j: EstJob) =>
    clientRun<EstResult>('est-client.js', { type: 'run', job: j }, (m) => (m.type === 'result' ? m.result : undefined), j.durationMs + 60_000, { waitReady: true }).then((r) => {
      if (r.ok === 0 || r.failed > r.ok / 100) throw new Error(`bench/scale: ${s.name} simplereenroll: ${r.ok} ok, ${r.failed} failed (${r.firstError})`);
      return r;
    });
  await run(job(1000)); // warm-up
  const c0 = server.cpuMs();
  const r = await run(job(seconds * 1000));
  return { rate: (r.ok * 1000) / r.elapsedMs, cpuUs: ((server.cpuMs() - c0) * 1000) / r.ok };
}

async function measureOcsp(s: Side, server: ServerHandle, seconds: number): Promise<Rate> {
  const issuer = certificateParts(s.issuingDer);
  const { issuerNameHash, issuerKeyHash } = certIdHashes(issuer.subject, issuer.spki, 'sha1');
  const requests = s.ocsp.map((c): ClientRequestSpec => {
    const certId = encodeCertId({ hash: 'sha1', issuerNameHash, issuerKeyHash, serialNumber: c.serial });
    return { method: 'POST', path: '/ocsp', body: ocspRequest(certId, null).toString('base64'), certId: certId.toString('base64'), expect: c.status };
  });
  const job: OcspJob = {
    host: '127.0.0.1',
    port: server.httpPort,
    concurrency: 32,
    connection: 'keep-alive',
    warmupMs: 1000,
    durationMs: seconds * 1000,
    requests,
    checkEvery: 61,
    verifyEvery: 1021,
    responderKey: s.responderSpkiPem,
  };
  let c0 = 0;
  let cpuMs = 0;
  const r = await clientRun<OcspResult>(
    'ocsp-http-client.js',
    job,
    (m) => {
      if (m.type === 'window-start') c0 = server.cpuMs();
      if (m.type === 'window-end') cpuMs = server.cpuMs() - c0;
      return m.type === 'result' ? (m as Extract<OcspMessage, { type: 'result' }>).result : m.type === 'failed' ? new Error(`bench/scale: ${s.name} OCSP: ${m.message}`) : undefined;
    },
    seconds * 1000 + 60_000,
    { waitReady: false },
  );
  if (r.errors > 0 || r.responses === 0) throw new Error(`bench/scale: ${s.name} OCSP: ${r.errors} bad of ${r.responses} (${r.firstError})`);
  return { rate: r.rate, cpuUs: (cpuMs * 1000) / (r.rate * r.seconds) };
}

// ------------------------------------------------------------------ devices import (the real CLI)

function timeImport(root: string, service: string, n: number): { perSecond: number; seconds: number } {
  const dataDir = path.join(root, 'import');
  const file = path.join(root, 'import.jsonl');
  fs.writeFileSync(file, Array.from({ length: n }, (_, i) => JSON.stringify({ id: `imp-${String(i).padStart(6, '0')}`, owner: `owner-${i % 100}` })).join('\n') + '\n');
  const env: NodeJS.ProcessEnv = { ...process.env, DEVICE_CA_DATA: dataDir };
  for (const k of Object.keys(env)) if (k.startsWith('DEVICE_CA_') && k !== 'DEVICE_CA_DATA') delete env[k];
  const cli = path.join(service, 'cli', 'main.js');
  const init = spawnSync(process.execPath, [cli, 'init'], { env, encoding: 'utf8' });
  if (init.status !== 0) throw new Error(`bench/scale: device-ca init failed: ${init.stderr}`);
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, [cli, 'devices', 'import', file, '--secrets-out', path.join(root, 'import-secrets.jsonl')], { env, encoding: 'utf8', maxBuffer: 1 << 26 });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`bench/scale: devices import failed (${r.status}): ${r.stderr}`);
  const lines = fs.readFileSync(path.join(root, 'import-secrets.jsonl'), 'utf8').trim().split('\n').length;
  if (lines !== n) throw new Error(`bench/scale: devices import wrote ${lines} secrets for ${n} devices`);
  return { perSecond: n / seconds, seconds };
}

// ------------------------------------------------------------------ the benchmark

const mb = (b: number): string => `${(b / 1e6).toFixed(0)} MB`;
/** cpuNote: CPU per operation on both stores; steadier than rates when other processes share the cores */
const cpuNote = (what: string, fullUs: number, baseUs: number): string => `${what} CPU per op ${fmtMicros(fullUs)} vs ${fmtMicros(baseUs)} empty (ratio ${(baseUs / fullUs).toFixed(2)})`;

const row = (id: BenchId, name: string, full: number, base: number, unit: string, note: string): BenchRow & { id: BenchId } => ({
  id,
  name,
  figure: unit === 's' ? fmtMicros(full * 1e6) : fmtRate(full, unit),
  baseline: `empty store: ${unit === 's' ? fmtMicros(base * 1e6) : fmtRate(base, unit)}`,
  // for times, fewer is better: the ratio is always "speed on the full store / speed on the empty one"
  ratio: unit === 's' ? base / full : full / base,
  note: `${(unit === 's' ? base / full : full / base) >= TARGET ? 'meets' : 'MISSES'} target >= ${TARGET}; ${note}`,
});

/** benchScale: see the file comment. */
export async function benchScale(): Promise<BenchRow[]> {
  const n = envNumber('BENCH_SCALE_N', 1_000_000);
  const importN = envNumber('BENCH_SCALE_IMPORT_N', 20_000);
  const seconds = envNumber('BENCH_SCALE_SECONDS', 4);
  const rounds = envNumber('BENCH_SCALE_ROUNDS', 2);
  const service = serviceDir(repoRoot());
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-bench-scale-'));
  let ok = false;
  try {
    log(`N = ${n} devices and certificates; data in ${root}`);
    const base = await prepare('baseline', root);
    const full = await prepare('full', root);
    const sampleDer = Buffer.from(new crypto.X509Certificate(full.pool[0].certPem).raw);

    // ---- populate: the full store, then the baseline's one shard with the same number of revoked entries
    full.populated = populateStore({
      file: full.cfg.store.path,
      issuer: full.issuer,
      shards: full.cfg.crl.shards,
      devices: n,
      revokedEvery: 10,
      der: sampleDer,
      idPrefix: 'fleet',
      progress: (d) => d % 200_000 === 0 && log(`  populated ${d}`),
    });
    const pf = full.populated;
    log(`populated ${n} devices, ${pf.revoked} revoked, in ${pf.seconds.toFixed(1)} s`);
    const shardRevoked = pf.revokedPerShard[SHARD];
    base.populated = populateStore({
      file: base.cfg.store.path,
      issuer: base.issuer,
      shards: base.cfg.crl.shards,
      devices: shardRevoked,
      revokedEvery: 1,
      onlyShard: SHARD,
      der: Buffer.from(new crypto.X509Certificate(base.pool[0].certPem).raw),
      idPrefix: 'shard',
    });
    // OCSP asks about certificates spread over each store: the pool plus the sample (good and revoked)
    full.ocsp = [...full.ocsp, ...pf.sample];
    base.ocsp = [...base.ocsp, ...base.populated.sample.slice(0, pf.sample.length)];
    full.bytes = storeBytes(full.cfg.store.path);
    base.bytes = storeBytes(base.cfg.store.path);
    log(`store on disk: full ${mb(full.bytes)}, baseline ${mb(base.bytes)}`);

    // ---- in process: issuance core and CRL shard re-issue, round-robin, best round each
    const ipBase = await inProcess(base);
    const ipFull = await inProcess(full);
    const crlEntries = [0, 0];
    const inProc = { issueBase: 0, issueFull: 0, crlBaseUs: 0, crlFullUs: 0, issueCpu: [0, 0], crlCpu: [0, 0] };
    try {
      // the CRL first: measured after the issuance rounds, its commits would pay the WAL checkpoint of the
      // pages those issuances dirtied (more of them in the large store), a cost that belongs to issuance
      const c = await bestOfRounds(
        {
          crlBase: { op: () => ipBase.crl.publish(SHARD).then((r) => (crlEntries[0] = r.entries)), minSeconds: seconds / 4, minIterations: 5, warmup: 2 },
          crlFull: { op: () => ipFull.crl.publish(SHARD).then((r) => (crlEntries[1] = r.entries)), minSeconds: seconds / 4, minIterations: 5, warmup: 2 },
        },
        3,
      );
      const m = await bestOfRounds(
        {
          issueBase: { op: (i: number) => Promise.all(Array.from({ length: IN_FLIGHT }, (_, k) => ipBase.issueOne(i * IN_FLIGHT + k))), minSeconds: seconds / 2, minIterations: 20, warmup: 10 },
          issueFull: { op: (i: number) => Promise.all(Array.from({ length: IN_FLIGHT }, (_, k) => ipFull.issueOne(i * IN_FLIGHT + k))), minSeconds: seconds / 2, minIterations: 20, warmup: 10 },
        },
        3,
      );
      if (crlEntries[0] !== shardRevoked || crlEntries[1] !== shardRevoked) throw new Error(`bench/scale: shard ${SHARD} CRLs hold ${crlEntries.join('/')} entries, expected ${shardRevoked}`);
      Object.assign(inProc, { issueBase: m.issueBase.perSecond * IN_FLIGHT, issueFull: m.issueFull.perSecond * IN_FLIGHT, crlBaseUs: c.crlBase.microsPerOp, crlFullUs: c.crlFull.microsPerOp });
      inProc.issueCpu = [m.issueFull.cpuMicrosPerOp / IN_FLIGHT, m.issueBase.cpuMicrosPerOp / IN_FLIGHT];
      inProc.crlCpu = [c.crlFull.cpuMicrosPerOp, c.crlBase.cpuMicrosPerOp];
    } finally {
      await ipBase.close();
      await ipFull.close();
    }

    // ---- servers: re-enrollment (mTLS, new connection each) and OCSP cached (keep-alive)
    const best = { reBase: 0, reFull: 0, ocspBase: 0, ocspFull: 0 };
    // server CPU per request: the least of the rounds (least disturbed by other processes)
    const cpu = { reBase: Infinity, reFull: Infinity, ocspBase: Infinity, ocspFull: Infinity };
    for (let r = 0; r < rounds; r++) {
      for (const s of [base, full]) {
        const server = await startServer({ serviceDir: service, dataDir: s.dataDir, httpsPort: await freePort(), httpPort: await freePort() });
        try {
          const o = await measureOcsp(s, server, seconds);
          const re = await measureReenroll(s, server, seconds);
          log(`  round ${r + 1} ${s.name}: OCSP ${o.rate.toFixed(0)}/s (${o.cpuUs.toFixed(0)} µs server CPU each), simplereenroll ${re.rate.toFixed(1)}/s (${re.cpuUs.toFixed(0)} µs)`);
          const k = s === base ? 'Base' : 'Full';
          best[`ocsp${k}`] = Math.max(best[`ocsp${k}`], o.rate);
          best[`re${k}`] = Math.max(best[`re${k}`], re.rate);
          cpu[`ocsp${k}`] = Math.min(cpu[`ocsp${k}`], o.cpuUs);
          cpu[`re${k}`] = Math.min(cpu[`re${k}`], re.cpuUs);
        } finally {
          await server.stop();
        }
      }
    }

    // ---- devices import through the CLI
    const imp = timeImport(root, service, importN);
    log(`devices import: ${importN} devices in ${imp.seconds.toFixed(1)} s`);

    const rows: (BenchRow & { id: string })[] = [
      row(
        'scale.issuance',
        `issuance core, ${IN_FLIGHT} in flight, on ${n.toLocaleString('en-US')} devices/certificates`,
        inProc.issueFull,
        inProc.issueBase,
        'cert',
        `in process, as bench/issuance; ${cpuNote('process', inProc.issueCpu[0], inProc.issueCpu[1])}`,
      ),
      row(
        'scale.reenroll',
        'EST simplereenroll, mTLS, new TLS connection each',
        best.reFull,
        best.reBase,
        'reenroll',
        `device-ca serve, c=16, best of ${rounds}; ${cpuNote('server', cpu.reFull, cpu.reBase)}`,
      ),
      row(
        'scale.ocsp',
        'OCSP cached, keep-alive c=32, certificates spread over the store',
        best.ocspFull,
        best.ocspBase,
        'resp',
        `${full.ocsp.length} distinct certificates asked, good and revoked; best of ${rounds}; ${cpuNote('server', cpu.ocspFull, cpu.ocspBase)}`,
      ),
      row(
        'scale.crl',
        `CRL re-issue of one shard (${shardRevoked.toLocaleString('en-US')} of ${pf.revoked.toLocaleString('en-US')} revoked)`,
        inProc.crlFullUs / 1e6,
        inProc.crlBaseUs / 1e6,
        's',
        `read + sign + save; the baseline store holds only that shard's revoked certificates; ${cpuNote('process', inProc.crlCpu[0], inProc.crlCpu[1])}`,
      ),
      {
        id: 'scale.populate',
        name: `bulk populate (bench fixture): ${n.toLocaleString('en-US')} devices + certificates + audit records`,
        figure: `${fmtRate(n / pf.seconds, 'device')} (${pf.seconds.toFixed(1)} s)`,
        baseline: `store on disk: ${mb(full.bytes)} (${(full.bytes / n).toFixed(0)} B/device)`,
        ratio: full.bytes / base.bytes,
        note: `ratio: store size over the baseline store (${mb(base.bytes)})`,
      },
      {
        id: 'scale.import',
        name: `device-ca devices import (CLI, default settings), ${importN.toLocaleString('en-US')} devices`,
        figure: `${fmtRate(imp.perSecond, 'device')} (${imp.seconds.toFixed(1)} s)`,
        baseline: `bench fixture populate: ${fmtRate(n / pf.seconds, 'device')}`,
        ratio: imp.perSecond / (n / pf.seconds),
        note: 'includes process start, both passes and hashing each new secret',
      },
    ];
    ok = true;
    return rows;
  } finally {
    if (ok && process.env.BENCH_SCALE_KEEP !== '1') fs.rmSync(root, { recursive: true, force: true });
    else log(`kept ${root}`);
  }
}

if (require.main === module) {
  benchScale().then(
    (r) => console.table(r),
    (e: unknown) => {
      console.error(e);
      process.exitCode = 1;
    },
  );
}
