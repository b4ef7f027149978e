import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { DeviceCaError } from '../errors/device-ca-error';
import { DigestName } from './cms-algorithms';

/**
 * file-range: a large content (a firmware image, the eContent of a package) left in its file and read in
 * chunks, so that signing, verifying and encrypting a 64 MiB image keeps one chunk in memory, not the
 * image (issue 13, "memory stays bounded").
 */

/** FileRange: `length` bytes of an open file from `offset`. */
export interface FileRange {
  fd: number;
  offset: number;
  length: number;
}

/** Sink: where streamed output goes, one chunk at a time; a chunk is only valid during the call. */
export type Sink = (chunk: Buffer) => void;

/** CHUNK_BYTES: the read size: large enough for full-speed hashing and copying, small beside any image. */
export const CHUNK_BYTES = 1 << 20;

/** wholeFile: the range of a whole open file. */
export function wholeFile(fd: number): FileRange {
  return { fd, offset: 0, length: fs.fstatSync(fd).size };
}

/**
 * chunksOf yields the range in chunks of at most CHUNK_BYTES, reusing one buffer: a consumer uses each
 * chunk before asking for the next. A file shorter than the range is 'bad-request' (it was truncated or
 * changed while read).
 */
export function* chunksOf(r: FileRange): Generator<Buffer> {
  const buf = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, Math.max(r.length, 1)));
  for (let done = 0; done < r.length;) {
    const n = fs.readSync(r.fd, buf, 0, Math.min(buf.length, r.length - done), r.offset + done);
    if (n === 0) throw new DeviceCaError('bad-request', 'the file ended before its content did (truncated?)');
    done += n;
    yield buf.subarray(0, n);
  }
}

/** readAt reads exactly `length` bytes at `offset` into a new Buffer (headers and trailers, not contents). */
export function readAt(fd: number, offset: number, length: number): Buffer {
  const out = Buffer.alloc(length);
  let p = 0;
  for (const c of chunksOf({ fd, offset, length })) {
    c.copy(out, p);
    p += c.length;
  }
  return out;
}

/** hashRange hashes the range once with every digest given (one pass over the file). */
export function hashRange(r: FileRange, digests: Iterable<DigestName>): Map<DigestName, Buffer> {
  const hashes = [...new Set(digests)].map((d) => [d, crypto.createHash(d)] as const);
  for (const c of chunksOf(r)) for (const [, h] of hashes) h.update(c);
  return new Map(hashes.map(([d, h]) => [d, h.digest()]));
}

/** copyRange sends the range to the sink, chunk by chunk. */
export function copyRange(r: FileRange, sink: Sink): void {
  for (const c of chunksOf(r)) sink(c);
}

/** fdSink writes every chunk fully to an open file descriptor. */
export function fdSink(fd: number): Sink {
  return (chunk) => {
    for (let p = 0; p < chunk.length;) p += fs.writeSync(fd, chunk, p, chunk.length - p);
  };
}

/** writeAt writes the whole buffer at `position` of an open file (a header written once the lengths are known). */
export function writeAt(fd: number, b: Buffer, position: number): void {
  for (let p = 0; p < b.length;) p += fs.writeSync(fd, b, p, b.length - p, position + p);
}

/**
 * moveWithin moves `length` bytes of an open file from `from` to `to` (the ranges may overlap, as
 * memmove's), chunk by chunk: a streamed release whose DER header turned out longer or shorter than laid
 * out shifts its content by those few bytes instead of being written again.
 */
export function moveWithin(fd: number, from: number, to: number, length: number): void {
  if (from === to || length === 0) return;
  const buf = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, length));
  // moving towards the end: copy the last chunk first, so no byte is overwritten before it is read
  const forward = to > from;
  for (let done = 0; done < length;) {
    const n = Math.min(buf.length, length - done);
    const at = forward ? length - done - n : done;
    let got = 0;
    while (got < n) {
      const r = fs.readSync(fd, buf, got, n - got, from + at + got);
      if (r === 0) throw new DeviceCaError('bad-request', 'the file ended before its content did (truncated?)');
      got += r;
    }
    writeAt(fd, buf.subarray(0, n), to + at);
    done += n;
  }
}
