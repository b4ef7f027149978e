import { HIERARCHY_RECORD, StoredCa, loadCa } from '../../../src/ca/ca-hierarchy';
import { revokeIssuing } from '../../../src/ca/ca-lifecycle';
import { IssuingCaSet } from '../../../src/ca/issuing-ca-set';
import { activateDueRollover, rolloverIssuing } from '../../../src/ca/issuing-rollover';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { TestCa, makeTestCa } from '../../fixtures/test-ca';

/**
 * Where a scheduled issuing CA switch is committed: at its activation time, by the activation path
 * (activateDueRollover, run by the CA duties holder), never as a side effect of another write. The clock
 * is the test's: T0 and AT lie before the machine's time, so a write that read "now" from the machine
 * would promote the rollover early.
 */

const T0 = new Date('2026-03-01T00:00:00Z');
const AT = new Date('2026-03-10T00:00:00Z');

describe('the issuing CA switch at a rollover', () => {
  let t: TestCa;
  let store: SqliteStore;
  const stored = async () => (await store.getCaState(HIERARCHY_RECORD))!.value as StoredCa;
  beforeAll(async () => {
    t = await makeTestCa({}, 'device-ca-switch-');
    store = new SqliteStore(t.cfg.store.path);
    await rolloverIssuing(t.cfg, t.keys, store, { at: AT, actor: 'test', now: T0 });
  });
  afterAll(async () => {
    await store.close();
    t.cleanup();
  });

  it('a revocation before the switch time leaves the CA in force and the pending switch as they were', async () => {
    await revokeIssuing(t.cfg, t.keys, store, 'device-ca-issuing', 'keyCompromise', { store: true, actor: 'test', now: T0 });
    const rec = await stored();
    expect(rec.issuing.name).toBe('device-ca-issuing');
    expect(rec.issuing.revoked).toBe(true);
    expect(rec.next).toMatchObject({ name: 'device-ca-issuing-2', activatesAt: AT.toISOString() });
    expect(rec.retired ?? []).toEqual([]);
    const h = await loadCa(t.cfg, t.keys, store, { now: T0 });
    const cas = new IssuingCaSet(h, undefined, () => T0);
    expect(cas.active().name).toBe('device-ca-issuing');
    expect(cas.pending()?.activatesAt).toEqual(AT);
    expect((await store.listAudit({ limit: 50 })).items.map((a) => a.type)).not.toContain('ca.rollover-activated');
  });

  it('the periodic check commits nothing before the switch time and the switch at it (audited once)', async () => {
    expect(await activateDueRollover(t.cfg, store, { actor: 'ca-duties', now: new Date(AT.getTime() - 1000) })).toBeNull();
    expect((await stored()).next?.name).toBe('device-ca-issuing-2');
    const h = await loadCa(t.cfg, t.keys, store, { now: T0 });
    const cas = new IssuingCaSet(h, undefined, () => AT);
    expect(cas.active().name).toBe('device-ca-issuing-2');

    expect(await activateDueRollover(t.cfg, store, { actor: 'ca-duties', now: AT })).toBe('device-ca-issuing-2');
    const rec = await stored();
    expect(rec.next).toBeUndefined();
    expect(rec.issuing.name).toBe('device-ca-issuing-2');
    expect(rec.retired?.map((r) => [r.name, r.revoked])).toEqual([['device-ca-issuing', true]]);
    expect(await activateDueRollover(t.cfg, store, { actor: 'ca-duties', now: AT })).toBeNull();
    const audit = (await store.listAudit({ limit: 50 })).items.filter((a) => a.type === 'ca.rollover-activated');
    expect(audit.map((a) => [a.subject, a.data])).toEqual([['device-ca-issuing-2', { replaces: 'device-ca-issuing', activatesAt: AT.toISOString() }]]);
  });
});
