import * as fs from 'node:fs';
import * as path from 'node:path';
import { decodeEstBody, encodeBase64Body } from '../../../../src/protocols/est/est-body';
import { DeviceCaError } from '../../../../src/errors/device-ca-error';

/** decodeEstBody: RFC 8951 §3.1 leniency (line breaks, CRLF, final newline, PEM armour, raw DER). */

const fixtures = ['ec-p256-plain.der', 'ec-p384-utf8.der', 'rsa-2048-san.der', 'ed25519.der', 'ec-p256-printable-san.der'];
const load = (name: string): Buffer => fs.readFileSync(path.join(__dirname, '../../../fixtures/csr', name));
const der = load('ec-p256-plain.der');
const b64 = der.toString('base64');

const wrap = (s: string, cols: number, eol = '\n'): string => s.replace(new RegExp(`(.{${cols}})`, 'g'), `$1${eol}`).replace(new RegExp(`(${eol})?$`), eol);
const unpadded = b64.replace(/=+$/, '');
/** oneModFour: base64 with characters appended until its length is 1 mod 4, which no base64 text can be */
const oneModFour = unpadded + 'A'.repeat((((1 - unpadded.length) % 4) + 4) % 4 || 4);
const pem = (s: string, eol = '\n'): string => `-----BEGIN CERTIFICATE REQUEST-----${eol}${wrap(s, 64, eol)}-----END CERTIFICATE REQUEST-----${eol}`;

function codeOf(body: Buffer): string {
  try {
    decodeEstBody(body);
  } catch (e) {
    if (e instanceof DeviceCaError) return e.code;
    throw new Error(`expected DeviceCaError, got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
  }
  return 'decoded';
}

describe('decodeEstBody accepts what EST clients send', () => {
  const accepted: [string, Buffer][] = [
    ['base64 wrapped at 64 columns, LF, final newline', Buffer.from(wrap(b64, 64))],
    ['base64 wrapped at 76 columns (MIME)', Buffer.from(wrap(b64, 76))],
    ['base64 wrapped with CRLF', Buffer.from(wrap(b64, 64, '\r\n'))],
    ['base64 on one line, no final newline', Buffer.from(b64)],
    ['base64 on one line with a final newline', Buffer.from(b64 + '\n')],
    ['base64 wrapped, no final newline', Buffer.from(wrap(b64, 64).trimEnd())],
    ['base64 with trailing blank lines and spaces', Buffer.from(wrap(b64, 64) + '  \r\n\r\n')],
    ['base64 with leading whitespace', Buffer.from('\r\n\t ' + wrap(b64, 64))],
    ['PEM armour (openssl req -outform PEM)', Buffer.from(pem(b64))],
    ['PEM armour with CRLF', Buffer.from(pem(b64, '\r\n'))],
    ['PEM armour with a text preamble (openssl req -text)', Buffer.from('Certificate Request:\n    Data: ...\n' + pem(b64))],
    ['PEM armour labelled NEW CERTIFICATE REQUEST', Buffer.from(pem(b64).replace(/CERTIFICATE REQUEST/g, 'NEW CERTIFICATE REQUEST'))],
    ['raw DER', der],
  ];
  it.each(accepted)('%s', (_name, body) => {
    expect(decodeEstBody(body).equals(der)).toBe(true);
  });

  it.each(fixtures)('raw DER and wrapped base64 of %s give the same bytes', (name) => {
    const d = load(name);
    expect(decodeEstBody(d).equals(d)).toBe(true);
    expect(decodeEstBody(Buffer.from(wrap(d.toString('base64'), 64))).equals(d)).toBe(true);
    expect(decodeEstBody(Buffer.from(wrap(d.toString('base64'), 76, '\r\n'))).equals(d)).toBe(true);
  });
});

describe('decodeEstBody refuses malformed bodies with bad-request', () => {
  const refused: [string, Buffer][] = [
    ['an empty body', Buffer.alloc(0)],
    ['only whitespace', Buffer.from('\r\n \n')],
    ['invalid characters in base64', Buffer.from(b64.slice(0, 20) + '!*' + b64.slice(22))],
    ['base64url alphabet', Buffer.from(der.toString('base64url').replace(/^./, '-'))],
    ['a length that is 1 mod 4', Buffer.from(oneModFour)],
    ['padding in the middle', Buffer.from(b64.slice(0, 8) + '==' + b64.slice(8))],
    ['base64 of something that is not a DER SEQUENCE', Buffer.from(Buffer.from('hello, world').toString('base64'))],
    ['PEM BEGIN without END', Buffer.from('-----BEGIN CERTIFICATE REQUEST-----\n' + wrap(b64, 64))],
    ['binary that is not DER', Buffer.from([0x04, 0x02, 0xff, 0xfe])],
    ['text that is not base64', Buffer.from('GET /cacerts please\n')],
  ];
  it.each(refused)('%s', (_name, body) => {
    expect(codeOf(body)).toBe('bad-request');
  });

  it('the "1 mod 4" case really is 1 mod 4', () => {
    expect(oneModFour.length % 4).toBe(1);
  });
});

describe('encodeBase64Body writes RFC 8951 base64', () => {
  const der = (len: number): Buffer => {
    const d = Buffer.alloc(len, 0);
    d[0] = 0x30;
    for (let i = 1; i < len; i++) d[i] = (i * 37) & 0xff;
    return d;
  };
  const sizes = [1, 47, 48, 49, 96, 235, 1000];

  it.each(sizes)('wrapped-64, %i bytes: 64-column LF lines, one final newline, round trip', (len) => {
    const d = der(len);
    const s = encodeBase64Body(d, 'wrapped-64');
    expect(s.endsWith('\n')).toBe(true);
    expect(s.endsWith('\n\n')).toBe(false);
    expect(s).not.toContain('\r');
    const lines = s.slice(0, -1).split('\n');
    for (const l of lines.slice(0, -1)) expect(l).toHaveLength(64);
    expect(lines[lines.length - 1].length).toBeGreaterThan(0);
    expect(lines[lines.length - 1].length).toBeLessThanOrEqual(64);
    expect(Buffer.from(s, 'base64').equals(d)).toBe(true);
    expect(decodeEstBody(Buffer.from(s)).equals(d)).toBe(true);
  });

  // strongSwan pki 5.9.8 fails on any line break inside the base64: the default must have none
  it.each(sizes)('single-line (the default), %i bytes: one line of base64 and one final LF, round trip', (len) => {
    const d = der(len);
    const s = encodeBase64Body(d);
    expect(s).toBe(encodeBase64Body(d, 'single-line'));
    expect(s).toMatch(/^[A-Za-z0-9+/]+={0,2}\n$/);
    expect(s).toBe(`${d.toString('base64')}\n`);
    expect(decodeEstBody(Buffer.from(s)).equals(d)).toBe(true);
  });
});
