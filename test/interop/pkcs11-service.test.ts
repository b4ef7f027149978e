import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { ChildProcess, spawn } from 'node:child_process';
import * as http from 'node:http';
import * as https from 'node:https';
import * as path from 'node:path';
import { children, readOne } from '../../src/der/der-reader';
import { ENROLLMENT_SECRET_KEY_FILE } from '../../src/keys/enrollment-secret-key';
import { buildCsr } from '../fixtures/build-csr';
import { freePorts } from '../helpers/ports';
import { CLI_JS, ProcessResult, REPO_ROOT, assertBuilt, cleanEnv, runCli, runProcess } from '../helpers/service-process';
import { SoftHsm, createSoftHsm } from '../helpers/softhsm';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * The service with its CA keys on a PKCS#11 token, as an operator runs it: the quick path
 * (DEVICE_CA_PKCS11_MODULE/TOKEN/PIN on an empty data directory), enrollment, OCSP and CRL signed on the
 * token and judged by openssl, a restart, 100 concurrent enrollments against two workers, start-up faults,
 * an offline root on a second token, and adopting a key made by pkcs11-tool. One throw-away SoftHSM2 token
 * store (tokens "ca" and "root") serves the file; every service is a child process stopped by its pid.
 */

jest.setTimeout(60_000);

let hsm: SoftHsm;
let tmp: TmpDir;
let seq = 0;
const next = (): number => ++seq;
const started: Svc[] = [];

/** p11Env: the quick path of the public contract, for token "ca" */
const p11Env = (): Record<string, string> => ({
  DEVICE_CA_PKCS11_MODULE: hsm.module,
  DEVICE_CA_PKCS11_TOKEN: 'ca',
  DEVICE_CA_PKCS11_PIN: hsm.pin,
  SOFTHSM2_CONF: hsm.conf,
});

beforeAll(() => {
  assertBuilt();
  hsm = createSoftHsm({ labels: ['ca', 'root'] });
  tmp = makeTmpDir('device-ca-p11svc-');
});

afterAll(async () => {
  await Promise.all(started.map((s) => s.stop()));
  tmp?.cleanup();
  hsm?.cleanup();
});

// ------------------------------------------------------------------------------------------- helpers

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function must(file: string, args: string[], input?: string | Buffer): Promise<ProcessResult> {
  const r = await runProcess(file, args, { input });
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} exited ${r.code}:\n${r.stderr}${r.stdout}`);
  return r;
}
const openssl = (...args: string[]): Promise<ProcessResult> => must('openssl', args);

/** Svc: a service child process on ports this file chose (so a restart can keep them and DEVICE_CA_PUBLIC_URL) */
interface Svc {
  pid: number;
  dataDir: string;
  httpPort: number;
  httpsPort: number;
  /** env: the DEVICE_CA_* (and SOFTHSM2_CONF) environment it runs with; CLI commands use the same */
  env: Record<string, string>;
  chainPem: string;
  est: string;
  http: string;
  logs(): string;
  /** stop: SIGTERM to the pid, wait; SIGKILL to its process group after 15 s. Resolves to the exit code. */
  stop(): Promise<number | null>;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) {
    try {
      process.kill(-c.pid!, 'SIGKILL');
    } catch {
      // gone
    }
  }
});

function healthz(url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

/**
 * serve spawns `node dist/cli/main.js serve` like test/helpers/service-process.ts's startService, but on
 * ports given here, so a restart keeps them and DEVICE_CA_PUBLIC_URL can name 127.0.0.1:<http port>.
 */
async function serve(o: { env: Record<string, string>; dataDir: string; ports?: [number, number]; workers?: number; configYaml?: string }): Promise<Svc> {
  const [httpsPort, httpPort] = o.ports ?? ((await freePorts(2)) as [number, number]);
  const env: Record<string, string> = {
    ...o.env,
    DEVICE_CA_DATA: o.dataDir,
    DEVICE_CA_HTTPS_PORT: String(httpsPort),
    DEVICE_CA_HTTP_PORT: String(httpPort),
    DEVICE_CA_PUBLIC_URL: `http://127.0.0.1:${httpPort}`,
    DEVICE_CA_WORKERS: String(o.workers ?? 1),
    DEVICE_CA_LOG_LEVEL: 'warn',
  };
  if (o.configYaml !== undefined) env.DEVICE_CA_CONFIG = tmp.write(`config/${next()}.yaml`, o.configYaml);
  const child = spawn(process.execPath, [CLI_JS, 'serve'], { env: cleanEnv(env), cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  live.add(child);
  let output = '';
  const collect = (b: Buffer) => void (output += b.toString('utf8'));
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => (live.delete(child), (exitCode = code), resolve(code))));
  let stopping: Promise<number | null> | undefined;
  const svc: Svc = {
    pid: child.pid!,
    dataDir: o.dataDir,
    httpPort,
    httpsPort,
    env,
    chainPem: path.join(o.dataDir, 'ca', 'chain.pem'),
    est: `https://localhost:${httpsPort}/.well-known/est`,
    http: `http://127.0.0.1:${httpPort}`,
    logs: () => output,
    stop() {
      stopping ??= (async () => {
        if (exitCode === undefined) process.kill(child.pid!, 'SIGTERM');
        const kill = setTimeout(() => {
          try {
            process.kill(-child.pid!, 'SIGKILL');
          } catch {
            // gone
          }
        }, 15_000);
        const code = await exited;
        clearTimeout(kill);
        return code;
      })();
      return stopping;
    },
  };
  started.push(svc);
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exitCode !== undefined) throw new Error(`device-ca serve exited (code ${exitCode}) before it was healthy:\n${output}`);
    if ((await healthz(`${svc.http}/healthz`)) === 200) return svc;
    if (Date.now() > deadline) {
      await svc.stop();
      throw new Error(`device-ca serve was not healthy within 30 s:\n${output}`);
    }
    await sleep(100);
  }
}

interface KeyRow {
  role: string;
  ca: string;
  ref: string;
  certificate: string;
  spkiSha256: string;
}

async function keysList(env: Record<string, string>): Promise<KeyRow[]> {
  const r = await runCli(['keys', 'list', '--json'], env);
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
  return JSON.parse(r.stdout) as KeyRow[];
}

/** uriAttr: one attribute of a PKCS#11 URI, percent-decoded (RFC 7512), as raw bytes */
function uriAttr(uri: string, name: string): Buffer | undefined {
  const m = new RegExp(`[:;]${name}=([^;?]*)`).exec(uri);
  if (!m) return undefined;
  return Buffer.from(
    m[1].replace(/%([0-9a-fA-F]{2})|(.)/g, (_, h: string | undefined, c: string | undefined) => (h ? String.fromCharCode(parseInt(h, 16)) : c!)),
    'latin1',
  );
}

/** privateKeyBlocks: `pkcs11-tool --list-objects --type privkey` after login, one entry per object, by CKA_ID hex */
function privateKeyBlocks(token: string): Map<string, string> {
  const out = hsm.pkcs11Tool(['--token-label', token, '--login', '--pin', hsm.pin, '--list-objects', '--type', 'privkey']);
  const blocks = new Map<string, string>();
  for (const b of out.split(/\n(?=\S)/)) {
    const id = /ID:\s*([0-9a-f]+)/.exec(b)?.[1];
    if (id) blocks.set(id, b);
  }
  return blocks;
}

/** pubkeyFromToken: the public key as pkcs11-tool reads it off the token (DER SubjectPublicKeyInfo) */
function pubkeyFromToken(token: string, idHex: string): Buffer {
  const f = tmp.file(`p11/${next()}.spki.der`);
  hsm.pkcs11Tool(['--token-label', token, '--read-object', '--type', 'pubkey', '--id', idHex, '-o', f]);
  return fs.readFileSync(f);
}

const spkiOfCertFile = (file: string): Buffer => new crypto.X509Certificate(fs.readFileSync(file)).publicKey.export({ type: 'spki', format: 'der' });

async function register(s: Svc, id: string): Promise<string> {
  const r = await runCli(['devices', 'add', id, '--owner', 'acme'], s.env);
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
  return r.stdout.trim();
}

/**
 * enroll: the README recipe: openssl makes the key and CSR, curl posts it with the one-time secret, and
 * openssl turns the certs-only reply into dev.crt. Returns the certificate file and its key.
 */
async function enroll(s: Svc, id: string): Promise<{ cert: string; key: string }> {
  const secret = await register(s, id);
  const dir = path.dirname(tmp.file(`enroll/${id}/dev.key`));
  const key = path.join(dir, 'dev.key');
  const der = path.join(dir, 'dev.der');
  await openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-subj', `/CN=${id}`, '-outform', 'DER', '-out', der);
  const b64 = path.join(dir, 'dev.b64');
  fs.writeFileSync(b64, (await must('base64', [der])).stdout);
  const reply = path.join(dir, 'reply.b64');
  const c = await must('curl', [
    '-sS',
    '--cacert',
    s.chainPem,
    '-u',
    `${id}:${secret}`,
    '-H',
    'Content-Type: application/pkcs10',
    '--data-binary',
    `@${b64}`,
    '-o',
    reply,
    '-w',
    '%{http_code}',
    `${s.est}/simpleenroll`,
  ]);
  expect(c.stdout).toBe('200');
  const p7 = path.join(dir, 'reply.p7');
  fs.writeFileSync(p7, (await must('base64', ['-d', reply])).stdoutBytes);
  const cert = path.join(dir, 'dev.crt');
  fs.writeFileSync(cert, (await openssl('pkcs7', '-inform', 'DER', '-in', p7, '-print_certs')).stdout);
  return { cert, key };
}

async function verifyChain(chainPem: string, cert: string): Promise<string> {
  const v = await runProcess('openssl', ['verify', '-CAfile', chainPem, cert]);
  return `${v.stdout}${v.stderr}`.trim();
}

/** ocspStatus: `openssl ocsp` against the service (with a nonce, so the reply is signed live on the token) */
async function ocspStatus(s: Svc, cert: string): Promise<{ verified: boolean; status: string; text: string }> {
  const issuer = path.join(s.dataDir, 'ca', 'device-ca-issuing.pem');
  const r = await runProcess('openssl', ['ocsp', '-issuer', issuer, '-cert', cert, '-url', `${s.http}/ocsp`, '-CAfile', s.chainPem]);
  const text = `${r.stdout}${r.stderr}`;
  const status = new RegExp(`${cert.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: (\\w+)`).exec(text)?.[1] ?? '(none)';
  return { verified: /Response verify OK/.test(text) && r.code === 0, status, text };
}

// ------------------------------------------------------------------------- quick path, one token "ca"

describe('quick path: every CA key on token "ca"', () => {
  let svc: Svc;
  let dataDir: string;
  let ports: [number, number];
  let firstCert: string;

  beforeAll(async () => {
    dataDir = tmp.file('quick/data');
    ports = (await freePorts(2)) as [number, number];
    svc = await serve({ env: p11Env(), dataDir, ports, workers: 2 });
  });

  test('keys list: root, issuing and OCSP responder keys by pkcs11: URI on token "ca"; sensitive, never extractable; no key files', async () => {
    const rows = await keysList(svc.env);
    expect(rows.map((r) => r.role).sort()).toEqual(['issuing', 'ocsp', 'root']);
    const blocks = privateKeyBlocks('ca');
    for (const r of rows) {
      expect(r.ref).toMatch(/^pkcs11:token=ca;object=[^;]+;id=(%[0-9a-f]{2})+;type=private$/);
      const idHex = uriAttr(r.ref, 'id')!.toString('hex');
      const block = blocks.get(idHex);
      expect(block).toBeDefined();
      expect(block).toContain(`label:      ${uriAttr(r.ref, 'object')!.toString('utf8')}`);
      expect(block).toMatch(/Access:\s*sensitive, always sensitive, never extractable, local/);
      expect(block).not.toMatch(/Access:.*(^|, )extractable/m);
      expect(block).toMatch(/Usage:\s*sign\n/); // no decrypt, unwrap or derive on a CA key
      // the public key on the token is the one the role's certificate carries
      const spki = pubkeyFromToken('ca', idHex);
      expect(crypto.createHash('sha256').update(spki).digest('hex')).toBe(r.spkiSha256);
      // root and issuing: the operator export in <data>/ca; the responder's certificate is only in the store
      // (spkiSha256 above is computed from the certificate there)
      if (r.role !== 'ocsp') expect(spkiOfCertFile(r.certificate)).toEqual(spki);
      else expect(r.certificate).toBe('store:ocsp-responder');
    }
    // no private key of the CA on disk; the one file is the server key one-time secrets are stored under (README, Security)
    const keysDir = path.join(dataDir, 'keys');
    expect(fs.existsSync(keysDir) ? fs.readdirSync(keysDir) : []).toEqual([ENROLLMENT_SECRET_KEY_FILE]);
    expect(fs.statSync(path.join(keysDir, ENROLLMENT_SECRET_KEY_FILE)).mode & 0o077).toBe(0);
  });

  test('store-only CLI commands (devices add/show/retire, tokens create) run with no PIN set: they never log in to the token', async () => {
    const env = { ...svc.env, DEVICE_CA_PKCS11_PIN: '' };
    const add = await runCli(['devices', 'add', 'p11-nopin', '--owner', 'acme'], env);
    expect({ code: add.code, stderr: add.stderr, secret: /^[A-Za-z0-9_-]{27}$/.test(add.stdout.trim()) }).toEqual({ code: 0, stderr: '', secret: true });
    const token = await runCli(['tokens', 'create', '--scope', 'operator'], env);
    expect({ code: token.code, stderr: token.stderr, token: /^dca_/.test(token.stdout.trim()) }).toEqual({ code: 0, stderr: '', token: true });
    const retire = await runCli(['devices', 'retire', 'p11-nopin'], env);
    expect({ code: retire.code, stderr: retire.stderr }).toEqual({ code: 0, stderr: '' });
    const show = await runCli(['devices', 'show', 'p11-nopin', '--json'], env);
    expect(JSON.parse(show.stdout).state).toBe('retired');
  });

  test("enrollment over EST verifies; OCSP good, then revoked after retire; the CRL at the certificate's URL lists it", async () => {
    const { cert } = await enroll(svc, 'p11-dev-1');
    firstCert = cert;
    expect(await verifyChain(svc.chainPem, cert)).toBe(`${cert}: OK`);

    const good = await ocspStatus(svc, cert);
    expect({ verified: good.verified, status: good.status }).toEqual({ verified: true, status: 'good' });

    const retire = await runCli(['devices', 'retire', 'p11-dev-1'], svc.env);
    expect({ code: retire.code, stderr: retire.stderr }).toEqual({ code: 0, stderr: '' });
    const revoked = await ocspStatus(svc, cert);
    expect({ verified: revoked.verified, status: revoked.status }).toEqual({ verified: true, status: 'revoked' });
    expect(revoked.text).toMatch(/Reason: cessationOfOperation/);

    const ext = (await openssl('x509', '-in', cert, '-noout', '-serial', '-ext', 'crlDistributionPoints')).stdout;
    const serial = /serial=([0-9A-F]+)/.exec(ext)![1];
    const url = /URI:(\S+\.crl)/.exec(ext)![1];
    expect(url.startsWith(`${svc.http}/crl/`)).toBe(true);
    // the CRL is re-issued within crl.checkInterval (2 s) of a revocation made through the CLI
    let listed = false;
    let verdict = '';
    const crlFile = tmp.file(`crl/${next()}.crl`);
    for (let i = 0; i < 40 && !listed; i++) {
      const c = await must('curl', ['-sS', '-o', crlFile, '-w', '%{http_code}', url]);
      expect(c.stdout).toBe('200');
      const v = await runProcess('openssl', ['crl', '-inform', 'DER', '-in', crlFile, '-CAfile', svc.chainPem, '-noout', '-text']);
      verdict = v.stderr.trim();
      listed = v.code === 0 && new RegExp(`Serial Number: 0*${serial.replace(/^0+/, '')}\\n`).test(v.stdout);
      if (!listed) await sleep(250);
    }
    expect(verdict).toBe('verify OK');
    expect(listed).toBe(true);
  });

  test('restart (SIGTERM, same environment): same issuing CA certificate, keeps issuing under the same chain', async () => {
    const before = {
      served: (await must('curl', ['-sS', `${svc.http}/ca/device-ca-issuing.crt`])).stdoutBytes,
      file: fs.readFileSync(path.join(dataDir, 'ca', 'device-ca-issuing.crt')),
      chain: fs.readFileSync(svc.chainPem),
    };
    expect(await svc.stop()).toBe(0);
    svc = await serve({ env: p11Env(), dataDir, ports, workers: 2 });
    const after = (await must('curl', ['-sS', `${svc.http}/ca/device-ca-issuing.crt`])).stdoutBytes;
    expect(after.equals(before.served)).toBe(true);
    expect(after.equals(before.file)).toBe(true);
    expect(fs.readFileSync(svc.chainPem).equals(before.chain)).toBe(true);
    expect((await keysList(svc.env)).every((r) => r.ref.startsWith('pkcs11:token=ca;'))).toBe(true);

    const { cert } = await enroll(svc, 'p11-dev-2');
    const chainBefore = tmp.write('restart/chain-before.pem', before.chain);
    expect(await verifyChain(chainBefore, cert)).toBe(`${cert}: OK`);
    // the certificate issued before the restart still checks out against the same chain
    expect(await verifyChain(chainBefore, firstCert)).toBe(`${firstCert}: OK`);
  });

  test('100 concurrent enrollments against 2 workers: all 200, all verify, no 5xx, no CKR_OPERATION_ACTIVE', async () => {
    const N = 100;
    const ca = fs.readFileSync(svc.chainPem);
    const tok = await runCli(['tokens', 'create', '--scope', 'operator'], svc.env);
    expect(tok.code).toBe(0);
    const bearer = tok.stdout.trim();

    // requests made beforehand: distinct devices, P-256 keys and CSRs
    const ids = Array.from({ length: N }, (_, i) => `p11-stress-${String(i).padStart(3, '0')}`);
    const csrs = ids.map((id) => buildCsr({ privateKey: crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, subject: [{ type: 'CN', value: id }] }));

    const request = (agent: https.Agent, method: string, p: string, headers: Record<string, string>, body: string): Promise<{ status: number; body: string }> =>
      new Promise((resolve, reject) => {
        const req = https.request(
          { host: '127.0.0.1', servername: 'localhost', port: svc.httpsPort, method, path: p, agent, headers: { ...headers, 'Content-Length': String(Buffer.byteLength(body)) } },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('latin1') }));
            res.on('error', reject);
          },
        );
        req.on('error', reject);
        req.end(body);
      });

    // register through the admin API (a CLI process per device would take most of the budget)
    const admin = new https.Agent({ ca, keepAlive: true, maxSockets: 8 });
    const secrets: string[] = [];
    try {
      for (let i = 0; i < N; i += 10) {
        const batch = await Promise.all(
          ids.slice(i, i + 10).map((id) => request(admin, 'POST', '/api/v1/devices', { Authorization: `Bearer ${bearer}`, 'Content-Type': 'application/json' }, JSON.stringify({ id, owner: 'acme' }))),
        );
        for (const r of batch) {
          expect(r.status).toBe(201);
          secrets.push((JSON.parse(r.body) as { secret: string }).secret);
        }
      }
    } finally {
      admin.destroy();
    }

    const agent = new https.Agent({ ca, keepAlive: false, maxSockets: Infinity });
    let replies: { status: number; body: string }[];
    const t0 = Date.now();
    try {
      replies = await Promise.all(
        ids.map((id, i) =>
          request(
            agent,
            'POST',
            '/.well-known/est/simpleenroll',
            { Authorization: `Basic ${Buffer.from(`${id}:${secrets[i]}`).toString('base64')}`, 'Content-Type': 'application/pkcs10' },
            csrs[i].toString('base64').replace(/(.{64})/g, '$1\n') + '\n',
          ),
        ),
      );
    } finally {
      agent.destroy();
    }
    const seconds = (Date.now() - t0) / 1000;
    const statuses = replies.reduce<Record<number, number>>((m, r) => ((m[r.status] = (m[r.status] ?? 0) + 1), m), {});
    expect(statuses).toEqual({ 200: N });

    // the certificate of each certs-only PKCS#7: ContentInfo { oid, [0] SignedData { v, algs, encap, [0] certs, ... } }
    const files = replies.map((r, i) => {
      const p7 = readOne(Buffer.from(r.body, 'base64'), 0x30);
      const signedData = readOne(children(p7)[1].value, 0x30);
      const certs = children(signedData).find((t) => t.tag === 0xa0)!;
      const der = children(certs)[0].full;
      const x = new crypto.X509Certificate(der);
      expect(x.subject).toMatch(new RegExp(`CN=${ids[i]}$`, 'm'));
      return tmp.write(`stress/${ids[i]}.pem`, x.toString());
    });
    const v = await runProcess('openssl', ['verify', '-CAfile', svc.chainPem, ...files]);
    expect({ code: v.code, notOk: `${v.stdout}${v.stderr}`.split('\n').filter((l) => l && !/ OK$/.test(l)) }).toEqual({ code: 0, notOk: [] });
    expect(
      v.stdout
        .trim()
        .split('\n')
        .filter((l) => / OK$/.test(l)),
    ).toHaveLength(N);

    const log = svc.logs();
    expect(log).not.toMatch(/CKR_OPERATION_ACTIVE/);
    expect(log).not.toMatch(/"level":(50|60)/);
    process.stderr.write(`pkcs11-service: ${N} concurrent enrollments (2 workers, keys on SoftHSM) in ${seconds.toFixed(2)} s\n`);
  }, 90_000);

  test('ca rollover makes the new issuing key on the token (role issuing): sensitive, never extractable, its public key in the new CA certificate', async () => {
    const r = await runCli(['ca', 'rollover', '--json'], svc.env);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    const out = JSON.parse(r.stdout) as { name: string; key: string };
    expect(out.name).toBe('device-ca-issuing-2');
    expect(out.key).toMatch(/^pkcs11:token=ca;object=[^;]+;id=(%[0-9a-f]{2})+;type=private$/);
    const idHex = uriAttr(out.key, 'id')!.toString('hex');
    const block = privateKeyBlocks('ca').get(idHex);
    expect(block).toMatch(/Access:\s*sensitive, always sensitive, never extractable, local/);
    expect(spkiOfCertFile(path.join(dataDir, 'ca', 'device-ca-issuing-2.pem'))).toEqual(pubkeyFromToken('ca', idHex));
  });

  test('ca rollover-root makes the new root key on the token (role root): sensitive, never extractable, its public key in the new root certificate', async () => {
    const r = await runCli(['ca', 'rollover-root', '--json'], svc.env);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    const out = JSON.parse(r.stdout) as { name: string; key: string; replaces: string };
    expect(out).toMatchObject({ name: 'device-ca-root-2', replaces: 'device-ca-root' });
    expect(out.key).toMatch(/^pkcs11:token=ca;object=[^;]+;id=(%[0-9a-f]{2})+;type=private$/);
    const idHex = uriAttr(out.key, 'id')!.toString('hex');
    expect(privateKeyBlocks('ca').get(idHex)).toMatch(/Access:\s*sensitive, always sensitive, never extractable, local/);
    expect(spkiOfCertFile(path.join(dataDir, 'ca', 'device-ca-root-2.pem'))).toEqual(pubkeyFromToken('ca', idHex));
    // the link certificates, signed on the token by the old and the new root key, verify under the root each names as issuer
    const links = fs.readFileSync(path.join(dataDir, 'ca', 'root-links.pem'), 'utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g)!;
    expect(links).toHaveLength(2);
    // OldWithNew under the old root, NewWithOld under the new one
    for (const [root, i] of [
      ['device-ca-root.pem', 0],
      ['device-ca-root-2.pem', 1],
    ] as const) {
      const v = await runProcess('openssl', ['verify', '-CAfile', path.join(dataDir, 'ca', root), tmp.write(`link-${i}.pem`, links[i])]);
      expect(v.stdout).toContain(': OK');
    }
  });

  afterAll(async () => {
    await svc?.stop();
  });
});

// ----------------------------------------------------------------------------------- start-up faults

describe('start-up faults: exit at once naming the problem and the setting; nothing in the data directory', () => {
  const FAST_MS = 8_000;

  async function serveFails(env: Record<string, string | undefined>): Promise<{ code: number | null; ms: number; stderr: string; dataDir: string[] }> {
    const dataDir = tmp.file(`fault-${next()}/data`);
    const [a, b] = await freePorts(2);
    const t0 = Date.now();
    const r = await runCli(
      ['serve'],
      { DEVICE_CA_DATA: dataDir, DEVICE_CA_HTTPS_PORT: String(a), DEVICE_CA_HTTP_PORT: String(b), DEVICE_CA_WORKERS: '2', DEVICE_CA_LOG_LEVEL: 'warn', ...env },
      { timeoutMs: 20_000 },
    );
    return { code: r.code, ms: Date.now() - t0, stderr: r.stderr, dataDir: fs.existsSync(dataDir) ? fs.readdirSync(dataDir) : [] };
  }

  test('wrong PIN: says so, is not retried, and the token is not locked', async () => {
    const r = await serveFails({ ...p11Env(), DEVICE_CA_PKCS11_PIN: '9999' });
    // the service did present the PIN (SoftHSM flags the failed C_Login), and the token is not locked
    expect(hsm.pkcs11Tool(['--token-label', 'ca', '-L'])).toMatch(/token flags\s*:.*user PIN count low/);
    expect(hsm.pkcs11Tool(['--token-label', 'ca', '-L'])).not.toMatch(/PIN locked|PIN final try/i);
    // a correct login still works (pkcs11-tool exits non-zero on a failed C_Login), and clears the flag
    expect(() => hsm.pkcs11Tool(['--token-label', 'ca', '--login', '--pin', hsm.pin, '--list-objects'])).not.toThrow();
    expect(hsm.pkcs11Tool(['--token-label', 'ca', '-L'])).not.toMatch(/PIN (locked|final try|count low)/i);
    expect({
      failed: r.code !== 0 && r.code !== null,
      fast: r.ms < FAST_MS,
      problem: /wrong PIN/.test(r.stderr) && /not retried/.test(r.stderr),
      setting: /DEVICE_CA_PKCS11_PIN/.test(r.stderr),
      dataDir: r.dataDir,
    }).toEqual({ failed: true, fast: true, problem: true, setting: true, dataDir: [] });
  });

  test('module path that does not exist: names keys.pkcs11.module / DEVICE_CA_PKCS11_MODULE', async () => {
    const missing = path.join(tmp.path, 'no-such-dir', 'libsofthsm2.so');
    const r = await serveFails({ ...p11Env(), DEVICE_CA_PKCS11_MODULE: missing });
    expect({
      failed: r.code !== 0 && r.code !== null,
      fast: r.ms < FAST_MS,
      problem: r.stderr.includes(missing) && /not found|does not exist|no such file/i.test(r.stderr),
      setting: /keys\.pkcs11\.module|DEVICE_CA_PKCS11_MODULE/.test(r.stderr),
      dataDir: r.dataDir,
    }).toEqual({ failed: true, fast: true, problem: true, setting: true, dataDir: [] });
  });

  test('unknown token label: names the label, the tokens present and keys.pkcs11.token / DEVICE_CA_PKCS11_TOKEN', async () => {
    const r = await serveFails({ ...p11Env(), DEVICE_CA_PKCS11_TOKEN: 'no-such-token' });
    expect({
      failed: r.code !== 0 && r.code !== null,
      fast: r.ms < FAST_MS,
      problem: /"no-such-token" not found/.test(r.stderr) && /"ca"/.test(r.stderr),
      setting: /keys\.pkcs11\.token|DEVICE_CA_PKCS11_TOKEN/.test(r.stderr),
      dataDir: r.dataDir,
    }).toEqual({ failed: true, fast: true, problem: true, setting: true, dataDir: [] });
  });

  test('no PIN set: names DEVICE_CA_PKCS11_PIN', async () => {
    const r = await serveFails({ ...p11Env(), DEVICE_CA_PKCS11_PIN: undefined });
    expect({
      failed: r.code !== 0 && r.code !== null,
      fast: r.ms < FAST_MS,
      problem: /no PIN/.test(r.stderr),
      setting: /DEVICE_CA_PKCS11_PIN/.test(r.stderr),
      dataDir: r.dataDir,
    }).toEqual({ failed: true, fast: true, problem: true, setting: true, dataDir: [] });
  });
});

// ----------------------------------------------------------------------- offline root on token "root"

describe('offline root on a second token', () => {
  const configYaml = 'keys:\n  roles:\n    root:\n      token: root\n      pinEnv: ROOT_TOKEN_PIN\n';

  test('init puts the root key on "root" and the issuing key on "ca"; serve runs without the root PIN and enrolls', async () => {
    const dataDir = tmp.file('offline-root/data');
    const config = tmp.write('offline-root/config.yaml', configYaml);
    const env = { ...p11Env(), DEVICE_CA_CONFIG: config, DEVICE_CA_DATA: dataDir };
    const init = await runCli(['init'], { ...env, ROOT_TOKEN_PIN: hsm.pin });
    expect({ code: init.code, stderr: init.stderr }).toEqual({ code: 0, stderr: '' });

    const rows = await keysList(env);
    const ref = (role: string) => rows.find((r) => r.role === role)?.ref ?? '';
    expect(ref('root')).toMatch(/^pkcs11:token=root;/);
    expect(ref('issuing')).toMatch(/^pkcs11:token=ca;/);
    const rootId = uriAttr(ref('root'), 'id')!.toString('hex');
    expect(privateKeyBlocks('root').has(rootId)).toBe(true);
    expect(privateKeyBlocks('ca').has(rootId)).toBe(false);
    expect(spkiOfCertFile(rows.find((r) => r.role === 'root')!.certificate)).toEqual(pubkeyFromToken('root', rootId));

    // serve: ROOT_TOKEN_PIN is in neither this process's environment nor the one given, so the service has none
    expect(process.env.ROOT_TOKEN_PIN).toBeUndefined();
    const svc = await serve({ env: { ...p11Env() }, dataDir, configYaml });
    try {
      const { cert } = await enroll(svc, 'p11-offline-root-dev');
      expect(await verifyChain(svc.chainPem, cert)).toBe(`${cert}: OK`);
      const ocsp = await ocspStatus(svc, cert);
      expect({ verified: ocsp.verified, status: ocsp.status }).toEqual({ verified: true, status: 'good' });
      const after = await keysList(svc.env);
      expect(after.find((r) => r.role === 'ocsp')?.ref).toMatch(/^pkcs11:token=ca;/);
    } finally {
      expect(await svc.stop()).toBe(0);
    }
  });
});

// ---------------------------------------------------------------------------- adopt an existing key

describe('adopting a key made by pkcs11-tool', () => {
  test('keys.roles.issuing.key: init uses that key; the issuing CA certificate carries its public key', async () => {
    hsm.pkcs11Tool(['--token-label', 'ca', '--login', '--pin', hsm.pin, '--keypairgen', '--key-type', 'EC:prime256v1', '--label', 'adopted', '--id', '0102']);
    const uri = 'pkcs11:token=ca;object=adopted;type=private';
    const dataDir = tmp.file('adopt/data');
    const config = tmp.write('adopt/config.yaml', `keys:\n  roles:\n    issuing:\n      key: "${uri}"\n`);
    const env = { ...p11Env(), DEVICE_CA_CONFIG: config, DEVICE_CA_DATA: dataDir };
    const init = await runCli(['init'], env);
    expect({ code: init.code, stderr: init.stderr }).toEqual({ code: 0, stderr: '' });

    const rows = await keysList(env);
    const issuing = rows.find((r) => r.role === 'issuing')!;
    expect(issuing.ref).toBe(uri);
    const spki = pubkeyFromToken('ca', '0102');
    expect(spkiOfCertFile(issuing.certificate)).toEqual(spki);
    expect(issuing.spkiSha256).toBe(crypto.createHash('sha256').update(spki).digest('hex'));
    // and the root (generated on "ca") signed it
    const caDir = path.join(dataDir, 'ca');
    const v = await runProcess('openssl', ['verify', '-CAfile', path.join(caDir, 'device-ca-root.pem'), path.join(caDir, 'device-ca-issuing.pem')]);
    expect(v.stdout.trim()).toBe(`${path.join(caDir, 'device-ca-issuing.pem')}: OK`);
  });
});
