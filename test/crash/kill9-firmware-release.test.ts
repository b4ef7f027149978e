import Database from 'better-sqlite3';
import { ChildProcess, spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { bufferSource } from '../../src/cms/byte-source';
import { temporaryPath } from '../../src/data-dir/atomic-file';
import { readReleaseBytes } from '../../src/store/release-chunks';
import { Redis } from 'ioredis';
import { RELEASE_PENDING_TTL_MS, RedisStore } from '../../src/store/redis/redis-store';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store';
import { RELEASE_CHUNK_BYTES } from '../../src/store/store';
import { hasRedisServer, startRedisServer } from '../helpers/redis-server';
import { openssl } from '../helpers/pki-client';
import { CLI_JS, REPO_ROOT, assertBuilt, cleanEnv, runCli } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * Crash safety of a large firmware release save (issue 13): a process running the BUILT store is killed
 * with SIGKILL while it writes a 48 MiB release's chunks (a re-release of version 1). Afterwards: the
 * release visible is still the first one, byte for byte, and no other; the store opens; the dead writer's
 * pending chunks are gone when docs/firmware.md says (SQLite: removed when the store is opened; Redis:
 * they expire, RELEASE_PENDING_TTL_MS); a new save works.
 *
 * And the files beside `firmware release --out` (the BUILT CLI): a release killed with SIGKILL while it
 * writes leaves its temporary file and `<out>.lock`, which the next release to that directory removes
 * (and never a running writer's file); a second release to the same --out while one runs is refused
 * naming it, and the file at --out is the one the store holds.
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

describe('firmware release (the CLI): the files beside --out', () => {
  let data: string;
  let pkg: (version: number) => string;
  const env = (): Record<string, string> => ({ DEVICE_CA_DATA: data, DEVICE_CA_LOG_LEVEL: 'warn' });
  const cliOk = async (args: string[], e: Record<string, string> = env()): Promise<string> => {
    const r = await runCli(args, e, { timeoutMs: 110_000 });
    if (r.code !== 0) throw new Error(`device-ca ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  };

  beforeAll(async () => {
    data = path.join(tmp.path, 'cli-data');
    await cliOk(['init']);
    const signers: { key: string; crt: string }[] = [];
    for (const role of ['manufacturer', 'developer', 'administrator']) {
      const key = path.join(tmp.path, `${role}.key`);
      const csr = path.join(tmp.path, `${role}.csr`);
      await openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key);
      await openssl('req', '-new', '-key', key, '-subj', `/CN=${role}-1`, '-out', csr);
      const crt = path.join(tmp.path, `${role}.crt`);
      fs.writeFileSync(crt, await cliOk(['signers', 'add', `${role}-1`, '--role', role, '--csr', csr]));
      signers.push({ key, crt });
    }
    // large enough that a release takes a while to write (the tests stop or kill it on the way)
    const image = path.join(tmp.path, 'image.bin');
    fs.writeFileSync(image, crypto.randomBytes(24 << 20));
    const made = new Map<number, string>();
    for (const version of [1, 2, 3]) {
      let p = path.join(tmp.path, `pkg-${version}-0.der`);
      await cliOk(['firmware', 'create', '--image', image, '--name', 'big', '--version', String(version), '--out', p], {});
      for (const [i, s] of signers.entries()) {
        const next = path.join(tmp.path, `pkg-${version}-${i + 1}.der`);
        await cliOk(['firmware', 'sign', '--in', p, '--cert', s.crt, '--key', s.key, '--out', next], {});
        p = next;
      }
      made.set(version, p);
    }
    pkg = (v) => made.get(v)!;
  }, 300_000);

  /** release: `device-ca firmware release` as a child process, with its pid, output and exit. */
  function release(version: number, out: string): { child: ChildProcess; exit: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> } {
    const child = spawn(process.execPath, [CLI_JS, 'firmware', 'release', '--in', pkg(version), '--out', out], { env: cleanEnv(env()), cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((res) =>
      child.on('exit', (code, signal) => res({ code, signal, stdout, stderr })),
    );
    return { child, exit };
  }

  /** until: polls (every 5 ms) until `cond` holds; fails naming `what` if the child ended first. */
  async function until(cond: () => boolean, what: string, ended: Promise<unknown>): Promise<void> {
    let done = false;
    void ended.then(() => (done = true));
    while (!cond()) {
      if (done) throw new Error(`the release ended before ${what}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** recorded: the SHA-256 of the release bytes the store holds. */
  async function recorded(version: number): Promise<string> {
    const store = new SqliteStore(path.join(data, 'device-ca.sqlite'));
    try {
      return sha(await readReleaseBytes((await store.openFirmwareRelease('big', version))!));
    } finally {
      await store.close();
    }
  }
  const shaFile = (f: string): string => sha(fs.readFileSync(f));
  /** storeWritable: whether SQLite's write lock is free now (no other process is inside a write transaction). */
  const storeWritable = (): boolean => {
    const db = new Database(path.join(data, 'device-ca.sqlite'), { timeout: 0 });
    try {
      db.exec('BEGIN IMMEDIATE');
      db.exec('ROLLBACK');
      return true;
    } catch {
      return false;
    } finally {
      db.close();
    }
  };

  it("kill -9 while it writes leaves a temporary file and <out>.lock; the next release there removes them, not a running writer's file", async () => {
    const dir = path.join(tmp.path, 'out-kill');
    fs.mkdirSync(dir);
    const out = path.join(dir, 'release.der');
    const a = release(1, out);
    const temporary = (): string[] => fs.readdirSync(dir).filter((n) => n.startsWith('release.der.tmp-'));
    await until(() => fs.existsSync(`${out}.lock`) && temporary().some((n) => fs.statSync(path.join(dir, n)).size > 0), 'its temporary file was written', a.exit);
    a.child.kill('SIGKILL');
    expect((await a.exit).signal).toBe('SIGKILL');
    const left = fs.readdirSync(dir).sort();
    expect(left).toEqual([...temporary(), 'release.der.lock'].sort());
    expect(left).not.toContain('release.der');
    // a running writer's temporary file in the same directory (this test process writes it)
    const running = path.basename(temporaryPath(path.join(dir, 'other.der')));
    fs.writeFileSync(path.join(dir, running), 'being written');

    const b = await release(1, out).exit;
    expect([b.code, b.stderr]).toEqual([0, '']);
    expect(b.stdout).toBe('released big version 1\n');
    expect(fs.readdirSync(dir).sort()).toEqual([running, 'release.der'].sort());
    expect(shaFile(out)).toBe(await recorded(1));
  }, 120_000);

  it('a second release to the same --out while one runs is refused naming it; the file at --out is the one the store holds', async () => {
    const dir = path.join(tmp.path, 'out-race');
    fs.mkdirSync(dir);
    const out = path.join(dir, 'release.der');
    const a = release(2, out);
    await until(() => fs.existsSync(`${out}.lock`), 'it locked --out', a.exit);
    // stopped (alive, holding <out>.lock) until SIGCONT: the second one meets it whatever the timing; stopped
    // outside a store transaction, so that the second one is not held up by SQLite's write lock instead
    for (let tries = 0; ; tries++) {
      a.child.kill('SIGSTOP');
      if (storeWritable()) break;
      a.child.kill('SIGCONT');
      if (tries > 500) throw new Error('the first release kept the store locked');
      await new Promise((r) => setTimeout(r, 2));
    }
    expect(fs.existsSync(`${out}.lock`)).toBe(true);
    try {
      const b = await release(2, out).exit;
      expect(b.code).not.toBe(0);
      expect(b.stderr).toContain(`a firmware release to ${out}: another writer (pid ${a.child.pid}`);
      expect(b.stderr).toContain(`${out}.lock`);
      expect(b.stderr).not.toMatch(/\n\s+at /); // a message, not a stack
    } finally {
      a.child.kill('SIGCONT');
    }
    const done = await a.exit;
    expect([done.code, done.stdout]).toEqual([0, 'released big version 2\n']);
    expect(fs.readdirSync(dir)).toEqual(['release.der']);
    expect(shaFile(out)).toBe(await recorded(2));
  }, 120_000);

  it('two releases of the same version to the same --out started together: one or both (one after the other) succeed, a refusal names the conflict, --out holds the recorded bytes', async () => {
    const dir = path.join(tmp.path, 'out-together');
    fs.mkdirSync(dir);
    const out = path.join(dir, 'release.der');
    const results = await Promise.all([release(3, out).exit, release(3, out).exit]);
    expect(results.filter((r) => r.code === 0).length).toBeGreaterThanOrEqual(1);
    for (const r of results.filter((r) => r.code !== 0)) expect(r.stderr).toMatch(/a firmware release to .*: another writer \(pid \d+/);
    expect(fs.readdirSync(dir)).toEqual(['release.der']);
    expect(shaFile(out)).toBe(await recorded(3));
  }, 120_000);

  it.each(['SIGINT', 'SIGTERM'] as const)(
    '%s while it writes: it ends by that signal and leaves neither <out>.lock nor its temporary file; the next release works',
    async (signal) => {
      // in a new container per command (docker run --rm) a lock left behind could not be judged, only removed by hand
      const dir = path.join(tmp.path, `out-${signal}`);
      fs.mkdirSync(dir);
      const out = path.join(dir, 'release.der');
      const a = release(3, out);
      const temporary = (): string[] => fs.readdirSync(dir).filter((n) => n.startsWith('release.der.tmp-'));
      await until(() => fs.existsSync(`${out}.lock`) && temporary().some((n) => fs.statSync(path.join(dir, n)).size > 0), 'its temporary file was written', a.exit);
      a.child.kill(signal);
      const ended = await a.exit;
      expect([ended.signal, ended.stdout]).toEqual([signal, '']);
      expect(fs.readdirSync(dir)).toEqual([]);

      const b = await release(3, out).exit;
      expect([b.code, b.stderr]).toEqual([0, '']);
      expect(fs.readdirSync(dir)).toEqual(['release.der']);
      expect(shaFile(out)).toBe(await recorded(3));
    },
    120_000,
  );
});
