import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as tls from 'node:tls';
import { must, openssl, pkiClient } from '../helpers/pki-client';
import { RunningService, assertBuilt, runProcess, startService } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * EST (RFC 7030, RFC 8951) against the real service, with curl and openssl as the client: what a device
 * integrator would check by hand. One service (labels default, strict, pop, manual and a bootstrap trust
 * anchor) serves the whole file; every device id is used for one story only, because secrets are single use.
 */

let svc: RunningService;
let tmp: TmpDir;

// ------------------------------------------------------------------------------------------- helpers

const { next, curlRaw, teardown } = pkiClient({ svc: () => svc, tmp: () => tmp });

interface Reply {
  status: number;
  /** headers: lower-case name -> values */
  headers: Map<string, string[]>;
  headerBlock: string;
  body: Buffer;
  text: string;
}

const header = (r: Reply, name: string): string | undefined => r.headers.get(name.toLowerCase())?.join(', ');

/** parseHead reads the last response head (curl -D also records 100 Continue). */
function parseHead(block: string): { status: number; headers: Map<string, string[]>; headerBlock: string } {
  const heads = block.split(/\r?\n\r?\n/).filter((b) => /^HTTP\/\S+ \d{3}/.test(b));
  const last = heads[heads.length - 1] ?? '';
  const lines = last.split(/\r?\n/);
  const status = Number(/^HTTP\/\S+ (\d{3})/.exec(lines[0])?.[1] ?? 0);
  const headers = new Map<string, string[]>();
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    if (i <= 0) continue;
    const k = l.slice(0, i).trim().toLowerCase();
    headers.set(k, [...(headers.get(k) ?? []), l.slice(i + 1).trim()]);
  }
  return { status, headers, headerBlock: last };
}

/** curl runs one request with the CA chain as trust anchor and returns status, headers and body bytes. */
async function curl(url: string, args: string[] = []): Promise<Reply> {
  const { head, body } = await curlRaw(url, args);
  return { ...parseHead(head), body, text: body.toString('latin1') };
}

interface PostOptions {
  user?: [string, string];
  cert?: string;
  key?: string;
  /** null: no Content-Type header of our own */
  contentType?: string | null;
  label?: string;
  /** chunked: send Transfer-Encoding: chunked instead of Content-Length */
  chunked?: boolean;
}

function estUrl(op: string, label?: string): string {
  return `${svc.est}/${label ? label + '/' : ''}${op}`;
}

async function post(op: string, body: Buffer | string, o: PostOptions = {}): Promise<Reply> {
  const f = tmp.write(`req/${next()}.body`, body);
  const args = ['--data-binary', `@${f}`];
  if (o.contentType !== null) args.push('-H', `Content-Type: ${o.contentType ?? 'application/pkcs10'}`);
  if (o.user) args.push('-u', `${o.user[0]}:${o.user[1]}`);
  if (o.cert) args.push('--cert', o.cert, '--key', o.key!);
  if (o.chunked) args.push('-H', 'Transfer-Encoding: chunked');
  return curl(estUrl(op, o.label), args);
}

/** b64: RFC 8951 base64 as a client sends it: wrapped at `cols` with LF (or CRLF), or one line. */
function b64(der: Buffer, cols: number | 0 = 64, eol = '\n'): string {
  const s = der.toString('base64');
  if (cols === 0) return s;
  return s.replace(new RegExp(`(.{${cols}})`, 'g'), `$1${eol}`).replace(new RegExp(`(${eol})?$`), eol);
}

type KeyKind = 'p256' | 'p384' | 'rsa2048' | 'ed25519';
const keyCache = new Map<string, Promise<string>>();

/** key: a private key file made by openssl genpkey (cached per name) */
function key(kind: KeyKind, name: string = kind): Promise<string> {
  const cacheKey = `${kind}/${name}`;
  if (!keyCache.has(cacheKey)) {
    const f = tmp.file(`keys/${name}-${kind}.pem`);
    const alg: Record<KeyKind, string[]> = {
      p256: ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'],
      p384: ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384'],
      rsa2048: ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'],
      ed25519: ['-algorithm', 'ED25519'],
    };
    keyCache.set(
      cacheKey,
      openssl('genpkey', ...alg[kind], '-out', f).then(() => f),
    );
  }
  return keyCache.get(cacheKey)!;
}

/** csr: `openssl req -new` with the given key and subject; DER unless pem is set */
async function csr(keyFile: string, subj: string, o: { san?: string; pem?: boolean } = {}): Promise<Buffer> {
  const f = tmp.file(`csr/${next()}.${o.pem ? 'pem' : 'der'}`);
  const args = ['req', '-new', '-key', keyFile, '-subj', subj, '-outform', o.pem ? 'PEM' : 'DER', '-out', f];
  if (o.san) args.push('-addext', `subjectAltName=${o.san}`);
  await openssl(...args);
  return fs.readFileSync(f);
}

/**
 * popCsr: a CSR whose challengePassword carries the channel binding (RFC 7030 §3.5). The subject comes
 * from the config's dn section because `openssl req -subj` silently drops the [req_attributes].
 */
async function popCsr(keyFile: string, cn: string, challengePassword: string): Promise<Buffer> {
  const n = next();
  const cfg = tmp.write(`pop/${n}.cnf`, `[req]\nattributes=req_attributes\nprompt=no\ndistinguished_name=dn\n[dn]\nCN=${cn}\n[req_attributes]\nchallengePassword=${challengePassword}\n`);
  const f = tmp.file(`pop/${n}.der`);
  await openssl('req', '-new', '-key', keyFile, '-config', cfg, '-outform', 'DER', '-out', f);
  return fs.readFileSync(f);
}

/** register: `device-ca devices add`; returns the secret, checking it is printed alone on one line */
async function register(id: string, ...extra: string[]): Promise<string> {
  const r = await svc.cli(['devices', 'add', id, '--owner', 'acme', ...extra]);
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
  expect(r.stdout).toMatch(/^[A-Za-z0-9_-]{20,}\n$/);
  return r.stdout.trim();
}

const CERTS_ONLY = 'application/pkcs7-mime; smime-type=certs-only';

/** expectBase64Reply: the RFC 8951 reply shape deployed clients rely on; one line unless the label wraps */
function expectBase64Reply(r: Reply, contentType: string, style: 'single-line' | 'wrapped-64' = 'single-line'): void {
  expect(r.status).toBe(200);
  expect(header(r, 'content-type')).toBe(contentType);
  expect(header(r, 'content-transfer-encoding')).toBe('base64');
  expectLengthNotChunked(r);
  if (style === 'wrapped-64') expectWrappedBase64(r.text);
  else expectSingleLineBase64(r.text);
}

/** expectSingleLineBase64: the whole base64 on one line and a final newline (strongSwan pki 5.9.8 reads nothing else) */
function expectSingleLineBase64(text: string): void {
  expect(text).toMatch(/^[A-Za-z0-9+/]+={0,2}\n$/);
}

function expectLengthNotChunked(r: Reply): void {
  expect(header(r, 'transfer-encoding')).toBeUndefined();
  expect(header(r, 'content-length')).toBe(String(r.body.length));
}

/** expectWrappedBase64: lines of exactly 64 characters (the last one shorter or equal), a final newline */
function expectWrappedBase64(text: string): void {
  expect(text.endsWith('\n')).toBe(true);
  const lines = text.slice(0, -1).split('\n');
  for (const l of lines.slice(0, -1)) expect(l).toMatch(/^[A-Za-z0-9+/]{64}$/);
  expect(lines[lines.length - 1]).toMatch(/^[A-Za-z0-9+/]{1,64}={0,2}$/);
}

const STACK = /\bat [\w.<>]+ \(|\bat .+:\d+:\d+|node_modules|\/src\/|\.ts:\d+|\.js:\d+|TypeError|RangeError|ReferenceError/;

/** expectClean: a refused request gets a 4xx and a short message, never a 5xx or a stack trace */
function expectClean(r: Reply): void {
  expect(r.status).toBeGreaterThanOrEqual(400);
  expect(r.status).toBeLessThan(500);
  expectLengthNotChunked(r);
  expect(r.text).not.toMatch(STACK);
  expect(r.text.length).toBeLessThan(300);
}

function expectUnauthenticated(r: Reply): void {
  expect(r.status).toBe(401);
  expect(header(r, 'www-authenticate')).toMatch(/^Basic realm="[^"]+"/);
  expectClean(r);
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g;

/** certsOf: base64 -d | openssl pkcs7 -inform DER -print_certs, as the INTEROP recipe does */
async function certsOf(base64Body: Buffer | string): Promise<string[]> {
  const der = await must('base64', ['-d'], base64Body);
  const f = tmp.write(`p7/${next()}.der`, der.stdoutBytes);
  const p = await openssl('pkcs7', '-inform', 'DER', '-in', f, '-print_certs');
  return p.stdout.match(PEM_CERT) ?? [];
}

interface IssuedInfo {
  file: string;
  subject: string;
  serial: string;
  text: string;
}

/** inspect: openssl's view of one certificate */
async function inspect(pem: string): Promise<IssuedInfo> {
  const file = tmp.write(`certs/${next()}.pem`, pem);
  const text = (await openssl('x509', '-in', file, '-noout', '-serial', '-subject', '-nameopt', 'RFC2253', '-text')).stdout;
  const subject = /^subject=(.*)$/m.exec(text)?.[1] ?? '';
  const serial = /^serial=(.*)$/m.exec(text)?.[1] ?? '';
  return { file, subject, serial, text };
}

/** expectIssued: the single certificate of a certs-only reply is for this device and verifies as a client cert */
async function expectIssued(r: Reply, id: string): Promise<IssuedInfo & { pem: string }> {
  expectBase64Reply(r, CERTS_ONLY);
  const certs = await certsOf(r.body);
  expect(certs).toHaveLength(1);
  const info = await inspect(certs[0]);
  expect(info.subject).toBe(`CN=${id},O=acme`); // RFC 2253 order: O=acme, CN=<id> in the certificate
  const v = await runProcess('openssl', ['verify', '-CAfile', svc.chainPem, '-purpose', 'sslclient', info.file]);
  expect(v.stdout.trim()).toBe(`${info.file}: OK`);
  expect(info.text).toMatch(/X509v3 Extended Key Usage: *\n *TLS Web Client Authentication\n/);
  expect(info.text).toMatch(new RegExp(`X509v3 CRL Distribution Points: *\\n[\\s\\S]*?URI:http://localhost:${svc.httpPort}/crl/`));
  expect(info.text).toMatch(new RegExp(`Authority Information Access: *\\n[\\s\\S]*?OCSP - URI:http://localhost:${svc.httpPort}/ocsp`));
  expect(info.text).toMatch(new RegExp(`CA Issuers - URI:http://localhost:${svc.httpPort}/ca/`));
  return { ...info, pem: certs[0] };
}

async function certCount(): Promise<number> {
  const r = await svc.cli(['certs', 'list', '--json', '--limit', '100000']);
  expect(r.code).toBe(0);
  return (JSON.parse(r.stdout) as unknown[]).length;
}

// ------------------------------------------------------------------------ raw TLS for channel binding

function tlsConnect(o: Pick<tls.ConnectionOptions, 'maxVersion' | 'minVersion' | 'session'>): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: 'localhost', servername: 'localhost', port: svc.httpsPort, ca: fs.readFileSync(svc.chainPem), ...o }, () => resolve(s));
    s.once('error', reject);
  });
}

/** rawPost sends one HTTP/1.1 request on an open TLS socket (Connection: close) and reads the reply. */
function rawPost(sock: tls.TLSSocket, path: string, headers: Record<string, string>, body: Buffer | string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.once('error', reject);
    sock.once('close', () => {
      const all = Buffer.concat(chunks);
      const end = all.indexOf('\r\n\r\n');
      if (end < 0) return reject(new Error(`no HTTP reply: ${all.toString('latin1')}`));
      const head = parseHead(all.subarray(0, end).toString('latin1'));
      const b = all.subarray(end + 4);
      resolve({ ...head, body: b, text: b.toString('latin1') });
    });
    const bodyBuf = Buffer.from(body);
    const lines = [`POST ${path} HTTP/1.1`, 'Host: localhost', 'Connection: close', `Content-Length: ${bodyBuf.length}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
    sock.write(lines.join('\r\n') + '\r\n\r\n');
    sock.write(bodyBuf);
  });
}

const basic = (id: string, secret: string): string => 'Basic ' + Buffer.from(`${id}:${secret}`).toString('base64');

// ------------------------------------------------------------------------------------------ set-up

/** a manufacturer CA and IDevIDs made with openssl, as a factory would */
const MFR_EXT = 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nauthorityKeyIdentifier=keyid\n';
async function makeManufacturer(name: string): Promise<{ caPem: string; caKey: string }> {
  const caKey = await key('p256', `${name}-ca`);
  const cfg = tmp.write(
    `mfr/${name}.cnf`,
    `[req]\nprompt=no\ndistinguished_name=dn\nx509_extensions=v3\n[dn]\nO=${name}\nCN=${name} IDevID CA\n[v3]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n`,
  );
  const caPem = tmp.file(`mfr/${name}-ca.pem`);
  await openssl('req', '-x509', '-new', '-key', caKey, '-config', cfg, '-days', '30', '-out', caPem);
  return { caPem, caKey };
}

/** makeSubCa: an intermediate manufacturer CA signed by mfr (IDevID hierarchies are often two deep) */
async function makeSubCa(mfr: { caPem: string; caKey: string }, name: string): Promise<{ caPem: string; caKey: string }> {
  const caKey = await key('p256', `${name}-ca`);
  const req = tmp.file(`mfr/${name}-ca.csr`);
  await openssl('req', '-new', '-key', caKey, '-subj', `/O=${name}/CN=${name} Sub CA`, '-out', req);
  const ext = tmp.write(`mfr/${name}-ca.ext`, 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n');
  const caPem = tmp.file(`mfr/${name}-ca.pem`);
  await openssl('x509', '-req', '-in', req, '-CA', mfr.caPem, '-CAkey', mfr.caKey, '-set_serial', String(1000 + next()), '-days', '30', '-extfile', ext, '-out', caPem);
  return { caPem, caKey };
}

async function makeIdevid(mfr: { caPem: string; caKey: string }, serialNumber: string): Promise<{ cert: string; key: string }> {
  const k = await key('p256', `idevid-${serialNumber}`);
  const req = tmp.file(`mfr/${serialNumber}.csr`);
  await openssl('req', '-new', '-key', k, '-subj', `/serialNumber=${serialNumber}/CN=device ${serialNumber}`, '-out', req);
  const ext = tmp.write(`mfr/${serialNumber}.ext`, MFR_EXT);
  const cert = tmp.file(`mfr/${serialNumber}.pem`);
  await openssl('x509', '-req', '-in', req, '-CA', mfr.caPem, '-CAkey', mfr.caKey, '-set_serial', String(1000 + next()), '-days', '30', '-extfile', ext, '-out', cert);
  return { cert, key: k };
}

let maker: { caPem: string; caKey: string };
let rogue: { caPem: string; caKey: string };

beforeAll(async () => {
  assertBuilt();
  tmp = makeTmpDir('device-ca-est-');
  [maker, rogue] = await Promise.all([makeManufacturer('Maker'), makeManufacturer('Rogue')]);
  svc = await startService({
    configYaml: [
      'est:',
      '  labels:',
      '    default: {}',
      '    strict: { keyAlgorithms: [ecdsa-p256] }',
      '    pop: { proofOfPossession: true }',
      '    manual: { manualApproval: true }',
      '    wrapped: { replyBase64: wrapped-64 }',
      'bootstrap:',
      `  trustAnchors: [${JSON.stringify(maker.caPem)}]`,
      '',
    ].join('\n'),
  });
  // warm the key cache in parallel (RSA generation is the slow one)
  await Promise.all([key('p256'), key('p384'), key('rsa2048'), key('ed25519')]);
});

afterAll(teardown);

// -------------------------------------------------------------------------------------------- tests

describe('EST /cacerts', () => {
  it('returns a certs-only PKCS#7 with the issuing CA and the root, base64 on one line, Content-Length, no chunking', async () => {
    const r = await curl(estUrl('cacerts'));
    expectBase64Reply(r, CERTS_ONLY);
    const certs = await certsOf(r.body);
    expect(certs).toHaveLength(2);
    const chain = fs.readFileSync(svc.chainPem, 'utf8');
    expect(certs.join('')).toBe(chain); // issuing CA first, then the root, byte for byte the chain file
    // certs-only: SignedData without signers (RFC 7030 §4.1.3)
    const der = await must('base64', ['-d'], r.body);
    const f = tmp.write('cacerts.p7b', der.stdoutBytes);
    const print = await openssl('pkcs7', '-inform', 'DER', '-in', f, '-print');
    expect(print.stdout).toMatch(/signer_info:\s*\n\s*<EMPTY>/);
    expect(print.stdout).toMatch(/crl:\s*\n\s*<ABSENT>/);
  });

  it('a label with replyBase64: wrapped-64 sends the same PKCS#7 in 64-column lines; openssl base64 -d reads it', async () => {
    const one = await curl(estUrl('cacerts'));
    const r = await curl(estUrl('cacerts', 'wrapped'));
    expectBase64Reply(r, CERTS_ONLY, 'wrapped-64');
    const der = (await must('base64', ['-d'], r.body)).stdoutBytes;
    expect(der.equals((await must('base64', ['-d'], one.body)).stdoutBytes)).toBe(true);
    // openssl's own decoder (no -A) needs lines: what this style is kept for
    const viaOpenssl = (await must('openssl', ['base64', '-d'], r.body)).stdoutBytes;
    expect(viaOpenssl.equals(der)).toBe(true);
    // and the default one-line body decodes with openssl base64 -d -A
    expect((await must('openssl', ['base64', '-d', '-A'], one.body)).stdoutBytes.equals(der)).toBe(true);
  });

  it('verifies an issued certificate against the returned root (trusted) and issuing CA (untrusted)', async () => {
    const certs = await certsOf((await curl(estUrl('cacerts'))).body);
    const issuing = tmp.write('cacerts-issuing.pem', certs[0]);
    const root = tmp.write('cacerts-root.pem', certs[1]);
    const rootText = (await openssl('x509', '-in', root, '-noout', '-subject', '-issuer', '-nameopt', 'RFC2253')).stdout;
    const [subj, iss] = rootText.trim().split('\n');
    expect(subj.replace('subject=', '')).toBe(iss.replace('issuer=', '')); // self-signed root second

    const id = `dev-${next()}`;
    const secret = await register(id);
    const r = await post('simpleenroll', b64(await csr(await key('p256'), `/CN=${id}`)), { user: [id, secret] });
    const leaf = await expectIssued(r, id);
    const v = await runProcess('openssl', ['verify', '-CAfile', root, '-untrusted', issuing, leaf.file]);
    expect(v.stdout.trim()).toBe(`${leaf.file}: OK`);
  });

  it('the same under an explicit label (/.well-known/est/strict/cacerts)', async () => {
    const r = await curl(estUrl('cacerts', 'strict'));
    expectBase64Reply(r, CERTS_ONLY);
    expect(await certsOf(r.body)).toHaveLength(2);
  });
});

describe('device-ca devices add', () => {
  it('prints the one-time secret alone on one line, and that secret enrolls', async () => {
    const r = await svc.cli(['devices', 'add', 'dev-1', '--owner', 'acme']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^[A-Za-z0-9_-]{27}\n$/);
    const out = await post('simpleenroll', b64(await csr(await key('p256'), '/CN=dev-1')), { user: ['dev-1', r.stdout.trim()] });
    await expectIssued(out, 'dev-1');
  });

  it('--json prints JSON carrying the secret, and that secret enrolls', async () => {
    const r = await svc.cli(['devices', 'add', 'dev-json', '--owner', 'acme', '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout) as { id: string; owner: string; secret: string; secretExpiresAt: string };
    expect(j).toMatchObject({ id: 'dev-json', owner: 'acme' });
    expect(j.secret).toMatch(/^[A-Za-z0-9_-]{27}$/);
    expect(new Date(j.secretExpiresAt).getTime()).toBeGreaterThan(Date.now());
    const out = await post('simpleenroll', b64(await csr(await key('p256'), '/CN=dev-json')), { user: ['dev-json', j.secret] });
    await expectIssued(out, 'dev-json');
  });
});

describe('EST /simpleenroll with HTTP Basic and a one-time secret', () => {
  type Encoding = 'base64-64' | 'base64-76' | 'base64-one-line' | 'base64-crlf' | 'pem';
  const cases: [Encoding, KeyKind][] = [
    ['base64-64', 'p256'],
    ['base64-76', 'p256'],
    ['base64-one-line', 'p256'],
    ['base64-crlf', 'p256'],
    ['pem', 'p256'],
    ['base64-64', 'p384'],
    ['base64-crlf', 'rsa2048'],
  ];
  it.each(cases)('CSR sent as %s with a %s key: 200, O=acme CN=dev-<n>, verifies, clientAuth, CRL DP, AIA', async (enc, kind) => {
    const id = `dev-${next()}`;
    const secret = await register(id);
    const k = await key(kind);
    let body: string;
    if (enc === 'pem') {
      body = (await csr(k, `/CN=${id}`, { pem: true })).toString('latin1');
      expect(body).toMatch(/^-----BEGIN CERTIFICATE REQUEST-----\n/);
    } else {
      const der = await csr(k, `/CN=${id}`);
      body = enc === 'base64-64' ? b64(der, 64) : enc === 'base64-76' ? b64(der, 76) : enc === 'base64-crlf' ? b64(der, 64, '\r\n') : b64(der, 0);
    }
    const r = await post('simpleenroll', body, { user: [id, secret] });
    const info = await expectIssued(r, id);
    // the certified key is the CSR's key
    const want = (await openssl('pkey', '-in', k, '-pubout')).stdout;
    const got = (await openssl('x509', '-in', info.file, '-noout', '-pubkey')).stdout;
    expect(got).toBe(want);
    const listed = await svc.cli(['certs', 'list', '--device', id, '--json']);
    expect((JSON.parse(listed.stdout) as { serial: string }[]).map((c) => c.serial.toUpperCase().replace(/^0+/, ''))).toEqual([info.serial.replace(/^0+/, '')]);
  });
});

describe('EST labels bound to a device (devices add --label)', () => {
  it('a device registered for label strict: 403 on the default label, 200 on strict', async () => {
    const id = `dev-${next()}`;
    const secret = await register(id, '--label', 'strict');
    const body = b64(await csr(await key('p256'), `/CN=${id}`));
    const wrong = await post('simpleenroll', body, { user: [id, secret] });
    expect(wrong.status).toBe(403);
    expectClean(wrong);
    await expectIssued(await post('simpleenroll', body, { user: [id, secret], label: 'strict' }), id);
  });

  it('an unknown label in devices add is refused by the CLI', async () => {
    const r = await svc.cli(['devices', 'add', `dev-${next()}`, '--label', 'nosuchlabel']);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/nosuchlabel/);
  });
});

describe('EST authentication failures', () => {
  it('a used secret with another key is refused: 401 with WWW-Authenticate: Basic realm=...', async () => {
    const id = `dev-${next()}`;
    const secret = await register(id);
    await expectIssued(await post('simpleenroll', b64(await csr(await key('p256'), `/CN=${id}`)), { user: [id, secret] }), id);
    expectUnauthenticated(await post('simpleenroll', b64(await csr(await key('p256', `other-${id}`), `/CN=${id}`)), { user: [id, secret] }));
  });

  it('a lost reply: the same secret and the same key again within enrollment.retryWindow get the identical certificate; a new key then gets 401', async () => {
    const id = `dev-${next()}`;
    const secret = await register(id);
    const k = await key('p256', `lost-${id}`);
    const first = await post('simpleenroll', b64(await csr(k, `/CN=${id}`)), { user: [id, secret] });
    const a = await expectIssued(first, id);
    // a fresh CSR (new signature) for the same key, as a device that retries after a timeout makes
    const again = await post('simpleenroll', b64(await csr(k, `/CN=${id}`)), { user: [id, secret] });
    const b = await expectIssued(again, id);
    expect(b.serial).toBe(a.serial);
    expect(b.pem).toBe(a.pem);
    expect(again.body.equals(first.body)).toBe(true);
    // still one certificate for the device
    const listed = JSON.parse((await svc.cli(['certs', 'list', '--device', id, '--json'])).stdout) as { serial: string }[];
    expect(listed).toHaveLength(1);
    expectUnauthenticated(await post('simpleenroll', b64(await csr(await key('p256', `new-${id}`), `/CN=${id}`)), { user: [id, secret] }));
  });

  it('a wrong secret, an unknown device and no credentials at all: 401', async () => {
    const id = `dev-${next()}`;
    const secret = await register(id);
    const body = b64(await csr(await key('p256'), `/CN=${id}`));
    expectUnauthenticated(await post('simpleenroll', body, { user: [id, secret.slice(0, -1) + (secret.endsWith('A') ? 'B' : 'A')] }));
    expectUnauthenticated(await post('simpleenroll', body, { user: ['no-such-device', secret] }));
    expectUnauthenticated(await post('simpleenroll', body));
    // and the device's secret still works
    await expectIssued(await post('simpleenroll', body, { user: [id, secret] }), id);
  });

  it('after 5 failures for one device id: 429 with Retry-After, even with the right secret', async () => {
    const id = `dev-${next()}`;
    const secret = await register(id);
    const body = b64(await csr(await key('p256'), `/CN=${id}`));
    for (let i = 0; i < 5; i++) expectUnauthenticated(await post('simpleenroll', body, { user: [id, `wrong-${i}`] }));
    for (const pw of ['wrong-again', secret]) {
      const r = await post('simpleenroll', body, { user: [id, pw] });
      expect(r.status).toBe(429);
      expect(header(r, 'retry-after')).toMatch(/^[1-9]\d*$/);
      expect(Number(header(r, 'retry-after'))).toBeLessThanOrEqual(15 * 60);
      expectClean(r);
    }
    // another device is not affected by this one's lock
    const other = `dev-${next()}`;
    const otherSecret = await register(other);
    await expectIssued(await post('simpleenroll', b64(await csr(await key('p256'), `/CN=${other}`)), { user: [other, otherSecret] }), other);
  });

  it('an expired secret (--secret-ttl 1s, 1.5 s later): 401', async () => {
    const id = `dev-${next()}`;
    const secret = await register(id, '--secret-ttl', '1s');
    const body = b64(await csr(await key('p256'), `/CN=${id}`));
    await new Promise((r) => setTimeout(r, 1500));
    expectUnauthenticated(await post('simpleenroll', body, { user: [id, secret] }));
  });
});

describe('EST /simpleenroll with bad input', () => {
  const id = 'dev-neg';
  let secret: string;
  let before: number;
  const seen: Reply[] = [];
  const send = async (body: Buffer | string, o: PostOptions = {}): Promise<Reply> => {
    const r = await post('simpleenroll', body, { user: [id, secret], ...o });
    seen.push(r);
    expectClean(r);
    return r;
  };

  beforeAll(async () => {
    secret = await register(id);
    before = await certCount();
  });

  it('a CSR naming another device (CN=dev-1): 403', async () => {
    const r = await send(b64(await csr(await key('p256'), '/CN=dev-1')));
    expect(r.status).toBe(403);
  });

  it('a CSR with a subjectAltName on a label that does not allow SANs: 403', async () => {
    const r = await send(b64(await csr(await key('p256'), `/CN=${id}`, { san: 'DNS:dev-neg.example.net' })));
    expect(r.status).toBe(403);
  });

  it('a CSR whose signature does not verify (last signature byte flipped): 400', async () => {
    const der = Buffer.from(await csr(await key('p256'), `/CN=${id}`));
    der[der.length - 1] ^= 0x01;
    const r = await send(b64(der));
    expect(r.status).toBe(400);
  });

  it('garbage that is not base64: 400', async () => {
    expect((await send('this is *not* base64 %%%\n')).status).toBe(400);
  });

  it('an empty body: 400', async () => {
    expect((await send('')).status).toBe(400);
  });

  it('DER that is not a CSR (the CA certificate): 400', async () => {
    const pem = fs.readFileSync(svc.chainPem, 'utf8').match(PEM_CERT)![0];
    const der = Buffer.from(pem.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64');
    expect((await send(b64(der))).status).toBe(400);
  });

  it('a wrong Content-Type (text/plain): 400', async () => {
    const r = await send(b64(await csr(await key('p256'), `/CN=${id}`)), { contentType: 'text/plain' });
    // the EST router refuses anything but application/pkcs10 as bad-request (400) before reading the body
    expect(r.status).toBe(400);
  });

  it('a body over https.bodyLimit (70 KB > 64 KiB): 413', async () => {
    const big = b64(crypto.randomBytes(52 * 1024)); // ~70 KB of base64
    expect(big.length).toBeGreaterThan(70_000);
    expect((await send(big)).status).toBe(413);
  });

  it('a chunked upload (no Content-Length) that grows over https.bodyLimit: 413', async () => {
    const r = await send(b64(crypto.randomBytes(52 * 1024)), { chunked: true });
    expect(r.status).toBe(413);
  });

  it('a key type the label does not allow (RSA on label strict: [ecdsa-p256]): 400', async () => {
    expect((await send(b64(await csr(await key('rsa2048'), `/CN=${id}`)), { label: 'strict' })).status).toBe(400);
  });

  it('a key type device-ca does not issue for (Ed25519): 400', async () => {
    expect((await send(b64(await csr(await key('ed25519'), `/CN=${id}`)))).status).toBe(400);
  });

  it('left no certificate in the store, and the secret still enrolls a good CSR afterwards', async () => {
    expect(seen.length).toBeGreaterThanOrEqual(10);
    for (const r of seen) expect(r.text).not.toMatch(STACK);
    expect(await certCount()).toBe(before);
    await expectIssued(await post('simpleenroll', b64(await csr(await key('p256'), `/CN=${id}`)), { user: [id, secret] }), id);
    expect(await certCount()).toBe(before + 1);
  });
});

describe('EST /simplereenroll with the current certificate as TLS client certificate', () => {
  const id = 'dev-renew';
  let certFile: string;
  let keyFile: string;
  let firstSerial: string;

  beforeAll(async () => {
    const secret = await register(id);
    keyFile = await key('p256', id);
    const r = await post('simpleenroll', b64(await csr(keyFile, `/CN=${id}`)), { user: [id, secret] });
    const info = await expectIssued(r, id);
    certFile = info.file;
    firstSerial = info.serial;
  });

  it('same key (renew): 200, a new serial, same subject', async () => {
    const r = await post('simplereenroll', b64(await csr(keyFile, `/O=acme/CN=${id}`)), { cert: certFile, key: keyFile });
    const info = await expectIssued(r, id);
    expect(info.serial).not.toBe(firstSerial);
    expect((await openssl('x509', '-in', info.file, '-noout', '-pubkey')).stdout).toBe((await openssl('pkey', '-in', keyFile, '-pubout')).stdout);
  });

  it('new key (rekey): 200, a new serial, the new key certified', async () => {
    const newKey = await key('p256', `${id}-rekey`);
    const r = await post('simplereenroll', b64(await csr(newKey, `/O=acme/CN=${id}`)), { cert: certFile, key: keyFile });
    const info = await expectIssued(r, id);
    expect(info.serial).not.toBe(firstSerial);
    expect((await openssl('x509', '-in', info.file, '-noout', '-pubkey')).stdout).toBe((await openssl('pkey', '-in', newKey, '-pubout')).stdout);
    const list = JSON.parse((await svc.cli(['certs', 'list', '--device', id, '--json'])).stdout) as unknown[];
    expect(list).toHaveLength(3);
  });

  it('a subject that differs from the current certificate: 403', async () => {
    const r = await post('simplereenroll', b64(await csr(keyFile, `/O=other/CN=${id}`)), { cert: certFile, key: keyFile });
    expect(r.status).toBe(403);
    expectClean(r);
  });

  it('a subjectAltName the current certificate does not have: 403', async () => {
    const r = await post('simplereenroll', b64(await csr(keyFile, `/O=acme/CN=${id}`, { san: 'DNS:evil.example.net' })), { cert: certFile, key: keyFile });
    expect(r.status).toBe(403);
    expectClean(r);
  });

  it('no client certificate: 401', async () => {
    expectUnauthenticated(await post('simplereenroll', b64(await csr(keyFile, `/O=acme/CN=${id}`))));
  });

  it('a self-signed client certificate with the same subject: 401', async () => {
    const self = tmp.file('self-signed.pem');
    await openssl('req', '-x509', '-new', '-key', keyFile, '-subj', `/O=acme/CN=${id}`, '-days', '1', '-out', self);
    // not issued by this CA and chaining to no bootstrap anchor: the RA does not know who this is (unauthenticated)
    expectUnauthenticated(await post('simplereenroll', b64(await csr(keyFile, `/O=acme/CN=${id}`)), { cert: self, key: keyFile }));
  });
});

/** parseMultipart splits a multipart/mixed body; strict = only CRLF-preceded delimiters count (RFC 2046 §5.1.1) */
function parseMultipart(body: string, boundary: string, strict: boolean): { headers: Map<string, string>; body: string }[] {
  const delim = strict ? `\r\n--${boundary}` : `--${boundary}`;
  const text = strict ? '\r\n' + body : body; // the first delimiter may start the body
  const pieces = text.split(delim);
  const parts: { headers: Map<string, string>; body: string }[] = [];
  for (const piece of pieces.slice(1)) {
    if (piece.startsWith('--')) break; // close delimiter
    const p = piece.replace(/^[ \t]*\r\n/, '');
    const end = p.indexOf('\r\n\r\n');
    if (end < 0) continue;
    const headers = new Map<string, string>();
    for (const l of p.slice(0, end).split('\r\n')) {
      const i = l.indexOf(':');
      if (i > 0) headers.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim());
    }
    parts.push({ headers, body: p.slice(end + 4) });
  }
  return parts;
}

describe('EST /serverkeygen', () => {
  let reply: Reply;
  let boundary: string;
  const id = 'dev-skg';

  beforeAll(async () => {
    const secret = await register(id);
    reply = await post('serverkeygen', b64(await csr(await key('p256'), `/CN=${id}`)), { user: [id, secret] });
    boundary = /^multipart\/mixed; *boundary="?([^";]+)"?$/.exec(header(reply, 'content-type') ?? '')?.[1] ?? '';
  });

  it('answers 200 multipart/mixed with Content-Length and no chunking', () => {
    expect(reply.status).toBe(200);
    expect(header(reply, 'content-type')).toMatch(/^multipart\/mixed; *boundary=/);
    expect(boundary).not.toBe('');
    expectLengthNotChunked(reply);
  });

  it('holds a PKCS#8 key that openssl parses and a certificate for that key', async () => {
    const parts = parseMultipart(reply.text, boundary, true);
    expect(parts.map((p) => p.headers.get('content-type'))).toEqual(['application/pkcs8', CERTS_ONLY]);
    for (const p of parts) {
      expect(p.headers.get('content-transfer-encoding')).toBe('base64');
      expectSingleLineBase64(p.body.replace(/\r\n$/, ''));
    }
    const keyDer = tmp.write('skg/key.der', (await must('base64', ['-d'], parts[0].body)).stdoutBytes);
    // PrivateKeyInfo (RFC 5208): version 0, then an AlgorithmIdentifier, not an SEC1/PKCS#1 key
    const asn1 = (await openssl('asn1parse', '-inform', 'DER', '-in', keyDer)).stdout.split('\n');
    expect(asn1[1]).toMatch(/d=1 .*INTEGER +:00$/);
    expect(asn1[2]).toMatch(/d=1 .*cons: SEQUENCE/);
    expect(asn1[3]).toMatch(/d=2 .*OBJECT +:id-ecPublicKey$/);
    const keyText = await openssl('pkey', '-inform', 'DER', '-in', keyDer, '-noout', '-text');
    expect(keyText.stdout).toMatch(/Private-Key: \(256 bit/);
    const keyPub = (await openssl('pkey', '-inform', 'DER', '-in', keyDer, '-pubout')).stdout;

    const certs = await certsOf(parts[1].body);
    expect(certs).toHaveLength(1);
    const info = await inspect(certs[0]);
    expect(info.subject).toBe(`CN=${id},O=acme`);
    expect((await openssl('x509', '-in', info.file, '-noout', '-pubkey')).stdout).toBe(keyPub);
    // the server made a new key: not the one in the CSR
    expect(keyPub).not.toBe((await openssl('pkey', '-in', await key('p256'), '-pubout')).stdout);
    const v = await runProcess('openssl', ['verify', '-CAfile', svc.chainPem, info.file]);
    expect(v.stdout.trim()).toBe(`${info.file}: OK`);
  });

  it('puts each delimiter at the start of a line, after CRLF (RFC 2046 §5.1.1), so strict MIME parsers find both parts', () => {
    const parts = parseMultipart(reply.text, boundary, true);
    expect(parts.map((p) => p.headers.get('content-type'))).toEqual(['application/pkcs8', CERTS_ONLY]);
  });
});

describe('EST /csrattrs', () => {
  it('advertises P-256 and ecdsa-with-SHA256 (application/csrattrs, base64)', async () => {
    const r = await curl(estUrl('csrattrs'));
    expectBase64Reply(r, 'application/csrattrs');
    const der = tmp.write('csrattrs-default.der', (await must('base64', ['-d'], r.body)).stdoutBytes);
    const out = (await openssl('asn1parse', '-inform', 'DER', '-in', der)).stdout;
    expect(out).toMatch(/OBJECT +:id-ecPublicKey/);
    expect(out).toMatch(/OBJECT +:prime256v1/);
    expect(out).toMatch(/OBJECT +:ecdsa-with-SHA256/);
    expect(out).not.toMatch(/challengePassword/);
  });

  it('on a label with proofOfPossession asks for challengePassword', async () => {
    const r = await curl(estUrl('csrattrs', 'pop'));
    expectBase64Reply(r, 'application/csrattrs');
    const der = tmp.write('csrattrs-pop.der', (await must('base64', ['-d'], r.body)).stdoutBytes);
    const out = (await openssl('asn1parse', '-inform', 'DER', '-in', der)).stdout;
    expect(out).toMatch(/OBJECT +:challengePassword/);
    expect(out).toMatch(/OBJECT +:prime256v1/);
  });
});

describe('EST labels and operations', () => {
  it('an unknown label: 404', async () => {
    const r = await curl(estUrl('cacerts', 'nosuchlabel'));
    expect(r.status).toBe(404);
    expectClean(r);
  });

  it('a label named like an Object.prototype property (constructor, __proto__, toString): 404, never a 200 or a 500', async () => {
    for (const [op, label] of [
      ['csrattrs', 'constructor'],
      ['cacerts', '__proto__'],
      ['csrattrs', 'toString'],
      ['cacerts', 'hasOwnProperty'],
    ]) {
      const r = await curl(estUrl(op, label));
      expect({ label, status: r.status }).toEqual({ label, status: 404 });
      expectClean(r);
    }
  });

  it('fullcmc: 501', async () => {
    const r = await post('fullcmc', 'MAA=\n', { contentType: 'application/pkcs7-mime; smime-type=CMC-request' });
    expect(r.status).toBe(501);
    expect(r.text).not.toMatch(STACK);
  });

  it('an unknown operation: 404', async () => {
    const r = await curl(estUrl('simplereenrol'));
    expect(r.status).toBe(404);
    expectClean(r);
    const r2 = await post('nosuchop', 'MAA=\n', { label: 'strict' });
    expect(r2.status).toBe(404);
    expectClean(r2);
  });
});

describe('EST manual approval (label manual)', () => {
  async function pending(id: string): Promise<{ secret: string; body: string; requestId: string }> {
    const secret = await register(id);
    const body = b64(await csr(await key('p256'), `/CN=${id}`));
    const r = await post('simpleenroll', body, { user: [id, secret], label: 'manual' });
    expect(r.status).toBe(202);
    expect(header(r, 'retry-after')).toBe('60');
    expectLengthNotChunked(r);
    const list = await svc.cli(['requests', 'list', '--json']);
    expect(list.code).toBe(0);
    const mine = (JSON.parse(list.stdout) as { id: string; deviceId: string; status: string; label: string; operation: string }[]).filter((q) => q.deviceId === id);
    expect(mine).toHaveLength(1);
    expect(mine[0]).toMatchObject({ status: 'pending', label: 'manual', operation: 'enroll' });
    // asking again before a decision keeps it pending: still 202, no second request
    const again = await post('simpleenroll', body, { user: [id, secret], label: 'manual' });
    expect(again.status).toBe(202);
    expect(JSON.parse((await svc.cli(['requests', 'list', '--json'])).stdout).filter((q: { deviceId: string }) => q.deviceId === id)).toHaveLength(1);
    return { secret, body, requestId: mine[0].id };
  }

  it('202 with Retry-After, pending in `requests list`; after `requests approve` the same CSR and secret get 200', async () => {
    const id = `dev-${next()}`;
    const p = await pending(id);
    const a = await svc.cli(['requests', 'approve', p.requestId]);
    expect(a.code).toBe(0);
    expect(a.stdout.trim()).toBe(`${p.requestId} approved`);
    await expectIssued(await post('simpleenroll', p.body, { user: [id, p.secret], label: 'manual' }), id);
    const all = JSON.parse((await svc.cli(['requests', 'list', '--status', 'all', '--json'])).stdout) as { id: string; status: string }[];
    expect(all.find((q) => q.id === p.requestId)?.status).toBe('issued');
  });

  it('after `requests reject` the retry gets 403', async () => {
    const id = `dev-${next()}`;
    const p = await pending(id);
    const j = await svc.cli(['requests', 'reject', p.requestId, '--json']);
    expect(j.code).toBe(0);
    expect(JSON.parse(j.stdout)).toMatchObject({ id: p.requestId, status: 'rejected' });
    const r = await post('simpleenroll', p.body, { user: [id, p.secret], label: 'manual' });
    expect(r.status).toBe(403);
    expectClean(r);
  });
});

describe('EST proof of possession (RFC 7030 §3.5, label pop)', () => {
  const path = '/.well-known/est/pop/simpleenroll';

  it('TLS 1.2: challengePassword = base64(tls-unique) of the same connection: 200; the same CSR on another connection: 403', async () => {
    const id = `dev-${next()}`;
    const secret = await register(id);
    const a = await tlsConnect({ maxVersion: 'TLSv1.2' });
    try {
      expect(a.getProtocol()).toBe('TLSv1.2');
      expect(a.isSessionReused()).toBe(false);
      const tlsUnique = a.getFinished()!; // the client's Finished: the first one on a full handshake (RFC 5929 §3.1)
      expect(tlsUnique.length).toBe(12);
      const body = b64(await popCsr(await key('p256'), id, tlsUnique.toString('base64')));
      const headers = { Authorization: basic(id, secret), 'Content-Type': 'application/pkcs10' };

      const b = await tlsConnect({ maxVersion: 'TLSv1.2' });
      const elsewhere = await rawPost(b, path, headers, body);
      expect(elsewhere.status).toBe(403);
      expectClean(elsewhere);

      const r = await rawPost(a, path, headers, body);
      await expectIssued(r, id);
    } finally {
      a.destroy();
    }
  });

  it('TLS 1.2: a CSR without challengePassword: 403', async () => {
    const id = `dev-${next()}`;
    const secret = await register(id);
    const s = await tlsConnect({ maxVersion: 'TLSv1.2' });
    const r = await rawPost(s, path, { Authorization: basic(id, secret), 'Content-Type': 'application/pkcs10' }, b64(await csr(await key('p256'), `/CN=${id}`)));
    expect(r.status).toBe(403);
    expectClean(r);
  });

  it('TLS 1.2 resumed session: tls-unique is the server Finished (the first one of an abbreviated handshake): 200', async () => {
    const id = `dev-${next()}`;
    const secret = await register(id);
    const first = await tlsConnect({ maxVersion: 'TLSv1.2' });
    const session = first.getSession();
    first.end();
    expect(session).toBeDefined();
    const s = await tlsConnect({ maxVersion: 'TLSv1.2', session });
    try {
      expect(s.isSessionReused()).toBe(true);
      const tlsUnique = s.getPeerFinished()!;
      const body = b64(await popCsr(await key('p256'), id, tlsUnique.toString('base64')));
      const r = await rawPost(s, path, { Authorization: basic(id, secret), 'Content-Type': 'application/pkcs10' }, body);
      await expectIssued(r, id);
    } finally {
      s.destroy();
    }
  });

  it('TLS 1.3: challengePassword = base64(tls-exporter, RFC 9266): 200', async () => {
    const id = `dev-${next()}`;
    const secret = await register(id);
    const s = await tlsConnect({ minVersion: 'TLSv1.3' });
    try {
      expect(s.getProtocol()).toBe('TLSv1.3');
      const exporter = s.exportKeyingMaterial(32, 'EXPORTER-Channel-Binding', Buffer.alloc(0));
      const body = b64(await popCsr(await key('p256'), id, exporter.toString('base64')));
      const r = await rawPost(s, path, { Authorization: basic(id, secret), 'Content-Type': 'application/pkcs10' }, body);
      await expectIssued(r, id);
    } finally {
      s.destroy();
    }
  });
});

describe('EST bootstrap with a manufacturer certificate (IDevID)', () => {
  it('an IDevID from a configured trust anchor, no Basic: 200 for the device named by subject serialNumber', async () => {
    await register('SN123');
    const idev = await makeIdevid(maker, 'SN123');
    const r = await post('simpleenroll', b64(await csr(await key('p256'), '/CN=SN123')), { cert: idev.cert, key: idev.key });
    await expectIssued(r, 'SN123');
  });

  it('an IDevID under an intermediate CA, sent with the intermediate (trust anchor = the root): 200', async () => {
    await register('SN125');
    const sub = await makeSubCa(maker, 'MakerSub');
    const idev = await makeIdevid(sub, 'SN125');
    const withChain = tmp.write('mfr/SN125-chain.pem', fs.readFileSync(idev.cert, 'utf8') + fs.readFileSync(sub.caPem, 'utf8'));
    const r = await post('simpleenroll', b64(await csr(await key('p256'), '/CN=SN125')), { cert: withChain, key: idev.key });
    await expectIssued(r, 'SN125');
  });

  it('an IDevID from an untrusted CA: 401', async () => {
    await register('SN124');
    const idev = await makeIdevid(rogue, 'SN124');
    const r = await post('simpleenroll', b64(await csr(await key('p256'), '/CN=SN124')), { cert: idev.cert, key: idev.key });
    expectUnauthenticated(r);
  });

  it('a trusted IDevID of a device released to a new owner (transferring) is refused until the claim; then it enrolls as the new owner', async () => {
    await register('SN126');
    const idev = await makeIdevid(maker, 'SN126');
    const rel = await svc.cli(['devices', 'release', 'SN126', '--to', 'bravo']);
    expect({ code: rel.code, stdout: rel.stdout }).toEqual({ code: 0, stdout: 'SN126 transferring to bravo\n' });
    const refused = await post('simpleenroll', b64(await csr(await key('p256'), '/CN=SN126')), { cert: idev.cert, key: idev.key });
    expect({ status: refused.status, text: refused.text.trim() }).toEqual({ status: 403, text: 'device is being transferred' });
    expect((await svc.cli(['devices', 'claim', 'SN126'])).code).toBe(0);
    const r = await post('simpleenroll', b64(await csr(await key('p256'), '/CN=SN126')), { cert: idev.cert, key: idev.key });
    expect(r.status).toBe(200);
    expect((await inspect((await certsOf(r.body))[0])).subject).toBe('CN=SN126,O=bravo');
  });

  it('a trusted IDevID for a device that is not registered: 401', async () => {
    const idev = await makeIdevid(maker, 'SN999');
    const r = await post('simpleenroll', b64(await csr(await key('p256'), '/CN=SN999')), { cert: idev.cert, key: idev.key });
    expectUnauthenticated(r);
  });
});
