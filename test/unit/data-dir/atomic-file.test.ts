import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createPrivateFile, writeFileAtomic, writeFileAtomicWith } from '../../../src/data-dir/atomic-file';
import { fromStoredRef, importLegacyPath, toStoredRef } from '../../../src/data-dir/data-dir-ref';

let dir: string;
let umask: number;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-atomic-'));
  umask = process.umask(0o000); // the widest umask: modes must still be private
});
afterEach(() => {
  process.umask(umask);
  fs.rmSync(dir, { recursive: true, force: true });
});

const mode = (p: string): number => fs.statSync(p).mode & 0o777;

describe('writeFileAtomicWith (content written in pieces)', () => {
  it('writes the pieces with the given mode and returns what the writer returns; a writer that throws halfway leaves the old file and no temporary one', () => {
    const f = path.join(dir, 'pkg.der');
    expect(
      writeFileAtomicWith(
        f,
        (fd) => {
          fs.writeSync(fd, 'one ');
          fs.writeSync(fd, 'two');
          return 7;
        },
        0o644,
      ),
    ).toBe(7);
    expect([fs.readFileSync(f, 'utf8'), mode(f)]).toEqual(['one two', 0o644]);
    expect(() =>
      writeFileAtomicWith(f, (fd) => {
        fs.writeSync(fd, 'half');
        throw new Error('the input ended');
      }),
    ).toThrow('the input ended');
    expect(fs.readFileSync(f, 'utf8')).toBe('one two');
    expect(fs.readdirSync(dir)).toEqual(['pkg.der']);
  });
});

describe('writeFileAtomic', () => {
  it('creates the file 0600 and missing directories 0700 under umask 000, with the exact bytes', () => {
    const f = path.join(dir, 'a', 'b', 'chain.pem');
    writeFileAtomic(f, 'hello\n');
    expect(fs.readFileSync(f, 'utf8')).toBe('hello\n');
    expect(mode(f)).toBe(0o600);
    expect(mode(path.join(dir, 'a'))).toBe(0o700);
    expect(mode(path.join(dir, 'a', 'b'))).toBe(0o700);
  });

  it('under umask 077 an explicit 0644 is still 0644; replacing leaves no temporary file behind', () => {
    process.umask(0o077);
    const f = path.join(dir, 'x.crl');
    writeFileAtomic(f, Buffer.from([1, 2, 3]), 0o644);
    writeFileAtomic(f, Buffer.from([4, 5]), 0o644);
    expect([...fs.readFileSync(f)]).toEqual([4, 5]);
    expect(mode(f)).toBe(0o644);
    expect(fs.readdirSync(dir)).toEqual(['x.crl']);
  });

  it('narrows the mode of a file it replaces', () => {
    const f = path.join(dir, 'server.key');
    fs.writeFileSync(f, 'old', { mode: 0o666 });
    writeFileAtomic(f, 'new');
    expect(mode(f)).toBe(0o600);
  });
});

describe('createPrivateFile', () => {
  it('creates an empty 0600 file once and never truncates an existing one', () => {
    const f = path.join(dir, 'db', 'store.sqlite');
    createPrivateFile(f);
    expect(mode(f)).toBe(0o600);
    expect(mode(path.dirname(f))).toBe(0o700);
    fs.writeFileSync(f, 'data');
    createPrivateFile(f);
    expect(fs.readFileSync(f, 'utf8')).toBe('data');
  });
});

describe('data-dir refs', () => {
  it('keeps files under the data dir relative, PKCS#11 URIs and outside paths as they are', () => {
    expect(toStoredRef('/srv/data', '/srv/data/keys/root.key.pem')).toBe('keys/root.key.pem');
    expect(toStoredRef('/srv/data', '/srv/other/root.key.pem')).toBe('/srv/other/root.key.pem');
    expect(toStoredRef('/srv/data', 'pkcs11:token=ca;object=root')).toBe('pkcs11:token=ca;object=root');
    expect(fromStoredRef('/moved/data', 'keys/root.key.pem')).toBe('/moved/data/keys/root.key.pem');
    expect(fromStoredRef('/moved/data', '/srv/other/root.key.pem')).toBe('/srv/other/root.key.pem');
    expect(fromStoredRef('/moved/data', 'pkcs11:token=ca;object=root')).toBe('pkcs11:token=ca;object=root');
  });

  it('an absolute path from an old state.json that no longer exists is found in the moved data dir', () => {
    fs.mkdirSync(path.join(dir, 'keys'));
    fs.writeFileSync(path.join(dir, 'keys', 'root.key.pem'), 'k');
    expect(importLegacyPath(dir, '/gone/data/keys/root.key.pem', 'keys')).toBe('keys/root.key.pem');
    expect(importLegacyPath(dir, path.join(dir, 'keys', 'root.key.pem'), 'keys')).toBe('keys/root.key.pem');
  });
});
