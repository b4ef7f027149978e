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
 * the counts from then on.
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
});
