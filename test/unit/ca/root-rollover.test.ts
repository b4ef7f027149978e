import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HIERARCHY_RECORD, StoredCa, loadCa } from '../../../src/ca/ca-hierarchy';
import { revokeIssuing, rolloverRoot } from '../../../src/ca/ca-lifecycle';
import { certificateParts } from '../../../src/ca/certificate-parts';
import { IssuingCaSet } from '../../../src/ca/issuing-ca-set';
import { keyAssignments } from '../../../src/ca/key-assignments';
import { rolloverIssuing } from '../../../src/ca/issuing-rollover';
import { toPem } from '../../../src/ca/pem';
import { ensureTlsServerCertificate } from '../../../src/ca/service-certificates';
import { ROOT_CRL_RECORD, readRootCrl } from '../../../src/ca/root-crl';
import { RootCrlWatch } from '../../../src/ca/root-crl-watch';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { generateKeyPair } from '../../../src/keys/software-key-backend';
import { buildCertificateAuthority } from '../../../src/main';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { Registry } from 'prom-client';
import { TestCa, makeTestCa } from '../../fixtures/test-ca';

/**
 * `ca rollover-root`: a new root and the link certificates OldWithNew / NewWithOld (RFC 7030 §4.1.3),
 * recorded in the CA state in one write; the issuing CA in force stays under the old root, the next
 * `ca rollover` goes under the new one; each root keeps its own CRL. And what a kill between the steps
 * leaves behind.
 */

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

const subjectCn = (der: Buffer) => new crypto.X509Certificate(der).subject.split('\n').pop();

describe('root rollover', () => {
  let t: TestCa;
  let store: SqliteStore;
  const pem = (name: string, ...ders: Buffer[]) => {
    const f = path.join(t.dir, name);
    fs.writeFileSync(f, ders.map((d) => toPem(d, 'CERTIFICATE')).join(''));
    return f;
  };
  beforeAll(async () => {
    t = await makeTestCa({}, 'device-ca-root-rollover-');
    store = new SqliteStore(t.cfg.store.path);
  });
  afterAll(async () => {
    await store.close();
    t.cleanup();
  });

  it('makes a new root (new key) and the two link certificates, each verifying under the key that signed it', async () => {
    const r = await rolloverRoot(t.cfg, t.keys, store, { actor: 'test' });
    expect(r).toMatchObject({ name: 'device-ca-root-2', replaces: 'device-ca-root', resumed: false });
    const oldRoot = new crypto.X509Certificate(t.hierarchy.root.der);
    const newRoot = new crypto.X509Certificate(r.der);
    expect(newRoot.subject).toContain('CN=device-ca Root CA 2');
    expect(newRoot.checkIssued(newRoot)).toBe(true);
    expect(certificateParts(r.der).spki.equals(certificateParts(t.hierarchy.root.der).spki)).toBe(false);
    const owN = new crypto.X509Certificate(r.oldWithNew);
    const nwO = new crypto.X509Certificate(r.newWithOld);
    // OldWithNew: the new root's name and key, signed by the old root key
    expect(owN.subject).toBe(newRoot.subject);
    expect(owN.issuer).toBe(oldRoot.subject);
    expect(owN.publicKey.equals(newRoot.publicKey)).toBe(true);
    expect(owN.verify(oldRoot.publicKey)).toBe(true);
    // NewWithOld: the old root's name and key, signed by the new root key
    expect(nwO.subject).toBe(oldRoot.subject);
    expect(nwO.issuer).toBe(newRoot.subject);
    expect(nwO.publicKey.equals(oldRoot.publicKey)).toBe(true);
    expect(nwO.verify(newRoot.publicKey)).toBe(true);
    // CA certificates that name their signer's root CRL, and do not outlive the old root
    expect(owN.ca && nwO.ca).toBe(true);
    expect(r.oldWithNew.toString('latin1')).toContain('/crl/device-ca-root.crl');
    expect(r.newWithOld.toString('latin1')).toContain('/crl/device-ca-root-2.crl');
    expect(new Date(nwO.validTo).getTime()).toBeLessThanOrEqual(new Date(oldRoot.validTo).getTime());
    // recorded: the new root in force, the old one kept, the links; audited
    const rec = (await store.getCaState(HIERARCHY_RECORD))!.value as StoredCa;
    expect(rec.root.name).toBe('device-ca-root-2');
    expect(rec.previousRoots?.map((x) => x.name)).toEqual(['device-ca-root']);
    expect(rec.links).toHaveLength(1);
    expect((await store.listAudit({ subject: 'device-ca-root-2', limit: 10 })).items.map((a) => a.type)).toEqual(['ca.root-rolled-over']);
    expect((await store.listAudit({ subject: 'root-crl:device-ca-root-2', limit: 10 })).items.map((a) => a.type)).toEqual(['root-crl.signed']);
    // each root its own CRL
    const oldCrl = await readRootCrl(store, t.hierarchy.root.der, ROOT_CRL_RECORD);
    const newCrl = await readRootCrl(store, r.der, 'root-crl:device-ca-root-2');
    expect(oldCrl && newCrl).toBeTruthy();
    // exports for operators
    expect(fs.readFileSync(path.join(t.dir, 'ca', 'device-ca-root-2.crt')).equals(r.der)).toBe(true);
    expect(fs.readFileSync(path.join(t.dir, 'ca', 'root-links.pem'), 'utf8')).toBe(toPem(r.oldWithNew, 'CERTIFICATE') + toPem(r.newWithOld, 'CERTIFICATE'));
  });

  it('keeps the issuing CA in force under the old root and serves both roots and both links', async () => {
    const h = await loadCa(t.cfg, t.keys, store);
    expect(h.issuing.der.equals(t.hierarchy.issuing.der)).toBe(true);
    expect(h.roots.map((r) => r.name)).toEqual(['device-ca-root-2', 'device-ca-root']);
    expect(h.links).toHaveLength(2);
    const chain = new IssuingCaSet(h).chain();
    expect(chain.map(subjectCn)).toEqual(['CN=device-ca Issuing CA', 'CN=device-ca Root CA', 'CN=device-ca Root CA 2', 'CN=device-ca Root CA 2', 'CN=device-ca Root CA']);
    // a leaf of the old hierarchy: trusted by the old root directly, by the new root through NewWithOld
    const leaf = await buildCertificateAuthority(t.cfg, h, new IssuingCaSet(h)).issue(leafRequest());
    const leafFile = pem('old-leaf.pem', leaf.der);
    expect(openssl(['verify', '-CAfile', pem('r1.pem', h.roots[1].der), '-untrusted', pem('i1.pem', h.issuing.der), leafFile]).out).toContain(': OK');
    expect(openssl(['verify', '-CAfile', pem('r2.pem', h.roots[0].der), '-untrusted', pem('u.pem', h.issuing.der, h.links[1]), leafFile]).out).toContain(': OK');
    expect(openssl(['verify', '-CAfile', pem('r2.pem', h.roots[0].der), '-untrusted', pem('i1.pem', h.issuing.der), leafFile]).status).not.toBe(0);
  });

  it('the HTTPS chain carries the link to the other root: a client trusting only the new root verifies the listener (old hierarchy)', async () => {
    const h = await loadCa(t.cfg, t.keys, store);
    const tls = await ensureTlsServerCertificate(t.cfg, buildCertificateAuthority(t.cfg, h, new IssuingCaSet(h)), h, store);
    const blocks = tls.certPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g)!;
    expect(blocks).toHaveLength(3);
    expect(blocks[1]).toBe(toPem(h.issuing.der, 'CERTIFICATE'));
    expect(blocks[2]).toBe(toPem(h.links[1], 'CERTIFICATE')); // NewWithOld
    const leaf = path.join(t.dir, 'tls-leaf.pem');
    fs.writeFileSync(leaf, blocks[0]);
    const untrusted = path.join(t.dir, 'tls-chain.pem');
    fs.writeFileSync(untrusted, blocks.slice(1).join(''));
    for (const root of h.roots) expect(openssl(['verify', '-CAfile', pem(`tls-${root.name}.pem`, root.der), '-untrusted', untrusted, leaf]).out).toContain(': OK');
  });

  it('refuses a second root rollover until an issuing CA is under the new root; `ca rollover` puts it there', async () => {
    const again = rolloverRoot(t.cfg, t.keys, store, { actor: 'test' });
    await expect(again).rejects.toThrow(DeviceCaError);
    await expect(again).rejects.toMatchObject({ code: 'conflict', message: expect.stringContaining('ca rollover') });
    const n = await rolloverIssuing(t.cfg, t.keys, store, { actor: 'test' });
    const h = await loadCa(t.cfg, t.keys, store, { now: new Date(Date.now() + 1000) });
    expect(h.issuing.name).toBe(n.name);
    expect(new crypto.X509Certificate(n.der).checkIssued(new crypto.X509Certificate(h.roots[0].der))).toBe(true);
    expect(n.der.toString('latin1')).toContain('/crl/device-ca-root-2.crl');
    // a leaf of the new hierarchy: through OldWithNew for a party that trusts only the old root
    const leaf = await buildCertificateAuthority(t.cfg, h, new IssuingCaSet(h)).issue(leafRequest());
    expect(openssl(['verify', '-CAfile', pem('r1.pem', h.roots[1].der), '-untrusted', pem('u2.pem', h.links[0], h.issuing.der), pem('new-leaf.pem', leaf.der)]).out).toContain(': OK');
    // and now the chain starts with the new hierarchy
    expect(new IssuingCaSet(h).chain().map(subjectCn).slice(0, 3)).toEqual(['CN=device-ca Issuing CA 2', 'CN=device-ca Issuing CA', 'CN=device-ca Root CA 2']);
  });

  it('revoke-issuing lists a CA on the CRL of the root that signed it', async () => {
    const oldIssuing = certificateParts(t.hierarchy.issuing.der).serial;
    await revokeIssuing(t.cfg, t.keys, store, 'device-ca-issuing', 'superseded', { store: true, actor: 'test' });
    const h = await loadCa(t.cfg, t.keys, store);
    const oldCrl = await readRootCrl(store, h.roots[1].der, h.roots[1].crlRecord);
    const newCrl = await readRootCrl(store, h.roots[0].der, h.roots[0].crlRecord);
    expect(oldCrl!.entries.map((e) => String(e.serial))).toEqual([oldIssuing]);
    expect(newCrl!.entries).toEqual([]);
  });

  it('keys list: the new root in force, the old one retired (its key still signs its CRL)', async () => {
    const rows = await keyAssignments(t.cfg, t.keys, store);
    expect(rows.filter((r) => r.role.startsWith('root')).map((r) => [r.role, r.ca, r.status])).toEqual([
      ['root', 'device-ca-root-2', 'in force'],
      ['root-retired', 'device-ca-root', 'retired'],
    ]);
    expect(rows.find((r) => r.role === 'root-retired')!.ref).toBe(t.hierarchy.state.root.keyRef);
  });

  it('the root CRL watch covers both roots: a missing CRL of either is a warning', async () => {
    const h = await loadCa(t.cfg, t.keys, store);
    const roots = h.roots.map((r) => ({ name: r.name, der: r.der, record: r.crlRecord }));
    const warnings: string[] = [];
    const ok = new RootCrlWatch(roots, store, new Registry(), (w) => warnings.push(w));
    expect(await ok.check()).toBeNull();
    expect((await ok.current('device-ca-root'))?.der).toBeDefined();
    const gone = new RootCrlWatch([...roots, { ...roots[0], name: 'device-ca-root-9', record: 'root-crl:none' }], store, new Registry(), (w) => warnings.push(w));
    expect(await gone.check()).toMatch(/no root CRL in the store.*--root device-ca-root-9/);
  });
});

describe('root rollover crash safety', () => {
  let t: TestCa;
  let store: SqliteStore;
  beforeAll(async () => {
    t = await makeTestCa({}, 'device-ca-root-crash-');
    store = new SqliteStore(t.cfg.store.path);
  });
  afterAll(async () => {
    await store.close();
    t.cleanup();
  });

  /** failing: the store, except that saveCaState of `record` throws once (a kill at that step). */
  const failing = (s: SqliteStore, record: (r: string) => boolean): SqliteStore => {
    let armed = true;
    return new Proxy(s, {
      get(target, prop, receiver) {
        if (prop === 'saveCaState')
          return (r: string, ...rest: unknown[]) => {
            if (armed && record(r)) {
              armed = false;
              return Promise.reject(new Error('killed'));
            }
            return (target.saveCaState as (...a: unknown[]) => Promise<unknown>).call(target, r, ...rest);
          };
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  };

  it('a kill before the CA state is written leaves the old root in force and no new root CRL; the rerun completes', async () => {
    await expect(
      rolloverRoot(
        t.cfg,
        t.keys,
        failing(store, (r) => r === HIERARCHY_RECORD),
        { actor: 'test' },
      ),
    ).rejects.toThrow('killed');
    const rec = (await store.getCaState(HIERARCHY_RECORD))!.value as StoredCa;
    expect(rec.root.name).toBe('device-ca-root');
    expect(rec.previousRoots).toBeUndefined();
    expect(await store.getCaState('root-crl:device-ca-root-2')).toBeNull();
    expect((await loadCa(t.cfg, t.keys, store)).roots).toHaveLength(1);
    const r = await rolloverRoot(t.cfg, t.keys, store, { actor: 'test' });
    expect(r).toMatchObject({ name: 'device-ca-root-2', resumed: false });
  });

  it('a kill after the commit, before the new root CRL, is finished by the rerun (same root, no third one); a further run refuses', async () => {
    const t2 = await makeTestCa({}, 'device-ca-root-crash2-');
    const s2 = new SqliteStore(t2.cfg.store.path);
    try {
      await expect(
        rolloverRoot(
          t2.cfg,
          t2.keys,
          failing(s2, (r) => r.startsWith('root-crl:')),
          { actor: 'test' },
        ),
      ).rejects.toThrow('killed');
      const committed = (await s2.getCaState(HIERARCHY_RECORD))!.value as StoredCa;
      expect(committed.root.name).toBe('device-ca-root-2');
      expect(await s2.getCaState('root-crl:device-ca-root-2')).toBeNull();
      const r = await rolloverRoot(t2.cfg, t2.keys, s2, { actor: 'test' });
      expect(r).toMatchObject({ name: 'device-ca-root-2', resumed: true });
      expect(r.der.equals(Buffer.from(committed.root.der, 'base64'))).toBe(true);
      expect(await readRootCrl(s2, r.der, 'root-crl:device-ca-root-2')).not.toBeNull();
      expect(((await s2.getCaState(HIERARCHY_RECORD))!.value as StoredCa).previousRoots).toHaveLength(1);
      await expect(rolloverRoot(t2.cfg, t2.keys, s2, { actor: 'test' })).rejects.toMatchObject({ code: 'conflict' });
    } finally {
      await s2.close();
      t2.cleanup();
    }
  });
});
