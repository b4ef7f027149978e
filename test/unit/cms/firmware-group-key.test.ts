import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CMS_OID } from '../../../src/cms/cms-algorithms';
import { children, readOne } from '../../../src/der/der-reader';
import { octetString, seq } from '../../../src/der/der-writer';
import {
  encryptedDataContentInfo,
  encryptedDataContentOf,
  groupKeyPackage,
  newGroupKey,
  openEncryptedData,
  openGroupKeyEnvelope,
  readGroupKeyPackage,
  wrapGroupKeyTo,
} from '../../../src/cms/firmware-group-key';
import { fileSource } from '../../../src/cms/byte-source';
import { CHUNK_BYTES, fdSink, wholeFile } from '../../../src/cms/file-range';
import { writeFileAtomicWith } from '../../../src/data-dir/atomic-file';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { buildGroupFirmwareRelease, decryptKeyIdOf } from '../../../src/cms/firmware-group-release';
import { buildFirmwareRelease, createFirmwarePackage, FirmwareSigner, readFirmwarePackage, signFirmwarePackage } from '../../../src/cms/firmware-package';
import { verifyFirmwareRelease, verifyFirmwareReleaseFile } from '../../../src/cms/firmware-release-verify';
import { parseSignedDataParts } from '../../../src/cms/signed-data-parts';
import { algorithmOfKey, softwareSigningKey } from '../../../src/keys/software-key-backend';
import { openssl, opensslStatus } from './cms-fixture';

/**
 * A release to a group key (docs/firmware.md "Group key"): the image in an EncryptedData under the group
 * key, named by the CA's signed decryptKeyID; each device's copy of the key in an RFC 6031 key package
 * wrapped to its certificate. Checked with real openssl: -decrypt opens the key package with the device
 * key, -EncryptedData_decrypt -secretkey opens the image.
 */
let dir: string;
let rootFile: string;
let n = 0;
interface Party extends FirmwareSigner {
  keyFile: string;
  certFile: string;
  privateKey: crypto.KeyObject;
}
function issue(cn: string, newkey: string[], eku = 'codeSigning,emailProtection', issuer?: Party): Party {
  const i = n++;
  const keyFile = path.join(dir, `${i}.key`);
  const csr = path.join(dir, `${i}.csr`);
  const certFile = path.join(dir, `${i}.crt`);
  const ext = path.join(dir, `${i}.ext`);
  const usage =
    eku === 'ca' ? 'basicConstraints=critical,CA:true\nkeyUsage=critical,keyCertSign,digitalSignature\n' : `keyUsage=critical,digitalSignature,keyAgreement,keyEncipherment\nextendedKeyUsage=${eku}\n`;
  fs.writeFileSync(ext, `${usage}subjectKeyIdentifier=hash\n`);
  openssl(['req', '-new', ...newkey, '-nodes', '-keyout', keyFile, '-out', csr, '-subj', `/CN=${cn}/OU=${cn}`]);
  openssl([
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    issuer?.certFile ?? rootFile,
    '-CAkey',
    issuer?.keyFile ?? path.join(dir, 'root.key'),
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    ext,
    '-out',
    certFile,
  ]);
  const key = crypto.createPrivateKey(fs.readFileSync(keyFile));
  const certificate = Buffer.from(new crypto.X509Certificate(fs.readFileSync(certFile)).raw);
  return { keyFile, certFile, certificate, privateKey: key, key: softwareSigningKey(key, algorithmOfKey(key), keyFile) };
}
const P256 = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
const RSA = ['-newkey', 'rsa:2048'];

let manufacturer: Party, developer: Party, administrator: Party, ca: Party, deviceEc: Party, deviceRsa: Party, stranger: Party;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-fwgroup-'));
  rootFile = path.join(dir, 'root.crt');
  openssl(['req', '-x509', ...P256, '-nodes', '-keyout', path.join(dir, 'root.key'), '-out', rootFile, '-subj', '/CN=fw root', '-days', '2']);
  ca = issue('signer-ca', P256, 'ca');
  manufacturer = issue('manufacturer', P256, undefined, ca);
  developer = issue('developer', P256, undefined, ca);
  administrator = issue('administrator', RSA, undefined, ca);
  deviceEc = issue('dev-ec', P256, 'clientAuth');
  deviceRsa = issue('dev-rsa', RSA, 'clientAuth');
  stranger = issue('dev-other', P256, 'clientAuth');
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const NOW = new Date(Date.now() + 60_000); // after the certificates made in beforeAll (their notBefore is the second they were made)
const META = { name: 'sensor-fw', version: 7, hardware: [] };
const file = (name: string, b: Buffer): string => (fs.writeFileSync(path.join(dir, name), b), path.join(dir, name));
function withFd<T>(f: string, use: (fd: number) => T): T {
  const fd = fs.openSync(f, 'r');
  try {
    return use(fd);
  } finally {
    fs.closeSync(fd);
  }
}
const CHAIN = (): Buffer[] => [ca.certificate, Buffer.from(new crypto.X509Certificate(fs.readFileSync(rootFile)).raw)];

async function groupRelease(image: Buffer, g = newGroupKey()): Promise<{ release: Buffer; g: ReturnType<typeof newGroupKey> }> {
  let pkg = createFirmwarePackage(image, META);
  for (const p of [manufacturer, developer, administrator]) pkg = await signFirmwarePackage(pkg, p, NOW);
  return { release: await buildGroupFirmwareRelease(readFirmwarePackage(pkg), ca, { groupKey: g, now: NOW }), g };
}

/** keyHexFromPackage: what an openssl user does with the decrypted key package: asn1parse shows the key's OCTET STRING as hex. */
function keyHexFromPackage(pkgFile: string): string {
  const parsed = openssl(['asn1parse', '-inform', 'DER', '-in', pkgFile]).toString();
  const m = /OCTET STRING\s+\[HEX DUMP\]:([0-9A-F]{64})/.exec(parsed);
  if (!m) throw new Error(`no key in ${parsed}`);
  return m[1];
}

describe('group key releases (RFC 4108 decryptKeyID, RFC 5652 EncryptedData, RFC 6031 key package)', () => {
  it('openssl verifies the release, opens each device key package with the device key, and decrypts the exact image with the key it holds', async () => {
    const image = crypto.randomBytes(300_001);
    const { release, g } = await groupRelease(image);
    openssl(['cms', '-verify', '-inform', 'DER', '-in', file('rel.der', release), '-CAfile', rootFile, '-out', path.join(dir, 'x.der')]);
    for (const dev of [deviceEc, deviceRsa]) {
      const wrapped = wrapGroupKeyTo(dev.certificate, g);
      openssl(['cms', '-decrypt', '-inform', 'DER', '-in', file('kp.der', wrapped), '-recip', dev.certFile, '-inkey', dev.keyFile, '-out', path.join(dir, 'k.der')]);
      const hex = keyHexFromPackage(path.join(dir, 'k.der'));
      expect(hex.toLowerCase()).toBe(g.key.toString('hex'));
      const out = openssl(['cms', '-EncryptedData_decrypt', '-inform', 'DER', '-in', path.join(dir, 'x.der'), '-secretkey', hex]);
      expect(out.equals(image)).toBe(true);
      // and device-ca's own reader, with the software key
      expect(openGroupKeyEnvelope(wrapped, { certificate: dev.certificate, key: dev.privateKey })).toEqual(g);
    }
    // another device's key does not open a key package wrapped to someone else
    const denied = opensslStatus(['cms', '-decrypt', '-inform', 'DER', '-in', file('kp.der', wrapGroupKeyTo(deviceEc.certificate, g)), '-recip', stranger.certFile, '-inkey', stranger.keyFile]);
    expect(denied.status).not.toBe(0);
    // the CA's signature covers the decrypt key identifier, and openssl shows it
    const printed = openssl(['cms', '-cmsout', '-print', '-inform', 'DER', '-in', path.join(dir, 'rel.der')]).toString();
    expect(printed).toContain(CMS_OID.decryptKeyId);
  });

  it('the release does not grow with the fleet: its size is the image plus a constant', async () => {
    const image = crypto.randomBytes(10_000);
    const { release } = await groupRelease(image);
    const image2 = crypto.randomBytes(10_000);
    const { release: other } = await groupRelease(image2);
    expect(Math.abs(release.length - other.length)).toBeLessThan(8);
    expect(release.length).toBeLessThan(image.length + 8_000);
  });

  it('verifyFirmwareRelease: names the key to fetch, opens with the right key, refuses another', async () => {
    const image = crypto.randomBytes(5_000);
    const { release, g } = await groupRelease(image);
    expect(decryptKeyIdOf(release)).toBe(g.id);
    const check = { chain: CHAIN(), roles: ['manufacturer', 'developer', 'administrator'], now: NOW };
    expect(() => verifyFirmwareRelease(release, check)).toThrow(`the release is encrypted to group key ${g.id}: fetch it first (GET /firmware/keys/${g.id})`);
    const v = verifyFirmwareRelease(release, { ...check, groupKey: g });
    expect(v.image.equals(image)).toBe(true);
    expect(v.encrypted).toBe(true);
    const other = newGroupKey();
    expect(() => verifyFirmwareRelease(release, { ...check, groupKey: other })).toThrow(`the release is encrypted to group key ${g.id}, not ${other.id}`);
    expect(() => verifyFirmwareRelease(release, { ...check, groupKey: { id: g.id, key: other.key } })).toThrow('does not decrypt with this group key');
    // a per-device release names no group key
    let pkg = createFirmwarePackage(image, META);
    for (const p of [manufacturer, developer, administrator]) pkg = await signFirmwarePackage(pkg, p, NOW);
    const perDevice = await buildFirmwareRelease(readFirmwarePackage(pkg), ca, { now: NOW, recipients: [deviceEc.certificate] });
    expect(decryptKeyIdOf(perDevice)).toBeNull();
    // a group key given for a release not encrypted to one (firmware verify --key-package on the wrong file) is refused, not ignored
    expect(() => verifyFirmwareRelease(perDevice, { ...check, groupKey: g, recipient: { certificate: deviceEc.certificate, key: deviceEc.privateKey } })).toThrow(
      `a group key (${g.id}) was given but the release is not encrypted to a group key`,
    );
  });

  it('verifyFirmwareReleaseFile streams a group release of several MiB chunk by chunk to the file; a key that does not open it leaves no file', async () => {
    const image = crypto.randomBytes((2 << 20) + 12_345);
    const { release, g } = await groupRelease(image);
    const relFile = file('big-group.der', release);
    const check = { chain: CHAIN(), roles: ['manufacturer', 'developer', 'administrator'], now: NOW };
    const out = path.join(dir, 'big-group.bin');
    const pieces: number[] = [];
    const v = withFd(relFile, (fd) =>
      writeFileAtomicWith(out, (o) => {
        const sink = fdSink(o);
        return verifyFirmwareReleaseFile(fd, { ...check, groupKey: g }, (c) => (pieces.push(c.length), sink(c)));
      }),
    );
    expect(v.encrypted).toBe(true);
    expect(fs.readFileSync(out).equals(image)).toBe(true);
    expect(pieces.length).toBeGreaterThan(2); // deciphered as read, not whole
    expect(Math.max(...pieces)).toBeLessThanOrEqual(CHUNK_BYTES + 16);
    fs.rmSync(out);
    // the right key id with other key bytes: every block deciphers to garbage, the padding of the last one does not check
    const sent: number[] = [];
    expect(() =>
      withFd(relFile, (fd) => writeFileAtomicWith(out, (o) => verifyFirmwareReleaseFile(fd, { ...check, groupKey: { id: g.id, key: newGroupKey().key } }, (c) => (sent.push(c.length), fdSink(o)(c))))),
    ).toThrow(new DeviceCaError('bad-request', 'the encrypted content does not decrypt with this group key'));
    expect(sent.reduce((a, b) => a + b, 0)).toBeGreaterThan(1 << 20); // it failed at the end, after most of the image went out
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('big-group.bin'))).toEqual([]);
  });

  it('encryptedDataContentOf: a changed last block fails the padding check at the end, nothing kept; a changed header is refused before any output', () => {
    const g = newGroupKey();
    const image = crypto.randomBytes((1 << 20) + 100);
    const ci = encryptedDataContentInfo(image, CMS_OID.firmwarePackage, g.key);
    const opened = (b: Buffer) => withFd(file('ed.der', b), (fd) => encryptedDataContentOf(fileSource(wholeFile(fd)), g.key));
    const plain: Buffer[] = [];
    withFd(file('ed.der', ci), (fd) => encryptedDataContentOf(fileSource(wholeFile(fd)), g.key).decrypt((c) => plain.push(Buffer.from(c))));
    expect(Buffer.concat(plain).equals(image)).toBe(true);
    expect(opened(ci).contentType).toBe(CMS_OID.firmwarePackage);
    const tampered = Buffer.from(ci);
    // CBC: the last byte of the block before the last xor-ed with the padding byte makes the padding byte 0, which never
    // checks (a random change of the last block decrypts to valid padding about once in 256 runs)
    tampered[tampered.length - 17] ^= 16 - (image.length % 16);
    const out = path.join(dir, 'ed.bin');
    expect(() => withFd(file('ed.der', tampered), (fd) => writeFileAtomicWith(out, (o) => encryptedDataContentOf(fileSource(wholeFile(fd)), g.key).decrypt(fdSink(o))))).toThrow(
      new DeviceCaError('bad-request', 'the encrypted content does not decrypt with this group key'),
    );
    expect(fs.existsSync(out)).toBe(false);
    // truncated, or not an EncryptedData: refused from the headers
    expect(() => opened(ci.subarray(0, ci.length - 16))).toThrow(/malformed DER|EncryptedData/);
    expect(() => opened(wrapGroupKeyTo(deviceEc.certificate, g))).toThrow('the release does not hold an EncryptedData');
    expect(() => withFd(file('ed.der', ci), (fd) => encryptedDataContentOf(fileSource(wholeFile(fd)), g.key.subarray(1)))).toThrow('32 bytes');
    // the in-memory reader gives the same
    expect(openEncryptedData(ci, g.key).content.equals(image)).toBe(true);
  });

  it('a tampered ciphertext or decrypt key identifier fails the CA signature', async () => {
    const { release, g } = await groupRelease(crypto.randomBytes(2_000));
    const check = { chain: CHAIN(), roles: ['manufacturer', 'developer', 'administrator'], now: NOW, groupKey: g };
    const parts = parseSignedDataParts(release);
    const at = release.indexOf(parts.eContent!) + parts.eContent!.length - 20;
    const flipped = Buffer.from(release);
    flipped[at] ^= 1;
    expect(() => verifyFirmwareRelease(flipped, check)).toThrow();
    const idAt = release.indexOf(Buffer.from(g.id, 'hex'));
    const renamed = Buffer.from(release);
    renamed[idAt] ^= 1;
    expect(() => verifyFirmwareRelease(renamed, check)).toThrow();
  });

  it('key packages: round trip; refuses several keys, a missing identifier, a short key', () => {
    const g = newGroupKey();
    expect(readGroupKeyPackage(groupKeyPackage(g))).toEqual(g);
    expect(() => groupKeyPackage({ id: g.id, key: g.key.subarray(1) })).toThrow('32 bytes');
    expect(() => groupKeyPackage({ id: '__proto__', key: g.key })).toThrow('32 lower-case hex digits');
    const two = Buffer.from(groupKeyPackage(g));
    // sKeys with the one key twice
    const oneKey = Buffer.from(children(children(readOne(two))[0])[0].full);
    expect(() => readGroupKeyPackage(seq(seq(oneKey, oneKey)))).toThrow('exactly one key');
    // RFC 6031's optional version and package attributes before sKeys are read past; anything else is refused
    const sKeys = Buffer.from(children(readOne(two))[0].full);
    expect(readGroupKeyPackage(seq(Buffer.from([0x02, 0x01, 0x01]), sKeys))).toEqual(g);
    expect(readGroupKeyPackage(seq(Buffer.from([0x02, 0x01, 0x01]), Buffer.from([0xa0, 0x00]), sKeys))).toEqual(g);
    expect(() => readGroupKeyPackage(seq(octetString(Buffer.alloc(1)), sKeys))).toThrow('cannot be read (RFC 6031)');
    // a key without id-pskc-keyId
    expect(() => readGroupKeyPackage(seq(seq(seq(seq(), octetString(g.key)))))).toThrow('no identifier');
    expect(() => readGroupKeyPackage(two.subarray(0, two.length - 1))).toThrow();
    expect(() => openEncryptedData(Buffer.from([0x30, 0x00]), g.key)).toThrow();
  });
});
