import Database from 'better-sqlite3';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ProcessResult, RunningService, assertBuilt, runCli, runProcess, startService } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * `device-ca audit verify` as an auditor uses it: after real activity (registrations, EST enrollments,
 * suspend/resume, transfer, revocation, tokens) the chain verifies; then, with the service stopped, someone
 * with write access to the SQLite file edits a record, deletes one, swaps two or rewrites one record's hash,
 * each on its own copy of the file, and `audit verify` exits 1 naming the first broken record.
 */

let svc: RunningService;
let tmp: TmpDir;
let dataDir: string;
let original: string;
let seq = 0;

async function must(file: string, args: string[], input?: string | Buffer): Promise<ProcessResult> {
  const r = await runProcess(file, args, { input });
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} exited ${r.code}:\n${r.stderr}${r.stdout}`);
  return r;
}

async function cliOk(...args: string[]): Promise<string> {
  const r = await svc.cli(args);
  if (r.code !== 0) throw new Error(`device-ca ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** enroll: the README recipe (openssl req, curl simpleenroll with the one-time secret) */
async function enroll(id: string, secret: string): Promise<void> {
  const key = tmp.file(`keys/${id}.key`);
  const der = tmp.file(`csr/${id}.der`);
  await must('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-subj', `/CN=${id}`, '-outform', 'DER', '-out', der]);
  const b64 = tmp.write(`csr/${id}.b64`, (await must('base64', [der])).stdout);
  const out = tmp.file(`certs/${id}.p7`);
  const r = await must('curl', [
    '-sS',
    '-o',
    out,
    '-w',
    '%{http_code}',
    '--cacert',
    svc.chainPem,
    '-u',
    `${id}:${secret}`,
    '-H',
    'Content-Type: application/pkcs10',
    '--data-binary',
    `@${b64}`,
    `${svc.est}/simpleenroll`,
  ]);
  expect(r.stdout).toBe('200');
}

interface Verdict {
  code: number | null;
  stdout: string;
  json: { ok: boolean; records: number; firstBad?: { seq: number; problem: string }; lastHash: string };
}

/** verify: `device-ca audit verify` (text) and `--json` against a data directory */
async function verify(dir: string): Promise<Verdict> {
  const [text, json] = await Promise.all([runCli(['audit', 'verify'], { DEVICE_CA_DATA: dir }), runCli(['audit', 'verify', '--json'], { DEVICE_CA_DATA: dir })]);
  expect(json.code).toBe(text.code);
  return { code: text.code, stdout: text.stdout, json: JSON.parse(json.stdout) };
}

/** tampered: a fresh copy of the stopped service's store, changed by f with better-sqlite3 */
function tampered(f: (db: Database.Database) => void): string {
  const dir = tmp.file(`copies/${++seq}/x`).replace(/\/x$/, '');
  fs.copyFileSync(original, path.join(dir, 'device-ca.sqlite'));
  const db = new Database(path.join(dir, 'device-ca.sqlite'));
  try {
    f(db);
  } finally {
    db.close();
  }
  return dir;
}

interface Row {
  seq: number;
  at: number;
  type: string;
  actor: string;
  subject: string;
  data: string;
  prev_hash: string;
  hash: string;
}
const rows = (): Row[] => {
  const db = new Database(original, { readonly: true });
  try {
    return db.prepare('SELECT * FROM audit ORDER BY seq').all() as Row[];
  } finally {
    db.close();
  }
};

let intact: Verdict;
let all: Row[];
/** a record in the middle of the chain: the registration of dev-b */
let middle: Row;
let stopped: Promise<void> | undefined;

/** stopService: stop the service (exit 0), then read the chain as it is on disk and verify it once */
function stopService(): Promise<void> {
  stopped ??= (async () => {
    expect(await svc.stop()).toBe(0);
    original = path.join(dataDir, 'device-ca.sqlite');
    all = rows();
    middle = all.find((r) => r.type === 'device.registered' && r.subject === 'dev-b')!;
    intact = await verify(dataDir);
  })();
  return stopped;
}

beforeAll(async () => {
  assertBuilt();
  tmp = makeTmpDir('device-ca-audit-');
  dataDir = tmp.file('data');
  svc = await startService({ dataDir });
  const a = (await cliOk('devices', 'add', 'dev-a', '--owner', 'acme')).trim();
  const b = (await cliOk('devices', 'add', 'dev-b', '--owner', 'acme')).trim();
  await Promise.all([enroll('dev-a', a), enroll('dev-b', b)]);
  await cliOk('devices', 'suspend', 'dev-a');
  await cliOk('devices', 'resume', 'dev-a');
  await cliOk('devices', 'transfer', 'dev-b', '--to', 'globex');
  const serial = JSON.parse(await cliOk('certs', 'list', '--device', 'dev-a', '--json'))[0].serial as string;
  await cliOk('revoke', serial, '--reason', 'keyCompromise');
  await cliOk('tokens', 'create', '--scope', 'operator');
  // the revocations are published on the CRL within crl.checkInterval (2 s), each audited: let the log
  // settle before the tests compare two reads of it
  const records = async (): Promise<number> => (JSON.parse((await runCli(['audit', 'verify', '--json'], { DEVICE_CA_DATA: dataDir })).stdout) as { records: number }).records;
  for (let before = await records(), end = Date.now() + 30_000; ;) {
    await new Promise((r) => setTimeout(r, 3000));
    const now = await records();
    if (now === before || Date.now() > end) break;
    before = now;
  }
}, 90_000);

afterAll(async () => {
  await svc?.stop();
  tmp?.cleanup();
});

describe('an untouched audit log', () => {
  it('verifies while the service runs: exit 0, "audit log intact: N records"', async () => {
    const v = await verify(dataDir);
    expect(v.code).toBe(0);
    expect(v.json.ok).toBe(true);
    expect(v.stdout).toBe(`audit log intact: ${v.json.records} records, last hash ${v.json.lastHash}\n`);
    expect(v.json.lastHash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('holds every change that was made, in order, and verifies after the service stopped', async () => {
    await stopService();
    const mine = all
      .filter((r) => r.type !== 'crl.published' && r.subject !== 'tls-server' && r.subject !== 'ocsp-responder')
      .map((r) => `${r.type} ${r.subject.startsWith('dev-') ? r.subject : ''}`.trim());
    expect(mine).toEqual(
      expect.arrayContaining([
        'device.registered dev-a',
        'device.registered dev-b',
        'certificate.issued dev-a',
        'certificate.issued dev-b',
        'device.suspended dev-a',
        'device.resumed dev-a',
        'device.transferred dev-b',
        'certificate.revoked',
        'token.created',
      ]),
    );
    expect(all.map((r) => r.seq)).toEqual(all.map((_r, i) => i + 1));
    expect(middle.seq).toBeGreaterThan(1);
    expect(middle.seq).toBeLessThan(all.length);
    expect(intact.code).toBe(0);
    expect(intact.json).toMatchObject({ ok: true, records: all.length });
  });
});

describe('a tampered audit log (each change on its own copy of the store)', () => {
  beforeAll(() => stopService());

  const broken = (v: Verdict, seqNo: number, problem: RegExp) => {
    expect(v.code).toBe(1);
    expect(v.stdout).toMatch(new RegExp(`^audit log BROKEN at record ${seqNo}: `));
    expect(v.json.ok).toBe(false);
    expect(v.json.firstBad!.seq).toBe(seqNo);
    expect(v.json.firstBad!.problem).toMatch(problem);
  };

  it("editing a record's data: exit 1 naming that record (content does not match its hash)", async () => {
    const dir = tampered((db) => db.prepare('UPDATE audit SET data = ? WHERE seq = ?').run(JSON.stringify({ ...JSON.parse(middle.data), owner: 'mallory' }), middle.seq));
    broken(await verify(dir), middle.seq, /edited/);
  });

  it('editing only the actor or the time of a record: exit 1 naming it', async () => {
    broken(await verify(tampered((db) => db.prepare("UPDATE audit SET actor = 'cli:nobody' WHERE seq = ?").run(middle.seq))), middle.seq, /edited/);
    broken(await verify(tampered((db) => db.prepare('UPDATE audit SET at = at - 86400000 WHERE seq = ?').run(middle.seq))), middle.seq, /edited/);
  });

  it('deleting a record in the middle: exit 1 at the gap', async () => {
    const dir = tampered((db) => db.prepare('DELETE FROM audit WHERE seq = ?').run(middle.seq));
    broken(await verify(dir), middle.seq + 1, /removed or reordered/);
  });

  it('deleting a record and renumbering the rest to hide the gap: exit 1 (its successor no longer chains)', async () => {
    const dir = tampered((db) => {
      db.prepare('DELETE FROM audit WHERE seq = ?').run(middle.seq);
      db.prepare('UPDATE audit SET seq = -(seq - 1) WHERE seq > ?').run(middle.seq);
      db.prepare('UPDATE audit SET seq = -seq WHERE seq < 0').run();
    });
    broken(await verify(dir), middle.seq, /prevHash/);
  });

  it("swapping two records' contents (reordering): exit 1 at the first of them", async () => {
    const other = all[middle.seq]; // the record after the middle one
    const dir = tampered((db) => {
      const put = db.prepare('UPDATE audit SET at = ?, type = ?, actor = ?, subject = ?, data = ?, prev_hash = ?, hash = ? WHERE seq = ?');
      put.run(other.at, other.type, other.actor, other.subject, other.data, other.prev_hash, other.hash, middle.seq);
      put.run(middle.at, middle.type, middle.actor, middle.subject, middle.data, middle.prev_hash, middle.hash, other.seq);
    });
    broken(await verify(dir), middle.seq, /prevHash|edited|reordered/);
  });

  it('rewriting a record together with its own hash: exit 1 at the next record, whose prevHash no longer matches', async () => {
    const dir = tampered((db) => {
      const forged = { ...JSON.parse(middle.data), owner: 'mallory' };
      // the hash as audit-chain computes it, so this record alone looks consistent
      const body = JSON.stringify([middle.seq, new Date(middle.at).toISOString(), middle.type, middle.actor, middle.subject, sortKeys(forged)]);
      const hash = crypto.createHash('sha256').update(middle.prev_hash).update(body).digest('hex');
      db.prepare('UPDATE audit SET data = ?, hash = ? WHERE seq = ?').run(JSON.stringify(forged), hash, middle.seq);
    });
    broken(await verify(dir), middle.seq + 1, /prevHash/);
  });

  it('rewriting a record and re-chaining every later one verifies (a plain hash chain), but the last hash differs from the one kept', async () => {
    // what an anchor kept outside the store (the last hash printed by an earlier verify) is for
    const dir = tampered((db) => {
      const later = db.prepare('SELECT * FROM audit WHERE seq >= ? ORDER BY seq').all(middle.seq) as Row[];
      const put = db.prepare('UPDATE audit SET data = ?, prev_hash = ?, hash = ? WHERE seq = ?');
      let prev = middle.prev_hash;
      for (const r of later) {
        const data = r.seq === middle.seq ? { ...JSON.parse(r.data), owner: 'mallory' } : JSON.parse(r.data);
        const body = JSON.stringify([r.seq, new Date(r.at).toISOString(), r.type, r.actor, r.subject, sortKeys(data)]);
        const hash = crypto.createHash('sha256').update(prev).update(body).digest('hex');
        put.run(JSON.stringify(data), prev, hash, r.seq);
        prev = hash;
      }
    });
    const v = await verify(dir);
    expect(v.code).toBe(0);
    expect(v.json.records).toBe(intact.json.records);
    expect(v.json.lastHash).not.toBe(intact.json.lastHash);
  });

  it('cutting records off the end verifies, but with a different last hash than the one kept', async () => {
    const dir = tampered((db) => db.prepare('DELETE FROM audit WHERE seq >= ?').run(all.length - 1));
    const v = await verify(dir);
    expect(v.code).toBe(0);
    expect(v.json.records).toBe(all.length - 2);
    expect(v.json.lastHash).not.toBe(intact.json.lastHash);
  });

  it('the untouched original still verifies with the same last hash', async () => {
    const v = await verify(dataDir);
    expect(v.code).toBe(0);
    expect(v.json.lastHash).toBe(intact.json.lastHash);
  });
});

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object')
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, sortKeys((v as Record<string, unknown>)[k])]),
    );
  return v;
}
