import * as net from 'node:net';
import * as tls from 'node:tls';

/**
 * raw-http sends one HTTP/1.1 request as bytes over its own TCP or TLS connection and reads the reply
 * until the server closes it. The fuzz campaign needs this instead of node:http or curl because both
 * refuse to send what it must send: invalid header values, lying Content-Length, broken chunking,
 * unescaped paths, header blocks over the server's limit.
 */

/** RawRequest: one request. head/body are sent as they are; nothing is validated or escaped. */
export interface RawRequest {
  listener: 'https' | 'http';
  method: string;
  /** path: the request-target, sent verbatim */
  path: string;
  /** headers: in order, duplicates allowed; Host and Connection: close are added unless present */
  headers: [string, string][];
  body?: Buffer;
  /** clientCert: a TLS client certificate and key (PEM), for EST re-enrollment */
  clientCert?: { cert: string; key: string };
  /** rawHead: the whole head as bytes (request line and headers, CRLF CRLF included); overrides the fields above */
  rawHead?: Buffer;
}

/** RawReply: status and headers of the first response head; body undecoded (chunking left as sent). */
export interface RawReply {
  kind: 'reply';
  status: number;
  headers: Map<string, string>;
  body: Buffer;
}

/** TransportFailure: no complete response head before the connection ended, failed or timed out. */
export interface TransportFailure {
  kind: 'transport';
  error: string;
  /** received: bytes read before the failure */
  received: Buffer;
}

export interface Endpoint {
  host: string;
  httpsPort: number;
  httpPort: number;
  /** ca: PEM trust anchors for the HTTPS listener */
  ca: string;
}

/** encodeRequest: the bytes sent for a RawRequest (also printed when a case fails). */
export function encodeRequest(r: RawRequest, host: string): Buffer {
  if (r.rawHead) return Buffer.concat([r.rawHead, r.body ?? Buffer.alloc(0)]);
  const names = new Set(r.headers.map(([k]) => k.toLowerCase()));
  const lines = [`${r.method} ${r.path} HTTP/1.1`];
  if (!names.has('host')) lines.push(`Host: ${host}`);
  for (const [k, v] of r.headers) lines.push(`${k}: ${v}`);
  if (!names.has('connection')) lines.push('Connection: close');
  if (r.body !== undefined && !names.has('content-length') && !names.has('transfer-encoding')) lines.push(`Content-Length: ${r.body.length}`);
  return Buffer.concat([Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1'), r.body ?? Buffer.alloc(0)]);
}

/** parseHead: the first complete response head in buf, or undefined. 1xx heads (100 Continue) are skipped. */
function parseReply(buf: Buffer): RawReply | undefined {
  let off = 0;
  for (;;) {
    const end = buf.indexOf('\r\n\r\n', off, 'latin1');
    if (end < 0) return undefined;
    const lines = buf.subarray(off, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
    if (!m) return undefined;
    const status = Number(m[1]);
    if (status >= 100 && status < 200) {
      off = end + 4;
      continue;
    }
    const headers = new Map<string, string>();
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      if (i > 0) headers.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim());
    }
    return { kind: 'reply', status, headers, body: buf.subarray(end + 4) };
  }
}

/**
 * sendRaw writes the request and collects everything the server sends until it closes the connection
 * (Connection: close), timeoutMs passes, or the socket fails. A reply head that arrived counts even if
 * the server reset the connection afterwards (it may answer 413 or 400 before reading the whole body).
 */
export function sendRaw(ep: Endpoint, r: RawRequest, timeoutMs = 15_000): Promise<RawReply | TransportFailure> {
  const bytes = encodeRequest(r, `localhost:${r.listener === 'https' ? ep.httpsPort : ep.httpPort}`);
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let settled = false;
    const sock: net.Socket =
      r.listener === 'https'
        ? tls.connect({ host: ep.host, port: ep.httpsPort, servername: 'localhost', ca: ep.ca, cert: r.clientCert?.cert, key: r.clientCert?.key })
        : net.connect({ host: ep.host, port: ep.httpPort });
    const finish = (error?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      const received = Buffer.concat(chunks);
      const reply = parseReply(received);
      resolve(reply ?? { kind: 'transport', error: error ?? 'connection closed without a response', received });
    };
    const timer = setTimeout(() => finish(`no complete reply within ${timeoutMs} ms`), timeoutMs);
    sock.on(r.listener === 'https' ? 'secureConnect' : 'connect', () => {
      sock.write(bytes, () => undefined);
    });
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('end', () => finish());
    sock.on('close', () => finish());
    sock.on('error', (e: NodeJS.ErrnoException) => finish(`${e.code ?? ''} ${e.message}`.trim()));
  });
}

/** adminRequest: one admin API call (/api/v1 + p) with a bearer token and a JSON body; a transport failure throws. */
export async function adminRequest(ep: Endpoint, token: string, method: string, p: string, body?: unknown): Promise<RawReply> {
  const r = await sendRaw(ep, {
    listener: 'https',
    method,
    path: `/api/v1${p}`,
    headers: [
      ['Authorization', `Bearer ${token}`],
      ['Content-Type', 'application/json'],
    ],
    body: body === undefined ? undefined : Buffer.from(JSON.stringify(body)),
  });
  if (r.kind !== 'reply') throw new Error(`admin ${method} ${p}: ${r.error}`);
  return r;
}
