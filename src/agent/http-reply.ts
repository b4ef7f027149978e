import * as fs from 'node:fs';
import { chunksOf, readAt } from '../cms/file-range';

/** HttpReply: what the EST client needs of an HTTP response. */
export interface HttpReply {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** HttpTransport sends one HTTPS request to the EST server and returns its reply (est-client.ts picks one per authentication). */
export interface HttpTransport {
  request(method: 'GET' | 'POST', url: URL, headers: Record<string, string>, body?: Buffer): Promise<HttpReply>;
}

/**
 * parseHttpResponse reads a raw HTTP/1.1 response read to the connection's end (RFC 9112: status line,
 * header fields, body by Content-Length, chunked, or to the end of the connection).
 */
export function parseHttpResponse(raw: Buffer): HttpReply {
  const { status, headers, bodyStart } = parseHead(raw);
  let body = raw.subarray(bodyStart);
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) body = dechunk(body);
  else if (headers['content-length'] !== undefined) body = body.subarray(0, Number(headers['content-length']));
  return { status, headers, body: Buffer.from(body) };
}

/** parseHead: the status line and header fields of a raw response (RFC 9112 §4, §5), and where the body starts. */
function parseHead(raw: Buffer): { status: number; headers: Record<string, string>; bodyStart: number } {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) throw new Error('no HTTP response from the server');
  const lines = raw.subarray(0, end).toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
  if (!m) throw new Error(`not an HTTP response: ${lines[0].slice(0, 80)}`);
  const headers: Record<string, string> = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  return { status: Number(m[1]), headers, bodyStart: end + 4 };
}

/** MAX_HEAD_BYTES: how much of a raw response file is read to find the end of its header fields. */
const MAX_HEAD_BYTES = 64 << 10;

/**
 * readHttpResponseFile is parseHttpResponse for a raw response in a file (a download too large to hold):
 * it reads the head and writes the body alone to `bodyFile` in chunks (dechunked when chunked). A body
 * shorter than its Content-Length or a chunked body without its last chunk is an error: a truncated download.
 */
export function readHttpResponseFile(rawFile: string, bodyFile: string): Omit<HttpReply, 'body'> {
  const fd = fs.openSync(rawFile, 'r');
  const out = fs.openSync(bodyFile, 'w', 0o600);
  try {
    const size = fs.fstatSync(fd).size;
    const { status, headers, bodyStart } = parseHead(readAt(fd, 0, Math.min(size, MAX_HEAD_BYTES)));
    const copy = (offset: number, length: number): void => {
      for (const c of chunksOf({ fd, offset, length })) for (let p = 0; p < c.length;) p += fs.writeSync(out, c, p, c.length - p);
    };
    if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
      for (let off = bodyStart; ;) {
        if (off >= size) throw new Error('truncated chunked HTTP body');
        const line = readAt(fd, off, Math.min(size - off, 64));
        const eol = line.indexOf('\r\n');
        if (eol < 0) throw new Error('truncated chunked HTTP body');
        const n = parseInt(line.subarray(0, eol).toString('latin1').split(';')[0], 16);
        if (!Number.isFinite(n)) throw new Error('bad chunk size in HTTP body');
        if (n === 0) break;
        if (off + eol + 2 + n > size) throw new Error('truncated chunked HTTP body');
        copy(off + eol + 2, n);
        off += eol + 2 + n + 2;
      }
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      if (!Number.isSafeInteger(n) || n < 0) throw new Error('bad Content-Length in the HTTP response');
      if (bodyStart + n > size) throw new Error(`the HTTP body ended after ${size - bodyStart} of ${n} bytes (truncated download)`);
      copy(bodyStart, n);
    } else copy(bodyStart, size - bodyStart);
    return { status, headers };
  } finally {
    fs.closeSync(fd);
    fs.closeSync(out);
  }
}

/** dechunk: the body of a chunked transfer coding (RFC 9112 §7.1), trailers ignored. */
function dechunk(b: Buffer): Buffer {
  const parts: Buffer[] = [];
  let off = 0;
  for (;;) {
    const eol = b.indexOf('\r\n', off);
    if (eol < 0) throw new Error('truncated chunked HTTP body');
    const size = parseInt(b.subarray(off, eol).toString('latin1').split(';')[0], 16);
    if (!Number.isFinite(size)) throw new Error('bad chunk size in HTTP body');
    if (size === 0) return Buffer.concat(parts);
    if (eol + 2 + size > b.length) throw new Error('truncated chunked HTTP body');
    parts.push(b.subarray(eol + 2, eol + 2 + size));
    off = eol + 2 + size + 2;
  }
}
