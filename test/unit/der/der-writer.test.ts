import * as asn1js from 'asn1js';
import { Time as AsnTime } from '@peculiar/asn1-x509';
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  BOOLEAN_TRUE,
  NULL,
  bitString,
  contextExplicit,
  derHeaderSize,
  derLength,
  enumerated,
  generalizedTime,
  ia5String,
  integer,
  integerFromBigInt,
  integerFromUnsigned,
  oid,
  printableString,
  seq,
  time,
  tlv,
  utf8String,
  writeHeader,
} from '../../../src/der/der-writer';
import { decodeOid, readOne } from '../../../src/der/der-reader';
import { OID } from '../../../src/der/oids';

const hex = (b: Buffer | ArrayBuffer): string => Buffer.from(b as ArrayBuffer).toString('hex');

describe('derLength', () => {
  // X.690 §8.1.3: short form below 128, then 0x80|n followed by n big-endian octets, minimal n
  it.each([
    [0, '00'],
    [1, '01'],
    [127, '7f'],
    [128, '8180'],
    [255, '81ff'],
    [256, '820100'],
    [65535, '82ffff'],
    [65536, '83010000'],
    [0xffffff, '83ffffff'],
    [0x1000000, '8401000000'],
    [0xffffffff, '84ffffffff'],
  ])('%i -> %s', (len, expected) => {
    expect(hex(derLength(len))).toBe(expected);
  });

  it.each([0, 1, 127, 128, 255, 256, 65535, 65536, 70000])('tlv of %i content octets round-trips through the reader and matches asn1js', (n) => {
    const content = Buffer.alloc(n, 0xa5);
    const der = tlv(0x04, content);
    expect(hex(der)).toBe(hex(new asn1js.OctetString({ valueHex: new Uint8Array(content) }).toBER()));
    const t = readOne(der, 0x04);
    expect(t.value.length).toBe(n);
    expect(t.full.length).toBe(der.length);
    expect(t.value.equals(content)).toBe(true);
  });
});

describe('integer', () => {
  it.each([
    [0, '020100'],
    [1, '020101'],
    [127, '02017f'],
    [128, '02020080'],
    [255, '020200ff'],
    [256, '02020100'],
    [32767, '02027fff'],
    [32768, '0203008000'],
    [65535, '020300ffff'],
    [2 ** 32, '02050100000000'],
    [Number.MAX_SAFE_INTEGER, '02071fffffffffffff'],
  ])('integer(%i) -> %s', (n, expected) => {
    expect(hex(integer(n))).toBe(expected);
    expect(hex(integer(n))).toBe(hex(new asn1js.Integer({ value: n }).toBER()));
  });

  it.each([-1, 1.5, Number.NaN, 2 ** 53])('integer(%p) is a RangeError', (n) => {
    expect(() => integer(n)).toThrow(RangeError);
  });

  it.each([
    ['', '020100'],
    ['00', '020100'],
    ['000000', '020100'],
    ['05', '020105'],
    ['00000005', '020105'],
    ['7f', '02017f'],
    ['80', '02020080'],
    ['0080', '02020080'],
    ['000080', '02020080'],
    ['00ff', '020200ff'],
    ['0100', '02020100'],
    ['ffffffffffffffffffffffffffffffff', '021100ffffffffffffffffffffffffffffffff'],
    ['4000000000000000000000000000000a', '02104000000000000000000000000000000a'],
  ])('integerFromUnsigned(%s) -> %s (leading zeros stripped, sign octet added)', (mag, expected) => {
    expect(hex(integerFromUnsigned(Buffer.from(mag, 'hex')))).toBe(expected);
  });
});

describe('oid', () => {
  // golden encodings from `openssl asn1parse -genstr OID:<dotted>`
  const table: [string, string][] = [
    ['1.2.840.113549.1.9.16.2.59', '060b2a864886f70d010910023b'], // id-aa-attestation
    ['1.2.840.113549.1.9.7', '06092a864886f70d010907'],
    ['1.2.840.10045.3.1.7', '06082a8648ce3d030107'],
    ['1.3.132.0.34', '06052b81040022'],
    ['1.3.101.112', '06032b6570'],
    ['2.5.29.17', '0603551d11'],
    ['2.23.133.8.3', '06056781050803'],
    ['1.3.6.1.4.1.311.21.7', '06092b0601040182371507'],
    ['0.9.2342.19200300.100.1.25', '060a0992268993f22c640119'],
    ['0.0', '060100'],
    ['1.2.128', '06032a8100'],
    ['1.2.16383', '06032aff7f'],
    ['1.2.16384', '06042a818000'],
    ['1.2.4294967295', '06062a8fffffff7f'],
    ['1.2.9007199254740991', '06092a8fffffffffffff7f'],
    ['2.47.1', '06027f01'],
    // a UUID OID (X.667): arcs beyond Number's exact range
    ['2.25.42488998365112415796939854817394427682', '061369bff78ad6ecd5929e9db3a4dda1d2dcb08e22'],
  ];
  it.each(table)('%s encodes as openssl does and decodes back', (dotted, expected) => {
    const der = oid(dotted);
    expect(hex(der)).toBe(expected);
    expect(decodeOid(readOne(der))).toBe(dotted);
  });

  it('encodes every OID device-ca names the way asn1js does', () => {
    for (const dotted of Object.values(OID)) {
      expect(hex(oid(dotted))).toBe(hex(new asn1js.ObjectIdentifier({ value: dotted }).toBER()));
      expect(decodeOid(readOne(oid(dotted)))).toBe(dotted);
    }
  });

  // BUG (src/der/der-writer.ts oid()): the first subidentifier 40*X+Y is pushed as one number, so it is
  // truncated to a byte when it is 128 or more (arc 2.48 and above). Flip to it() once fixed.
  it.each([
    ['2.48.1', '0603810001'],
    ['2.999.3', '0603883703'],
  ])('%s (first subidentifier >= 128) encodes as openssl does', (dotted, expected) => {
    expect(hex(oid(dotted))).toBe(expected);
  });

  it('decodes a first subidentifier >= 128 (2.999.3)', () => {
    expect(decodeOid(readOne(Buffer.from('0603883703', 'hex')))).toBe('2.999.3');
  });

  it.each(['1', '', '1.x', '1.-2', '1.2.03', '1.2.3.'])('oid(%p) is a RangeError', (dotted) => {
    expect(() => oid(dotted)).toThrow(RangeError);
  });
});

describe('time', () => {
  // RFC 5280 §4.1.2.5: UTCTime for 1950..2049, GeneralizedTime otherwise; seconds always, no fraction, Z
  it.each([
    ['1950-01-01T00:00:00.000Z', 0x17, '500101000000Z'],
    ['1999-12-31T23:59:59.000Z', 0x17, '991231235959Z'],
    ['2000-01-01T00:00:00.000Z', 0x17, '000101000000Z'],
    ['2030-06-15T12:34:56.789Z', 0x17, '300615123456Z'],
    ['2049-12-31T23:59:59.999Z', 0x17, '491231235959Z'],
    ['2050-01-01T00:00:00.000Z', 0x18, '20500101000000Z'],
    ['2106-02-07T06:28:16.000Z', 0x18, '21060207062816Z'],
    ['9999-12-31T23:59:59.000Z', 0x18, '99991231235959Z'], // RFC 5280 §4.1.2.5 "no well-defined expiration"
    ['1949-12-31T23:59:59.000Z', 0x18, '19491231235959Z'],
  ])('%s -> tag 0x%s %s', (iso, tag, text) => {
    const der = time(new Date(iso));
    const t = readOne(der);
    expect(t.tag).toBe(tag);
    expect(t.value.toString('ascii')).toBe(text);
  });

  it.each(['1950-01-01T00:00:00Z', '2025-03-04T05:06:07Z', '2049-12-31T23:59:59Z', '2050-01-01T00:00:00Z', '2080-07-08T09:10:11Z'])('%s is byte-equal to @peculiar/asn1-x509 Time', (iso) => {
    const d = new Date(iso);
    expect(hex(time(d))).toBe(hex(AsnConvert.serialize(new AsnTime(d))));
  });

  it('generalizedTime writes four-digit years below 1000 with zero padding', () => {
    expect(readOne(generalizedTime(new Date('0999-01-02T03:04:05Z'))).value.toString('ascii')).toBe('09990102030405Z');
  });
});

describe('strings and fixed encodings', () => {
  it.each([
    ['utf8String', utf8String('Gerät'), '0c06476572c3a474'],
    ['printableString', printableString('dev 1'), '13056465762031'],
    ['ia5String', ia5String('a@b'), '1603614062'],
    ['bitString', bitString(Buffer.from('abcd', 'hex')), '030300abcd'],
    ['NULL', NULL, '0500'],
    ['BOOLEAN_TRUE', BOOLEAN_TRUE, '0101ff'],
    ['empty seq', seq(), '3000'],
    ['seq', seq(NULL, BOOLEAN_TRUE), '30050500' + '0101ff'],
    ['contextExplicit', contextExplicit(3, NULL), 'a3020500'],
    ['tlv of several pieces', tlv(0x04, Buffer.from('01', 'hex'), Buffer.from('0203', 'hex')), '0403010203'],
  ])('%s -> %#', (_name, der, expected) => {
    expect(hex(der)).toBe(expected);
  });
});

describe('CRL and OCSP additions', () => {
  const BOUNDARIES = [0, 1, 127, 128, 255, 256, 65535, 65536, 0xffffff, 0x1000000, 0xffffffff];

  it.each(BOUNDARIES)('derHeaderSize(%i) is 1 + the length octets derLength writes', (len) => {
    expect(derHeaderSize(len)).toBe(1 + derLength(len).length);
  });

  it.each(BOUNDARIES)('writeHeader at %i writes the same octets as tag + derLength, at an offset', (len) => {
    const buf = Buffer.alloc(16, 0xee);
    const end = writeHeader(buf, 3, 0x30, len);
    expect(end).toBe(3 + derHeaderSize(len));
    expect(buf.subarray(3, end).toString('hex')).toBe('30' + hex(derLength(len)));
    expect(buf.subarray(0, 3).toString('hex')).toBe('eeeeee');
    expect(buf[end]).toBe(0xee);
  });

  it('writeHeader output is read back by the reader', () => {
    const content = Buffer.alloc(300, 1);
    const buf = Buffer.alloc(derHeaderSize(content.length) + content.length);
    content.copy(buf, writeHeader(buf, 0, 0x04, content.length));
    expect(readOne(buf, 0x04).value.equals(content)).toBe(true);
  });

  it.each([
    [0, '0a0100'],
    [1, '0a0101'],
    [6, '0a0106'],
    [127, '0a017f'],
  ])('enumerated(%i) -> %s', (n, expected) => {
    expect(hex(enumerated(n))).toBe(expected);
    expect(hex(enumerated(n))).toBe(hex(new asn1js.Enumerated({ value: n }).toBER()));
  });

  it.each([-1, 128, 1.5])('enumerated(%p) is a RangeError', (n) => {
    expect(() => enumerated(n)).toThrow(RangeError);
  });

  it.each([0n, 1n, 127n, 128n, 255n, 256n, 2n ** 63n, 2n ** 64n - 1n, 2n ** 159n])('integerFromBigInt(%s) is a minimal positive INTEGER', (n) => {
    const der = integerFromBigInt(n);
    if (n <= BigInt(Number.MAX_SAFE_INTEGER)) expect(hex(der)).toBe(hex(integer(Number(n))));
    const t = readOne(der, 0x02);
    expect(t.value[0] & 0x80).toBe(0); // positive
    expect(t.value.length === 1 || t.value[0] !== 0 || (t.value[1] & 0x80) !== 0).toBe(true); // minimal
    expect(BigInt('0x' + t.value.toString('hex'))).toBe(n);
  });

  it('integerFromBigInt rejects negatives', () => {
    expect(() => integerFromBigInt(-1n)).toThrow(RangeError);
  });
});
