import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadCa } from '../../../src/ca/ca-hierarchy';
import { IssuingCaSet } from '../../../src/ca/issuing-ca-set';
import { rolloverIssuing } from '../../../src/ca/issuing-rollover';
import { pemBlocks, toPem } from '../../../src/ca/pem';
import { ServiceCertificates, ensureTlsServerCertificate } from '../../../src/ca/service-certificates';
import { buildCertificateAuthority } from '../../../src/main';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { TestCa, makeTestCa } from '../../fixtures/test-ca';

/**
 * The HTTPS chain follows the leaf's actual issuer: after a rollover, a node started later issues the
 * HTTPS certificate from the new issuing CA; a node that was not restarted picks the certificate up from
 * the store and must send the new CA behind it, not the one it started with.
 */

describe('HTTPS chain after an issuing CA rollover', () => {
  let t: TestCa;
  let store: SqliteStore;
  beforeAll(async () => {
    t = await makeTestCa({}, 'device-ca-tls-chain-');
    store = new SqliteStore(t.cfg.store.path);
  });
  afterAll(async () => {
    await store.close();
    t.cleanup();
  });

  it('a node that was not restarted sends the CA that signed the HTTPS leaf, and openssl verifies the chain', async () => {
    // node A, started before the rollover
    const hA = await loadCa(t.cfg, t.keys, store);
    const casA = new IssuingCaSet(hA, { store, load: () => loadCa(t.cfg, t.keys, store) });
    await casA.refresh();
    const certsA = new ServiceCertificates({ cfg: t.cfg, keys: t.keys, ca: buildCertificateAuthority(t.cfg, hA, casA), hierarchy: hA, store, issuers: () => casA.trusted() });
    await certsA.renew();
    const first = await certsA.current(() => certsA.renew());
    expect(new crypto.X509Certificate(pemBlocks(first.tls.certPem)[1]).subject).toContain('CN=device-ca Issuing CA');

    // the rollover takes over now; node B starts after it with one more HTTPS name and issues the HTTPS
    // certificate from the new CA
    await rolloverIssuing(t.cfg, t.keys, store, { actor: 'test' });
    const cfgB = { ...t.cfg, https: { ...t.cfg.https, names: [...t.cfg.https.names, 'node-b.example.test'] } };
    const hB = await loadCa(cfgB, t.keys, store);
    expect(hB.issuing.name).toBe('device-ca-issuing-2');
    const b = await ensureTlsServerCertificate(cfgB, buildCertificateAuthority(cfgB, hB), hB, store);
    expect(new crypto.X509Certificate(pemBlocks(b.certPem)[0]).subjectAltName).toContain('node-b.example.test');

    // node A's duties round: CAs, then certificates
    let served = first.tls;
    certsA.onChange({ tls: (m) => (served = m) });
    await casA.refresh();
    expect(await certsA.reload()).toBe(true);
    const [leaf, issuer] = pemBlocks(served.certPem);
    expect(new crypto.X509Certificate(leaf).issuer).toContain('CN=device-ca Issuing CA 2');
    expect(new crypto.X509Certificate(issuer).subject).toContain('CN=device-ca Issuing CA 2');
    // and node A's next renewal keeps B's certificate's issuer (it follows the active CA, not its start-time one)
    await certsA.renew();
    await certsA.reload();
    expect(new crypto.X509Certificate(pemBlocks(served.certPem)[1]).subject).toContain('CN=device-ca Issuing CA 2');

    const dir = fs.mkdtempSync(path.join(t.dir, 'chain-'));
    const f = (name: string, der: Buffer) => {
      const p = path.join(dir, name);
      fs.writeFileSync(p, toPem(der, 'CERTIFICATE'));
      return p;
    };
    const r = spawnSync('openssl', ['verify', '-CAfile', f('root.pem', hB.root.der), '-untrusted', f('issuer.pem', issuer), f('leaf.pem', leaf)], { encoding: 'utf8' });
    expect(`${r.stdout}${r.stderr}`).toBe(`${path.join(dir, 'leaf.pem')}: OK\n`);
  });
});
