import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CMS_OID } from '../../../src/cms/cms-algorithms';
import { buildFirmwareRelease, createFirmwarePackage, FirmwareSigner, readFirmwarePackage, signFirmwarePackage } from '../../../src/cms/firmware-package';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { algorithmOfKey, softwareSigningKey } from '../../../src/keys/software-key-backend';
import { openssl, opensslStatus } from './cms-fixture';

/** a root made by openssl, and leaf certificates it issues (code signing + S/MIME signing EKU, as device-ca's signer CA issues) */
let dir: string;
let rootFile: string;
let n = 0;
interface Party extends FirmwareSigner {
  keyFile: string;
  certFile: string;
}
function issue(cn: string, newkey: string[], eku = 'codeSigning,emailProtection'): Party {
  const i = n++;
  const keyFile = path.join(dir, `${i}.key`);
  const csr = path.join(dir, `${i}.csr`);
  const certFile = path.join(dir, `${i}.crt`);
  const ext = path.join(dir, `${i}.ext`);
  fs.writeFileSync(ext, `keyUsage=critical,digitalSignature\nextendedKeyUsage=${eku}\nsubjectKeyIdentifier=hash\n`);
  openssl(['req', '-new', ...newkey, '-nodes', '-keyout', keyFile, '-out', csr, '-subj', `/CN=${cn}`]);
  openssl(['x509', '-req', '-in', csr, '-CA', rootFile, '-CAkey', path.join(dir, 'root.key'), '-CAcreateserial', '-days', '2', '-extfile', ext, '-out', certFile]);
  const key = crypto.createPrivateKey(fs.readFileSync(keyFile));
  const certificate = Buffer.from(new crypto.X509Certificate(fs.readFileSync(certFile)).raw);
  return { keyFile, certFile, certificate, key: softwareSigningKey(key, algorithmOfKey(key), keyFile) };
}
const P256 = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
const P384 = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384'];
const RSA = ['-newkey', 'rsa:2048'];

let manufacturer: Party, developer: Party, administrator: Party, ca: Party, deviceEc: Party, deviceRsa: Party, stranger: Party;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-fw-'));
  rootFile = path.join(dir, 'root.crt');
  openssl(['req', '-x509', ...P256, '-nodes', '-keyout', path.join(dir, 'root.key'), '-out', rootFile, '-subj', '/CN=fw root', '-days', '2']);
  manufacturer = issue('manufacturer', P256);
  developer = issue('developer', P384);
  administrator = issue('administrator', RSA);
  ca = issue('release', P256);
  deviceEc = issue('dev-ec', P256, 'clientAuth');
  deviceRsa = issue('dev-rsa', RSA, 'clientAuth');
  stranger = issue('dev-other', P256, 'clientAuth');
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const NOW = new Date('2026-11-30T04:00:00Z');
const META = { name: 'sensor-fw', version: 42, hardware: [{ type: '1.3.6.1.4.1.99999.1', serial: 'SN-0001' }, { type: '1.3.6.1.4.1.99999.2' }] };
const file = (name: string, b: Buffer): string => (fs.writeFileSync(path.join(dir, name), b), path.join(dir, name));
const verify = (der: Buffer): Buffer =>
  openssl(['cms', '-verify', '-inform', 'DER', '-in', file('v.der', der), '-CAfile', rootFile, '-out', path.join(dir, 'x')]) && fs.readFileSync(path.join(dir, 'x'));
const decrypt = (x: Buffer, p: Party): Buffer => openssl(['cms', '-decrypt', '-inform', 'DER', '-in', file('x.der', x), '-recip', p.certFile, '-inkey', p.keyFile]);
const code = async (p: Promise<unknown> | (() => unknown)): Promise<string> => {
  try {
    await (typeof p === 'function' ? p() : p);
    return 'returned';
  } catch (e) {
    return e instanceof DeviceCaError ? e.code : `other: ${String(e)}`;
  }
};

async function signedByAll(image: Buffer): Promise<Buffer> {
  let pkg = createFirmwarePackage(image, META);
  for (const p of [manufacturer, developer, administrator]) pkg = await signFirmwarePackage(pkg, p, NOW);
  return pkg;
}

describe('firmware packages (RFC 4108) with several signers, checked by openssl cms', () => {
  it('three parties sign one after another; openssl verifies every stage and the image comes out unchanged', async () => {
    const image = crypto.randomBytes(300_000);
    let pkg = createFirmwarePackage(image, META);
    expect(readFirmwarePackage(pkg).metadata).toEqual(META);
    for (const [i, p] of [manufacturer, developer, administrator].entries()) {
      const before = readFirmwarePackage(pkg).parts.signerInfos;
      pkg = await signFirmwarePackage(pkg, p, NOW);
      const after = readFirmwarePackage(pkg);
      expect(after.signers.length).toBe(i + 1);
      expect(after.parts.signerInfos.slice(0, i)).toEqual(before); // earlier signatures untouched, byte for byte
      expect(verify(pkg).equals(image)).toBe(true);
    }
    const printed = openssl(['cms', '-cmsout', '-print', '-inform', 'DER', '-in', file('p.der', pkg)]).toString();
    expect(printed).toContain('1.2.840.113549.1.9.16.2.35'); // firmwarePackageID
    expect(printed).toContain('1.2.840.113549.1.9.16.2.36'); // targetHardwareIDs
    expect(printed).toContain('1.2.840.113549.1.9.16.2.40'); // communityIdentifiers (the serial)
    expect(printed).toContain('signingTime');
    expect(printed).toContain('sensor-fw@42');
    expect(readFirmwarePackage(pkg).metadata).toEqual(META);
  });

  it('a plain release adds the CA signature: openssl verifies all four and -out gives the image', async () => {
    const image = crypto.randomBytes(50_000);
    const pkg = readFirmwarePackage(await signedByAll(image));
    const release = await buildFirmwareRelease(pkg, ca, { now: NOW });
    expect(verify(release).equals(image)).toBe(true);
    const r = readFirmwarePackage(release);
    expect(r.signers.map((s) => s.certificate)).toEqual([manufacturer, developer, administrator, ca].map((p) => p.certificate));
    expect(r.parts.crls).toEqual([]); // the template is gone
  });

  it('an encrypted release: openssl verifies the CA signature, and each device key (ECDH, RSA-OAEP) decrypts the exact image; another device cannot', async () => {
    const image = crypto.randomBytes(200_000);
    const pkg = readFirmwarePackage(await signedByAll(image));
    const release = await buildFirmwareRelease(pkg, ca, { now: NOW, recipients: [deviceEc.certificate, deviceRsa.certificate] });
    const x = verify(release);
    expect(decrypt(x, deviceEc).equals(image)).toBe(true);
    expect(decrypt(x, deviceRsa).equals(image)).toBe(true);
    const denied = opensslStatus(['cms', '-decrypt', '-inform', 'DER', '-in', path.join(dir, 'x.der'), '-recip', stranger.certFile, '-inkey', stranger.keyFile]);
    expect(denied.status).not.toBe(0);
    // the parties' approvals ride in the CA's signed attributes
    const printed = openssl(['cms', '-cmsout', '-print', '-inform', 'DER', '-in', file('r.der', release)]).toString();
    expect(printed).toContain(CMS_OID.approvals);
  });

  it('refuses a tampered image, a tampered signature, a second signature by the same certificate and a non-package', async () => {
    const image = Buffer.alloc(4096, 7);
    const pkg = await signedByAll(image);
    const at = pkg.indexOf(image);
    const badImage = Buffer.from(pkg);
    badImage[at + 100] ^= 1;
    expect(await code(() => readFirmwarePackage(badImage))).toBe('bad-signature');
    expect(opensslStatus(['cms', '-verify', '-inform', 'DER', '-in', file('t.der', badImage), '-CAfile', rootFile, '-out', '/dev/null']).status).not.toBe(0);
    const badSig = Buffer.from(pkg);
    badSig[pkg.length - 5] ^= 1; // inside the last SignerInfo's signature
    expect(await code(() => readFirmwarePackage(badSig))).toBe('bad-signature');
    expect(await code(signFirmwarePackage(pkg, developer, NOW))).toBe('conflict');
    expect(await code(() => readFirmwarePackage(Buffer.from('not cms')))).toBe('bad-request');
    const data = openssl(['cms', '-sign', '-binary', '-nodetach', '-outform', 'DER', '-signer', manufacturer.certFile, '-inkey', manufacturer.keyFile], Buffer.from('x'));
    expect(await code(() => readFirmwarePackage(data))).toBe('bad-request');
  });

  it('refuses signers that signed different package attributes (a signature copied from another package)', async () => {
    const image = Buffer.alloc(1000, 1);
    const a = await signFirmwarePackage(createFirmwarePackage(image, META), manufacturer, NOW);
    const b = await signFirmwarePackage(createFirmwarePackage(image, { ...META, version: 41 }), developer, NOW);
    const pa = readFirmwarePackage(a).parts;
    const pb = readFirmwarePackage(b).parts;
    const { encodeSignedData } = await import('../../../src/cms/signed-data-parts');
    const mixed = encodeSignedData({ ...pa, certificates: [...pa.certificates, ...pb.certificates], signerInfos: [...pa.signerInfos, ...pb.signerInfos] });
    expect(await code(() => readFirmwarePackage(mixed))).toBe('bad-request');
  });

  it('refuses metadata it cannot encode', () => {
    for (const m of [
      { ...META, name: 'has space' },
      { ...META, version: -1 },
      { ...META, version: 1.5 },
      { ...META, hardware: [{ type: 'not-an-oid' }] },
    ])
      expect(() => createFirmwarePackage(Buffer.from('x'), m)).toThrow(DeviceCaError);
    expect(() => createFirmwarePackage(Buffer.alloc(0), META)).toThrow(DeviceCaError);
  });

  it('an OID name uses the preferred identifier form {fwPkgID, verNum}', async () => {
    const meta = { name: '1.3.6.1.4.1.99999.7', version: 3, hardware: [] };
    const pkg = await signFirmwarePackage(createFirmwarePackage(Buffer.from('img'), meta), manufacturer, NOW);
    expect(readFirmwarePackage(pkg).metadata).toEqual(meta);
    expect(verify(pkg).toString()).toBe('img');
  });
});
