import * as fs from 'node:fs';
import { IDENTITY_FILE, StoreMarkRecorder, identityFile, readIdentity, recordStoreMark, verifyStoreIdentity } from '../../../src/ca/ca-identity';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { TestCa, makeTestCa } from '../../fixtures/test-ca';

/**
 * ca-identity in-process: how the high-water mark in the data directory moves (only forward, except
 * after an accepted rollback), and the rollback cases the interop test does not reach (CRL number, a
 * damaged identity file). test/interop/store-identity.test.ts drives the same checks through `serve`.
 */

let t: TestCa;
let store: SqliteStore;
const ISSUER = 'device-ca-issuing';
const audit = (subject: string) => ({ type: 'test.event', actor: 'test', subject, data: {} });

beforeEach(async () => {
  t = await makeTestCa({}, 'device-ca-identity-');
  store = new SqliteStore(t.cfg.store.path);
});
afterEach(async () => {
  await store.close();
  t.cleanup();
});

describe('recordStoreMark', () => {
  it('writes <data>/ca-identity.json (0600) with the store head and the issuing key id', async () => {
    await store.nextCrlNumber(ISSUER);
    const head = await store.head(ISSUER);
    const id = await recordStoreMark(t.cfg, store, { now: new Date('2030-01-02T03:04:05Z') });
    expect(id).toEqual({
      version: 1,
      issuing: { name: ISSUER, keyId: t.hierarchy.issuing.keyId.toString('hex') },
      mark: { auditSeq: head.auditSeq, auditHash: head.auditHash, crlNumber: '1', recordedAt: '2030-01-02T03:04:05.000Z' },
    });
    expect(identityFile(t.cfg).endsWith(IDENTITY_FILE)).toBe(true);
    expect(fs.statSync(identityFile(t.cfg)).mode & 0o777).toBe(0o600);
    expect(readIdentity(t.cfg)).toEqual(id);
  });

  it('never moves the mark back (a slower writer with an older head), unless forced', async () => {
    await store.appendAudit(audit('a'));
    await store.appendAudit(audit('b'));
    const high = (await recordStoreMark(t.cfg, store))!;
    // another process's view of an older store head: simulate with a store copy that lacks the last records
    const older = { ...store, head: async () => ({ auditSeq: high.mark.auditSeq - 2, auditHash: 'x', crlNumber: 0n }), getCaState: (n: string) => store.getCaState(n) } as unknown as SqliteStore;
    expect(await recordStoreMark(t.cfg, older)).toEqual(high);
    expect(readIdentity(t.cfg)!.mark.auditSeq).toBe(high.mark.auditSeq);
    const forced = await recordStoreMark(t.cfg, older, { force: true });
    expect(forced!.mark.auditSeq).toBe(high.mark.auditSeq - 2);
  });

  it('StoreMarkRecorder folds calls made while one runs into one more run', async () => {
    let heads = 0;
    const counting = new Proxy(store, { get: (target, p) => (p === 'head' ? (i: string) => (heads++, target.head(i)) : Reflect.get(target, p, target)) });
    const recorder = new StoreMarkRecorder(t.cfg, counting);
    await Promise.all([recorder.record(), recorder.record(), recorder.record(), recorder.record()]);
    expect(heads).toBe(2);
    expect(readIdentity(t.cfg)!.mark.auditSeq).toBe((await store.head(ISSUER)).auditSeq);
  });
});

describe('verifyStoreIdentity', () => {
  it('passes a store that went on from the mark', async () => {
    await recordStoreMark(t.cfg, store);
    await store.appendAudit(audit('later'));
    await store.nextCrlNumber(ISSUER);
    await expect(verifyStoreIdentity(t.cfg, store)).resolves.toEqual({ rollbackAccepted: null });
  });

  it('refuses a store whose CRL number is behind the mark, and with acceptRollback audits store.rollback-accepted', async () => {
    const id = (await recordStoreMark(t.cfg, store))!;
    fs.writeFileSync(identityFile(t.cfg), JSON.stringify({ ...id, mark: { ...id.mark, crlNumber: '5' } }));
    await expect(verifyStoreIdentity(t.cfg, store)).rejects.toMatchObject({
      code: 'config',
      message: expect.stringContaining(`store rolled back: CRL number 0 < 5 recorded at ${id.mark.recordedAt}`),
    });
    const before = (await store.head(ISSUER)).auditSeq;
    const r = await verifyStoreIdentity(t.cfg, store, { acceptRollback: true });
    expect(r.rollbackAccepted).toContain('CRL number 0 < 5');
    const last = (await store.listAudit({ after: String(before) })).items;
    expect(last.map((a) => [a.type, a.data.problem])).toEqual([['store.rollback-accepted', r.rollbackAccepted]]);
  });

  it('a damaged identity file is a config error naming it', async () => {
    fs.writeFileSync(identityFile(t.cfg), '{"version":1');
    await expect(verifyStoreIdentity(t.cfg, store)).rejects.toMatchObject({ code: 'config', message: expect.stringContaining(`${identityFile(t.cfg)} is damaged`) });
  });
});
