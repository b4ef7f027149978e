import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { CLI_JS, REPO_ROOT, RunningService, assertBuilt, runCli, runProcess, startService } from '../helpers/service-process';
import { TmpDir, filesHash, makeTmpDir } from '../helpers/tmp';
import { writeLegacyDataDir } from '../fixtures/legacy-data-dir';

/**
 * `device-ca serve` as an operator runs it: first start creates the CA and later starts reuse it, SIGTERM
 * drains requests in flight, workers share the ports, a bad config fails fast naming the key, and the
 * listeners take IPv4 and IPv6.
 */

let tmp: TmpDir;
let n = 0;
const started: RunningService[] = [];

async function start(opts: Parameters<typeof startService>[0] = {}): Promise<RunningService> {
  const s = await startService(opts);
  started.push(s);
  return s;
}

beforeAll(() => {
  assertBuilt();
  tmp = makeTmpDir('device-ca-serve-');
});

afterAll(async () => {
  await Promise.all(started.map((s) => s.stop()));
  tmp?.cleanup();
});

interface Reply {
  status: number;
  headers: string;
  body: Buffer;
}

/** curl: one request; https URLs are checked against the service's chain.pem */
async function curl(svc: RunningService, url: string, args: string[] = []): Promise<Reply> {
  const i = ++n;
  const hdr = tmp.file(`http/${i}.head`);
  const out = tmp.file(`http/${i}.body`);
  const r = await runProcess('curl', ['-sS', '--cacert', svc.chainPem, '-D', hdr, '-o', out, ...args, url]);
  if (r.code !== 0) throw new Error(`curl ${url} failed (${r.code}): ${r.stderr}`);
  const headers = fs.readFileSync(hdr, 'latin1');
  const heads = headers.split(/\r?\n\r?\n/).filter((b) => b.startsWith('HTTP/'));
  const status = Number(/^HTTP\/\S+ (\d{3})/.exec(heads[heads.length - 1] ?? '')?.[1] ?? 0);
  return { status, headers, body: fs.existsSync(out) ? fs.readFileSync(out) : Buffer.alloc(0) };
}

async function openssl(...args: string[]): Promise<string> {
  const r = await runProcess('openssl', args);
  if (r.code !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** newDeviceCsr registers a device and makes a base64 P-256 CSR for it */
async function newDeviceCsr(svc: RunningService, id: string): Promise<{ secret: string; body: string }> {
  const add = await svc.cli(['devices', 'add', id, '--owner', 'acme']);
  expect(add.code).toBe(0);
  const k = tmp.file(`keys/${id}.pem`);
  const der = tmp.file(`csr/${id}.der`);
  await openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', k, '-subj', `/CN=${id}`, '-outform', 'DER', '-out', der);
  return {
    secret: add.stdout.trim(),
    body:
      fs
        .readFileSync(der)
        .toString('base64')
        .replace(/(.{64})/g, '$1\n') + '\n',
  };
}

/** enroll: curl simpleenroll; returns the status and, on 200, the certificate subject as openssl prints it */
async function enroll(svc: RunningService, id: string): Promise<{ status: number; subject?: string }> {
  const { secret, body } = await newDeviceCsr(svc, id);
  const f = tmp.write(`req/${id}.b64`, body);
  const r = await curl(svc, `${svc.est}/simpleenroll`, ['-u', `${id}:${secret}`, '-H', 'Content-Type: application/pkcs10', '--data-binary', `@${f}`]);
  if (r.status !== 200) return { status: r.status };
  const p7 = tmp.write(`p7/${id}.der`, Buffer.from(r.body.toString('latin1'), 'base64'));
  const subject = await openssl('pkcs7', '-inform', 'DER', '-in', p7, '-print_certs', '-noout');
  return { status: 200, subject: subject.trim() };
}

/** connectError: the error code of a TCP connect, or 'connected' */
function connectResult(port: number, host = '127.0.0.1'): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host });
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

const running = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** childPids: the processes whose parent is pid (from /proc, Linux) */
function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(d));
    } catch {
      // exited while we looked
    }
  }
  return out;
}

describe('first start creates the CA, later starts reuse it', () => {
  // the CA state itself is in the store; these are the operator exports
  const caFiles = ['chain.pem', 'device-ca-issuing.crt', 'device-ca-issuing.pem', 'device-ca-root.crt', 'device-ca-root.pem'];
  let dataDir: string;
  let firstHashes: Record<string, string>;
  let firstCacerts: Buffer;

  beforeAll(() => {
    dataDir = tmp.file('reuse-data');
    fs.mkdirSync(dataDir);
  });

  it('npm start runs exactly `node dist/cli/main.js serve` (what these tests start)', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string>; bin: Record<string, string> };
    expect(pkg.scripts.start).toBe('node dist/cli/main.js serve');
    expect(path.resolve(REPO_ROOT, pkg.bin['device-ca'])).toBe(CLI_JS);
  });

  it('on an empty data directory: creates the CA files in <data>/ca and serves EST and the CA certificates', async () => {
    expect(fs.readdirSync(dataDir)).toEqual([]);
    const svc = await start({ dataDir });
    expect(fs.readdirSync(path.join(dataDir, 'ca')).sort()).toEqual(expect.arrayContaining(caFiles));
    firstHashes = filesHash(path.join(dataDir, 'ca'));
    const cacerts = await curl(svc, `${svc.est}/cacerts`);
    expect(cacerts.status).toBe(200);
    firstCacerts = cacerts.body;
    const p7 = tmp.write('reuse-cacerts.der', Buffer.from(cacerts.body.toString('latin1'), 'base64'));
    const certs = await openssl('pkcs7', '-inform', 'DER', '-in', p7, '-print_certs');
    expect(certs.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g)!.join('')).toBe(fs.readFileSync(svc.chainPem, 'utf8'));
    const root = await curl(svc, `http://127.0.0.1:${svc.httpPort}/ca/device-ca-root.crt`);
    expect(root.status).toBe(200);
    expect(root.body.equals(fs.readFileSync(path.join(dataDir, 'ca', 'device-ca-root.crt')))).toBe(true);
    const e = await enroll(svc, 'reuse-1');
    expect(e.status).toBe(200);
    expect(e.subject).toMatch(/^subject=O = acme, CN = reuse-1\n/);
    expect(await svc.stop()).toBe(0);
  });

  it('a second start on the same data directory reuses the CA byte for byte', async () => {
    const svc = await start({ dataDir });
    expect(filesHash(path.join(dataDir, 'ca'))).toEqual(firstHashes);
    const cacerts = await curl(svc, `${svc.est}/cacerts`);
    expect(cacerts.status).toBe(200);
    expect(cacerts.body.equals(firstCacerts)).toBe(true);
    // the first start's devices and certificates are still there
    const list = await svc.cli(['certs', 'list', '--device', 'reuse-1', '--json']);
    expect(JSON.parse(list.stdout)).toHaveLength(1);
    expect(await svc.stop()).toBe(0);
  });

  it('`device-ca init` on an existing CA refuses with a non-zero exit and leaves the CA files unchanged', async () => {
    const r = await runCli(['init'], { DEVICE_CA_DATA: dataDir });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/already exists/);
    expect(r.stdout).toBe('');
    expect(filesHash(path.join(dataDir, 'ca'))).toEqual(firstHashes);
  });

  it('`device-ca init` on an empty directory creates the CA and names chain.pem', async () => {
    const fresh = tmp.file('init-data');
    const r = await runCli(['init'], { DEVICE_CA_DATA: fresh });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(path.join(fresh, 'ca', 'chain.pem'));
    expect(fs.readdirSync(path.join(fresh, 'ca')).sort()).toEqual(expect.arrayContaining(caFiles));
    const v = await runProcess('openssl', ['verify', '-CAfile', path.join(fresh, 'ca', 'device-ca-root.pem'), path.join(fresh, 'ca', 'device-ca-issuing.pem')]);
    expect(v.stdout.trim()).toBe(`${path.join(fresh, 'ca', 'device-ca-issuing.pem')}: OK`);
  });
});

describe('a data directory made by the previous version (ca/state.json with absolute paths, tls/server.pem)', () => {
  it('is imported into the store on first start: same CA, same HTTPS certificate, enrollment works, and a second start reuses it', async () => {
    const dataDir = tmp.file('legacy-data');
    const old = await writeLegacyDataDir(dataDir, tmp.file('legacy-scratch.sqlite'));
    for (let round = 0; round < 2; round++) {
      const svc = await start({ dataDir });
      const served = await new Promise<Buffer>((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', servername: 'localhost', port: svc.httpsPort, ca: fs.readFileSync(svc.chainPem) }, () => {
          resolve(s.getPeerCertificate().raw);
          s.destroy();
        });
        s.once('error', reject);
      });
      expect(served.equals(old.tlsDer)).toBe(true);
      const root = await curl(svc, `http://127.0.0.1:${svc.httpPort}/ca/device-ca-root.crt`);
      expect(root.body.equals(old.h.root.der)).toBe(true);
      const e = await enroll(svc, `legacy-${round}`);
      expect(e.status).toBe(200);
      const list = JSON.parse((await svc.cli(['certs', 'list', '--json'])).stdout) as { profile: string }[];
      // nothing was re-issued for the service: the imported HTTPS and responder certificates are in use
      expect(list.filter((c) => c.profile === 'tls-server' || c.profile === 'ocsp-responder')).toEqual([]);
      expect(await svc.stop()).toBe(0);
    }
  });
});

describe('SIGTERM while a request is in flight', () => {
  it('finishes the slow request with 200, refuses new connections meanwhile, then exits 0', async () => {
    const svc = await start();
    const { secret, body } = await newDeviceCsr(svc, 'slow-1');
    const bodyBuf = Buffer.from(body);
    const sock = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', servername: 'localhost', port: svc.httpsPort, ca: fs.readFileSync(svc.chainPem) }, () => resolve(s));
      s.once('error', reject);
    });
    const chunks: Buffer[] = [];
    sock.on('data', (c: Buffer) => chunks.push(c));
    const closed = new Promise<void>((r) => sock.once('close', () => r()));
    sock.write(
      [
        'POST /.well-known/est/simpleenroll HTTP/1.1',
        'Host: localhost',
        `Authorization: Basic ${Buffer.from(`slow-1:${secret}`).toString('base64')}`,
        'Content-Type: application/pkcs10',
        `Content-Length: ${bodyBuf.length}`,
        'Connection: close',
        // the interim 100 says the server has parsed the head: from then on the request is in flight (a connection
        // whose head was not read yet is idle, and a draining server may close it), whatever the machine's load
        'Expect: 100-continue',
        '',
        '',
      ].join('\r\n'),
    );
    const received = () => Buffer.concat(chunks).toString('latin1');
    for (const end = Date.now() + 10_000; !received().includes('\r\n\r\n') && Date.now() < end;) await new Promise((r) => setTimeout(r, 20));
    expect(received()).toBe('HTTP/1.1 100 Continue\r\n\r\n');
    const pieces = 5;
    const size = Math.ceil(bodyBuf.length / pieces);
    sock.write(bodyBuf.subarray(0, size));

    process.kill(svc.pid, 'SIGTERM');
    // the listeners close when the SIGTERM handler ran: wait for that (bounded), then assert
    const refused = async () => [await connectResult(svc.httpsPort), await connectResult(svc.httpPort)];
    let seen = await refused();
    for (const end = Date.now() + 10_000; seen.some((x) => x !== 'ECONNREFUSED') && Date.now() < end; seen = await refused()) await new Promise((r) => setTimeout(r, 50));
    expect(seen).toEqual(['ECONNREFUSED', 'ECONNREFUSED']);
    expect(running(svc.pid)).toBe(true); // still draining

    for (let i = 1; i < pieces; i++) {
      sock.write(bodyBuf.subarray(i * size, (i + 1) * size));
      await new Promise((r) => setTimeout(r, 200));
    }
    await closed;
    const reply = received();
    expect(reply).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
    expect(reply).toMatch(/\r\nContent-Type: application\/pkcs7-mime; smime-type=certs-only\r\n/i);
    const exit = await svc.exited;
    expect(exit).toEqual({ code: 0, signal: null });
    expect(await connectResult(svc.httpsPort)).toBe('ECONNREFUSED');
    // the certificate made it to the store before the process ended
    const list = await runCli(['certs', 'list', '--device', 'slow-1', '--json'], { DEVICE_CA_DATA: svc.dataDir });
    expect(JSON.parse(list.stdout)).toHaveLength(1);
  });
});

describe('workers: 2', () => {
  let svc: RunningService;
  beforeAll(async () => {
    svc = await start({ workers: 2 });
  });

  it('runs two worker processes under the primary', () => {
    const kids = childPids(svc.pid);
    expect(kids).toHaveLength(2);
    for (const k of kids) expect(fs.readFileSync(`/proc/${k}/cmdline`, 'utf8').split('\0')).toContain(CLI_JS);
  });

  it('enrolls devices concurrently, and /metrics counts every request across workers', async () => {
    const ids = ['w-1', 'w-2', 'w-3', 'w-4'];
    const results = await Promise.all(ids.map((id) => enroll(svc, id)));
    for (const [i, r] of results.entries()) {
      expect(r.status).toBe(200);
      expect(r.subject).toContain(`subject=O = acme, CN = ${ids[i]}`);
    }
    // a worker counts a request when its response finishes ('finish' may follow the client's read of the reply):
    // read /metrics until it has all four (bounded), then assert the exact count
    const scrape = async () => {
      const m = await curl(svc, `http://127.0.0.1:${svc.httpPort}/metrics`);
      const lines = m.body
        .toString('utf8')
        .split('\n')
        .filter((l) => l.startsWith('device_ca_http_requests_total{'));
      const enrolls = lines.filter((l) => l.includes('route="est.simpleenroll"') && l.includes('status="200"'));
      return { status: m.status, lines, enrolled: enrolls.reduce((sum, l) => sum + Number(l.split(' ').pop()), 0) };
    };
    let seen = await scrape();
    for (const end = Date.now() + 10_000; seen.enrolled < ids.length && Date.now() < end; seen = await scrape()) await new Promise((r) => setTimeout(r, 100));
    expect(seen.status).toBe(200);
    expect(seen.lines.length).toBeGreaterThan(0);
    expect(seen.enrolled).toBe(ids.length);
  });

  // 5 requests: each is counted as an attempt until its secret checks out (enrollment.authFailureLimit 5)
  it('one secret sent with 5 different keys at once (spread over both workers) issues exactly one certificate', async () => {
    const id = 'w-race';
    const { secret, body } = await newDeviceCsr(svc, id);
    const bodies = [body];
    for (let i = 1; i < 5; i++) {
      const der = tmp.file(`csr/${id}-${i}.der`);
      await openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', tmp.file(`keys/${id}-${i}.pem`), '-subj', `/CN=${id}`, '-outform', 'DER', '-out', der);
      bodies.push(fs.readFileSync(der).toString('base64') + '\n');
    }
    const files = bodies.map((b, i) => tmp.write(`req/${id}-${i}.b64`, b));
    const replies = await Promise.all(files.map((f) => curl(svc, `${svc.est}/simpleenroll`, ['-u', `${id}:${secret}`, '-H', 'Content-Type: application/pkcs10', '--data-binary', `@${f}`])));
    const statuses = replies.map((r) => r.status).sort();
    if (statuses.join() !== '200,401,401,401,401') {
      const seen = replies.map((r) => `${r.status} ${r.body.toString('latin1').slice(0, 80).trim()}`).join('\n');
      throw new Error(`expected one 200 and four 401, got:\n${seen}\nservice log:\n${svc.logs().slice(-4000)}`);
    }
    const list = await svc.cli(['certs', 'list', '--device', id, '--json']);
    expect(JSON.parse(list.stdout)).toHaveLength(1);
  });

  // 4 copies: every copy is counted as an attempt until its secret checks out (enrollment.authFailureLimit 5)
  it('one request sent 4 times at once (a client retrying before the reply) gets one certificate, the same bytes in every reply', async () => {
    const id = 'w-retry';
    const { secret, body } = await newDeviceCsr(svc, id);
    const f = tmp.write(`req/${id}.b64`, body);
    const replies = await Promise.all(
      Array.from({ length: 4 }, () => curl(svc, `${svc.est}/simpleenroll`, ['-u', `${id}:${secret}`, '-H', 'Content-Type: application/pkcs10', '--data-binary', `@${f}`])),
    );
    expect(replies.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    expect(new Set(replies.map((r) => r.body.toString('latin1'))).size).toBe(1);
    const list = await svc.cli(['certs', 'list', '--device', id, '--json']);
    expect(JSON.parse(list.stdout)).toHaveLength(1);
  });

  it('SIGTERM stops the primary and both workers with exit code 0', async () => {
    const kids = childPids(svc.pid);
    expect(await svc.stop()).toBe(0);
    for (const k of kids) expect(running(k)).toBe(false);
  });
});

/** groupPids: the live processes in process group pgid (from /proc, Linux; zombies count as gone) */
function groupPids(pgid: number): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(pgrp) === pgid && state !== 'Z') out.push(Number(d));
    } catch {
      // exited while we looked
    }
  }
  return out;
}

/** watchGroupUntilEmpty polls the group until no process is left or boundMs passed; returns every pid seen on the way */
async function watchGroupUntilEmpty(pgid: number, boundMs: number): Promise<{ seen: Set<number>; left: number[] }> {
  const seen = new Set<number>();
  const deadline = Date.now() + boundMs;
  for (;;) {
    const now = groupPids(pgid);
    for (const p of now) seen.add(p);
    if (now.length === 0 || Date.now() > deadline) return { seen, left: now };
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('SIGTERM to the whole process group (pkill -f, kill -- -pgid) with 2 workers', () => {
  // 'late': the primary runs its SIGTERM handler after it saw its workers exit (a loaded machine, or
  // signals delivered workers first): the signal reaches the workers, and the primary's follows as soon
  // as they are gone, well inside the primary's respawn delay (500 ms)
  it.each([
    ['the primary and its workers are signalled at once', 'group'],
    ['the primary sees its workers exit before its own SIGTERM', 'late'],
  ])('%s: every process exits, none is forked meanwhile, and the store serves the next start', async (_name, order) => {
    const dataDir = tmp.file(`group-term-${order}`);
    fs.mkdirSync(dataDir);
    const svc = await start({ dataDir, workers: 2 });
    const e = await enroll(svc, 'group-term-1');
    expect(e.status).toBe(200);
    const before = groupPids(svc.pid).sort((a, b) => a - b);
    expect(before).toEqual([svc.pid, ...childPids(svc.pid)].sort((a, b) => a - b));
    expect(before).toHaveLength(3);

    if (order === 'group') process.kill(-svc.pid, 'SIGTERM');
    else {
      const workers = childPids(svc.pid);
      for (const w of workers) process.kill(w, 'SIGTERM');
      const deadline = Date.now() + 20_000;
      while (workers.some((w) => childPids(svc.pid).includes(w)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      process.kill(svc.pid, 'SIGTERM');
    }
    // shutdownGrace is 10 s by default; nothing is in flight, so every process is gone well before that
    const { seen, left } = await watchGroupUntilEmpty(svc.pid, 20_000);
    expect(left).toEqual([]);
    expect([...seen].filter((p) => !before.includes(p))).toEqual([]);
    expect(await svc.exited).toEqual({ code: 0, signal: null });

    const again = await start({ dataDir });
    const list = await again.cli(['certs', 'list', '--device', 'group-term-1', '--json']);
    expect(JSON.parse(list.stdout)).toHaveLength(1);
    expect((await enroll(again, 'group-term-2')).status).toBe(200);
    expect(await again.stop()).toBe(0);
  });
});

describe('a worker that does not exit after SIGTERM', () => {
  it('is killed once shutdownGrace (1 s) and the 5 s margin are over, and the primary exits', async () => {
    const svc = await start({ workers: 2, env: { DEVICE_CA_SHUTDOWN_GRACE: '1s' } });
    const workers = childPids(svc.pid);
    expect(workers).toHaveLength(2);
    process.kill(workers[0], 'SIGSTOP'); // a stopped process cannot run its SIGTERM handler; SIGKILL still ends it
    process.kill(svc.pid, 'SIGTERM');
    const { seen, left } = await watchGroupUntilEmpty(svc.pid, 30_000);
    expect(left).toEqual([]);
    expect([...seen].filter((p) => p !== svc.pid && !workers.includes(p))).toEqual([]);
    expect(await svc.exited).toEqual({ code: 0, signal: null });
    // the primary's last lines may reach the pipe after its exit was seen: wait for the line (bounded)
    expect(await svc.waitForLog((log) => log.includes('workers still running after shutdownGrace; killing them'))).toContain('workers still running after shutdownGrace; killing them');
  });
});

describe('a bad configuration fails fast, naming the key', () => {
  it('an unknown key in the config file (https.prot): non-zero exit, stderr names https.prot', async () => {
    const file = tmp.write('bad-key.yaml', 'https:\n  prot: 8443\n');
    const r = await runCli(['serve'], { DEVICE_CA_CONFIG: file, DEVICE_CA_DATA: tmp.file('bad-key-data'), DEVICE_CA_LOG_LEVEL: 'warn' }, { timeoutMs: 15_000 });
    expect(r.code).not.toBe(0);
    expect(r.code).not.toBeNull();
    expect(r.stderr).toContain('https.prot');
    expect(fs.existsSync(tmp.file('bad-key-data/ca'))).toBe(false); // nothing created
  });

  it('an unknown key in a label (est.labels.strict.keyAlgorithm): stderr names the path', async () => {
    const file = tmp.write('bad-label.yaml', 'est:\n  labels:\n    default: {}\n    strict: { keyAlgorithm: [ecdsa-p256] }\n');
    const r = await runCli(['serve'], { DEVICE_CA_CONFIG: file, DEVICE_CA_DATA: tmp.file('bad-label-data') }, { timeoutMs: 15_000 });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('est.labels.strict.keyAlgorithm');
  });

  it('DEVICE_CA_HTTP_PORT=abc: non-zero exit, stderr names http.port', async () => {
    const r = await runCli(['serve'], { DEVICE_CA_HTTP_PORT: 'abc', DEVICE_CA_DATA: tmp.file('bad-env-data') }, { timeoutMs: 15_000 });
    expect(r.code).not.toBe(0);
    expect(r.code).not.toBeNull();
    expect(r.stderr).toContain('http.port');
    expect(r.stderr).toContain('DEVICE_CA_HTTP_PORT');
  });
});

/** hasIpv6Loopback: whether this machine has ::1 at all (containers without IPv6 do not) */
const hasIpv6Loopback = Object.values(os.networkInterfaces())
  .flat()
  .some((a) => a?.address === '::1');

describe('listeners', () => {
  let svc: RunningService;
  beforeAll(async () => {
    svc = await start();
  });

  it('answer on 127.0.0.1 (HTTP /healthz, HTTPS EST with the server certificate verified for the IP)', async () => {
    const h = await curl(svc, `http://127.0.0.1:${svc.httpPort}/healthz`);
    expect(h.status).toBe(200);
    expect(h.body.toString()).toBe('ok\n');
    const e = await curl(svc, `https://127.0.0.1:${svc.httpsPort}/.well-known/est/cacerts`);
    expect(e.status).toBe(200);
  });

  (hasIpv6Loopback ? it : it.skip)('answer on [::1] (HTTP /healthz, HTTPS EST with the server certificate verified for ::1)', async () => {
    const h = await curl(svc, `http://[::1]:${svc.httpPort}/healthz`);
    expect(h.status).toBe(200);
    expect(h.body.toString()).toBe('ok\n');
    const e = await curl(svc, `https://[::1]:${svc.httpsPort}/.well-known/est/cacerts`);
    expect(e.status).toBe(200);
  });
});
