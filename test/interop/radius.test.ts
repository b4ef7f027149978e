import { ChildProcess, spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { ProcessResult, RunningService, assertBuilt, runProcess, startService } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * The acceptance test against the real relying party: FreeRADIUS 3.2 doing EAP-TLS for
 * devices enrolled over EST, with eapol_test as the supplicant. Revocation must reach the RADIUS
 * server two ways:
 *  - CRL: `device-ca crl export --dir` writes the hashed directory FreeRADIUS reads as ca_path
 *    (check_crl = yes); FreeRADIUS reads it at start, so the test restarts it after each export.
 *  - OCSP: FreeRADIUS asks device-ca's responder on every handshake, with a nonce (use_nonce = yes);
 *    no export, no restart: the very next attempt after the CLI command returns must be rejected.
 * One device-ca serves the file; every scenario has its own devices (retired ids never come back) and
 * starts and stops its own FreeRADIUS. Assertions are on eapol_test's verdict (exit code, SUCCESS /
 * FAILURE) and on FreeRADIUS's own log line for the attempt.
 */

const FREERADIUS = '/usr/sbin/freeradius';
const EAPOL_TEST = '/usr/bin/eapol_test';
const RADDB_SOURCE = '/etc/freeradius/3.0';
const TEMPLATES = path.join(__dirname, 'radius');
const RADIUS_SECRET = 'testing123';
/** outer bound of one FreeRADIUS process (coreutils timeout), in case this file dies before afterAll */
const RADIUS_MAX_SECONDS = 120;

let svc: RunningService;
let tmp: TmpDir;
let seq = 0;
const next = (): number => ++seq;

let serverChain: string;
let serverKey: string;
let crlRaddb: Raddb;
let ocspRaddb: Raddb;
let allCrlRaddb: Raddb;

// ------------------------------------------------------------------------------------------- helpers

async function must(file: string, args: string[], timeoutMs = 20_000): Promise<ProcessResult> {
  const r = await runProcess(file, args, { timeoutMs });
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} exited ${r.code}:\n${r.stderr}${r.stdout}`);
  return r;
}
const openssl = (...args: string[]): Promise<ProcessResult> => must('openssl', args);

/** cli runs a device-ca command against the service's data and must succeed */
async function cli(...args: string[]): Promise<string> {
  const r = await svc.cli(args);
  if (r.code !== 0) throw new Error(`device-ca ${args.join(' ')} exited ${r.code}:\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** secretOf: `devices add` and `devices transfer` print the one-time secret alone on stdout */
function secretOf(stdout: string): string {
  expect(stdout).toMatch(/^[A-Za-z0-9_-]{20,}\n$/);
  return stdout.trim();
}

/** fill: a template from test/interop/radius with every @NAME@ replaced; an unknown or unused name fails */
function fill(template: string, vars: Record<string, string>): string {
  let text = fs.readFileSync(path.join(TEMPLATES, template), 'utf8');
  for (const [k, v] of Object.entries(vars)) {
    if (!text.includes(`@${k}@`)) throw new Error(`${template} has no @${k}@`);
    text = text.split(`@${k}@`).join(v);
  }
  const left = /@[A-Z_]+@/.exec(text);
  if (left) throw new Error(`${template}: ${left[0]} not filled in`);
  return text;
}

function freeUdpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => {
      const port = s.address().port;
      s.close(() => resolve(port));
    });
  });
}

interface Device {
  id: string;
  key: string;
  cert: string;
  /** serial: upper-case hex without leading zeros, as openssl prints it */
  serial: string;
  /** subject: "O=acme\nCN=dev-1" (Node's form) */
  subject: string;
}

const normSerial = (s: string): string =>
  s
    .replace(/[^0-9a-f]/gi, '')
    .toUpperCase()
    .replace(/^0+(?=.)/, '');

async function newKey(name: string): Promise<string> {
  const f = tmp.file(`keys/${name}-${next()}.key`);
  await openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', f);
  return f;
}

/**
 * enroll: EST simpleenroll with HTTP Basic (device id + one-time secret), CSR made by openssl with an
 * EC P-256 key (a new one unless `key` is given), as README.md shows.
 */
async function enroll(id: string, secret: string, o: { label?: string; key?: string } = {}): Promise<Device> {
  const n = next();
  const key = o.key ?? (await newKey(id));
  const csrDer = tmp.file(`est/${n}.csr.der`);
  await openssl('req', '-new', '-key', key, '-subj', `/CN=${id}`, '-outform', 'DER', '-out', csrDer);
  const body = tmp.write(
    `est/${n}.csr.b64`,
    fs
      .readFileSync(csrDer)
      .toString('base64')
      .replace(/(.{64})/g, '$1\n') + '\n',
  );
  const out = tmp.file(`est/${n}.p7.b64`);
  const url = `${svc.est}/${o.label ? o.label + '/' : ''}simpleenroll`;
  const r = await must('curl', [
    '-sS',
    '--max-time',
    '15',
    '--cacert',
    svc.chainPem,
    '-u',
    `${id}:${secret}`,
    '-H',
    'Content-Type: application/pkcs10',
    '--data-binary',
    `@${body}`,
    '-o',
    out,
    '-w',
    '%{http_code}',
    url,
  ]);
  expect({ id, status: r.stdout }).toEqual({ id, status: '200' });
  const p7 = tmp.write(`est/${n}.p7.der`, Buffer.from(fs.readFileSync(out, 'latin1'), 'base64'));
  const cert = tmp.file(`certs/${id}-${n}.crt`);
  await openssl('pkcs7', '-inform', 'DER', '-in', p7, '-print_certs', '-out', cert);
  const x = new crypto.X509Certificate(fs.readFileSync(cert));
  return { id, key, cert, serial: normSerial(x.serialNumber), subject: x.subject };
}

/** register + enroll on the default label */
async function newDevice(id: string, owner = 'acme'): Promise<Device> {
  const secret = secretOf(await cli('devices', 'add', id, '--owner', owner));
  const dev = await enroll(id, secret);
  expect(dev.subject).toBe(`O=${owner}\nCN=${id}`);
  return dev;
}

/** exportCrl: `device-ca crl export --dir D` (regenerates stale shards itself) */
async function exportCrl(dir: string): Promise<void> {
  expect(await cli('crl', 'export', '--dir', dir)).toMatch(/^exported \d+ CRLs and 2 CA certificates to /);
}

/**
 * crlEntry reads every exported CRL shard (<hash>.rN) with openssl, which also checks each CRL's
 * signature against the CA certificates in the same directory, and returns the entry for serial:
 * null when it is on no CRL, else the text of its entry (reason included).
 */
async function crlEntry(dir: string, serial: string): Promise<string | null> {
  const shards = fs.readdirSync(dir).filter((f) => /^[0-9a-f]{8}\.r\d+$/.test(f));
  expect(shards.length).toBeGreaterThan(0);
  const texts = await Promise.all(
    shards.map(async (f) => {
      const r = await openssl('crl', '-in', path.join(dir, f), '-CApath', dir, '-noout', '-text');
      expect(`${f}: ${r.stderr.trim()}`).toBe(`${f}: verify OK`);
      return r.stdout;
    }),
  );
  for (const text of texts) {
    for (const entry of text.split(/Serial Number:\s*/).slice(1)) {
      const first = /^([0-9A-Fa-f]+)/.exec(entry)?.[1] ?? '';
      if (normSerial(first) === serial) return entry.split(/\n\s*Signature Algorithm/)[0];
    }
  }
  return null;
}

/** OcspExchange: one OCSP request FreeRADIUS made and device-ca's answer, as the tap saw them */
interface OcspExchange {
  /** performance.now() when the request reached the tap, and device-ca's time to answer it (ms) */
  at: number;
  ms: number;
  status: number;
  request: Buffer;
  response: Buffer;
}

let ocspTap: http.Server;
let ocspTapPort: number;
const ocspExchanges: OcspExchange[] = [];

/**
 * startOcspTap: a pass-through HTTP hop between FreeRADIUS and device-ca's /ocsp that forwards the bytes
 * unchanged and records each exchange: the time device-ca took to answer (the service-side latency,
 * apart from how long the supplicant and FreeRADIUS take for the rest of the handshake on a busy host)
 * and the request and response bytes (for the nonce).
 */
async function startOcspTap(): Promise<void> {
  ocspTap = http.createServer((req, res) => {
    const at = performance.now();
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const request = Buffer.concat(chunks);
      const headers: http.OutgoingHttpHeaders = { 'Content-Length': request.length };
      if (req.headers['content-type']) headers['Content-Type'] = req.headers['content-type'];
      const up = http.request({ host: '127.0.0.1', port: svc.httpPort, method: req.method, path: req.url, headers, timeout: 10_000 }, (answer) => {
        const body: Buffer[] = [];
        answer.on('data', (c: Buffer) => body.push(c));
        answer.on('end', () => {
          const response = Buffer.concat(body);
          ocspExchanges.push({ at, ms: performance.now() - at, status: answer.statusCode ?? 0, request, response });
          res.writeHead(answer.statusCode ?? 502, { 'Content-Type': answer.headers['content-type'] ?? 'application/ocsp-response', 'Content-Length': response.length });
          res.end(response);
        });
      });
      up.on('timeout', () => up.destroy(new Error('timeout')));
      up.on('error', () => {
        res.writeHead(502, { 'Content-Length': 0 });
        res.end();
      });
      up.end(request);
    });
  });
  await new Promise<void>((resolve) => ocspTap.listen(0, '127.0.0.1', resolve));
  ocspTapPort = (ocspTap.address() as { port: number }).port;
}

/** id-pkix-ocsp-nonce (1.3.6.1.5.5.7.48.1.2), DER-encoded OID */
const NONCE_OID = Buffer.from('06092b0601050507300102', 'hex');

/** nonceExtension: the nonce OID and the extnValue OCTET STRING after it (short-form length), or null */
function nonceExtension(der: Buffer): Buffer | null {
  const i = der.indexOf(NONCE_OID);
  if (i < 0) return null;
  const v = i + NONCE_OID.length;
  if (der[v] !== 0x04 || der[v + 1] >= 0x80) return null;
  return der.subarray(i, v + 2 + der[v + 1]);
}

/**
 * expectOcspExchange: the attempt made exactly one OCSP request, with a nonce, which device-ca answered
 * (HTTP 200, nonce echoed byte for byte) in under a second, after `notBefore`.
 */
function expectOcspExchange(during: OcspExchange[], notBefore: number): OcspExchange {
  expect(during).toHaveLength(1);
  const x = during[0];
  const nonce = nonceExtension(x.request);
  expect(nonce).not.toBeNull();
  expect({ status: x.status, nonceEchoed: x.response.includes(nonce!), askedAfter: x.at >= notBefore, answeredIn: x.ms < 1000 ? 'under 1 s' : `${x.ms.toFixed(0)} ms` }).toEqual({
    status: 200,
    nonceEchoed: true,
    askedAfter: true,
    answeredIn: 'under 1 s',
  });
  return x;
}

// ------------------------------------------------------------------------------------------ FreeRADIUS

interface Raddb {
  dir: string;
  port: number;
  caPath: string;
}

/** replaceOnce edits radiusd.conf and fails loudly when the packaged file no longer has the line */
function replaceOnce(text: string, re: RegExp, to: string): string {
  if (!re.test(text)) throw new Error(`radiusd.conf: no line matching ${re}`);
  return text.replace(re, to);
}

/**
 * writeRaddb: a private FreeRADIUS configuration per INTEROP.md. A copy of the packaged
 * /etc/freeradius/3.0 without its certificates, sites and modules; raddbdir, logdir and run_dir inside
 * the copy; no user/group (runs as whoever runs the test); no reject_delay (the default 1 s would hide
 * the service's latency); no proxy socket; auth results logged. Then one site, one client, one module.
 */
async function writeRaddb(name: string, o: { ocsp: boolean; caPath: string; checkAllCrl?: boolean }): Promise<Raddb> {
  const dir = path.join(tmp.path, `raddb-${name}`);
  const skip = /^(certs|sites-enabled\/|mods-enabled\/)/;
  fs.cpSync(RADDB_SOURCE, dir, { recursive: true, verbatimSymlinks: true, filter: (src) => !skip.test(path.relative(RADDB_SOURCE, src)) });
  for (const d of ['log', 'run', 'sites-enabled', 'mods-enabled']) fs.mkdirSync(path.join(dir, d), { recursive: true });

  const conf = path.join(dir, 'radiusd.conf');
  let text = fs.readFileSync(conf, 'utf8');
  text = replaceOnce(text, /^raddbdir = .*$/m, `raddbdir = ${dir}`);
  text = replaceOnce(text, /^logdir = .*$/m, `logdir = ${dir}/log`);
  text = replaceOnce(text, /^run_dir = .*$/m, `run_dir = ${dir}/run`);
  text = replaceOnce(text, /^\s*user = .*$/m, '');
  text = replaceOnce(text, /^\s*group = .*$/m, '');
  text = replaceOnce(text, /^(\s*)reject_delay = .*$/m, '$1reject_delay = 0');
  text = replaceOnce(text, /^(\s*)auth = no$/m, '$1auth = yes');
  text = replaceOnce(text, /^proxy_requests\s*=.*$/m, 'proxy_requests = no');
  fs.writeFileSync(conf, text);

  const port = await freeUdpPort();
  fs.writeFileSync(path.join(dir, 'clients.conf'), fill('clients.conf', { SECRET: RADIUS_SECRET }));
  fs.writeFileSync(path.join(dir, 'sites-enabled', 'device-ca'), fill('site.conf', { PORT: String(port) }));
  fs.writeFileSync(
    path.join(dir, 'mods-enabled', 'eap'),
    fill('eap.conf', {
      SERVER_KEY: serverKey,
      SERVER_CHAIN: serverChain,
      CA_PATH: o.caPath,
      CHECK_ALL_CRL: o.checkAllCrl ? 'yes' : 'no',
      OCSP_ENABLE: o.ocsp ? 'yes' : 'no',
      OCSP_URL: `http://127.0.0.1:${ocspTapPort}/ocsp`,
    }),
  );
  return { dir, port, caPath: o.caPath };
}

interface Radius {
  pid: number;
  port: number;
  /** log: what FreeRADIUS wrote so far (-x -l stdout) */
  log(): string;
  stop(): Promise<void>;
}

const liveRadius = new Set<Radius>();
const liveChildren = new Set<ChildProcess>();

/** killGroup: `timeout` puts itself and FreeRADIUS in a process group of their own, led by its pid */
function killGroup(c: ChildProcess): void {
  try {
    if (c.pid) process.kill(-c.pid, 'SIGKILL');
  } catch {
    // gone
  }
}
// last resort if this file dies before afterAll
process.on('exit', () => liveChildren.forEach(killGroup));

/**
 * startRadius runs `freeradius -f -x -l stdout -d DIR` and waits for "Ready to process requests" (about
 * 0.2 s). -x (debug level 1) adds the per-request errors to the log, among them the OCSP revocation
 * reason ("ocsp: Reason: certificateHold"), which the plain log leaves out.
 */
async function startRadius(raddb: Raddb): Promise<Radius> {
  const child = spawn('timeout', ['--kill-after=5', String(RADIUS_MAX_SECONDS), FREERADIUS, '-f', '-x', '-l', 'stdout', '-d', raddb.dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  liveChildren.add(child);
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString('utf8')));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString('utf8')));
  let hasExited = false;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', (e) => {
      out += `\nspawn: ${e.message}`;
      resolve();
    });
  }).then(() => {
    hasExited = true;
    liveChildren.delete(child);
  });
  let stopping: Promise<void> | undefined;
  const radius: Radius = {
    pid: child.pid ?? -1,
    port: raddb.port,
    log: () => out,
    stop() {
      stopping ??= (async () => {
        if (!hasExited) child.kill('SIGTERM'); // timeout passes it on to FreeRADIUS
        const kill = setTimeout(() => killGroup(child), 5000);
        await exited;
        clearTimeout(kill);
        liveRadius.delete(radius);
      })();
      return stopping;
    },
  };
  liveRadius.add(radius);
  const deadline = Date.now() + 10_000;
  while (!/Ready to process requests/.test(out)) {
    if (hasExited || Date.now() > deadline) {
      await radius.stop();
      throw new Error(`FreeRADIUS did not start (${hasExited ? 'exited' : 'timed out'}):\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return radius;
}

/** withRadius runs one scenario step against a fresh FreeRADIUS and always stops it */
async function withRadius<T>(raddb: Raddb, fn: (r: Radius) => Promise<T>): Promise<T> {
  const r = await startRadius(raddb);
  try {
    return await fn(r);
  } catch (e) {
    throw new Error(`${(e as Error).message}\n--- FreeRADIUS log (last 150 lines) ---\n${r.log().split('\n').slice(-150).join('\n')}`);
  } finally {
    await r.stop();
  }
}

interface Attempt {
  /** eapol_test's exit code (0 = authenticated) and its last line, SUCCESS or FAILURE */
  code: number | null;
  verdict: string;
  /** the FreeRADIUS auth log line for this attempt: "Login OK: [id] ..." or "Login incorrect (why): [id] ..." */
  radiusLine: string;
  /** everything FreeRADIUS logged during the attempt */
  radiusLog: string;
  /** performance.now() when eapol_test exited */
  doneAt: number;
  /** timing: set by the OCSP tests, shown with the verdict */
  timing?: string;
}

/** attempt: one EAP-TLS authentication of the device by eapol_test, and FreeRADIUS's log line for it */
async function attempt(radius: Radius, dev: Device): Promise<Attempt> {
  const conf = tmp.write(`eapol/${dev.id}-${next()}.conf`, fill('eapol-test.conf', { IDENTITY: dev.id, CA_CERT: svc.chainPem, CLIENT_CERT: dev.cert, PRIVATE_KEY: dev.key }));
  const from = radius.log().length;
  const r = await runProcess(EAPOL_TEST, ['-c', conf, '-a', '127.0.0.1', '-p', String(radius.port), '-s', RADIUS_SECRET, '-r', '0', '-t', '10'], { timeoutMs: 20_000 });
  const doneAt = performance.now();
  const lines = r.stdout.trim().split('\n');
  const verdict = lines[lines.length - 1]?.trim() ?? '';
  const want = new RegExp(`Login (OK|incorrect)[^\\n]*\\[${dev.id}\\][^\\n]*`);
  const deadline = Date.now() + 3000;
  let m: RegExpExecArray | null = null;
  while (!(m = want.exec(radius.log().slice(from))) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 10));
  return { code: r.code, verdict, radiusLine: m?.[0] ?? '(no FreeRADIUS auth line)', radiusLog: radius.log().slice(from), doneAt };
}

function expectAccepted(a: Attempt, id: string): void {
  expect({ code: a.code, verdict: a.verdict, radius: a.radiusLine, timing: a.timing }).toEqual({
    code: 0,
    verdict: 'SUCCESS',
    radius: expect.stringMatching(new RegExp(`^Login OK: \\[${id}\\]`)),
    timing: a.timing,
  });
}

/** expectRejected: eapol_test failed and FreeRADIUS names the reason (why: a pattern inside "Login incorrect (...)") */
function expectRejected(a: Attempt, id: string, why: RegExp): void {
  expect({ failed: a.code !== 0, verdict: a.verdict, radius: a.radiusLine, timing: a.timing }).toEqual({
    failed: true,
    verdict: 'FAILURE',
    radius: expect.stringMatching(new RegExp(`^Login incorrect \\(.*${why.source}.*\\): \\[${id}\\]`)),
    timing: a.timing,
  });
}

const CRL_REVOKED = /OpenSSL says error 23 : certificate revoked/;
const OCSP_REVOKED = /ocsp: Cert status: revoked/;

// ------------------------------------------------------------------------------------------- setup

beforeAll(async () => {
  assertBuilt();
  for (const [bin, pkg] of [
    [FREERADIUS, 'freeradius'],
    [EAPOL_TEST, 'eapoltest'],
  ])
    if (!fs.existsSync(bin)) throw new Error(`${bin} is missing: install the Debian package ${pkg} (bash scripts/install-test-deps.sh as root)`);
  try {
    fs.accessSync(path.join(RADDB_SOURCE, 'radiusd.conf'), fs.constants.R_OK);
  } catch {
    throw new Error(`${RADDB_SOURCE} is readable only by root and the freerad group: run the test as root or as a member of freerad`);
  }
  tmp = makeTmpDir('device-ca-radius-');
  svc = await startService({
    configYaml: ['est:', '  labels:', '    default: {}', '    server:', '      serverAuth: true', ''].join('\n'),
  });

  // The RADIUS server's own certificate: a device-ca certificate with serverAuth (the supplicant's
  // OpenSSL checks the purpose), enrolled over EST like any device.
  const secret = secretOf(await cli('devices', 'add', 'radius-server', '--owner', 'acme', '--label', 'server'));
  const server = await enroll('radius-server', secret, { label: 'server' });
  const eku = await openssl('x509', '-in', server.cert, '-noout', '-ext', 'extendedKeyUsage');
  expect(eku.stdout).toMatch(/TLS Web Server Authentication/);
  serverKey = server.key;
  serverChain = tmp.write('radius-server-chain.pem', fs.readFileSync(server.cert, 'utf8') + fs.readFileSync(svc.chainPem, 'utf8'));

  const crlCaPath = path.join(tmp.path, 'capath-crl');
  const ocspCaPath = path.join(tmp.path, 'capath-ocsp');
  await exportCrl(crlCaPath);
  // exported once, before any revocation and never again: on the OCSP path the CRL FreeRADIUS holds is
  // stale on purpose, so every rejection there is the OCSP responder's
  await exportCrl(ocspCaPath);
  const allCrlCaPath = path.join(tmp.path, 'capath-all-crl');
  await exportCrl(allCrlCaPath);
  await startOcspTap();
  crlRaddb = await writeRaddb('crl', { ocsp: false, caPath: crlCaPath });
  ocspRaddb = await writeRaddb('ocsp', { ocsp: true, caPath: ocspCaPath });
  allCrlRaddb = await writeRaddb('all-crl', { ocsp: false, caPath: allCrlCaPath, checkAllCrl: true });
}, 60_000);

afterAll(async () => {
  await Promise.all([...liveRadius].map((r) => r.stop()));
  await new Promise((resolve) => (ocspTap ? ocspTap.close(resolve) : resolve(undefined)));
  await svc?.stop();
  tmp?.cleanup();
});

// ------------------------------------------------------------------------------------------- CRL path

describe('CRL path: crl export --dir as FreeRADIUS ca_path, check_crl = yes, restart after export', () => {
  // a new certificate is on none of the CRLs already in ca_path (exported in beforeAll, valid for 24 h),
  // so each story starts with an accept and exports only after a change
  test('an enrolled device is accepted; after devices retire and a re-export it is rejected', async () => {
    const dev = await newDevice('dev-1');
    await withRadius(crlRaddb, async (r) => expectAccepted(await attempt(r, dev), dev.id));

    expect(await cli('devices', 'retire', dev.id)).toMatch(new RegExp(`^dev-1 retired; certificates: 0*${dev.serial.toLowerCase()} revoked \\(cessationOfOperation\\)`));
    await exportCrl(crlRaddb.caPath);
    expect(await crlEntry(crlRaddb.caPath, dev.serial)).toMatch(/CRL Reason Code:\s*Cessation Of Operation/);
    await withRadius(crlRaddb, async (r) => expectRejected(await attempt(r, dev), dev.id, CRL_REVOKED));
  });

  test('after devices transfer the old certificate is rejected; re-enrolled with the new secret (new key, O=globex) it is accepted', async () => {
    const dev = await newDevice('dev-2');
    await withRadius(crlRaddb, async (r) => expectAccepted(await attempt(r, dev), dev.id));

    const secret = secretOf(await cli('devices', 'transfer', dev.id, '--to', 'globex'));
    await exportCrl(crlRaddb.caPath);
    expect(await crlEntry(crlRaddb.caPath, dev.serial)).toMatch(/CRL Reason Code:\s*Affiliation Changed/);
    await withRadius(crlRaddb, async (r) => expectRejected(await attempt(r, dev), dev.id, CRL_REVOKED));

    const again = await enroll(dev.id, secret);
    expect(again.subject).toBe('O=globex\nCN=dev-2');
    expect(again.serial).not.toBe(dev.serial);
    await exportCrl(crlRaddb.caPath);
    expect(await crlEntry(crlRaddb.caPath, again.serial)).toBeNull();
    await withRadius(crlRaddb, async (r) => {
      expectAccepted(await attempt(r, again), dev.id);
      expectRejected(await attempt(r, dev), dev.id, CRL_REVOKED); // the acme certificate stays revoked
    });
  });

  test('devices suspend puts the certificate on hold (rejected); after resume and a re-export it is off the CRL and accepted', async () => {
    const dev = await newDevice('dev-3');
    await withRadius(crlRaddb, async (r) => expectAccepted(await attempt(r, dev), dev.id));

    expect(await cli('devices', 'suspend', dev.id)).toMatch(/^dev-3 suspended; certificates: [0-9a-f]+ revoked \(certificateHold\)/);
    await exportCrl(crlRaddb.caPath);
    expect(await crlEntry(crlRaddb.caPath, dev.serial)).toMatch(/CRL Reason Code:\s*Certificate Hold/);
    await withRadius(crlRaddb, async (r) => expectRejected(await attempt(r, dev), dev.id, CRL_REVOKED));

    expect(await cli('devices', 'resume', dev.id)).toMatch(/^dev-3 active/);
    await exportCrl(crlRaddb.caPath);
    expect(await crlEntry(crlRaddb.caPath, dev.serial)).toBeNull();
    await withRadius(crlRaddb, async (r) => expectAccepted(await attempt(r, dev), dev.id));
  });
});

// ------------------------------------------------------------------------------------------ OCSP path

describe('OCSP path: FreeRADIUS asks device-ca with a nonce on every handshake; no export, no restart', () => {
  /**
   * nextAttempt: the first attempt after the command returned, with its OCSP exchange. The service-side
   * latency (device-ca's answer to that exchange) must be under a second; the time from the command's
   * return to eapol_test's verdict is reported with it (it adds the supplicant's and FreeRADIUS's own work).
   */
  async function nextAttempt(r: Radius, dev: Device, commandReturnedAt: number): Promise<Attempt> {
    const from = ocspExchanges.length;
    const a = await attempt(r, dev);
    const x = expectOcspExchange(ocspExchanges.slice(from), commandReturnedAt);
    a.timing = `device-ca answered in ${x.ms.toFixed(0)} ms; verdict ${(a.doneAt - commandReturnedAt).toFixed(0)} ms after the command returned`;
    return a;
  }

  async function rejectedAtOnce(r: Radius, dev: Device, commandReturnedAt: number, reason: string): Promise<void> {
    const a = await nextAttempt(r, dev, commandReturnedAt);
    expectRejected(a, dev.id, OCSP_REVOKED);
    expect(a.radiusLog).toContain(`ocsp: Reason: ${reason}`);
  }

  test('an enrolled device is accepted (nonce echoed); after devices retire the very next attempt is rejected', async () => {
    const dev = await newDevice('dev-4');
    await withRadius(ocspRaddb, async (r) => {
      const from = ocspExchanges.length;
      expectAccepted(await attempt(r, dev), dev.id);
      expectOcspExchange(ocspExchanges.slice(from), 0);

      const out = await cli('devices', 'retire', dev.id);
      const returned = performance.now();
      expect(out).toMatch(/^dev-4 retired; certificates: [0-9a-f]+ revoked \(cessationOfOperation\)/);
      await rejectedAtOnce(r, dev, returned, 'cessationOfOperation');
    });
  });

  test('after devices transfer the very next attempt is rejected; re-enrolled with the new secret (same key, O=globex) it is accepted', async () => {
    const dev = await newDevice('dev-5');
    await withRadius(ocspRaddb, async (r) => {
      expectAccepted(await attempt(r, dev), dev.id);

      const out = await cli('devices', 'transfer', dev.id, '--to', 'globex');
      const returned = performance.now();
      const secret = secretOf(out);
      await rejectedAtOnce(r, dev, returned, 'affiliationChanged');

      const again = await enroll(dev.id, secret, { key: dev.key });
      expect(again.subject).toBe('O=globex\nCN=dev-5');
      expect(again.serial).not.toBe(dev.serial);
      expectAccepted(await attempt(r, again), dev.id);
      expectRejected(await attempt(r, dev), dev.id, OCSP_REVOKED); // same key, old certificate: still revoked
    });
  });

  test('devices suspend: the next attempt is rejected (certificateHold); devices resume: the next one is accepted', async () => {
    const dev = await newDevice('dev-6');
    await withRadius(ocspRaddb, async (r) => {
      expectAccepted(await attempt(r, dev), dev.id);

      const out = await cli('devices', 'suspend', dev.id);
      const returned = performance.now();
      expect(out).toMatch(/^dev-6 suspended/);
      await rejectedAtOnce(r, dev, returned, 'certificateHold');

      expect(await cli('devices', 'resume', dev.id)).toMatch(/^dev-6 active/);
      expectAccepted(await nextAttempt(r, dev, performance.now()), dev.id);
    });
  });
});

// ---------------------------------------------------------------- check_all_crl: the issuing CA revoked

/**
 * check_all_crl = yes asks OpenSSL for a CRL of every CA in the chain (X509_V_FLAG_CRL_CHECK_ALL): the
 * root CRL that `crl export` writes beside the issuing CA's shards is what lets a device in, and
 * `ca revoke-issuing` then shuts out every device at once (issue 15). FreeRADIUS 3.2 also sets
 * X509_V_FLAG_PARTIAL_CHAIN, so the chain stops at the first CA in ca_path: the directory must hold the
 * root alone (`crl export --root-only`) and devices send their chain. Runs last: the issuing CA stays
 * revoked for the rest of the service's life.
 */
describe('check_all_crl = yes: crl export --dir --root-only with the root CRL; ca revoke-issuing rejects every device', () => {
  /** rootCrlFile: the root CRL in an exported directory, <hash of the root's subject>.r0 */
  async function rootCrlFile(dir: string): Promise<string> {
    const hash = (await openssl('x509', '-in', path.join(svc.dataDir, 'ca', 'device-ca-root.pem'), '-noout', '-subject_hash')).stdout.trim();
    const f = path.join(dir, `${hash}.r0`);
    expect((await openssl('crl', '-in', f, '-noout', '-issuer')).stdout).toMatch(/Root CA/);
    return f;
  }

  async function exportRootOnly(dir: string): Promise<void> {
    expect(await cli('crl', 'export', '--dir', dir, '--root-only')).toMatch(/^exported \d+ CRLs and 1 CA certificates to /);
  }

  /** sendingChain: the device with a client_cert file holding its certificate and the issuing CA's */
  function sendingChain(d: Device): Device {
    const issuing = fs.readFileSync(path.join(svc.dataDir, 'ca', 'device-ca-issuing.pem'), 'utf8');
    return { ...d, cert: tmp.write(`certs/${d.id}-chain-${next()}.pem`, fs.readFileSync(d.cert, 'utf8') + issuing) };
  }

  test('devices sending their chain are accepted; without the root CRL, or with the issuing CA as an anchor, rejected at depth 1; after revoke-issuing every device is rejected', async () => {
    const devs = [sendingChain(await newDevice('dev-7')), sendingChain(await newDevice('dev-8'))];
    // beforeAll exported the full directory here: --root-only also takes the issuing CA certificate out
    await exportRootOnly(allCrlRaddb.caPath);
    expect(fs.readdirSync(allCrlRaddb.caPath).filter((f) => /^[0-9a-f]{8}\.\d+$/.test(f))).toHaveLength(1);
    await withRadius(allCrlRaddb, async (r) => {
      for (const d of devs) expectAccepted(await attempt(r, d), d.id);
    });

    // the same directory without the root CRL: what every device got before the root published one
    const noRoot = path.join(tmp.path, 'capath-no-root-crl');
    fs.cpSync(allCrlRaddb.caPath, noRoot, { recursive: true });
    fs.rmSync(path.join(noRoot, path.basename(await rootCrlFile(noRoot))));
    await withRadius(await writeRaddb('no-root-crl', { ocsp: false, caPath: noRoot, checkAllCrl: true }), async (r) => {
      expectRejected(await attempt(r, devs[0]), devs[0].id, /unable to get certificate CRL/);
    });
    // the full directory (issuing CA as an anchor): FreeRADIUS's partial chain ends at the issuing CA
    const full = path.join(tmp.path, 'capath-full');
    await exportCrl(full);
    await withRadius(await writeRaddb('full', { ocsp: false, caPath: full, checkAllCrl: true }), async (r) => {
      expectRejected(await attempt(r, devs[0]), devs[0].id, /unable to get certificate CRL/);
    });

    expect((await svc.cli(['ca', 'revoke-issuing', 'device-ca-issuing', '--reason', 'keyCompromise'])).code).toBe(0);
    await exportRootOnly(allCrlRaddb.caPath);
    const rootCrl = await openssl('crl', '-in', await rootCrlFile(allCrlRaddb.caPath), '-noout', '-text');
    expect(rootCrl.stdout).toMatch(/CRL Reason Code:\s*Key Compromise/);
    await withRadius(allCrlRaddb, async (r) => {
      for (const d of devs) expectRejected(await attempt(r, d), d.id, CRL_REVOKED);
    });
  });
});
