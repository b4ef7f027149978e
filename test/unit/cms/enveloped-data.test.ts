import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CONTENT_CIPHERS, ContentCipher } from '../../../src/cms/cms-algorithms';
import { buildEnvelopedData, openEnvelopedData } from '../../../src/cms/enveloped-data';
import { KeyTransportDecryptor, softwareKeyTransport, tokenKeyTransport, unpadPkcs1v15 } from '../../../src/cms/rsa-key-transport';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { CmsParty, makeParty, openssl, removeParty } from './cms-fixture';

let ra: CmsParty;
let other: CmsParty;
beforeAll(() => {
  ra = makeParty('ra');
  other = makeParty('other');
});
afterAll(() => {
  removeParty(ra);
  removeParty(other);
});

const CIPHERS: [ContentCipher, string][] = [
  ['aes-128-cbc', '-aes-128-cbc'],
  ['aes-256-cbc', '-aes-256-cbc'],
  ['des-ede3-cbc', '-des3'],
];

/** opensslEncrypt: what a SCEP client sends, built by openssl cms (RSAES-PKCS1-v1_5 key transport). */
function opensslEncrypt(content: Buffer, cipherFlag: string, recipientCert: string): Buffer {
  return openssl(['cms', '-encrypt', '-binary', '-outform', 'DER', cipherFlag, recipientCert], content);
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'resolved';
  } catch (e) {
    return e instanceof DeviceCaError ? `${e.code}: ${e.message}` : `other: ${String(e)}`;
  }
}

describe('openEnvelopedData (messages openssl cms encrypted)', () => {
  it.each(CIPHERS)('decrypts %s content and reports the cipher', async (cipher, flag) => {
    const content = crypto.randomBytes(300);
    const env = opensslEncrypt(content, flag, ra.certFile);
    const out = await openEnvelopedData(env, { certificate: ra.certDer, key: softwareKeyTransport(ra.key) });
    expect(out.content.equals(content)).toBe(true);
    expect(out.cipher).toBe(cipher);
  });

  it('finds our RecipientInfo among several', async () => {
    const content = Buffer.from('for two');
    const env = openssl(['cms', '-encrypt', '-binary', '-outform', 'DER', '-aes-128-cbc', other.certFile, ra.certFile], content);
    const out = await openEnvelopedData(env, { certificate: ra.certDer, key: softwareKeyTransport(ra.key) });
    expect(out.content.toString()).toBe('for two');
  });

  it('refuses a message encrypted to another recipient', async () => {
    const env = opensslEncrypt(Buffer.from('x'), '-aes-128-cbc', other.certFile);
    expect(await codeOf(openEnvelopedData(env, { certificate: ra.certDer, key: softwareKeyTransport(ra.key) }))).toBe('bad-request: the message is not encrypted to this RA certificate');
  });

  it('refuses a content cipher it does not accept (badAlg in SCEP)', async () => {
    const env = opensslEncrypt(Buffer.from('x'), '-aes-192-cbc', ra.certFile);
    expect(await codeOf(openEnvelopedData(env, { certificate: ra.certDer, key: softwareKeyTransport(ra.key) }))).toBe('bad-algorithm: unsupported content-encryption algorithm');
  });

  it('a corrupted key blob fails exactly like a corrupted ciphertext (implicit rejection: no padding oracle)', async () => {
    const content = crypto.randomBytes(64);
    const env = opensslEncrypt(content, '-aes-256-cbc', ra.certFile);
    const transport = softwareKeyTransport(ra.key);
    const open = (b: Buffer) => openEnvelopedData(b, { certificate: ra.certDer, key: transport });
    // the encrypted key: the 256-byte OCTET STRING after the rsaEncryption AlgorithmIdentifier
    const keyAt = env.indexOf(Buffer.from([0x04, 0x82, 0x01, 0x00])) + 4;
    expect(keyAt).toBeGreaterThan(4);
    const badKey = Buffer.from(env);
    badKey[keyAt + 100] ^= 0x01;
    const badBody = Buffer.from(env);
    // CBC: xor-ing the last byte of the block before the last (the encrypted content ends the DER) with the padding byte
    // (64 bytes of content: a whole block of 16s) makes the padding byte 0, which never checks
    badBody[env.length - 17] ^= 16;
    const expected = 'bad-request: the message cannot be decrypted';
    expect(await codeOf(open(badBody))).toBe(expected);
    // a random content key passes the CBC padding check about 1 time in 256 and yields garbage instead:
    // either way the message is not what was sent, and no verdict names the key blob
    const out = await open(badKey).catch((e: unknown) => e);
    if (out instanceof DeviceCaError) expect(`${out.code}: ${out.message}`).toBe(expected);
    else expect((out as { content: Buffer }).content.equals(content)).toBe(false);
    // the unwrapping itself never fails: it returns a fresh random key of the cipher's length each time
    const blob = badKey.subarray(keyAt, keyAt + 256);
    const [k1, k2] = [await transport.unwrapKey(blob, 32), await transport.unwrapKey(blob, 32)];
    expect(k1.length).toBe(32);
    expect(k1.equals(k2)).toBe(false);
    expect(await codeOf(open(env))).toBe('resolved');
  });

  it('a key blob under the PKCS#11 path that the token rejects fails the same way', async () => {
    const env = opensslEncrypt(Buffer.from('hello'), '-aes-128-cbc', ra.certFile);
    const refusing = tokenKeyTransport({ rsaDecrypt: async () => Promise.reject(new DeviceCaError('bad-request', 'CKR_ENCRYPTED_DATA_INVALID')) }, 'pkcs11:object=ra');
    expect(await codeOf(openEnvelopedData(env, { certificate: ra.certDer, key: refusing }))).toBe('bad-request: the message cannot be decrypted');
    // and a token that decrypts gives the content: the same unwrapping through the capability interface
    const software = softwareKeyTransport(ra.key);
    const token: KeyTransportDecryptor = tokenKeyTransport({ rsaDecrypt: async (_ref, c) => software.unwrapKey(c, 16) }, 'pkcs11:object=ra');
    expect((await openEnvelopedData(env, { certificate: ra.certDer, key: token })).content.toString()).toBe('hello');
  });

  it.each([
    ['empty', Buffer.alloc(0)],
    ['garbage', Buffer.from('not a CMS message at all')],
    ['a SEQUENCE of nothing', Buffer.from([0x30, 0x00])],
    ['truncated', Buffer.from([0x30, 0x82, 0x01, 0x00, 0x06])],
  ])('rejects %s input with bad-request', async (_name, input) => {
    expect(await codeOf(openEnvelopedData(input, { certificate: ra.certDer, key: softwareKeyTransport(ra.key) }))).toMatch(/^bad-request: /);
  });
});

describe('buildEnvelopedData (openssl cms decrypts it)', () => {
  it.each(CIPHERS)('encrypts with %s to the recipient certificate', (cipher) => {
    const content = crypto.randomBytes(200);
    const env = buildEnvelopedData(content, other.certDer, cipher);
    const f = path.join(other.dir, `env-${cipher}.der`);
    fs.writeFileSync(f, env);
    const out = openssl(['cms', '-decrypt', '-binary', '-inform', 'DER', '-in', f, '-inkey', other.keyFile, '-recip', other.certFile]);
    expect(out.equals(content)).toBe(true);
    expect(openssl(['cms', '-cmsout', '-print', '-inform', 'DER', '-in', f]).toString()).toContain(`algorithm: ${cipher === 'des-ede3-cbc' ? 'des-ede3-cbc' : cipher}`);
    expect(CONTENT_CIPHERS[cipher].keyLength).toBeGreaterThan(0);
  });

  it('round-trips through openEnvelopedData', async () => {
    const env = buildEnvelopedData(Buffer.from('reply'), ra.certDer, 'aes-256-cbc');
    expect((await openEnvelopedData(env, { certificate: ra.certDer, key: softwareKeyTransport(ra.key) })).content.toString()).toBe('reply');
  });
});

describe('unpadPkcs1v15', () => {
  const fallback = Buffer.alloc(16, 0xee);
  const em = (mutate: (b: Buffer) => void = () => undefined): Buffer => {
    const b = Buffer.alloc(256, 0x11);
    b[0] = 0;
    b[1] = 2;
    b[256 - 17] = 0;
    Buffer.alloc(16, 0x42).copy(b, 256 - 16);
    mutate(b);
    return b;
  };
  it('returns the message of a well-formed block', () => expect(unpadPkcs1v15(em(), 16, fallback)).toEqual(Buffer.alloc(16, 0x42)));
  it.each([
    ['first octet not 0', (b: Buffer) => (b[0] = 1)],
    ['block type 1', (b: Buffer) => (b[1] = 1)],
    ['a zero inside the padding (message longer than the cipher key)', (b: Buffer) => (b[50] = 0)],
    ['no separator where the key length puts it', (b: Buffer) => (b[256 - 17] = 5)],
  ])('returns the fallback for %s', (_n, m) => expect(unpadPkcs1v15(em(m), 16, fallback)).toEqual(fallback));
});
