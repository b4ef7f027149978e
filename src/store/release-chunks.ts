import { ByteSource } from '../cms/byte-source';
import { DeviceCaError } from '../errors/device-ca-error';
import { RELEASE_CHUNK_BYTES, ReleaseBytes } from './store';

/**
 * release-chunks: how both stores cut a release into stored chunks and hand stored bytes back
 * (FirmwareReleaseStore, issue 13): one place decides the chunk size and the checks a reader makes.
 */

/**
 * releaseChunksOf cuts a source into chunks of RELEASE_CHUNK_BYTES (the last one shorter), each a Buffer
 * of its own: a ByteSource's pieces are only valid until the next is asked for, and a store may still
 * be sending one when the next is read. An empty source gives no chunk.
 */
export function* releaseChunksOf(src: ByteSource): Generator<Buffer> {
  let chunk = Buffer.allocUnsafe(Math.min(RELEASE_CHUNK_BYTES, src.length));
  let filled = 0;
  let left = src.length;
  for (const piece of src.chunks(0, src.length)) {
    for (let at = 0; at < piece.length;) {
      const n = Math.min(piece.length - at, chunk.length - filled);
      piece.copy(chunk, filled, at, at + n);
      filled += n;
      at += n;
      if (filled === chunk.length) {
        left -= filled;
        yield chunk;
        chunk = Buffer.allocUnsafe(Math.min(RELEASE_CHUNK_BYTES, left));
        filled = 0;
      }
    }
  }
  if (left !== 0) throw new DeviceCaError('internal', `the release source gave ${src.length - left} of its ${src.length} bytes`);
}

/**
 * storedReleaseBytes: the ReleaseBytes of `count` stored chunks read one by one by `chunkAt` (null: the
 * chunk is gone, the release was replaced meanwhile, 'conflict'); the chunks must add up to `length`.
 */
export function storedReleaseBytes(length: number, count: number, chunkAt: (seq: number) => Promise<Buffer | null>): ReleaseBytes {
  return {
    length,
    async *chunks() {
      let got = 0;
      for (let seq = 0; seq < count; seq++) {
        const c = await chunkAt(seq);
        if (c === null) throw new DeviceCaError('conflict', 'the firmware release was replaced while it was read');
        got += c.length;
        if (got > length) break;
        yield c;
      }
      if (got !== length) throw new DeviceCaError('internal', `the stored firmware release has ${got} bytes, its record says ${length}`);
    },
  };
}

/**
 * wholeReleaseBytes: a release recorded by an earlier version as one value (read whole, as then),
 * handed out in RELEASE_CHUNK_BYTES views of it.
 */
export function wholeReleaseBytes(der: Buffer): ReleaseBytes {
  return {
    length: der.length,
    async *chunks() {
      for (let at = 0; at < der.length; at += RELEASE_CHUNK_BYTES) yield der.subarray(at, Math.min(der.length, at + RELEASE_CHUNK_BYTES));
    },
  };
}

/** readReleaseBytes collects a release's bytes into one Buffer: for tests and small releases only. */
export async function readReleaseBytes(r: ReleaseBytes): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r.chunks()) parts.push(c);
  return Buffer.concat(parts, r.length);
}
