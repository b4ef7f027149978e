import { DeviceCaError } from '../errors/device-ca-error';

/**
 * der-reader: a bounds-checked DER walker for untrusted input. It only splits TLVs; it never recurses
 * on its own, so a hostile nesting depth cannot exhaust the stack. Every malformation throws
 * DeviceCaError('bad-request').
 */
export interface Tlv {
  tag: number;
  /** header+content, a view into the source buffer */
  full: Buffer;
  /** content only */
  value: Buffer;
}

function bad(what: string): never {
  throw new DeviceCaError('bad-request', `malformed DER: ${what}`);
}

/** TlvHeader: a TLV's tag, the length of its tag and length octets, and the length of its content. */
export interface TlvHeader {
  tag: number;
  headerLength: number;
  length: number;
}

/**
 * readTlvHeader reads the tag and the definite length at `offset` (X.690 §8.1.2-3: low tag numbers only,
 * lengths in at most 4 octets) from `buf`, which must hold the whole header but need not hold the content:
 * readTlv checks the content against its buffer, cms/byte-source.ts `tlvAt` against a file range it reads
 * by pieces. Errors: 'bad-request' "malformed DER: ...", after `what: ` when given.
 */
export function readTlvHeader(buf: Buffer, offset: number, what?: string): TlvHeader {
  const fail = what === undefined ? bad : (why: string): never => bad(`${what}: ${why}`);
  if (offset + 2 > buf.length) fail('truncated header');
  const tag = buf[offset];
  if ((tag & 0x1f) === 0x1f) fail('high tag numbers are not used here');
  let length = buf[offset + 1];
  let headerLength = 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n === 0) fail('indefinite length');
    if (n > 4) fail('length too long');
    if (offset + 2 + n > buf.length) fail('truncated length');
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + buf[offset + 2 + i];
    headerLength += n;
  }
  return { tag, headerLength, length };
}

/** readTlv reads one TLV at offset; returns it and the offset after it. */
export function readTlv(buf: Buffer, offset = 0): { tlv: Tlv; next: number } {
  const { tag, headerLength, length } = readTlvHeader(buf, offset);
  const p = offset + headerLength;
  if (p + length > buf.length) bad('truncated content');
  return { tlv: { tag, full: buf.subarray(offset, p + length), value: buf.subarray(p, p + length) }, next: p + length };
}

/** readOne parses a buffer that must hold exactly one TLV. */
export function readOne(buf: Buffer, expectTag?: number): Tlv {
  const { tlv, next } = readTlv(buf, 0);
  if (next !== buf.length) bad('trailing bytes');
  if (expectTag !== undefined && tlv.tag !== expectTag) bad(`expected tag 0x${expectTag.toString(16)}, got 0x${tlv.tag.toString(16)}`);
  return tlv;
}

/** children splits a constructed value into its TLVs (at most maxItems, to bound work). */
export function children(t: Tlv, maxItems = 1000): Tlv[] {
  const out: Tlv[] = [];
  let p = 0;
  while (p < t.value.length) {
    if (out.length >= maxItems) bad('too many elements');
    const { tlv, next } = readTlv(t.value, p);
    out.push(tlv);
    p = next;
  }
  return out;
}

export function expectTag(t: Tlv, tag: number, what: string): Tlv {
  if (t.tag !== tag) bad(`${what}: unexpected tag 0x${t.tag.toString(16)}`);
  return t;
}

/** decodeOid turns OBJECT IDENTIFIER content into dotted form. */
export function decodeOid(t: Tlv): string {
  expectTag(t, 0x06, 'OBJECT IDENTIFIER');
  const v = t.value;
  if (v.length === 0 || v.length > 64) bad('OID length');
  // BigInt arcs: UUID-based OIDs (2.25.<128-bit>, X.667) exceed Number's exact range
  const parts: bigint[] = [];
  let acc = 0n;
  for (let i = 0; i < v.length; i++) {
    acc = (acc << 7n) | BigInt(v[i] & 0x7f);
    if (!(v[i] & 0x80)) {
      parts.push(acc);
      acc = 0n;
    } else if (i === v.length - 1) bad('OID truncated');
  }
  const first = parts.shift()!;
  const a = first < 80n ? first / 40n : 2n;
  return [a, first - a * 40n, ...parts].join('.');
}

/** decodeString reads the string types a CSR subject or attribute may use. */
export function decodeString(t: Tlv): string {
  switch (t.tag) {
    case 0x0c: // UTF8String
      return t.value.toString('utf8');
    case 0x13: // PrintableString
    case 0x16: // IA5String
    case 0x14: // TeletexString, treated as Latin-1
      return t.value.toString('latin1');
    case 0x1e: // BMPString
      if (t.value.length % 2) return bad('BMPString of odd length');
      return Buffer.from(t.value).swap16().toString('utf16le');
    default:
      return bad(`unexpected string tag 0x${t.tag.toString(16)}`);
  }
}
