import * as x509 from '@peculiar/x509';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CMS_OID } from '../../../src/cms/cms-algorithms';
import { envelopeToCertificates } from '../../../src/cms/enveloped-data';
import { bufferSource, ByteSource, fileSource } from '../../../src/cms/byte-source';
import { fdSink, wholeFile } from '../../../src/cms/file-range';
import { envelopeContentOf } from '../../../src/cms/firmware-envelope-open';
import { buildFirmwareRelease, createFirmwarePackage, FirmwarePackage, FirmwareSigner, readFirmwarePackage, signFirmwarePackage } from '../../../src/cms/firmware-package';
import { openReleaseFile, ReleaseCheck, verifyFirmwareRelease, verifyFirmwareReleaseFile } from '../../../src/cms/firmware-release-verify';
import { encodeSignedData } from '../../../src/cms/signed-data-parts';
import { buildSignerInfo } from '../../../src/cms/signer-info';
import { writeFileAtomicWith } from '../../../src/data-dir/atomic-file';
import { set, time } from '../../../src/der/der-writer';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { softwareSigningKey } from '../../../src/keys/software-key-backend';
import { mutateBytes } from '../../fuzz/byte-mutations';
import { SeededRandom } from '../../fuzz/seeded-random';
import { makeTmpDir, TmpDir } from '../../helpers/tmp';

/**
 * verifyFirmwareReleaseFile (what `firmware verify` and the agent run): the release read from its file,
 * the image streamed out, with the verdicts and bytes of the in-memory verifyFirmwareRelease; and, written
 * as the CLI and the agent write it (a temporary file renamed only when the checks pass), a release that
 * fails after part of its image was decrypted leaves nothing at --out.
 */

const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
interface Holder {
  certificate: Buffer;
  key: crypto.KeyObject;
  webKeys: crypto.webcrypto.CryptoKeyPair;
}
async function keys(): Promise<crypto.webcrypto.CryptoKeyPair> {
  return (await crypto.webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as crypto.webcrypto.CryptoKeyPair;
}
async function holder(name: string, issuer: Holder | null, ca: boolean): Promise<Holder> {
  const webKeys = await keys();
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

let tmp: TmpDir;
let root: Holder, signerCa: Holder, device: Holder, stranger: Holder;
const parties: Holder[] = [];
let check: ReleaseCheck;
const image = crypto.randomBytes(3 * (1 << 20) + 12_345); // several chunks, not a whole number of them

async function signedPackage(content: Buffer): Promise<FirmwarePackage> {
  let pkg = createFirmwarePackage(content, { name: 'fw', version: 3, hardware: [] });
  for (const p of parties) pkg = await signFirmwarePackage(pkg, signer(p), new Date());
  return readFirmwarePackage(pkg);
}

beforeAll(async () => {
  tmp = makeTmpDir();
  root = await holder('CN=root', null, true);
  signerCa = await holder('CN=signer CA', root, true);
  for (const role of ['manufacturer', 'developer', 'administrator']) parties.push(await holder(`CN=${role}-1, OU=${role}`, signerCa, false));
  device = await holder('CN=dev-1', root, false);
  stranger = await holder('CN=dev-2', root, false);
  check = { chain: [signerCa.certificate, root.certificate], recipient: { certificate: device.certificate, key: device.key }, roles: ['manufacturer', 'developer', 'administrator'], now: new Date() };
});
afterAll(() => tmp.cleanup());

/** verifyToFile: what the CLI does: the release file in, the image through a temporary file renamed to `out`. */
function verifyToFile(release: Buffer, out: string, c: ReleaseCheck = check): ReturnType<typeof verifyFirmwareReleaseFile> {
  const fd = fs.openSync(tmp.write(`in/${crypto.randomUUID()}.der`, release), 'r');
  try {
    return writeFileAtomicWith(out, (o) => verifyFirmwareReleaseFile(fd, c, fdSink(o)));
  } finally {
    fs.closeSync(fd);
  }
}
function refusal(fn: () => unknown): string {
  try {
    fn();
    return 'accepted';
  } catch (e) {
    return e instanceof DeviceCaError ? `${e.code}: ${e.message}` : `other: ${String(e)}`;
  }
}

it.each([
  ['plain', false],
  ['encrypted', true],
])('a %s release: the file gives the exact image, and the same approvals, as the in-memory verifier', async (_, encrypted) => {
  const pkg = await signedPackage(image);
  const release = await buildFirmwareRelease(pkg, signer(signerCa, [root.certificate]), { now: new Date(), recipients: encrypted ? [stranger.certificate, device.certificate] : undefined });
  const out = tmp.file(`out/${encrypted}.bin`);
  const v = verifyToFile(release, out);
  expect(fs.readFileSync(out).equals(image)).toBe(true);
  const inMemory = verifyFirmwareRelease(release, check);
  expect(inMemory.image.equals(image)).toBe(true);
  expect(v).toEqual({ metadata: inMemory.metadata, encrypted, approvals: inMemory.approvals });
  expect(v.approvals.map((a) => a.role)).toEqual(['manufacturer', 'developer', 'administrator']);
});

it('the same refusals as the in-memory verifier, and an earlier image at --out is left as it was', async () => {
  const release = await buildFirmwareRelease(await signedPackage(image), signer(signerCa, [root.certificate]), { now: new Date(), recipients: [device.certificate] });
  const out = tmp.write('out/kept.bin', 'the installed image');
  const cases: [string, ReleaseCheck][] = [
    ['another role required', { ...check, roles: ['manufacturer', 'qa'] }],
    ['anti-rollback', { ...check, installed: 3 }],
    ['not a recipient', { ...check, recipient: { certificate: stranger.certificate, key: stranger.key } }],
    ['no chain', { ...check, chain: [root.certificate] }],
  ];
  for (const [what, c] of cases) {
    const fromFile = refusal(() => verifyToFile(release, out, c));
    expect([what, fromFile]).toEqual([what, refusal(() => verifyFirmwareRelease(release, c))]);
    expect(fromFile).not.toBe('accepted');
  }
  const truncated = refusal(() => verifyToFile(release.subarray(0, release.length - 1), out));
  expect(truncated).toMatch(/^bad-request: /);
  const tampered = Buffer.from(release);
  tampered[tampered.length >> 1] ^= 1; // inside the ciphertext, which the CA signed
  expect(refusal(() => verifyToFile(tampered, out))).toBe('bad-signature: message digest does not match the content');
  expect(fs.readFileSync(out, 'utf8')).toBe('the installed image');
  expect(fs.readdirSync(path.dirname(out)).filter((f) => f.includes('.tmp-'))).toEqual([]);
});

it('a plain release whose file changes after its signatures were checked is refused, and nothing is installed', async () => {
  const release = await buildFirmwareRelease(await signedPackage(image), signer(signerCa, [root.certificate]), { now: new Date() });
  const file = tmp.write(`in/${crypto.randomUUID()}.der`, release);
  const out = tmp.write('out/swapped.bin', 'the installed image');
  const fd = fs.openSync(file, 'r+');
  try {
    const opened = openReleaseFile(fd, check);
    // the image is the release's eContent: change one of its bytes in the file, as another writer would
    const at = release.indexOf(image.subarray(0, 64)) + 100_000;
    fs.writeSync(fd, Buffer.from([release[at] ^ 1]), 0, 1, at);
    expect(refusal(() => writeFileAtomicWith(out, (o) => opened.verifyImage(fdSink(o))))).toBe('bad-signature: the release changed while it was read');
  } finally {
    fs.closeSync(fd);
  }
  expect(fs.readFileSync(out, 'utf8')).toBe('the installed image');
});

/** caSigned: an encrypted release whose envelope the CA signed as given: the checks after decryption decide. */
async function caSigned(pkg: FirmwarePackage, envelope: Buffer): Promise<Buffer> {
  const approvals = { type: CMS_OID.approvals, values: [set(...pkg.parts.signerInfos)] };
  const st = { type: CMS_OID.signingTime, values: [time(new Date())] };
  const { signerInfo, digestAlgorithm } = await buildSignerInfo({ contentType: CMS_OID.data, content: envelope, signer: signer(signerCa), attributes: [...pkg.attributes, approvals, st] });
  return encodeSignedData({
    digestAlgorithms: [digestAlgorithm],
    eContentType: CMS_OID.data,
    eContent: envelope,
    certificates: [...pkg.parts.certificates, signerCa.certificate, root.certificate],
    crls: [],
    signerInfos: [signerInfo],
  });
}

it('a bad padding, or an image other than the approved one, is found after decrypting: nothing is left at --out', async () => {
  const pkg = await signedPackage(image);
  const good = envelopeToCertificates(image, CMS_OID.firmwarePackage, [device.certificate]);
  const badPadding = Buffer.from(good);
  // CBC: the last plaintext block is D(C_n) xor C_(n-1), so xor-ing the last byte of the block before the last (the
  // encrypted content ends the DER) with the padding byte makes the padding byte 0, which never checks (a random
  // change of the last block would still decrypt to valid padding about once in 256 runs)
  badPadding[badPadding.length - 17] ^= 16 - (image.length % 16);
  const otherImage = Buffer.from(image);
  otherImage[image.length >> 1] ^= 1; // same length, one bit: decrypts, but not what the parties approved
  const cases: [string, Buffer, string][] = [
    ['bad padding', badPadding, 'bad-request: the encrypted content does not decrypt'],
    ['another image', envelopeToCertificates(otherImage, CMS_OID.firmwarePackage, [device.certificate]), 'bad-signature: message digest does not match the content'],
  ];
  for (const [what, envelope, expected] of cases) {
    const release = await caSigned(pkg, envelope);
    const out = tmp.file(`bad/${what}.bin`);
    const written: number[] = [];
    // the image did reach the sink (these refusals come after decrypting it)...
    const fd = fs.openSync(tmp.write(`in/${what}.der`, release), 'r');
    expect(refusal(() => verifyFirmwareReleaseFile(fd, check, (c) => written.push(c.length)))).toBe(expected);
    fs.closeSync(fd);
    expect(written.reduce((a, b) => a + b, 0)).toBeGreaterThan(1 << 20);
    // ...and, written as the CLI and the agent write it, nothing of it remains
    expect([what, refusal(() => verifyToFile(release, out))]).toEqual([what, expected]);
    expect(fs.readdirSync(path.dirname(out))).toEqual([]);
  }
  // the same construction with the untouched envelope is accepted: the refusals above are the tampering's
  expect(verifyToFile(await caSigned(pkg, good), tmp.file('bad/good.bin')).approvals.length).toBe(3);
});

it('fuzz: mutated releases and envelopes are refused with a DeviceCaError (file and Buffer alike), never accepted with another image', async () => {
  const small = crypto.randomBytes(5000);
  const pkg = await signedPackage(small);
  const ca = signer(signerCa, [root.certificate]);
  const releases = [await buildFirmwareRelease(pkg, ca, { now: new Date() }), await buildFirmwareRelease(pkg, ca, { now: new Date(), recipients: [stranger.certificate, device.certificate] })];
  const envelope = envelopeToCertificates(small, CMS_OID.firmwarePackage, [stranger.certificate, device.certificate]);
  const rng = new SeededRandom(Number(process.env.FUZZ_SEED ?? 5083));
  const verdict = (f: () => Buffer): string => {
    try {
      const out = f();
      return out.equals(small) ? 'accepted' : `accepted another ${out.length}`;
    } catch (e) {
      return e instanceof DeviceCaError ? `refused ${e.code}` : `other ${String(e)}`;
    }
  };
  const problems: string[] = [];
  let refused = 0;
  for (let i = 0; i < 400; i++) {
    const m = mutateBytes(rng, releases[i % 2]);
    const out = tmp.file(`fuzz/${i}.bin`);
    const fromFile = verdict(() => (verifyToFile(m.bytes, out), fs.readFileSync(out)));
    const inMemory = verdict(() => verifyFirmwareRelease(m.bytes, check).image);
    if (fromFile.startsWith('refused')) refused++;
    if (fromFile !== inMemory || !/^(accepted|refused [a-z-]+)$/.test(fromFile)) problems.push(`release case ${i} (${m.how}): file ${fromFile}, buffer ${inMemory}`);
  }
  // the envelope alone (behind the CA's signature in a release): its reader over a file and over a Buffer
  const file = tmp.file('fuzz/env.der');
  for (let i = 0; i < 600; i++) {
    const m = mutateBytes(rng, envelope);
    fs.writeFileSync(file, m.bytes);
    const fd = fs.openSync(file, 'r');
    try {
      const read = (src: ByteSource) => (): Buffer => {
        const parts: Buffer[] = [];
        envelopeContentOf(src, check.recipient!).decrypt((c) => parts.push(Buffer.from(c)));
        return Buffer.concat(parts);
      };
      const [fromFile, inMemory] = [verdict(read(fileSource(wholeFile(fd)))), verdict(read(bufferSource(m.bytes)))];
      if (fromFile !== inMemory || fromFile.startsWith('other')) problems.push(`envelope case ${i} (${m.how}): file ${fromFile}, buffer ${inMemory}`);
    } finally {
      fs.closeSync(fd);
    }
  }
  expect(problems).toEqual([]);
  expect(refused).toBeGreaterThan(200); // the mutations reach the checks
});
