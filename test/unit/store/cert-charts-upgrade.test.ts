import Database from 'better-sqlite3';
import { Redis } from 'ioredis';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { RedisStore } from '../../../src/store/redis/redis-store';
import { MIGRATIONS } from '../../../src/store/sqlite/migrations';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { RedisServer, hasRedisServer, startRedisServer } from '../../helpers/redis-server';

/**
 * The overview charts on a store written before them: the SQLite migration fills the per-hour issuance
 * counts from the certificates there are (and indexes valid certificates by notAfter); a Redis store
 * without them walks every certificate once, on the first chart read, and keeps the figures from then on.
 */

const HOUR = 3600_000;
const DAY = 86400_000;
const audit = (id: string) => ({ type: 'test', actor: 'test', subject: id, data: {} });
const secret = () => ({ hash: 'h', expiresAt: new Date(Date.now() + DAY) });
const FROM = new Date('2030-01-01T00:00:00Z');

it('SQLite: the charts migration counts the certificates an earlier version recorded, and the trigger keeps counting', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-mig-charts-'));
  const file = path.join(dir, 'old.sqlite');
  try {
    const db = new Database(file);
    // the store as it was just before the charts migration (the one that creates cert_issued_hours)
    const before = MIGRATIONS.findIndex((m) => m.includes('CREATE TABLE cert_issued_hours'));
    expect(before).toBeGreaterThan(0);
    db.exec(`CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version (version) VALUES (${before});`);
    for (const m of MIGRATIONS.slice(0, before)) db.exec(m);
    const ins = db.prepare(
      `INSERT INTO certificates (serial, device_id, issuer, subject, profile, not_before, not_after, shard, spki_sha256, der, status, created_at)
         VALUES (?, ?, 'i', 's', 'default', 0, ?, 0, 'x', x'00', ?, ?)`,
    );
    const h0 = Date.UTC(2026, 0, 1, 10);
    ins.run('a1', 'd-1', FROM.getTime() + 5 * HOUR, 'valid', h0 + 1);
    ins.run('a2', 'd-1', FROM.getTime() + DAY, 'valid', h0 + 2);
    ins.run('a3', 'd-2', FROM.getTime() + DAY, 'revoked', h0 + HOUR);
    ins.run('a4', null, FROM.getTime() + DAY, 'valid', h0 + HOUR); // a service certificate
    db.close();

    const store = new SqliteStore(file);
    expect(await store.countIssuedPerHour({ from: new Date(h0), hours: 3 })).toEqual([2, 1, 0]);
    expect(await store.countExpiringPerDay({ from: FROM, days: 3 })).toEqual([1, 1, 0]);
    await store.createDevice({ id: 'd-3', owner: null, label: null, state: 'registered' }, secret(), audit('d-3'));
    const now = Date.now();
    await store.recordIssuance({
      cert: {
        serial: 'b1',
        deviceId: 'd-3',
        issuer: 'i',
        subject: 's',
        profile: 'default',
        notBefore: new Date(0),
        notAfter: new Date(FROM.getTime() + 2 * DAY),
        shard: 0,
        spkiSha256: 'y',
        der: Buffer.from([0]),
      },
      audit: audit('b1'),
    });
    const hours = await store.countIssuedPerHour({ from: new Date(now - HOUR), hours: 3 });
    expect(hours.reduce((a, b) => a + b, 0)).toBe(1);
    expect(await store.countExpiringPerDay({ from: FROM, days: 3 })).toEqual([1, 1, 1]);
    await store.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

describe('Redis', () => {
  let server: RedisServer;
  let admin: Redis;
  beforeAll(async () => {
    if (!hasRedisServer()) throw new Error('redis-server is not installed: run scripts/install-test-deps.sh (Debian package redis-server)');
    server = await startRedisServer();
    admin = new Redis(server.url);
  });
  afterAll(async () => {
    admin?.disconnect();
    await server?.stop();
  });

  it('a store without chart keys (an earlier version wrote it) walks the certificates on the first chart read, then keeps them', async () => {
    await admin.flushdb();
    const store = new RedisStore({ url: server.url });
    const issue = (serial: string, deviceId: string | null, notAfter: number) =>
      store.recordIssuance({
        cert: { serial, deviceId, issuer: 'i', subject: 's', profile: 'default', notBefore: new Date(0), notAfter: new Date(notAfter), shard: 0, spkiSha256: serial, der: Buffer.from([0]) },
        audit: audit(serial),
      });
    try {
      await store.createDevice({ id: 'd-1', owner: null, label: null, state: 'registered' }, secret(), audit('d-1'));
      await issue('a1', 'd-1', FROM.getTime() + 5 * HOUR);
      await issue('a2', 'd-1', FROM.getTime() + DAY);
      await issue('a3', 'd-1', FROM.getTime() + DAY);
      await issue('a4', null, FROM.getTime() + DAY);
      await store.revokeCertificate('a3', 'superseded', new Date(), null, audit('a3'));
      // as an earlier version left it: no chart keys at all
      const keys = [...(await admin.keys('*cert-hours*')), ...(await admin.keys('*certs-expiry*')), ...(await admin.keys('*cert-charts-ready*'))];
      expect(keys.length).toBeGreaterThan(0);
      await admin.del(...keys);
      const now = Date.now();
      const sum = async () => (await store.countIssuedPerHour({ from: new Date(now - 2 * HOUR), hours: 4 })).reduce((a, b) => a + b, 0);
      // while writes keep the walk from being saved (here: every save refused), the walk's own figures answer
      const saving = store as unknown as { tx: (watch: string[], body: unknown) => Promise<unknown> };
      const tx = saving.tx;
      saving.tx = async () => false;
      try {
        expect(await store.countExpiringPerDay({ from: FROM, days: 3 })).toEqual([1, 1, 0]);
        expect(await store.countExpiringPerDay({ from: new Date(FROM.getTime() + 6 * HOUR), days: 2 })).toEqual([0, 1]);
        expect(await sum()).toBe(3);
        expect(await admin.exists('{dca}:cert-charts-ready')).toBe(0);
      } finally {
        saving.tx = tx;
      }
      expect(await store.countExpiringPerDay({ from: FROM, days: 3 })).toEqual([1, 1, 0]);
      expect(await admin.exists('{dca}:cert-charts-ready')).toBe(1);
      expect(await admin.zrange('{dca}:certs-expiry', 0, -1)).toEqual(['a1', 'a2']);
      expect(await sum()).toBe(3);
      await issue('b1', 'd-1', FROM.getTime() + 2 * DAY);
      expect(await store.countExpiringPerDay({ from: FROM, days: 3 })).toEqual([1, 1, 1]);
      expect(await sum()).toBe(4);
    } finally {
      await store.close();
    }
  });
});
