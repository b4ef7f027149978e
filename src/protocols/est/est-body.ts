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

/** encodeBase64Body wraps base64 at 64 columns with CRLF-free newlines and a final newline (RFC 8951 §3.1). */
export function encodeBase64Body(der: Buffer): string {
  return der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n?$/, '\n');
}
