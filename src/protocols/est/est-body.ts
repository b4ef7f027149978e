import { DeviceCaError } from '../../errors/device-ca-error';

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * decodeEstBody turns a request body into DER. RFC 8951 §3.1: the body is base64 and the
 * Content-Transfer-Encoding header is ignored; accept it with or without line breaks, CRLF, a trailing
 * newline or PEM armour. A body that is plainly binary DER is accepted too (some clients send it).
 */
export function decodeEstBody(body: Buffer): Buffer {
  if (body.length === 0) throw new DeviceCaError('bad-request', 'empty body');
  let text = body.toString('latin1');
  if (text.includes('-----BEGIN')) {
    const m = /-----BEGIN [A-Z0-9 ]+-----([\s\S]*?)-----END [A-Z0-9 ]+-----/.exec(text);
    if (!m) throw new DeviceCaError('bad-request', 'malformed PEM armour');
    text = m[1];
  }
  const compact = text.replace(/[\r\n\t ]+/g, '');
  if (compact.length > 0 && B64.test(compact)) {
    if (compact.length % 4 === 1) throw new DeviceCaError('bad-request', 'body is not valid base64');
    const der = Buffer.from(compact, 'base64');
    if (der.length > 0 && der[0] === 0x30) return der;
    throw new DeviceCaError('bad-request', 'base64 body does not hold a DER SEQUENCE');
  }
  if (body[0] === 0x30) return body;
  throw new DeviceCaError('bad-request', 'body is not valid base64');
}

/**
 * EstReplyBase64 is how EST reply bodies are written. RFC 8951 §3.1 lets a server send base64 with or
 * without line breaks, but deployed clients disagree. Measured against Debian 12's clients:
 *
 * | reply                      | base64 -d | openssl base64 -d | openssl base64 -d -A | strongSwan pki 5.9.8 |
 * | 64-column lines, final LF  | yes       | yes               | no                   | no (every reply)     |
 * | one line, no final LF      | yes       | no                | yes                  | yes                  |
 * | one line, final LF         | yes       | under 1 KiB only  | yes                  | yes                  |
 *
 * strongSwan `pki --est`/`--estca` 5.9.8 rejects line breaks inside the base64 (fixed upstream in 5.9.11)
 * but accepts a final newline. 'single-line' (one line and a final LF) is the default because it is the
 * only form every client above reads in at least one of its usual pipelines; 'wrapped-64' (PEM-style
 * 64-column lines and a final LF) stays selectable per label for clients that read replies line by line.
 */
export type EstReplyBase64 = 'single-line' | 'wrapped-64';

/** encodeBase64Body writes DER as an EST reply body in the given style (default 'single-line'), always ending in one LF. */
export function encodeBase64Body(der: Buffer, style: EstReplyBase64 = 'single-line'): string {
  const b64 = der.toString('base64');
  if (style === 'single-line') return `${b64}\n`;
  return b64.replace(/(.{64})/g, '$1\n').replace(/\n?$/, '\n');
}
