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
  let body = raw.subarray(end + 4);
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) body = dechunk(body);
  else if (headers['content-length'] !== undefined) body = body.subarray(0, Number(headers['content-length']));
  return { status: Number(m[1]), headers, body: Buffer.from(body) };
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
