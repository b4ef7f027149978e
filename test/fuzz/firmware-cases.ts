import { CaseGenerator, Generated } from './fuzz-case';
import { FuzzMaterial } from './fuzz-material';
import { RawRequest } from '../helpers/raw-http';
import { HOSTILE_SEGMENTS, PROTO_NAMES } from './text-mutations';

/**
 * firmware-cases: GET /firmware/<name>/<version> on both listeners (issue 13): hostile names and versions
 * (huge, negative, non-decimal, prototype names, traversal), odd methods and extra segments, with and
 * without a device's client certificate. Every answer must be a 4xx or a 200, never a 5xx.
 */

const NAMES = ['sensor-fw', 'fw', '1.3.6.1.4.1.99999.7', '0.0', 'a'.repeat(64), 'a'.repeat(65), '-fw', 'fw.', ...PROTO_NAMES];
const VERSIONS = ['latest', '0', '1', '01', '-1', '1e3', '0x10', '9007199254740991', '9007199254740992', '99999999999999999999', 'LATEST', 'latest%00', '%20', '1.0', ...PROTO_NAMES];

/** FIRMWARE_CORPUS: every name x version form, on each listener, once with a client certificate. */
export function firmwareCorpus(m: FuzzMaterial): Generated[] {
  const out: Generated[] = [];
  const get = (p: string, listener: 'http' | 'https', cert: boolean): Generated => ({
    how: `GET ${p.slice(0, 60)} (${listener}${cert ? ', device certificate' : ''})`,
    request: { listener, method: 'GET', path: p, headers: [], clientCert: cert ? { cert: m.reenroll.certPem, key: m.reenroll.keyPem } : undefined },
  });
  for (const n of NAMES) for (const v of VERSIONS) out.push(get(`/firmware/${n}/${v}`, 'http', false));
  for (const v of VERSIONS) out.push(get(`/firmware/sensor-fw/${v}`, 'https', true), get(`/firmware/sensor-fw/${v}`, 'https', false));
  for (const p of ['/firmware', '/firmware/', '/firmware/fw', '/firmware/fw/', '/firmware/fw/latest/x', '/firmware//latest', '/firmware/..%2f..%2fca/latest', '/firmware/fw/latest?x=1'])
    out.push(get(p, 'http', false), get(p, 'https', true));
  return out;
}

/** firmwareCases: random firmware download requests. */
export function firmwareCases(m: FuzzMaterial): CaseGenerator {
  return (rng) => {
    const name = rng.chance(0.5) ? rng.pick(NAMES) : rng.pick(HOSTILE_SEGMENTS);
    const version = rng.chance(0.5) ? rng.pick(VERSIONS) : rng.chance(0.5) ? String(rng.int(1_000_000)) : rng.pick(HOSTILE_SEGMENTS);
    const listener = rng.chance(0.5) ? 'http' : 'https';
    const cert = listener === 'https' && rng.chance(0.6);
    const method = rng.pick(['GET', 'GET', 'GET', 'HEAD', 'POST', 'PUT', 'DELETE']);
    const request: RawRequest = {
      listener,
      method,
      path: `/firmware/${name}/${version}${rng.chance(0.1) ? '/extra' : ''}`,
      headers: rng.chance(0.2) ? [['Range', rng.pick(['bytes=0-10', 'bytes=-1', 'bytes=99999999999-'])]] : [],
      clientCert: cert ? { cert: m.reenroll.certPem, key: m.reenroll.keyPem } : undefined,
    };
    return { how: `${method} ${request.path.slice(0, 80)} (${listener}${cert ? ', device certificate' : ''})`, request };
  };
}
