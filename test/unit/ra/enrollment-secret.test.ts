import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ENROLLMENT_SECRET_KEY_FILE, enrollmentSecretKey } from '../../../src/keys/enrollment-secret-key';
import { hashChosenSecret, hashSecret, newEnrollmentSecret, verifySecret } from '../../../src/ra/enrollment-secret';
import { TmpDir, makeTmpDir } from '../../helpers/tmp';

/**
 * Enrollment secrets: server-generated secrets are stored as HMAC-SHA-256 under a server key file kept with
 * the CA keys; hashes stored with scrypt before keep verifying; comparisons are constant time.
 */

// the module object node:crypto itself, so a spy sees the calls src/ makes through its own import
const nodeCrypto = createRequire(__filename)('node:crypto') as typeof import('node:crypto');

let tmp: TmpDir;
beforeEach(() => {
  tmp = makeTmpDir('device-ca-secret-key-');
});
afterEach(() => {
  jest.restoreAllMocks();
  tmp.cleanup();
});

describe('enrollment secret key file', () => {
  it('is created on first use, 0600 (not readable by group or others), 256 bits, and read back the same by the next caller', () => {
    const dir = path.join(tmp.path, 'keys-a');
    const key = enrollmentSecretKey(dir);
    const file = path.join(dir, ENROLLMENT_SECRET_KEY_FILE);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(key).toHaveLength(32);
    expect(fs.readFileSync(file, 'utf8').trim()).toBe(key.toString('hex'));
    expect(enrollmentSecretKey(dir).equals(key)).toBe(true);
    // no temporary file is left beside it
    expect(fs.readdirSync(dir)).toEqual([ENROLLMENT_SECRET_KEY_FILE]);
  });

  it('an existing key file is used as it is (the key a node copied with the CA keys)', () => {
    const dir = path.join(tmp.path, 'keys-b');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, ENROLLMENT_SECRET_KEY_FILE), `${'ab'.repeat(32)}\n`, { mode: 0o600 });
    expect(enrollmentSecretKey(dir).toString('hex')).toBe('ab'.repeat(32));
  });

  it('a key file that is not 64 hex digits is a config error, not a weak key', () => {
    const dir = path.join(tmp.path, 'keys-c');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, ENROLLMENT_SECRET_KEY_FILE), 'short\n', { mode: 0o600 });
    expect(() => enrollmentSecretKey(dir)).toThrow(expect.objectContaining({ code: 'config' }));
  });
});

describe('hashSecret / verifySecret', () => {
  const key = Buffer.alloc(32, 1);
  const keySource = (): Buffer => key;

  it('a generated secret is stored as HMAC-SHA-256 under the key: the right secret verifies, a wrong one does not', async () => {
    const secret = newEnrollmentSecret();
    const stored = hashSecret(secret, key);
    expect(stored).toMatch(/^hmac-sha256\$[0-9a-f]{8}\$[A-Za-z0-9_-]{43}$/);
    expect(stored).not.toContain(secret);
    expect(await verifySecret(secret, stored, keySource)).toBe(true);
    expect(await verifySecret(`${secret.slice(0, -1)}${secret.endsWith('A') ? 'B' : 'A'}`, stored, keySource)).toBe(false);
    expect(await verifySecret('', stored, keySource)).toBe(false);
  });

  it('under another key the same secret does not verify', async () => {
    const stored = hashSecret('s3cret', key);
    expect(await verifySecret('s3cret', stored, () => Buffer.alloc(32, 2))).toBe(false);
  });

  it('compares MACs with crypto.timingSafeEqual on equal-length buffers, for a wrong secret too', async () => {
    const stored = hashSecret('right', key);
    const tse = jest.spyOn(nodeCrypto, 'timingSafeEqual');
    expect(await verifySecret('wrong', stored, keySource)).toBe(false);
    expect(tse).toHaveBeenCalledTimes(1);
    const [a, b] = tse.mock.calls[0] as [Buffer, Buffer];
    expect([a.length, b.length]).toEqual([32, 32]);
  });

  it('a hash stored with scrypt (every secret before HMAC) still verifies by its own parameters; a wrong secret does not', async () => {
    const old = await hashChosenSecret('legacy-secret', 10);
    expect(old).toMatch(/^scrypt\$10\$8\$1\$/);
    // the key plays no part in an scrypt hash
    const noKey = (): Buffer => {
      throw new Error('key read for an scrypt hash');
    };
    expect(await verifySecret('legacy-secret', old, noKey)).toBe(true);
    expect(await verifySecret('legacy-secreT', old, noKey)).toBe(false);
  });

  it('malformed hashes and over-long candidates never match', async () => {
    for (const stored of ['', 'hmac-sha256$x', 'hmac-sha256$00000000$', 'md5$abc', `hmac-sha256$${'0'.repeat(8)}$${'A'.repeat(43)}`]) expect(await verifySecret('x', stored, keySource)).toBe(false);
    expect(await verifySecret('x'.repeat(257), hashSecret('x'.repeat(257), key), keySource)).toBe(false);
  });
});
