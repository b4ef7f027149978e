import * as crypto from 'node:crypto';
import { loadCa } from '../../../src/ca/ca-hierarchy';
import { revokeIssuing } from '../../../src/ca/ca-lifecycle';
import { certificateParts } from '../../../src/ca/certificate-parts';
import { rolloverIssuing } from '../../../src/ca/issuing-rollover';
import { keyAssignments } from '../../../src/ca/key-assignments';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { TestCa, makeTestCa } from '../../fixtures/test-ca';

/**
 * `device-ca keys list` after `ca rollover`: the pending issuing key (with its activation time), then, once
 * it took over, the retired one (which still signs its CRLs and OCSP), and a revoked one marked so.
 */

const spkiSha256 = (der: Buffer) => crypto.createHash('sha256').update(certificateParts(der).spki).digest('hex');

describe('keys list across an issuing CA rollover', () => {
  let t: TestCa;
  let store: SqliteStore;
  beforeAll(async () => {
    t = await makeTestCa({}, 'device-ca-keys-list-');
    store = new SqliteStore(t.cfg.store.path);
  });
  afterAll(async () => {
    await store.close();
    t.cleanup();
  });

  it('shows root and issuing in force before any rollover', async () => {
    const rows = await keyAssignments(t.cfg, t.keys, store);
    expect(rows.map((r) => [r.role, r.ca, r.status])).toEqual([
      ['root', 'device-ca-root', 'in force'],
      ['issuing', 'device-ca-issuing', 'in force'],
    ]);
  });

  it('shows the next issuing key with its activation time, then the retired one after it, and a revoked one as revoked', async () => {
    const now = new Date();
    const at = new Date(Math.floor(now.getTime() / 1000) * 1000 + 86400_000);
    const r = await rolloverIssuing(t.cfg, t.keys, store, { at, actor: 'test', now });
    const before = await keyAssignments(t.cfg, t.keys, store, now);
    expect(before.map((x) => [x.role, x.ca, x.status])).toEqual([
      ['root', 'device-ca-root', 'in force'],
      ['issuing', 'device-ca-issuing', 'in force'],
      ['issuing-next', 'device-ca-issuing-2', `from ${at.toISOString()}`],
    ]);
    const next = before[2];
    expect(next.ref).toBe((await loadCa(t.cfg, t.keys, store, { lazyKeys: true, now })).next!.ca.key.ref);
    expect(next.ref).not.toBe(before[1].ref);
    expect(next.spkiSha256).toBe(spkiSha256(r.der));
    expect((await t.keys.load(next.ref)).spki.equals(certificateParts(r.der).spki)).toBe(true);

    const after = new Date(at.getTime() + 1000);
    const rows = await keyAssignments(t.cfg, t.keys, store, after);
    expect(rows.map((x) => [x.role, x.ca, x.status])).toEqual([
      ['root', 'device-ca-root', 'in force'],
      ['issuing', 'device-ca-issuing-2', 'in force'],
      ['issuing-retired', 'device-ca-issuing', 'retired'],
    ]);
    expect(rows[2].ref).toBe(before[1].ref);

    await revokeIssuing(t.cfg, t.keys, store, 'device-ca-issuing', 'superseded', { store: true, actor: 'test', now: after });
    expect((await keyAssignments(t.cfg, t.keys, store, after)).find((x) => x.ca === 'device-ca-issuing')?.status).toBe('revoked');
  });
});
