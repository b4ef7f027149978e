import { loadCa } from '../../../src/ca/ca-hierarchy';
import { CaMaterial } from '../../../src/ca/certificate-authority';
import { certificateParts } from '../../../src/ca/certificate-parts';
import { IssuingCaSet } from '../../../src/ca/issuing-ca-set';
import { rolloverIssuing } from '../../../src/ca/issuing-rollover';
import { OcspResponder, certIdHashes, encodeCertId } from '../../../src/ca/ocsp-codec';
import { OcspService } from '../../../src/ca/ocsp-service';
import { seq } from '../../../src/der/der-writer';
import { generateKeyPair, softwareSigningKey } from '../../../src/keys/software-key-backend';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { TestCa, makeTestCa } from '../../fixtures/test-ca';

/**
 * A retired issuing CA is served (CRL shards, OCSP, /ca/<name>.crt, /cacerts) until its own certificate
 * expires, and no longer after that, in a running process: the duties round's refresh drops it by the
 * process's clock (here the test's), without a restart or a store write.
 */

const T0 = new Date();
const ocspRequest = (ca: CaMaterial, serialNumber: string): Buffer =>
  seq(seq(seq(seq(encodeCertId({ hash: 'sha1', ...certIdHashes(ca.subject, certificateParts(ca.der).spki, 'sha1'), serialNumber })))));

describe('a retired issuing CA whose certificate expired', () => {
  let t: TestCa;
  let store: SqliteStore;
  beforeAll(async () => {
    t = await makeTestCa({}, 'device-ca-retired-expiry-');
    store = new SqliteStore(t.cfg.store.path);
    await rolloverIssuing(t.cfg, t.keys, store, { at: T0, actor: 'test', now: T0 });
  });
  afterAll(async () => {
    await store.close();
    t.cleanup();
  });

  it('is dropped at the next refresh after it expires: listeners told, OCSP stops answering for it', async () => {
    const old = t.hierarchy.issuing;
    let clock = new Date(T0.getTime() + 1000);
    const cas = new IssuingCaSet(await loadCa(t.cfg, t.keys, store, { now: clock }), { store, load: (now) => loadCa(t.cfg, t.keys, store, { now }) }, () => clock);
    const removed: string[] = [];
    cas.onRemoved((ca) => removed.push(ca.name));
    const { privateKey } = generateKeyPair('ecdsa-p256');
    const key = softwareSigningKey(privateKey, 'ecdsa-p256', 'memory');
    const ocsp = new OcspService(
      cas.all(),
      new OcspResponder(key, (await t.ca.issueOcspResponder(key.spki)).der),
      { certificateStatus: () => Promise.resolve(null) },
      { validity: 3600, maxAge: 60, cacheSize: 100, responderValidity: 86400, maxRequestBytes: 8192 },
      () => clock,
    );
    cas.onRemoved((ca) => ocsp.removeIssuer(ca.name));
    const req = ocspRequest(old, '01');

    await cas.refresh();
    expect(cas.all().map((c) => c.name)).toEqual(['device-ca-issuing-2', 'device-ca-issuing']);
    expect((await ocsp.respond(req)).outcome).toBe('unknown'); // answered (and remembered) for the retired CA

    clock = new Date(old.notAfter.getTime() - 1000);
    await cas.refresh();
    expect(removed).toEqual([]);

    clock = old.notAfter;
    expect(await cas.refresh()).toBe(true);
    expect(removed).toEqual(['device-ca-issuing']);
    expect(cas.all().map((c) => c.name)).toEqual(['device-ca-issuing-2']);
    expect(cas.chain().some((d) => d.equals(old.der))).toBe(false);
    await expect(ocsp.respond(req)).rejects.toMatchObject({ code: 'not-found' });
    await cas.refresh();
    expect(removed).toEqual(['device-ca-issuing']);
  });
});
