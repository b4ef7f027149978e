import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { certificateParts } from '../../../src/ca/certificate-parts';
import { importRootCrl, makeRootCrl } from '../../../src/ca/ca-lifecycle';
import { toPem } from '../../../src/ca/pem';
import { RootOcspSource } from '../../../src/ca/root-ocsp';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { TestCa, makeTestCa } from '../../fixtures/test-ca';

/**
 * The offline root path (`ca root-crl --out` / `ca revoke-issuing --out` on the machine holding only the
 * root key, `ca root-crl --import` on the server): after the import, the root's OCSP answer for the issuing
 * CA agrees with the imported CRL. With the OCSP file the offline machine wrote beside the CRL, a revoked
 * issuing CA is `revoked` over OCSP too; without it, the service withdraws the stale `good` answer
 * (unauthorized) rather than contradict the CRL. Checked by openssl, as a relying party would.
 */
describe('root OCSP after importing a root CRL signed offline', () => {
  let t: TestCa;
  let store: SqliteStore;
  const files = () => ({ resp: path.join(t.dir, 'r.der'), root: path.join(t.dir, 'root.pem'), iss: path.join(t.dir, 'iss.pem') });
  const opensslStatus = (der: Buffer): string => {
    const f = files();
    fs.writeFileSync(f.resp, der);
    const r = spawnSync('openssl', ['ocsp', '-respin', f.resp, '-issuer', f.root, '-cert', f.iss, '-CAfile', f.root], { encoding: 'utf8' });
    expect(r.stderr).toContain('Response verify OK');
    return r.stdout;
  };
  beforeEach(async () => {
    t = await makeTestCa({}, 'device-ca-rootocsp-import-');
    store = new SqliteStore(t.cfg.store.path);
    fs.writeFileSync(files().root, toPem(t.hierarchy.root.der, 'CERTIFICATE'));
    fs.writeFileSync(files().iss, toPem(t.hierarchy.issuing.der, 'CERTIFICATE'));
  });
  afterEach(async () => {
    await store.close();
    t.cleanup();
  });
  const serial = () => certificateParts(t.hierarchy.issuing.der).serial;
  const revokedOffline = () => makeRootCrl(t.cfg, t.keys, store, { add: [{ serial: serial(), revokedAt: new Date(), reason: 'keyCompromise' }], store: false, actor: 'offline' });

  it('with the OCSP answer made offline beside the CRL: the issuing CA is revoked over OCSP', async () => {
    const src = new RootOcspSource(t.hierarchy.root.der, store);
    expect(opensslStatus((await src.answer([serial()], new Date())).der)).toContain(`${files().iss}: good`);
    const offline = await revokedOffline();
    expect(offline.ocsp).toBeDefined();
    const r = await importRootCrl(t.cfg, store, offline.der, 'test', offline.ocsp);
    expect(r.ocsp).toBe('imported');
    const out = opensslStatus((await src.answer([serial()], new Date())).der);
    expect(out).toContain(`${files().iss}: revoked`);
    expect(out).toContain('Reason: keyCompromise');
  });

  it('with the CRL alone: the stale "good" answer is withdrawn (unauthorized), never served against the CRL', async () => {
    const offline = await revokedOffline();
    const r = await importRootCrl(t.cfg, store, offline.der, 'test');
    expect(r.ocsp).toBe('withdrawn');
    await expect(new RootOcspSource(t.hierarchy.root.der, store).answer([serial()], new Date())).rejects.toMatchObject({ code: 'not-found' });
  });

  it('a CRL that changes no status keeps the stored answer; an OCSP answer that disagrees with the CRL is refused and nothing is written', async () => {
    const quiet = await makeRootCrl(t.cfg, t.keys, store, { store: false, actor: 'offline' });
    const src = new RootOcspSource(t.hierarchy.root.der, store);
    const before = (await src.answer([serial()], new Date())).der;
    expect((await importRootCrl(t.cfg, store, quiet.der, 'test')).ocsp).toBe('kept');
    expect((await src.answer([serial()], new Date())).der.equals(before)).toBe(true);
    // the good answer made with the quiet CRL does not go with a CRL that revokes the issuing CA
    const revoking = await revokedOffline();
    await expect(importRootCrl(t.cfg, store, revoking.der, 'test', quiet.ocsp)).rejects.toMatchObject({ code: 'bad-request' });
    expect((await src.answer([serial()], new Date())).der.equals(before)).toBe(true);
    await expect(importRootCrl(t.cfg, store, revoking.der, 'test', Buffer.from('not ocsp'))).rejects.toMatchObject({ code: 'bad-request' });
    expect((await importRootCrl(t.cfg, store, revoking.der, 'test', revoking.ocsp)).ocsp).toBe('imported');
  });
});
