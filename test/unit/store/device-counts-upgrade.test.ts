import Database from 'better-sqlite3';
import { Redis } from 'ioredis';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { RedisStore } from '../../../src/store/redis/redis-store';
import { MIGRATIONS } from '../../../src/store/sqlite/migrations';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { DeviceCounts } from '../../../src/store/store';
import { RedisServer, hasRedisServer, startRedisServer } from '../../helpers/redis-server';

/**
 * Device counts on a store written before they existed: SQLite migration 14 fills them from the devices
 * there are; a Redis store without them counts every device once, on the first countDevices, and keeps
 * the counts from then on. The same for the owner and state search sets (`devs-owner:<owner>`,
 * `devs-state:<state>`, flag `dev-index-ready`), and those sets hold exactly the devices they name after
 * every write path.
 */

const audit = (id: string) => ({ type: 'device.registered', actor: 'test', subject: id, data: {} });
const secret = () => ({ hash: 'h', expiresAt: new Date(Date.now() + 86400_000) });
const EXPECTED: DeviceCounts = {
  total: 4,
  byState: { registered: 1, active: 2, suspended: 0, transferring: 0, retired: 1 },
  topOwners: [
    { owner: 'acme', count: 2 },
    { owner: 'globex', count: 1 },
    { owner: null, count: 1 },
  ],
};

it('SQLite: migration 14 counts the devices an earlier version wrote, and the triggers keep counting', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-mig13-'));
  const file = path.join(dir, 'old.sqlite');
  try {
    const db = new Database(file);
    db.exec(`CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version (version) VALUES (13);`);
    for (const m of MIGRATIONS.slice(0, 13)) db.exec(m);
    const ins = db.prepare('INSERT INTO devices (id, owner, label, state, created_at, updated_at) VALUES (?, ?, NULL, ?, 1, 1)');
    ins.run('d-1', 'acme', 'active');
    ins.run('d-2', 'acme', 'retired');
    ins.run('d-3', 'globex', 'active');
    ins.run('d-4', null, 'registered');
    db.close();

    const store = new SqliteStore(file);
    expect(await store.countDevices({ topOwners: 5 })).toEqual(EXPECTED);
    await store.createDevice({ id: 'd-5', owner: 'globex', label: null, state: 'registered' }, secret(), audit('d-5'));
    expect(await store.countDevices({ owner: 'globex', topOwners: 5 })).toEqual({
      total: 2,
      byState: { registered: 1, active: 1, suspended: 0, transferring: 0, retired: 0 },
      topOwners: [{ owner: 'globex', count: 2 }],
    });
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

  it('a store without counts (an earlier version wrote it) counts every device on the first countDevices, then keeps counting', async () => {
    await admin.flushdb();
    const store = new RedisStore({ url: server.url });
    try {
      await store.createDevice({ id: 'd-1', owner: 'acme', label: null, state: 'registered' }, secret(), audit('d-1'));
      await store.createDevice({ id: 'd-2', owner: 'acme', label: null, state: 'registered' }, secret(), audit('d-2'));
      await store.createDevice({ id: 'd-3', owner: 'globex', label: null, state: 'registered' }, secret(), audit('d-3'));
      await store.createDevice({ id: 'd-4', owner: null, label: null, state: 'registered' }, secret(), audit('d-4'));
      for (const [id, from, to] of [
        ['d-1', 'registered', 'active'],
        ['d-3', 'registered', 'active'],
        ['d-2', 'registered', 'retired'],
      ] as const)
        await store.applyDeviceChange({ deviceId: id, fromStates: [from], toState: to, audit: audit(id) });
      // as an earlier version left it: no counters at all
      const counters = await admin.keys('*dev-count*');
      expect(counters.length).toBeGreaterThan(0);
      await admin.del(...counters, ...(await admin.keys('*dev-owners*')));
      expect(await store.countDevices({ topOwners: 5 })).toEqual(EXPECTED);
      expect(await admin.exists('{dca}:dev-counts-ready')).toBe(1);
      await store.applyDeviceChange({ deviceId: 'd-4', fromStates: ['registered'], toState: 'suspended', newOwner: 'acme', audit: audit('d-4') });
      expect(await store.countDevices({ topOwners: 5 })).toEqual({
        total: 4,
        byState: { registered: 0, active: 2, suspended: 1, transferring: 0, retired: 1 },
        topOwners: [
          { owner: 'acme', count: 3 },
          { owner: 'globex', count: 1 },
        ],
      });
    } finally {
      await store.close();
    }
  });

  it('a store without label sets (an earlier version wrote it) fills them on the first label search, which answers right before and after', async () => {
    await admin.flushdb();
    const store = new RedisStore({ url: server.url });
    try {
      for (const [id, label] of [
        ['g-1', 'gateway'],
        ['s-1', 'sensor'],
        ['g-2', 'gateway'],
        ['n-1', null],
      ] as const)
        await store.createDevice({ id, owner: 'acme', label, state: 'registered' }, secret(), audit(id));
      await store.countDevices({ topOwners: 1 });
      expect(await admin.exists('{dca}:dev-labels-ready')).toBe(1);
      // as an earlier version left it: counts ready, no label sets
      await admin.del('{dca}:dev-labels-ready', ...(await admin.keys('*devs-label*')));
      expect((await store.listDevices({ label: 'gateway' })).items.map((d) => d.id)).toEqual(['g-1', 'g-2']);
      expect(await admin.exists('{dca}:dev-labels-ready')).toBe(1);
      expect(await admin.zrange('{dca}:devs-label:gateway', 0, -1)).toEqual(['g-1', 'g-2']);
      await store.createDevice({ id: 'g-0', owner: 'acme', label: 'gateway', state: 'registered' }, secret(), audit('g-0'));
      expect((await store.listDevices({ label: 'gateway' })).items.map((d) => d.id)).toEqual(['g-0', 'g-1', 'g-2']);
      expect((await store.listDevices({ label: 'sensor' })).items.map((d) => d.id)).toEqual(['s-1']);
    } finally {
      await store.close();
    }
  });

  /** searchSets: every owner and state search set with its ids, as Redis holds them */
  const searchSets = async (): Promise<Record<string, string[]>> => {
    const out: Record<string, string[]> = {};
    for (const key of (await admin.keys('{dca}:devs-owner:*')).concat(await admin.keys('{dca}:devs-state:*')).sort()) out[key.slice('{dca}:'.length)] = await admin.zrange(key, 0, -1);
    return out;
  };

  it('the owner and state sets hold exactly the devices of each owner and state after create, bulk create, issuance, retire, release, claim and transfer', async () => {
    await admin.flushdb();
    const store = new RedisStore({ url: server.url });
    try {
      await store.createDevice({ id: 'd-1', owner: 'acme', label: null, state: 'registered' }, secret(), audit('d-1'));
      await store.createDevices(
        [
          { id: 'd-2', owner: 'acme' },
          { id: 'd-3', owner: null },
        ].map((d) => ({ device: { ...d, label: null, state: 'registered' as const }, secret: secret(), audit: audit(d.id) })),
        { skipExisting: false },
      );
      expect(await searchSets()).toEqual({ 'devs-owner:acme': ['d-1', 'd-2'], 'devs-state:registered': ['d-1', 'd-2', 'd-3'] });
      const now = Date.now();
      await store.recordIssuance({
        cert: {
          serial: '0a',
          deviceId: 'd-1',
          issuer: 'ca',
          subject: 'CN=d-1',
          profile: 'default',
          notBefore: new Date(now),
          notAfter: new Date(now + 86400_000),
          shard: 0,
          spkiSha256: 'x',
          der: Buffer.from('der'),
        },
        audit: audit('d-1'),
      });
      await store.applyDeviceChange({ deviceId: 'd-2', fromStates: ['registered'], toState: 'retired', audit: audit('d-2') });
      await store.applyDeviceChange({ deviceId: 'd-1', fromStates: ['active'], toState: 'transferring', pendingOwner: 'globex', audit: audit('d-1') });
      expect(await searchSets()).toEqual({
        'devs-owner:acme': ['d-1', 'd-2'],
        'devs-state:registered': ['d-3'],
        'devs-state:retired': ['d-2'],
        'devs-state:transferring': ['d-1'],
      });
      await store.applyDeviceChange({ deviceId: 'd-1', fromStates: ['transferring'], toState: 'registered', newOwner: 'globex', pendingOwner: null, audit: audit('d-1') });
      await store.applyDeviceChange({ deviceId: 'd-3', fromStates: ['registered'], toState: 'registered', newOwner: 'initech', audit: audit('d-3') });
      expect(await searchSets()).toEqual({
        'devs-owner:acme': ['d-2'],
        'devs-owner:globex': ['d-1'],
        'devs-owner:initech': ['d-3'],
        'devs-state:registered': ['d-1', 'd-3'],
        'devs-state:retired': ['d-2'],
      });
    } finally {
      await store.close();
    }
  });

  it('a store without owner and state sets (an earlier version wrote it) fills them on the first owner or state search, which answers right before and after; stale members are dropped', async () => {
    await admin.flushdb();
    const store = new RedisStore({ url: server.url });
    try {
      for (const [id, owner] of [
        ['a-1', 'acme'],
        ['g-1', 'globex'],
        ['a-2', 'acme'],
        ['n-1', null],
      ] as const)
        await store.createDevice({ id, owner, label: null, state: 'registered' }, secret(), audit(id));
      await store.applyDeviceChange({ deviceId: 'a-2', fromStates: ['registered'], toState: 'suspended', audit: audit('a-2') });
      await store.countDevices({ topOwners: 1 });
      expect(await admin.exists('{dca}:dev-index-ready')).toBe(1);
      const full = await searchSets();
      // as the version before the sets left it: counts and label sets ready, no owner or state sets, no flag;
      // and a member an older node left behind (a device that is not acme's, not retired)
      await admin.del('{dca}:dev-index-ready', ...(await admin.keys('{dca}:devs-owner:*')), ...(await admin.keys('{dca}:devs-state:*')));
      await admin.zadd('{dca}:devs-owner:acme', 0, 'g-1');
      await admin.zadd('{dca}:devs-state:retired', 0, 'a-1');
      expect((await store.listDevices({ owner: 'acme' })).items.map((d) => d.id)).toEqual(['a-1', 'a-2']);
      expect(await admin.exists('{dca}:dev-index-ready')).toBe(1);
      expect(await searchSets()).toEqual(full);
      expect((await store.listDevices({ state: 'suspended' })).items.map((d) => d.id)).toEqual(['a-2']);
      await store.createDevice({ id: 'a-0', owner: 'acme', label: null, state: 'registered' }, secret(), audit('a-0'));
      expect((await store.listDevices({ owner: 'acme', state: 'registered' })).items.map((d) => d.id)).toEqual(['a-0', 'a-1']);
      expect(await admin.zrange('{dca}:devs-owner:acme', 0, -1)).toEqual(['a-0', 'a-1', 'a-2']);
    } finally {
      await store.close();
    }
  });
});
