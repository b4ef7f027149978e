import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadConfig } from '../../../src/config/load-config';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { SecretKeyCipher } from '../../../src/keys/pkcs11/key-capabilities';
import { FIRMWARE_GROUP_KEK_LABEL, FIRMWARE_GROUP_KEK_STATE, tokenGroupKek } from '../../../src/ra/firmware-group-kek';
import { FIRMWARE_GROUP_KEK_FILE, FirmwareGroupKeys, firmwareGroupKek, firmwareGroupKeks } from '../../../src/ra/firmware-group-keys';
import { KeyBackend } from '../../../src/keys/key-backend';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';

/**
 * The firmware group key-encryption key in a PKCS#11 token (ra/firmware-group-kek.ts): each group key
 * record names the key that wrapped it (`kek`), records without it open with keys/firmware-group.key,
 * and two processes generating the token's key at once end with one. The token is a fake
 * SecretKeyCipher doing AES-256-GCM in node; the SoftHSM2 path is test/interop/pkcs11-firmware-group-kek.test.ts.
 */

/** FakeToken: AES keys by CKA_ID, as a token keeps them (never read out by the code under test). */
class FakeToken implements SecretKeyCipher {
  readonly keys = new Map<string, { label: string; key: Buffer }>();
  generated = 0;
  destroyed = 0;
  async secretKeyIds(label: string): Promise<Buffer[]> {
    return [...this.keys].filter(([, k]) => k.label === label).map(([id]) => Buffer.from(id, 'hex'));
  }
  async generateSecretKey(label: string, id: Buffer): Promise<void> {
    this.generated++;
    await new Promise((r) => setImmediate(r));
    this.keys.set(id.toString('hex'), { label, key: crypto.randomBytes(32) });
  }
  async destroySecretKey(id: Buffer): Promise<void> {
    this.destroyed++;
    this.keys.delete(id.toString('hex'));
  }
  async aesGcmEncrypt(id: Buffer, iv: Buffer, aad: Buffer, plaintext: Buffer): Promise<Buffer> {
    const c = crypto.createCipheriv('aes-256-gcm', this.key(id), iv);
    c.setAAD(aad);
    return Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
  }
  async aesGcmDecrypt(id: Buffer, iv: Buffer, aad: Buffer, sealed: Buffer): Promise<Buffer> {
    const d = crypto.createDecipheriv('aes-256-gcm', this.key(id), iv);
    d.setAAD(aad);
    d.setAuthTag(sealed.subarray(sealed.length - 16));
    return Buffer.concat([d.update(sealed.subarray(0, sealed.length - 16)), d.final()]);
  }
  private key(id: Buffer): Buffer {
    const k = this.keys.get(id.toString('hex'));
    if (!k) throw new DeviceCaError('key-backend', `no AES secret key with CKA_ID ${id.toString('hex')}`);
    return k.key;
  }
}

let dir: string;
let store: SqliteStore;
let cfg: ReturnType<typeof loadConfig>;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-kek-'));
  cfg = loadConfig({ env: { DEVICE_CA_DATA: dir }, overrides: {} });
  store = new SqliteStore(cfg.store.path);
});
afterEach(async () => {
  await store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const kekFile = () => path.join(dir, 'keys', FIRMWARE_GROUP_KEK_FILE);
async function record(id: string): Promise<Record<string, unknown>> {
  return (await store.getCaState(`firmware-group-key:${id}`))!.value as Record<string, unknown>;
}

describe('firmware group key-encryption key in the token', () => {
  it('a key made with the token is recorded kek "pkcs11", opens with the token, and no key file is created', async () => {
    const token = new FakeToken();
    const keys = new FirmwareGroupKeys(store, { file: firmwareGroupKek(cfg), token: tokenGroupKek(store, async () => token) });
    const made = await keys.keyForRelease('fleet', ['dev-1'], 'test');
    expect(made.created).toBe(true);
    expect(await record(made.key.id)).toMatchObject({ id: made.key.id, group: 'fleet', kek: 'pkcs11' });
    expect(String((await record(made.key.id)).wrapped)).not.toContain(made.key.key.toString('hex'));
    // the next release to the same members opens the record with the token
    const again = await keys.keyForRelease('fleet', ['dev-1', 'dev-2'], 'test');
    expect(again.created).toBe(false);
    expect(again.key.key.equals(made.key.key)).toBe(true);
    expect(fs.existsSync(kekFile())).toBe(false);
    // one key in the token, named in the store
    expect(token.keys.size).toBe(1);
    const [[id, k]] = [...token.keys];
    expect(k.label).toBe(FIRMWARE_GROUP_KEK_LABEL);
    expect((await store.getCaState(FIRMWARE_GROUP_KEK_STATE))!.value).toMatchObject({ id });
    // without the token (the software backend) a "pkcs11" record does not open, and says why
    const software = new FirmwareGroupKeys(store, firmwareGroupKek(cfg));
    await expect(software.keyForRelease('fleet', ['dev-1', 'dev-2'], 'test')).rejects.toThrow(`group key ${made.key.id} does not unwrap with the token's ${FIRMWARE_GROUP_KEK_LABEL}`);
  });

  it('a record without kek (written before the token) opens with keys/firmware-group.key; new keys then use the token', async () => {
    const before = new FirmwareGroupKeys(store, firmwareGroupKek(cfg));
    const old = await before.keyForRelease('owner:acme', ['dev-1', 'dev-2'], 'test');
    // as the previous version wrote it: no kek field
    const entry = (await store.getCaState(`firmware-group-key:${old.key.id}`))!;
    const { kek, ...legacy } = entry.value as Record<string, unknown>;
    expect(kek).toBe('file');
    await store.saveCaState(`firmware-group-key:${old.key.id}`, legacy, entry.version);
    expect(await record(old.key.id)).not.toHaveProperty('kek');

    const token = new FakeToken();
    const after = new FirmwareGroupKeys(store, { file: firmwareGroupKek(cfg), token: tokenGroupKek(store, async () => token) });
    const kept = await after.keyForRelease('owner:acme', ['dev-1', 'dev-2', 'dev-3'], 'test');
    expect(kept.created).toBe(false);
    expect(kept.key.key.equals(old.key.key)).toBe(true);
    expect(await record(old.key.id)).not.toHaveProperty('kek');
    // dev-2 left: a new key, under the token
    const next = await after.keyForRelease('owner:acme', ['dev-1', 'dev-3'], 'test');
    expect(next.created).toBe(true);
    expect(await record(next.key.id)).toMatchObject({ kek: 'pkcs11' });
    // with the file gone, the old record no longer opens; the token's still does
    fs.rmSync(kekFile());
    const fresh = new FirmwareGroupKeys(store, { file: () => crypto.randomBytes(32), token: tokenGroupKek(store, async () => token) });
    expect((await fresh.keyForRelease('owner:acme', ['dev-1', 'dev-3'], 'test')).key.key.equals(next.key.key)).toBe(true);
  });

  it('a record naming a key-encryption key this version does not know: a clear error, and no key file made', async () => {
    const token = new FakeToken();
    const keys = new FirmwareGroupKeys(store, { file: firmwareGroupKek(cfg), token: tokenGroupKek(store, async () => token) });
    const made = await keys.keyForRelease('fleet', ['dev-1'], 'test');
    const entry = (await store.getCaState(`firmware-group-key:${made.key.id}`))!;
    for (const kek of ['hsm', 'PKCS11', '__proto__', 42, null]) {
      const cur = (await store.getCaState(`firmware-group-key:${made.key.id}`))!;
      await store.saveCaState(`firmware-group-key:${made.key.id}`, { ...(entry.value as object), kek }, cur.version);
      const e = await keys.keyForRelease('fleet', ['dev-1'], 'test').catch((x: unknown) => x);
      expect(e).toBeInstanceOf(DeviceCaError);
      expect(e).toMatchObject({ code: 'key-backend', message: `group key ${made.key.id} names an unknown key-encryption key (kek ${JSON.stringify(kek)})` });
      expect(String((e as Error).message)).not.toContain(made.key.key.toString('hex'));
      expect(fs.existsSync(kekFile())).toBe(false);
    }
  });

  it('with keys.backend pkcs11, a record of the key file on a node without that file: a clear error, and no new random file', async () => {
    // written on a node with keys/firmware-group.key (before the switch to the token)
    const old = await new FirmwareGroupKeys(store, firmwareGroupKek(cfg)).keyForRelease('fleet', ['dev-1'], 'test');
    const other = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-kek-node-'));
    try {
      // another node of the same store, with the token and without the file
      const node = loadConfig({ env: { DEVICE_CA_DATA: other }, overrides: { 'keys.backend': 'pkcs11' } });
      const token = Object.assign(new FakeToken(), { kind: 'pkcs11' }) as unknown as KeyBackend;
      const keys = new FirmwareGroupKeys(store, firmwareGroupKeks(node, token, store));
      await expect(keys.keyForRelease('fleet', ['dev-1'], 'test')).rejects.toMatchObject({
        code: 'key-backend',
        message: expect.stringContaining(`keys/${FIRMWARE_GROUP_KEK_FILE}, which is not on this node`),
      });
      expect(fs.existsSync(path.join(other, 'keys', FIRMWARE_GROUP_KEK_FILE))).toBe(false);
      // the file copied over: the record opens
      fs.mkdirSync(path.join(other, 'keys'), { recursive: true, mode: 0o700 });
      fs.copyFileSync(kekFile(), path.join(other, 'keys', FIRMWARE_GROUP_KEK_FILE));
      fs.chmodSync(path.join(other, 'keys', FIRMWARE_GROUP_KEK_FILE), 0o600);
      const kept = await keys.keyForRelease('fleet', ['dev-1'], 'test');
      expect(kept.created).toBe(false);
      expect(kept.key.key.equals(old.key.key)).toBe(true);
    } finally {
      fs.rmSync(other, { recursive: true, force: true });
    }
  });

  it('an owner named __proto__ is a group like any other: its own key, under the token, opened again', async () => {
    const token = new FakeToken();
    const keys = new FirmwareGroupKeys(store, { file: firmwareGroupKek(cfg), token: tokenGroupKek(store, async () => token) });
    const proto = await keys.keyForRelease('owner:__proto__', ['dev-1'], 'test');
    const other = await keys.keyForRelease('owner:constructor', ['dev-1'], 'test');
    expect(proto.key.id).not.toBe(other.key.id);
    expect(await record(proto.key.id)).toMatchObject({ group: 'owner:__proto__', kek: 'pkcs11' });
    expect(await store.getCaState('firmware-group:owner:__proto__')).toMatchObject({ value: { current: proto.key.id } });
    const again = await keys.keyForRelease('owner:__proto__', ['dev-1'], 'test');
    expect(again).toMatchObject({ created: false });
    expect(again.key.key.equals(proto.key.key)).toBe(true);
    expect(Object.prototype).not.toHaveProperty('current');
  });

  it('a compare-and-set that reports a conflict although our CKA_ID is the one recorded: the recorded key is kept', async () => {
    // e.g. a write that committed and whose answer was lost, retried: the conflict is with ourselves
    const token = new FakeToken();
    const echo = {
      getCaState: store.getCaState.bind(store),
      saveCaState: async (...a: Parameters<SqliteStore['saveCaState']>) => {
        await store.saveCaState(...a);
        throw new DeviceCaError('conflict', `CA state ${a[0]} changed meanwhile`);
      },
    };
    const kek = tokenGroupKek(echo, async () => token);
    const iv = crypto.randomBytes(12);
    const sealed = await kek.seal(iv, Buffer.from('aad'), Buffer.from('one'));
    expect(token.destroyed).toBe(0);
    expect(token.keys.size).toBe(1);
    expect(await store.getCaState(FIRMWARE_GROUP_KEK_STATE)).toMatchObject({ value: { id: [...token.keys.keys()][0] } });
    expect((await kek.open(iv, Buffer.from('aad'), sealed)).toString()).toBe('one');
  });

  it('two processes generating the token key at once end with one key, named in the store', async () => {
    const token = new FakeToken();
    const a = tokenGroupKek(store, async () => token);
    const b = tokenGroupKek(store, async () => token);
    const iv = crypto.randomBytes(12);
    const aad = Buffer.from('aad');
    const [sa, sb] = await Promise.all([a.seal(iv, aad, Buffer.from('one')), b.seal(iv, aad, Buffer.from('two'))]);
    expect(token.generated).toBe(2);
    expect(token.destroyed).toBe(1);
    expect(token.keys.size).toBe(1);
    // each opens what the other sealed: the same key
    expect((await a.open(iv, aad, sb)).toString()).toBe('two');
    expect((await b.open(iv, aad, sa)).toString()).toBe('one');
    expect(await store.getCaState(FIRMWARE_GROUP_KEK_STATE)).toMatchObject({ value: { id: [...token.keys.keys()][0] } });
  });
});
