import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { importRootCrl, makeRootCrl, reissueIssuing, revokeIssuing } from '../../../src/ca/ca-lifecycle';
import { loadCa } from '../../../src/ca/ca-hierarchy';
import { crlToPem } from '../../../src/ca/crl-encoder';
import { CrlPublisher } from '../../../src/ca/crl-publisher';
import { toPem } from '../../../src/ca/pem';
import { parseRootCrl, readRootCrl, rootCrlWarning } from '../../../src/ca/root-crl';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { generateKeyPair } from '../../../src/keys/software-key-backend';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { TestCa, makeTestCa } from '../../fixtures/test-ca';

/**
 * The root CRL, judged by openssl: `openssl verify -crl_check_all` (what FreeRADIUS check_all_crl does)
 * needs a CRL for every CA in the chain. With the root CRL and the leaf's shard CRL a device verifies;
 * after `ca revoke-issuing` the same device fails at depth 1.
 */

const BASE = 'http://ca.example.test:8080';

function openssl(args: string[], input?: string): { status: number | null; out: string } {
  const r = spawnSync('openssl', args, { input, encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe.each([{ alg: 'ecdsa-p256' }, { alg: 'rsa-2048' }])('root CRL, $alg hierarchy', ({ alg }) => {
  let t: TestCa;
  let store: SqliteStore;
  let files: { root: string; issuing: string; leaf: string; shardCrl: string };
  const rootCrlFile = () => {
    const f = path.join(t.dir, `root-${crypto.randomBytes(3).toString('hex')}.crl.pem`);
    return f;
  };
  const writeRootCrl = async () => {
    const info = (await readRootCrl(store, t.hierarchy.root.der))!;
    const f = rootCrlFile();
    fs.writeFileSync(f, crlToPem(info.der));
    return f;
  };
  const verifyAll = (rootCrl: string) => openssl(['verify', '-crl_check_all', '-CAfile', files.root, '-untrusted', files.issuing, '-CRLfile', rootCrl, '-CRLfile', files.shardCrl, files.leaf]);

  beforeAll(async () => {
    t = await makeTestCa({ 'ca.algorithm': alg }, 'device-ca-rootcrl-');
    store = new SqliteStore(t.cfg.store.path);
    const leaf = await t.ca.issue({
      profile: 'default',
      subject: [{ type: 'CN', value: 'dev-1' }],
      spki: crypto.createPublicKey(generateKeyPair('ecdsa-p256').privateKey).export({ type: 'spki', format: 'der' }),
      keyType: 'ec',
      sans: [],
    });
    const shard = await new CrlPublisher(t.hierarchy.issuing, store, t.cfg.crl, BASE).current(leaf.shard);
    files = { root: path.join(t.dir, 'root.pem'), issuing: path.join(t.dir, 'issuing.pem'), leaf: path.join(t.dir, 'leaf.pem'), shardCrl: path.join(t.dir, 'shard.crl.pem') };
    fs.writeFileSync(files.root, toPem(t.hierarchy.root.der, 'CERTIFICATE'));
    fs.writeFileSync(files.issuing, toPem(t.hierarchy.issuing.der, 'CERTIFICATE'));
    fs.writeFileSync(files.leaf, toPem(leaf.der, 'CERTIFICATE'));
    fs.writeFileSync(files.shardCrl, crlToPem(shard.der));
  });
  afterAll(async () => {
    await store?.close();
    t?.cleanup();
  });

  it('init made a root CRL: signed by the root, empty, no IDP (it covers the root itself too), nextUpdate one year on', async () => {
    const info = (await readRootCrl(store, t.hierarchy.root.der))!;
    expect(info.entries).toEqual([]);
    expect(info.nextUpdate.getTime() - info.thisUpdate.getTime()).toBe(365 * 86400_000);
    const f = await writeRootCrl();
    const text = openssl(['crl', '-in', f, '-noout', '-text', '-CAfile', files.root]).out;
    expect(text).toContain('verify OK');
    expect(text).not.toContain('Issuing Distribution Point');
    expect(text).toContain('No Revoked Certificates');
    expect(rootCrlWarning(info, 'device-ca-root')).toBeNull();
  });

  it('the issuing CA certificate names the root CRL (CRL DP) and the root certificate (AIA caIssuers)', () => {
    const text = openssl(['x509', '-in', files.issuing, '-noout', '-text']).out;
    expect(text).toMatch(new RegExp(`CRL Distribution Points:\\s+Full Name:\\s+URI:${BASE}/crl/device-ca-root\\.crl\\s`));
    expect(text).toMatch(new RegExp(`Authority Information Access:\\s+CA Issuers - URI:${BASE}/ca/device-ca-root\\.crt\\s`));
  });

  it('openssl verify -crl_check_all: OK with both CRLs; "unable to get certificate CRL" without the root CRL', async () => {
    const ok = verifyAll(await writeRootCrl());
    expect(ok.out).toBe(`${files.leaf}: OK\n`);
    const without = openssl(['verify', '-crl_check_all', '-CAfile', files.root, '-untrusted', files.issuing, '-CRLfile', files.shardCrl, files.leaf]);
    expect(without.status).not.toBe(0);
    expect(without.out).toContain('unable to get certificate CRL');
  });

  it('root-crl --out / --import: a CRL signed elsewhere is imported when newer and signed by the root; older or foreign ones are refused', async () => {
    const before = (await readRootCrl(store, t.hierarchy.root.der))!;
    const made = await makeRootCrl(t.cfg, t.keys, store, { store: false, actor: 'test' });
    expect((await readRootCrl(store, t.hierarchy.root.der))!.number).toBe(before.number); // --out leaves the store alone
    const imported = await importRootCrl(t.cfg, store, made.der, 'test');
    expect(imported.number).toBe(made.number);
    expect((await readRootCrl(store, t.hierarchy.root.der))!.der.equals(made.der)).toBe(true);
    await expect(importRootCrl(t.cfg, store, before.der, 'test')).rejects.toMatchObject({ code: 'conflict' });
    const other = await makeTestCa({}, 'device-ca-rootcrl-other-');
    try {
      const otherStore = new SqliteStore(other.cfg.store.path);
      const foreign = (await readRootCrl(otherStore, other.hierarchy.root.der))!;
      await otherStore.close();
      await expect(importRootCrl(t.cfg, store, foreign.der, 'test')).rejects.toBeInstanceOf(DeviceCaError);
    } finally {
      other.cleanup();
    }
    await expect(importRootCrl(t.cfg, store, Buffer.from('garbage'), 'test')).rejects.toMatchObject({ code: 'bad-request' });
  });

  it('reissue-issuing: same key and window, the new extensions; the leaf still verifies; the old serial is remembered', async () => {
    const oldDer = t.hierarchy.issuing.der;
    const { der, replaced } = await reissueIssuing(t.cfg, t.keys, store, 'test');
    const o = new crypto.X509Certificate(oldDer);
    const n = new crypto.X509Certificate(der);
    expect(n.publicKey.export({ type: 'spki', format: 'der' }).equals(o.publicKey.export({ type: 'spki', format: 'der' }))).toBe(true);
    expect([n.subject, n.validFrom, n.validTo]).toEqual([o.subject, o.validFrom, o.validTo]);
    expect(n.serialNumber).not.toBe(o.serialNumber);
    expect(replaced).toBe(o.serialNumber.toLowerCase().replace(/^0+/, ''));
    const h = await loadCa(t.cfg, t.keys, store);
    expect(h.issuing.der.equals(der)).toBe(true);
    fs.writeFileSync(files.issuing, toPem(der, 'CERTIFICATE'));
    expect(verifyAll(await writeRootCrl()).out).toBe(`${files.leaf}: OK\n`);
  });

  it('revoke-issuing keyCompromise: the root CRL lists every certificate of the issuing key and openssl -crl_check_all rejects the device', async () => {
    const { serials, crl } = await revokeIssuing(t.cfg, t.keys, store, 'device-ca-issuing', 'keyCompromise', { store: true, actor: 'test' });
    expect(serials).toHaveLength(2);
    const f = await writeRootCrl();
    const text = openssl(['crl', '-in', f, '-noout', '-text']).out;
    for (const s of serials) expect(text.toLowerCase()).toContain(`serial number: ${s}`);
    expect(text).toContain('Key Compromise');
    expect(parseRootCrl(crl.der, t.hierarchy.root.der).entries.map((e) => e.reason)).toEqual(['keyCompromise', 'keyCompromise']);
    const v = verifyAll(f);
    expect(v.status).not.toBe(0);
    expect(v.out).toMatch(/error 23 at 1 depth lookup: certificate revoked/);
    // a later root CRL keeps the entries
    const again = await makeRootCrl(t.cfg, t.keys, store, { store: true, actor: 'test' });
    expect(again.entries.map((e) => e.serial).sort()).toEqual([...serials].sort());
    await expect(revokeIssuing(t.cfg, t.keys, store, 'no-such-ca', 'keyCompromise', { store: true, actor: 'test' })).rejects.toMatchObject({ code: 'not-found' });
  });
});

describe('rootCrlWarning', () => {
  const info = (nextUpdate: Date) => ({ der: Buffer.alloc(0), number: 1n, thisUpdate: new Date(0), nextUpdate, entries: [] });
  const now = new Date('2030-01-01T00:00:00Z');
  it.each<[string, Date | null, RegExp | null]>([
    ['none in the store', null, /no root CRL in the store.*device-ca ca root-crl/],
    ['31 days left', new Date(now.getTime() + 31 * 86400_000), null],
    ['29 days left', new Date(now.getTime() + 29 * 86400_000), /root CRL of r lapses at 2030-01-30T00:00:00\.000Z/],
    ['lapsed', new Date(now.getTime() - 1000), /lapsed/],
  ])('%s', (_label, next, want) => {
    const w = rootCrlWarning(next ? info(next) : null, 'r', now);
    if (want) expect(w).toMatch(want);
    else expect(w).toBeNull();
  });
});
