import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildFirmwareRelease, createFirmwarePackage, FirmwareSigner, readFirmwarePackage, signFirmwarePackage } from '../../../src/cms/firmware-package';
import { buildPlainReleaseFile, createFirmwarePackageFile, readFirmwarePackageFile, signFirmwarePackageFile } from '../../../src/cms/firmware-package-file';
import { fdSink, wholeFile } from '../../../src/cms/file-range';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { algorithmOfKey, softwareSigningKey } from '../../../src/keys/software-key-backend';
import { CmsParty, makeParty, openssl, removeParty } from './cms-fixture';

/**
 * The streamed package operations (files in, sink out) against the Buffer ones: the same bytes for the
 * same inputs (RSA PKCS#1 v1.5 signatures are deterministic, so a signed package can be compared byte
 * for byte), openssl's verdict on the streamed files, and typed errors for broken files.
 */
let dir: string;
let rsa: CmsParty, p256: CmsParty, p384: CmsParty;
const signer = (p: CmsParty): FirmwareSigner => ({ certificate: p.certDer, key: softwareSigningKey(p.key, algorithmOfKey(p.key), p.keyFile) });
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-fw-file-'));
  rsa = makeParty('rsa signer');
  p256 = makeParty('p256 signer', 'P-256');
  p384 = makeParty('p384 signer', 'P-384');
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
  [rsa, p256, p384].forEach(removeParty);
});

const NOW = new Date('2026-11-30T04:00:00Z');
const META = { name: 'sensor-fw', version: 7, hardware: [{ type: '1.3.6.1.4.1.99999.1', serial: 'SN-1' }] };
const put = (name: string, b: Buffer): string => (fs.writeFileSync(path.join(dir, name), b), path.join(dir, name));
function withFd<T>(file: string, f: (fd: number) => T): T {
  const fd = fs.openSync(file, 'r');
  try {
    return f(fd);
  } finally {
    fs.closeSync(fd);
  }
}
/** streamed runs a streaming operation from one file into another and returns the bytes written. */
async function streamed(from: string, op: (fd: number, sink: (b: Buffer) => void) => unknown): Promise<Buffer> {
  const out = path.join(dir, `out-${crypto.randomBytes(4).toString('hex')}`);
  const fd = fs.openSync(from, 'r');
  const ofd = fs.openSync(out, 'w');
  try {
    await op(fd, fdSink(ofd));
  } finally {
    fs.closeSync(fd);
    fs.closeSync(ofd);
  }
  return fs.readFileSync(out);
}
const code = (f: () => unknown): string => {
  try {
    f();
    return 'returned';
  } catch (e) {
    return e instanceof DeviceCaError ? `${e.code}: ${e.message}` : `other: ${String(e)}`;
  }
};

describe('firmware packages streamed from files', () => {
  // 3 MiB + 5 bytes: the image crosses several 1 MiB read chunks and ends inside one
  const image = crypto.randomBytes((3 << 20) + 5);

  it('create, sign and release write byte for byte what the Buffer functions write', async () => {
    const imageFile = put('image.bin', image);
    const created = await streamed(imageFile, (fd, sink) => createFirmwarePackageFile(wholeFile(fd), META, sink));
    expect(created.equals(createFirmwarePackage(image, META))).toBe(true);

    const signed = await streamed(put('created.der', created), async (fd, sink) => (await signFirmwarePackageFile(fd, signer(rsa), NOW)).writeTo(sink));
    expect(signed.equals(await signFirmwarePackage(created, signer(rsa), NOW))).toBe(true);

    const released = await streamed(put('signed.der', signed), async (fd, sink) => (await buildPlainReleaseFile(readFirmwarePackageFile(fd, ['sha256']), signer(rsa), NOW)).writeTo(sink));
    expect(released.equals(await buildFirmwareRelease(readFirmwarePackage(signed), signer(rsa), { now: NOW }))).toBe(true);
  });

  it('three signers (SHA-256 and SHA-384) one after another: openssl cms -verify checks each and gives the exact image', async () => {
    let file = put('s0.der', createFirmwarePackage(image, META));
    for (const [i, p] of [p256, p384, rsa].entries()) file = put(`s${i + 1}.der`, await streamed(file, async (fd, sink) => (await signFirmwarePackageFile(fd, signer(p), NOW)).writeTo(sink)));
    const pkg = withFd(file, (fd) => readFirmwarePackageFile(fd));
    expect(pkg.signers).toHaveLength(3);
    expect(pkg.metadata).toEqual(META);
    expect([...pkg.digests.digests.keys()].sort()).toEqual(['sha256', 'sha384']);
    const cafile = put('parties.pem', Buffer.concat([p256, p384, rsa].map((p) => fs.readFileSync(p.certFile))));
    const out = path.join(dir, 'image.out');
    openssl(['cms', '-verify', '-binary', '-inform', 'DER', '-in', file, '-CAfile', cafile, '-purpose', 'any', '-out', out]);
    expect(fs.readFileSync(out).equals(image)).toBe(true);
  });

  it('a changed image byte (deep inside the file) fails the digest; signing it again is refused the same way', async () => {
    const signed = await signFirmwarePackage(createFirmwarePackage(image, META), signer(p256), NOW);
    const tampered = Buffer.from(signed);
    tampered[2 << 20] ^= 1;
    const file = put('tampered.der', tampered);
    expect(withFd(file, (fd) => code(() => readFirmwarePackageFile(fd)))).toBe('bad-signature: message digest does not match the content');
    await expect(streamed(file, async (fd, sink) => (await signFirmwarePackageFile(fd, signer(rsa), NOW)).writeTo(sink))).rejects.toMatchObject({ code: 'bad-signature' });
  });

  it('the same certificate cannot sign twice (conflict), as with the Buffer function', async () => {
    const file = put('once.der', await signFirmwarePackage(createFirmwarePackage(image, META), signer(p256), NOW));
    await expect(streamed(file, async (fd, sink) => (await signFirmwarePackageFile(fd, signer(p256), NOW)).writeTo(sink))).rejects.toMatchObject({ code: 'conflict' });
  });

  it('broken files are refused with bad-request naming the problem, before anything is written', async () => {
    const good = createFirmwarePackage(Buffer.from('a small image'), META);
    const big = createFirmwarePackage(image, META);
    const cases: [string, Buffer, RegExp][] = [
      ['empty file', Buffer.alloc(0), /truncated header/],
      ['cut at the end', big.subarray(0, big.length - 1), /ends at|truncated/],
      ['cut inside the image', big.subarray(0, 1 << 20), /ends at|truncated/],
      ['cut inside the header', big.subarray(0, 20), /truncated|ends at/],
      ['a trailing byte', Buffer.concat([good, Buffer.from([0])]), /ends at/],
      ['indefinite length', Buffer.concat([Buffer.from([0x30, 0x80]), good.subarray(2)]), /indefinite length/],
      ['not SignedData (an OCTET STRING)', Buffer.from([0x04, 0x02, 0x01, 0x02]), /tag 0x4/],
      [
        'no firmware content type (id-data)',
        openssl(['cms', '-sign', '-binary', '-nodetach', '-outform', 'DER', '-signer', p256.certFile, '-inkey', p256.keyFile], Buffer.from('x')),
        /not a firmware package/,
      ],
      ['garbage', crypto.randomBytes(4096), /not a DER CMS SignedData|not a CMS SignedData|cannot be read/],
    ];
    for (const [what, bytes, message] of cases) {
      const file = put('broken.der', bytes);
      const r = withFd(file, (fd) => code(() => readFirmwarePackageFile(fd)));
      expect({ what, r }).toEqual({ what, r: expect.stringMatching(/^bad-request: /) });
      expect({ what, r }).toEqual({ what, r: expect.stringMatching(message) });
      let written = 0;
      await expect(streamed(file, async (fd) => (await signFirmwarePackageFile(fd, signer(rsa), NOW)).writeTo((b) => (written += b.length)))).rejects.toMatchObject({ code: 'bad-request' });
      expect({ what, written }).toEqual({ what, written: 0 });
    }
  });
});
