import * as crypto from 'node:crypto';
import { AdminApp, startAdminApp } from '../admin/admin-app';

/**
 * The console router's own handling, in process: sign-in input, the session cookie's attributes, the
 * cross-site refusal, and the security headers on every answer (errors included). What a session may do
 * is the authorization matrix's (admin-authz-matrix.test.ts).
 */

let app: AdminApp;
beforeAll(async () => {
  app = await startAdminApp();
}, 60_000);
afterAll(() => app?.close());

const consoleBase = (): string => app.consoleBase;

describe('sign-in (POST /console/api/session)', () => {
  it('a valid token: 201, the CSRF token and scope, and an HttpOnly, Secure, SameSite=Strict cookie on /console', async () => {
    const r = await app.consoleCall('POST', '/session', { json: { token: app.tokens.acme } });
    expect(r.status).toBe(201);
    expect(r.json).toEqual({ csrf: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/), scope: 'owner:acme', idleExpiresAt: expect.any(String), expiresAt: expect.any(String) });
    const cookie = r.headers.get('set-cookie') ?? '';
    expect(cookie).toMatch(/^dca_console=dcs_[A-Za-z0-9_-]{43}; /);
    expect(cookie.split('; ').slice(1).sort()).toEqual(['HttpOnly', 'Max-Age=3600', 'Path=/console', 'SameSite=Strict', 'Secure']);
    const id = /^dca_console=([^;]+)/.exec(cookie)![1];
    const s = await app.consoleCall('GET', '/session', { session: id });
    expect({ status: s.status, scope: s.json.scope, csrf: s.json.csrf }).toEqual({ status: 200, scope: 'owner:acme', csrf: r.json.csrf });
  });

  it.each([
    ['not JSON', '{"token":', 'application/json', 400, 'body is not valid JSON'],
    ['an unknown field', JSON.stringify({ token: 'x', admin: true }), 'application/json', 400, 'body must be {"token": "dca_..."}'],
    ['an array', '[]', 'application/json', 400, 'body must be {"token": "dca_..."}'],
    ['a form', 'token=dca_x', 'application/x-www-form-urlencoded', 400, 'Content-Type must be application/json'],
    ['a token that is a number', '{"token":1}', 'application/json', 400, 'token: expected a string'],
    ['a token that never existed', JSON.stringify({ token: 'dca_' + 'A'.repeat(43) }), 'application/json', 401, 'invalid or revoked token'],
    ['a revoked token', 'REVOKED', 'application/json', 401, 'invalid or revoked token'],
    ['a body over 4 KiB', JSON.stringify({ token: 'x'.repeat(5000) }), 'application/json', 413, 'body larger than 4096 bytes'],
  ])('%s: refused (4xx) with the reason, no cookie', async (_name, body, contentType, status, message) => {
    const text = body === 'REVOKED' ? JSON.stringify({ token: app.tokens.revoked }) : body;
    const r = await fetch(consoleBase() + '/session', { method: 'POST', headers: { 'content-type': contentType }, body: text });
    const json = (await r.json()) as { error: { message: string } };
    expect({ status: r.status, message: json.error.message, cookie: r.headers.get('set-cookie') }).toEqual({ status, message, cookie: null });
  });
});

describe('sign-in with a client certificate (POST /console/api/session/certificate)', () => {
  // the in-process app listens on plain HTTP, so no certificate ever arrives: the TLS path is the interop test's
  it.each([
    ['no client certificate', '{}', 'application/json', 401, 'no client certificate: the browser sent none (choose the operator certificate when it asks, or sign in with a token)'],
    ['a token in the body', JSON.stringify({ token: 'dca_x' }), 'application/json', 400, 'body must be {}'],
    ['not JSON', '{', 'application/json', 400, 'body is not valid JSON'],
    ['a form', '', 'application/x-www-form-urlencoded', 400, 'Content-Type must be application/json'],
    ['a body over 4 KiB', JSON.stringify({ x: 'x'.repeat(5000) }), 'application/json', 413, 'body larger than 4096 bytes'],
  ])('%s: refused (4xx) with the reason, no cookie', async (_name, body, contentType, status, message) => {
    const r = await fetch(consoleBase() + '/session/certificate', { method: 'POST', headers: { 'content-type': contentType }, body });
    const json = (await r.json()) as { error: { message: string } };
    expect({ status: r.status, message: json.error.message, cookie: r.headers.get('set-cookie') }).toEqual({ status, message, cookie: null });
  });

  it('from another site: 403 before anything else', async () => {
    const r = await fetch(consoleBase() + '/session/certificate', { method: 'POST', headers: { 'content-type': 'application/json', 'sec-fetch-site': 'cross-site' }, body: '{}' });
    expect({ status: r.status, message: ((await r.json()) as { error: { message: string } }).error.message }).toEqual({ status: 403, message: 'cross-site request refused' });
  });
});

describe('cross-site requests and security headers', () => {
  it.each([
    ['Origin of another site', { origin: 'https://evil.example' }],
    ['Origin http:// of this host', { origin: 'http://HOST' }],
    ['Sec-Fetch-Site: cross-site', { 'sec-fetch-site': 'cross-site' }],
    ['Sec-Fetch-Site: same-site', { 'sec-fetch-site': 'same-site' }],
  ])('a POST with %s is 403 and changes nothing, even with a valid session and CSRF token', async (_name, headers) => {
    const s = await app.sessions.signIn(app.tokens.operator);
    const d = await app.device('active');
    const h = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, v.replace('HOST', new URL(consoleBase()).host)]));
    const r = await app.consoleCall('POST', `/v1/devices/${d.id}/retire`, { session: s.sessionId, csrf: s.csrf, json: {}, headers: h });
    expect({ status: r.status, message: r.json.error.message }).toEqual({ status: 403, message: 'cross-site request refused' });
    expect((await app.store.getDevice(d.id))!.state).toBe('active');
    // the same request from the console's own page goes through
    const ok = await app.consoleCall('POST', `/v1/devices/${d.id}/retire`, {
      session: s.sessionId,
      csrf: s.csrf,
      json: {},
      headers: { origin: `https://${new URL(consoleBase()).host}`, 'sec-fetch-site': 'same-origin' },
    });
    expect(ok.status).toBe(200);
  });

  it.each([
    ['GET', '/session'],
    ['GET', '/nothing-here'],
    ['GET', '/v1/devices'],
    ['POST', '/v1/devices/x/retire'],
  ])('%s /console/api%s: CSP, X-Frame-Options, nosniff and no-store, on refusals too', async (method, p) => {
    const r = await app.consoleCall(method, p, { json: method === 'POST' ? {} : undefined });
    expect(r.status).toBeGreaterThanOrEqual(400);
    expect(r.headers.get('content-security-policy')).toBe(
      "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    expect(r.headers.get('x-frame-options')).toBe('DENY');
    expect(r.headers.get('x-content-type-options')).toBe('nosniff');
    expect(r.headers.get('cache-control')).toBe('no-store');
    expect(r.json.error).toEqual({ code: expect.any(String), message: expect.any(String) });
  });

  it('without built assets the page says so (404), and /console redirects to /console/', async () => {
    const r = await fetch(consoleBase().replace(/\/api$/, '/'));
    expect({ status: r.status, text: (await r.text()).trim() }).toEqual({ status: 404, text: 'the console is not built (npm run build)' });
    const bare = await fetch(consoleBase().replace(/\/api$/, ''), { redirect: 'manual' });
    expect({ status: bare.status, location: bare.headers.get('location') }).toEqual({ status: 301, location: '/console/' });
  });
});

describe('overview charts (GET /console/api/overview/enrollments, /overview/expiring)', () => {
  const HOUR = 3600_000;
  const DAY = 86400_000;
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

  it('enrollments: 168 UTC hours ending with the current one; expiring: 90 UTC days from today; both follow issuances and revocations', async () => {
    const s = await app.sessions.signIn(app.tokens.operator);
    const get = async (p: string) => {
      const r = await app.consoleCall('GET', p, { session: s.sessionId });
      expect(r.status).toBe(200);
      return r.json as { start: string; from: string; bucketSeconds: number; counts: number[] };
    };
    const [e0, x0] = [await get('/overview/enrollments'), await get('/overview/expiring')];
    const t0 = Date.now();
    const devices = [await app.device('active'), await app.device('active'), await app.device('active', 'globex')];
    const [e1, x1] = [await get('/overview/enrollments'), await get('/overview/expiring')];
    const t1 = Date.now();
    expect(e1.counts).toHaveLength(168);
    expect(e1.bucketSeconds).toBe(3600);
    expect([Math.floor(t0 / HOUR) - 167, Math.floor(t1 / HOUR) - 167]).toContain(Date.parse(e1.start) / HOUR);
    expect(e1.from).toBe(e1.start);
    // a new hour may begin between the two reads: compare the totals of the hours both cover
    const shift = (Date.parse(e1.start) - Date.parse(e0.start)) / HOUR;
    expect(sum(e1.counts) - sum(e0.counts.slice(shift))).toBe(3);
    expect(e1.counts[167]).toBeGreaterThanOrEqual(1);
    expect(x1.counts).toHaveLength(90);
    expect(x1.bucketSeconds).toBe(86400);
    expect(Date.parse(x1.start) % DAY).toBe(0);
    expect(Date.parse(x1.from)).toBeGreaterThanOrEqual(Date.parse(x1.start));
    // the fixtures' certificates expire in a day: today's or tomorrow's bucket
    expect(x1.counts[0] + x1.counts[1] - (x0.counts[0] + x0.counts[1])).toBe(3);
    await app.lifecycle.retire(devices[0].id, { kind: 'operator' }, 'test');
    const x2 = await get('/overview/expiring');
    expect(x2.counts[0] + x2.counts[1]).toBe(x1.counts[0] + x1.counts[1] - 1);
  });

  it('fuzz: whatever query or trailing path comes with them, the charts answer 200 with the same shape or 404, never a 500', async () => {
    const s = await app.sessions.signIn(app.tokens.operator);
    const rnd = (n: number) => Array.from(crypto.randomBytes(n), (b) => '%' + b.toString(16).padStart(2, '0')).join('');
    for (let i = 0; i < 40; i++) {
      const which = i % 2 ? 'enrollments' : 'expiring';
      const p = i % 4 < 2 ? `/overview/${which}?${rnd(1 + (i % 7))}=${rnd(i % 5)}&hours=-1&days=1e9` : `/overview/${which}/${rnd(1 + (i % 9))}`;
      const r = await app.consoleCall('GET', p, { session: s.sessionId });
      expect({ p, status: r.status < 500 }).toEqual({ p, status: true });
      if (r.status === 200) expect(r.json.counts).toHaveLength(which === 'enrollments' ? 168 : 90);
      else expect({ p, status: r.status, code: r.json.error.code }).toEqual({ p, status: 404, code: 'not-found' });
    }
  });
});
