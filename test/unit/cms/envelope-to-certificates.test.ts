import * as crypto from 'node:crypto';
import { CMS_OID } from '../../../src/cms/cms-algorithms';
import { envelopeToCertificates } from '../../../src/cms/enveloped-data';
import { ecPointOf } from '../../../src/cms/key-agree-recipient';
import { openFirmwareEnvelope } from '../../../src/cms/firmware-envelope-open';
import { children, readOne } from '../../../src/der/der-reader';
import { contextExplicit, contextImplicitPrimitive, seq } from '../../../src/der/der-writer';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { CmsParty, makeParty, openssl, opensslStatus, removeParty } from './cms-fixture';

let p256: CmsParty, p384: CmsParty, rsa: CmsParty, other: CmsParty;
beforeAll(() => {
  p256 = makeParty('dev-p256', 'P-256');
  p384 = makeParty('dev-p384', 'P-384');
  rsa = makeParty('dev-rsa', 2048);
  other = makeParty('not-a-recipient', 'P-256');
});
afterAll(() => [p256, p384, rsa, other].forEach(removeParty));

const decrypt = (env: Buffer, p: CmsParty): Buffer => openssl(['cms', '-decrypt', '-inform', 'DER', '-recip', p.certFile, '-inkey', p.keyFile], env);

describe('envelopeToCertificates (openssl cms -decrypt is the recipient)', () => {
  it('each recipient (ECDH P-256, ECDH P-384, RSA-OAEP) decrypts the exact content; another key cannot', () => {
    const image = crypto.randomBytes(100_000);
    const env = envelopeToCertificates(image, CMS_OID.firmwarePackage, [p256.certDer, p384.certDer, rsa.certDer]);
    for (const p of [p256, p384, rsa]) expect(decrypt(env, p).equals(image)).toBe(true);
    expect(opensslStatus(['cms', '-decrypt', '-inform', 'DER', '-recip', other.certFile, '-inkey', other.keyFile], env).status).not.toBe(0);
  });

  it('uses the schemes it documents: ECDH std sha256/sha384 KDF with AES-256 wrap, RSAES-OAEP, AES-256-CBC content', () => {
    const env = envelopeToCertificates(Buffer.from('x'), CMS_OID.firmwarePackage, [p256.certDer, p384.certDer, rsa.certDer]);
    const printed = openssl(['cms', '-cmsout', '-print', '-inform', 'DER'], env).toString();
    expect(printed).toContain('dhSinglePass-stdDH-sha256kdf-scheme');
    expect(printed).toContain('dhSinglePass-stdDH-sha384kdf-scheme');
    expect(printed).toContain('id-aes256-wrap');
    expect(printed).toContain('rsaesOaep');
    expect(printed).toContain('aes-256-cbc');
    expect(printed).toContain('contentType: undefined (1.2.840.113549.1.9.16.1.16)'); // id-ct-firmwarePackage, which openssl does not name
  });

  it('shares one ephemeral key among the recipients of a curve: two P-256 recipients, one KeyAgreeRecipientInfo, both decrypt', () => {
    const env = envelopeToCertificates(Buffer.from('fleet image'), CMS_OID.firmwarePackage, [p256.certDer, other.certDer]);
    const printed = openssl(['cms', '-cmsout', '-print', '-inform', 'DER'], env).toString();
    expect(printed.match(/d\.kari:/g)?.length).toBe(1);
    expect(decrypt(env, p256).toString()).toBe('fleet image');
    expect(decrypt(env, other).toString()).toBe('fleet image');
  });

  it('refuses no recipients and a key it cannot encrypt to', () => {
    expect(() => envelopeToCertificates(Buffer.from('x'), CMS_OID.data, [])).toThrow(DeviceCaError);
    const edCert = openssl(['req', '-x509', '-newkey', 'ed25519', '-nodes', '-keyout', '/dev/null', '-subj', '/CN=ed', '-days', '1', '-outform', 'DER']);
    let code = '';
    try {
      envelopeToCertificates(Buffer.from('x'), CMS_OID.data, [edCert]);
    } catch (e) {
      code = (e as DeviceCaError).code;
    }
    expect(code).toBe('bad-algorithm');
  });

  it('reads each EC recipient key from the certificate DER (curve, point); a P-521 key is refused, a point off the curve too, a broken certificate is a bad request', () => {
    expect(ecPointOf(p256.certDer)).toMatchObject({ curve: 'prime256v1' });
    const raw = (p: CmsParty): Buffer => {
      const j = crypto.createPublicKey(p.key).export({ format: 'jwk' });
      return Buffer.concat([Buffer.from([4]), Buffer.from(j.x!, 'base64url'), Buffer.from(j.y!, 'base64url')]);
    };
    expect(ecPointOf(p256.certDer)?.point.equals(raw(p256))).toBe(true);
    expect(ecPointOf(p384.certDer)).toMatchObject({ curve: 'secp384r1' });
    expect(ecPointOf(p384.certDer)?.point.equals(raw(p384))).toBe(true);
    expect(ecPointOf(rsa.certDer)).toBeNull();
    const p521 = openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-521', '-nodes', '-keyout', '/dev/null', '-subj', '/CN=p521', '-days', '1', '-outform', 'DER']);
    expect(ecPointOf(p521)).toBeNull();
    const codeOf = (f: () => unknown): string => {
      try {
        f();
        return 'returned';
      } catch (e) {
        return e instanceof DeviceCaError ? e.code : `other: ${String(e)}`;
      }
    };
    expect(codeOf(() => envelopeToCertificates(Buffer.from('x'), CMS_OID.data, [p521]))).toBe('bad-algorithm');
    const offCurve = Buffer.from(p256.certDer);
    offCurve[offCurve.indexOf(raw(p256)) + 64] ^= 1; // the last byte of y: no longer a point of P-256
    expect(codeOf(() => envelopeToCertificates(Buffer.from('x'), CMS_OID.data, [p256.certDer, offCurve]))).toBe('bad-algorithm');
    expect(codeOf(() => envelopeToCertificates(Buffer.from('x'), CMS_OID.data, [p256.certDer.subarray(0, 100)]))).toBe('bad-request');
  });

  it('writes the DER the nested encoder writes, for contents across chunk and length-of-length boundaries; each decrypts', () => {
    for (const n of [0, 15, 16, 17, 100, 65_500, (1 << 20) + 3]) {
      const content = crypto.randomBytes(n);
      const env = envelopeToCertificates(content, CMS_OID.firmwarePackage, [p256.certDer]);
      const [type, explicit] = children(readOne(env, 0x30), 2);
      const [version, ris, eci] = children(readOne(explicit.value, 0x30), 3);
      const [ct, alg, enc] = children(eci, 3);
      const nested = seq(type.full, contextExplicit(0, seq(version.full, ris.full, seq(ct.full, alg.full, contextImplicitPrimitive(0, enc.value)))));
      expect({ n, same: nested.equals(env), padded: enc.value.length === (Math.floor(n / 16) + 1) * 16 }).toEqual({ n, same: true, padded: true });
      expect(openFirmwareEnvelope(env, { certificate: p256.certDer, key: p256.key }).content.equals(content)).toBe(true);
    }
  });
});
