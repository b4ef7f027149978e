import Database from 'better-sqlite3';
import { ChildProcess, spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as path from 'node:path';
import { bufferSource } from '../../src/cms/byte-source';
import { readReleaseBytes } from '../../src/store/release-chunks';
import { Redis } from 'ioredis';
import { RELEASE_PENDING_TTL_MS, RedisStore } from '../../src/store/redis/redis-store';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store';
import { RELEASE_CHUNK_BYTES } from '../../src/store/store';
import { hasRedisServer, startRedisServer } from '../helpers/redis-server';
import { assertBuilt } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * Crash safety of a large firmware release save (issue 13): a process running the BUILT store is killed
 * with SIGKILL while it writes a 48 MiB release's chunks (a re-release of version 1). Afterwards: the
 * release visible is still the first one, byte for byte, and no other; the store opens; the dead writer's
 * pending chunks are gone when docs/firmware.md says (SQLite: removed when the store is opened; Redis:
 * they expire, RELEASE_PENDING_TTL_MS); a new save works.
 */

const DIST_SQLITE = path.resolve(__dirname, '../../dist/store/sqlite/sqlite-store.js');
const DIST_REDIS = path.resolve(__dirname, '../../dist/store/redis/redis-store.js');
const PIECES = 48;

/** writer: a child saving a release of PIECES MiB, one MiB piece every 10 ms, telling the test each piece it hands out. */
const WRITER = `
const store = process.argv[1] === 'redis'
  ? new (require(${JSON.stringify(DIST_REDIS)}).RedisStore)({ url: process.argv[2] })
  : new (require(${JSON.stringify(DIST_SQLITE)}).SqliteStore)(process.argv[2]);
const piece = Buffer.alloc(${RELEASE_CHUNK_BYTES}, 0x5a);
const source = {
  length: ${PIECES} * piece.length,
  read: () => { throw new Error('not used'); },
  chunks: function* () {
    for (let i = 0; i < ${PIECES}; i++) {
      process.stdout.write('piece ' + i + '\\n');
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
      yield piece;
    }
  },
};
const info = { name: 'fw', version: 1, sha256: '22'.repeat(32), signers: [], recipients: null, releasedAt: new Date() };
store.saveFirmwareRelease(info, source, { type: 'firmware.released', actor: 'crash-test', subject: 'firmware:fw', data: { version: 1 } })
  .then(() => process.stdout.write('saved\\n'));
`;

let tmp: TmpDir;
beforeAll(() => {
  assertBuilt();
  tmp = makeTmpDir('device-ca-kill9-fw-');
});
afterAll(() => tmp?.cleanup());

/** killMidSave runs the writer on a store and kills it with SIGKILL once 12 chunks are written. */
async function killMidSave(kind: 'sqlite' | 'redis', where: string): Promise<void> {
  const child: ChildProcess = spawn(process.execPath, ['-e', WRITER, kind, where], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<NodeJS.Signals | null>((res) => child.on('exit', (_code, signal) => res(signal)));
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  await new Promise<void>((res, rej) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      // well inside the save: the writer asks for piece 12 once chunk 11 is written
      if (out.includes('piece 12\n')) res();
    });
    child.on('exit', () => rej(new Error(`the writer ended before it was killed: ${out} ${err}`)));
  });
  child.kill('SIGKILL');
  expect(await exited).toBe('SIGKILL');
  expect(out).not.toContain('saved');
}

const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');

const count = (file: string, sql: string): number => {
  const db = new Database(file, { readonly: true });
  try {
    return (db.prepare(sql).get() as { n: number }).n;
  } finally {
    db.close();
  }
};

it('kill -9 in the middle of a large release save: the earlier release stays, the store opens without the pending chunks, a new save works', async () => {
  const file = path.join(tmp.path, 'device-ca.sqlite');
  const first = crypto.randomBytes(2 * RELEASE_CHUNK_BYTES + 3);
  const store = new SqliteStore(file);
  const info = { name: 'fw', version: 1, sha256: '11'.repeat(32), signers: [], recipients: null, releasedAt: new Date('2026-01-01T00:00:00Z') };
  await store.saveFirmwareRelease(info, bufferSource(first), { type: 'firmware.released', actor: 'test', subject: 'firmware:fw', data: { version: 1 } });
  await store.close();

  await killMidSave('sqlite', file);

  // what the killed writer left: its pending set and the chunks written under it
  expect(count(file, 'SELECT COUNT(*) AS n FROM firmware_release_pending')).toBe(1);
  const written = count(file, 'SELECT COUNT(*) AS n FROM firmware_release_chunks');
  expect(written).toBeGreaterThanOrEqual(3 + 12); // the first release's 3 chunks and the killed save's

  const after = new SqliteStore(file);
  try {
    // the release visible is the first one, whole
    expect(await after.getFirmwareRelease('fw', 1)).toEqual(info);
    expect((await after.listFirmwareReleases({})).items).toEqual([info]);
    expect(sha(await readReleaseBytes((await after.openFirmwareRelease('fw', 1))!))).toBe(sha(first));
    expect((await after.listAudit({ subject: 'firmware:fw' })).items.map((r) => r.actor)).toEqual(['test']);
    // opening the store removed the dead writer's pending chunks
    expect(count(file, 'SELECT COUNT(*) AS n FROM firmware_release_pending')).toBe(0);
    expect(count(file, 'SELECT COUNT(*) AS n FROM firmware_release_chunks')).toBe(3);
    // and a new save works (the re-release the killed process did not finish)
    const again = crypto.randomBytes(5 * RELEASE_CHUNK_BYTES);
    await after.saveFirmwareRelease({ ...info, sha256: '33'.repeat(32) }, bufferSource(again), { type: 'firmware.released', actor: 'test', subject: 'firmware:fw', data: { version: 1 } });
    expect(sha(await readReleaseBytes((await after.openFirmwareRelease('fw', 1))!))).toBe(sha(again));
    expect(count(file, 'SELECT COUNT(*) AS n FROM firmware_release_chunks')).toBe(5);
  } finally {
    await after.close();
  }
}, 120_000);

it('Redis: kill -9 in the middle of a large release save: the earlier release stays, the pending chunks expire, a new save works', async () => {
  if (!hasRedisServer()) throw new Error('redis-server is not installed: run scripts/install-test-deps.sh (Debian package redis-server)');
  const server = await startRedisServer();
  const admin = new Redis(server.url);
  const store = new RedisStore({ url: server.url });
  try {
    const first = crypto.randomBytes(2 * RELEASE_CHUNK_BYTES + 3);
    const info = { name: 'fw', version: 1, sha256: '11'.repeat(32), signers: [], recipients: null, releasedAt: new Date('2026-01-01T00:00:00Z') };
    await store.saveFirmwareRelease(info, bufferSource(first), { type: 'firmware.released', actor: 'test', subject: 'firmware:fw', data: { version: 1 } });
    const kept = new Set(await admin.keys('{dca}:fw-rel-chunk:*'));
    expect(kept.size).toBe(3);

    await killMidSave('redis', server.url);

    expect(await store.getFirmwareRelease('fw', 1)).toEqual(info);
    expect(sha(await readReleaseBytes((await store.openFirmwareRelease('fw', 1))!))).toBe(sha(first));
    expect((await store.listAudit({ subject: 'firmware:fw' })).items.map((r) => r.actor)).toEqual(['test']);
    // the killed writer's chunks: not the release's, each expiring within RELEASE_PENDING_TTL_MS; the release's own do not expire
    const left = (await admin.keys('{dca}:fw-rel-chunk:*')).filter((k) => !kept.has(k));
    expect(left.length).toBeGreaterThanOrEqual(12);
    for (const k of left) {
      const ttl = await admin.pttl(k);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(RELEASE_PENDING_TTL_MS);
    }
    for (const k of kept) expect(await admin.pttl(k)).toBe(-1);

    const again = crypto.randomBytes(4 * RELEASE_CHUNK_BYTES);
    await store.saveFirmwareRelease({ ...info, sha256: '33'.repeat(32) }, bufferSource(again), { type: 'firmware.released', actor: 'test', subject: 'firmware:fw', data: { version: 1 } });
    expect(sha(await readReleaseBytes((await store.openFirmwareRelease('fw', 1))!))).toBe(sha(again));
    // the replaced release's chunks are gone; the dead writer's still only wait for their expiry
    const now = await admin.keys('{dca}:fw-rel-chunk:*');
    expect(now.filter((k) => kept.has(k))).toEqual([]);
    expect(now.filter((k) => !left.includes(k))).toHaveLength(4);
  } finally {
    await store.close();
    admin.disconnect();
    await server.stop();
  }
}, 120_000);
