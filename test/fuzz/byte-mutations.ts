import { SeededRandom } from './seeded-random';

/**
 * byte-mutations turn a valid binary message (a CSR, an OCSP request) into malformed ones that stay close
 * to valid, so that the parser gets past its first byte: random bytes, truncation, bit flips, inserted and
 * deleted runs, and DER-aware damage (length fields made huge, short, indefinite or over-long; tags
 * swapped; SEQUENCEs nested thousands deep). Each mutation returns the bytes and a name for the report.
 */

export interface Mutated {
  bytes: Buffer;
  /** what was done, printed when the case fails */
  how: string;
}

/** Tlv: where one DER element sits in the buffer. */
interface Tlv {
  tagOff: number;
  lenOff: number;
  lenBytes: number;
  contentOff: number;
  contentLen: number;
  constructed: boolean;
}

/** walkDer lists the elements of well-formed DER, outer before inner; it stops quietly at anything malformed. */
function walkDer(buf: Buffer, start = 0, end = buf.length, out: Tlv[] = [], depth = 0): Tlv[] {
  let off = start;
  while (off + 2 <= end && depth < 64) {
    const tag = buf[off];
    if ((tag & 0x1f) === 0x1f) return out; // high tag numbers: not in our messages
    let len = buf[off + 1];
    let lenBytes = 1;
    if (len & 0x80) {
      const n = len & 0x7f;
      if (n === 0 || n > 4 || off + 2 + n > end) return out;
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + buf[off + 2 + i];
      lenBytes = 1 + n;
    }
    const contentOff = off + 1 + lenBytes;
    if (contentOff + len > end) return out;
    const t: Tlv = { tagOff: off, lenOff: off + 1, lenBytes, contentOff, contentLen: len, constructed: (tag & 0x20) !== 0 };
    out.push(t);
    if (t.constructed) walkDer(buf, contentOff, contentOff + len, out, depth + 1);
    off = contentOff + len;
  }
  return out;
}

const replaceLength = (buf: Buffer, t: Tlv, len: Buffer): Buffer => Buffer.concat([buf.subarray(0, t.lenOff), len, buf.subarray(t.lenOff + t.lenBytes)]);

/** derLength encodes n as a DER length field (short or long form). */
export function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** nestedSequences: depth SEQUENCEs around inner, with definite lengths (each header as long as it needs). */
export function nestedSequences(depth: number, inner: Buffer = Buffer.from([0x05, 0x00])): Buffer {
  let cur = inner;
  const parts: Buffer[] = [];
  // build headers from the inside out without copying the whole body each time
  let len = inner.length;
  for (let i = 0; i < depth; i++) {
    const h = Buffer.concat([Buffer.from([0x30]), derLength(len)]);
    parts.push(h);
    len += h.length;
  }
  cur = Buffer.concat([...parts.reverse(), inner]);
  return cur;
}

type ByteMutation = (rng: SeededRandom, valid: Buffer) => Mutated;

const MUTATIONS: [string, ByteMutation][] = [
  [
    'random',
    (rng) => {
      const n = rng.pick([0, 1, 2, 16, 100, 1000, 4000]);
      const b = rng.bytes(n);
      if (n > 0 && rng.chance(0.5)) b[0] = 0x30; // look like a SEQUENCE half the time
      return { bytes: b, how: `random ${n} bytes` };
    },
  ],
  [
    'truncate',
    (rng, v) => {
      const at = rng.int(v.length);
      return { bytes: v.subarray(0, at), how: `truncated to ${at} of ${v.length}` };
    },
  ],
  [
    'bitflip',
    (rng, v) => {
      const b = Buffer.from(v);
      const n = rng.range(1, 8);
      const at: number[] = [];
      for (let i = 0; i < n; i++) {
        const p = rng.int(b.length);
        b[p] ^= 1 << rng.int(8);
        at.push(p);
      }
      return { bytes: b, how: `bit flips at ${at.join(',')}` };
    },
  ],
  [
    'splice',
    (rng, v) => {
      const p = rng.int(v.length);
      const kind = rng.pick(['insert', 'delete', 'duplicate'] as const);
      const n = rng.range(1, 64);
      if (kind === 'insert') return { bytes: Buffer.concat([v.subarray(0, p), rng.bytes(n), v.subarray(p)]), how: `${n} random bytes inserted at ${p}` };
      if (kind === 'delete') return { bytes: Buffer.concat([v.subarray(0, p), v.subarray(p + n)]), how: `${n} bytes deleted at ${p}` };
      return { bytes: Buffer.concat([v.subarray(0, p + n), v.subarray(p)]), how: `${n} bytes at ${p} duplicated` };
    },
  ],
  [
    'der-length',
    (rng, v) => {
      const tlvs = walkDer(v);
      if (tlvs.length === 0) return { bytes: v, how: 'unchanged (no DER)' };
      const t = rng.pick(tlvs);
      const choices: [string, Buffer][] = [
        ['huge 0x84ffffffff', Buffer.from([0x84, 0xff, 0xff, 0xff, 0xff])],
        ['huge 0x88 (8 length bytes)', Buffer.from([0x88, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])],
        ['2^31', Buffer.from([0x84, 0x80, 0x00, 0x00, 0x00])],
        ['indefinite 0x80', Buffer.from([0x80])],
        ['zero', Buffer.from([0x00])],
        ['one short', derLength(Math.max(0, t.contentLen - 1))],
        ['one long', derLength(t.contentLen + 1)],
        ['non-minimal long form', Buffer.from([0x84, ...[0, 0, 0, 0].map((_, i) => (t.contentLen >>> (24 - 8 * i)) & 0xff)])],
        ['reserved 0xff', Buffer.from([0xff])],
        ['0x85 (5 length bytes)', Buffer.from([0x85, 0x00, 0x00, 0x00, 0x00, 0x10])],
      ];
      const [name, len] = rng.pick(choices);
      return { bytes: replaceLength(v, t, len), how: `length of the element at ${t.tagOff} (tag 0x${v[t.tagOff].toString(16)}) made ${name}` };
    },
  ],
  [
    'der-tag',
    (rng, v) => {
      const tlvs = walkDer(v);
      if (tlvs.length === 0) return { bytes: v, how: 'unchanged (no DER)' };
      const t = rng.pick(tlvs);
      const b = Buffer.from(v);
      const tag = rng.pick([0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0c, 0x13, 0x17, 0x18, 0x1f, 0x30, 0x31, 0xa0, 0xa3, 0x80, 0xbf, 0xff]);
      b[t.tagOff] = tag;
      return { bytes: b, how: `tag at ${t.tagOff} set to 0x${tag.toString(16)}` };
    },
  ],
  [
    'der-nesting',
    (rng, v) => {
      const depth = rng.pick([64, 1000, 10_000, 20_000]);
      if (rng.chance(0.5)) return { bytes: nestedSequences(depth, v), how: `valid message inside ${depth} SEQUENCEs` };
      // indefinite-length SEQUENCEs, never closed: a recursive parser that trusts them recurses depth times
      return { bytes: Buffer.concat([Buffer.alloc(depth * 2, Buffer.from([0x30, 0x80])), v]), how: `${depth} unclosed indefinite-length SEQUENCEs` };
    },
  ],
  [
    'der-element-swap',
    (rng, v) => {
      const tlvs = walkDer(v).filter((t) => t.tagOff > 0);
      if (tlvs.length === 0) return { bytes: v, how: 'unchanged (no DER)' };
      const t = rng.pick(tlvs);
      const el = rng.bytes(rng.range(0, 40));
      return {
        bytes: Buffer.concat([v.subarray(0, t.contentOff), el, v.subarray(t.contentOff + t.contentLen)]),
        how: `content of the element at ${t.tagOff} replaced by ${el.length} random bytes (outer lengths now wrong)`,
      };
    },
  ],
];

/** mutateBytes applies one randomly chosen mutation (sometimes two) to a valid message. */
export function mutateBytes(rng: SeededRandom, valid: Buffer): Mutated {
  const [, first] = rng.pick(MUTATIONS);
  const a = first(rng, valid);
  if (!rng.chance(0.2)) return a;
  const [, second] = rng.pick(MUTATIONS);
  const b = second(rng, a.bytes);
  return { bytes: b.bytes, how: `${a.how}; then ${b.how}` };
}
