import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadConfig } from '../../../../src/config/load-config';
import { Config } from '../../../../src/config/schema';
import { DeviceCaError } from '../../../../src/errors/device-ca-error';
import { SecretAuthenticator } from '../../../../src/ra/authenticators/secret-authenticator';
import { hashChosenSecret, hashSecret, serverSecretKey } from '../../../../src/ra/enrollment-secret';
import { SqliteStore } from '../../../../src/store/sqlite/sqlite-store';

/**
 * SecretAuthenticator over a real SqliteStore: an unspent secret authenticates; a wrong one is counted
 * against the device id until the limit makes every attempt rate-limited; a secret spent on a certificate
 * within enrollment.retryWindow authenticates as a repeat bound to that certificate, and only then.
 */

let dir: string;
let store: SqliteStore;
let cfg: Config;
let offset = 0;
const now = (): Date => new Date(Date.now() + offset);
let auth: SecretAuthenticator;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-secret-auth-'));
  cfg = loadConfig({ env: { DEVICE_CA_DATA: dir }, overrides: { 'enrollment.secretHashCost': 10 } });
  store = new SqliteStore(cfg.store.path);
  offset = 0;
  auth = new SecretAuthenticator(cfg.enrollment, store, now, serverSecretKey(cfg));
});
afterEach(async () => {
  await store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** addDevice registers a device whose secret is stored as the RA stores it now (HMAC), or as before (scrypt) */
async function addDevice(id: string, secret: string, ttlMs = 86400_000, format: 'hmac' | 'scrypt' = 'hmac'): Promise<void> {
  const hash = format === 'hmac' ? hashSecret(secret, serverSecretKey(cfg)()) : await hashChosenSecret(secret, 10);
  await store.createDevice(
    { id, owner: 'acme', label: null, state: 'registered' },
    { hash, expiresAt: new Date(Date.now() + ttlMs) },
    { type: 'device.registered', actor: 'test', subject: id, data: {} },
  );
}

/** spend records a certificate bought with the device's secret, as the RA does after signing */
async function spend(id: string, serial: string): Promise<void> {
  const [s] = await store.activeSecrets(id, now());
  await store.recordIssuance({
    cert: {
      serial,
      deviceId: id,
      issuer: 'ca',
      subject: `CN=${id}`,
      profile: 'default',
      notBefore: new Date(),
      notAfter: new Date(Date.now() + 86400_000),
      shard: 0,
      spkiSha256: 'ab'.repeat(32),
      der: Buffer.from(serial),
    },
    consumeSecretId: s.id,
    audit: { type: 'certificate.issued', actor: 'test', subject: id, data: {} },
  });
}

const code = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
  } catch (e) {
    if (e instanceof DeviceCaError) return e.code;
    throw e;
  }
  return 'no error';
};

describe('SecretAuthenticator', () => {
  it('no secret in the proofs: null, so another authenticator may try', async () => {
    expect(await auth.authenticate({})).toBeNull();
    expect(auth.method).toBe('basic');
  });

  it('the right secret: a secret principal naming the device and the secret', async () => {
    await addDevice('dev-1', 'right');
    const [s] = await store.activeSecrets('dev-1', now());
    expect(await auth.authenticate({ secret: { deviceId: 'dev-1', secret: 'right' } })).toEqual({ kind: 'secret', deviceId: 'dev-1', secretId: s.id });
  });

  it('a wrong secret, an unknown device, a malformed id, an expired secret: unauthenticated', async () => {
    await addDevice('dev-1', 'right');
    await addDevice('dev-2', 'short', 1000);
    expect(await code(auth.authenticate({ secret: { deviceId: 'dev-1', secret: 'wrong' } }))).toBe('unauthenticated');
    expect(await code(auth.authenticate({ secret: { deviceId: 'dev-none', secret: 'right' } }))).toBe('unauthenticated');
    expect(await code(auth.authenticate({ secret: { deviceId: 'a b:c', secret: 'right' } }))).toBe('unauthenticated');
    offset = 2000;
    expect(await code(auth.authenticate({ secret: { deviceId: 'dev-2', secret: 'short' } }))).toBe('unauthenticated');
  });

  it('after authFailureLimit (5) failures: rate-limited with Retry-After, even with the right secret; other devices unaffected', async () => {
    await addDevice('dev-1', 'right');
    await addDevice('dev-2', 'other');
    for (let i = 0; i < 5; i++) expect(await code(auth.authenticate({ secret: { deviceId: 'dev-1', secret: `wrong-${i}` } }))).toBe('unauthenticated');
    const err = await auth.authenticate({ secret: { deviceId: 'dev-1', secret: 'right' } }).catch((e: DeviceCaError) => e);
    expect(err).toMatchObject({ code: 'rate-limited' });
    expect((err as DeviceCaError).retryAfterSeconds).toBeGreaterThan(0);
    expect((err as DeviceCaError).retryAfterSeconds).toBeLessThanOrEqual(cfg.enrollment.authFailureWindow);
    expect((await store.listAudit({ subject: 'dev-1' })).items.filter((a) => a.type === 'auth.locked')).toHaveLength(1);
    expect(await auth.authenticate({ secret: { deviceId: 'dev-2', secret: 'other' } })).toMatchObject({ kind: 'secret', deviceId: 'dev-2' });
    // the window passes: the right secret works again
    offset = (cfg.enrollment.authFailureWindow + 1) * 1000;
    expect(await auth.authenticate({ secret: { deviceId: 'dev-1', secret: 'right' } })).toMatchObject({ kind: 'secret' });
  });

  it('a secret stored as scrypt before HMAC (existing devices) still authenticates; a wrong one is refused', async () => {
    await addDevice('dev-old', 'right', 86400_000, 'scrypt');
    const [s] = await store.activeSecrets('dev-old', now());
    expect(s.hash).toMatch(/^scrypt\$10\$8\$1\$/);
    expect(await code(auth.authenticate({ secret: { deviceId: 'dev-old', secret: 'wrong' } }))).toBe('unauthenticated');
    expect(await auth.authenticate({ secret: { deviceId: 'dev-old', secret: 'right' } })).toEqual({ kind: 'secret', deviceId: 'dev-old', secretId: s.id });
  });

  it("a secret stored under another server key (a node without the data directory's key file) does not authenticate", async () => {
    const other = hashSecret('right', Buffer.alloc(32, 7));
    await store.createDevice(
      { id: 'dev-k', owner: 'acme', label: null, state: 'registered' },
      { hash: other, expiresAt: new Date(Date.now() + 86400_000) },
      { type: 'device.registered', actor: 'test', subject: 'dev-k', data: {} },
    );
    expect(await code(auth.authenticate({ secret: { deviceId: 'dev-k', secret: 'right' } }))).toBe('unauthenticated');
  });

  it('a retired device: forbidden, whatever the secret', async () => {
    await addDevice('dev-1', 'right');
    await store.applyDeviceChange({ deviceId: 'dev-1', fromStates: ['registered'], toState: 'retired', deleteSecrets: true, audit: { type: 't', actor: 't', subject: 'dev-1', data: {} } });
    expect(await code(auth.authenticate({ secret: { deviceId: 'dev-1', secret: 'right' } }))).toBe('forbidden');
  });

  it('a secret spent within retryWindow: a secret-repeat bound to the certificate it bought; after the window: unauthenticated', async () => {
    await addDevice('dev-1', 'right');
    await spend('dev-1', '4abc');
    expect(await auth.authenticate({ secret: { deviceId: 'dev-1', secret: 'right' } })).toMatchObject({ kind: 'secret-repeat', deviceId: 'dev-1', certSerial: '4abc' });
    // a wrong secret is still wrong
    expect(await code(auth.authenticate({ secret: { deviceId: 'dev-1', secret: 'wrong' } }))).toBe('unauthenticated');
    offset = (cfg.enrollment.retryWindow + 1) * 1000;
    expect(await code(auth.authenticate({ secret: { deviceId: 'dev-1', secret: 'right' } }))).toBe('unauthenticated');
  });

  it('refuse() on a locked device: unauthenticated, and nothing more is stored (a device keeps at most authFailureLimit failures)', async () => {
    await addDevice('dev-1', 'right');
    for (let i = 0; i < 7; i++) expect(await code(auth.refuse('dev-1'))).toBe('unauthenticated');
    expect((await store.countAuthFailures('basic:dev-1', now(), 1e9)).count).toBe(cfg.enrollment.authFailureLimit);
    expect((await store.listAudit({ subject: 'dev-1' })).items.filter((a) => a.type === 'auth.locked')).toHaveLength(1);
  });

  it('refuse(): counts a failure and throws unauthenticated', async () => {
    await addDevice('dev-1', 'right');
    expect(await code(auth.refuse('dev-1'))).toBe('unauthenticated');
    expect((await store.countAuthFailures('basic:dev-1', now(), cfg.enrollment.authFailureWindow)).count).toBe(1);
  });
});
