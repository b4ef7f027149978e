import * as x509 from '@peculiar/x509';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { bufferSource } from '../../../src/cms/byte-source';
import { moveWithin } from '../../../src/cms/file-range';
import { newGroupKey } from '../../../src/cms/firmware-group-key';
import { buildGroupFirmwareRelease } from '../../../src/cms/firmware-group-release';
import { buildFirmwareRelease, createFirmwarePackage, FirmwareSigner, readFirmwarePackage, signFirmwarePackage } from '../../../src/cms/firmware-package';
import { readFirmwarePackageSource } from '../../../src/cms/firmware-package-file';
import { ReleaseFileOptions, writeFirmwareReleaseFile } from '../../../src/cms/firmware-release-file';
import { ReleaseCheck, verifyFirmwareRelease } from '../../../src/cms/firmware-release-verify';
import { parseSignedDataParts } from '../../../src/cms/signed-data-parts';
import { children, readOne, Tlv } from '../../../src/der/der-reader';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { softwareSigningKey } from '../../../src/keys/software-key-backend';
import { makeTmpDir, TmpDir } from '../../helpers/tmp';
import { CmsParty, makeParty, openssl, removeParty } from './cms-fixture';

/**
 * writeFirmwareReleaseFile (what `firmware release` runs): the release written into a file piece by piece
 * against the in-memory buildFirmwareRelease / buildGroupFirmwareRelease: the same DER structure (the
 * content key, IVs and signatures are random, so not the same bytes), the same verdict of the in-process
 * verifier, and openssl's verdict on both (cms -verify with the root, then -decrypt with an EC and an RSA
 * device key, or -EncryptedData_decrypt with the group key); a package that changes under the writer is
 * refused.
 */

const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
interface Holder {
  certificate: Buffer;
  key: crypto.KeyObject;
  webKeys: crypto.webcrypto.CryptoKeyPair;
}
async function holder(name: string, issuer: Holder | null, ca: boolean): Promise<Holder> {
  const webKeys = (await crypto.webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as crypto.webcrypto.CryptoKeyPair;
  const common = { serialNumber: crypto.randomBytes(8).toString('hex'), notBefore: new Date(Date.now() - 3600_000), notAfter: new Date(Date.now() + 86400_000), signingAlgorithm: alg };
  const extensions = ca ? [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true)] : [];
  const cert = issuer
    ? await x509.X509CertificateGenerator.create({
        ...common,
        subject: name,
        issuer: new x509.X509Certificate(issuer.certificate).subject,
        publicKey: webKeys.publicKey,
        signingKey: issuer.webKeys.privateKey,
        extensions,
      })
    : await x509.X509CertificateGenerator.createSelfSigned({ ...common, name, keys: webKeys, extensions });
  const pkcs8 = Buffer.from(await crypto.webcrypto.subtle.exportKey('pkcs8', webKeys.privateKey));
  return { certificate: Buffer.from(cert.rawData), key: crypto.createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }), webKeys };
}
const signer = (h: Holder, chain: Buffer[] = []): FirmwareSigner => ({ certificate: h.certificate, key: softwareSigningKey(h.key, 'ecdsa-p256', 'test'), chain });
const pem = (der: Buffer): string => new x509.X509Certificate(der).toString('pem');

let tmp: TmpDir;
let root: Holder, signerCa: Holder;
let deviceEc: CmsParty, deviceRsa: CmsParty;
const parties: Holder[] = [];
let rootFile: string;
// several 1 MiB chunks, ending inside one, and not a whole number of AES blocks
const image = crypto.randomBytes((2 << 20) + 77);
let pkg: Buffer;

beforeAll(async () => {
  tmp = makeTmpDir();
  root = await holder('CN=root', null, true);
  signerCa = await holder('CN=signer CA', root, true);
  for (const role of ['manufacturer', 'developer', 'administrator']) parties.push(await holder(`CN=${role}-1, OU=${role}`, signerCa, false));
  deviceEc = makeParty('dev-ec', 'P-256');
  deviceRsa = makeParty('dev-rsa', 2048);
  rootFile = tmp.write('root.pem', pem(root.certificate));
  pkg = createFirmwarePackage(image, { name: 'fw', version: 4, hardware: [{ type: '1.3.6.1.4.1.99999.1' }] });
  for (const p of parties) pkg = await signFirmwarePackage(pkg, signer(p), new Date());
});
afterAll(() => {
  tmp.cleanup();
  [deviceEc, deviceRsa].forEach(removeParty);
});

const ca = (): FirmwareSigner => signer(signerCa, [root.certificate]);
const check = (extra: Partial<ReleaseCheck> = {}): ReleaseCheck => ({
  chain: [signerCa.certificate, root.certificate],
  roles: ['manufacturer', 'developer', 'administrator'],
  now: new Date(),
  ...extra,
});

/** streamed: the release written by writeFirmwareReleaseFile into a file, read back (its length as returned). */
async function streamed(p: Buffer, opts: ReleaseFileOptions): Promise<Buffer> {
  const file = tmp.file(`rel-${crypto.randomUUID()}.der`);
  const fd = fs.openSync(file, 'w+');
  let n: number;
  try {
    n = await writeFirmwareReleaseFile(readFirmwarePackageSource(bufferSource(p), ['sha256']), ca(), opts, fd);
  } finally {
    fs.closeSync(fd);
  }
  const out = fs.readFileSync(file);
  expect(out.length).toBe(n);
  return out;
}

/** shape: the DER tags of every element, constructed ones walked into (values and lengths left out: keys, IVs and signatures are random). */
function shape(t: Tlv): unknown {
  return t.tag & 0x20 ? [t.tag, ...children(t, 100_000).map(shape)] : t.tag;
}
/** structure: the release's shape, and for an encrypted one the shape of the ContentInfo it carries and that ContentInfo's length. */
function structure(release: Buffer): unknown {
  const p = parseSignedDataParts(release);
  const inner = p.eContentType === '1.2.840.113549.1.7.1' && p.eContent ? { shape: shape(readOne(p.eContent)), length: p.eContent.length } : null;
  return { shape: shape(readOne(release)), inner, certificates: p.certificates, digestAlgorithms: p.digestAlgorithms, crls: p.crls };
}

/** viaOpenssl: openssl cms -verify with the root only, then the decryption asked for; the image it gives. */
function viaOpenssl(release: Buffer, decrypt: string[] | null): Buffer {
  const rel = tmp.write(`o-${crypto.randomUUID()}.der`, release);
  const verified = tmp.file(`o-${crypto.randomUUID()}.bin`);
  openssl(['cms', '-verify', '-binary', '-inform', 'DER', '-in', rel, '-CAfile', rootFile, '-purpose', 'any', '-out', verified]);
  if (!decrypt) return fs.readFileSync(verified);
  const out = tmp.file(`o-${crypto.randomUUID()}.bin`);
  openssl(['cms', ...decrypt, '-binary', '-inform', 'DER', '-in', verified, '-out', out]);
  return fs.readFileSync(out);
}

it('plain: the structure of the in-memory release, the same verdicts, and openssl verifies both and gives the image', async () => {
  const ours = await streamed(pkg, { now: new Date() });
  const theirs = await buildFirmwareRelease(readFirmwarePackage(pkg), ca(), { now: new Date() });
  expect(structure(ours)).toEqual(structure(theirs));
  // the parties' SignerInfos are carried byte for byte, and the image is the eContent
  expect(parseSignedDataParts(ours).signerInfos.slice(0, 3)).toEqual(parseSignedDataParts(theirs).signerInfos.slice(0, 3));
  const v = verifyFirmwareRelease(ours, check());
  expect(v.image.equals(image)).toBe(true);
  expect({ ...v, image: null }).toEqual({ ...verifyFirmwareRelease(theirs, check()), image: null });
  for (const r of [ours, theirs]) expect(viaOpenssl(r, null).equals(image)).toBe(true);
});

it('encrypted to an EC and an RSA device: the structure of the in-memory release, and each device decrypts both with openssl', async () => {
  const recipients = [deviceEc.certDer, deviceRsa.certDer];
  const ours = await streamed(pkg, { now: new Date(), recipients });
  const theirs = await buildFirmwareRelease(readFirmwarePackage(pkg), ca(), { now: new Date(), recipients });
  expect(structure(ours)).toEqual(structure(theirs));
  for (const d of [deviceEc, deviceRsa]) {
    const c = check({ recipient: { certificate: d.certDer, key: d.key } });
    const v = verifyFirmwareRelease(ours, c);
    expect(v.image.equals(image)).toBe(true);
    expect({ ...v, image: null }).toEqual({ ...verifyFirmwareRelease(theirs, c), image: null });
    for (const r of [ours, theirs]) expect(viaOpenssl(r, ['-decrypt', '-recip', d.certFile, '-inkey', d.keyFile]).equals(image)).toBe(true);
  }
});

it('to a group key: the structure of the in-memory release, and openssl -EncryptedData_decrypt with the key gives the image', async () => {
  const groupKey = newGroupKey();
  const ours = await streamed(pkg, { now: new Date(), groupKey });
  const theirs = await buildGroupFirmwareRelease(readFirmwarePackage(pkg), ca(), { now: new Date(), groupKey });
  expect(structure(ours)).toEqual(structure(theirs));
  const v = verifyFirmwareRelease(ours, check({ groupKey }));
  expect(v.image.equals(image)).toBe(true);
  expect({ ...v, image: null }).toEqual({ ...verifyFirmwareRelease(theirs, check({ groupKey })), image: null });
  for (const r of [ours, theirs]) expect(viaOpenssl(r, ['-EncryptedData_decrypt', '-secretkey', groupKey.key.toString('hex')]).equals(image)).toBe(true);
});

it('a head laid out longer or shorter than the signed one (a DER length crossing 64 KiB): the content is moved and the release still verifies', async () => {
  const small = crypto.randomBytes(3000);
  let p = createFirmwarePackage(small, { name: 'fw', version: 4, hardware: [] });
  for (const party of parties) p = await signFirmwarePackage(p, signer(party), new Date());
  const c = check({ recipient: { certificate: deviceEc.certDer, key: deviceEc.key } });
  // laid out with a 70 KB SignerInfo: 3-byte lengths where the release has 2-byte ones; the content moves back
  const back = await streamed(p, { now: new Date(), recipients: [deviceEc.certDer], signerInfoGuess: 70_000 });
  expect(verifyFirmwareRelease(back, c).image.equals(small)).toBe(true);

  // an image whose release is just above 64 KiB, laid out with an empty SignerInfo (below 64 KiB): the content moves forward
  const probe = await streamed(p, { now: new Date(), recipients: [deviceEc.certDer] });
  const signerInfoLength = parseSignedDataParts(probe).signerInfos[0].length;
  const imageLength = small.length + (65536 - probe.length) + Math.floor(signerInfoLength / 2);
  const big = crypto.randomBytes(imageLength);
  let q = createFirmwarePackage(big, { name: 'fw', version: 4, hardware: [] });
  for (const party of parties) q = await signFirmwarePackage(q, signer(party), new Date());
  const forward = await streamed(q, { now: new Date(), recipients: [deviceEc.certDer], signerInfoGuess: 0 });
  expect(forward.length).toBeGreaterThan(65536);
  expect(forward.length - signerInfoLength).toBeLessThan(65536);
  expect(verifyFirmwareRelease(forward, c).image.equals(big)).toBe(true);
  expect(viaOpenssl(forward, ['-decrypt', '-recip', deviceEc.certFile, '-inkey', deviceEc.keyFile]).equals(big)).toBe(true);
});

it.each([
  ['plain', false],
  ['encrypted', true],
])('a %s release of a package that changed after its signatures were verified is refused', async (_, encrypted) => {
  const copy = Buffer.from(pkg);
  const read = readFirmwarePackageSource(bufferSource(copy), ['sha256']);
  copy[copy.indexOf(image.subarray(0, 64)) + 1_500_000] ^= 1; // in the second chunk of the image
  const fd = fs.openSync(tmp.file(`changed-${crypto.randomUUID()}.der`), 'w+');
  try {
    const e = await writeFirmwareReleaseFile(read, ca(), { now: new Date(), ...(encrypted ? { recipients: [deviceEc.certDer] } : {}) }, fd).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DeviceCaError);
    expect(e).toMatchObject({ code: 'bad-request', message: 'the package changed while it was read' });
  } finally {
    fs.closeSync(fd);
  }
});

it('moveWithin moves overlapping ranges of a file both ways, across read chunks', () => {
  const data = crypto.randomBytes((2 << 20) + 333);
  for (const [from, to] of [
    [10, 13],
    [13, 10],
    [5, 5 + (1 << 20) + 1],
    [5 + (1 << 20) + 1, 5],
  ]) {
    const file = tmp.file(`move-${from}-${to}`);
    const before = Buffer.concat([crypto.randomBytes(Math.max(from, to)), data, crypto.randomBytes(Math.max(from, to))]);
    fs.writeFileSync(file, before);
    const fd = fs.openSync(file, 'r+');
    try {
      moveWithin(fd, from, to, data.length);
    } finally {
      fs.closeSync(fd);
    }
    const after = fs.readFileSync(file);
    expect(after.subarray(to, to + data.length).equals(before.subarray(from, from + data.length))).toBe(true);
  }
});
