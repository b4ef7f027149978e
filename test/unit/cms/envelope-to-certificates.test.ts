import * as crypto from 'node:crypto';
import { CMS_OID } from '../../../src/cms/cms-algorithms';
import { envelopeToCertificates } from '../../../src/cms/enveloped-data';
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
});
