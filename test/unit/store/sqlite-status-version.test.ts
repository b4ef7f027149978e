import Database from 'better-sqlite3';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { TmpDir, makeTmpDir } from '../../helpers/tmp';

/**
 * SqliteStore.statusVersion (store/status-version.ts, migration 26): it moves when any connection changes a
 * certificate's status or removes a certificate, whatever the write path (the triggers on `certificates`,
 * checked here with a raw connection too), and it stays put across commits that change no status, which
 * a busy CA makes all the time (issuance, audit records, leases, CRLs): those must not make OCSP read every
 * kept status again (bench/scale at 1,000,000 certificates).
 */
describe('SqliteStore.statusVersion', () => {
  let tmp: TmpDir;
  let mine: SqliteStore;
  let other: SqliteStore;
  const audit = { type: 'test', actor: 'test', subject: 'x', data: {} };
  const issue = (serial: string) =>
    other.recordIssuance({
      cert: {
        serial,
        deviceId: null,
        issuer: 'ca',
        subject: `CN=${serial}`,
        profile: 'default',
        notBefore: new Date(Date.now() - 60_000),
        notAfter: new Date(Date.now() + 86_400_000),
        shard: 0,
        spkiSha256: '00'.repeat(32),
        der: Buffer.from([0x30, 0]),
      },
      audit,
    });

  beforeEach(() => {
    tmp = makeTmpDir('device-ca-status-version-');
    mine = new SqliteStore(tmp.file('device-ca.sqlite'));
    other = new SqliteStore(tmp.file('device-ca.sqlite'));
  });
  afterEach(async () => {
    await mine.close();
    await other.close();
    tmp.cleanup();
  });

  it('stays the same across commits by another connection that change no status', async () => {
    await issue('aa01');
    const v = mine.statusVersion();
    await issue('aa02');
    await other.appendAudit(audit);
    await other.acquireLease('ca-duties', 'other', 30_000, new Date());
    await other.saveCrl({
      issuer: 'ca',
      shard: 0,
      number: await other.nextCrlNumber('ca'),
      revision: 0,
      thisUpdate: new Date(),
      nextUpdate: new Date(Date.now() + 3_600_000),
      entries: 0,
      der: Buffer.from([0x30, 0]),
    });
    expect(mine.statusVersion()).toBe(v);
  });

  it('moves with a revocation, a released hold, and a status write or delete through any connection', async () => {
    await issue('bb01');
    await issue('bb02');
    let v = mine.statusVersion();
    const moved = () => {
      const now = mine.statusVersion();
      const changed = now !== v;
      v = now;
      return changed;
    };
    await other.revokeCertificate('bb01', 'certificateHold', new Date(), null, audit);
    expect(moved()).toBe(true);
    await other.releaseHold('bb01', audit);
    expect(moved()).toBe(true);
    // its own connection's write too
    await mine.revokeCertificate('bb01', 'keyCompromise', new Date(), null, audit);
    expect(moved()).toBe(true);
    expect(moved()).toBe(false);
    // any write path: a raw connection (another version of the code, an operator's sqlite3)
    const raw = new Database(tmp.file('device-ca.sqlite'));
    try {
      raw.prepare("UPDATE certificates SET status = 'revoked', revoked_at = 1, revocation_reason = 'superseded' WHERE serial = 'bb02'").run();
      expect(moved()).toBe(true);
      raw.prepare("DELETE FROM certificates WHERE serial = 'bb02'").run();
      expect(moved()).toBe(true);
      raw.prepare("UPDATE certificates SET der = x'3000' WHERE serial = 'bb01'").run();
      expect(moved()).toBe(false);
    } finally {
      raw.close();
    }
  });

  it("moves when a backup restored into the live file (sqlite3's .restore) is followed by a status change, though as many changes were counted as before", async () => {
    const file = tmp.file('device-ca.sqlite');
    await issue('cc01');
    await issue('cc02');
    const backup = tmp.file('backup.sqlite');
    const live = new Database(file);
    try {
      await live.backup(backup);
    } finally {
      live.close();
    }
    await other.revokeCertificate('cc02', 'superseded', new Date(), null, audit);
    const v = mine.statusVersion(); // kept under it: cc01 good, cc02 revoked
    // the operator restores the backup (cc02 good again) and at once revokes cc01: as many status changes since
    // the backup as the live file had counted when the version was read
    const restore = new Database(backup);
    try {
      await restore.backup(file);
    } finally {
      restore.close();
    }
    await other.revokeCertificate('cc01', 'keyCompromise', new Date(), null, audit);
    expect((await mine.certificateStatus('cc01'))?.status).toBe('revoked');
    expect(mine.statusVersion()).not.toBe(v);
  });
});
