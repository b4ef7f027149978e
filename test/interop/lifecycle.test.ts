import * as fs from 'node:fs';
import * as path from 'node:path';
import { ProcessResult, RunningService, assertBuilt, runProcess, startService } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * The device life cycle as an operator drives it (`device-ca devices suspend|resume|transfer|retire`) and
 * as a device lives it (EST with curl and openssl, the README recipe): what each step does to the device's
 * certificates (OCSP and CRL, read with openssl from the URLs in the certificate) and to its credentials
 * (which secret or certificate may still enroll), and the refusals with their exit codes and messages.
 * One service serves the whole file; test/interop/revocation.test.ts covers OCSP and CRL in depth.
 */

let svc: RunningService;
let tmp: TmpDir;
let seq = 0;
const next = (): number => ++seq;
let issuingPem: string;

// ------------------------------------------------------------------------------------------- helpers

async function must(file: string, args: string[], input?: string | Buffer): Promise<ProcessResult> {
  const r = await runProcess(file, args, { input });
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} exited ${r.code}:\n${r.stderr}${r.stdout}`);
  return r;
}
const openssl = (...args: string[]): Promise<ProcessResult> => must('openssl', args);
/** opensslAny: openssl whose exit code is part of what the test checks; stdout and stderr together */
const opensslAny = async (...args: string[]): Promise<{ code: number | null; out: string }> => {
  const r = await runProcess('openssl', args);
  return { code: r.code, out: r.stdout + r.stderr };
};

interface Reply {
  status: number;
  headers: Map<string, string>;
  body: Buffer;
  text: string;
}
const header = (r: Reply, name: string): string | undefined => r.headers.get(name.toLowerCase());

/** curl: one request (the service's chain trusted for HTTPS); status, last response head, body bytes */
async function curl(url: string, args: string[] = []): Promise<Reply> {
  const n = next();
  const hdr = tmp.file(`http/${n}.head`);
  const out = tmp.file(`http/${n}.body`);
  const r = await runProcess('curl', ['-sS', '--cacert', svc.chainPem, '-D', hdr, '-o', out, ...args, url]);
  if (r.code !== 0) throw new Error(`curl ${args.join(' ')} ${url} failed (${r.code}): ${r.stderr}`);
  const heads = fs.readFileSync(hdr, 'latin1').split(/\r?\n\r?\n/).filter((b) => /^HTTP\/\S+ \d{3}/.test(b));
  const lines = heads[heads.length - 1].split(/\r?\n/);
  const headers = new Map<string, string>();
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    if (i > 0) headers.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim());
  }
  const body = fs.existsSync(out) ? fs.readFileSync(out) : Buffer.alloc(0);
  return { status: Number(/^HTTP\/\S+ (\d{3})/.exec(lines[0])![1]), headers, body, text: body.toString('latin1') };
}

const cli = async (...args: string[]): Promise<ProcessResult> => svc.cli(args);
async function cliOk(...args: string[]): Promise<string> {
  const r = await svc.cli(args);
  if (r.code !== 0) throw new Error(`device-ca ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

interface Device {
  id: string;
  key: string;
  crt: string;
  /** serial as openssl prints it (upper-case hex) */
  serial: string;
  ocspUrl: string;
  crlUrl: string;
}

/** csrB64: openssl req with the device's key, DER, base64 as the README recipe sends it */
async function csrB64(key: string, subj: string): Promise<string> {
  const der = tmp.file(`csr/${next()}.der`);
  await openssl('req', '-new', '-key', key, '-subj', subj, '-outform', 'DER', '-out', der);
  return (await must('base64', [der])).stdout;
}

async function postEst(op: 'simpleenroll' | 'simplereenroll', body: string, auth: { user?: [string, string]; cert?: [string, string] }): Promise<Reply> {
  const f = tmp.write(`req/${next()}.b64`, body);
  const args = ['-H', 'Content-Type: application/pkcs10', '--data-binary', `@${f}`];
  if (auth.user) args.push('-u', `${auth.user[0]}:${auth.user[1]}`);
  if (auth.cert) args.push('--cert', auth.cert[0], '--key', auth.cert[1]);
  return curl(`${svc.est}/${op}`, args);
}

/** certOf: base64 -d | openssl pkcs7 -print_certs of an EST reply, written to a file */
async function certOf(r: Reply, id: string): Promise<string> {
  if (r.status !== 200) throw new Error(`EST for ${id}: HTTP ${r.status}: ${r.text}`);
  const der = await must('base64', ['-d'], r.body);
  const p7 = tmp.write(`p7/${next()}.der`, der.stdoutBytes);
  const crt = tmp.file(`certs/${id}-${next()}.crt`);
  await openssl('pkcs7', '-inform', 'DER', '-in', p7, '-print_certs', '-out', crt);
  return crt;
}

/** describeCert: serial, OCSP URL and CRL DP URL as openssl reads them from the certificate */
async function describeCert(id: string, key: string, crt: string): Promise<Device> {
  const serial = (await openssl('x509', '-in', crt, '-noout', '-serial')).stdout.trim().replace(/^serial=/, '');
  const ocspUrl = (await openssl('x509', '-in', crt, '-noout', '-ocsp_uri')).stdout.trim();
  const text = (await openssl('x509', '-in', crt, '-noout', '-text')).stdout;
  const crlUrl = /X509v3 CRL Distribution Points:\s*\n\s*Full Name:\s*\n\s*URI:(\S+)/.exec(text)![1];
  return { id, key, crt, serial, ocspUrl, crlUrl };
}

let operatorToken: string;

/**
 * register: `device-ca devices add` (the README recipe) or, to keep the file fast, the same registration
 * through the admin API; either way the one-time secret.
 */
async function register(id: string, owner: string, via: 'cli' | 'api'): Promise<string> {
  if (via === 'cli') return (await cliOk('devices', 'add', id, '--owner', owner)).trim();
  const r = await curl(`https://localhost:${svc.httpsPort}/api/v1/devices`, ['-H', `Authorization: Bearer ${operatorToken}`, '-H', 'Content-Type: application/json', '--data-binary', JSON.stringify({ id, owner })]);
  if (r.status !== 201) throw new Error(`register ${id}: HTTP ${r.status} ${r.text}`);
  return (JSON.parse(r.text) as { secret: string }).secret;
}

/** enroll: register + the README's EST recipe; returns the device with its first certificate */
async function enroll(id: string, owner = 'acme', via: 'cli' | 'api' = 'api'): Promise<Device & { secret: string }> {
  const secret = await register(id, owner, via);
  const key = tmp.file(`keys/${id}.key`);
  await openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key);
  const crt = await certOf(await postEst('simpleenroll', await csrB64(key, `/CN=${id}`), { user: [id, secret] }), id);
  return { ...(await describeCert(id, key, crt)), secret };
}

/** ocsp: `openssl ocsp -issuer issuing.pem -cert dev.crt -url <AIA OCSP URL> -CAfile chain.pem` */
async function ocsp(d: Device, ...extra: string[]): Promise<{ code: number | null; out: string }> {
  return opensslAny('ocsp', '-issuer', issuingPem, '-cert', d.crt, '-url', d.ocspUrl, '-CAfile', svc.chainPem, ...extra);
}

const REASON_CODES: Record<string, number> = { keyCompromise: 1, affiliationChanged: 3, superseded: 4, cessationOfOperation: 5, certificateHold: 6, privilegeWithdrawn: 9 };

/**
 * expectOcsp: what openssl prints for one certificate: Response verify OK, "<file>: <status>", and with
 * -resp_text the reason as "Revocation Reason: <name> (0x<code>)" (openssl 3.0 has no name for
 * privilegeWithdrawn and prints "(UNKNOWN) (0x9)"; the code is what matters). unspecified: no reason.
 */
async function expectOcsp(d: Device, status: 'good' | 'revoked', reason?: string, ...extra: string[]): Promise<string> {
  const r = await ocsp(d, '-resp_text', ...extra);
  expect(r.out).toContain('Response verify OK');
  expect(r.out).toContain(`${d.crt}: ${status}\n`);
  expect(r.out).toContain(`Cert Status: ${status}\n`);
  if (reason) {
    const code = REASON_CODES[reason];
    expect(r.out).toMatch(new RegExp(`\\n\\s*Revocation Reason: (${reason}|\\(UNKNOWN\\)) \\(0x${code.toString(16)}\\)\\n`));
  } else expect(r.out).not.toMatch(/Reason:/);
  expect(r.code).toBe(0);
  return r.out;
}

interface Crl {
  der: string;
  pem: string;
  text: string;
  number: number;
  reply: Reply;
}

/** fetchCrl: GET the certificate's CRL DP URL; openssl verifies the signature and prints it */
async function fetchCrl(d: Device): Promise<Crl> {
  const reply = await curl(d.crlUrl);
  expect(reply.status).toBe(200);
  expect(header(reply, 'content-type')).toBe('application/pkix-crl');
  const der = tmp.write(`crl/${next()}.crl`, reply.body);
  const v = await opensslAny('crl', '-inform', 'DER', '-in', der, '-CAfile', svc.chainPem, '-noout');
  expect(v.out.trim()).toBe('verify OK');
  const pem = tmp.file(`crl/${next()}.pem`);
  await openssl('crl', '-inform', 'DER', '-in', der, '-out', pem);
  const text = (await openssl('crl', '-in', pem, '-noout', '-text')).stdout;
  const number = Number(/X509v3 CRL Number:\s*\n\s*(\d+)/.exec(text)![1]);
  return { der, pem, text, number, reply };
}

/** entryOf: the CRL's entry for a serial (its lines up to the next entry), or undefined */
function entryOf(crl: Crl, serial: string): string | undefined {
  const i = crl.text.indexOf(`Serial Number: ${serial}\n`);
  if (i < 0) return undefined;
  return crl.text.slice(i).split(/\n\s*Serial Number:|\n\s*Signature Algorithm:/)[0];
}

/** crlUntil: fetch the certificate's CRL until it satisfies cond (a revocation shows within a few seconds) */
async function crlUntil(d: Device, cond: (c: Crl) => boolean, ms = 6000): Promise<Crl> {
  const end = Date.now() + ms;
  for (;;) {
    const c = await fetchCrl(d);
    if (cond(c)) return c;
    if (Date.now() > end) throw new Error(`CRL at ${d.crlUrl} did not change as expected within ${ms} ms:\n${c.text}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** reenroll: simplereenroll with the device's current certificate as TLS client certificate */
async function reenroll(d: Device, subj: string): Promise<Reply> {
  return postEst('simplereenroll', await csrB64(d.key, subj), { cert: [d.crt, d.key] });
}

// ------------------------------------------------------------------------------------------ set-up

const devices = new Map<string, Device & { secret: string }>();
const dev = (id: string) => devices.get(id)!;

beforeAll(async () => {
  assertBuilt();
  tmp = makeTmpDir('device-ca-lifecycle-');
  svc = await startService();
  issuingPem = path.join(svc.dataDir, 'ca', 'device-ca-issuing.pem');
  operatorToken = (await cliOk('tokens', 'create', '--scope', 'operator')).trim();
  const all = await Promise.all([enroll('dev-xfer', 'acme', 'cli'), enroll('dev-susp'), enroll('dev-active')]);
  for (const d of all) devices.set(d.id, d);
}, 60_000);

afterAll(async () => {
  const code = await svc?.stop();
  tmp?.cleanup();
  expect(code).toBe(0);
});

// -------------------------------------------------------------------------------------------- tests

describe('suspend and resume', () => {
  it('a suspended device cannot renew (403) and cannot be suspended again (exit 1, "is suspended")', async () => {
    const d = dev('dev-susp');
    expect(await cliOk('devices', 'suspend', 'dev-susp')).toMatch(/^dev-susp suspended; certificates: [0-9a-f]+ revoked \(certificateHold\)\n$/);
    await expectOcsp(d, 'revoked', 'certificateHold');
    const r = await reenroll(d, '/O=acme/CN=dev-susp');
    expect(r.status).toBe(403);
    const again = await cli('devices', 'suspend', 'dev-susp');
    expect(again.code).toBe(1);
    expect(again.stderr).toBe('device-ca: device dev-susp is suspended\n');
  });

  it('resume releases the hold: OCSP good, and the same certificate renews', async () => {
    const d = dev('dev-susp');
    expect(await cliOk('devices', 'resume', 'dev-susp')).toMatch(/^dev-susp active; certificates: [0-9a-f]+ valid\n$/);
    await expectOcsp(d, 'good');
    const r = await reenroll(d, '/O=acme/CN=dev-susp');
    expect(r.status).toBe(200);
    const show = JSON.parse(await cliOk('devices', 'show', 'dev-susp', '--json')) as { state: string; certificates: { status: string }[] };
    expect(show.state).toBe('active');
    expect(show.certificates.map((c) => c.status)).toEqual(['valid', 'valid']);
  });

  it('resume of a device that is not suspended is refused with a clear message (exit 1)', async () => {
    const r = await cli('devices', 'resume', 'dev-active');
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('device-ca: device dev-active is active\n');
    await expectOcsp(dev('dev-active'), 'good');
  });

  it('an unknown device: exit code 4', async () => {
    const cmds = ['suspend', 'resume', 'retire', 'show'];
    const results = await Promise.all(cmds.map((cmd) => cli('devices', cmd, 'no-such-device')));
    expect(results.map((r, i) => ({ cmd: cmds[i], code: r.code, stderr: r.stderr }))).toEqual(cmds.map((cmd) => ({ cmd, code: 4, stderr: 'device-ca: no device no-such-device\n' })));
  });
});

describe('transfer and retire', () => {
  it("transfer: the old certificate is revoked (affiliationChanged) and cannot renew; the new secret enrolls with O=<new owner>", async () => {
    const d = dev('dev-xfer');
    const t = await cli('devices', 'transfer', 'dev-xfer', '--to', 'globex');
    expect(t.code).toBe(0);
    expect(t.stdout).toMatch(/^[A-Za-z0-9_-]{20,}\n$/);
    const secret = t.stdout.trim();
    await expectOcsp(d, 'revoked', 'affiliationChanged');
    expect((await reenroll(d, '/O=acme/CN=dev-xfer')).status).toBe(403);
    // the first owner's secret is gone
    const oldSecret = await postEst('simpleenroll', await csrB64(d.key, '/CN=dev-xfer'), { user: ['dev-xfer', d.secret] });
    expect(oldSecret.status).toBe(401);

    const crt = await certOf(await postEst('simpleenroll', await csrB64(d.key, '/CN=dev-xfer'), { user: ['dev-xfer', secret] }), 'dev-xfer');
    const subject = (await openssl('x509', '-in', crt, '-noout', '-subject', '-nameopt', 'RFC2253')).stdout.trim();
    expect(subject).toBe('subject=CN=dev-xfer,O=globex');
    const fresh = await describeCert('dev-xfer', d.key, crt);
    await expectOcsp(fresh, 'good');
    const crl = await crlUntil(d, (c) => entryOf(c, d.serial) !== undefined);
    expect(entryOf(crl, d.serial)).toMatch(/Affiliation Changed/);
    devices.set('dev-xfer-new', { ...fresh, secret });
  });

  it('retire: every certificate revoked (cessationOfOperation); the id can never enroll again (403 with any secret); retiring twice fails with a clear message', async () => {
    const d = dev('dev-xfer-new');
    expect(await cliOk('devices', 'retire', 'dev-xfer')).toMatch(/^dev-xfer retired; certificates: [0-9a-f]+ revoked \(cessationOfOperation\)\n$/);
    await expectOcsp(d, 'revoked', 'cessationOfOperation');
    for (const s of [d.secret, 'made-up-secret']) {
      const r = await postEst('simpleenroll', await csrB64(d.key, '/CN=dev-xfer'), { user: ['dev-xfer', s] });
      expect({ secret: s, status: r.status, text: r.text.trim() }).toEqual({ secret: s, status: 403, text: 'device is retired' });
    }
    const again = await cli('devices', 'retire', 'dev-xfer');
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/dev-xfer is retired/);
  });

  it('a device retired before it enrolled cannot use its unused secret (403)', async () => {
    const secret = (await cliOk('devices', 'add', 'dev-never', '--owner', 'acme')).trim();
    await cliOk('devices', 'retire', 'dev-never');
    const key = tmp.file('keys/dev-never.key');
    await openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key);
    const r = await postEst('simpleenroll', await csrB64(key, '/CN=dev-never'), { user: ['dev-never', secret] });
    expect(r.status).toBe(403);
  });
});

