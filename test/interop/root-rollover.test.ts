import { Device, must, openssl, opensslAny, pkiClient } from '../helpers/pki-client';
import { RunningService, assertBuilt, runProcess, startService } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * `device-ca ca rollover-root`, then `ca rollover`, against the running service, judged by openssl: EST
 * /cacerts carries both roots and both link certificates (RFC 7030 §4.1.3); a relying party that trusts
 * only the old root verifies a leaf of the new hierarchy through OldWithNew, one that trusts only the new
 * root verifies a leaf of the old hierarchy through NewWithOld, both with -crl_check_all and the CRLs
 * fetched from the service (each root publishes its own at /crl/<root-name>.crl).
 */

let svc: RunningService;
let tmp: TmpDir;
let operatorToken: string;
const { curl, cli, cliOk, enroll, teardown } = pkiClient({ svc: () => svc, tmp: () => tmp, operatorToken: () => operatorToken });

const OLD_ROOT = 'device-ca-root';
const NEW_ROOT = 'device-ca-root-2';
let oldLeaf: Device;
let newLeaf: Device;

/** CertInfo: one certificate of /cacerts as a client reads it (openssl pkcs7 -print_certs). */
interface CertInfo {
  subject: string;
  issuer: string;
  pem: string;
}

/** cacerts: EST /cacerts as a client reads it: base64 -d | openssl pkcs7 -print_certs, in order */
async function cacerts(): Promise<CertInfo[]> {
  const r = await curl(`${svc.est}/cacerts`);
  expect(r.status).toBe(200);
  const der = await must('base64', ['-d'], r.body);
  const p7 = tmp.write(`cacerts-${Date.now()}.p7`, der.stdoutBytes);
  const text = (await openssl('pkcs7', '-inform', 'DER', '-in', p7, '-print_certs')).stdout;
  return [...text.matchAll(/subject=(.*)\nissuer=(.*)\n\n?(-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n)/g)].map((m) => ({ subject: m[1], issuer: m[2], pem: m[3] }));
}

const ROOT1 = 'O = device-ca, CN = device-ca Root CA';
const ROOT2 = 'O = device-ca, CN = device-ca Root CA 2';
const ISS1 = 'O = device-ca, CN = device-ca Issuing CA';
const ISS2 = 'O = device-ca, CN = device-ca Issuing CA 2';
const pick = (certs: CertInfo[], subject: string, issuer: string): string => {
  const c = certs.find((x) => x.subject === subject && x.issuer === issuer);
  if (!c) throw new Error(`no certificate ${subject} issued by ${issuer} in /cacerts: ${certs.map((x) => `${x.subject} <- ${x.issuer}`).join('; ')}`);
  return c.pem;
};

/** waitForCacerts: the running service reads the CA state from the store at its next CA duties round (10 s) */
async function waitForCacerts(n: number): Promise<CertInfo[]> {
  const end = Date.now() + 30_000;
  for (;;) {
    const certs = await cacerts();
    if (certs.length >= n) return certs;
    if (Date.now() > end) throw new Error(`/cacerts still holds ${certs.length} certificates`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** crlPem: GET a CRL from the service and convert it to PEM (unverified: openssl verify checks it in the chain) */
async function crlPem(url: string): Promise<string> {
  const r = await curl(url);
  expect(r.status).toBe(200);
  const der = tmp.write(`crl-${Date.now()}-${Math.random()}.crl`, r.body);
  return (await openssl('crl', '-inform', 'DER', '-in', der)).stdout;
}

let certsAfter: CertInfo[];
let crls: string;
let refused: { code: number | null; stderr: string };

beforeAll(async () => {
  assertBuilt();
  tmp = makeTmpDir('device-ca-root-rollover-');
  svc = await startService();
  operatorToken = (await cliOk('tokens', 'create', '--scope', 'operator')).trim();
  oldLeaf = await enroll('dev-old');
  const out = await cliOk('ca', 'rollover-root');
  expect(out).toContain(`root CA ${NEW_ROOT}`);
  expect(out).toContain(`replaces ${OLD_ROOT}`);
  // issuing CA, old root, new root, OldWithNew, NewWithOld
  await waitForCacerts(5);
  const again = await cli('ca', 'rollover-root');
  refused = { code: again.code, stderr: again.stderr };
  expect(await cliOk('ca', 'rollover')).toContain('issuing CA device-ca-issuing-2');
  certsAfter = await waitForCacerts(6);
  newLeaf = await enroll('dev-new');
  crls =
    (await crlPem(`http://127.0.0.1:${svc.httpPort}/crl/${OLD_ROOT}.crl`)) +
    (await crlPem(`http://127.0.0.1:${svc.httpPort}/crl/${NEW_ROOT}.crl`)) +
    (await crlPem(oldLeaf.crlUrl)) +
    (await crlPem(newLeaf.crlUrl));
}, 120_000);

afterAll(teardown);

it('a second `ca rollover-root` before `ca rollover` is refused, saying what to run first', () => {
  expect(refused.code).not.toBe(0);
  expect(refused.stderr).toContain(`root ${NEW_ROOT} (the last root rollover, from ${OLD_ROOT}) has no issuing CA under it yet`);
  expect(refused.stderr).toContain('device-ca ca rollover');
});

it('EST /cacerts: the new issuing CA, the old one, the new root, the old root, OldWithNew and NewWithOld', async () => {
  expect(certsAfter.map((c) => `${c.subject} <- ${c.issuer}`)).toEqual([
    `${ISS2} <- ${ROOT2}`,
    `${ISS1} <- ${ROOT1}`,
    `${ROOT2} <- ${ROOT2}`,
    `${ROOT1} <- ${ROOT1}`,
    `${ROOT2} <- ${ROOT1}`,
    `${ROOT1} <- ${ROOT2}`,
  ]);
  // /ca/<root>.crt serves both roots (the AIA caIssuers of the CA certificates each signed)
  for (const name of [OLD_ROOT, NEW_ROOT]) expect((await curl(`http://127.0.0.1:${svc.httpPort}/ca/${name}.crt`)).status).toBe(200);
  expect((await openssl('x509', '-in', newLeaf.crt, '-noout', '-issuer')).stdout).toBe(`issuer=${ISS2}\n`);
  expect((await openssl('x509', '-in', oldLeaf.crt, '-noout', '-issuer')).stdout).toBe(`issuer=${ISS1}\n`);
});

it('a client trusting only the OLD root verifies a leaf of the new hierarchy through OldWithNew, with -crl_check_all', async () => {
  const oldRoot = tmp.write('old-root.pem', pick(certsAfter, ROOT1, ROOT1));
  const untrusted = tmp.write('owN-iss2.pem', pick(certsAfter, ROOT2, ROOT1) + pick(certsAfter, ISS2, ROOT2));
  const crlFile = tmp.write('crls.pem', crls);
  expect((await opensslAny('verify', '-CAfile', oldRoot, '-untrusted', untrusted, '-crl_check_all', '-CRLfile', crlFile, newLeaf.crt)).out).toBe(`${newLeaf.crt}: OK\n`);
  // without the link certificate there is no path
  const iss2 = tmp.write('iss2.pem', pick(certsAfter, ISS2, ROOT2));
  expect((await opensslAny('verify', '-CAfile', oldRoot, '-untrusted', iss2, newLeaf.crt)).code).not.toBe(0);
});

it('a client trusting only the NEW root verifies a leaf of the old hierarchy through NewWithOld, with -crl_check_all', async () => {
  const newRoot = tmp.write('new-root.pem', pick(certsAfter, ROOT2, ROOT2));
  const untrusted = tmp.write('nwO-iss1.pem', pick(certsAfter, ROOT1, ROOT2) + pick(certsAfter, ISS1, ROOT1));
  const crlFile = tmp.write('crls.pem', crls);
  expect((await opensslAny('verify', '-CAfile', newRoot, '-untrusted', untrusted, '-crl_check_all', '-CRLfile', crlFile, oldLeaf.crt)).out).toBe(`${oldLeaf.crt}: OK\n`);
  const iss1 = tmp.write('iss1.pem', pick(certsAfter, ISS1, ROOT1));
  expect((await opensslAny('verify', '-CAfile', newRoot, '-untrusted', iss1, oldLeaf.crt)).code).not.toBe(0);
});

it('each root publishes its own CRL, signed by its own key; -crl_check_all fails without the old root CRL', async () => {
  const oldRoot = tmp.write('old-root.pem', pick(certsAfter, ROOT1, ROOT1));
  const newRoot = tmp.write('new-root.pem', pick(certsAfter, ROOT2, ROOT2));
  for (const [name, ca] of [
    [OLD_ROOT, oldRoot],
    [NEW_ROOT, newRoot],
  ]) {
    const file = tmp.write(`${name}.crl.pem`, await crlPem(`http://127.0.0.1:${svc.httpPort}/crl/${name}.crl`));
    expect((await opensslAny('crl', '-in', file, '-noout', '-CAfile', ca)).out).toContain('verify OK');
  }
  const withoutOld = tmp.write('crls-no-old-root.pem', crls.replace((await crlPem(`http://127.0.0.1:${svc.httpPort}/crl/${OLD_ROOT}.crl`)).trim(), ''));
  const untrusted = tmp.write('owN-iss2.pem', pick(certsAfter, ROOT2, ROOT1) + pick(certsAfter, ISS2, ROOT2));
  const r = await opensslAny('verify', '-CAfile', oldRoot, '-untrusted', untrusted, '-crl_check_all', '-CRLfile', withoutOld, newLeaf.crt);
  expect(r.code).not.toBe(0);
  expect(r.out).toContain('unable to get certificate CRL');
});

it('/healthz?detail names no root CRL problem (both roots have a current CRL); crl export writes both roots and their CRLs', async () => {
  const body = await (await fetch(`http://127.0.0.1:${svc.httpPort}/healthz?detail`)).text();
  expect(body).not.toMatch(/root CRL/);
  const dir = tmp.file('hashed');
  await cliOk('crl', 'export', '--dir', dir);
  // a relying party with the exported directory (both roots as anchors) accepts devices of both hierarchies
  for (const d of [oldLeaf, newLeaf]) expect((await opensslAny('verify', '-crl_check_all', '-CApath', dir, d.crt)).out).toBe(`${d.crt}: OK\n`);
});

it('OCSP for the issuing CA certificates: each root answers for the issuing CA it signed (good, verified with that root)', async () => {
  const url = `http://127.0.0.1:${svc.httpPort}/ocsp`;
  for (const [rootSubject, issSubject, name] of [
    [ROOT1, ISS1, 'old'],
    [ROOT2, ISS2, 'new'],
  ]) {
    const rootFile = tmp.write(`ocsp-${name}-root.pem`, pick(certsAfter, rootSubject, rootSubject));
    const issFile = tmp.write(`ocsp-${name}-iss.pem`, pick(certsAfter, issSubject, rootSubject));
    const r = await opensslAny('ocsp', '-issuer', rootFile, '-cert', issFile, '-url', url, '-CAfile', rootFile, '-no_nonce');
    expect(r.out).toContain('Response verify OK');
    expect(r.out).toContain(`${issFile}: good\n`);
  }
});

it('HTTPS: a client trusting only the new root verifies the listener (its chain carries NewWithOld after the reload)', async () => {
  const newRoot = tmp.write('tls-new-root.pem', pick(certsAfter, ROOT2, ROOT2));
  const connect = () =>
    runProcess('openssl', ['s_client', '-connect', `127.0.0.1:${svc.httpsPort}`, '-servername', 'localhost', '-CAfile', newRoot, '-verify_return_error', '-showcerts'], { input: '' });
  // the service reloads its service certificates each CA duties round (10 s)
  const end = Date.now() + 30_000;
  let r = await connect();
  while (!r.stdout.includes('Verify return code: 0 (ok)')) {
    if (Date.now() > end) throw new Error(`the listener's chain does not verify under the new root:\n${r.stdout}${r.stderr}`);
    await new Promise((res) => setTimeout(res, 500));
    r = await connect();
  }
  expect(r.stdout).toMatch(/^ 2 s:O ?= ?device-ca, CN ?= ?device-ca Root CA\n\s+i:O ?= ?device-ca, CN ?= ?device-ca Root CA 2\n/m);
}, 60_000);

it('ca drop-root: refused while the old issuing CA may have valid certificates; after it is revoked, the old root, its CRL and both links leave /cacerts', async () => {
  const refusedDrop = await svc.cli(['ca', 'drop-root', OLD_ROOT]);
  expect(refusedDrop.code).not.toBe(0);
  expect(refusedDrop.stderr).toContain(`root ${OLD_ROOT} still vouches for certificates in use: device-ca-issuing (retired`);
  await cliOk('ca', 'revoke-issuing', 'device-ca-issuing', '--reason', 'superseded');
  await cliOk('ca', 'drop-root', OLD_ROOT);
  const end = Date.now() + 30_000;
  let certs = await cacerts();
  const oldRootOrLink = (c: CertInfo) => c.subject === ROOT1 || (c.subject === ROOT2 && c.issuer === ROOT1);
  while (certs.some(oldRootOrLink)) {
    if (Date.now() > end) throw new Error(`/cacerts still holds the old root: ${certs.map((x) => `${x.subject} <- ${x.issuer}`).join('; ')}`);
    await new Promise((r) => setTimeout(r, 500));
    certs = await cacerts();
  }
  // the retired, revoked old issuing CA is still served (its CRL and OCSP) until it expires; the old root and the links are gone
  expect(certs.map((c) => `${c.subject} <- ${c.issuer}`)).toEqual([`${ISS2} <- ${ROOT2}`, `${ISS1} <- ${ROOT1}`, `${ROOT2} <- ${ROOT2}`]);
  expect((await curl(`http://127.0.0.1:${svc.httpPort}/ca/${OLD_ROOT}.crt`)).status).toBe(404);
  expect((await curl(`http://127.0.0.1:${svc.httpPort}/crl/${OLD_ROOT}.crl`)).status).toBe(404);
  expect((await curl(`http://127.0.0.1:${svc.httpPort}/ca/${NEW_ROOT}.crt`)).status).toBe(200);
}, 60_000);
