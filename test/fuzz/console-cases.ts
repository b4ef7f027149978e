import { RawRequest } from '../helpers/raw-http';
import { adminCases } from './admin-cases';
import { CaseGenerator, Generated } from './fuzz-case';
import { FuzzMaterial } from './fuzz-material';
import { SeededRandom } from './seeded-random';
import { HOSTILE_SEGMENTS, PROTO_NAMES, mutateJson } from './text-mutations';

/**
 * console-cases: the operator console (/console) as a hostile browser or script would meet it: the sign-in
 * body mutated (the token one, and the certificate one with no or a device's client certificate), the session cookie and CSRF header missing, doubled, oversized or odd, Origin and
 * Sec-Fetch-Site of other sites, asset paths with traversal, the device history with odd paging; and the
 * admin campaign's random cases sent through the console's mount (/console/api/v1) with the session
 * instead of a bearer token. Sign-out is only ever sent without the CSRF token, so the session lives on.
 */

const withSession = (m: FuzzMaterial, csrf = true): [string, string][] => [
  ['Cookie', `dca_console=${m.consoleSession.id}`],
  ...(csrf ? [['X-CSRF-Token', m.consoleSession.csrf] as [string, string]] : []),
];

export function consoleCorpus(m: FuzzMaterial): Generated[] {
  const req = (method: string, p: string, headers: [string, string][], body?: string): RawRequest => ({
    listener: 'https',
    method,
    path: `/console${p}`,
    headers,
    body: body === undefined ? undefined : Buffer.from(body),
  });
  const json: [string, string] = ['Content-Type', 'application/json'];
  const out: Generated[] = [];
  for (const body of [
    '',
    '{',
    'null',
    '[]',
    '"dca_x"',
    '{"token":null}',
    '{"token":{"__proto__":1}}',
    '{"__proto__":{"token":"x"}}',
    `{"token":"${'A'.repeat(4100)}"}`,
    '{"token":"dca_' + '\u0000'.repeat(43) + '"}',
  ])
    out.push({ how: `sign-in body ${JSON.stringify(body.slice(0, 40))}`, request: req('POST', '/api/session', [json], body) });
  // certificate sign-in: odd bodies, with no client certificate and with a device's (refused: not pinned)
  const device = { cert: m.reenroll.certPem, key: m.reenroll.keyPem };
  for (const body of ['', '{}', '{"token":"x"}', 'null', '[]', '{"__proto__":{}}', `{"${'a'.repeat(4100)}":1}`])
    for (const clientCert of [undefined, device])
      out.push({
        how: `certificate sign-in body ${JSON.stringify(body.slice(0, 40))}${clientCert ? ' with a device certificate' : ''}`,
        request: { ...req('POST', '/api/session/certificate', [json], body), clientCert },
      });
  for (const cookie of [
    'dca_console=',
    'dca_console=dcs_',
    `dca_console=${m.consoleSession.id}; dca_console=dcs_${'A'.repeat(43)}`,
    `dca_console=${'x'.repeat(8000)}`,
    'dca_console',
    ';;;=;',
    `dca_console="${m.consoleSession.id}"`,
    '__proto__=1; constructor=2',
  ])
    out.push({ how: `cookie ${JSON.stringify(cookie.slice(0, 60))}`, request: req('GET', '/api/v1/devices', [['Cookie', cookie]]) });
  for (const csrf of ['', ' ', m.consoleSession.csrf + 'x', m.consoleSession.csrf.toUpperCase(), '\u00ff'.repeat(43), 'x'.repeat(10_000)])
    out.push({
      how: `csrf ${JSON.stringify(csrf.slice(0, 40))}`,
      request: req('POST', `/api/v1/devices/${m.adminDevices[0]}/suspend`, [...withSession(m, false), ['X-CSRF-Token', csrf], json], '{}'),
    });
  out.push({ how: 'sign-out without CSRF', request: req('POST', '/api/session/sign-out', [...withSession(m, false), json], '{}') });
  for (const [k, v] of [
    ['Origin', 'null'],
    ['Origin', 'https://evil.example'],
    ['Origin', ''],
    ['Sec-Fetch-Site', 'cross-site'],
    ['Sec-Fetch-Site', '__proto__'],
  ])
    out.push({ how: `${k}: ${v}`, request: req('POST', `/api/v1/devices/${m.adminDevices[0]}/retire`, [...withSession(m), [k, v], json], '{}') });
  for (const p of ['/', '', '/index.html', '/console.js/', '/..%2f..%2fapi%2fv1%2fdevices', '/%2e%2e/%2e%2e/etc/passwd', '/console.js%00.html', '/.hidden', '/tsconfig.json', '/../dist/main.js'])
    out.push({ how: `asset ${p}`, request: req('GET', p, []) });
  for (const name of [...PROTO_NAMES, m.adminDevices[0]])
    for (const q of ['', '?limit=1e300', '?after=%00', '?limit=0&after=x', '?__proto__=1'])
      out.push({ how: `audit of "${name}" ${q}`, request: req('GET', `/api/devices/${encodeURIComponent(name)}/audit${q}`, withSession(m)) });
  return out;
}

/** consoleCases: random console cases: the admin campaign through /console/api/v1, sign-in bodies, odd console paths. */
export function consoleCases(m: FuzzMaterial): CaseGenerator {
  const admin = adminCases(m);
  return (rng: SeededRandom, index: number) => {
    const pick = rng.int(10);
    if (pick < 7) {
      const g = admin(rng, index);
      const r = g.request;
      if (!r.path.startsWith('/api/v1')) return g;
      const headers = r.headers.filter(([k]) => k.toLowerCase() !== 'authorization');
      const hadAuth = headers.length !== r.headers.length;
      const session: [string, string][] = hadAuth ? withSession(m, r.method !== 'GET' ? rng.chance(0.9) : false) : [];
      return { how: `console: ${g.how}${hadAuth ? '' : ' (no session)'}`, request: { ...r, path: `/console${r.path}`, headers: [...session, ...headers] } };
    }
    if (pick < 9) {
      const t = mutateJson(rng, { token: m.token });
      return {
        how: `sign-in ${t.how}`,
        request: { listener: 'https', method: 'POST', path: '/console/api/session', headers: [['Content-Type', 'application/json']], body: Buffer.from(t.text, 'utf8') },
      };
    }
    const seg = rng.pick(HOSTILE_SEGMENTS);
    const p = rng.pick([`/console/${seg}`, `/console/api/${seg}`, `/console/api/devices/${seg}/audit`]);
    return {
      how: `path ${JSON.stringify(p.slice(0, 60))}`,
      request: { listener: 'https', method: rng.pick(['GET', 'POST', 'HEAD']), path: p.replace(/[\s#?]/g, encodeURIComponent), headers: withSession(m) },
    };
  };
}
