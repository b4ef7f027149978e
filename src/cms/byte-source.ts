import * as crypto from 'node:crypto';
import { readTlvHeader } from '../der/der-reader';
import { DeviceCaError } from '../errors/device-ca-error';
import { DigestName } from './cms-algorithms';
import { chunksOf, FileRange, readAt } from './file-range';

/**
 * byte-source: a large content (a release's eContent, the encrypted image inside it) read by range, from
 * a Buffer or from a file alike, so one reader serves both and the file case keeps one chunk in memory,
 * not the image (issue 13, "memory stays bounded").
 */

/** ByteSource: `length` bytes readable by range; offsets are relative to the source. */
export interface ByteSource {
  length: number;
  /** read: exactly `length` bytes at `offset` in a Buffer of their own (headers, not contents) */
  read(offset: number, length: number): Buffer;
  /** chunks: the range in pieces; a piece is only valid until the next is asked for */
  chunks(offset: number, length: number): Iterable<Buffer>;
}

/** bufferSource: a Buffer as a ByteSource (pieces are views of it, never copied). */
export function bufferSource(b: Buffer): ByteSource {
  return {
    length: b.length,
    read: (offset, length) => {
      within(b.length, offset, length);
      return Buffer.from(b.subarray(offset, offset + length));
    },
    chunks: (offset, length) => {
      within(b.length, offset, length);
      return [b.subarray(offset, offset + length)];
    },
  };
}

/** fileSource: a range of an open file as a ByteSource (read in CHUNK_BYTES pieces into one reused buffer). */
export function fileSource(r: FileRange): ByteSource {
  return {
    length: r.length,
    read: (offset, length) => {
      within(r.length, offset, length);
      return readAt(r.fd, r.offset + offset, length);
    },
    chunks: (offset, length) => {
      within(r.length, offset, length);
      return chunksOf({ fd: r.fd, offset: r.offset + offset, length });
    },
  };
}

/** subSource: `length` bytes of a source from `offset`, as a source of their own (a package's image inside the package). */
export function subSource(src: ByteSource, offset: number, length: number): ByteSource {
  within(src.length, offset, length);
  return {
    length,
    read: (o, n) => {
      within(length, o, n);
      return src.read(offset + o, n);
    },
    chunks: (o, n) => {
      within(length, o, n);
      return src.chunks(offset + o, n);
    },
  };
}

/** hashSource hashes a range once with every digest given (one pass). */
export function hashSource(src: ByteSource, digests: Iterable<DigestName>, offset = 0, length = src.length - offset): Map<DigestName, Buffer> {
  const hashes = [...new Set(digests)].map((d) => [d, crypto.createHash(d)] as const);
  for (const c of src.chunks(offset, length)) for (const [, h] of hashes) h.update(c);
  return new Map(hashes.map(([d, h]) => [d, h.digest()]));
}

/** SourceTlv: where one DER TLV of a source is: its tag, where its value starts and where it ends. */
export interface SourceTlv {
  tag: number;
  start: number;
  valueStart: number;
  end: number;
}

/**
 * tlvAt reads the tag and definite length at `offset` (der-reader.ts readTlvHeader, X.690 §8.1.2-3) without
 * reading the value, and checks the value ends no later than `limit`. Errors: 'bad-request' naming `what`.
 */
export function tlvAt(src: ByteSource, offset: number, limit: number, what: string): SourceTlv {
  // a header is at most 6 bytes here (one tag octet, a length in up to 4 octets): read no more than that
  const h = offset + 2 > limit ? Buffer.alloc(0) : src.read(offset, Math.min(6, limit - offset));
  const { tag, headerLength, length } = readTlvHeader(h, 0, what);
  const end = offset + headerLength + length;
  if (end > limit) throw new DeviceCaError('bad-request', `malformed DER: ${what}: truncated content`);
  return { tag, start: offset, valueStart: offset + headerLength, end };
}

function within(size: number, offset: number, length: number): void {
  if (offset < 0 || length < 0 || offset + length > size) throw new DeviceCaError('bad-request', 'a read runs past the end of the content (truncated?)');
}

/** tlvBytes: the DER of one (small) TLV of the source, e.g. an algorithm identifier before its content. */
export function tlvBytes(src: ByteSource, t: SourceTlv): Buffer {
  return src.read(t.start, t.end - t.start);
}

/**
 * decipherInto deciphers `length` bytes of the source at `offset` chunk by chunk into sink (one chunk in
 * memory). The padding is only checked by the decipher's final(), after the last chunk: a failure there
 * is 'bad-request' with `failure`, and the caller drops what sink got (EnvelopedData and EncryptedData alike).
 */
export function decipherInto(src: ByteSource, offset: number, length: number, d: crypto.Decipher, sink: (b: Buffer) => void, failure: string): void {
  for (const c of src.chunks(offset, length)) {
    const out = d.update(c);
    if (out.length > 0) sink(out);
  }
  let last: Buffer;
  try {
    last = d.final();
  } catch {
    throw new DeviceCaError('bad-request', failure);
  }
  if (last.length > 0) sink(last);
}
