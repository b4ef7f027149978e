import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadCa } from '../../../src/ca/ca-hierarchy';
import { revokeIssuing } from '../../../src/ca/ca-lifecycle';
import { IssuingCaSet } from '../../../src/ca/issuing-ca-set';
import { rolloverIssuing } from '../../../src/ca/issuing-rollover';
import { toPem } from '../../../src/ca/pem';
import { certificateParts } from '../../../src/ca/certificate-parts';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { generateKeyPair } from '../../../src/keys/software-key-backend';
import { buildCertificateAuthority } from '../../../src/main';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { TestCa, makeTestCa } from '../../fixtures/test-ca';

/**
 * `ca rollover`: a new issuing CA under the same root, recorded as the next one with its activation time.
 * Before that time leaves come from the old CA, after it from the new one (openssl verify against root +
 * that CA), in every process that reads the store; both are served meanwhile.
 */

const T0 = new Date('2026-06-01T00:00:00Z');
const AT = new Date('2026-06-10T00:00:00Z');

function openssl(args: string[]): { status: number | null; out: string } {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

const leafRequest = () => ({
  profile: 'default',
  subject: [{ type: 'CN' as const, value: 'dev-1' }],
  spki: crypto.createPublicKey(generateKeyPair('ecdsa-p256').privateKey).export({ type: 'spki', format: 'der' }),
  keyType: 'ec' as const,
  sans: [],
});

describe('issuing CA rollover', () => {
  let t: TestCa;
  let store: SqliteStore;
  beforeAll(async () => {
    t = await makeTestCa({}, 'device-ca-rollover-');
    store = new SqliteStore(t.cfg.store.path);
  });
  afterAll(async () => {
    await store.close();
    t.cleanup();
  });

  it('schedules a new issuing CA (new key, same root, its own name and URLs); a second pending rollover is refused', async () => {
    const r = await rolloverIssuing(t.cfg, t.keys, store, { at: AT, actor: 'test', now: T0 });
    expect(r.name).toBe('device-ca-issuing-2');
    expect(r.replaces).toBe('device-ca-issuing');
    expect(r.activatesAt).toEqual(AT);
    const x = new crypto.X509Certificate(r.der);
    expect(x.checkIssued(new crypto.X509Certificate(t.hierarchy.root.der))).toBe(true);
    expect(certificateParts(r.der).spki.equals(certificateParts(t.hierarchy.issuing.der).spki)).toBe(false);
    expect(x.subject).toContain('Issuing CA 2');
    const root = path.join(t.dir, 'r.pem');
    fs.writeFileSync(root, toPem(t.hierarchy.root.der, 'CERTIFICATE'));
    fs.writeFileSync(path.join(t.dir, 'n.pem'), toPem(r.der, 'CERTIFICATE'));
    expect(openssl(['verify', '-CAfile', root, path.join(t.dir, 'n.pem')]).out).toContain(': OK');
    // exported for operators under its own name; chain.pem stays the CA in force until activation
    expect(fs.readFileSync(path.join(t.dir, 'ca', 'device-ca-issuing-2.crt')).equals(r.der)).toBe(true);
    expect(fs.readFileSync(path.join(t.dir, 'ca', 'device-ca-issuing.crt')).equals(t.hierarchy.issuing.der)).toBe(true);
    expect(fs.readFileSync(path.join(t.dir, 'ca', 'chain.pem'), 'utf8').startsWith(toPem(t.hierarchy.issuing.der, 'CERTIFICATE'))).toBe(true);
    const again = rolloverIssuing(t.cfg, t.keys, store, { at: AT, actor: 'test', now: T0 });
    await expect(again).rejects.toThrow(DeviceCaError);
    await expect(again).rejects.toMatchObject({ code: 'conflict' });
    const audit = await store.listAudit({ subject: 'device-ca-issuing-2', limit: 10 });
    expect(audit.items.map((a) => a.type)).toEqual(['ca.rollover-scheduled']);
  });

  it('issues from the old CA before the activation time and from the new one after, and serves both', async () => {
    const h = await loadCa(t.cfg, t.keys, store, { now: T0 });
    expect(h.issuing.name).toBe('device-ca-issuing');
    expect(h.next?.ca.name).toBe('device-ca-issuing-2');
    let clock = T0;
    const cas = new IssuingCaSet(h, undefined, () => clock);
    const ca = buildCertificateAuthority(t.cfg, h, cas);
    const before = await ca.issue(leafRequest(), T0);
    expect(before.issuer).toBe('device-ca-issuing');
    expect(cas.pending()?.ca.name).toBe('device-ca-issuing-2');
    expect(cas.chain().map((d) => new crypto.X509Certificate(d).subject.split('\n').pop())).toEqual(['CN=device-ca Issuing CA', 'CN=device-ca Issuing CA 2', 'CN=device-ca Root CA']);
    clock = new Date(AT.getTime() + 1000);
    const after = await ca.issue(leafRequest(), clock);
    expect(after.issuer).toBe('device-ca-issuing-2');
    expect(cas.pending()).toBeNull();
    expect(cas.chain()[0].equals(h.next!.ca.der)).toBe(true);
    const x = new crypto.X509Certificate(after.der);
    expect(x.checkIssued(new crypto.X509Certificate(h.next!.ca.der))).toBe(true);
    // the leaf names its own CA's CRL shard and certificate
    expect(after.der.toString('latin1')).toContain(`/crl/device-ca-issuing-2/${after.shard}.crl`);
    expect(after.der.toString('latin1')).toContain('/ca/device-ca-issuing-2.crt');
    expect(ca.trustedIssuers().map((c) => c.name)).toEqual(['device-ca-issuing', 'device-ca-issuing-2']);
  });

  it('after the activation time the store view promotes the new CA and keeps the old one retired', async () => {
    const h = await loadCa(t.cfg, t.keys, store, { now: new Date(AT.getTime() + 1000) });
    expect(h.issuing.name).toBe('device-ca-issuing-2');
    expect(h.next).toBeUndefined();
    expect(h.retired.map((c) => c.name)).toEqual(['device-ca-issuing']);
  });

  it('revoke-issuing takes the name of any issuing CA served, old or new', async () => {
    const r = await revokeIssuing(t.cfg, t.keys, store, 'device-ca-issuing-2', 'superseded', { store: false, actor: 'test', now: T0 });
    expect(r.serials).toEqual([certificateParts((await loadCa(t.cfg, t.keys, store, { now: T0 })).next!.ca.der).serial]);
    await expect(revokeIssuing(t.cfg, t.keys, store, 'nope', 'superseded', { store: false, actor: 'test', now: T0 })).rejects.toMatchObject({ code: 'not-found' });
  });

  it('once revoke-issuing lists the old CA on the root CRL, its certificates no longer authenticate a device (still served: CRLs, OCSP)', async () => {
    const before = await loadCa(t.cfg, t.keys, store, { now: T0 });
    expect(
      buildCertificateAuthority(t.cfg, before, new IssuingCaSet(before))
        .trustedIssuers()
        .map((c) => c.name),
    ).toEqual(['device-ca-issuing', 'device-ca-issuing-2']);
    await revokeIssuing(t.cfg, t.keys, store, 'device-ca-issuing', 'keyCompromise', { store: true, actor: 'test', now: T0 });
    const h = await loadCa(t.cfg, t.keys, store, { now: T0 });
    expect(h.revoked).toEqual(['device-ca-issuing']);
    const cas = new IssuingCaSet(h);
    expect(
      buildCertificateAuthority(t.cfg, h, cas)
        .trustedIssuers()
        .map((c) => c.name),
    ).toEqual(['device-ca-issuing-2']);
    expect(
      cas
        .all()
        .map((c) => c.name)
        .sort(),
    ).toEqual(['device-ca-issuing', 'device-ca-issuing-2']);
  });
});

describe('a revoked issuing CA', () => {
  let t: TestCa;
  let store: SqliteStore;
  beforeAll(async () => {
    t = await makeTestCa({}, 'device-ca-revoked-issuing-');
    store = new SqliteStore(t.cfg.store.path);
  });
  afterAll(async () => {
    await store.close();
    t.cleanup();
  });

  it('signs no more leaves: a config error naming `ca rollover`; the CA the rollover makes issues', async () => {
    await revokeIssuing(t.cfg, t.keys, store, 'device-ca-issuing', 'keyCompromise', { store: true, actor: 'test' });
    const h = await loadCa(t.cfg, t.keys, store);
    const ca = buildCertificateAuthority(t.cfg, h, new IssuingCaSet(h));
    const refused = await ca.issue(leafRequest()).then(
      () => null,
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(DeviceCaError);
    expect(refused).toMatchObject({ code: 'ca-unavailable', retryAfterSeconds: 3600, message: expect.stringContaining('issuing CA device-ca-issuing has been revoked') });
    expect((refused as Error).message).toContain('device-ca ca rollover');
    await expect(ca.issueAttestationKey({ subject: [{ type: 'CN', value: 'ak' }], spki: leafRequest().spki, validitySeconds: 3600 })).rejects.toMatchObject({ code: 'ca-unavailable' });

    await rolloverIssuing(t.cfg, t.keys, store, { actor: 'test' });
    const h2 = await loadCa(t.cfg, t.keys, store);
    const leaf = await buildCertificateAuthority(t.cfg, h2, new IssuingCaSet(h2)).issue(leafRequest());
    expect(leaf.issuer).toBe('device-ca-issuing-2');
    expect(new crypto.X509Certificate(leaf.der).issuer).toContain('CN=device-ca Issuing CA 2');
  });
});
