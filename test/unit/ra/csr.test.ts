import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { encodeName } from '../../../src/ca/name';
import { children, readOne } from '../../../src/der/der-reader';
import { NULL, oid, seq, set, tlv } from '../../../src/der/der-writer';
import { OID } from '../../../src/der/oids';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { generateKeyPair } from '../../../src/keys/software-key-backend';
import { MAX_CSR_BYTES, ParsedCsr, parseCsr } from '../../../src/ra/csr';
import { buildCsr, extensionRequest, sanExtension } from '../../fixtures/build-csr';

/** parseCsr against requests made by `openssl req` (test/fixtures/csr/generate.sh) and built in process. */

const fixture = (name: string): Buffer => fs.readFileSync(path.join(__dirname, '../../fixtures/csr', name));

/** codeOf returns the DeviceCaError code parseCsr throws; anything else (TypeError, RangeError) fails. */
function codeOf(der: Buffer): string {
  try {
    parseCsr(der);
  } catch (e) {
    if (e instanceof DeviceCaError) return e.code;
    throw new Error(`expected DeviceCaError, got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
  }
  return 'parsed';
}

const OPENSSL_SANS = [
  { type: 'dns', value: 'dev-1.example.net' },
  { type: 'ip', value: '192.0.2.7' },
  { type: 'ip', value: '2001:db8:0:0:0:0:0:17' },
  { type: 'uri', value: 'urn:dev:1' },
];

describe('openssl req fixtures', () => {
  it.each<[string, Partial<ParsedCsr>]>([
    [
      'ec-p256-printable-san.der',
      {
        subject: [
          { type: 'CN', value: 'dev-p256' },
          { type: 'O', value: 'Example Devices' },
        ],
        keyAlgorithm: 'ecdsa-p256',
        keyType: 'ec',
        challengePassword: 's3cret PW 123', // PrintableString
        sans: OPENSSL_SANS as ParsedCsr['sans'],
        otherSans: 1, // the email SAN
      },
    ],
    [
      'ec-p384-utf8.der',
      {
        subject: [
          { type: 'CN', value: 'dev-p384' },
          { type: 'O', value: 'Example Devices' },
        ],
        keyAlgorithm: 'ecdsa-p384',
        keyType: 'ec',
        challengePassword: 'pässwörd', // UTF8String
        sans: [],
        otherSans: 0,
      },
    ],
    [
      'rsa-2048-san.der',
      {
        subject: [
          { type: 'CN', value: 'dev-rsa' },
          { type: 'O', value: 'Example Devices' },
        ],
        keyAlgorithm: 'rsa-2048',
        keyType: 'rsa',
        challengePassword: 'rsa-secret',
        sans: OPENSSL_SANS as ParsedCsr['sans'],
        otherSans: 1,
      },
    ],
    [
      'ec-p256-plain.der',
      {
        subject: [
          { type: 'CN', value: 'Gerät-1' },
          { type: 'O', value: 'Example Devices' },
        ],
        keyAlgorithm: 'ecdsa-p256',
        keyType: 'ec',
        challengePassword: null,
        sans: [],
        otherSans: 0,
      },
    ],
  ])('%s', (file, expected) => {
    const der = fixture(file);
    const csr = parseCsr(der);
    expect(csr).toMatchObject(expected);
    expect(csr.der.equals(der)).toBe(true);
    // spki is the request's SubjectPublicKeyInfo, byte for byte as openssl wrote it
    const info = children(children(readOne(der))[0]);
    expect(csr.spki.equals(info[2].full)).toBe(true);
    expect(crypto.createPublicKey({ key: csr.spki, format: 'der', type: 'spki' }).export({ type: 'spki', format: 'der' }).equals(csr.spki)).toBe(true);
  });

  it('each fixture is one openssl also accepts (the fixtures are what they claim)', () => {
    for (const f of ['ec-p256-printable-san.der', 'ec-p384-utf8.der', 'rsa-2048-san.der', 'ec-p256-plain.der', 'ed25519.der']) {
      const v = spawnSync('openssl', ['req', '-inform', 'DER', '-in', path.join(__dirname, '../../fixtures/csr', f), '-noout', '-verify'], { encoding: 'utf8' });
      expect(`${v.stdout}${v.stderr}`).toMatch(/verify OK/);
    }
  });

  it('challengePassword string types are what the fixture names say', () => {
    const tagOfPassword = (der: Buffer): number => {
      const attrs = children(children(children(readOne(der))[0])[3]);
      const cp = attrs.find((a) => children(a)[0].value.equals(oid(OID.challengePassword).subarray(2)))!;
      return children(children(cp)[1])[0].tag;
    };
    expect(tagOfPassword(fixture('ec-p256-printable-san.der'))).toBe(0x13);
    expect(tagOfPassword(fixture('ec-p384-utf8.der'))).toBe(0x0c);
  });

  // Ed25519 (RFC 8410) CSRs are signed with id-Ed25519 (1.3.101.112), which parseCsr's signature table does
  // not list: it is refused as bad-csr before the key is looked at, so keyAlgorithm null is never reached.
  it('ed25519 request: bad-csr, unsupported signature algorithm', () => {
    let err: unknown;
    try {
      parseCsr(fixture('ed25519.der'));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DeviceCaError);
    expect((err as DeviceCaError).code).toBe('bad-csr');
    expect((err as DeviceCaError).message).toContain(OID.ed25519);
  });
});

describe('signatures', () => {
  it.each(['ec-p256-printable-san.der', 'ec-p384-utf8.der', 'rsa-2048-san.der', 'ec-p256-plain.der'])('%s with a flipped signature byte: bad-csr', (file) => {
    const der = Buffer.from(fixture(file));
    der[der.length - 1] ^= 0x01; // last octet of the signature
    expect(codeOf(der)).toBe('bad-csr');
    const der2 = Buffer.from(fixture(file));
    der2[der2.length - 20] ^= 0x80; // inside the signature
    expect(codeOf(der2)).toBe('bad-csr');
  });

  it('a changed subject breaks the signature: bad-csr', () => {
    const der = Buffer.from(fixture('ec-p256-plain.der'));
    const at = der.indexOf(Buffer.from('Example'));
    der[at] = 'e'.charCodeAt(0);
    expect(codeOf(der)).toBe('bad-csr');
  });

  it('a request signed with another key: bad-csr', () => {
    const a = generateKeyPair('ecdsa-p256').privateKey;
    const b = generateKeyPair('ecdsa-p256').privateKey;
    const good = buildCsr({ privateKey: a });
    const other = buildCsr({ privateKey: b });
    const [infoA] = children(readOne(good));
    const [, alg, sigB] = children(readOne(other));
    expect(codeOf(seq(infoA.full, alg.full, sigB.full))).toBe('bad-csr');
  });

  it('an unsupported signature algorithm (sha1WithRSA): bad-csr', () => {
    const der = buildCsr({ privateKey: generateKeyPair('rsa-2048').privateKey, signatureAlgorithm: seq(oid('1.2.840.113549.1.1.5'), NULL) });
    expect(codeOf(der)).toBe('bad-csr');
  });

  it.each([
    ['an RSA key labelled ecdsa-with-SHA256', 'rsa-2048', OID.ecdsaWithSHA256, false],
    ['a P-256 key labelled sha256WithRSAEncryption', 'ecdsa-p256', OID.sha256WithRSAEncryption, true],
  ] as const)('%s (signed correctly, only the algorithm field lies): bad-csr naming the mismatch', (_what, alg, sigOid, withNull) => {
    const der = buildCsr({ privateKey: generateKeyPair(alg).privateKey, signatureAlgorithm: withNull ? seq(oid(sigOid), NULL) : seq(oid(sigOid)) });
    expect(() => parseCsr(der)).toThrow(/CSR signature algorithm .* is not for its (rsa|ec) key/);
    expect(codeOf(der)).toBe('bad-csr');
  });

  it.each(['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'rsa-3072'] as const)('in-process %s requests with SHA-256/384 parse', (alg) => {
    const { privateKey } = generateKeyPair(alg);
    const csr = parseCsr(buildCsr({ privateKey, challengePassword: { value: 'pw', type: 'utf8' }, sans: [{ type: 'ip', value: '::1' }] }));
    expect(csr.keyAlgorithm).toBe(alg);
    expect(csr.challengePassword).toBe('pw');
    expect(csr.sans).toEqual([{ type: 'ip', value: '0:0:0:0:0:0:0:1' }]);
  });

  it('an EC key on a curve device-ca does not issue for (secp256k1): keyAlgorithm null', () => {
    const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'secp256k1' });
    const spki = crypto.createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
    const info = seq(tlv(0x02, Buffer.from([0])), encodeName([{ type: 'CN', value: 'k1' }]), spki, tlv(0xa0));
    const sig = crypto.sign('sha256', info, { key: privateKey, dsaEncoding: 'der' });
    const csr = parseCsr(seq(info, seq(oid(OID.ecdsaWithSHA256)), tlv(0x03, Buffer.from([0]), sig)));
    expect(csr.keyAlgorithm).toBeNull();
    expect(csr.keyType).toBe('ec');
  });
});

describe('malformed and oversized input', () => {
  it.each([
    ['empty', Buffer.alloc(0)],
    ['text', Buffer.from('-----BEGIN CERTIFICATE REQUEST-----')],
    ['random bytes', crypto.randomBytes(300)],
    ['a lone SEQUENCE header', Buffer.from('3082', 'hex')],
    ['indefinite length', Buffer.from('30800000', 'hex')],
    ['truncated by one octet', fixture('ec-p256-printable-san.der').subarray(0, -1)],
    ['truncated to half', fixture('rsa-2048-san.der').subarray(0, 300)],
    ['trailing garbage', Buffer.concat([fixture('ec-p256-plain.der'), Buffer.from([0])])],
    ['four elements at the top', seq(NULL, NULL, NULL, NULL)],
  ])('%s: bad-request', (_what, der) => {
    expect(codeOf(der)).toBe('bad-request');
  });

  it('larger than MAX_CSR_BYTES: too-large, even when well-formed DER', () => {
    expect(codeOf(Buffer.alloc(MAX_CSR_BYTES + 1))).toBe('too-large');
    expect(codeOf(tlv(0x04, Buffer.alloc(MAX_CSR_BYTES)))).toBe('too-large');
    expect(codeOf(Buffer.alloc(MAX_CSR_BYTES))).toBe('bad-request'); // the limit itself is allowed through to the parser
  });

  it('version 1 instead of 0: bad-csr', () => {
    const der = Buffer.from(fixture('ec-p256-plain.der'));
    const info = children(readOne(der))[0];
    const versionAt = info.value.byteOffset - der.byteOffset + 2;
    expect(der[versionAt]).toBe(0);
    der[versionAt] = 1;
    expect(codeOf(der)).toBe('bad-csr');
  });

  it('an iPAddress SAN of 5 octets: bad-csr', () => {
    const k = generateKeyPair('ecdsa-p256').privateKey;
    const ext = seq(oid(OID.subjectAltName), tlv(0x04, seq(tlv(0x87, Buffer.from([1, 2, 3, 4, 5])))));
    expect(codeOf(buildCsr({ privateKey: k, rawAttributes: [extensionRequest([ext])] }))).toBe('bad-csr');
  });

  it('a challengePassword with two values: bad-csr', () => {
    const k = generateKeyPair('ecdsa-p256').privateKey;
    const attr = seq(oid(OID.challengePassword), set(tlv(0x0c, Buffer.from('a')), tlv(0x0c, Buffer.from('b'))));
    expect(codeOf(buildCsr({ privateKey: k, rawAttributes: [attr] }))).toBe('bad-csr');
  });

  it('a SAN extension marked critical is still read', () => {
    const k = generateKeyPair('ecdsa-p256').privateKey;
    const san = sanExtension([{ type: 'dns', value: 'a.example' }]);
    const parts = children(readOne(san));
    const critical = seq(parts[0].full, Buffer.from('0101ff', 'hex'), parts[1].full);
    expect(parseCsr(buildCsr({ privateKey: k, rawAttributes: [extensionRequest([critical])] })).sans).toEqual([{ type: 'dns', value: 'a.example' }]);
  });

  // The cases below are well-signed requests with malformed insides. parseCsr must answer with a
  // DeviceCaError ('bad-request' or 'bad-csr'); today each one escapes as a TypeError or RangeError
  // (see the report: src/ra/csr.ts and src/der/der-reader.ts). Flip to it() once fixed.
  const k = generateKeyPair('ecdsa-p256').privateKey;
  it.each([
    ['an empty signature AlgorithmIdentifier (TypeError in decodeOid)', () => buildCsr({ privateKey: k, signatureAlgorithm: seq() })],
    ['an extensionRequest with an empty SET (TypeError)', () => buildCsr({ privateKey: k, rawAttributes: [seq(oid(OID.extensionRequest), set())] })],
    ['an empty Extension SEQUENCE (TypeError)', () => buildCsr({ privateKey: k, rawAttributes: [extensionRequest([seq()])] })],
    ['a BMPString subject with an odd length (RangeError from swap16)', () => buildCsr({ privateKey: k, subject: seq(set(seq(oid(OID.commonName), tlv(0x1e, Buffer.from([0, 0x61, 0]))))) })],
  ])('%s: a DeviceCaError', (_what, make) => {
    expect(['bad-request', 'bad-csr']).toContain(codeOf(make()));
  });

  it('fuzz: mutated openssl requests only ever fail with DeviceCaError (known escapes excluded)', () => {
    const seeds = ['ec-p256-printable-san.der', 'rsa-2048-san.der', 'ec-p384-utf8.der'].map(fixture);
    let state = 0xc0ffee;
    const rnd = (n: number): number => {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      return state % n;
    };
    const unexpected: string[] = [];
    const codes = new Map<string, number>();
    for (let i = 0; i < 3000; i++) {
      const input = Buffer.from(seeds[i % seeds.length]);
      for (let j = 0, n = 1 + rnd(3); j < n; j++) input[rnd(input.length)] = rnd(256);
      try {
        parseCsr(i % 4 === 0 ? input.subarray(0, rnd(input.length)) : input);
        codes.set('parsed', (codes.get('parsed') ?? 0) + 1);
      } catch (e) {
        if (e instanceof DeviceCaError) codes.set(e.code, (codes.get(e.code) ?? 0) + 1);
        // the escapes fixed in src/ra/csr.ts (table above)
        else if (/Cannot read properties of undefined|multiple of 16-bits/.test((e as Error).message)) codes.set('known-escape', (codes.get('known-escape') ?? 0) + 1);
        else unexpected.push(`${(e as Error).name}: ${(e as Error).message}`);
      }
    }
    expect(unexpected).toEqual([]);
    expect(codes.get('bad-request')).toBeGreaterThan(500);
    expect(codes.get('bad-csr')).toBeGreaterThan(500);
  });
});
