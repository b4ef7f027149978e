import { mutateBytes } from './byte-mutations';
import { CaseGenerator, Generated } from './fuzz-case';
import { FuzzMaterial, certFromEstReply } from './fuzz-material';
import { RawRequest } from '../helpers/raw-http';
import { reshape } from './request-shapes';
import { SeededRandom } from './seeded-random';
import { HOSTILE_SEGMENTS, PROTO_NAMES, mutateBase64 } from './text-mutations';

/**
 * est-cases: EST (RFC 7030, RFC 8951) requests made from valid ones: cacerts and csrattrs, simpleenroll
 * and serverkeygen with a device's Basic credentials, simplereenroll with an enrolled device's client
 * certificate; the CSR damaged as bytes and as base64, labels and paths hostile, headers and framing odd.
 */

const EST = '/.well-known/est';
const OPS = ['cacerts', 'csrattrs', 'simpleenroll', 'simpleenroll', 'simpleenroll', 'simplereenroll', 'simplereenroll', 'serverkeygen', 'fullcmc'] as const;

/** EST_CORPUS: requests sent on every run, before the random ones (the probe's findings among them). */
export function estCorpus(m: FuzzMaterial): Generated[] {
  const out: Generated[] = [];
  for (const name of PROTO_NAMES) {
    for (const op of ['cacerts', 'csrattrs']) out.push({ how: `label "${name}"`, request: { listener: 'https', method: 'GET', path: `${EST}/${name}/${op}`, headers: [] } });
    const s = m.estSlots[0];
    out.push({
      how: `label "${name}" on simpleenroll`,
      request: {
        listener: 'https',
        method: 'POST',
        path: `${EST}/${name}/simpleenroll`,
        headers: [basic(s.id, 'wrong-secret'), ['Content-Type', 'application/pkcs10']],
        body: Buffer.from(s.csr.toString('base64')),
      },
    });
  }
  for (const seg of ['..%2f..%2fapi%2fv1%2fdevices', '%2e%2e/%2e%2e/api/v1/devices', 'default%2fcacerts', '..%2fcacerts'])
    out.push({ how: `path ${seg}`, request: { listener: 'https', method: 'GET', path: `${EST}/${seg}`, headers: [] } });
  out.push({
    how: 'Basic with a prototype name as device id',
    request: {
      listener: 'https',
      method: 'POST',
      path: `${EST}/simpleenroll`,
      headers: [basic('__proto__', 'x'), ['Content-Type', 'application/pkcs10']],
      body: Buffer.from(m.estSlots[0].csr.toString('base64')),
    },
  });
  out.push({
    how: 'Basic with constructor as device id',
    request: {
      listener: 'https',
      method: 'POST',
      path: `${EST}/simpleenroll`,
      headers: [basic('constructor', 'x'), ['Content-Type', 'application/pkcs10']],
      body: Buffer.from(m.estSlots[0].csr.toString('base64')),
    },
  });
  return out;
}

const basic = (user: string, pass: string): [string, string] => ['Authorization', `Basic ${Buffer.from(`${user}:${pass}`, 'utf8').toString('base64')}`];

function label(rng: SeededRandom): string {
  if (rng.chance(0.75)) return '';
  return rng.pick(['default/', 'nosuchlabel/', `${rng.pick(HOSTILE_SEGMENTS)}/`]);
}

/** estCases: the generator of random EST cases; a successful enrollment replaces the slot whose secret it used. */
export function estCases(m: FuzzMaterial): CaseGenerator {
  return (rng) => {
    const op = rng.pick(OPS);
    const hows: string[] = [op];
    let p = `${EST}/${label(rng)}${op}`;
    if (rng.chance(0.1)) {
      const tweak = rng.pick(['/', '?x=1', '?__proto__[x]=1', '//', '%00', '.json', ';x', '#x']);
      p = rng.chance(0.5) ? p + tweak : p.replace(EST, EST + tweak.replace(/^[?#;]/, '/'));
      hows.push(`path tweak ${tweak}`);
    }
    hows.push(`path ${p.slice(0, 80)}`);
    let request: RawRequest;
    let slotIndex = -1;
    if (op === 'cacerts' || op === 'csrattrs') {
      request = { listener: 'https', method: 'GET', path: p, headers: [] };
      if (rng.chance(0.3)) {
        request.body = rng.bytes(rng.range(0, 200));
        hows.push('GET with a body');
      }
    } else {
      const reenroll = op === 'simplereenroll';
      slotIndex = rng.int(m.estSlots.length);
      const slot = m.estSlots[slotIndex];
      const valid = reenroll ? m.reenroll.csr : slot.csr;
      let der = valid;
      if (rng.chance(0.8)) {
        const mu = mutateBytes(rng, valid);
        der = mu.bytes;
        hows.push(mu.how);
      }
      let body: Buffer;
      const enc = rng.int(10);
      if (enc < 5) body = Buffer.from(der.toString('base64'));
      else if (enc < 8) {
        const t = mutateBase64(rng, der);
        body = Buffer.from(t.text, 'latin1');
        hows.push(t.how);
      } else if (enc < 9) {
        body = der;
        hows.push('raw DER body');
      } else {
        body = Buffer.alloc(0);
        hows.push('empty body');
      }
      const headers: [string, string][] = [['Content-Type', 'application/pkcs10']];
      let clientCert: RawRequest['clientCert'];
      const a = rng.int(10);
      if (reenroll) {
        if (a < 8) clientCert = { cert: m.reenroll.certPem, key: m.reenroll.keyPem };
        else if (a < 9) {
          headers.push(basic(slot.id, slot.secret));
          hows.push('Basic instead of a client certificate');
        } else hows.push('no credentials');
      } else if (a < 8) headers.push(basic(slot.id, slot.secret));
      else {
        const user = rng.pick([slot.id, ...PROTO_NAMES, '', 'x'.repeat(500), 'a:b', '\u0000']);
        headers.push(basic(user, rng.pick([slot.secret, '', 'x', '\u00ff'.repeat(100)])));
        hows.push(`Basic user ${JSON.stringify(user.slice(0, 20))}`);
      }
      request = { listener: 'https', method: 'POST', path: p, headers, body, clientCert };
    }
    const shaped = reshape(rng, request, 0.25);
    if (shaped.how) hows.push(shaped.how);
    const consumesSecret = op === 'simpleenroll' || op === 'serverkeygen';
    return {
      how: hows.join('; '),
      request: shaped.request,
      after: async (reply) => {
        if (!consumesSecret || reply.kind !== 'reply' || reply.status !== 200) return;
        if (op === 'simpleenroll') certFromEstReply(reply); // a 200 must carry a certificate
        await m.replaceSlot(slotIndex);
      },
    };
  };
}
