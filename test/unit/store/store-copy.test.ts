import Database from 'better-sqlite3';
import { readReleaseBytes } from '../../../src/store/release-chunks';
import { bufferSource } from '../../../src/cms/byte-source';
import * as crypto from 'node:crypto';
import * as path from 'node:path';
import { Redis } from 'ioredis';
import { verifyAuditChain } from '../../../src/audit/audit-verify';
import { RedisStore } from '../../../src/store/redis/redis-store';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { collectItems } from '../../../src/store/paging';
import { AuditInput, RELEASE_CHUNK_BYTES, firmwareReleaseKey } from '../../../src/store/store';
import { copyStore } from '../../../src/store/store-copy';
import { SnapshotRow } from '../../../src/store/store-snapshot';
import { RedisServer, hasRedisServer, startRedisServer } from '../../helpers/redis-server';
import { TmpDir, makeTmpDir } from '../../helpers/tmp';

/**
 * `device-ca store copy`: a CA recorded in SQLite, copied into an empty Redis, reads the same through the
 * Store interface (ids, bytes, status, audit hashes, counters), and a copy that cannot be completed or
 * verified leaves the target empty.
 */
let server: RedisServer;
let admin: Redis;
let dir: TmpDir;
let sqlite: SqliteStore;
let redis: RedisStore;
const DAY = 86400_000;
const GROUP_KEY = 'ab'.repeat(16);
const audit = (type: string, subject: string, data: Record<string, unknown> = {}): AuditInput => ({ type, actor: 'test', subject, data });
const h = (s: string): string => crypto.createHash('sha256').update(s).digest('hex');

beforeAll(async () => {
  if (!hasRedisServer()) throw new Error('redis-server is not installed: run scripts/install-test-deps.sh (Debian package redis-server)');
  server = await startRedisServer();
  admin = new Redis(server.url);
});
afterAll(async () => {
  admin?.disconnect();
  await server?.stop();
});
beforeEach(async () => {
  await admin.flushdb();
  dir = makeTmpDir('device-ca-store-copy-');
  sqlite = new SqliteStore(path.join(dir.path, 'device-ca.sqlite'));
  redis = new RedisStore({ url: server.url });
});
afterEach(async () => {
  await sqlite.close().catch(() => undefined);
  await redis.close();
  dir.cleanup();
});

/** populate records a small CA: every kind of row a copy must carry. */
async function populate(s: SqliteStore): Promise<void> {
  await s.saveCaState('hierarchy', { issuing: { name: 'issuing-1' } }, 0, audit('ca.created', 'ca'));
  await s.saveCaState('ocsp-responder', { serial: 'aa' }, 0);
  await s.saveFirmwareGroupKey(GROUP_KEY, { id: GROUP_KEY }, 0, ['dev-1', 'dev-3'], audit('firmware.group-key.created', 'firmware-group:fleet'));
  const fw = { name: 'fw', sha256: 'cd'.repeat(32), signers: [], recipients: ['dev-1'], releasedAt: new Date('2026-01-01T00:00:00Z') };
  await s.saveFirmwareRelease({ ...fw, version: 1 }, bufferSource(Buffer.from('release 1')), audit('firmware.released', 'firmware:fw'));
  await s.saveFirmwareRelease(
    { ...fw, version: 2, recipients: null, hardware: [{ type: '1.3.6.1.4.1.99.1', serial: 'dev-1' }] },
    bufferSource(Buffer.alloc(5000, 2)),
    audit('firmware.released', 'firmware:fw'),
  );
  const receipt = { name: 'fw', deviceId: 'dev-1', hwType: '1.2.3', sha256: 'ef'.repeat(32), at: new Date('2026-01-02T00:00:00Z') };
  await s.recordFirmwareReceipt({ ...receipt, version: 1, outcome: 'loaded' }, audit('firmware.receipt', 'device:dev-1'));
  await s.recordFirmwareReceipt({ ...receipt, version: 2, outcome: 'error', errorCode: 23, sha256: '12'.repeat(32) }, audit('firmware.receipt', 'device:dev-1'));
  for (const id of ['dev-1', 'dev-2', 'dev-3'])
    await s.createDevice({ id, owner: id === 'dev-3' ? 'team-b' : null, label: null, state: 'registered' }, { hash: `hash-${id}`, expiresAt: new Date(Date.now() + DAY) }, audit('device.create', id));
  const [secret] = await s.activeSecrets('dev-1', new Date());
  const cert = (serial: string, deviceId: string) => ({
    serial,
    deviceId,
    issuer: 'issuing-1',
    subject: `CN=${deviceId}`,
    profile: 'default',
    notBefore: new Date('2025-01-01T00:00:00Z'),
    notAfter: new Date(Date.now() + 365 * DAY),
    shard: 3,
    spkiSha256: h(serial),
    der: crypto.randomBytes(300),
  });
  await s.recordIssuance({ cert: cert('0a01', 'dev-1'), consumeSecretId: secret.id, audit: audit('cert.issue', '0a01') });
  await s.recordIssuance({ cert: cert('0a02', 'dev-2'), audit: audit('cert.issue', '0a02') });
  await s.revokeCertificate('0a02', 'keyCompromise', new Date(), null, audit('cert.revoke', '0a02'));
  await s.createRequest({ id: 'req-1', deviceId: 'dev-3', label: 'default', operation: 'enroll', csrSha256: h('csr'), csr: Buffer.from('csr') }, audit('request.create', 'req-1'));
  await s.createToken({ id: 'tok-1', hash: h('token'), scope: 'operator', description: 'ops' }, audit('token.created', 'tok-1'));
  const n = await s.nextCrlNumber('issuing-1');
  await s.saveCrl({
    issuer: 'issuing-1',
    shard: 3,
    number: n,
    revision: await s.shardRevision('issuing-1', 3),
    thisUpdate: new Date(),
    nextUpdate: new Date(Date.now() + DAY),
    entries: 1,
    der: Buffer.from('crl bytes'),
  });
  const now = new Date();
  await s.saveNonce({ deviceId: 'dev-1', nonceSha256: h('nonce'), expiresAt: new Date(now.getTime() + 60_000) }, now, 4);
  const ak = (akName: string, deviceId: string, ek: string) => ({
    akName,
    deviceId,
    akPublic: Buffer.from(`public ${akName}`),
    ekCertSha256: h(ek),
    ekManufacturer: null,
    ekModel: null,
    challengeSha256: h('secret'),
    challengeExpiresAt: new Date(now.getTime() + 60_000),
  });
  await s.saveAkChallenge(ak('000bak1', 'dev-1', 'ek-1'), now, audit('tpm.ak.challenge', 'dev-1'));
  await s.activateAk('000bak1', 'dev-1', h('secret'), now, audit('tpm.ak.activate', 'dev-1'));
  // the last accepted clockInfo travels with the binding, a UINT64 clock exact
  await s.setAkClock('000bak1', null, { clock: 0xfffffffffffffffen, resetCount: 7, restartCount: 3 });
  await s.saveAkChallenge(ak('000bak2', 'dev-2', 'ek-2'), now, audit('tpm.ak.challenge', 'dev-2'));
  await s.revokeAks('dev-2', true, now, audit('tpm.ak.revoked', 'dev-2'));
}

it('copies every row: the target reads as the source did, and goes on from there', async () => {
  await populate(sqlite);
  const progress: string[] = [];
  const summary = await copyStore(sqlite, redis, { progress: (p) => progress.push(`${p.kind}:${p.copied}`), batchSize: 2 });
  expect(summary.rows).toMatchObject({
    device: 3,
    secret: 3,
    certificate: 2,
    request: 1,
    token: 1,
    crl: 1,
    'crl-number': 1,
    'tpm-ak': 2,
    'tpm-blocked-ek': 1,
    'tpm-nonce': 1,
    'firmware-release': 2,
    'firmware-receipt': 1,
    'firmware-group-key-member': 2,
    'ca-state': 3,
  });
  expect(progress).toContain('device:3');
  expect(summary.census).toMatchObject({ devices: 3, certificates: 2, revokedCertificates: 1, requests: 1, tokens: 1, tpmAks: 2, crlNumbers: { 'issuing-1': '1' } });
  // the firmware group key's members (the devices that may fetch it) come along
  expect(summary.census.firmwareGroupKeyMembers).toEqual({ [GROUP_KEY]: 2 });
  expect(await redis.isFirmwareGroupKeyMember(GROUP_KEY, 'dev-3')).toBe(true);
  expect(await redis.isFirmwareGroupKeyMember(GROUP_KEY, 'dev-2')).toBe(false);
  expect(await redis.firmwareGroupKeyMembership(GROUP_KEY, ['dev-1', 'dev-2'])).toEqual({ members: 2, newcomers: ['dev-2'] });

  const src = await verifyAuditChain(sqlite);
  expect(summary.audit).toEqual(src);
  expect(await redis.head('issuing-1')).toEqual(await sqlite.head('issuing-1'));
  for (const serial of ['0a01', '0a02']) expect(await redis.getCertificate(serial)).toEqual(await sqlite.getCertificate(serial));
  expect(await redis.getDevice('dev-3')).toEqual(await sqlite.getDevice('dev-3'));
  expect(await redis.spentSecrets('dev-1', new Date(0))).toEqual(await sqlite.spentSecrets('dev-1', new Date(0)));
  expect(await redis.getCrl('issuing-1', 3)).toEqual(await sqlite.getCrl('issuing-1', 3));
  expect(await redis.getCaState('hierarchy')).toEqual(await sqlite.getCaState('hierarchy'));
  expect(await redis.listFirmwareReleases({})).toEqual(await sqlite.listFirmwareReleases({}));
  expect((await redis.getFirmwareRelease('fw', 2))?.hardware).toEqual([{ type: '1.3.6.1.4.1.99.1', serial: 'dev-1' }]);
  expect(await readReleaseBytes((await redis.openFirmwareRelease('fw', 2))!)).toEqual(Buffer.alloc(5000, 2));
  expect(await redis.getFirmwareReceipt('fw', 'dev-1')).toEqual(await sqlite.getFirmwareReceipt('fw', 'dev-1'));
  expect(await redis.firmwareHardwareOf('dev-1')).toBe('1.2.3');
  expect(summary.census.firmwareReceipts).toEqual([`fw/dev-1:${'12'.repeat(32)}`]);
  // the Redis counters of `firmware status` are kept by the copy too
  expect(await redis.firmwareReceiptSummary('fw')).toEqual({ devices: 1, versions: [{ version: 1, devices: 1 }], errors: [{ code: 23, devices: 1 }] });
  expect(await redis.firmwareReceiptSummary('fw')).toEqual(await sqlite.firmwareReceiptSummary('fw'));
  expect(await redis.findToken(h('token'))).toEqual(await sqlite.findToken(h('token')));
  expect(await redis.findRequest('dev-3', h('csr'))).toEqual(await sqlite.findRequest('dev-3', h('csr')));
  expect(await redis.aksOfDevice('dev-1')).toEqual(await sqlite.aksOfDevice('dev-1'));
  expect((await redis.getAk('000bak1'))?.lastClock).toEqual({ clock: 0xfffffffffffffffen, resetCount: 7, restartCount: 3 });
  expect(await redis.shardRevision('issuing-1', 3)).toBe(await sqlite.shardRevision('issuing-1', 3));
  const revoked = [];
  for await (const page of redis.revokedInShard('issuing-1', 3, new Date())) revoked.push(...page.map((r) => r.serial));
  expect(revoked).toEqual(['0a02']);

  // the copy is a working store: the nonce is spent once, the blocked EK stays blocked, counters go on
  expect(await redis.consumeNonce('dev-1', h('nonce'), new Date())).toBe(true);
  expect(await redis.consumeNonce('dev-1', h('nonce'), new Date())).toBe(false);
  await expect(redis.saveAkChallenge({ ...(await sqlite.getAk('000bak2'))!, akName: '000bak9', deviceId: 'dev-9' }, new Date(), audit('tpm.ak.challenge', 'dev-9'))).rejects.toMatchObject({
    code: 'forbidden',
  });
  expect(await redis.nextCrlNumber('issuing-1')).toBe(2n);
  await redis.createDevice({ id: 'dev-4', owner: null, label: null, state: 'registered' }, { hash: 'h4', expiresAt: new Date(Date.now() + DAY) }, audit('device.create', 'dev-4'));
  const ids = [...(await sqlite.activeSecrets('dev-2', new Date())), ...(await sqlite.spentSecrets('dev-1', new Date(0)))].map((x) => x.id);
  expect((await redis.activeSecrets('dev-4', new Date()))[0].id).toBeGreaterThan(Math.max(...ids));
  const after = await verifyAuditChain(redis);
  expect(after).toMatchObject({ ok: true, records: src.records + 1 });
  expect((await collectItems((a, limit) => redis.listAudit({ after: a, limit }))).items[src.records - 1].hash).toBe(src.lastHash);
});

it('refuses a target that holds anything, and writes nothing', async () => {
  await populate(sqlite);
  await redis.createToken({ id: 'other', hash: 'x', scope: 'operator', description: null }, audit('token.created', 'other'));
  const before = await admin.dbsize();
  await expect(copyStore(sqlite, redis)).rejects.toMatchObject({ code: 'conflict', message: expect.stringContaining('not empty (it holds an audit chain, admin tokens)') });
  expect(await admin.dbsize()).toBe(before);
});

it('refuses a source without a CA', async () => {
  await expect(copyStore(sqlite, redis)).rejects.toMatchObject({ code: 'not-found' });
  expect(await admin.dbsize()).toBe(0);
});

it('a copy that fails half-way leaves the target empty, and a new copy then succeeds', async () => {
  await populate(sqlite);
  let batches = 0;
  const failing = Object.create(redis) as RedisStore;
  failing.importSnapshot = async (rows: SnapshotRow[]) => {
    if (++batches === 3) throw new Error('connection lost');
    return RedisStore.prototype.importSnapshot.call(failing, rows);
  };
  await expect(copyStore(sqlite, failing, { batchSize: 2 })).rejects.toThrow('connection lost');
  expect(await admin.dbsize()).toBe(0);
  await expect(copyStore(sqlite, redis)).resolves.toMatchObject({ audit: { ok: true } });
});

it('a source whose audit chain was edited is not copied (the copy would not verify)', async () => {
  await populate(sqlite);
  const db = new Database(path.join(dir.path, 'device-ca.sqlite'));
  db.prepare('UPDATE audit SET data = ? WHERE seq = 2').run(JSON.stringify({ edited: true }));
  db.close();
  await expect(copyStore(sqlite, redis)).rejects.toMatchObject({ code: 'internal', message: expect.stringContaining('audit chain does not verify: record 2') });
  expect(await admin.dbsize()).toBe(0);
});

it('copies release bytes chunk by chunk: a multi-MiB release and a one-value release of an earlier version arrive as chunks, byte for byte', async () => {
  await sqlite.saveCaState('hierarchy', { issuing: { name: 'issuing-1' } }, 0, audit('ca.created', 'ca'));
  const fw = { name: 'fw', sha256: 'cd'.repeat(32), signers: [], recipients: null, releasedAt: new Date('2026-01-01T00:00:00Z') };
  const large = crypto.randomBytes(3 * RELEASE_CHUNK_BYTES + 7);
  await sqlite.saveFirmwareRelease({ ...fw, version: 3 }, bufferSource(large), audit('firmware.released', 'firmware:fw'));
  // a release as an earlier device-ca recorded it: one `der` value
  const old = crypto.randomBytes(RELEASE_CHUNK_BYTES + RELEASE_CHUNK_BYTES / 2);
  const db = new Database(path.join(dir.path, 'device-ca.sqlite'));
  db.prepare(`INSERT INTO firmware_releases (sort_key, name, version, sha256, signers, recipients, released_at, der) VALUES (?, 'old-fw', 1, ?, '[]', NULL, 1000, ?)`).run(
    firmwareReleaseKey('old-fw', 1),
    'ab'.repeat(32),
    old,
  );
  db.close();

  const summary = await copyStore(sqlite, redis);
  expect(summary.rows['firmware-release']).toBe(2);
  const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');
  expect(summary.census.firmwareReleaseBytes).toEqual([`fw@3:${large.length}:${sha(large)}`, `old-fw@1:${old.length}:${sha(old)}`]);
  expect(sha(await readReleaseBytes((await redis.openFirmwareRelease('fw', 3))!))).toBe(sha(large));
  expect(sha(await readReleaseBytes((await redis.openFirmwareRelease('old-fw', 1))!))).toBe(sha(old));
  // in the target every release is chunks of at most RELEASE_CHUNK_BYTES, without a time to live; no one-value key
  const chunkKeys = (await admin.keys('{dca}:fw-rel-chunk:*')).sort();
  expect(chunkKeys).toHaveLength(4 + 2);
  for (const k of chunkKeys) {
    expect(await admin.strlen(k)).toBeLessThanOrEqual(RELEASE_CHUNK_BYTES);
    expect(await admin.pttl(k)).toBe(-1);
  }
  expect(await admin.keys('{dca}:fw-rel-der:*')).toEqual([]);
});
