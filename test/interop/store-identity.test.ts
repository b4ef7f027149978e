import Database from 'better-sqlite3';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RunningService, assertBuilt, runCli, runProcess, startService } from '../helpers/service-process';
import { freePorts } from '../helpers/ports';
import { TmpDir, makeTmpDir } from '../helpers/tmp';
import { writeLegacyDataDir } from '../fixtures/legacy-data-dir';

/**
 * The store must be the one the data directory's CA was using (issue 8 point 2): a store file that is
 * zero-length, deleted, restored from an older copy, or another deployment's makes `serve` and the CLI
 * refuse with exit code 3 and a message saying so, instead of serving an empty or stale CA (revocations
 * gone, CRL numbers going back, a new CA beside the old keys). A rollback is served only with
 * `serve --accept-store-rollback`, which is audited.
 */

let tmp: TmpDir;
const started: RunningService[] = [];
const STORE = 'device-ca.sqlite';

async function start(opts: Parameters<typeof startService>[0] = {}): Promise<RunningService> {
  const s = await startService(opts);
  started.push(s);
  return s;
}

/** serveOnce runs `device-ca serve` expecting it to refuse: it must exit on its own within the timeout. */
async function serveOnce(dataDir: string, args: string[] = []) {
  const [https, http] = await freePorts(2);
  return runCli(
    ['serve', ...args],
    { DEVICE_CA_DATA: dataDir, DEVICE_CA_HTTPS_PORT: String(https), DEVICE_CA_HTTP_PORT: String(http), DEVICE_CA_WORKERS: '1', DEVICE_CA_LOG_LEVEL: 'warn' },
    { timeoutMs: 20_000 },
  );
}

/** copyDataDir: a copy of a stopped service's data directory (the store has no WAL after a clean stop). */
function copyDataDir(from: string, name: string): string {
  const to = tmp.file(name);
  fs.cpSync(from, to, { recursive: true });
  return to;
}

function removeStore(dataDir: string): void {
  for (const f of [STORE, `${STORE}-wal`, `${STORE}-shm`]) fs.rmSync(path.join(dataDir, f), { force: true });
}

/** dirHashes: name -> sha256 of every file under dir (what a refused start must leave alone) */
function dirHashes(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of fs.readdirSync(dir, { recursive: true }) as string[]) {
    const p = path.join(dir, f);
    if (fs.statSync(p).isFile()) out[f] = crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex');
  }
  return out;
}

const identity = (dataDir: string) =>
  JSON.parse(fs.readFileSync(path.join(dataDir, 'ca-identity.json'), 'utf8')) as { issuing: { keyId: string }; mark: { auditSeq: number; crlNumber: string; recordedAt: string } };

/** auditTypes: the audit record types in a stopped service's store, read directly from the file */
function auditTypes(dataDir: string): string[] {
  const db = new Database(path.join(dataDir, STORE), { readonly: true });
  try {
    return (db.prepare('SELECT type FROM audit ORDER BY seq').all() as { type: string }[]).map((r) => r.type);
  } finally {
    db.close();
  }
}

/** the issuing CA's key id, from the exported certificate (what a user would compare) */
async function issuingKeyId(dataDir: string): Promise<string> {
  const r = await runProcess('openssl', ['x509', '-in', path.join(dataDir, 'ca', 'device-ca-issuing.pem'), '-noout', '-ext', 'subjectKeyIdentifier']);
  return r.stdout.split('\n')[1].trim().replace(/:/g, '').toLowerCase();
}

let dataDir: string;
let early: string;

beforeAll(async () => {
  assertBuilt();
  tmp = makeTmpDir('device-ca-identity-');
  dataDir = tmp.file('data');
  // first life: the CA is created; keep a copy of the store as it was then (an "older backup")
  const first = await start({ dataDir });
  expect((await first.cli(['devices', 'add', 'early-1'])).code).toBe(0);
  expect(await first.stop()).toBe(0);
  early = tmp.file('early.sqlite');
  fs.copyFileSync(path.join(dataDir, STORE), early);
  // second life: more history (a device, a token, a retirement); the mark moves with it at shutdown
  const second = await start({ dataDir });
  expect((await second.cli(['devices', 'add', 'late-1', '--owner', 'acme'])).code).toBe(0);
  expect((await second.cli(['tokens', 'create', '--scope', 'operator'])).code).toBe(0);
  expect((await second.cli(['devices', 'retire', 'late-1'])).code).toBe(0);
  expect(await second.stop()).toBe(0);
}, 120_000);

afterAll(async () => {
  await Promise.all(started.map((s) => s.stop()));
  tmp?.cleanup();
});

describe('a fresh data directory', () => {
  it('starts, and records the CA and the store mark in <data>/ca-identity.json (0600) naming the issuing key id', async () => {
    const id = identity(dataDir);
    expect(fs.statSync(path.join(dataDir, 'ca-identity.json')).mode & 0o777).toBe(0o600);
    expect(id.issuing.keyId).toBe(await issuingKeyId(dataDir));
    // the mark is the store's own audit head at the last stop
    const db = new Database(path.join(dataDir, STORE), { readonly: true });
    const head = db.prepare('SELECT seq FROM audit ORDER BY seq DESC LIMIT 1').get() as { seq: number };
    db.close();
    expect(id.mark.auditSeq).toBe(head.seq);
  });
});

describe('a running service', () => {
  it('moves the mark when it publishes CRLs, not only at start and stop', async () => {
    const d = tmp.file('running-data');
    const svc = await start({ dataDir: d, env: { DEVICE_CA_CRL_SHARDS: '4' } });
    // the start recorded the mark before any CRL existed; the lease holder then publishes one per shard
    const deadline = Date.now() + 15_000;
    while (identity(d).mark.crlNumber !== '4' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    const running = identity(d).mark;
    expect(await svc.stop()).toBe(0);
    expect(running.crlNumber).toBe('4');
  });
});

describe('a store that does not hold the CA the data directory shows', () => {
  it.each([
    ['zero-length', (d: string) => (removeStore(d), fs.writeFileSync(path.join(d, STORE), ''))],
    ['deleted', (d: string) => removeStore(d)],
  ])('%s store file: serve and the CLI refuse with exit 3, and no new CA is made', async (name, damage) => {
    const d = copyDataDir(dataDir, `${name}-data`);
    damage(d);
    const before = dirHashes(path.join(d, 'ca'));
    const keysBefore = fs.readdirSync(path.join(d, 'keys')).sort();
    const r = await serveOnce(d);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(`the store ${path.join(d, STORE)} holds no CA, but the data directory ${d} belongs to CA device-ca-issuing`);
    expect(r.stderr).toContain('missing, empty or not this CA');
    expect(dirHashes(path.join(d, 'ca'))).toEqual(before);
    expect(fs.readdirSync(path.join(d, 'keys')).sort()).toEqual(keysBefore);
    // nor do `audit verify` (which would call an empty log intact), `init` and `devices list`
    for (const args of [['audit', 'verify'], ['init'], ['devices', 'list']]) {
      const c = await runCli(args, { DEVICE_CA_DATA: d });
      expect({ args, code: c.code, stdout: c.stdout }).toEqual({ args, code: 3, stdout: '' });
      expect(c.stderr).toContain('holds no CA');
    }
    // --accept-store-rollback does not make an empty store acceptable
    const forced = await serveOnce(d, ['--accept-store-rollback']);
    expect(forced.code).toBe(3);
    expect(forced.stderr).toContain('holds no CA');
  });

  it('without the identity file, the CA exports and key files still show the CA exists', async () => {
    const d = copyDataDir(dataDir, 'no-identity-data');
    removeStore(d);
    fs.rmSync(path.join(d, 'ca-identity.json'));
    const r = await serveOnce(d);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(
      `the store ${path.join(d, STORE)} holds no CA, but the data directory ${d} shows one exists (${path.join(d, 'ca', 'chain.pem')}, ${path.join(d, 'ca', 'device-ca-issuing.crt')}`,
    );
    // with the exports gone too, the CA key files are enough
    fs.rmSync(path.join(d, 'ca'), { recursive: true });
    const k = await serveOnce(d);
    expect(k.code).toBe(3);
    expect(k.stderr).toMatch(new RegExp(`shows one exists \\(${path.join(d, 'keys')}/device-ca-issuing-[0-9a-f-]+\\.key\\.pem`));
    expect(fs.existsSync(path.join(d, 'ca'))).toBe(false);
  });

  it("another deployment's store: refused with exit 3 naming both key ids, even with --accept-store-rollback", async () => {
    const third = await start({ dataDir: tmp.file('other-data') });
    expect(await third.stop()).toBe(0);
    const d = copyDataDir(dataDir, 'foreign-data');
    removeStore(d);
    fs.copyFileSync(path.join(third.dataDir, STORE), path.join(d, STORE));
    for (const args of [[], ['--accept-store-rollback']]) {
      const r = await serveOnce(d, args);
      expect(r.code).toBe(3);
      expect(r.stderr).toContain(
        `holds a different CA (device-ca-issuing, issuing key id ${await issuingKeyId(third.dataDir)}) than the data directory ${d} (device-ca-issuing, issuing key id ${await issuingKeyId(d)}`,
      );
    }
  });
});

describe('a store restored from an older copy (rollback)', () => {
  let d: string;
  let recorded: ReturnType<typeof identity>;
  let earlyHead: number;

  beforeAll(() => {
    d = copyDataDir(dataDir, 'rollback-data');
    recorded = identity(d);
    removeStore(d);
    fs.copyFileSync(early, path.join(d, STORE));
    const db = new Database(early, { readonly: true });
    earlyHead = (db.prepare('SELECT seq FROM audit ORDER BY seq DESC LIMIT 1').get() as { seq: number }).seq;
    db.close();
    expect(earlyHead).toBeLessThan(recorded.mark.auditSeq);
  });

  it('serve and the CLI refuse with exit 3: "store rolled back: audit head N < M recorded at T"', async () => {
    const msg = `store rolled back: audit head ${earlyHead} < ${recorded.mark.auditSeq} recorded at ${recorded.mark.recordedAt}`;
    const r = await serveOnce(d);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(msg);
    expect(r.stderr).toContain('--accept-store-rollback');
    const v = await runCli(['audit', 'verify'], { DEVICE_CA_DATA: d });
    expect(v.code).toBe(3);
    expect(v.stderr).toContain(msg);
    // the refused start changed neither the store's history nor the mark
    expect(auditTypes(d)).not.toContain('store.rollback-accepted');
    expect(identity(d)).toEqual(recorded);
  });

  it('serve --accept-store-rollback serves it, audits store.rollback-accepted and re-records the mark; the next start needs no flag', async () => {
    const svc = await start({ dataDir: d, args: ['--accept-store-rollback'] });
    expect((await svc.cli(['audit', 'verify'])).code).toBe(0);
    expect(await svc.stop()).toBe(0);
    const types = auditTypes(d);
    expect(types.filter((t) => t === 'store.rollback-accepted')).toHaveLength(1);
    expect(types.indexOf('store.rollback-accepted')).toBe(earlyHead); // seq earlyHead + 1: right after the restored head
    const now = identity(d);
    expect(now.mark.auditSeq).toBeGreaterThan(earlyHead);
    expect(now.mark.recordedAt > recorded.mark.recordedAt).toBe(true);
    const again = await start({ dataDir: d });
    expect(await again.stop()).toBe(0);
  });

  it('an older copy that was written to since (same length, other history) is refused too', async () => {
    const d2 = copyDataDir(dataDir, 'diverged-data');
    const rec = identity(d2);
    removeStore(d2);
    fs.copyFileSync(early, path.join(d2, STORE));
    // write records into the old copy until its audit head reaches the mark's seq with other content
    const db = new Database(path.join(d2, STORE));
    const last = db.prepare('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1').get() as { seq: number; hash: string };
    const ins = db.prepare('INSERT INTO audit (seq, at, type, actor, subject, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
    for (let s = last.seq + 1; s <= rec.mark.auditSeq + 2; s++) ins.run(s, Date.now(), 'device.created', 'cli:other', `x${s}`, '{}', '0', crypto.randomBytes(32).toString('hex'));
    db.close();
    const r = await serveOnce(d2);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(`store rolled back: audit record ${rec.mark.auditSeq} is not the one recorded at ${rec.mark.recordedAt}`);
  });
});

describe('an old-layout data directory (ca/state.json, no identity file)', () => {
  it('is still imported on first start and then protected: its store deleted afterwards is refused', async () => {
    const d = tmp.file('legacy-data');
    await writeLegacyDataDir(d, tmp.file('legacy-scratch.sqlite'));
    expect(fs.existsSync(path.join(d, 'ca-identity.json'))).toBe(false);
    const svc = await start({ dataDir: d });
    expect(await svc.stop()).toBe(0);
    expect(identity(d).issuing.keyId).toBe(await issuingKeyId(d));
    removeStore(d);
    const r = await serveOnce(d);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('holds no CA');
  });
});
