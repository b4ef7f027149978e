import * as crypto from 'node:crypto';
import { buildSignedData, verifySignedData } from '../../../src/cms/signed-data';
import { readDerParts, readPkijsParts } from '../../../src/cms/signed-message-parts';
import { octetString, printableString } from '../../../src/der/der-writer';
import { softwareSigningKey } from '../../../src/keys/software-key-backend';
import { CmsParty, makeParty, openssl, removeParty } from './cms-fixture';

/**
 * signedMessageParts: the DER fast path (readDerParts) must read exactly what pkijs reads (readPkijsParts)
 * from every message it accepts, and leave to pkijs every message it does not (BER, several signers), so
 * verifySignedData's verdicts do not depend on which parser ran.
 */
let device: CmsParty;
let other: CmsParty;
beforeAll(() => {
  device = makeParty('dev-parts');
  other = makeParty('other-parts');
});
afterAll(() => {
  removeParty(device);
  removeParty(other);
});

const sign = (content: Buffer, extra: string[] = []): Buffer =>
  openssl(['cms', '-sign', '-binary', '-nodetach', '-outform', 'DER', ...extra, '-signer', device.certFile, '-inkey', device.keyFile], content);

const ours = (): Promise<Buffer> =>
  buildSignedData({
    content: Buffer.from('enveloped request'),
    signer: { certificate: device.certDer, key: softwareSigningKey(device.key, 'rsa-2048', 'memory') },
    attributes: [
      { type: '2.16.840.1.113733.1.9.2', values: [printableString('19')] },
      { type: '2.16.840.1.113733.1.9.5', values: [octetString(crypto.randomBytes(16))] },
    ],
    certificates: [device.certDer, other.certDer],
  });

describe('readDerParts reads what pkijs reads', () => {
  it.each([
    ['openssl cms -sign (sha256)', () => sign(Buffer.from('x'), ['-md', 'sha256'])],
    ['openssl cms -sign (sha1, two certificates)', () => sign(Buffer.from('y'.repeat(3000)), ['-md', 'sha1', '-certfile', other.certFile])],
    ['openssl cms -sign without the signer certificate', () => sign(Buffer.from('z'), ['-nocerts'])],
    ['buildSignedData (device-ca, SCEP attributes)', ours],
    [
      'an empty eContent (a SCEP FAILURE reply)',
      () =>
        buildSignedData({
          content: Buffer.alloc(0),
          signer: { certificate: device.certDer, key: softwareSigningKey(device.key, 'rsa-2048', 'memory') },
          attributes: [],
          certificates: [device.certDer],
        }),
    ],
  ])('%s', async (_name, make) => {
    const m = await make();
    const fast = readDerParts(m);
    expect(fast).not.toBeNull();
    expect(fast).toEqual(readPkijsParts(m));
  });

  it('a signature changed in the DER: both read the same parts, and verifySignedData refuses it (bad-signature)', async () => {
    const m = await ours();
    const bad = Buffer.from(m);
    bad[bad.length - 5] ^= 0x01; // inside the signature, the last field of the one SignerInfo
    expect(readDerParts(bad)).toEqual(readPkijsParts(bad));
    expect(() => verifySignedData(bad)).toThrow(expect.objectContaining({ code: 'bad-signature' }));
  });
});

describe('a signer certificate that is no certificate', () => {
  it('is bad-request, not an internal error (the fuzz campaign found HTTP 500 "PEM routines::no start line")', async () => {
    const m = await ours();
    const at = m.indexOf(device.certDer);
    const validity = device.certDer.indexOf(Buffer.from([0x17, 0x0d])); // notBefore UTCTime
    expect(at > 0 && validity > 0).toBe(true);
    const bad = Buffer.from(m);
    bad[at + validity] = 0x04; // same length, still a TLV: the signer is still found by issuer and serial
    expect(() => verifySignedData(bad)).toThrow(expect.objectContaining({ code: 'bad-request', message: "the signer's certificate cannot be parsed" }));
  });
});

describe('input asn1js throws on', () => {
  it('a GeneralizedTime it cannot convert, in a BER message: bad-request, not an internal error (found by the fuzz campaign)', () => {
    // ContentInfo (indefinite length, so the DER path leaves it to pkijs) holding a malformed GeneralizedTime
    const m = Buffer.from('3080' + '0603550403' + '1803' + '5a5a5a' + '0000', 'hex');
    expect(readDerParts(m)).toBeNull();
    expect(() => verifySignedData(m)).toThrow(expect.objectContaining({ code: 'bad-request' }));
  });
});

describe('messages the fast path leaves to pkijs', () => {
  it('BER with indefinite lengths (openssl -stream): null, and verifySignedData still verifies it through pkijs', () => {
    const content = Buffer.from('streamed');
    const m = openssl(['cms', '-sign', '-binary', '-nodetach', '-stream', '-outform', 'DER', '-signer', device.certFile, '-inkey', device.keyFile], content);
    expect(m.subarray(0, 2)).toEqual(Buffer.from([0x30, 0x80]));
    expect(readDerParts(m)).toBeNull();
    const v = verifySignedData(m);
    expect(v.content).toEqual(content);
    expect(v.signer.certificate).toEqual(device.certDer);
  });

  it('two signers: null, and verifySignedData refuses it as before (bad-request)', () => {
    const m = openssl(
      ['cms', '-sign', '-binary', '-nodetach', '-outform', 'DER', '-signer', device.certFile, '-inkey', device.keyFile, '-signer', other.certFile, '-inkey', other.keyFile],
      Buffer.from('x'),
    );
    expect(readDerParts(m)).toBeNull();
    expect(() => verifySignedData(m)).toThrow(expect.objectContaining({ code: 'bad-request', message: 'SignedData must have exactly one signer' }));
  });

  it('truncated or garbage input: null from the fast path, bad-request from verifySignedData', async () => {
    const m = await ours();
    for (const b of [m.subarray(0, m.length - 1), Buffer.from('garbage'), Buffer.alloc(0)]) {
      expect(readDerParts(b)).toBeNull();
      expect(() => verifySignedData(b)).toThrow(expect.objectContaining({ code: 'bad-request' }));
    }
  });
});
