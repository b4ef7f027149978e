import { CaseGenerator, Generated } from './fuzz-case';
import { FuzzMaterial } from './fuzz-material';
import { RawRequest } from '../helpers/raw-http';
import { reshape } from './request-shapes';
import { HOSTILE_SEGMENTS, PROTO_NAMES } from './text-mutations';

/**
 * http-cases: the CRL and CA certificate routes, health and metrics, and the HTTP layer itself on both
 * listeners: hostile CA names, shard numbers and file names (root CRL and shard forms), odd methods, request lines that are not
 * HTTP at all, over-long request lines.
 */

const raw = (listener: 'http' | 'https', head: string, how: string): Generated => ({ how, request: { listener, method: '', path: '', headers: [], rawHead: Buffer.from(head, 'latin1') } });

/** HTTP_CORPUS: requests sent on every run. */
export function httpCorpus(m: FuzzMaterial): Generated[] {
  const get = (p: string, listener: 'http' | 'https' = 'http'): Generated => ({ how: `GET ${p.slice(0, 60)}`, request: { listener, method: 'GET', path: p, headers: [] } });
  const out: Generated[] = [];
  for (const n of PROTO_NAMES)
    out.push(get(`/crl/${n}.crl`), get(`/crl/${n}/0.crl`), get(`/crl/device-ca-issuing/${n}`), get(`/ca/${n}.crt`), get(`/${n}`), get(`/${n}`, 'https'), get(`/api/v1/${n}`, 'https'));
  for (const f of ['99999.crl', '16.crl', '00000.crl', '0.crl.pem', '1e300.crl', '-1.crl', '9007199254740993.crl']) out.push(get(`/crl/device-ca-issuing/${f}`));
  // the root CRL lives at /crl/<root>.crl (one segment), the issuing CA's shards at /crl/<ca>/<n>.crl
  for (const f of ['device-ca-root.crl', 'device-ca-root.crl.pem', 'device-ca-root', 'device-ca-issuing.crl', '.crl', '..crl', 'device-ca-root.crl%00', 'device-ca-root.CRL'])
    out.push(get(`/crl/${f}`));
  out.push(get('/crl/device-ca-issuing/0.crl'), get('/ca/device-ca-root.crt'), get('/ca/..%2f..%2fdata%2fca%2fdevice-ca-issuing.key'), get('/crl/..%2f..%2f/0.crl'));
  out.push(raw('http', 'GARBAGE\r\n\r\n', 'request line GARBAGE'));
  out.push(raw('http', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'HTTP/2 preface'));
  out.push(raw('https', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'HTTP/2 preface over TLS'));
  out.push(raw('http', `GET /${'a'.repeat(70_000)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, '70 KB request line'));
  out.push(raw('http', 'GET http://evil.example/healthz HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n', 'absolute-form target'));
  out.push(raw('http', 'OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 'OPTIONS *'));
  out.push(raw('http', 'GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n', 'no Host header'));
  out.push(raw('http', 'GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n', 'two Host headers'));
  out.push(raw('http', 'GET /healthz HTTP/9.9\r\nHost: a\r\nConnection: close\r\n\r\n', 'HTTP/9.9'));
  out.push(raw('http', 'GET /healthz HTTP/1.1\r\nHost: a\r\nX: a\u0000b\r\nConnection: close\r\n\r\n', 'NUL in a header value'));
  out.push(raw('https', 'GET /.well-known/est/cacerts HTTP/1.1\r\nHost: a\r\n Folded: x\r\nConnection: close\r\n\r\n', 'obsolete line folding'));
  void m;
  return out;
}

/** httpCases: random CRL, CA, ops and HTTP-layer cases. */
export function httpCases(m: FuzzMaterial): CaseGenerator {
  return (rng) => {
    const hows: string[] = [];
    let request: RawRequest;
    const k = rng.int(10);
    if (k < 1) {
      // the one-segment form (root CRL)
      const name = rng.chance(0.6) ? rng.pick(m.caNames) : rng.pick(HOSTILE_SEGMENTS);
      request = {
        listener: 'http',
        method: 'GET',
        path: `/crl/${name}${rng.pick(['.crl', '.crl.pem', '', '.crl.crl'])}`,
        headers: rng.chance(0.3) ? [['If-None-Match', rng.pick(['*', '"x"', ''])]] : [],
      };
    } else if (k < 4) {
      const ca = rng.chance(0.7) ? rng.pick(m.caNames) : rng.pick(HOSTILE_SEGMENTS);
      const file = rng.chance(0.6) ? `${rng.int(20)}.crl${rng.chance(0.3) ? '.pem' : ''}` : `${rng.pick(HOSTILE_SEGMENTS)}${rng.pick(['', '.crl', '.crl.pem'])}`;
      request = { listener: 'http', method: 'GET', path: `/crl/${ca}/${file}`, headers: rng.chance(0.3) ? [['If-None-Match', rng.pick(['"device-ca-issuing-0-1"', '*', '"__proto__"', ''])]] : [] };
    } else if (k < 6) {
      const name = rng.chance(0.5) ? rng.pick(m.caNames) : rng.pick(HOSTILE_SEGMENTS);
      request = { listener: 'http', method: 'GET', path: `/ca/${name}${rng.pick(['.crt', '', '.crt.crt', '.pem'])}`, headers: [] };
    } else if (k < 7) {
      request = { listener: 'http', method: 'GET', path: rng.pick(['/healthz', '/metrics', '/healthz?x', '/metrics/', '/metrics?name[]=__proto__']), headers: [] };
    } else {
      // anywhere on either listener
      const listener = rng.pick(['http', 'https'] as const);
      const depth = rng.range(1, 4);
      const segs = Array.from({ length: depth }, () => rng.pick([...HOSTILE_SEGMENTS, 'api', 'v1', '.well-known', 'est', 'crl', 'ca', 'ocsp', 'devices']));
      request = {
        listener,
        method: rng.pick(['GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH']),
        path: '/' + segs.join('/'),
        headers: [],
        body: rng.chance(0.3) ? rng.bytes(rng.range(0, 500)) : undefined,
      };
    }
    hows.push(`${request.method} ${request.path.slice(0, 80)}`);
    const shaped = reshape(rng, request, 0.25);
    if (shaped.how) hows.push(shaped.how);
    return { how: hows.join('; '), request: shaped.request };
  };
}
