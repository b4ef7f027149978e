/**
 * der-writer: a minimal direct DER encoder for the hot paths (certificate issuance, later CRL and OCSP).
 * The generic ASN.1 object libraries cost milliseconds per certificate; concatenating pre-encoded
 * buffers costs microseconds. Every structure built here is checked byte for byte against
 * @peculiar/x509's output in test/unit/der.
 */

/** derLength encodes a DER definite length (X.690 §8.1.3). */
export function derLength(len: number): Buffer {
  if (len < 0x80) return Buffer.from([len]);
  if (len < 0x100) return Buffer.from([0x81, len]);
  if (len < 0x10000) return Buffer.from([0x82, len >> 8, len & 0xff]);
  if (len < 0x1000000) return Buffer.from([0x83, len >> 16, (len >> 8) & 0xff, len & 0xff]);
  return Buffer.from([0x84, (len >>> 24) & 0xff, (len >> 16) & 0xff, (len >> 8) & 0xff, len & 0xff]);
}

/** tlv wraps already-encoded content in a tag and length. */
export function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = content.length === 1 ? content[0] : Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);
}

export const seq = (...items: Buffer[]): Buffer => tlv(0x30, ...items);
export const set = (...items: Buffer[]): Buffer => tlv(0x31, ...items);
export const octetString = (b: Buffer): Buffer => tlv(0x04, b);
/** bitString encodes a BIT STRING with zero unused bits (keys, signatures). */
export const bitString = (b: Buffer): Buffer => tlv(0x03, Buffer.from([0]), b);
export const contextExplicit = (n: number, inner: Buffer): Buffer => tlv(0xa0 | n, inner);
export const contextImplicitPrimitive = (n: number, content: Buffer): Buffer => tlv(0x80 | n, content);
export const contextImplicitConstructed = (n: number, content: Buffer): Buffer => tlv(0xa0 | n, content);
export const NULL = Buffer.from([0x05, 0x00]);
export const BOOLEAN_TRUE = Buffer.from([0x01, 0x01, 0xff]);

/** integerFromUnsigned encodes a non-negative big-endian magnitude as a minimal DER INTEGER. */
export function integerFromUnsigned(mag: Buffer): Buffer {
  let i = 0;
  while (i < mag.length - 1 && mag[i] === 0) i++;
  let b = mag.subarray(i);
  if (b.length === 0) b = Buffer.from([0]);
  if (b[0] & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
  return tlv(0x02, b);
}

export function integer(n: number): Buffer {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError('integer: non-negative safe integer expected');
  const bytes: number[] = [];
  let v = n;
  do {
    bytes.unshift(v & 0xff);
    v = Math.floor(v / 256);
  } while (v > 0);
  return integerFromUnsigned(Buffer.from(bytes));
}

/**
 * oid encodes a dotted OBJECT IDENTIFIER. Callers cache the result: it is not on a per-request path.
 * Arcs are BigInts so that UUID-based OIDs (2.25.<128-bit UUID>, X.667) encode exactly.
 */
export function oid(dotted: string): Buffer {
  const parts = dotted.split('.').map((p) => (/^(0|[1-9][0-9]*)$/.test(p) ? BigInt(p) : -1n));
  if (parts.length < 2 || parts.some((p) => p < 0n) || parts[0] > 2n || (parts[0] < 2n && parts[1] >= 40n)) throw new RangeError(`bad OID ${dotted}`);
  const out: number[] = [];
  // X.690 §8.19.4: the first subidentifier is 40*X+Y, base-128 like the others (2.999 -> 0x88 0x37)
  for (const p of [parts[0] * 40n + parts[1], ...parts.slice(2)]) {
    const stack: number[] = [Number(p & 0x7fn)];
    let v = p >> 7n;
    while (v > 0n) {
      stack.unshift(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    out.push(...stack);
  }
  return tlv(0x06, Buffer.from(out));
}

export const utf8String = (s: string): Buffer => tlv(0x0c, Buffer.from(s, 'utf8'));
export const printableString = (s: string): Buffer => tlv(0x13, Buffer.from(s, 'ascii'));
export const ia5String = (s: string): Buffer => tlv(0x16, Buffer.from(s, 'ascii'));

const two = (n: number): string => (n < 10 ? '0' : '') + n;

/** time encodes RFC 5280 §4.1.2.5 Time: UTCTime through 2049, GeneralizedTime from 2050, seconds, Z. */
export function time(d: Date): Buffer {
  const y = d.getUTCFullYear();
  const rest = two(d.getUTCMonth() + 1) + two(d.getUTCDate()) + two(d.getUTCHours()) + two(d.getUTCMinutes()) + two(d.getUTCSeconds()) + 'Z';
  if (y >= 1950 && y < 2050) return tlv(0x17, Buffer.from(two(y % 100) + rest, 'ascii'));
  return generalizedTime(d);
}

export function generalizedTime(d: Date): Buffer {
  const rest = two(d.getUTCMonth() + 1) + two(d.getUTCDate()) + two(d.getUTCHours()) + two(d.getUTCMinutes()) + two(d.getUTCSeconds()) + 'Z';
  return tlv(0x18, Buffer.from(String(d.getUTCFullYear()).padStart(4, '0') + rest, 'ascii'));
}

// --- appended for CRL and OCSP (crl-encoder.ts, ocsp-codec.ts) ---

/** enumerated encodes a small non-negative ENUMERATED (CRLReason, OCSPResponseStatus). */
export function enumerated(n: number): Buffer {
  if (!Number.isInteger(n) || n < 0 || n > 127) throw new RangeError('enumerated: 0..127 expected');
  return Buffer.from([0x0a, 0x01, n]);
}

/** integerFromBigInt encodes a non-negative bigint (cRLNumber) as a minimal DER INTEGER. */
export function integerFromBigInt(n: bigint): Buffer {
  if (n < 0n) throw new RangeError('integerFromBigInt: non-negative expected');
  let hex = n.toString(16);
  if (hex.length % 2) hex = '0' + hex;
  return integerFromUnsigned(Buffer.from(hex, 'hex'));
}

/** derHeaderSize is the size of a tag plus DER length octets for content of len bytes. */
export function derHeaderSize(len: number): number {
  return len < 0x80 ? 2 : len < 0x100 ? 3 : len < 0x10000 ? 4 : len < 0x1000000 ? 5 : 6;
}

/**
 * writeHeader writes a tag and DER length into buf at offset and returns the offset after it. Streaming
 * encoders use it to put a header in front of content that is already in place, without a copy.
 */
export function writeHeader(buf: Buffer, offset: number, tag: number, len: number): number {
  let p = offset;
  buf[p++] = tag;
  if (len < 0x80) buf[p++] = len;
  else if (len < 0x100) {
    buf[p++] = 0x81;
    buf[p++] = len;
  } else if (len < 0x10000) {
    buf[p++] = 0x82;
    buf[p++] = len >> 8;
    buf[p++] = len & 0xff;
  } else if (len < 0x1000000) {
    buf[p++] = 0x83;
    buf[p++] = len >> 16;
    buf[p++] = (len >> 8) & 0xff;
    buf[p++] = len & 0xff;
  } else {
    buf[p++] = 0x84;
    buf[p++] = (len >>> 24) & 0xff;
    buf[p++] = (len >> 16) & 0xff;
    buf[p++] = (len >> 8) & 0xff;
    buf[p++] = len & 0xff;
  }
  return p;
}

/**
 * writeGeneralizedTime writes a GeneralizedTime TLV (YYYYMMDDHHMMSSZ, 17 octets; no fraction, RFC 5280
 * §4.1.2.5.2) into buf at offset and returns the offset after it. The caller checks the year is 0..9999.
 */
export function writeGeneralizedTime(buf: Buffer, offset: number, d: Date): number {
  const y = d.getUTCFullYear();
  const p = offset;
  const w2 = (at: number, n: number): void => {
    buf[at] = 48 + ((n / 10) | 0);
    buf[at + 1] = 48 + (n % 10);
  };
  buf[p] = 0x18;
  buf[p + 1] = 15;
  w2(p + 2, (y / 100) | 0);
  w2(p + 4, y % 100);
  w2(p + 6, d.getUTCMonth() + 1);
  w2(p + 8, d.getUTCDate());
  w2(p + 10, d.getUTCHours());
  w2(p + 12, d.getUTCMinutes());
  w2(p + 14, d.getUTCSeconds());
  buf[p + 16] = 0x5a; // Z
  return p + 17;
}
