import { mutateBytes, nestedSequences } from './byte-mutations';
import { CaseGenerator, Generated } from './fuzz-case';
import { FuzzMaterial } from './fuzz-material';
import { RawRequest } from '../helpers/raw-http';
import { HOSTILE_SEGMENTS, PROTO_NAMES } from './text-mutations';

/**
 * firmware-cases: GET /firmware/<name>/<version> on both listeners (issue 13): hostile names and versions
 * (huge, negative, non-decimal, prototype names, traversal), odd methods and extra segments, with and
 * without a device's client certificate; and POST /firmware/<name>/<version>/receipt: valid RFC 4108
 * receipts for the campaign's release damaged byte by byte (byte-mutations.ts), empty, huge and deeply
 * nested bodies, posted with and without the device certificate, to the release and to hostile names;
 * GET /firmware/keys/<id> (group keys) with unknown, malformed and prototype ids.
 * Signed device commands: GET /device-command with hostile nonces, with and without the device
 * certificate, and POST /device-command/report with the same damaged CMS bodies (a receipt is a SignedData
 * of another content type, so the damage reaches the report's parser at every depth).
 * Every answer must be a 4xx or a 2xx, never a 5xx.
 */

const NONCES = ['', '00', 'ab'.repeat(16), 'AB'.repeat(16), 'ab'.repeat(65), 'zz'.repeat(16), '%00', '../..', 'ab'.repeat(16) + '&nonce=' + 'cd'.repeat(16), ...PROTO_NAMES];

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
  // GET /firmware/keys/<id> (group keys, HTTPS with the device certificate): unknown, malformed and hostile ids
  const KEY_IDS = ['0'.repeat(32), 'f'.repeat(32), 'F'.repeat(32), '0'.repeat(31), '0'.repeat(33), 'g'.repeat(32), '%00'.repeat(11), ...PROTO_NAMES, ...HOSTILE_SEGMENTS.slice(0, 8)];
  for (const id of KEY_IDS) out.push(get(`/firmware/keys/${id}`, 'https', true), get(`/firmware/keys/${id}`, 'https', false), get(`/firmware/keys/${id}`, 'http', false));
  for (const p of ['/firmware/keys', '/firmware/keys/', `/firmware/keys/${'0'.repeat(32)}/x`, `/firmware/keys/${'0'.repeat(32)}?x=1`]) out.push(get(p, 'https', true), get(p, 'http', false));
  const receipt = (p: string, body: Buffer, listener: 'http' | 'https', cert: boolean, what: string): Generated => ({
    how: `POST ${p.slice(0, 60)} ${what} (${listener}${cert ? ', device certificate' : ''})`,
    request: { listener, method: 'POST', path: p, headers: [['Content-Type', 'application/cms']], body, clientCert: cert ? { cert: m.reenroll.certPem, key: m.reenroll.keyPem } : undefined },
  });
  const own = `/firmware/${m.firmware.name}/${m.firmware.version}/receipt`;
  const bodies: [string, Buffer][] = [
    ...m.firmware.receipts.map((r, i): [string, Buffer] => [`valid receipt ${i}`, r]),
    ['empty body', Buffer.alloc(0)],
    ['64 KiB of zeros', Buffer.alloc(65536)],
    ['nested SEQUENCEs', nestedSequences(5000)],
    ['truncated receipt', m.firmware.receipts[0].subarray(0, 40)],
  ];
  for (const [what, body] of bodies) out.push(receipt(own, body, 'https', true, what), receipt(own, body, 'https', false, what), receipt(own, body, 'http', false, what));
  for (const n of NAMES) for (const v of ['1', 'latest', '-1', '99999999999999999999']) out.push(receipt(`/firmware/${n}/${v}/receipt`, m.firmware.receipts[0], 'https', true, 'valid receipt'));
  for (const nonce of NONCES) out.push(get(`/device-command?nonce=${nonce}`, 'https', true), get(`/device-command?nonce=${nonce}`, 'https', false));
  out.push(get('/device-command?nonce[]=1&nonce[]=2', 'https', true), get('/device-command', 'http', false), get('/device-command/report', 'https', true));
  for (const [what, body] of bodies) out.push(receipt('/device-command/report', body, 'https', true, what), receipt('/device-command/report', body, 'https', false, what));
  return out;
}

/** firmwareCases: random firmware download requests, and damaged receipts posted for the campaign's release. */
export function firmwareCases(m: FuzzMaterial): CaseGenerator {
  return (rng) => {
    if (rng.chance(0.15)) {
      const cert = rng.chance(0.7);
      const clientCert = cert ? { cert: m.reenroll.certPem, key: m.reenroll.keyPem } : undefined;
      if (rng.chance(0.5)) {
        const mu = mutateBytes(rng, rng.pick(m.firmware.receipts));
        const request: RawRequest = { listener: 'https', method: 'POST', path: '/device-command/report', headers: [['Content-Type', 'application/cms']], body: mu.bytes, clientCert };
        return { how: `POST /device-command/report ${mu.how}${cert ? ' (device certificate)' : ''}`, request };
      }
      const nonce = rng.chance(0.5) ? rng.pick(NONCES) : rng.pick(HOSTILE_SEGMENTS);
      return {
        how: `GET /device-command?nonce=${nonce.slice(0, 60)}${cert ? ' (device certificate)' : ''}`,
        request: { listener: 'https', method: 'GET', path: `/device-command?nonce=${nonce}`, headers: [], clientCert },
      };
    }
    if (rng.chance(0.4)) {
      const mu = mutateBytes(rng, rng.pick(m.firmware.receipts));
      const cert = rng.chance(0.8);
      const path = rng.chance(0.9) ? `/firmware/${m.firmware.name}/${m.firmware.version}/receipt` : `/firmware/${rng.pick(HOSTILE_SEGMENTS)}/1/receipt`;
      const request: RawRequest = {
        listener: 'https',
        method: 'POST',
        path,
        headers: [['Content-Type', 'application/cms']],
        body: mu.bytes,
        clientCert: cert ? { cert: m.reenroll.certPem, key: m.reenroll.keyPem } : undefined,
      };
      return { how: `POST ${path.slice(0, 80)} receipt ${mu.how}${cert ? ' (device certificate)' : ''}`, request };
    }
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
