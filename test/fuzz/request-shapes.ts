import { RawRequest } from '../helpers/raw-http';
import { SeededRandom } from './seeded-random';
import { CONTENT_TYPES, oddHeaders } from './text-mutations';

/**
 * request-shapes: damage every protocol's requests share, applied after the protocol made its request:
 * a wrong or missing Content-Type, odd extra headers, and framing tricks (lying Content-Length, broken
 * chunked encoding, both at once). None promises bytes it does not send: a Content-Length or chunk
 * size larger than what follows only waits for the server's request timeout, and the campaign flags a
 * hang as a failure, so a hang must be the server's doing.
 */

/** withContentType: replaces the Content-Type header (null removes it). */
export function withContentType(r: RawRequest, ct: string | null): RawRequest {
  const headers = r.headers.filter(([k]) => k.toLowerCase() !== 'content-type');
  if (ct !== null) headers.push(['Content-Type', ct]);
  return { ...r, headers };
}

/** chunked: body in chunks of random sizes, properly terminated. */
function chunked(rng: SeededRandom, body: Buffer): Buffer {
  const parts: Buffer[] = [];
  for (let off = 0; off < body.length;) {
    const n = Math.min(body.length - off, rng.range(1, 3000));
    parts.push(Buffer.from(`${n.toString(16)}\r\n`), body.subarray(off, off + n), Buffer.from('\r\n'));
    off += n;
  }
  parts.push(Buffer.from('0\r\n\r\n'));
  return Buffer.concat(parts);
}

/** reshape: with probability p, one shared mutation of the request; the name of what was done, or ''. */
export function reshape(rng: SeededRandom, r: RawRequest, p: number): { request: RawRequest; how: string } {
  if (!rng.chance(p)) return { request: r, how: '' };
  const body = r.body ?? Buffer.alloc(0);
  const choices: [string, () => RawRequest][] = [
    ['content type', () => withContentType(r, rng.pick(CONTENT_TYPES))],
    [
      'odd headers',
      () => {
        const h = oddHeaders(rng);
        return { ...r, headers: [...r.headers, ...h.headers] };
      },
    ],
    ['chunked body', () => ({ ...r, headers: [...r.headers, ['Transfer-Encoding', 'chunked']], body: chunked(rng, body) })],
    [
      'chunked body with a bad chunk size',
      () => ({
        ...r,
        headers: [...r.headers, ['Transfer-Encoding', 'chunked']],
        body: Buffer.concat([Buffer.from(rng.pick(['zz', '-1', '10000000000000000', '1;ext=__proto__', ' 5']) + '\r\n'), body, Buffer.from('\r\n0\r\n\r\n')]),
      }),
    ],
    ['Content-Length and Transfer-Encoding', () => ({ ...r, headers: [...r.headers, ['Content-Length', String(body.length)], ['Transfer-Encoding', 'chunked']], body: chunked(rng, body) })],
    ['Content-Length shorter than the body (the rest looks like a second request)', () => ({ ...r, headers: [...r.headers, ['Content-Length', String(rng.int(body.length + 1))]] })],
    [
      'Content-Length odd',
      () => ({ ...r, headers: [...r.headers, ['Content-Length', rng.pick(['-1', 'abc', '1e3', '0x10', '99999999999999999999', `${body.length}, ${body.length}`, ' ' + body.length])]] }),
    ],
    ['two Content-Length headers that disagree', () => ({ ...r, headers: [...r.headers, ['Content-Length', String(body.length)], ['Content-Length', String(body.length + 1)]] })],
    ['HTTP/1.0', () => ({ ...r, rawHead: Buffer.from(`${r.method} ${r.path} HTTP/1.0\r\n${r.headers.map(([k, v]) => `${k}: ${v}\r\n`).join('')}Content-Length: ${body.length}\r\n\r\n`, 'latin1') })],
    [
      'bare LF line ends',
      () => ({
        ...r,
        rawHead: Buffer.from(`${r.method} ${r.path} HTTP/1.1\nHost: localhost\n${r.headers.map(([k, v]) => `${k}: ${v}\n`).join('')}Connection: close\nContent-Length: ${body.length}\n\n`, 'latin1'),
      }),
    ],
    ['method changed', () => ({ ...r, method: rng.pick(['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'TRACE', 'PROPFIND', 'get', 'FOO', 'M-SEARCH']) })],
  ];
  const [how, make] = rng.pick(choices);
  return { request: make(), how: `shape: ${how}` };
}
