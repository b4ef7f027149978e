import { mutateBytes, nestedSequences } from './byte-mutations';
import { CaseGenerator, Generated } from './fuzz-case';
import { FuzzMaterial } from './fuzz-material';
import { SeededRandom } from './seeded-random';
import { RawRequest, encodeRequest } from '../helpers/raw-http';
import { reshape } from './request-shapes';
import { HOSTILE_SEGMENTS, mutateBase64 } from './text-mutations';

/**
 * ocsp-cases: OCSP (RFC 6960 Appendix A, RFC 5019) requests made from openssl's: POST with the DER
 * damaged, GET with damaged DER or damaged (URL-encoded) base64 in the path, odd methods and paths.
 * Every answer to a malformed request should be an OCSPResponse (malformedRequest) with HTTP 200.
 * The connection-level front (src/http/fast-front.ts) reads these heads itself: framing cases (pipelining,
 * HTTP/1.0, bare LF, Expect, Upgrade, odd Content-Length) check that what it does not take reaches node:http.
 */

/** raw: a request sent as these bytes exactly (rawHead) */
const raw = (how: string, bytes: Buffer | string): Generated => ({
  how,
  request: { listener: 'http', method: '', path: '', headers: [], rawHead: typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes },
});

/** postHead: a POST /ocsp head with these extra header lines and the body after it */
const postBytes = (body: Buffer, extra = '', version = '1.1') =>
  Buffer.concat([Buffer.from(`POST /ocsp HTTP/${version}\r\nHost: localhost\r\n${extra}Content-Type: application/ocsp-request\r\nContent-Length: ${body.length}\r\n\r\n`, 'latin1'), body]);

/** frontFraming: the request as HTTP/1.0, or sent twice pipelined on one connection (the second closes it) */
function frontFraming(rng: SeededRandom, r: RawRequest): { request: RawRequest; how: string } {
  const host = 'localhost';
  if (rng.pick([true, false])) {
    const first = encodeRequest({ ...r, headers: [...r.headers.filter(([k]) => k.toLowerCase() !== 'connection'), ['Connection', 'keep-alive']] }, host);
    return { request: { ...r, rawHead: Buffer.concat([first, encodeRequest(r, host)]), body: undefined }, how: 'pipelined twice' };
  }
  // the request line's version, whatever the line ends (a shape may have made them bare LF)
  const bytes = encodeRequest(r, host);
  const lineEnd = bytes.indexOf('\n');
  const line = bytes.toString('latin1', 0, lineEnd);
  if (lineEnd < 0 || !/ HTTP\/1\.1\r?$/.test(line)) return { request: r, how: '' };
  return { request: { ...r, rawHead: Buffer.concat([Buffer.from(line.replace(/ HTTP\/1\.1(\r?)$/, ' HTTP/1.0$1'), 'latin1'), bytes.subarray(lineEnd)]), body: undefined }, how: 'HTTP/1.0' };
}

/** OCSP_CORPUS: requests sent on every run. */
export function ocspCorpus(m: FuzzMaterial): Generated[] {
  const post = (how: string, body: Buffer): Generated => ({ how, request: { listener: 'http', method: 'POST', path: '/ocsp', headers: [['Content-Type', 'application/ocsp-request']], body } });
  const get = (how: string, p: string): Generated => ({ how, request: { listener: 'http', method: 'GET', path: p, headers: [] } });
  return [
    post('valid, nonce', m.ocspRequests[0]),
    post('empty body', Buffer.alloc(0)),
    post('10 000 nested SEQUENCEs', nestedSequences(10_000)),
    post('over the size limit', Buffer.alloc(70_000, 0x30)),
    get('valid GET', `/ocsp/${encodeURIComponent(m.ocspRequests[1].toString('base64'))}`),
    get('GET without a request', '/ocsp/'),
    get('GET with a 16 KB path', `/ocsp/${'A'.repeat(16_000)}`),
    get('GET with bad percent-encoding', '/ocsp/%E0%A4%A'),
    get('GET with __proto__', '/ocsp/__proto__'),
    get('GET with traversal', '/ocsp/..%2f..%2fhealthz'),
    raw('pipelined: two POSTs, the second closes', Buffer.concat([postBytes(m.ocspRequests[0]), postBytes(m.ocspRequests[1], 'Connection: close\r\n')])),
    raw('pipelined: POST then a garbage line', Buffer.concat([postBytes(m.ocspRequests[0]), Buffer.from('GARBAGE\r\n\r\n', 'latin1')])),
    raw('pipelined: POST then GET /healthz', Buffer.concat([postBytes(m.ocspRequests[0]), Buffer.from('GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n', 'latin1')])),
    raw('HTTP/1.0 POST', postBytes(m.ocspRequests[0], '', '1.0')),
    raw('HTTP/1.0 GET', `GET /ocsp/${encodeURIComponent(m.ocspRequests[1].toString('base64'))} HTTP/1.0\r\n\r\n`),
    raw('HTTP/1.0 POST asking for keep-alive, then one that closes', Buffer.concat([postBytes(m.ocspRequests[0], 'Connection: keep-alive\r\n', '1.0'), postBytes(m.ocspRequests[0], '', '1.0')])),
    raw('bare LF line ends', Buffer.concat([Buffer.from(`POST /ocsp HTTP/1.1\nHost: localhost\nConnection: close\nContent-Length: ${m.ocspRequests[0].length}\n\n`, 'latin1'), m.ocspRequests[0]])),
    raw('Expect: 100-continue', postBytes(m.ocspRequests[0], 'Expect: 100-continue\r\nConnection: close\r\n')),
    raw('Connection: Upgrade to h2c', postBytes(m.ocspRequests[0], 'Connection: Upgrade, close\r\nUpgrade: h2c\r\n')),
    raw('Connection: keep-alive, close', postBytes(m.ocspRequests[0], 'Connection: keep-alive, close\r\n')),
    raw('Content-Length: 0', 'POST /ocsp HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n\r\n'),
    raw(
      'Content-Length with a plus sign',
      `POST /ocsp HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: +${m.ocspRequests[0].length}\r\n\r\n${m.ocspRequests[0].toString('latin1')}`,
    ),
    raw('a 17 KB header on POST /ocsp', postBytes(m.ocspRequests[0], `X-Pad: ${'a'.repeat(17_000)}\r\nConnection: close\r\n`)),
    raw('an empty line before the request line', Buffer.concat([Buffer.from('\r\n', 'latin1'), postBytes(m.ocspRequests[0], 'Connection: close\r\n')])),
    raw('two Host headers on GET', `GET /ocsp/${encodeURIComponent(m.ocspRequests[1].toString('base64'))} HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n`),
    raw('no Host header', 'POST /ocsp HTTP/1.1\r\nConnection: close\r\nContent-Length: 1\r\n\r\n0'),
  ];
}

/** ocspCases: random OCSP cases. */
export function ocspCases(m: FuzzMaterial): CaseGenerator {
  return (rng) => {
    const valid = rng.pick(m.ocspRequests);
    const hows: string[] = [];
    let der = valid;
    if (rng.chance(0.85)) {
      const mu = mutateBytes(rng, valid);
      der = mu.bytes;
      hows.push(mu.how);
    }
    let request: RawRequest;
    if (rng.chance(0.5)) {
      hows.unshift('POST');
      request = {
        listener: 'http',
        method: 'POST',
        path: rng.chance(0.9) ? '/ocsp' : rng.pick(['/ocsp/', '/ocsp?x=1', '/ocsp/x', `/ocsp/${rng.pick(HOSTILE_SEGMENTS)}`]),
        headers: [['Content-Type', 'application/ocsp-request']],
        body: der,
      };
    } else {
      hows.unshift('GET');
      let b64: string;
      const k = rng.int(10);
      if (k < 6) b64 = encodeURIComponent(der.toString('base64'));
      else if (k < 7) {
        b64 = der.toString('base64');
        hows.push('base64 not URL-encoded');
      } else if (k < 8) {
        b64 = der.toString('base64url');
        hows.push('base64url');
      } else {
        const t = mutateBase64(rng, der);
        b64 = encodeURIComponent(t.text);
        hows.push(t.how);
      }
      if (rng.chance(0.1)) {
        b64 = rng.pick(['%', '%%', '%zz', '%00', '..%2f', '?', '#']) + b64;
        hows.push('odd prefix');
      }
      request = { listener: 'http', method: 'GET', path: `/ocsp/${b64}`, headers: [] };
    }
    const shaped = reshape(rng, request, 0.2);
    if (shaped.how) hows.push(shaped.how);
    if (!rng.chance(0.15)) return { how: hows.join('; '), request: shaped.request };
    const framed = frontFraming(rng, shaped.request);
    if (framed.how) hows.push(framed.how);
    return { how: hows.join('; '), request: framed.request };
  };
}
