import * as crypto from 'node:crypto';
import { assembleCertificate, basicConstraints, encodeTbs, newSerial, subjectAltName } from '../../../src/ca/certificate-encoder';
import { encodeName } from '../../../src/ca/name';
import { signatureAlgorithmFor } from '../../../src/keys/signature-algorithm';
import { Tlv, children, decodeOid, decodeString, expectTag, readOne, readTlv } from '../../../src/der/der-reader';
import { DeviceCaError } from '../../../src/errors/device-ca-error';

const h = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** codeOf runs f and returns the DeviceCaError code it threw; any other throwable fails the test. */
function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof DeviceCaError) return e.code;
    throw new Error(`expected DeviceCaError, got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
  }
  return 'no error';
}

describe('readTlv lengths', () => {
  it.each([0, 1, 127, 128, 255, 256, 65535, 65536])('long and short forms: %i content octets', (n) => {
    const header = n < 128 ? [0x04, n] : n < 256 ? [0x04, 0x81, n] : n < 65536 ? [0x04, 0x82, n >> 8, n & 0xff] : [0x04, 0x83, n >> 16, (n >> 8) & 0xff, n & 0xff];
    const buf = Buffer.concat([Buffer.from(header), Buffer.alloc(n, 7), Buffer.from([0x05, 0x00])]);
    const { tlv, next } = readTlv(buf, 0);
    expect(tlv.tag).toBe(0x04);
    expect(tlv.value.length).toBe(n);
    expect(tlv.full.length).toBe(header.length + n);
    expect(next).toBe(header.length + n);
    expect(readTlv(buf, next).tlv.tag).toBe(0x05);
  });

  it('accepts a four-octet length', () => {
    const buf = Buffer.concat([h('04 84 00 00 01 00'), Buffer.alloc(256)]);
    expect(readOne(buf).value.length).toBe(256);
  });
});

describe('malformed input is DeviceCaError bad-request', () => {
  it.each([
    ['empty buffer', ''],
    ['lone tag', '30'],
    ['truncated content', '3003 0201'],
    ['indefinite length', '3080 0500 0000'],
    ['5-octet length', '3085 0000000001 00'],
    ['8-octet length', '3088 0000000000000001 00'],
    ['truncated length octets', '3082 01'],
    ['4-octet length beyond the buffer', '0484 ffffffff 00'],
    ['high tag number form', '1f2201 00'],
    ['trailing bytes', '0500 00'],
    ['two TLVs where one is expected', '0500 0500'],
  ])('%s', (_what, input) => {
    expect(codeOf(() => readOne(h(input)))).toBe('bad-request');
  });

  it('readOne with an unexpected tag', () => {
    expect(codeOf(() => readOne(h('0500'), 0x30))).toBe('bad-request');
  });

  it('children: too many elements', () => {
    const five = h('300a 0500 0500 0500 0500 0500');
    expect(children(readOne(five), 5)).toHaveLength(5);
    expect(codeOf(() => children(readOne(five), 4))).toBe('bad-request');
  });

  it('children: truncated inner element', () => {
    expect(codeOf(() => children(readOne(h('3003 020500'))))).toBe('bad-request');
  });

  it('children: inner indefinite length', () => {
    expect(codeOf(() => children(readOne(h('3004 3080 0000'))))).toBe('bad-request');
  });

  it('expectTag mismatch', () => {
    expect(codeOf(() => expectTag(readOne(h('0500')), 0x02, 'INTEGER'))).toBe('bad-request');
  });

  it.each([
    ['empty OID', '0600'],
    ['OID with a truncated subidentifier', '0602 2a86'],
    ['OID longer than 64 octets', '0641' + '2a'.repeat(65)],
    ['not an OID', '0401 2a'],
  ])('decodeOid: %s', (_what, input) => {
    expect(codeOf(() => decodeOid(readOne(h(input))))).toBe('bad-request');
  });

  it('decodeString: a type that is not a string', () => {
    expect(codeOf(() => decodeString(readOne(h('0403 616263'))))).toBe('bad-request');
  });

  // BUG (src/der/der-reader.ts decodeString, BMPString case): Buffer.swap16 throws a RangeError on an odd
  // number of octets. Flip to it() once fixed.
  it('decodeString: a BMPString with an odd number of octets', () => {
    expect(codeOf(() => decodeString(readOne(h('1e03 006100'))))).toBe('bad-request');
  });
});

describe('well-formed input', () => {
  it.each([
    ['0c06 476572c3a474', 'Gerät'],
    ['1305 6465762031', 'dev 1'],
    ['1603 614062', 'a@b'],
    ['1403 e9e8e0', 'éèà'],
    ['1e0a 00470065007200e40074', 'Gerät'],
  ])('decodeString %s -> %s', (input, expected) => {
    expect(decodeString(readOne(h(input)))).toBe(expected);
  });

  it('splits a real certificate into its three parts with views into the source buffer', () => {
    const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const der = selfSigned(privateKey);
    const x = new crypto.X509Certificate(der); // Node (OpenSSL) accepts it: the walk below reads a real certificate
    expect(x.verify(crypto.createPublicKey(privateKey))).toBe(true);
    const outer = readOne(der, 0x30);
    const parts = children(outer);
    expect(parts.map((p) => p.tag)).toEqual([0x30, 0x30, 0x03]);
    expect(Buffer.concat([der.subarray(0, outer.full.length - outer.value.length), ...parts.map((p) => p.full)]).equals(der)).toBe(true);
    expect(parts[0].full.buffer).toBe(der.buffer); // a view, not a copy
  });
});

describe('fuzz: the reader never throws anything but bad-request', () => {
  /** walk recurses into every constructed TLV the way a parser would. */
  function walk(t: Tlv, depth = 0): void {
    if (depth > 40) return;
    if (t.tag === 0x06) decodeOid(t);
    // BMPString (0x1e) is left out: its odd-length case has its own test above
    if ([0x0c, 0x13, 0x16, 0x14].includes(t.tag)) decodeString(t);
    if (t.tag & 0x20) for (const c of children(t)) walk(c, depth + 1);
  }

  it('random mutations of a certificate and random bytes', () => {
    const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const seed = selfSigned(privateKey);
    let state = 0x12345678;
    const rnd = (n: number): number => {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      return state % n;
    };
    const others: string[] = [];
    let badRequests = 0;
    for (let i = 0; i < 5000; i++) {
      let input: Buffer;
      if (i % 5 === 0) input = Buffer.from(Array.from({ length: rnd(64) }, () => rnd(256)));
      else {
        input = Buffer.from(seed);
        for (let k = 0, n = 1 + rnd(4); k < n; k++) input[rnd(input.length)] = rnd(256);
        if (i % 7 === 0) input = input.subarray(0, rnd(input.length));
      }
      try {
        walk(readOne(input));
      } catch (e) {
        if (e instanceof DeviceCaError && e.code === 'bad-request') badRequests++;
        else others.push(`${(e as Error).name}: ${(e as Error).message} on ${input.toString('hex')}`);
      }
    }
    expect(others).toEqual([]);
    expect(badRequests).toBeGreaterThan(1000); // the mutations do hit the error paths
  });
});

/** selfSigned makes a small self-signed certificate with device-ca's own encoder (the reader's input, not its subject). */
function selfSigned(privateKey: crypto.KeyObject): Buffer {
  const spki = crypto.createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  const name = encodeName([{ type: 'CN', value: 'fuzz seed Ä' }]);
  const alg = signatureAlgorithmFor('ecdsa-p256');
  const tbs = encodeTbs({
    serial: newSerial(),
    signatureAlgorithm: alg,
    issuer: name,
    notBefore: new Date('2025-01-01T00:00:00Z'),
    notAfter: new Date('2055-01-01T00:00:00Z'),
    subject: name,
    spki,
    extensions: [
      basicConstraints(true, 0),
      subjectAltName([
        { type: 'dns', value: 'a.example' },
        { type: 'ip', value: '::1' },
      ]),
    ],
  });
  return assembleCertificate(tbs, alg, crypto.sign('sha256', tbs, { key: privateKey, dsaEncoding: 'der' }));
}
