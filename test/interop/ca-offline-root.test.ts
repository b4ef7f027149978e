import * as fs from 'node:fs';
import { RunningService, runProcess, startService } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * The offline root path against the built service: `ca revoke-issuing --out` (as on the machine holding
 * only the root key: the store is left alone) writes the root CRL and the root's OCSP answer beside it;
 * until they are imported the service still says good; `ca root-crl --import` on the server then makes
 * `openssl ocsp` for the issuing CA certificate say revoked, agreeing with the CRL served.
 */

let svc: RunningService;
let tmp: TmpDir;

beforeAll(async () => {
  tmp = makeTmpDir('device-ca-offline-root-');
  svc = await startService();
}, 60_000);
afterAll(async () => {
  await svc?.stop();
  tmp?.cleanup();
});

const ocspIssuing = () =>
  runProcess('openssl', [
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
  ]);

it('revoke-issuing --out, then root-crl --import: the root OCSP answer for the issuing CA turns revoked with the CRL', async () => {
  const out = tmp.file('root.crl');
  const rev = await svc.cli(['ca', 'revoke-issuing', 'device-ca-issuing', '--reason', 'keyCompromise', '--out', out]);
  expect(rev.code).toBe(0);
  expect(rev.stdout).toContain(`${out}.ocsp`);
  expect(fs.existsSync(`${out}.ocsp`)).toBe(true);
  // the store was left alone: still good
  const before = await ocspIssuing();
  expect(before.stdout).toContain(`${svc.dataDir}/ca/device-ca-issuing.pem: good\n`);

  const imp = await svc.cli(['ca', 'root-crl', '--import', out, '--json']);
  expect(imp.code).toBe(0);
  expect(JSON.parse(imp.stdout)).toMatchObject({ ocsp: 'imported' });
  const after = await ocspIssuing();
  expect(after.stderr + after.stdout).toContain('Response verify OK');
  expect(after.stdout).toContain(`${svc.dataDir}/ca/device-ca-issuing.pem: revoked\n`);
  expect(after.stdout).toMatch(/Revocation Reason: keyCompromise \(0x1\)/);
  const crl = tmp.write('served.crl', Buffer.from(await (await fetch(`http://127.0.0.1:${svc.httpPort}/crl/device-ca-root.crl`)).arrayBuffer()));
  expect((await runProcess('openssl', ['crl', '-inform', 'DER', '-in', crl, '-noout', '-text'])).stdout).toContain('Key Compromise');
});
