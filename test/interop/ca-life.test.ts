import { header, pkiClient } from '../helpers/pki-client';
import { RunningService, runProcess, startService } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * The CA's own life cycle against the built service: the root CRL is served at /crl/<root-name>.crl and
 * written by `crl export`; `openssl verify -crl_check_all -CApath` accepts the service's own HTTPS
 * certificate (a leaf of the issuing CA) through the exported directory, and rejects it at depth 1 once
 * `ca revoke-issuing` ran. The service binds every interface without publicUrl: it says so.
 */

let svc: RunningService;
let tmp: TmpDir;

beforeAll(async () => {
  tmp = makeTmpDir('device-ca-calife-');
  svc = await startService();
}, 60_000);
afterAll(async () => {
  await svc?.stop();
  tmp?.cleanup();
});

const root = (): string => `http://127.0.0.1:${svc.httpPort}/crl/device-ca-root.crl`;
const openssl = (...args: string[]) => runProcess('openssl', args);

/** leafPem: the HTTPS server certificate the service issued itself, a leaf of the issuing CA. */
async function leafPem(): Promise<string> {
  const r = await runProcess('openssl', ['s_client', '-connect', `127.0.0.1:${svc.httpsPort}`, '-servername', 'localhost'], { input: '' });
  const pem = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----\n/.exec(r.stdout)![0];
  return tmp.write('leaf.pem', pem);
}

it('serves the root CRL (DER and PEM), signed by the root, empty', async () => {
  const der = Buffer.from(await (await fetch(root())).arrayBuffer());
  const file = tmp.write('root.crl', der);
  const r = await openssl('crl', '-inform', 'DER', '-in', file, '-noout', '-text', '-CAfile', `${svc.dataDir}/ca/device-ca-root.pem`);
  expect(r.stderr + r.stdout).toContain('verify OK');
  expect(r.stdout).toContain('No Revoked Certificates');
  expect(await (await fetch(`${root()}.pem`)).text()).toMatch(/^-----BEGIN X509 CRL-----\n/);
  expect((await fetch(`http://127.0.0.1:${svc.httpPort}/crl/no-such-ca.crl`)).status).toBe(404);
});

it('/healthz?detail warns that publicUrl is not set while the listeners bind every interface', async () => {
  const body = await (await fetch(`http://127.0.0.1:${svc.httpPort}/healthz?detail`)).text();
  expect(body).toMatch(new RegExp(`^ok\\nwarning: publicUrl is not set .*http://localhost:${svc.httpPort}/ocsp`));
  expect(svc.logs()).toContain('publicUrl is not set');
});

/** ocspIssuing: `openssl ocsp -issuer root -cert issuing`, as a relying party checking the chain's CA certificate */
const ocspIssuing = () =>
  openssl(
    'ocsp',
    '-issuer',
    `${svc.dataDir}/ca/device-ca-root.pem`,
    '-cert',
    `${svc.dataDir}/ca/device-ca-issuing.pem`,
    '-url',
    `http://127.0.0.1:${svc.httpPort}/ocsp`,
    '-CAfile',
    `${svc.dataDir}/ca/device-ca-root.pem`,
    '-no_nonce',
    '-resp_text',
  );

it('OCSP for the issuing CA certificate: good, signed by the root (made at init)', async () => {
  const r = await ocspIssuing();
  expect(r.stderr + r.stdout).toContain('Response verify OK');
  expect(r.stdout).toContain(`${svc.dataDir}/ca/device-ca-issuing.pem: good\n`);
});

it('crl export + openssl verify -crl_check_all -CApath: OK; after ca revoke-issuing, certificate revoked at depth 1', async () => {
  const leaf = await leafPem();
  const dir = tmp.file('hashed');
  const exp = await svc.cli(['crl', 'export', '--dir', dir]);
  expect(exp.code).toBe(0);
  const ok = await openssl('verify', '-crl_check_all', '-CApath', dir, leaf);
  expect(ok.stdout).toBe(`${leaf}: OK\n`);

  const rev = await svc.cli(['ca', 'revoke-issuing', 'device-ca-issuing', '--reason', 'keyCompromise']);
  expect(rev.code).toBe(0);
  // served soon (the service reads the store, at most a second old; later on a loaded machine): poll (bounded)
  const rootCrlText = async (): Promise<string> => {
    const file = tmp.write('root2.crl', Buffer.from(await (await fetch(root())).arrayBuffer()));
    return (await openssl('crl', '-inform', 'DER', '-in', file, '-noout', '-text')).stdout;
  };
  let text = await rootCrlText();
  for (const end = Date.now() + 10_000; !text.includes('Key Compromise') && Date.now() < end; text = await rootCrlText()) await new Promise((r) => setTimeout(r, 100));
  expect(text).toContain('Key Compromise');
  expect((await svc.cli(['crl', 'export', '--dir', dir])).code).toBe(0);
  const bad = await openssl('verify', '-crl_check_all', '-CApath', dir, leaf);
  expect(bad.code).not.toBe(0);
  expect(bad.stdout + bad.stderr).toMatch(/error 23 at 1 depth lookup: certificate revoked/);
});

it('OCSP for the issuing CA certificate after ca revoke-issuing: revoked (keyCompromise), signed by the root', async () => {
  const r = await ocspIssuing();
  expect(r.stderr + r.stdout).toContain('Response verify OK');
  expect(r.stdout).toContain(`${svc.dataDir}/ca/device-ca-issuing.pem: revoked\n`);
  expect(r.stdout).toMatch(/Revocation Reason: keyCompromise \(0x1\)/);
});

it('after ca revoke-issuing the service issues nothing more from the revoked CA: EST 5xx, no certificate recorded, the log names `ca rollover`', async () => {
  const { cliOk, postEst, csrB64 } = pkiClient({ svc: () => svc, tmp: () => tmp });
  const secret = (await cliOk('devices', 'add', 'dev-after-revoke', '--owner', 'acme')).trim();
  const key = tmp.file('dev-after-revoke.key');
  expect((await openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key)).code).toBe(0);
  const csr = await csrB64(key, '/CN=dev-after-revoke');
  // the service reads the revocation at its next CA duties round (10 s); its renewal of the HTTPS
  // certificate (signed by the revoked CA) is the first thing it refuses
  const refusal = 'issuing CA device-ca-issuing has been revoked; no certificate is issued until `device-ca ca rollover`';
  const count = () => svc.logs().split(refusal).length - 1;
  const end = Date.now() + 40_000;
  while (count() === 0) {
    if (Date.now() > end) throw new Error(`the service did not read the revocation:\n${svc.logs()}`);
    await new Promise((res) => setTimeout(res, 500));
  }
  const before = count();
  const r = await postEst('simpleenroll', csr, { user: ['dev-after-revoke', secret] });
  // 503 + Retry-After: the device waits and retries (after `ca rollover` it gets a certificate), no 500
  expect(r.status).toBe(503);
  expect(Number(header(r, 'retry-after'))).toBe(3600);
  expect(r.text).not.toMatch(/at .*\.js:\d+/); // no stack to the client
  // the access line of this request names the refusal; it is written when the response finishes and reaches us
  // through the child's stdout pipe, possibly after the reply: wait for it (bounded), then assert
  const id = header(r, 'x-request-id');
  expect(id).toMatch(/^[\w-]+$/);
  const mine = (log: string) => log.split('\n').filter((l) => l.includes(`"reqId":"${id}"`));
  const lines = mine(await svc.waitForLog((log) => mine(log).length > 0));
  expect(lines).toHaveLength(1);
  expect(lines[0]).toContain(refusal);
  expect(count()).toBeGreaterThan(before);
  const certs = JSON.parse(await cliOk('certs', 'list', '--device', 'dev-after-revoke', '--json')) as unknown[];
  expect(certs).toEqual([]);
}, 60_000);
