import { populateStore, storeBytes } from '../../../bench/scale-populate';
import { verifyAuditChain } from '../../../src/audit/audit-verify';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { TmpDir, makeTmpDir } from '../../helpers/tmp';

/**
 * The bench/scale fixture writes rows the store itself reads back as its own: devices active, certificates
 * with their status and shard as CertificateAuthority chooses it, shard revisions, and an audit chain that
 * `audit verify` accepts, continuing from records the store wrote before.
 */

let dir: TmpDir;
beforeEach(() => {
  dir = makeTmpDir('device-ca-scale-populate-');
});
afterEach(() => dir.cleanup());

const ISSUER = 'Scale Issuing CA';

it('populated devices, certificates, revocations and audit records read back through the SQLite store', async () => {
  const file = dir.file('device-ca.sqlite');
  const before = new SqliteStore(file);
  await before.appendAudit({ type: 'ca.created', actor: 'test', subject: ISSUER, data: {} });
  await before.close();

  const r = populateStore({ file, issuer: ISSUER, shards: 4, devices: 200, revokedEvery: 10, der: Buffer.from([0x30, 0x00]), idPrefix: 'fleet' });
  expect(r).toMatchObject({ devices: 200, certificates: 200, revoked: 20 });
  expect(r.revokedPerShard.reduce((a, b) => a + b, 0)).toBe(20);
  expect(storeBytes(file)).toBeGreaterThan(0);

  const store = new SqliteStore(file);
  try {
    expect(await verifyAuditChain(store)).toMatchObject({ ok: true, records: 1 + 200 * 2 + 20 });
    expect(await store.getDevice('fleet-00000009')).toMatchObject({ id: 'fleet-00000009', owner: 'owner-9', state: 'active' });
    const certs = (await store.listCertificates({ deviceId: 'fleet-00000009', limit: 10 })).items;
    expect(certs).toHaveLength(1);
    const c = certs[0];
    // the shard as CertificateAuthority.sign chooses it: serial octets 12..15 modulo the shard count
    expect(c.shard).toBe(Buffer.from(c.serial, 'hex').readUInt32BE(12) % 4);
    expect(await store.certificateStatus(c.serial)).toMatchObject({ status: 'revoked', revocationReason: expect.any(String) });
    for (let s = 0; s < 4; s++) {
      expect(await store.shardRevision(ISSUER, s)).toBe(r.revokedPerShard[s]);
      let n = 0;
      for await (const page of store.revokedInShard(ISSUER, s, new Date())) n += page.length;
      expect(n).toBe(r.revokedPerShard[s]);
    }
    const good = r.sample.find((x) => x.status === 'good')!;
    expect(await store.certificateStatus(good.serial)).toMatchObject({ status: 'valid' });
  } finally {
    await store.close();
  }
});

it('onlyShard: every certificate lands in the one shard asked for', async () => {
  const file = dir.file('device-ca.sqlite');
  await new SqliteStore(file).close();
  const r = populateStore({ file, issuer: ISSUER, shards: 16, devices: 50, revokedEvery: 1, onlyShard: 3, der: Buffer.from([0x30, 0x00]), idPrefix: 'shard' });
  expect(r.revokedPerShard[3]).toBe(50);
  const store = new SqliteStore(file);
  try {
    let n = 0;
    for await (const page of store.revokedInShard(ISSUER, 3, new Date())) n += page.length;
    expect(n).toBe(50);
  } finally {
    await store.close();
  }
});
