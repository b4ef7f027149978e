import { spawnSync } from 'node:child_process';
import realFs from 'node:fs';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { removeDeadWritersTemporaries, temporaryPath, writeFileAtomic, writeFileAtomicAsync } from '../../../src/data-dir/atomic-file';
import { writeCrlFile } from '../../../src/ca/crl-encoder';
import { enrollmentSecretKey } from '../../../src/keys/enrollment-secret-key';
import { SoftwareKeyBackend } from '../../../src/keys/software-key-backend';

/**
 * A renamed (or linked, or created) file is durable only once its directory is fsynced: these tests
 * watch the real fs calls (spies on the node:fs module every source file uses) and check that after the
 * rename the directory itself was opened and fsynced. And the clean-up of temporary files left by a
 * writer that is gone (kill -9): only those of this naming, this host's pid table, and a writer that is
 * provably not running.
 */

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-durable-'));
});
afterEach(() => {
  jest.restoreAllMocks();
  fs.rmSync(dir, { recursive: true, force: true });
});

type Event = { op: 'open'; path: string; fd: number } | { op: 'fsync'; fd: number } | { op: 'rename' | 'link'; to: string };

/** journal: records openSync, fsyncSync, renameSync and linkSync as they happen (and still does them). */
function journal(): Event[] {
  const events: Event[] = [];
  const open = realFs.openSync;
  const fsync = realFs.fsyncSync;
  const rename = realFs.renameSync;
  const link = realFs.linkSync;
  jest.spyOn(realFs, 'openSync').mockImplementation((p: fs.PathLike, ...rest: unknown[]) => {
    const fd = (open as (...a: unknown[]) => number)(p, ...rest);
    events.push({ op: 'open', path: path.resolve(String(p)), fd });
    return fd;
  });
  jest.spyOn(realFs, 'fsyncSync').mockImplementation((fd: number) => {
    events.push({ op: 'fsync', fd });
    fsync(fd);
  });
  jest.spyOn(realFs, 'renameSync').mockImplementation((from: fs.PathLike, to: fs.PathLike) => {
    rename(from, to);
    events.push({ op: 'rename', to: path.resolve(String(to)) });
  });
  jest.spyOn(realFs, 'linkSync').mockImplementation((from: fs.PathLike, to: fs.PathLike) => {
    link(from, to);
    events.push({ op: 'link', to: path.resolve(String(to)) });
  });
  return events;
}

/** directorySyncedAfter: whether, after `file` got its name (rename or link), its directory was opened and fsynced. */
function directorySyncedAfter(events: Event[], file: string, how: 'rename' | 'link' | 'created' = 'rename'): boolean {
  const abs = path.resolve(file);
  const named = events.findIndex((e) => (how === 'created' ? e.op === 'open' && e.path === abs : e.op === how && e.to === abs));
  if (named < 0) return false;
  const opened = events.slice(named).filter((e): e is Extract<Event, { op: 'open' }> => e.op === 'open' && e.path === path.dirname(abs));
  return opened.some((o) => events.slice(events.indexOf(o)).some((e) => e.op === 'fsync' && e.fd === o.fd));
}

describe('the directory is fsynced after a file gets its name', () => {
  it('writeFileAtomic', () => {
    const events = journal();
    const f = path.join(dir, 'chain.pem');
    writeFileAtomic(f, 'x');
    expect(fs.readFileSync(f, 'utf8')).toBe('x');
    expect(directorySyncedAfter(events, f)).toBe(true);
  });

  it('writeFileAtomicAsync (a firmware release: written, recorded, then renamed over --out)', async () => {
    const events = journal();
    const f = path.join(dir, 'release.der');
    await writeFileAtomicAsync(f, async (fd) => fs.writeSync(fd, 'release'));
    expect(fs.readFileSync(f, 'utf8')).toBe('release');
    expect(directorySyncedAfter(events, f)).toBe(true);
  });

  it('the enrollment secret key file (linked into place)', () => {
    const events = journal();
    const keys = path.join(dir, 'keys');
    expect(enrollmentSecretKey(keys)).toHaveLength(32);
    expect(directorySyncedAfter(events, path.join(keys, 'enrollment-secret.key'), 'link')).toBe(true);
  });

  it('a software key file the CA records next', async () => {
    const events = journal();
    const keys = path.join(dir, 'keys');
    const key = await new SoftwareKeyBackend(keys).generate('issuing', 'ecdsa-p256', 'issuing');
    expect(key.ref).toBe(path.join(keys, 'issuing.key.pem'));
    expect(directorySyncedAfter(events, key.ref, 'created')).toBe(true);
  });

  it('a CRL file (written asynchronously): fsynced, renamed, then its directory fsynced', async () => {
    const synced: string[] = [];
    const order: string[] = [];
    const open = realFs.promises.open;
    const rename = realFs.promises.rename;
    jest.spyOn(realFs.promises, 'open').mockImplementation(async (p: fs.PathLike, ...rest: unknown[]) => {
      const fh = await (open as (...a: unknown[]) => Promise<fs.promises.FileHandle>)(p, ...rest);
      const sync = fh.sync.bind(fh);
      fh.sync = async () => {
        await sync();
        synced.push(path.resolve(String(p)));
        order.push(`sync ${path.basename(String(p)).replace(/\.tmp-.*/, '.tmp')}`);
      };
      return fh;
    });
    jest.spyOn(realFs.promises, 'rename').mockImplementation(async (from: fs.PathLike, to: fs.PathLike) => {
      await rename(from, to);
      order.push(`rename ${path.basename(String(to))}`);
    });
    const f = path.join(dir, 'issuing.crl');
    await writeCrlFile(f, Buffer.from([0x30, 0x00]));
    expect([...fs.readFileSync(f)]).toEqual([0x30, 0x00]);
    expect(order).toEqual(['sync issuing.crl.tmp', 'rename issuing.crl', `sync ${path.basename(dir)}`]);
    expect(synced[synced.length - 1]).toBe(dir);
  });
});

/** beforeThisBoot: sets a file's times to a day before this machine booted (/proc/stat btime), as a file of an earlier boot has. */
function beforeThisBoot(file: string): void {
  const btime = Number(/^btime (\d+)$/m.exec(fs.readFileSync('/proc/stat', 'latin1'))![1]);
  fs.utimesSync(file, btime - 86400, btime - 86400);
}

/** deadPid: the pid of a process that ran and has exited (and was reaped). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

describe('removeDeadWritersTemporaries', () => {
  it("removes the temporary files of writers that are gone, and keeps a running writer's, another table's, another naming's and other files", () => {
    const mine = path.basename(temporaryPath(path.join(dir, 'r.der')));
    const m = /^r\.der\.tmp-([0-9a-f]{12})-([0-9a-f]{8})-(\d+)-[0-9a-f]{8}$/.exec(mine);
    expect(m).not.toBeNull(); // Linux: the table and boot are known
    const [, table, boot] = m!;
    const otherBoot = boot === '00000000' ? '11111111' : '00000000';
    const names = {
      dead: `a.der.tmp-${table}-${boot}-${deadPid()}-0000aaaa`,
      earlierBoot: `b.der.tmp-${table}-${otherBoot}-${process.ppid}-0000bbbb`,
      thisPidNotWriting: `c.der.tmp-${table}-${boot}-${process.pid}-0000cccc`,
      running: `d.der.tmp-${table}-${boot}-${process.ppid}-0000dddd`,
      otherTable: `e.der.tmp-${table === '000000000000' ? '111111111111' : '000000000000'}-${boot}-${deadPid()}-0000eeee`,
      oldNaming: `f.der.tmp-${deadPid()}-0000ffff`,
      release: 'f.der',
    };
    for (const n of Object.values(names)) fs.writeFileSync(path.join(dir, n), 'x');
    beforeThisBoot(path.join(dir, names.earlierBoot)); // an earlier boot's file was last written before this boot began
    expect(removeDeadWritersTemporaries(dir).sort()).toEqual([names.dead, names.earlierBoot, names.thisPidNotWriting].sort());
    expect(fs.readdirSync(dir).sort()).toEqual([names.running, names.otherTable, names.oldNaming, names.release].sort());
  });

  it("a write removes a dead writer's temporary file beside it, and never the one another write of this process has open", async () => {
    const mine = /\.tmp-([0-9a-f]{12})-([0-9a-f]{8})-/.exec(temporaryPath(path.join(dir, 'x')))!;
    const dead = `release.der.tmp-${mine[1]}-${mine[2]}-${deadPid()}-12345678`;
    fs.writeFileSync(path.join(dir, dead), 'half a release');
    const f = path.join(dir, 'release.der');
    await writeFileAtomicAsync(f, async (fd) => {
      fs.writeSync(fd, 'one');
      // a second write into the same directory while the first is open: the first's temporary file stays
      writeFileAtomic(path.join(dir, 'other.der'), 'two');
      expect(fs.readdirSync(dir).filter((n) => n.startsWith('release.der.tmp-'))).toHaveLength(1);
      return 0;
    });
    expect(fs.readdirSync(dir).sort()).toEqual(['other.der', 'release.der']);
    expect(fs.readFileSync(f, 'utf8')).toBe('one');
  });

  it("keeps the temporary file of another boot written since this boot began: another machine's live writer (same host name and pid namespace, a shared volume)", () => {
    // two hosts named alike in the initial pid namespace (its inode is the same on every Linux host) have one table tag;
    // only their boot ids differ, and a boot id unlike ours does not say that boot is over
    const mine = /\.tmp-([0-9a-f]{12})-([0-9a-f]{8})-/.exec(temporaryPath(path.join(dir, 'x')))!;
    const otherBoot = mine[2] === '00000000' ? '11111111' : '00000000';
    const live = `release.der.tmp-${mine[1]}-${otherBoot}-${deadPid()}-0000aaaa`;
    fs.writeFileSync(path.join(dir, live), 'half a release, still being written');
    writeFileAtomic(path.join(dir, 'other.der'), 'two');
    expect(fs.readdirSync(dir).sort()).toEqual(['other.der', live].sort());
    beforeThisBoot(path.join(dir, live)); // once it predates this boot, its writer's boot is over
    expect(removeDeadWritersTemporaries(dir)).toEqual([live]);
  });

  it('never removes the temporary file of a CRL this process is writing (writeCrlFile awaits between its pieces)', async () => {
    const f = path.join(dir, 'issuing.crl');
    const der = Buffer.concat([Buffer.from([0x30, 0x83, 0x10, 0x00, 0x00]), Buffer.alloc(0x100000, 0x41)]);
    const writing = writeCrlFile(f, der, 'pem');
    // wait until its temporary file exists (it is renamed only at the end), then write another file of the directory
    while (!fs.readdirSync(dir).some((n) => n.startsWith('issuing.crl.tmp-'))) await new Promise((r) => setImmediate(r));
    writeFileAtomic(path.join(dir, 'issuing.crt'), 'a certificate');
    await writing;
    expect(fs.readFileSync(f, 'latin1')).toMatch(/^-----BEGIN X509 CRL-----\n/);
    expect(fs.readdirSync(dir).sort()).toEqual(['issuing.crl', 'issuing.crt']);
  });
});
