import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PROCESS_TABLE } from '../../../src/data-dir/process-identity';
import { lockForWriting } from '../../../src/data-dir/writer-lock';
import { DeviceCaError } from '../../../src/errors/device-ca-error';

/**
 * writer-lock: `<file>.lock` names its writer; a second writer is refused while that writer runs, and
 * breaks the lock once the writer is provably gone (this host's pid table: a pid that exited, another boot).
 */

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-lock-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const deadPid = (): number => Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
const holder = (o: Partial<{ host: string; pidNs: string | null; bootId: string | null; pid: number; started: number }>): string =>
  JSON.stringify({ ...PROCESS_TABLE, pid: process.ppid, since: '2026-11-30T00:00:00.000Z', ...o });

function refusal(f: () => unknown): string {
  try {
    f();
    return 'taken';
  } catch (e) {
    return e instanceof DeviceCaError ? `${e.code}: ${e.message}` : `other: ${String(e)}`;
  }
}

it('one writer at a time; release() frees it for the next; nothing is left beside the file', () => {
  const out = path.join(dir, 'release.der');
  const first = lockForWriting(out, 'a firmware release');
  expect(JSON.parse(fs.readFileSync(`${out}.lock`, 'utf8'))).toMatchObject({ pid: process.pid, host: os.hostname() });
  expect(refusal(() => lockForWriting(out, 'a firmware release'))).toMatch(/^conflict: a firmware release: another writer \(pid \d+, since .*\) is writing it/);
  first.release();
  expect(fs.readdirSync(dir)).toEqual([]);
  lockForWriting(out, 'a firmware release').release();
  expect(fs.readdirSync(dir)).toEqual([]);
});

it("a running writer's lock (another process of this host) is never broken", () => {
  const out = path.join(dir, 'release.der');
  fs.writeFileSync(`${out}.lock`, holder({ pid: process.ppid }));
  expect(refusal(() => lockForWriting(out, 'x'))).toContain(`another writer (pid ${process.ppid}`);
  expect(fs.readFileSync(`${out}.lock`, 'utf8')).toBe(holder({ pid: process.ppid }));
});

/** beforeThisBoot: sets a file's times to a day before this machine booted (/proc/stat btime), as a file of an earlier boot has. */
function beforeThisBoot(file: string): void {
  const btime = Number(/^btime (\d+)$/m.exec(fs.readFileSync('/proc/stat', 'latin1'))![1]);
  fs.utimesSync(file, btime - 86400, btime - 86400);
}

it.each([
  ['a pid that exited', () => holder({ pid: deadPid() }), false],
  ['an earlier boot of this host', () => holder({ bootId: '00000000-0000-0000-0000-000000000000' }), true],
])("a dead writer's lock (%s) is broken and taken", (_what, make, earlierBoot) => {
  const out = path.join(dir, 'release.der');
  fs.writeFileSync(`${out}.lock`, make());
  if (earlierBoot) beforeThisBoot(`${out}.lock`);
  const lock = lockForWriting(out, 'x');
  expect(JSON.parse(fs.readFileSync(`${out}.lock`, 'utf8'))).toMatchObject({ pid: process.pid });
  lock.release();
  expect(fs.readdirSync(dir)).toEqual([]);
});

it.each([
  ['another host', { host: 'elsewhere.example' }, /a writer on host elsewhere\.example .* if it no longer runs, remove that file/],
  ['another pid namespace', { pidNs: 'pid:[1]' }, /another host, container or boot/],
  ['a writer that could not name its namespace', { pidNs: null }, /another host, container or boot/],
])('a lock of %s is not judged: refused, naming the file to remove', (_what, o, message) => {
  const out = path.join(dir, 'release.der');
  fs.writeFileSync(`${out}.lock`, holder({ ...o, pid: deadPid() }));
  const r = refusal(() => lockForWriting(out, 'x'));
  expect(r).toMatch(message);
  expect(r).toContain(`${out}.lock`);
  expect(fs.existsSync(`${out}.lock`)).toBe(true);
});

it('an unreadable lock file is refused, never broken', () => {
  const out = path.join(dir, 'release.der');
  fs.writeFileSync(`${out}.lock`, 'garbage');
  expect(refusal(() => lockForWriting(out, 'x'))).toMatch(/does not name its writer; if no writer runs, remove it/);
});

it("release() leaves alone a lock that is no longer this writer's", () => {
  const out = path.join(dir, 'release.der');
  const mine = lockForWriting(out, 'x');
  fs.rmSync(`${out}.lock`);
  fs.writeFileSync(`${out}.lock`, holder({ pid: process.ppid })); // an operator removed it, another writer took it
  mine.release();
  expect(fs.readFileSync(`${out}.lock`, 'utf8')).toBe(holder({ pid: process.ppid }));
});

it("a lock of another boot taken since this boot began is refused, not broken: another machine's live writer (same host name and pid namespace)", () => {
  const out = path.join(dir, 'release.der');
  const theirs = holder({ bootId: '00000000-0000-0000-0000-000000000000', pid: deadPid() });
  fs.writeFileSync(`${out}.lock`, theirs);
  expect(refusal(() => lockForWriting(out, 'x'))).toMatch(/^conflict: x: a writer on host .* another host, container or boot/);
  expect(fs.readFileSync(`${out}.lock`, 'utf8')).toBe(theirs);
});

/** startTicks: when a process started, in clock ticks since boot (/proc/<pid>/stat field 22). */
const startTicks = (pid: number): number =>
  Number(
    fs
      .readFileSync(`/proc/${pid}/stat`, 'latin1')
      .replace(/^.*\) /s, '')
      .split(' ')[19],
  );

it('a lock whose pid now runs another process (the writer was killed, its pid reused) is broken and taken', () => {
  const out = path.join(dir, 'release.der');
  // the lock names its writer's start time; pid ppid runs, but it is not the process that started then
  fs.writeFileSync(`${out}.lock`, holder({ pid: process.ppid, started: startTicks(process.ppid) + 1 }));
  const lock = lockForWriting(out, 'x');
  expect(JSON.parse(fs.readFileSync(`${out}.lock`, 'utf8'))).toMatchObject({ pid: process.pid, started: startTicks(process.pid) });
  lock.release();
  expect(fs.readdirSync(dir)).toEqual([]);
});

it('a lock whose pid still runs the process that started then is refused', () => {
  const out = path.join(dir, 'release.der');
  fs.writeFileSync(`${out}.lock`, holder({ pid: process.ppid, started: startTicks(process.ppid) }));
  expect(refusal(() => lockForWriting(out, 'x'))).toContain(`another writer (pid ${process.ppid}`);
});
