import { mutateBytes, nestedSequences } from './byte-mutations';
import { CaseGenerator, Generated } from './fuzz-case';
import { FuzzMaterial } from './fuzz-material';
import { RawRequest } from '../helpers/raw-http';
import { reshape } from './request-shapes';
import { HOSTILE_SEGMENTS, mutateBase64 } from './text-mutations';

/**
 * ocsp-cases: OCSP (RFC 6960 Appendix A, RFC 5019) requests made from openssl's: POST with the DER
 * damaged, GET with damaged DER or damaged (URL-encoded) base64 in the path, odd methods and paths.
 * Every answer to a malformed request should be an OCSPResponse (malformedRequest) with HTTP 200.
 */

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
    return { how: hows.join('; '), request: shaped.request };
  };
}
