import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { certificateParts } from '../../../src/ca/certificate-parts';
import { toPem } from '../../../src/ca/pem';
import { RootOcspSource } from '../../../src/ca/root-ocsp';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { TestCa, makeTestCa } from '../../fixtures/test-ca';

/**
 * The root's pre-signed OCSP answer for the issuing CA certificate, as `init` stores it: openssl reads it
 * as good for the issuing CA and verifies it with the root; the service refuses to serve it past its
 * nextUpdate or for a serial it does not cover.
 */
describe('root OCSP response', () => {
  let t: TestCa;
  let store: SqliteStore;
  beforeAll(async () => {
    t = await makeTestCa({}, 'device-ca-rootocsp-');
    store = new SqliteStore(t.cfg.store.path);
  });
  afterAll(async () => {
    await store.close();
    t.cleanup();
  });

  it('init stores a root-signed answer: openssl finds the issuing CA good and verifies it with the root', async () => {
    const serial = certificateParts(t.hierarchy.issuing.der).serial;
    const a = await new RootOcspSource(t.hierarchy.root.der, store).answer([serial], new Date());
    const files = { resp: path.join(t.dir, 'r.der'), root: path.join(t.dir, 'root.pem'), iss: path.join(t.dir, 'iss.pem') };
    fs.writeFileSync(files.resp, a.der);
    fs.writeFileSync(files.root, toPem(t.hierarchy.root.der, 'CERTIFICATE'));
    fs.writeFileSync(files.iss, toPem(t.hierarchy.issuing.der, 'CERTIFICATE'));
    const r = spawnSync('openssl', ['ocsp', '-respin', files.resp, '-issuer', files.root, '-cert', files.iss, '-CAfile', files.root], { encoding: 'utf8' });
    expect(r.stderr).toContain('Response verify OK');
    expect(r.stdout).toContain(`${files.iss}: good`);
  });

  it('is not served past its nextUpdate, nor for a serial it does not cover (not-found: OCSP unauthorized)', async () => {
    const src = new RootOcspSource(t.hierarchy.root.der, store);
    const serial = certificateParts(t.hierarchy.issuing.der).serial;
    const { nextUpdate } = await src.answer([serial], new Date());
    await expect(src.answer([serial], nextUpdate)).rejects.toMatchObject({ code: 'not-found' });
    await expect(src.answer(['1234'], new Date())).rejects.toMatchObject({ code: 'not-found' });
  });
});
