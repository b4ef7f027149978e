import Database from 'better-sqlite3';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CheckpointFailure, WalCheckpointer } from '../../src/store/sqlite/wal-checkpointer';
import { RunningService, assertBuilt, runProcess, startService } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * A store on a full disk (issue 8 point 5): the data directory lives on a small tmpfs that the test fills
 * while the service runs, so SQLite meets the real ENOSPC (SQLITE_FULL), not a simulation. Writes must
 * answer 503 with Retry-After (the request was fine, the store was not), /healthz must say 503 with the
 * reason instead of 200, and both recover once space is freed. Needs root to mount a tmpfs; skipped
 * (with the reason printed) otherwise.
 */

const mountProbe = (): string | null => {
  if (process.getuid?.() !== 0) return 'not root';
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-mount-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir], { stdio: 'ignore' });
    execFileSync('umount', [dir], { stdio: 'ignore' });
    return null;
  } catch {
    return 'cannot mount a tmpfs';
  } finally {
    fs.rmdirSync(dir);
  }
};
const cannotMount = mountProbe();
if (cannotMount) process.stderr.write(`store-unavailable.test.ts: skipped (${cannotMount})\n`);
const describeIfMount = cannotMount ? describe.skip : describe;

let tmp: TmpDir;
let mnt: string;
let mounted = false;
let svc: RunningService;
let n = 0;

interface Reply {
  status: number;
  headers: string;
  body: string;
}

async function curl(url: string, args: string[] = []): Promise<Reply> {
  const i = ++n;
  const hdr = tmp.file(`http/${i}.head`);
  const out = tmp.file(`http/${i}.body`);
  const r = await runProcess('curl', ['-sS', '--cacert', svc.chainPem, '-D', hdr, '-o', out, ...args, url]);
  if (r.code !== 0) throw new Error(`curl ${url} failed (${r.code}): ${r.stderr}`);
  const headers = fs.readFileSync(hdr, 'latin1');
  return { status: Number(/^HTTP\/\S+ (\d{3})/.exec(headers)?.[1] ?? 0), headers, body: fs.existsSync(out) ? fs.readFileSync(out, 'latin1') : '' };
}

const retryAfter = (r: Reply): string | undefined => /\r\nRetry-After: (\d+)\r\n/i.exec(r.headers)?.[1];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** fill writes a file on the tmpfs until the kernel says ENOSPC, in smaller and smaller pieces, so no page is left. */
function fill(file: string): void {
  const fd = fs.openSync(file, 'w');
  try {
    for (const size of [1 << 20, 64 << 10, 4096, 512]) {
      const chunk = Buffer.alloc(size, 0x5a);
      for (;;) {
        try {
          fs.writeSync(fd, chunk);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw e;
        }
      }
    }
  } finally {
    fs.closeSync(fd);
  }
}

describeIfMount('the store on a full disk', () => {
  let enrollArgs: string[];

  beforeAll(async () => {
    assertBuilt();
    tmp = makeTmpDir('device-ca-full-');
    mnt = tmp.file('mnt');
    fs.mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24m,mode=0700', 'tmpfs', mnt]);
    mounted = true;
    svc = await startService({ dataDir: path.join(mnt, 'data') });
    const add = await svc.cli(['devices', 'add', 'full-1', '--owner', 'acme']);
    expect(add.code).toBe(0);
    const der = tmp.file('full-1.csr.der');
    const k = await runProcess('openssl', [
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      tmp.file('full-1.key'),
      '-subj',
      '/CN=full-1',
      '-outform',
      'DER',
      '-out',
      der,
    ]);
    expect(k.code).toBe(0);
    const body = tmp.write('full-1.b64', fs.readFileSync(der).toString('base64') + '\n');
    enrollArgs = ['-u', `full-1:${add.stdout.trim()}`, '-H', 'Content-Type: application/pkcs10', '--data-binary', `@${body}`];
    expect((await curl(`http://127.0.0.1:${svc.httpPort}/healthz`)).status).toBe(200);
  }, 60_000);

  afterAll(async () => {
    await svc?.stop();
    if (mounted) {
      try {
        execFileSync('umount', [mnt]);
      } catch {
        execFileSync('umount', ['-l', mnt]);
      }
    }
    tmp?.cleanup();
  });

  it('answers an enrollment with 503 + Retry-After and /healthz with 503 naming the reason; both recover when space is freed', async () => {
    const filler = path.join(mnt, 'filler');
    fill(filler);
    // /healthz reuses a probe result for one second, and the checkpointing thread reports on its own timer: ask
    // until the answer changes (bounded), then assert it
    const healthz = () => curl(`http://127.0.0.1:${svc.httpPort}/healthz`);
    const healthzOnce = async (want: (status: number) => boolean): Promise<Reply> => {
      let r = await healthz();
      for (const end = Date.now() + 10_000; !want(r.status) && Date.now() < end; r = await healthz()) await sleep(100);
      return r;
    };
    const h = await healthzOnce((status) => status !== 200);
    expect({ status: h.status, body: h.body, retryAfter: retryAfter(h) }).toEqual({ status: 503, body: 'unhealthy: store write failed (disk full)\n', retryAfter: '30' });

    const e = await curl(`${svc.est}/simpleenroll`, enrollArgs);
    expect(e.status).toBe(503);
    expect(retryAfter(e)).toBe('30');

    fs.rmSync(filler);
    const ok = await healthzOnce((status) => status === 200);
    expect({ status: ok.status, body: ok.body }).toEqual({ status: 200, body: 'ok\n' });
    // nothing of the failed enrollment was kept: the same secret enrolls now
    const again = await curl(`${svc.est}/simpleenroll`, enrollArgs);
    expect(again.status).toBe(200);
    const list = await svc.cli(['certs', 'list', '--device', 'full-1', '--json']);
    expect(JSON.parse(list.stdout)).toHaveLength(1);
  });
});

/** until polls cond every 20 ms for at most ms (no timing is asserted: only that it happens at all). */
async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  for (const end = Date.now() + ms; !cond();) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(20);
  }
}

describeIfMount('the checkpointing thread on a full disk', () => {
  let dir: TmpDir;
  let at: string;
  let on = false;
  beforeAll(() => {
    dir = makeTmpDir('device-ca-ckpt-full-');
    at = dir.file('mnt');
    fs.mkdirSync(at);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0700', 'tmpfs', at]);
    on = true;
  });
  afterAll(() => {
    if (on) execFileSync('umount', ['-l', at]);
    dir?.cleanup();
  });

  it("reports SQLite's SQLITE_FULL when the database file cannot take the WAL's pages, and null once a checkpoint succeeds again", async () => {
    const file = path.join(at, 'ck.sqlite');
    const db = new Database(file);
    const reports: (CheckpointFailure | null)[] = [];
    let ck: WalCheckpointer | undefined;
    try {
      db.pragma('journal_mode = WAL');
      db.pragma('wal_autocheckpoint = 0');
      db.exec('CREATE TABLE t (x BLOB)');
      const ins = db.prepare('INSERT INTO t VALUES (randomblob(3000))');
      for (let i = 0; i < 200; i++) ins.run(); // about 600 KB in the WAL, not yet in the database file
      fill(path.join(at, 'filler'));
      ck = new WalCheckpointer(file, (f) => reports.push(f), 20);
      await until(() => reports.length >= 1);
      expect(reports[0]).toMatchObject({ code: 'SQLITE_FULL' });
      fs.rmSync(path.join(at, 'filler'));
      await until(() => reports.length >= 2);
      expect(reports).toHaveLength(2);
      expect(reports[1]).toBeNull();
      // the rows made it into the database file
      expect(fs.statSync(file).size).toBeGreaterThan(200 * 3000);
    } finally {
      await ck?.close();
      db.close();
    }
  });
});
