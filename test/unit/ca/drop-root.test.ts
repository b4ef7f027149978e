import { X509Certificate } from 'node:crypto';
import { HIERARCHY_RECORD, StoredCa, loadCa } from '../../../src/ca/ca-hierarchy';
import { dropRoot, revokeIssuing, rolloverRoot } from '../../../src/ca/ca-lifecycle';
import { IssuingCaSet } from '../../../src/ca/issuing-ca-set';
import { rolloverIssuing } from '../../../src/ca/issuing-rollover';
import { openSignerCa } from '../../../src/ca/signer-ca';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { TestCa, makeTestCa } from '../../fixtures/test-ca';

/**
 * `ca drop-root <name>`: an old root and its link certificates stop being published before the root
 * expires, once no issuing CA under it can still have valid certificates. Refused for the root in force,
 * an unknown name, and while an issuing CA under the old root is in force, pending, or retired but unexpired
 * and not revoked; nothing is written when refused.
 */
describe('ca drop-root', () => {
  let t: TestCa;
  let store: SqliteStore;
  const version = async () => (await store.getCaState(HIERARCHY_RECORD))!.version;
  beforeAll(async () => {
    t = await makeTestCa({}, 'device-ca-drop-root-');
    store = new SqliteStore(t.cfg.store.path);
    await rolloverRoot(t.cfg, t.keys, store, { actor: 'test' });
  });
  afterAll(async () => {
    await store.close();
    t.cleanup();
  });

  it('is refused for the root in force, an unknown root, and while an issuing CA under the old root may have valid certificates', async () => {
    const v = await version();
    await expect(dropRoot(t.cfg, store, 'device-ca-root-2', { actor: 'test' })).rejects.toMatchObject({ code: 'conflict' });
    await expect(dropRoot(t.cfg, store, 'nope', { actor: 'test' })).rejects.toMatchObject({ code: 'not-found' });
    // the issuing CA in force is still under the old root
    await expect(dropRoot(t.cfg, store, 'device-ca-root', { actor: 'test' })).rejects.toMatchObject({ code: 'conflict', message: expect.stringContaining('device-ca-issuing (in force)') });
    // rolled over under the new root: the old issuing CA is retired but its certificates may be valid
    await rolloverIssuing(t.cfg, t.keys, store, { actor: 'test' });
    await expect(dropRoot(t.cfg, store, 'device-ca-root', { actor: 'test' })).rejects.toMatchObject({ code: 'conflict', message: expect.stringContaining('device-ca-issuing (retired') });
    expect((await store.getCaState(HIERARCHY_RECORD))!.value).toMatchObject({ previousRoots: [{ name: 'device-ca-root' }] });
    expect(await version()).toBeGreaterThan(v);
  });

  it('once the old issuing CA is revoked: drops the old root and both links from what services publish', async () => {
    const before = await loadCa(t.cfg, t.keys, store);
    expect(before.roots.map((r) => r.name)).toEqual(['device-ca-root-2', 'device-ca-root']);
    expect(before.links).toHaveLength(2);
    const cas = new IssuingCaSet(before, { store, load: (now) => loadCa(t.cfg, t.keys, store, { now }) });
    await cas.refresh();
    const oldRootDer = cas.rootDer('device-ca-root')!;
    expect(cas.chain().some((d) => d.equals(oldRootDer))).toBe(true);

    await revokeIssuing(t.cfg, t.keys, store, 'device-ca-issuing', 'superseded', { store: true, actor: 'test' });
    expect(await dropRoot(t.cfg, store, 'device-ca-root', { actor: 'test' })).toEqual({ name: 'device-ca-root', linkCertificates: 2 });
    expect(await cas.refresh()).toBe(true);
    expect(cas.hierarchy.roots.map((r) => r.name)).toEqual(['device-ca-root-2']);
    expect(cas.hierarchy.links).toEqual([]);
    expect(cas.rootDer('device-ca-root')).toBeUndefined();
    expect(cas.chain().some((d) => d.equals(oldRootDer))).toBe(false);
    const rec = (await store.getCaState(HIERARCHY_RECORD))!.value as StoredCa;
    expect(rec.droppedRoots?.map((r) => [r.name, r.links.length])).toEqual([['device-ca-root', 1]]);
    expect((await store.listAudit({ subject: 'device-ca-root', limit: 10 })).items.map((a) => a.type)).toContain('ca.root-dropped');
    // its name is not given to a later root
    const r3 = await rolloverRoot(t.cfg, t.keys, store, { actor: 'test' });
    expect(r3.name).toBe('device-ca-root-3');
  });
});

describe('ca drop-root with a firmware signer CA under the old root', () => {
  let t: TestCa;
  let store: SqliteStore;
  beforeAll(async () => {
    t = await makeTestCa({}, 'device-ca-drop-root-signer-');
    store = new SqliteStore(t.cfg.store.path);
    await openSignerCa(t.cfg, t.keys, store); // the first `signers add`, before the rollover
    await rolloverRoot(t.cfg, t.keys, store, { actor: 'test' });
    await rolloverIssuing(t.cfg, t.keys, store, { actor: 'test' });
    await revokeIssuing(t.cfg, t.keys, store, 'device-ca-issuing', 'superseded', { store: true, actor: 'test' });
  });
  afterAll(async () => {
    await store.close();
    t.cleanup();
  });

  it('is refused while the signer CA is under it (its releases chain to it), nothing written; the signer CA keeps its root', async () => {
    const v = (await store.getCaState(HIERARCHY_RECORD))!.version;
    await expect(dropRoot(t.cfg, store, 'device-ca-root', { actor: 'test' })).rejects.toMatchObject({
      code: 'conflict',
      message: expect.stringContaining('the firmware signer CA (releases and device commands chain to it until'),
    });
    expect((await store.getCaState(HIERARCHY_RECORD))!.version).toBe(v);
    const ca = await openSignerCa(t.cfg, t.keys, store);
    expect(new X509Certificate(ca.der).checkIssued(new X509Certificate(ca.rootDer))).toBe(true);
    expect(ca.links).toHaveLength(1); // NewWithOld: a device trusting only the new root reaches the old one
  });
});
