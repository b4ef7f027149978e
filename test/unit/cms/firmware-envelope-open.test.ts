import * as crypto from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { CMS_OID } from '../../../src/cms/cms-algorithms';
import { envelopeToCertificates } from '../../../src/cms/enveloped-data';
import { openFirmwareEnvelope } from '../../../src/cms/firmware-envelope-open';
import { DeviceCaError } from '../../../src/errors/device-ca-error';

/**
 * openFirmwareEnvelope against envelopeToCertificates: every device of a fleet opens the same envelope,
 * the second and third RecipientEncryptedKey of a KeyAgreeRecipientInfo included (where pkijs would read
 * only the first), for P-256, P-384 and RSA-OAEP keys; a device not among the recipients is told so.
 */

interface Dev {
  certificate: Buffer;
  key: crypto.KeyObject;
}
async function device(alg: 'P-256' | 'P-384' | 'RSA', serial: string): Promise<Dev> {
  const params = alg === 'RSA' ? { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' } : { name: 'ECDSA', namedCurve: alg };
  const keys = (await crypto.webcrypto.subtle.generateKey(params, true, ['sign', 'verify'])) as crypto.webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial,
    name: `CN=dev-${serial}`,
    keys,
    signingAlgorithm: alg === 'RSA' ? params : { name: 'ECDSA', hash: alg === 'P-384' ? 'SHA-384' : 'SHA-256' },
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86400_000),
  });
  const pkcs8 = Buffer.from(await crypto.webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  return { certificate: Buffer.from(cert.rawData), key: crypto.createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }) };
}

it('each recipient opens the exact image; a stranger is refused with the reason', async () => {
  const devs = await Promise.all([device('P-256', '01'), device('P-256', '02'), device('P-256', '03'), device('P-384', '04'), device('RSA', '05')]);
  const stranger = await device('P-256', '06');
  const image = crypto.randomBytes(100_003);
  const env = envelopeToCertificates(
    image,
    CMS_OID.firmwarePackage,
    devs.map((d) => d.certificate),
  );
  for (const d of devs) expect(openFirmwareEnvelope(env, d)).toEqual({ contentType: CMS_OID.firmwarePackage, content: image });
  let err: unknown;
  try {
    openFirmwareEnvelope(env, stranger);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(DeviceCaError);
  expect((err as DeviceCaError).message).toBe('the release is not encrypted to this device certificate');
  // the right certificate with another key: the key does not unwrap
  expect(() => openFirmwareEnvelope(env, { certificate: devs[1].certificate, key: stranger.key })).toThrow('the content key does not unwrap with this device key');
});

it("a key held elsewhere (the agent's TPM): agree gets the originator point and its Z opens the image; decryptOaep for RSA", async () => {
  const [ec, rsa] = await Promise.all([device('P-256', '11'), device('RSA', '12')]);
  const image = crypto.randomBytes(4099);
  const env = envelopeToCertificates(image, CMS_OID.firmwarePackage, [ec.certificate, rsa.certificate]);
  const points: Buffer[] = [];
  const agree = (point: Buffer): Buffer => {
    points.push(point);
    const ecdh = crypto.createECDH('prime256v1');
    ecdh.setPrivateKey(Buffer.from(ec.key.export({ format: 'jwk' }).d as string, 'base64url'));
    return ecdh.computeSecret(point);
  };
  expect(openFirmwareEnvelope(env, { certificate: ec.certificate, agree }).content.equals(image)).toBe(true);
  expect(points.map((p) => [p.length, p[0]])).toEqual([[65, 4]]); // the uncompressed ephemeral point, as TPM2_ECDH_ZGen takes it
  const decryptOaep = (k: Buffer): Buffer => crypto.privateDecrypt({ key: rsa.key, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, k);
  expect(openFirmwareEnvelope(env, { certificate: rsa.certificate, decryptOaep }).content.equals(image)).toBe(true);
  // a wrong Z: the content key does not unwrap (never a crash, never garbage content)
  expect(() => openFirmwareEnvelope(env, { certificate: ec.certificate, agree: () => Buffer.alloc(32, 7) })).toThrow('the content key does not unwrap with this device key');
});

it('a device whose key cannot do the step its recipient info needs is told which one', async () => {
  const [ec, rsa] = await Promise.all([device('P-256', '21'), device('RSA', '22')]);
  const env = envelopeToCertificates(Buffer.from('image'), CMS_OID.firmwarePackage, [ec.certificate, rsa.certificate]);
  expect(() => openFirmwareEnvelope(env, { certificate: ec.certificate })).toThrow('the release is encrypted by ECDH (RFC 5753), and the device key cannot do key agreement');
  expect(() => openFirmwareEnvelope(env, { certificate: rsa.certificate, agree: () => Buffer.alloc(32) })).toThrow(
    'the release wraps the content key by RSA-OAEP (RFC 8017), and the device key cannot decrypt RSA',
  );
});
