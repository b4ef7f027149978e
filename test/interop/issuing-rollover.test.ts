import * as path from 'node:path';
import { Device, entryOf, must, openssl, opensslAny, pkiClient } from '../helpers/pki-client';
import { REPO_ROOT, RunningService, assertBuilt, cleanEnv, runProcess, startService } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * `device-ca ca rollover` against the running service, judged by openssl and curl: the CLI writes the new
 * issuing CA to the store and the running service picks it up (CA duties reload) without a restart.
 * Then EST /cacerts holds both issuing CAs and the root, a new device enrolls under the new CA (openssl
 * verify against root + new issuing CA), a device re-enrolling with its old certificate gets one from the
 * new CA, an old certificate still answers good over OCSP, and a revoked old certificate appears on the
 * old CA's CRL (signed by the old CA).
 */

let svc: RunningService;
let tmp: TmpDir;
const { curl, cliOk, enroll, reenroll, certOf, describeCert, fetchCrl, crlUntil, teardown } = pkiClient({ svc: () => svc, tmp: () => tmp, operatorToken: () => operatorToken });

const OLD = 'device-ca-issuing';
const NEW = 'device-ca-issuing-2';
let oldPem: string;
let newPem: string;
let rootPem: string;
let operatorToken: string;
const devices = new Map<string, Device>();

/** cacertsSubjects: EST /cacerts as a client reads it: base64 -d | openssl pkcs7 -print_certs, the subjects in order */
async function cacertsSubjects(): Promise<string[]> {
  const r = await curl(`${svc.est}/cacerts`);
  expect(r.status).toBe(200);
  const der = await must('base64', ['-d'], r.body);
  const p7 = tmp.write(`cacerts-${Date.now()}.p7`, der.stdoutBytes);
  const text = (await openssl('pkcs7', '-inform', 'DER', '-in', p7, '-print_certs', '-noout')).stdout;
  return [...text.matchAll(/^subject=(.*)$/gm)].map((m) => m[1]);
}

/** caPem: /ca/<name>.crt (the AIA caIssuers target) as PEM */
async function caPem(name: string): Promise<string> {
  const r = await curl(`http://127.0.0.1:${svc.httpPort}/ca/${name}.crt`);
  expect(r.status).toBe(200);
  const der = tmp.write(`${name}.der`, r.body);
  const pem = tmp.file(`${name}.pem`);
  await openssl('x509', '-inform', 'DER', '-in', der, '-out', pem);
  return pem;
}

const ocsp = (d: Device, issuer: string, caFile: string) => opensslAny('ocsp', '-issuer', issuer, '-cert', d.crt, '-url', d.ocspUrl, '-CAfile', caFile, '-resp_text');

beforeAll(async () => {
  assertBuilt();
  tmp = makeTmpDir('device-ca-rollover-');
  svc = await startService();
  rootPem = path.join(svc.dataDir, 'ca', 'device-ca-root.pem');
  oldPem = path.join(svc.dataDir, 'ca', `${OLD}.pem`);
  operatorToken = (await cliOk('tokens', 'create', '--scope', 'operator')).trim();
  for (const id of ['dev-keep', 'dev-revoke', 'dev-renew']) devices.set(id, await enroll(id));
  const out = await cliOk('ca', 'rollover');
  expect(out).toContain(`issuing CA ${NEW}`);
  // the running service reads the rollover from the store at its next CA duties round (10 s)
  const end = Date.now() + 30_000;
  while ((await cacertsSubjects()).length < 3) {
    if (Date.now() > end) throw new Error('the service did not pick up the rollover');
    await new Promise((r) => setTimeout(r, 500));
  }
  newPem = await caPem(NEW);
}, 90_000);

afterAll(teardown);

it('EST /cacerts holds the new issuing CA first, then the old one, then the root', async () => {
  expect(await cacertsSubjects()).toEqual(['O = device-ca, CN = device-ca Issuing CA 2', 'O = device-ca, CN = device-ca Issuing CA', 'O = device-ca, CN = device-ca Root CA']);
  expect((await curl(`http://127.0.0.1:${svc.httpPort}/ca/${OLD}.crt`)).status).toBe(200);
});

it('the root answers OCSP for the new issuing CA certificate: good (signed by `ca rollover` where the root key is)', async () => {
  const r = await opensslAny('ocsp', '-issuer', rootPem, '-cert', newPem, '-url', `http://127.0.0.1:${svc.httpPort}/ocsp`, '-CAfile', rootPem, '-no_nonce');
  expect(r.out).toContain('Response verify OK');
  expect(r.out).toContain(`${newPem}: good\n`);
});

it('a new device enrolls under the new issuing CA: openssl verify against root + new issuing CA', async () => {
  const d = await enroll('dev-new');
  devices.set(d.id, d);
  expect((await openssl('x509', '-in', d.crt, '-noout', '-issuer')).stdout).toBe('issuer=O = device-ca, CN = device-ca Issuing CA 2\n');
  expect(d.crlUrl).toMatch(new RegExp(`/crl/${NEW}/\\d+\\.crl$`));
  expect((await opensslAny('verify', '-CAfile', rootPem, '-untrusted', newPem, d.crt)).out).toBe(`${d.crt}: OK\n`);
  // not under the old one
  expect((await opensslAny('verify', '-CAfile', rootPem, '-untrusted', oldPem, d.crt)).code).not.toBe(0);
  // OCSP for the new CA's certificate: the new CA signs with its own key
  const r = await ocsp(d, newPem, rootPem);
  expect(r.out).toContain('Response verify OK');
  expect(r.out).toContain(`${d.crt}: good\n`);
});

it('a device re-enrolling with its old certificate gets a certificate from the new issuing CA', async () => {
  const d = devices.get('dev-renew')!;
  const crt = await certOf(await reenroll(d, '/O=acme/CN=dev-renew'), 'dev-renew');
  expect((await openssl('x509', '-in', crt, '-noout', '-issuer')).stdout).toBe('issuer=O = device-ca, CN = device-ca Issuing CA 2\n');
  expect((await opensslAny('verify', '-CAfile', rootPem, '-untrusted', newPem, crt)).out).toBe(`${crt}: OK\n`);
  expect((await describeCert('dev-renew', d.key, crt)).crlUrl).toContain(`/crl/${NEW}/`);
});

it('crl export writes both issuing CAs and their CRLs: openssl verify -crl_check_all -CApath accepts an old and a new device', async () => {
  const dir = tmp.file('hashed');
  await cliOk('crl', 'export', '--dir', dir);
  const fresh = await enroll('dev-export');
  for (const crt of [devices.get('dev-keep')!.crt, fresh.crt]) expect((await opensslAny('verify', '-crl_check_all', '-CApath', dir, crt)).out).toBe(`${crt}: OK\n`);
});

it('an old certificate still answers good over OCSP (the old CA’s responder)', async () => {
  const d = devices.get('dev-keep')!;
  const r = await ocsp(d, oldPem, svc.chainPem);
  expect(r.out).toContain('Response verify OK');
  expect(r.out).toContain(`${d.crt}: good\n`);
  expect(r.code).toBe(0);
});

it('a revoked old certificate is listed on the old CA’s CRL (signed by the old CA) and answers revoked', async () => {
  const d = devices.get('dev-revoke')!;
  expect(d.crlUrl).toContain(`/crl/${OLD}/`);
  await cliOk('revoke', d.serial, '--reason', 'keyCompromise');
  const crl = await crlUntil(d, (c) => entryOf(c, d.serial) !== undefined);
  expect(crl.text).toContain('Issuer: O = device-ca, CN = device-ca Issuing CA\n');
  const fresh = await fetchCrl(d);
  expect(entryOf(fresh, d.serial)).toBeDefined();
  const r = await ocsp(d, oldPem, svc.chainPem);
  expect(r.out).toContain('Response verify OK');
  expect(r.out).toContain(`${d.crt}: revoked\n`);
});

it('keys list: the issuing key in force is the new one; the old one is listed as retired (it still signs its CRLs)', async () => {
  const rows = JSON.parse(await cliOk('keys', 'list', '--json')) as { role: string; ca: string; status: string; ref: string }[];
  expect(rows.filter((r) => r.role.startsWith('issuing')).map((r) => [r.role, r.ca, r.status])).toEqual([
    ['issuing', NEW, 'in force'],
    ['issuing-retired', OLD, 'retired'],
  ]);
  const table = await cliOk('keys', 'list');
  expect(table).toMatch(new RegExp(`^issuing-retired\\s+${OLD}\\s+retired\\s`, 'm'));
});

/**
 * OTHER_NODE_TLS is what a node started after the rollover does when it holds the CA duties (serve's
 * prepare step): it finds the HTTPS certificate not issued by its issuing CA (the new one) and issues one
 * from it into the shared store. Run with the built modules against the service's data directory.
 */
const OTHER_NODE_TLS = `
const d = ${JSON.stringify(path.join(REPO_ROOT, 'dist'))};
const { loadConfig } = require(d + '/config/load-config');
const { openStore, buildCertificateAuthority, ensureTlsServerCertificate } = require(d + '/main');
const { openKeyBackend } = require(d + '/keys/open-key-backend');
const { loadCa } = require(d + '/ca/ca-hierarchy');
(async () => {
  const base = loadConfig();
  // one more HTTPS name than the service: this node's certificate differs, so it issues one
  const cfg = { ...base, https: { ...base.https, names: [...base.https.names, 'node-b.example.test'] } };
  const store = openStore(cfg);
  const keys = openKeyBackend(cfg);
  const h = await loadCa(cfg, keys, store);
  await ensureTlsServerCertificate(cfg, buildCertificateAuthority(cfg, h), h, store);
  await store.close();
  await keys.close();
})().catch((e) => { console.error(e); process.exit(1); });
`;

/** showcerts: the subjects and issuers of the chain the HTTPS listener sends (openssl s_client -showcerts) */
async function showcerts(): Promise<string> {
  const r = await runProcess('openssl', ['s_client', '-connect', `127.0.0.1:${svc.httpsPort}`, '-servername', 'localhost', '-showcerts'], { input: '' });
  return r.stdout;
}

it('HTTPS: after another node issued the listener certificate from the new CA, this node (not restarted) sends that CA behind it (openssl s_client -showcerts)', async () => {
  const other = await runProcess(process.execPath, ['-e', OTHER_NODE_TLS], { env: cleanEnv(svc.env) });
  expect(other.stderr).toBe('');
  expect(other.code).toBe(0);
  // the service reloads its service certificates each CA duties round (10 s)
  const end = Date.now() + 30_000;
  let out = await showcerts();
  while (!/^ 0 s:.*\n\s+i:.*Issuing CA 2\n/m.test(out)) {
    if (Date.now() > end) throw new Error(`the service did not pick up the new HTTPS certificate:\n${out}`);
    await new Promise((r) => setTimeout(r, 500));
    out = await showcerts();
  }
  // certificate 1 is the CA that signed certificate 0 (before: the issuing CA the service started with)
  expect(out).toMatch(/^ 1 s:O ?= ?device-ca, CN ?= ?device-ca Issuing CA 2\n/m);
  const pems = [...out.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g)].map((m) => m[0]);
  expect(pems).toHaveLength(2);
  const leaf = tmp.write('https-leaf.pem', pems[0]);
  const chain = tmp.write('https-chain.pem', pems[1]);
  expect((await opensslAny('verify', '-CAfile', rootPem, '-untrusted', chain, leaf)).out).toBe(`${leaf}: OK\n`);
}, 60_000);
