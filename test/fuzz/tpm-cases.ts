import * as fs from 'node:fs';
import * as path from 'node:path';
import { mutateBytes } from './byte-mutations';
import { CaseGenerator, Generated } from './fuzz-case';
import { FuzzMaterial } from './fuzz-material';
import { RawRequest } from '../helpers/raw-http';
import { reshape } from './request-shapes';
import { SeededRandom } from './seeded-random';
import { PROTO_NAMES, deepJson, mutateBase64, mutateJson } from './text-mutations';

/**
 * tpm-cases: the TPM attestation routes of an EST label whose profile has attestation on
 * (POST <label>/tpm/nonce, <label>/tpm/ak, <label>/tpm/ak/activate), made from valid requests built
 * from the golden swtpm structures in test/fixtures/tpm (an EK certificate that chains to the roots the
 * campaign's service trusts, so registration reaches MakeCredential): JSON damaged as text, each
 * structure damaged as bytes and as base64, credentials wrong or missing, prototype names as fields.
 */

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'tpm');
const fixture = (f: string): Buffer => fs.readFileSync(path.join(FIXTURES, f));

/** TPM_LABEL: the EST label the campaign's service serves with attestation optional (see campaign.test.ts). */
export const TPM_LABEL = 'tpm';
const BASE = `/.well-known/est/${TPM_LABEL}/tpm`;

/** TPM_CAMPAIGN_YAML: the service configuration the TPM cases need: a profile with attestation on and the swtpm roots trusted. */
export function tpmCampaignYaml(ekRootsDir: string): string {
  return [
    'profiles:',
    `  ${TPM_LABEL}: { attestation: optional }`,
    'est:',
    '  labels:',
    '    default: {}',
    `    ${TPM_LABEL}: { profile: ${TPM_LABEL} }`,
    'attestation:',
    `  ekRoots: [${JSON.stringify(ekRootsDir)}]`,
    '',
  ].join('\n');
}

/** writeTpmRoots: the swtpm local CA's root and issuer, as the trust directory the service loads. */
export function writeTpmRoots(dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  for (const f of ['ek-root.pem', 'ek-issuer.pem']) fs.copyFileSync(path.join(FIXTURES, f), path.join(dir, f));
}

interface Structures {
  ekCertificate: Buffer;
  ekPublic: Buffer;
  akPublic: Buffer;
  akName: Buffer;
}

const structures = (): Structures => ({
  ekCertificate: fixture('ek-cert.der'),
  ekPublic: fixture('ek.pub'),
  akPublic: fixture('ak.pub'),
  akName: fixture('ak.name'),
});

const basic = (user: string, pass: string): [string, string] => ['Authorization', `Basic ${Buffer.from(`${user}:${pass}`, 'utf8').toString('base64')}`];
const JSON_CT: [string, string] = ['Content-Type', 'application/json'];

function akBody(s: Structures, over: Partial<Record<keyof Structures | 'ekChain', unknown>> = {}): Record<string, unknown> {
  return { ekCertificate: s.ekCertificate.toString('base64'), ekChain: [], ekPublic: s.ekPublic.toString('base64'), akPublic: s.akPublic.toString('base64'), ...over };
}

function activateBody(s: Structures, secret: Buffer): Record<string, unknown> {
  return { akName: s.akName.toString('hex'), secret: secret.toString('base64') };
}

function post(m: FuzzMaterial, route: string, body: Buffer | undefined, auth?: [string, string]): RawRequest {
  const d = m.tpmDevice;
  return { listener: 'https', method: 'POST', path: `${BASE}/${route}`, headers: [auth ?? basic(d.id, d.secret), JSON_CT], body };
}

/** tpmCorpus: requests sent on every run: the valid flow, then each field wrong in the ways a parser meets first. */
export function tpmCorpus(m: FuzzMaterial): Generated[] {
  const s = structures();
  const json = (v: unknown) => Buffer.from(JSON.stringify(v));
  const out: Generated[] = [
    { how: 'valid nonce', request: post(m, 'nonce', Buffer.alloc(0)) },
    { how: 'valid AK registration', request: post(m, 'ak', json(akBody(s))) },
    { how: 'activation with a wrong secret', request: post(m, 'ak/activate', json(activateBody(s, Buffer.alloc(32, 7)))) },
    { how: 'nonce without credentials', request: { ...post(m, 'nonce', undefined), headers: [] } },
    { how: 'AK with a wrong secret', request: post(m, 'ak', json(akBody(s)), basic(m.tpmDevice.id, 'wrong')) },
    { how: 'AK for a device of another label', request: post(m, 'ak', json(akBody(s)), basic(m.estSlots[0].id, m.estSlots[0].secret)) },
    { how: 'EK public swapped with the AK public', request: post(m, 'ak', json(akBody(s, { ekPublic: s.akPublic.toString('base64') }))) },
    { how: 'AK public is the EK public', request: post(m, 'ak', json(akBody(s, { akPublic: s.ekPublic.toString('base64') }))) },
    { how: 'EK certificate is a TPM public area', request: post(m, 'ak', json(akBody(s, { ekCertificate: s.ekPublic.toString('base64') }))) },
    { how: 'chain of five EK certificates', request: post(m, 'ak', json(akBody(s, { ekChain: Array(5).fill(s.ekCertificate.toString('base64')) }))) },
    { how: 'chain holding the EK certificate itself', request: post(m, 'ak', json(akBody(s, { ekChain: [s.ekCertificate.toString('base64')] }))) },
    { how: 'empty structures', request: post(m, 'ak', json(akBody(s, { ekCertificate: '', ekPublic: '', akPublic: '' }))) },
    { how: 'AK name of 66 bytes of zeros', request: post(m, 'ak/activate', json({ akName: '00'.repeat(66), secret: 'AAAA' })) },
    { how: 'AK name with an unknown hash algorithm', request: post(m, 'ak/activate', json({ akName: 'ffff' + '00'.repeat(32), secret: 'AAAA' })) },
    { how: 'secret of 64 bytes', request: post(m, 'ak/activate', json(activateBody(s, Buffer.alloc(64, 1)))) },
    { how: 'secret of 65 bytes', request: post(m, 'ak/activate', json(activateBody(s, Buffer.alloc(65, 1)))) },
    { how: 'AK body nested 20,000 deep', request: post(m, 'ak', Buffer.from(deepJson(20_000, 'object'))) },
  ];
  for (const name of PROTO_NAMES) {
    out.push({ how: `field ${name} in the AK body`, request: post(m, 'ak', Buffer.from(`{"${name}":{"polluted":true},${JSON.stringify(akBody(s)).slice(1)}`)) });
    out.push({ how: `label ${name}`, request: { ...post(m, 'nonce', undefined), path: `/.well-known/est/${name}/tpm/nonce` } });
  }
  return out;
}

/** tpmCases: random cases on the three routes. */
export function tpmCases(m: FuzzMaterial): CaseGenerator {
  const s = structures();
  return (rng: SeededRandom) => {
    const route = rng.pick(['nonce', 'ak', 'ak', 'ak', 'ak/activate', 'ak/activate'] as const);
    const hows: string[] = [route];
    let body: Buffer;
    const valid = route === 'ak' ? akBody(s) : route === 'ak/activate' ? activateBody(s, rng.bytes(32)) : {};
    const k = rng.int(10);
    if (route === 'nonce' || k < 3) {
      const t = mutateJson(rng, valid);
      body = Buffer.from(t.text);
      hows.push(t.how);
    } else if (route === 'ak' && k < 8) {
      // one structure damaged as bytes (the TPM parsers and the X.509 parser meet it) or as base64
      const field = rng.pick(['ekCertificate', 'ekPublic', 'akPublic', 'ekChain'] as const);
      const src = field === 'ekChain' ? s.ekCertificate : s[field];
      let text: string;
      if (rng.chance(0.7)) {
        const mm = mutateBytes(rng, src);
        text = mm.bytes.toString('base64');
        hows.push(`${field}: ${mm.how}`);
      } else {
        const t = mutateBase64(rng, src);
        text = t.text;
        hows.push(`${field}: ${t.how}`);
      }
      body = Buffer.from(JSON.stringify({ ...valid, [field]: field === 'ekChain' ? [text] : text }));
    } else {
      const t = route === 'ak/activate' && rng.chance(0.5) ? { akName: rng.bytes(rng.range(2, 66)).toString('hex'), secret: rng.bytes(rng.range(0, 64)).toString('base64') } : valid;
      body = Buffer.from(JSON.stringify(t));
      hows.push('random name and secret');
    }
    const auth = rng.chance(0.1) ? basic(rng.pick([...PROTO_NAMES, m.tpmDevice.id]), rng.pick(['', 'x', m.tpmDevice.secret])) : undefined;
    if (auth) hows.push('other credentials');
    const shaped = reshape(rng, post(m, route, body, auth), 0.2);
    if (shaped.how) hows.push(shaped.how);
    return { how: hows.join('; '), request: shaped.request };
  };
}
