import * as fs from 'node:fs';
import * as path from 'node:path';
import { CMS_OID } from '../../../src/cms/cms-algorithms';
import { buildSignedData, verifySignedData } from '../../../src/cms/signed-data';
import { printableString } from '../../../src/der/der-writer';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { softwareSigningKey } from '../../../src/keys/software-key-backend';
import { CmsParty, makeParty, openssl, removeParty } from './cms-fixture';

let device: CmsParty;
beforeAll(() => {
  device = makeParty('dev-1');
});
afterAll(() => removeParty(device));

/** opensslSign: a SignedData as a SCEP client makes one (signed attributes, signer certificate included). */
function opensslSign(content: Buffer, md: string): Buffer {
  return openssl(['cms', '-sign', '-binary', '-nodetach', '-outform', 'DER', '-md', md, '-signer', device.certFile, '-inkey', device.keyFile], content);
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
    return 'returned';
  } catch (e) {
    return e instanceof DeviceCaError ? e.code : `other: ${String(e)}`;
  }
}

describe('verifySignedData (messages openssl cms signed)', () => {
  it.each(['sha1', 'sha256', 'sha512'] as const)('verifies a %s signature made with the bare rsaEncryption OID and returns content, signer and attributes', (md) => {
    const content = Buffer.from('an enveloped PKCS#10 would be here');
    const sd = opensslSign(content, md);
    expect(openssl(['cms', '-cmsout', '-print', '-inform', 'DER'], sd).toString()).toContain('algorithm: rsaEncryption');
    const m = verifySignedData(sd);
    expect(m.content?.equals(content)).toBe(true);
    expect(m.contentType).toBe(CMS_OID.data);
    expect(m.signer.certificate.equals(device.certDer)).toBe(true);
    expect(m.signer.digest).toBe(md);
    expect(m.signer.attributes.has(CMS_OID.signingTime)).toBe(true);
  });

  it('refuses a tampered content (message digest) and a tampered signature as bad-signature', () => {
    const content = Buffer.from('original content of some length');
    const sd = opensslSign(content, 'sha256');
    const at = sd.indexOf(content);
    const badContent = Buffer.from(sd);
    badContent[at] ^= 0x01;
    const badSig = Buffer.from(sd);
    badSig[sd.length - 10] ^= 0x01; // the signature is the last field
    expect(codeOf(() => verifySignedData(badContent))).toBe('bad-signature');
    expect(codeOf(() => verifySignedData(badSig))).toBe('bad-signature');
  });

  it('refuses a digest it does not accept as bad-algorithm', () => {
    expect(codeOf(() => verifySignedData(opensslSign(Buffer.from('x'), 'sha224')))).toBe('bad-algorithm');
  });

  it('refuses a signature without the signer certificate', () => {
    const f = path.join(device.dir, 'c.txt');
    fs.writeFileSync(f, 'x');
    const sd = openssl(['cms', '-sign', '-binary', '-nodetach', '-nocerts', '-outform', 'DER', '-in', f, '-signer', device.certFile, '-inkey', device.keyFile]);
    expect(codeOf(() => verifySignedData(sd))).toBe('bad-request');
  });

  it.each([
    ['empty', Buffer.alloc(0)],
    ['garbage', Buffer.from('garbage')],
    ['an EnvelopedData content type', Buffer.from('300f06092a864886f70d010703a0023000', 'hex')],
  ])('rejects %s with bad-request', (_n, b) => expect(codeOf(() => verifySignedData(b))).toBe('bad-request'));
});

describe('buildSignedData (openssl cms verifies it)', () => {
  const TRANSACTION_ID = '2.16.840.1.113733.1.9.7'; // RFC 8894 §3.2.1.1, as an example attribute

  it('signs content with extra signed attributes; openssl verifies and reads them', async () => {
    const key = softwareSigningKey(device.key, 'rsa-2048', device.keyFile);
    const sd = await buildSignedData({
      content: Buffer.from('reply body'),
      signer: { certificate: device.certDer, key },
      attributes: [{ type: TRANSACTION_ID, values: [printableString('12345')] }],
      certificates: [device.certDer],
    });
    const f = path.join(device.dir, 'signed.der');
    fs.writeFileSync(f, sd);
    const out = openssl(['cms', '-verify', '-binary', '-inform', 'DER', '-in', f, '-CAfile', device.certFile, '-purpose', 'any']);
    expect(out.toString()).toBe('reply body');
    expect(openssl(['cms', '-cmsout', '-print', '-inform', 'DER', '-in', f]).toString()).toMatch(/object: undefined \(2\.16\.840\.1\.113733\.1\.9\.7\)\s+set:\s+PRINTABLESTRING:12345/);
    const back = verifySignedData(sd);
    expect(back.signer.attributes.get(TRANSACTION_ID)).toEqual([printableString('12345')]);
  });

  it('signs a message without content (a SCEP failure reply); openssl verifies the signature', async () => {
    const key = softwareSigningKey(device.key, 'rsa-2048', device.keyFile);
    const sd = await buildSignedData({ content: null, signer: { certificate: device.certDer, key }, attributes: [], certificates: [device.certDer] });
    const m = verifySignedData(sd);
    expect(m.content).toBeNull();
    const f = path.join(device.dir, 'empty.der');
    fs.writeFileSync(f, sd);
    // detached verification over empty content is how openssl checks a SignedData without eContent
    const empty = path.join(device.dir, 'empty.txt');
    fs.writeFileSync(empty, '');
    openssl(['cms', '-verify', '-binary', '-inform', 'DER', '-in', f, '-content', empty, '-CAfile', device.certFile, '-purpose', 'any']);
  });
});
