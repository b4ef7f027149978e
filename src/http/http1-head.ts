import { CLIENT_REQUEST_ID } from './request-id';

/**
 * http1-head reads the head of one HTTP/1.x request for the connection-level front (fast-front.ts). It
 * accepts only the plain shape a responder client sends (RFC 9112 §3, §5): a request line of exactly
 * `METHOD SP request-target SP HTTP/1.0|1.1`, CRLF line ends, header names that are tokens, values without
 * control characters, at most one Content-Length of digits, one Host (required by HTTP/1.1), and no
 * Transfer-Encoding, Expect, Upgrade or obsolete line folding. Anything else gives null: the front then
 * hands the connection to node:http, whose parser decides (400, 431, 505...), so the front is never less
 * strict than node:http and never has to produce an HTTP error of its own for a malformed head.
 */

/** FastHead: what the front needs of a request head. */
export interface FastHead {
  method: string;
  target: string;
  /** version: 10 (HTTP/1.0) or 11 (HTTP/1.1) */
  version: 10 | 11;
  /** contentLength: the declared body length; 0 when absent */
  contentLength: number;
  /** keepAlive: whether the connection stays open after the answer (RFC 9112 §9.3) */
  keepAlive: boolean;
  /** requestId: a valid X-Request-Id the client sent */
  requestId?: string;
}

/** HEAD_END: the blank line that ends a head */
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');

/**
 * headEnd: the offset just past the CRLF CRLF that ends the head starting at `from`, or -1 when the
 * buffer holds no complete head yet.
 */
export function headEnd(buf: Buffer, from: number): number {
  const i = buf.indexOf(HEAD_END, from);
  return i < 0 ? -1 : i + 4;
}

const REQUEST_LINE = /^([A-Z]+) (\/[\x21-\x7e]*) HTTP\/1\.([01])$/;
/** token (RFC 9110 §5.6.2) */
const NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** field-value (RFC 9110 §5.5): visible ASCII, obs-text, SP and HTAB; no CR, LF, NUL or other controls */
const VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const DIGITS = /^[0-9]{1,15}$/;

/**
 * parseFastHead parses the head in text (latin1, the request line through the last header line, without
 * the final CRLF CRLF). Returns null for anything outside the plain shape described above.
 */
export function parseFastHead(text: string): FastHead | null {
  const lines = text.split('\r\n');
  const m = REQUEST_LINE.exec(lines[0]);
  if (!m) return null;
  const version = m[3] === '1' ? 11 : 10;
  let contentLength = -1;
  let hosts = 0;
  let close = false;
  let keepAlive = false;
  let requestId: string | undefined;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const colon = line.indexOf(':');
    if (colon <= 0) return null; // obs-fold (a line starting with SP/HTAB), no colon, empty name
    const name = line.slice(0, colon);
    if (!NAME.test(name)) return null; // includes a space before the colon (RFC 9112 §5.1: must be rejected)
    // optional whitespace is SP and HTAB only (RFC 9110 §5.6.3): String.trim would also take VT, FF, NBSP...,
    // which node:http refuses around a Content-Length
    const raw = line.slice(colon + 1);
    if (!VALUE.test(raw)) return null;
    const value = raw.replace(/^[ \t]+|[ \t]+$/g, '');
    switch (name.toLowerCase()) {
      case 'content-length':
        if (contentLength >= 0 || !DIGITS.test(value)) return null;
        contentLength = Number(value);
        break;
      case 'host':
        hosts++;
        break;
      case 'connection':
        for (const t of value.toLowerCase().split(',')) {
          const token = t.replace(/^[ \t]+|[ \t]+$/g, '');
          if (token === 'close') close = true;
          else if (token === 'keep-alive') keepAlive = true;
          else if (token !== '') return null; // e.g. Upgrade: node:http's business
        }
        break;
      case 'x-request-id':
        if (CLIENT_REQUEST_ID.test(value)) requestId = value;
        break;
      case 'transfer-encoding':
      case 'expect':
      case 'upgrade':
      case 'proxy-connection':
        return null;
      default:
        break;
    }
  }
  if (version === 11 && hosts !== 1) return null;
  if (hosts > 1) return null;
  return {
    method: m[1],
    target: m[2],
    version,
    contentLength: contentLength < 0 ? 0 : contentLength,
    keepAlive: !close && (version === 11 || keepAlive),
    requestId,
  };
}
