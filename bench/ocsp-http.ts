import { fork } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { BenchId } from './bench-table';
import type { ClientJob, ClientMessage, ClientRequestSpec, ClientResult } from './ocsp-http-client';
import { OcspRig, makeOcspRig, ocspRequest } from './ocsp-http-fixtures';
import { summariseOcspProfiles } from './ocsp-http-profile';
import { Responder, machineBusyMs, probe, startDeviceCa, startFloor, startOpenssl } from './ocsp-http-servers';

/**
 * bench/ocsp-http: OCSP over HTTP, end to end, on this machine, in one run. device-ca as the operator runs it
 * (`device-ca serve`, cluster with the default one worker per core), answering
 *   - cached: nonce-less requests (RFC 5019), POST /ocsp and GET /ocsp/<url-encoded base64>; a pre-signed
 *     response per certificate, after a status read from the store on every request;
 *   - live: requests with a nonce, a distinct one on every request, so every answer is signed on the spot;
 * beside the baseline `openssl ocsp -index index.txt -port P -rsigner ocsp.pem -rkey ocsp.key -CA issuing.pem`
 * over the same certificates (index.txt lists them V/R with device-ca's own revocation times and reasons),
 * signing with the same delegated responder certificate and key device-ca made, driven by the same load
 * generator (bench/ocsp-http-client, its own process, raw keep-alive HTTP/1.1) with the same request pool.
 *
 * openssl's responder (3.0) serves one connection at a time, answers HTTP/1.0 and closes the connection after
 * every response, `Connection: keep-alive` or not, so against it the client reconnects for every request: the
 * only way it can be driven. Its concurrency (default: the same as device-ca's) is the number of connections
 * queued in its accept backlog; it does best there (c=1 is reported too). Reference rows: device-ca driven the
 * same way (a new connection per request), `openssl ocsp -multi <cores>`, and a plain node:http cluster that
 * answers with one fixed response (bench/ocsp-http-floor): what Node, the kernel and this client cost here now.
 *
 * Every response is checked for HTTP 200 and OCSPResponseStatus successful; a sample is parsed (CertID echoed,
 * good/revoked as expected, nonce echoed exactly or absent, times sane) and a smaller sample has its signature
 * verified with the responder's key; a run with any failure throws. Targets (issue): cached >= 15 000
 * responses/s and >= 5x openssl's responder; live >= 1.5x openssl's responder.
 *
 * The client and the servers share the machine's cores (and, on a shared machine, other people's work), so
 * each row also gives the server's CPU per response (its whole process tree, from /proc), which does not
 * depend on the share it got, and the cores busy with anything else during the window. Scenarios run
 * round-robin; each keeps its best round.
 *
 * Run: npx tsc -p tsconfig.build.json && npx tsc -p tsconfig.bench.json && node dist-bench/bench/ocsp-http.js
 * Knobs (environment): OCSP_BENCH_SECONDS (5), OCSP_BENCH_WARMUP_SECONDS (1), OCSP_BENCH_CONCURRENCY (32),
 * OCSP_BENCH_OPENSSL_CONCURRENCY (= concurrency), OCSP_BENCH_ROUNDS (2), OCSP_BENCH_DEVICES (128),
 * OCSP_BENCH_ONLY=key,key (scenario keys below; the openssl baseline always runs),
 * OCSP_BENCH_WHATIF=issuer,quietlog,batchsign (one more device-ca with proposed fixes patched in, see
 * bench/ocsp-http-whatif), OCSP_BENCH_PROFILE=1 (one
 * more device-ca per path with node --cpu-prof on every process; summary on stderr; V8 samples wall-clock
 * time, so under CPU contention a syscall or native call is also charged for time the thread was preempted),
 * OCSP_BENCH_KEEP=1 (keep the temp dir with the servers' logs), OCSP_BENCH_COMPARE_ROOT=<dir> (one more device-ca
 * started from another built checkout, e.g. `git archive main` built in /tmp, over the same data directory:
 * rows of this build against that one in the same run, which on a shared machine says more than two runs).
 */

export interface Row {
  id?: BenchId;
  name: string;
  figure: string;
  baseline: string;
  ratio: number;
  note?: string;
}

export const CACHED_TARGET_PER_SECOND = 15_000;
export const CACHED_TARGET_RATIO = 5;
export const LIVE_TARGET_RATIO = 1.5;

function envNumber(name: string, dflt: number): number {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v > 0 ? v : dflt;
}

export interface Measurement extends ClientResult {
  label: string;
  /** server CPU (whole process tree) per response, µs */
  serverCpuUs: number;
  /** the machine's busy share of all cores in the window (1 = every core busy) */
  machineBusy: number;
  /** cores the other (idle) responders used during the window: should be ~0 (see openssl/openssl#31129) */
  idleServersCores: number;
}

interface Scenario {
  key: string;
  label: string;
  server: () => Responder;
  requests: ClientRequestSpec[];
  connection: 'keep-alive' | 'close';
  concurrency: number;
}

/** measure runs the load generator once against one responder and samples the server's CPU over its timed window. */
export async function measure(s: Omit<Scenario, 'server'> & { server: Responder }, o: { seconds: number; warmupSeconds: number; responderKey: string; idle?: Responder[] }): Promise<Measurement> {
  const job: ClientJob = {
    host: '127.0.0.1',
    port: s.server.port,
    concurrency: s.concurrency,
    connection: s.connection,
    warmupMs: o.warmupSeconds * 1000,
    durationMs: o.seconds * 1000,
    requests: s.requests,
    checkEvery: 61, // primes, so the sample does not follow the pool's cycle
    verifyEvery: 1021,
    responderKey: o.responderKey,
  };
  const child = fork(path.join(__dirname, 'ocsp-http-client.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  let cpu0 = 0;
  let busy0 = 0;
  let idle0 = 0;
  let cpu = 0;
  let busy = 0;
  let idle = 0;
  const idleCpu = () => (o.idle ?? []).reduce((a, r) => a + r.cpuMs(), 0);
  const result = await new Promise<ClientResult>((resolve, reject) => {
    const timer = setTimeout(() => (child.kill('SIGKILL'), reject(new Error(`${s.label}: load generator timed out`))), (o.seconds + o.warmupSeconds) * 1000 + 30_000);
    child.on('message', (m: ClientMessage) => {
      if (m.type === 'window-start') {
        cpu0 = s.server.cpuMs();
        busy0 = machineBusyMs();
        idle0 = idleCpu();
      } else if (m.type === 'window-end') {
        cpu = s.server.cpuMs() - cpu0;
        busy = machineBusyMs() - busy0;
        idle = idleCpu() - idle0;
      } else if (m.type === 'result') {
        clearTimeout(timer);
        resolve(m.result);
      } else if (m.type === 'failed') {
        clearTimeout(timer);
        reject(new Error(`${s.label}: ${m.message}`));
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${s.label}: load generator exited (${code}) without a result`));
    });
    child.send(job);
  });
  if (result.errors > 0) throw new Error(`${s.label}: ${result.errors} bad responses of ${result.responses} (first: ${result.firstError})`);
  if (result.responses === 0) throw new Error(`${s.label}: no responses`);
  return { ...result, label: s.label, serverCpuUs: (cpu * 1000) / result.responses, machineBusy: busy / (result.seconds * 1000 * os.cpus().length), idleServersCores: idle / (result.seconds * 1000) };
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US').replace(/,/g, ' ');
const rate = (m: Measurement) => `${fmt(m.rate)} resp/s`;
/** rest: cores busy with neither this server nor the load generator (other processes, interrupts) during the window */
const rest = (m: Measurement) => Math.max(0, m.machineBusy * os.cpus().length - ((m.serverCpuUs + m.clientCpuUs) * m.rate) / 1e6);
const detail = (m: Measurement) =>
  `${m.idleServersCores > 0.2 ? `WARNING: idle responders used ${m.idleServersCores.toFixed(2)} cores meanwhile; ` : ''}server CPU ${m.serverCpuUs.toFixed(0)} µs/resp, client ${m.clientCpuUs.toFixed(0)} µs/resp, rest of machine ${rest(m).toFixed(1)} cores busy; p50 ${m.p50.toFixed(2)} ms, p99 ${m.p99.toFixed(2)} ms; ${m.checked} answers checked (${m.verified} signatures verified), 0 errors`;

export interface OcspHttpOptions {
  seconds: number;
  warmupSeconds: number;
  concurrency: number;
  opensslConcurrency: number;
  rounds: number;
  devices: number;
  profile: boolean;
  /** whatif: patches of bench/ocsp-http-whatif to measure as extra rows (OCSP_BENCH_WHATIF) */
  whatif: string[];
  keep: boolean;
  /** compareRoot: another built checkout to measure beside this one (OCSP_BENCH_COMPARE_ROOT) */
  compareRoot?: string;
  log: (s: string) => void;
}

export function optionsFromEnv(): OcspHttpOptions {
  return {
    seconds: envNumber('OCSP_BENCH_SECONDS', 5),
    warmupSeconds: envNumber('OCSP_BENCH_WARMUP_SECONDS', 1),
    concurrency: envNumber('OCSP_BENCH_CONCURRENCY', 32),
    opensslConcurrency: envNumber('OCSP_BENCH_OPENSSL_CONCURRENCY', envNumber('OCSP_BENCH_CONCURRENCY', 32)),
    rounds: envNumber('OCSP_BENCH_ROUNDS', 2),
    devices: envNumber('OCSP_BENCH_DEVICES', 128),
    profile: process.env.OCSP_BENCH_PROFILE === '1',
    whatif: (process.env.OCSP_BENCH_WHATIF ?? '').split(',').filter(Boolean),
    keep: process.env.OCSP_BENCH_KEEP === '1',
    compareRoot: process.env.OCSP_BENCH_COMPARE_ROOT || undefined,
    log: (s) => process.stderr.write(`bench/ocsp-http: ${s}\n`),
  };
}

export async function benchOcspHttp(opts: OcspHttpOptions = optionsFromEnv()): Promise<Row[]> {
  const rig = await makeOcspRig({ devices: opts.devices, log: opts.log });
  opts.log(rig.requestCheck);
  const running: Responder[] = [];
  const cores = os.availableParallelism();
  const maxSeconds = Math.ceil(180 + opts.rounds * 14 * (opts.seconds + opts.warmupSeconds + 3) + (opts.profile ? 60 : 0));
  const probeBody = ocspRequest(rig.certs[0].certId, null);
  const start = async (f: () => Promise<Responder>) => {
    const r = await f();
    running.push(r);
    return r;
  };
  try {
    // every responder at once, idle between turns; rounds interleave the scenarios, so a burst of load from
    // elsewhere on the machine hits them alike instead of skewing one ratio, and each keeps its best round
    const info = await start(() => startDeviceCa({ root: rig.root, dataDir: rig.dataDir, name: 'device-ca-info', logLevel: 'info', workers: 0, maxSeconds, probeBody }));
    const warn = await start(() => startDeviceCa({ root: rig.root, dataDir: rig.dataDir, name: 'device-ca-warn', logLevel: 'warn', workers: 0, maxSeconds, probeBody }));
    const ossl = await start(() => startOpenssl({ dir: rig.opensslDir, name: 'openssl-ocsp', maxSeconds, probeBody }));
    const osslMulti = await start(() => startOpenssl({ dir: rig.opensslDir, name: 'openssl-ocsp-multi', multi: cores, maxSeconds, probeBody }));
    const workers = Math.max(1, info.processes().length - 1);
    // OCSP_BENCH_WHATIF=issuer,obs,...: one more device-ca with proposed fixes patched in (bench/ocsp-http-whatif)
    const whatif = opts.whatif.length
      ? await start(() =>
          startDeviceCa({
            root: rig.root,
            dataDir: rig.dataDir,
            name: 'device-ca-whatif',
            logLevel: 'info',
            workers: 0,
            nodeArgs: ['-r', path.join(__dirname, 'ocsp-http-whatif.js')],
            env: { OCSP_BENCH_WHATIF_PATCHES: opts.whatif.join(',') },
            maxSeconds,
            probeBody,
          }),
        )
      : null;
    // OCSP_BENCH_COMPARE_ROOT: the same service from another build, same data directory and settings
    const other = opts.compareRoot
      ? await start(() => startDeviceCa({ root: opts.compareRoot!, dataDir: rig.dataDir, name: 'device-ca-compare', logLevel: 'info', workers: 0, maxSeconds, probeBody }))
      : null;
    // the floor answers with the response device-ca itself gives for certs[0]
    const responseFile = path.join(rig.dir, 'floor-response.der');
    fs.writeFileSync(responseFile, (await probe(info.port, probeBody)).body);
    const floor = await start(() => startFloor({ dir: rig.dir, name: 'node-http-floor', workers, responseFile, maxSeconds, probeBody }));
    opts.log(
      `device-ca: ${workers} workers per server; openssl -multi ${cores}; ${rig.certs.length} certificates; ${opts.rounds} rounds of ${opts.seconds} s (+${opts.warmupSeconds} s warm-up) per scenario`,
    );

    const c = opts.concurrency;
    const oc = opts.opensslConcurrency;
    const scenarios: Scenario[] = [
      { key: 'openssl', label: `openssl ocsp, nonce POST, c=${oc}`, server: () => ossl, requests: rig.noncePost, connection: 'keep-alive', concurrency: oc },
      { key: 'cachedPost', label: `cached POST /ocsp, keep-alive c=${c}, log info`, server: () => info, requests: rig.cachedPost, connection: 'keep-alive', concurrency: c },
      { key: 'cachedPostWarn', label: `cached POST /ocsp, keep-alive c=${c}, log warn`, server: () => warn, requests: rig.cachedPost, connection: 'keep-alive', concurrency: c },
      { key: 'cachedGet', label: `cached GET /ocsp/<b64>, keep-alive c=${c}, log info`, server: () => info, requests: rig.cachedGet, connection: 'keep-alive', concurrency: c },
      { key: 'livePost', label: `nonce POST /ocsp, keep-alive c=${c}, log info`, server: () => info, requests: rig.noncePost, connection: 'keep-alive', concurrency: c },
      { key: 'livePostWarn', label: `nonce POST /ocsp, keep-alive c=${c}, log warn`, server: () => warn, requests: rig.noncePost, connection: 'keep-alive', concurrency: c },
      { key: 'liveClose', label: `nonce POST /ocsp, new connection per request c=${oc}, log info`, server: () => info, requests: rig.noncePost, connection: 'close', concurrency: oc },
      { key: 'opensslMulti', label: `openssl ocsp -multi ${cores}, nonce POST, c=${oc}`, server: () => osslMulti, requests: rig.noncePost, connection: 'keep-alive', concurrency: oc },
      ...(whatif
        ? ([
            {
              key: 'cachedPostWhatif',
              label: `what-if ${opts.whatif.join('+')}: cached POST /ocsp, keep-alive c=${c}, log info`,
              server: () => whatif,
              requests: rig.cachedPost,
              connection: 'keep-alive',
              concurrency: c,
            },
            {
              key: 'livePostWhatif',
              label: `what-if ${opts.whatif.join('+')}: nonce POST /ocsp, keep-alive c=${c}, log info`,
              server: () => whatif,
              requests: rig.noncePost,
              connection: 'keep-alive',
              concurrency: c,
            },
          ] as Scenario[])
        : []),
      ...(other
        ? ([
            {
              key: 'cachedPostCompare',
              label: `${opts.compareRoot}: cached POST /ocsp, keep-alive c=${c}, log info`,
              server: () => other,
              requests: rig.cachedPost,
              connection: 'keep-alive',
              concurrency: c,
            },
            {
              key: 'liveCloseCompare',
              label: `${opts.compareRoot}: nonce POST /ocsp, new connection per request c=${oc}, log info`,
              server: () => other,
              requests: rig.noncePost,
              connection: 'close',
              concurrency: oc,
            },
          ] as Scenario[])
        : []),
      { key: 'opensslC1', label: 'openssl ocsp, nonce POST, c=1', server: () => ossl, requests: rig.noncePost, connection: 'keep-alive', concurrency: 1 },
      {
        key: 'floor',
        label: `node:http floor (${workers} workers, fixed response), keep-alive c=${c}`,
        server: () => floor,
        requests: rig.cachedPost.slice(0, 1),
        connection: 'keep-alive',
        concurrency: c,
      },
      {
        // what a new connection per request costs node:http alone here: the part of ocsp.nonce.newconn no
        // OCSP work can remove (the nonce row's signature comes on top)
        key: 'floorClose',
        label: `node:http floor (${workers} workers, fixed response), new connection per request c=${oc}`,
        server: () => floor,
        requests: rig.cachedPost.slice(0, 1),
        connection: 'close',
        concurrency: oc,
      },
    ];
    // OCSP_BENCH_ONLY=key,key (the openssl baseline always runs)
    const only = (process.env.OCSP_BENCH_ONLY ?? '').split(',').filter(Boolean);
    const chosen = only.length ? scenarios.filter((s) => only.includes(s.key) || s.key === 'openssl') : scenarios;
    const best = new Map<string, Measurement>();
    for (let r = 0; r < opts.rounds; r++) {
      for (const s of chosen) {
        const server = s.server();
        const m = await measure({ ...s, server }, { seconds: opts.seconds, warmupSeconds: opts.warmupSeconds, responderKey: rig.responderSpkiPem, idle: running.filter((r) => r !== server) });
        opts.log(`round ${r + 1}: ${s.label}: ${rate(m)}; ${detail(m)}; ${m.connects} connects, ${m.httpVersions.join('/')}, sampled ${JSON.stringify(m.outcomes)}`);
        if (!best.has(s.key) || m.rate > best.get(s.key)!.rate) best.set(s.key, m);
      }
    }

    if (opts.profile) await profileRun(rig, opts, probeBody, maxSeconds);

    const base = best.get('openssl')!;
    const baseText = `openssl ocsp: ${rate(base)} (1 process, c=${oc}, new connection per request)`;
    const rows: Row[] = [];
    const verdict = (ok: boolean) => (ok ? 'target met' : 'TARGET MISSED');
    const logNote = (key: string) => (key.endsWith('Warn') ? 'DEVICE_CA_LOG_LEVEL=warn (no access log line)' : 'default log level info (one access log line per request)');
    for (const key of ['cachedPost', 'cachedPostWarn', 'cachedGet']) {
      const m = best.get(key);
      if (!m) continue;
      const ratio = m.rate / base.rate;
      const ok = m.rate >= CACHED_TARGET_PER_SECOND && ratio >= CACHED_TARGET_RATIO;
      rows.push({
        name: `device-ca ${m.label}`,
        figure: rate(m),
        baseline: baseText,
        ratio,
        note: `${verdict(ok)} (>= ${fmt(CACHED_TARGET_PER_SECOND)}/s and >= ${CACHED_TARGET_RATIO}x); ${logNote(key)}; ${detail(m)}`,
      });
    }
    for (const key of ['livePost', 'livePostWarn']) {
      const m = best.get(key);
      if (!m) continue;
      const ratio = m.rate / base.rate;
      rows.push({
        name: `device-ca ${m.label}`,
        figure: rate(m),
        baseline: baseText,
        ratio,
        note: `${verdict(ratio >= LIVE_TARGET_RATIO)} (>= ${LIVE_TARGET_RATIO}x); signed live, a distinct nonce per request; ${logNote(key)}; ${detail(m)}`,
      });
    }
    const close = best.get('liveClose');
    if (close)
      rows.push({
        id: 'ocsp.nonce.newconn',
        name: `device-ca ${close.label}`,
        figure: rate(close),
        baseline: baseText,
        ratio: close.rate / base.rate,
        note: `openssl's regime: same client, pool and concurrency as the baseline; ${detail(close)}`,
      });
    for (const key of ['cachedPostWhatif', 'livePostWhatif']) {
      const m = best.get(key);
      const real = best.get(key.replace('Whatif', ''));
      if (!m || !real) continue;
      rows.push({
        name: m.label,
        figure: rate(m),
        baseline: `device-ca as built: ${rate(real)}, server CPU ${real.serverCpuUs.toFixed(0)} µs/resp`,
        ratio: m.rate / real.rate,
        note: `estimate of the proposed fixes (patched in memory); server CPU ${m.serverCpuUs.toFixed(0)} µs/resp (${(m.serverCpuUs - real.serverCpuUs).toFixed(0)}); ${m.rate / base.rate >= (key.startsWith('cached') ? CACHED_TARGET_RATIO : LIVE_TARGET_RATIO) ? 'would meet' : 'would still miss'} the ratio target (${(m.rate / base.rate).toFixed(2)}x openssl); ${detail(m)}`,
      });
    }
    for (const key of ['cachedPostCompare', 'liveCloseCompare']) {
      const m = best.get(key);
      const mine = best.get(key.replace('Compare', ''));
      if (!m || !mine) continue;
      rows.push({
        name: `this build vs ${m.label}`,
        figure: rate(mine),
        baseline: `${rate(m)}, server CPU ${m.serverCpuUs.toFixed(0)} µs/resp`,
        ratio: mine.rate / m.rate,
        note: `same run, rounds interleaved; server CPU ${mine.serverCpuUs.toFixed(0)} µs/resp here against ${m.serverCpuUs.toFixed(0)} there; ${detail(mine)}`,
      });
    }
    const c1 = best.get('opensslC1');
    if (c1)
      rows.push({ name: c1.label, figure: rate(c1), baseline: baseText, ratio: c1.rate / base.rate, note: `reference: one connection at a time, what a single sequential client sees; ${detail(c1)}` });
    const multi = best.get('opensslMulti');
    if (multi) rows.push({ name: multi.label, figure: rate(multi), baseline: baseText, ratio: multi.rate / base.rate, note: `reference: one forked responder per core; ${detail(multi)}` });
    const fl = best.get('floor');
    const cachedInfo = best.get('cachedPost');
    if (fl && cachedInfo)
      rows.push({
        id: 'ocsp.cached.keepalive',
        name: `device-ca ${cachedInfo.label} vs the node:http floor`,
        figure: rate(cachedInfo),
        baseline: `${fl.label}: ${rate(fl)}`,
        ratio: cachedInfo.rate / fl.rate,
        note: `the floor is node:http answering one fixed response with the same workers and client: what any Node responder can reach here; ${detail(cachedInfo)}`,
      });
    const flc = best.get('floorClose');
    if (flc)
      rows.push({
        name: flc.label,
        figure: rate(flc),
        baseline: baseText,
        ratio: flc.rate / base.rate,
        note: `reference: node:http accepting, answering and closing a connection per request, no OCSP work and no signature: the ceiling of ocsp.nonce.newconn for a Node responder here; ${detail(flc)}`,
      });
    if (fl) {
      const cw = best.get('cachedPostWarn');
      const share = cw ? `; device-ca cached POST (log warn) reaches ${((100 * cw.rate) / fl.rate).toFixed(0)}% of it` : '';
      rows.push({
        name: fl.label,
        figure: rate(fl),
        baseline: baseText,
        ratio: fl.rate / base.rate,
        note: `reference: plain node:http, no OCSP work: the ceiling for a Node responder with this client on this machine now${share}; ${detail(fl)}`,
      });
    }
    rows.push({
      name: 'openssl ocsp (the baseline)',
      figure: rate(base),
      baseline: rate(base),
      ratio: 1,
      note: `HTTP/1.0, closes after every response (keep-alive not offered); ${detail(base)}; ${rig.requestCheck}`,
    });
    return rows;
  } finally {
    for (const r of running.reverse()) await r.stop().catch(() => undefined);
    if (opts.keep) opts.log(`kept ${rig.dir}`);
    else rig.cleanup();
  }
}

/**
 * profileRun starts one more device-ca (log level info, the default) with node --cpu-prof in every worker,
 * drives it with cached POSTs, stops it, and prints where the workers' time went.
 */
async function profileRun(rig: OcspRig, opts: OcspHttpOptions, probeBody: Buffer, maxSeconds: number): Promise<void> {
  const profDir = path.join(rig.dir, 'profiles');
  fs.mkdirSync(profDir);
  // liveClose: the nonce path with a new connection per request, as FreeRADIUS asks (ocsp.nonce.newconn)
  for (const [key, requests, connection] of [
    ['cached', rig.cachedPost, 'keep-alive'],
    ['live', rig.noncePost, 'keep-alive'],
    ['liveClose', rig.noncePost, 'close'],
  ] as const) {
    const dir = path.join(profDir, key);
    fs.mkdirSync(dir);
    const server = await startDeviceCa({
      root: rig.root,
      dataDir: rig.dataDir,
      name: `device-ca-profile-${key}`,
      logLevel: 'info',
      workers: 0,
      nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${dir}`],
      maxSeconds,
      probeBody,
    });
    let m: Measurement;
    try {
      m = await measure(
        { key, label: `profile ${key} POST`, server, requests, connection, concurrency: opts.concurrency },
        { seconds: opts.seconds, warmupSeconds: opts.warmupSeconds, responderKey: rig.responderSpkiPem },
      );
    } finally {
      await server.stop();
    }
    opts.log(`profile (${key} POST, ${connection}, log info, node --cpu-prof on each process): ${rate(m)} under the profiler`);
    process.stderr.write(summariseOcspProfiles(dir, { responses: m.responses + m.warmupResponses }) + '\n');
  }
}

if (require.main === module) {
  benchOcspHttp().then(
    (rows) => console.table(rows),
    (e: unknown) => {
      process.stderr.write(`${(e as Error)?.stack ?? String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
