import Database from 'better-sqlite3';
import { REVOKED_IN_SHARD_SQL, SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { RevokedRow } from '../../../src/store/store';
import { TmpDir, makeTmpDir } from '../../helpers/tmp';

/**
 * The CRL index of the SQLite store (migration 12): re-issuing a CRL shard reads its entries from an index
 * that holds only revoked certificates and covers every column a CRL entry needs, so it never looks up
 * the certificates table per entry; and an issuance (a valid certificate) writes no entry into it. Both
 * keep the cost flat as the table grows to a million certificates (bench/scale).
 */

let dir: TmpDir;
beforeEach(() => {
  dir = makeTmpDir('device-ca-crl-index-');
});
afterEach(() => dir.cleanup());

const ISSUER = 'Bench Issuing CA';
const DAY = 86_400_000;

async function issue(store: SqliteStore, serial: string, shard: number, notAfter: Date): Promise<void> {
  await store.recordIssuance({
    cert: {
      serial,
      deviceId: null,
      issuer: ISSUER,
      subject: `CN=${serial}`,
      profile: 'default',
      notBefore: new Date(Date.now() - DAY),
      notAfter,
      shard,
      spkiSha256: '00'.repeat(32),
      der: Buffer.from([0x30, 0]),
    },
    audit: { type: 'certificate.issued', actor: 'test', subject: serial, data: {} },
  });
}

const plan = (file: string, sql: string): string => {
  const db = new Database(file, { readonly: true });
  try {
    return (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(ISSUER, 0, Date.now(), '', 10) as { detail: string }[]).map((r) => r.detail).join(' | ');
  } finally {
    db.close();
  }
};

it("a CRL shard's entries are read from a covering index, in serial order, without sorting", async () => {
  const file = dir.file('device-ca.sqlite');
  await new SqliteStore(file).close();
  const p = plan(file, REVOKED_IN_SHARD_SQL);
  expect(p).toMatch(/USING COVERING INDEX certificates_crl_revoked \(issuer=\? AND shard=\? AND serial>\?\)/);
  expect(p).not.toMatch(/TEMP B-TREE|SCAN/);
});

it('an issuance writes only the primary key and the device index; the CRL index is partial on revoked certificates', async () => {
  const file = dir.file('device-ca.sqlite');
  await new SqliteStore(file).close();
  const db = new Database(file, { readonly: true });
  try {
    const indexes = db.prepare('PRAGMA index_list(certificates)').all() as { name: string; partial: number }[];
    expect(
      indexes
        .filter((i) => i.partial === 0)
        .map((i) => i.name)
        .sort(),
    ).toEqual(['certificates_device', 'sqlite_autoindex_certificates_1']);
    const crl = db.prepare("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'certificates_crl_revoked'").get() as { sql: string } | undefined;
    expect(crl?.sql).toMatch(/WHERE status = 'revoked'$/);
  } finally {
    db.close();
  }
});

it('revokedInShard through the index: revoked, unexpired, this shard, paged in serial order; a released hold leaves it', async () => {
  const store = new SqliteStore(dir.file('device-ca.sqlite'));
  try {
    const later = new Date(Date.now() + 365 * DAY);
    const audit = { type: 'certificate.revoked', actor: 'test', subject: 's', data: {} };
    for (const s of ['05', '01', '04', '03', '02']) await issue(store, s, 0, later);
    await issue(store, '06', 1, later); // another shard
    await issue(store, '07', 0, new Date(Date.now() + 1000)); // expires before "now" below
    const at = new Date();
    for (const s of ['05', '01', '03', '06', '07']) await store.revokeCertificate(s, 'keyCompromise', at, null, audit);
    await store.revokeCertificate('04', 'certificateHold', at, null, audit);
    await store.releaseHold('04', audit);
    const pages: RevokedRow[][] = [];
    for await (const page of store.revokedInShard(ISSUER, 0, new Date(Date.now() + 2000), 2)) pages.push(page);
    expect(pages.map((p) => p.map((r) => r.serial))).toEqual([['01', '03'], ['05']]);
    expect(pages[0][0]).toEqual({ serial: '01', revokedAt: new Date(at.getTime()), reason: 'keyCompromise', invalidityDate: null });
  } finally {
    await store.close();
  }
});
