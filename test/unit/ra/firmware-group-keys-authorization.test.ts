import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as x509 from '@peculiar/x509';
import { signerCaCertificate } from '../../../src/ca/signer-ca';
import { openGroupKeyEnvelope } from '../../../src/cms/firmware-group-key';
import { decryptKeyIdOf } from '../../../src/cms/firmware-group-release';
import { createFirmwarePackage, signFirmwarePackage } from '../../../src/cms/firmware-package';
import { verifyFirmwareRelease } from '../../../src/cms/firmware-release-verify';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { generateKeyPair, softwareSigningKey, SoftwareKeyBackend } from '../../../src/keys/software-key-backend';
import { DeviceLifecycle, OPERATOR } from '../../../src/ra/device-lifecycle';
import { FIRMWARE_GROUP_KEK_FILE, FirmwareGroupKeys, firmwareGroupKek } from '../../../src/ra/firmware-group-keys';
import { FirmwareReleases } from '../../../src/ra/firmware-release';
import { releaseToBuffer } from './release-to-buffer';
import { makeRaHarness, RaHarness, secretProof } from './ra-harness';

/**
 * Group keys (ra/firmware-group-keys.ts) as a matrix: who may fetch which key (GET /firmware/keys/<id>),
 * with the real SQLite store and releases made by FirmwareReleases; then the rotation rule: a release made
 * after a member left uses a new key, which the member that left cannot fetch.
 */

let h: RaHarness;
let fw: FirmwareReleases;
let keys: FirmwareGroupKeys;
let lifecycle: DeviceLifecycle;
const devices = new Map<string, { cert: crypto.X509Certificate; key: crypto.KeyObject }>();
const parties: { certificate: Buffer; key: ReturnType<typeof softwareSigningKey> }[] = [];
let version = 0;

async function device(id: string, owner: string): Promise<void> {
  const secret = await h.register(id, { owner });
  const csr = h.csr(id);
  const r = await h.issued('default', 'enroll', csr.der, secretProof(id, secret));
  devices.set(id, { cert: new crypto.X509Certificate(r.certificate), key: csr.key });
}
async function groupRelease(group: string): Promise<{ keyId: string; release: Buffer; recipients: string[] }> {
  let pkg = createFirmwarePackage(Buffer.from(`image ${++version}`), { name: 'fw', version, hardware: [] });
  for (const p of parties) pkg = await signFirmwarePackage(pkg, p, new Date());
  const r = await releaseToBuffer(fw, { package: pkg, encryptToGroup: group, actor: 'test' });
  return { keyId: r.groupKeyId!, release: r.release, recipients: r.record.recipients! };
}
/** fetch: "served" (and the device opens its key package), or "<code>: <message>" */
async function fetch(who: string, keyId: string): Promise<string> {
  const d = devices.get(who);
  try {
    const der = await keys.fetch({ keyId, requester: { clientCertificate: d?.cert } });
    expect(openGroupKeyEnvelope(der, { certificate: Buffer.from(d!.cert.raw), key: d!.key }).id).toBe(keyId);
    return 'served';
  } catch (e) {
    if (!(e instanceof DeviceCaError)) throw e;
    return `${e.code}: ${e.message}`;
  }
}

/**
 * legacyRecord: a group key record as the previous version wrote it, its members inside (sorted ids), the
 * key wrapped under the data directory's key-encryption key as FirmwareGroupKeys does; made the group's
 * current key. The members table knows nothing of it (a Redis store, or a record copied from one).
 */
async function legacyRecord(group: string, members: string[]): Promise<{ id: string; key: Buffer }> {
  const id = crypto.randomBytes(16).toString('hex');
  const key = crypto.randomBytes(32);
  const iv = crypto.randomBytes(12);
  const c = crypto.createCipheriv('aes-256-gcm', firmwareGroupKek(h.cfg)(), iv);
  c.setAAD(Buffer.from(`device-ca firmware group key ${id} ${group}`, 'utf8'));
  const ct = Buffer.concat([c.update(key), c.final()]);
  const wrapped = Buffer.concat([iv, c.getAuthTag(), ct]).toString('hex');
  await h.store.saveCaState(`firmware-group-key:${id}`, { id, group, wrapped, createdAt: new Date().toISOString(), members: [...members].sort() }, 0);
  const pointer = await h.store.getCaState(`firmware-group:${group}`);
  await h.store.saveCaState(`firmware-group:${group}`, { current: id }, pointer?.version ?? 0);
  return { id, key };
}

let acmeKey: string;
let fleetKey: string;
let legacyKey: string;
beforeAll(async () => {
  h = await makeRaHarness();
  fw = new FirmwareReleases(h.cfg, h.store, new SoftwareKeyBackend(path.join(h.dir, 'keys')));
  keys = new FirmwareGroupKeys(h.store, firmwareGroupKek(h.cfg));
  lifecycle = new DeviceLifecycle(h.cfg, h.store);
  for (const [name, role] of [
    ['m', 'manufacturer'],
    ['d', 'developer'],
    ['a', 'administrator'],
  ]) {
    const { privateKey } = generateKeyPair('ecdsa-p256');
    const r = await fw.addSigner({ name, role, csr: h.csr(name, { key: privateKey }).der, actor: 'test' });
    parties.push({ certificate: r.certificate, key: softwareSigningKey(privateKey, 'ecdsa-p256', `${name}.key`) });
  }
  for (const id of ['dev-a', 'dev-s', 'dev-r', 'dev-t']) await device(id, 'acme');
  await device('dev-o', 'globex');
  for (const id of ['dev-l1', 'dev-l2']) await device(id, 'initech');
  legacyKey = (await legacyRecord('owner:initech', ['dev-l1', 'dev-a'])).id;
  acmeKey = (await groupRelease('owner:acme')).keyId;
  fleetKey = (await groupRelease('fleet')).keyId;
  await lifecycle.suspend('dev-s', OPERATOR, 'test');
  await lifecycle.retire('dev-r', OPERATOR, 'test');
  const moved = await lifecycle.transfer('dev-t', 'globex', OPERATOR, 'test');
  devices.set('dev-t-old', devices.get('dev-t')!);
  const csr = h.csr('dev-t');
  const reenrolled = await h.issued('default', 'enroll', csr.der, secretProof('dev-t', moved.secret));
  devices.set('dev-t', { cert: new crypto.X509Certificate(reenrolled.certificate), key: csr.key });
  // an AK certificate of dev-a (profile tpm-ak): a TPM signing key, never a device's TLS identity here
  const dev = (await h.store.listCertificates({ deviceId: 'dev-a', status: 'valid', limit: 10 })).items[0];
  const akKeys = (await crypto.webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as crypto.webcrypto.CryptoKeyPair;
  const ak = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '7a7a02',
    name: 'CN=dev-a',
    keys: akKeys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    notBefore: new Date(Date.now() - 60_000),
    notAfter: dev.notAfter,
  });
  const akDer = Buffer.from(ak.rawData);
  await h.store.recordIssuance({
    cert: {
      serial: '7a7a02',
      deviceId: 'dev-a',
      issuer: dev.issuer,
      subject: 'CN=dev-a',
      profile: 'tpm-ak',
      notBefore: new Date(Date.now() - 60_000),
      notAfter: dev.notAfter,
      shard: 0,
      spkiSha256: '00',
      der: akDer,
    },
    audit: { type: 'test', actor: 'test', subject: 'device:dev-a', data: {} },
  });
  devices.set('ak', {
    cert: new crypto.X509Certificate(akDer),
    key: crypto.createPrivateKey({ key: Buffer.from(await crypto.webcrypto.subtle.exportKey('pkcs8', akKeys.privateKey)), format: 'der', type: 'pkcs8' }),
  });
}, 90_000);
afterAll(() => h.close());

const NF = 'not-found: no such group key';
describe('who may fetch a group key', () => {
  const matrix: [string, string, () => string][] = [
    ['dev-a (member of acme) asks for the acme key', 'served', () => acmeKey],
    ['dev-a (member of the fleet) asks for the fleet key', 'served', () => fleetKey],
    ['dev-o (another owner) asks for the acme key', NF, () => acmeKey],
    ['dev-o asks for the fleet key', 'served', () => fleetKey],
    ['dev-s (suspended: its certificate is on hold)', 'forbidden: the client certificate is revoked', () => acmeKey],
    ['dev-r (retired)', 'forbidden: the client certificate is revoked', () => acmeKey],
    ['dev-t-old (transferred to globex: its acme certificate is revoked)', 'forbidden: the client certificate is revoked', () => acmeKey],
    ['dev-t (re-enrolled under globex, named in the acme key when it was made)', NF, () => acmeKey],
    ['ak (an AK certificate of dev-a)', 'forbidden: the client certificate is not a device certificate of this CA', () => acmeKey],
    ['anonymous (no TLS client certificate)', 'unauthenticated: a group key is fetched over TLS with the device certificate', () => acmeKey],
    ['dev-a, an unknown key id', NF, () => '0'.repeat(32)],
    ['dev-a, __proto__ as key id', NF, () => '__proto__'],
    ['dev-a, constructor as key id', NF, () => 'constructor'],
    ['dev-a, the key id in upper case', NF, () => acmeKey.toUpperCase()],
    ['dev-l1 (named in a key record of the previous version, members inside)', 'served', () => legacyKey],
    ['dev-l2 (of the group, not named in that record)', NF, () => legacyKey],
    ['dev-a (named in that record, of another owner now)', NF, () => legacyKey],
  ];
  it.each(matrix)('%s -> %s', async (label, expected, keyId) => {
    const who = label.split(' ')[0].replace(/,$/, '');
    expect(await fetch(who, keyId())).toBe(expected);
  });

  it('each fetch is audited with the device and key id, never the key', async () => {
    const before = (await h.audit('firmware.group-key.fetched')).length;
    await fetch('dev-a', acmeKey);
    await fetch('dev-o', acmeKey);
    const after = (await h.audit('firmware.group-key.fetched')).slice(before);
    expect(after.map((r) => [r.actor, r.data])).toEqual([['device:dev-a', { keyId: acmeKey, device: 'dev-a' }]]);
  });
});

describe('rotation: a member that left is not a recipient of anything released after', () => {
  it('the key stays while members only join; a release after a member left uses a new key the leaver cannot fetch', async () => {
    await device('dev-1', 'umbrella');
    await device('dev-2', 'umbrella');
    const first = await groupRelease('owner:umbrella');
    expect(first.recipients.sort()).toEqual(['dev-1', 'dev-2']);
    await device('dev-3', 'umbrella');
    expect(await fetch('dev-3', first.keyId)).toBe(NF); // not a member when the key was last used
    const grown = await groupRelease('owner:umbrella');
    expect(grown.keyId).toBe(first.keyId); // nobody left: same key
    expect(await fetch('dev-3', first.keyId)).toBe('served');
    await lifecycle.retire('dev-2', OPERATOR, 'test');
    const after = await groupRelease('owner:umbrella');
    expect(after.keyId).not.toBe(first.keyId);
    expect(after.recipients.sort()).toEqual(['dev-1', 'dev-3']);
    expect(await fetch('dev-2', after.keyId)).toBe('forbidden: the client certificate is revoked');
    expect(await fetch('dev-1', after.keyId)).toBe('served');
    const created = (await h.audit('firmware.group-key.created')).filter((r) => (r.data as { keyId: string }).keyId === after.keyId);
    expect(created.map((r) => r.data)).toEqual([{ keyId: after.keyId, members: 2, replaces: first.keyId, left: 1 }]);
    // a member that fetched the new key decrypts the release with it; the release names it
    expect(decryptKeyIdOf(after.release)).toBe(after.keyId);
    const d = devices.get('dev-1')!;
    const g = openGroupKeyEnvelope(await keys.fetch({ keyId: after.keyId, requester: { clientCertificate: d.cert } }), { certificate: Buffer.from(d.cert.raw), key: d.key });
    const root = Buffer.from(((await h.store.getCaState('hierarchy'))!.value as { root: { der: string } }).root.der, 'base64');
    const chain = [(await signerCaCertificate(h.store))!, root];
    expect(verifyFirmwareRelease(after.release, { chain, groupKey: g, roles: ['manufacturer', 'developer', 'administrator'], now: new Date() }).image).toEqual(Buffer.from(`image ${version}`));
  });

  it('a key record of the previous version (members inside): kept while nobody left, its members moved out of it; replaced once one left', async () => {
    await device('dev-p1', 'hooli');
    await device('dev-p2', 'hooli');
    const old = await legacyRecord('owner:hooli', ['dev-p1']);
    const kept = await groupRelease('owner:hooli');
    expect(kept.keyId).toBe(old.id); // dev-p1 is still a member: same key, dev-p2 joins
    const record = await h.store.getCaState(`firmware-group-key:${old.id}`);
    expect(record?.value).not.toHaveProperty('members');
    expect(await h.store.firmwareGroupKeyMembership(old.id, [])).toEqual({ members: 2, newcomers: [] });
    expect(await fetch('dev-p2', old.id)).toBe('served');
    const d = devices.get('dev-p1')!;
    expect(openGroupKeyEnvelope(await keys.fetch({ keyId: old.id, requester: { clientCertificate: d.cert } }), { certificate: Buffer.from(d.cert.raw), key: d.key }).key).toEqual(old.key);
    const audited = (await h.audit('firmware.group-key.members')).filter((r) => (r.data as { keyId: string }).keyId === old.id);
    expect(audited.map((r) => r.data)).toEqual([{ keyId: old.id, members: 2, added: 1 }]);

    // an old record naming a device that left: a new key, the leaver counted from the record's list
    await device('dev-q1', 'vandelay');
    const gone = await legacyRecord('owner:vandelay', ['dev-q1', 'dev-q-retired-long-ago']);
    const next = await groupRelease('owner:vandelay');
    expect(next.keyId).not.toBe(gone.id);
    const created = (await h.audit('firmware.group-key.created')).filter((r) => (r.data as { keyId: string }).keyId === next.keyId);
    expect(created.map((r) => r.data)).toEqual([{ keyId: next.keyId, members: 1, replaces: gone.id, left: 1 }]);
    expect(await fetch('dev-q1', next.keyId)).toBe('served');
  });

  it('the group key is stored wrapped: neither the store nor the audit log holds it in clear', async () => {
    const r = await groupRelease('owner:acme');
    const d = devices.get('dev-a')!;
    const g = openGroupKeyEnvelope(await keys.fetch({ keyId: r.keyId, requester: { clientCertificate: d.cert } }), { certificate: Buffer.from(d.cert.raw), key: d.key });
    const db = Buffer.concat([h.cfg.store.path, `${h.cfg.store.path}-wal`].filter((f) => fs.existsSync(f)).map((f) => fs.readFileSync(f)));
    expect(db.includes(g.key)).toBe(false);
    expect(db.includes(Buffer.from(g.key.toString('hex')))).toBe(false);
    expect(JSON.stringify(await h.audit())).not.toContain(g.key.toString('hex'));
    // another key-encryption key (a node without the same keys/firmware-group.key) cannot unwrap it
    const other = new FirmwareGroupKeys(h.store, () => crypto.randomBytes(32));
    expect(FIRMWARE_GROUP_KEK_FILE).toBe('firmware-group.key');
    await expect(other.fetch({ keyId: r.keyId, requester: { clientCertificate: d.cert } })).rejects.toThrow(`group key ${r.keyId} does not unwrap with keys/firmware-group.key`);
  });

  it('refuses a malformed group, and devices plus a group at once', async () => {
    let pkg = createFirmwarePackage(Buffer.from('x'), { name: 'fw', version: 999, hardware: [] });
    for (const p of parties) pkg = await signFirmwarePackage(pkg, p, new Date());
    await expect(releaseToBuffer(fw, { package: pkg, encryptToGroup: 'owners:acme', actor: 't' })).rejects.toThrow('a firmware group is fleet or owner:<name>');
    await expect(releaseToBuffer(fw, { package: pkg, encryptToGroup: 'owner:', actor: 't' })).rejects.toThrow('a firmware group is fleet or owner:<name>');
    await expect(releaseToBuffer(fw, { package: pkg, encryptToGroup: 'fleet', encryptTo: { deviceIds: ['dev-a'] }, actor: 't' })).rejects.toThrow('not both');
    await expect(releaseToBuffer(fw, { package: pkg, encryptToGroup: 'owner:nobody', actor: 't' })).rejects.toThrow('no active device with a valid certificate to encrypt to');
  });
});
