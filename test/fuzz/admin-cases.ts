import { CaseGenerator, Generated } from './fuzz-case';
import { AdminRoute, FuzzMaterial } from './fuzz-material';
import { RawRequest } from '../helpers/raw-http';
import { reshape } from './request-shapes';
import { SeededRandom } from './seeded-random';
import { HOSTILE_SEGMENTS, ODD_VALUES, PROTO_NAMES, mutateJson } from './text-mutations';

/**
 * admin-cases: every route of /api/v1/openapi.json with a valid operator token (a few without): path
 * parameters hostile, query parameters odd, JSON bodies mutated (odd values, prototype-named keys, deep
 * nesting, invalid JSON), and content types wrong. The EST devices are never named, so the admin
 * campaign cannot take their credentials away.
 */

/** ADMIN_CORPUS: requests sent on every run (the probe's findings among them). */
export function adminCorpus(m: FuzzMaterial): Generated[] {
  const post = (p: string, body: string, how: string): Generated => ({
    how,
    request: {
      listener: 'https',
      method: 'POST',
      path: `/api/v1${p}`,
      headers: [
        ['Authorization', `Bearer ${m.token}`],
        ['Content-Type', 'application/json'],
      ],
      body: Buffer.from(body),
    },
  });
  const get = (p: string, how: string): Generated => ({ how, request: { listener: 'https', method: 'GET', path: `/api/v1${p}`, headers: [['Authorization', `Bearer ${m.token}`]] } });
  const out: Generated[] = [];
  let n = 0;
  for (const name of PROTO_NAMES) {
    out.push(post('/devices', JSON.stringify({ id: `fz-corpus-${++n}`, label: name }), `label "${name}"`));
    out.push(post('/devices', JSON.stringify({ id: name }), `id "${name}"`));
    out.push(post('/devices', JSON.stringify({ id: `fz-corpus-${++n}`, owner: name }), `owner "${name}"`));
    out.push(get(`/devices/${name}`, `GET device "${name}"`), get(`/certificates/${name}`, `GET certificate "${name}"`), get(`/devices?state=${name}&owner=${name}`, `list with "${name}"`));
    out.push(
      post(`/devices/${name}/suspend`, '', `suspend "${name}"`),
      post(`/certificates/${name}/revoke`, JSON.stringify({ reason: name }), `revoke "${name}"`),
      post(`/requests/${name}/approve`, '', `approve "${name}"`),
      post(`/devices/${name}/secret`, JSON.stringify({ [name]: 1 }), `new secret for "${name}" with key "${name}"`),
    );
  }
  for (const ttl of ['1e300', '-1', '9007199254740993', '"NaN"', '"1e300d"', '"99999999999y"', '1e999']) {
    out.push(post('/devices', `{"id":"fz-corpus-${++n}","secretTtl":${ttl}}`, `secretTtl ${ttl}`));
    out.push(post(`/devices/${m.adminDevices[m.adminDevices.length - 1]}/transfer`, `{"to":"fuzz-3","secretTtl":${ttl}}`, `transfer secretTtl ${ttl}`));
    out.push(post(`/devices/${m.adminDevices[0]}/secret`, `{"secretTtl":${ttl}}`, `new secret secretTtl ${ttl}`));
  }
  for (const limit of ['1e300', '-1', 'NaN', '9007199254740993', '0x10', '', '1.5', '0.5', '999.9'])
    out.push(get(`/devices?limit=${limit}`, `limit=${limit}`), get(`/certificates?limit=${limit}&after=${limit}`, `certificates limit=${limit}`));
  // the audit listing's times and the verification's running position
  for (const t of ['2026-13-45T99:99Z', '1e300', '-271821-04-20T00:00Z', '9999-12-31T23:59:59.999Z', '2026-01-01T00:00', 'now', '__proto__'])
    out.push(get(`/audit?from=${encodeURIComponent(t)}&to=${encodeURIComponent(t)}`, `audit from/to ${t}`));
  for (const [after, hash] of [
    ['999999999999999', '0'.repeat(64)],
    ['1', 'f'.repeat(63)],
    ['-1', ''],
    ['1e3', 'A'.repeat(64)],
    ['1', '0'.repeat(64)],
  ])
    out.push(get(`/audit/verify?after=${after}&hash=${hash}&limit=10000`, `audit verify after=${after} hash=${hash.slice(0, 8)}`));
  out.push(get('/audit?type=' + 'a'.repeat(65), 'audit type too long'), get('/audit?after=99999999999999999999', 'audit cursor past 2^53'));
  out.push(post('/devices', `{"__proto__":{"admin":true},"id":"fz-corpus-${++n}"}`, '__proto__ key'));
  out.push(post('/devices', `{"constructor":{"prototype":{"admin":true}},"id":"fz-corpus-${++n}"}`, 'constructor.prototype key'));
  out.push(post('/devices', '['.repeat(30_000) + ']'.repeat(30_000), '30 000 nested arrays'));
  out.push(get('/devices/..%2f..%2fopenapi.json', 'traversal in id'));
  out.push(get('/devices/a%2fb', 'encoded slash in id'));
  return out;
}

function paramValue(rng: SeededRandom, m: FuzzMaterial, name: string): { value: string; how: string } {
  if (rng.chance(0.6)) {
    const value = name === 'serial' ? rng.pick(m.adminSerials) : name === 'id' ? rng.pick(m.adminDevices) : name === 'name' ? m.firmware.name : 'x';
    return { value, how: '' };
  }
  const v = rng.pick(HOSTILE_SEGMENTS);
  return { value: v, how: `{${name}} = ${JSON.stringify(v.slice(0, 40))}` };
}

/** uriEncode: encodeURIComponent, or the UTF-8 bytes escaped one by one for a lone surrogate (which it refuses). */
function uriEncode(v: string): string {
  try {
    return encodeURIComponent(v);
  } catch {
    return [...Buffer.from(v, 'utf8')].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');
  }
}

function queryString(rng: SeededRandom, route: AdminRoute): { q: string; how: string } {
  if (route.query.length === 0 || rng.chance(0.4)) return { q: '', how: '' };
  const parts: string[] = [];
  const n = rng.range(1, 4);
  for (let i = 0; i < n; i++) {
    const key = rng.chance(0.85) ? rng.pick(route.query) : rng.pick([...PROTO_NAMES, 'owner[__proto__]', 'limit[]', 'state[0]']);
    const odd = rng.pick(ODD_VALUES);
    const v = rng.chance(0.3) ? rng.pick(['valid', 'revoked', 'active', 'pending', '10']) : typeof odd === 'string' ? odd : JSON.stringify(odd);
    parts.push(`${encodeURIComponent(key)}=${rng.chance(0.8) ? uriEncode(String(v)) : String(v).replace(/[\s#]/g, '')}`);
  }
  const q = parts.join('&');
  return { q: `?${q}`, how: `query ${q.slice(0, 100)}` };
}

/** adminCases: random admin API cases over the documented routes. */
export function adminCases(m: FuzzMaterial): CaseGenerator {
  let fresh = 0;
  return (rng) => {
    const route = rng.pick(m.adminRoutes);
    const hows: string[] = [`${route.method} ${route.template}`];
    let p = route.template.replace(/\{(\w+)\}/g, (_, name: string) => {
      const v = paramValue(rng, m, name);
      if (v.how) hows.push(v.how);
      return v.value;
    });
    const q = queryString(rng, route);
    if (q.how) hows.push(q.how);
    p = `/api/v1${p}${q.q}`;
    const headers: [string, string][] = [];
    const a = rng.int(20);
    if (a < 18) headers.push(['Authorization', `Bearer ${m.token}`]);
    else if (a < 19) {
      headers.push(['Authorization', rng.pick(['Bearer ', `Bearer ${m.token}x`, `bearer ${m.token}`, `Basic ${Buffer.from('operator:' + m.token).toString('base64')}`, 'Bearer __proto__'])]);
      hows.push('odd Authorization');
    } else hows.push('no Authorization');
    let body: Buffer | undefined;
    if (route.method === 'POST') {
      headers.push(['Content-Type', 'application/json']);
      const valid = { ...route.body };
      if (route.template === '/devices') valid.id = `fz-new-${++fresh}`;
      if (rng.chance(0.75)) {
        const t = mutateJson(rng, valid);
        body = Buffer.from(t.text, 'utf8');
        hows.push(t.how);
      } else body = Buffer.from(JSON.stringify(valid));
    }
    const request: RawRequest = { listener: 'https', method: route.method, path: p, headers, body };
    const shaped = reshape(rng, request, 0.2);
    if (shaped.how) hows.push(shaped.how);
    return { how: hows.join('; '), request: shaped.request };
  };
}
