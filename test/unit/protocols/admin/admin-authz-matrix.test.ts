import * as crypto from 'node:crypto';
import { bufferSource } from '../../../../src/cms/byte-source';
import { OPENAPI } from '../../../../src/protocols/admin/openapi';
import { csrfOf } from '../../../../src/ra/console-sessions';
import { AdminApp, ApiReply, startAdminApp } from './admin-app';

/**
 * The admin API's authorization matrix: every route of the OpenAPI document x every kind of caller, with
 * the status that caller must get. The routes are enumerated from the document (and the document checked
 * against the router), so a route added without its row here fails. Each cell runs on fresh fixtures; a
 * refused call must leave the device, its certificate and the audit log as they were, and a 404 must read
 * exactly like the 404 for an id that does not exist.
 *
 * Callers: the operator; `owner` = owner:acme, which owns every fixture device; `newOwner` = owner:bravo,
 * the owner a `transferring` fixture was released to (for other fixtures just one more owner); `other` =
 * owner:globex; no token; a revoked token; a token that never existed.
 */

const CALLERS = ['operator', 'owner', 'newOwner', 'other', 'none', 'revoked', 'bad'] as const;
type Caller = (typeof CALLERS)[number];
type Statuses = [number, number, number, number, number, number, number];

interface Target {
  path: string;
  body?: unknown;
  /** the device id or serial in the path, for the "404 reads like an unknown id" check */
  subject?: string;
  unknown?: string;
  /** device and certificate a refused call must leave untouched */
  device?: string;
  serial?: string | null;
}

interface Variant {
  name: string;
  target: (app: AdminApp) => Promise<Target>;
  expect: Statuses;
}

const ANON: [number, number, number] = [401, 401, 401];
const unknownDevice = () => `m-unknown-${crypto.randomBytes(4).toString('hex')}`;
const unknownSerial = () => '4' + crypto.randomBytes(15).toString('hex');
const onDevice =
  (state: Parameters<AdminApp['device']>[0], action: string, body?: unknown) =>
  async (app: AdminApp): Promise<Target> => {
    const d = await app.device(state);
    return { path: `/devices/${d.id}${action}`, body, subject: d.id, unknown: unknownDevice(), device: d.id, serial: d.serial };
  };
const onCertificate =
  (action: string, body?: unknown) =>
  async (app: AdminApp): Promise<Target> => {
    const d = await app.device('active');
    return { path: `/certificates/${d.serial}${action}`, body, subject: d.serial!, unknown: unknownSerial(), device: d.id, serial: d.serial };
  };
const onRequest =
  (action: string) =>
  async (app: AdminApp): Promise<Target> => ({ path: `/requests/${await app.pendingRequest()}${action}`, body: {} });

/** MATRIX: `METHOD /path` as in the OpenAPI document -> variants, each [operator, owner, newOwner, other, none, revoked, bad] */
const MATRIX: Record<string, Variant[]> = {
  'GET /openapi.json': [{ name: 'public', target: async () => ({ path: '/openapi.json' }), expect: [200, 200, 200, 200, 200, 200, 200] }],
  'GET /devices': [{ name: 'list', target: async () => ({ path: '/devices' }), expect: [200, 200, 200, 200, ...ANON] }],
  'POST /devices': [
    { name: 'register for acme', target: async () => ({ path: '/devices', body: { id: unknownDevice(), owner: 'acme' } }), expect: [201, 201, 403, 403, ...ANON] },
    {
      // device ids are one namespace: a taken id is refused alike for everyone (it says "taken", never whose)
      name: 'an id acme holds',
      target: async (app) => {
        const d = await app.device('active');
        return { path: '/devices', body: { id: d.id }, device: d.id, serial: d.serial };
      },
      expect: [409, 409, 409, 409, ...ANON],
    },
  ],
  'GET /devices/{id}': [
    { name: 'active device', target: onDevice('active', ''), expect: [200, 200, 404, 404, ...ANON] },
    { name: 'transferring device', target: onDevice('transferring', ''), expect: [200, 200, 200, 404, ...ANON] },
  ],
  'POST /devices/{id}/suspend': [
    { name: 'active device', target: onDevice('active', '/suspend'), expect: [200, 200, 404, 404, ...ANON] },
    { name: 'transferring device', target: onDevice('transferring', '/suspend'), expect: [409, 409, 403, 404, ...ANON] },
  ],
  'POST /devices/{id}/resume': [{ name: 'suspended device', target: onDevice('suspended', '/resume'), expect: [200, 200, 404, 404, ...ANON] }],
  'POST /devices/{id}/retire': [
    { name: 'active device', target: onDevice('active', '/retire'), expect: [200, 200, 404, 404, ...ANON] },
    { name: 'transferring device', target: onDevice('transferring', '/retire'), expect: [200, 200, 403, 404, ...ANON] },
  ],
  'POST /devices/{id}/transfer': [
    { name: 'active device', target: onDevice('active', '/transfer', { to: 'initech' }), expect: [200, 403, 404, 404, ...ANON] },
    { name: 'transferring device', target: onDevice('transferring', '/transfer', { to: 'bravo' }), expect: [200, 403, 403, 404, ...ANON] },
  ],
  'POST /devices/{id}/commands': [
    // operator only (it ends a device's identity); a device the caller cannot see is 404 first
    { name: 'retire, retired device', target: onDevice('retired', '/commands', { command: 'retire' }), expect: [201, 403, 404, 404, ...ANON] },
    { name: 'transfer, transferring device', target: onDevice('transferring', '/commands', { command: 'transfer' }), expect: [201, 403, 403, 404, ...ANON] },
    { name: 'retire, active device', target: onDevice('active', '/commands', { command: 'retire' }), expect: [403, 403, 404, 404, ...ANON] },
  ],
  'POST /devices/{id}/release': [
    { name: 'active device', target: onDevice('active', '/release', { to: 'bravo' }), expect: [200, 200, 404, 404, ...ANON] },
    { name: 'transferring device', target: onDevice('transferring', '/release', { to: 'globex' }), expect: [409, 409, 403, 404, ...ANON] },
  ],
  'POST /devices/{id}/claim': [
    { name: 'transferring device', target: onDevice('transferring', '/claim'), expect: [200, 403, 200, 404, ...ANON] },
    { name: 'active device', target: onDevice('active', '/claim'), expect: [409, 409, 404, 404, ...ANON] },
  ],
  'POST /devices/{id}/cancel-release': [
    { name: 'transferring device', target: onDevice('transferring', '/cancel-release'), expect: [200, 200, 403, 404, ...ANON] },
    { name: 'active device', target: onDevice('active', '/cancel-release'), expect: [409, 409, 404, 404, ...ANON] },
  ],
  'POST /devices/{id}/secret': [
    { name: 'active device', target: onDevice('active', '/secret'), expect: [200, 200, 404, 404, ...ANON] },
    { name: 'registered device', target: onDevice('registered', '/secret', { secretTtl: '1h' }), expect: [200, 200, 404, 404, ...ANON] },
    { name: 'transferring device', target: onDevice('transferring', '/secret'), expect: [409, 409, 403, 404, ...ANON] },
    { name: 'suspended device', target: onDevice('suspended', '/secret'), expect: [409, 409, 404, 404, ...ANON] },
    { name: 'retired device', target: onDevice('retired', '/secret'), expect: [409, 409, 404, 404, ...ANON] },
  ],
  'GET /certificates': [{ name: 'list', target: async () => ({ path: '/certificates' }), expect: [200, 200, 200, 200, ...ANON] }],
  'GET /certificates/{serial}': [{ name: "acme's certificate", target: onCertificate(''), expect: [200, 200, 404, 404, ...ANON] }],
  'POST /certificates/{serial}/revoke': [{ name: "acme's certificate", target: onCertificate('/revoke', { reason: 'superseded' }), expect: [200, 200, 404, 404, ...ANON] }],
  // the audit log spans every owner (tokens, CA events): operator only; owners read their devices' history on the device
  'GET /audit': [
    { name: 'the whole log', target: async () => ({ path: '/audit' }), expect: [200, 403, 403, 403, ...ANON] },
    { name: "filtered to acme's device", target: async (app) => ({ path: `/audit?device=${(await app.device('active')).id}` }), expect: [200, 403, 403, 403, ...ANON] },
  ],
  'GET /audit/verify': [{ name: 'first chunk', target: async () => ({ path: '/audit/verify?limit=50' }), expect: [200, 403, 403, 403, ...ANON] }],
  'GET /requests': [{ name: 'queue', target: async () => ({ path: '/requests' }), expect: [200, 403, 403, 403, ...ANON] }],
  'POST /requests/{id}/approve': [{ name: 'pending request', target: onRequest('/approve'), expect: [200, 403, 403, 403, ...ANON] }],
  'POST /requests/{id}/reject': [{ name: 'pending request', target: onRequest('/reject'), expect: [200, 403, 403, 403, ...ANON] }],
  // fleet-wide (every owner's devices): the operator's; a name never released is 404 for the operator only
  'GET /firmware/{name}/status': [
    {
      name: 'a released firmware',
      target: async (app) => {
        const name = `fw-${crypto.randomBytes(4).toString('hex')}`;
        await app.store.saveFirmwareRelease({ name, version: 1, sha256: '00'.repeat(32), signers: [], recipients: null, releasedAt: new Date() }, bufferSource(Buffer.from('r')), {
          type: 'firmware.released',
          actor: 'test',
          subject: `firmware:${name}`,
          data: {},
        });
        return { path: `/firmware/${name}/status` };
      },
      expect: [200, 403, 403, 403, ...ANON],
    },
    { name: 'a name never released', target: async () => ({ path: '/firmware/never-released/status' }), expect: [404, 403, 403, 403, ...ANON] },
  ],
};

/** DOCUMENTED: every `METHOD /path` of the OpenAPI document */
const DOCUMENTED = Object.entries(OPENAPI.paths as Record<string, Record<string, unknown>>).flatMap(([p, ops]) =>
  Object.keys(ops)
    .filter((m) => ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'].includes(m))
    .map((m) => `${m.toUpperCase()} ${p}`),
);

let app: AdminApp;
beforeAll(async () => {
  app = await startAdminApp();
}, 60_000);
afterAll(() => app?.close());

const tokenOf = (c: Caller): string | undefined =>
  ({ operator: app.tokens.operator, owner: app.tokens.acme, newOwner: app.tokens.bravo, other: app.tokens.globex, none: undefined, revoked: app.tokens.revoked, bad: app.tokens.bad })[c];

async function snapshot(t: Target) {
  return {
    device: t.device ? await app.store.getDevice(t.device) : null,
    cert: t.serial ? await app.store.certificateStatus(t.serial) : null,
    audit: await app.auditRecords(),
  };
}

const send = (method: string, t: Target, path: string, token: string | undefined): Promise<ApiReply> => app.call(method, path, { token, json: method === 'POST' ? (t.body ?? {}) : undefined });

describe('the OpenAPI document lists every route of the admin router', () => {
  it('router routes == documented routes', () => {
    const served = (app.router.stack as { route?: { path: string; methods: Record<string, boolean> } }[])
      .filter((l) => l.route)
      .flatMap((l) => Object.keys(l.route!.methods).map((m) => `${m.toUpperCase()} ${l.route!.path.replace(/:(\w+)/g, '{$1}')}`));
    expect([...new Set(served)].sort()).toEqual([...DOCUMENTED].sort());
  });

  it('every documented route has a row in the matrix, and every row a documented route', () => {
    expect(Object.keys(MATRIX).sort()).toEqual([...DOCUMENTED].sort());
  });
});

type Send = (method: string, t: Target, path: string, caller: Caller) => Promise<ApiReply>;

/** cells: one test per variant x caller; a refusal is JSON, changes nothing, and a 404 reads like an unknown id's. */
function cells(route: string, variants: Variant[], sendAs: Send): void {
  const [method] = route.split(' ');
  it('has an expectation for every caller', () => {
    expect(variants.length).toBeGreaterThan(0);
  });
  const all = variants.flatMap((v) => CALLERS.map((c, i) => [v.name, c, v.expect[i], v] as const));
  if (!all.length) return;
  it.each(all)('%s, %s: %d', async (_name, caller, status, v) => {
    const t = await v.target(app);
    const before = await snapshot(t);
    const r = await sendAs(method, t, t.path, caller);
    expect({ caller, status: r.status, body: r.status === status ? undefined : r.text }).toEqual({ caller, status, body: undefined });
    expect(r.headers.get('content-type')).toMatch(/^application\/json/);
    if (status < 400) return;
    expect(r.json.error).toEqual({ code: expect.any(String), message: expect.any(String) });
    if (status === 401) expect(r.headers.get('www-authenticate')).toMatch(/^Bearer realm=/);
    expect(await snapshot(t)).toEqual(before);
    if (status === 404 && t.subject && t.unknown) {
      const u = await sendAs(method, t, t.path.replace(t.subject, t.unknown), caller);
      expect({ status: u.status, text: u.text.split(t.unknown).join('X') }).toEqual({ status: 404, text: r.text.split(t.subject).join('X') });
    }
  });
}

describe.each(DOCUMENTED)('%s', (route) => cells(route, MATRIX[route] ?? [], (method, t, path, caller) => send(method, t, path, tokenOf(caller))));

/**
 * The console (/console/api) with session cookies: every admin route again through the console's mount,
 * with the same expectations (a session is worth exactly its token; `revoked` signed in and then had its
 * token revoked, `bad` is a session id that never existed), plus the console's own routes. POSTs carry the
 * session's CSRF token; without it every POST is 403 and changes nothing.
 */
describe('the console: the same matrix with session cookies', () => {
  type Session = { id: string; csrf: string } | undefined;
  const sessions = {} as Record<Caller, Session>;
  const signIn = async (token: string): Promise<Session> => {
    const s = await app.sessions.signIn(token);
    return { id: s.sessionId, csrf: s.csrf };
  };
  beforeAll(async () => {
    sessions.operator = await signIn(app.tokens.operator);
    sessions.owner = await signIn(app.tokens.acme);
    sessions.newOwner = await signIn(app.tokens.bravo);
    sessions.other = await signIn(app.tokens.globex);
    sessions.none = undefined;
    const doomed = await app.access.createToken('operator', 'revoked after sign-in', 'test');
    sessions.revoked = await signIn(doomed.token);
    await app.access.revokeToken(doomed.record.id, 'test');
    // a well-formed session id that was never signed in, with the CSRF token that would go with it
    const never = 'dcs_' + crypto.randomBytes(32).toString('base64url');
    sessions.bad = { id: never, csrf: csrfOf(never) };
  });
  const consoleSend =
    (prefix: string, o: { csrf?: boolean; fresh?: boolean } = {}): Send =>
    async (method, t, path, caller) => {
      // sign-out ends the session it is sent with: each such cell signs in anew
      const s = o.fresh && caller !== 'none' && caller !== 'bad' && caller !== 'revoked' ? await signIn(tokenOf(caller)!) : sessions[caller];
      return app.consoleCall(method, prefix + path, { session: s?.id, csrf: o.csrf === false ? undefined : s?.csrf, json: method === 'POST' ? (t.body ?? {}) : undefined });
    };

  describe.each(DOCUMENTED)('/console/api/v1 %s', (route) => cells(route, MATRIX[route] ?? [], consoleSend('/v1')));

  /** CONSOLE_MATRIX: the console's own routes, `METHOD /path` under /console, [operator, owner, newOwner, other, none, revoked, bad] */
  const CONSOLE_MATRIX: Record<string, Variant[]> = {
    'GET /api/session': [{ name: 'session', target: async () => ({ path: '/session' }), expect: [200, 200, 200, 200, ...ANON] }],
    'POST /api/session/sign-out': [{ name: 'sign out', target: async () => ({ path: '/session/sign-out' }), expect: [200, 200, 200, 200, ...ANON] }],
    // a session (of any scope) never stands in for the TLS client certificate: without one, 401 for all
    'POST /api/session/certificate': [{ name: 'certificate sign-in without a certificate', target: async () => ({ path: '/session/certificate' }), expect: [401, 401, 401, 401, ...ANON] }],
    'GET /api/overview': [{ name: 'overview', target: async () => ({ path: '/overview' }), expect: [200, 200, 200, 200, ...ANON] }],
    // the charts count the whole fleet: operators only (ConsoleOverview.operatorOnly)
    'GET /api/overview/enrollments': [{ name: 'enrollments per hour', target: async () => ({ path: '/overview/enrollments' }), expect: [200, 403, 403, 403, ...ANON] }],
    'GET /api/overview/expiring': [{ name: 'expiring per day', target: async () => ({ path: '/overview/expiring' }), expect: [200, 403, 403, 403, ...ANON] }],
    'GET /api/devices/:id/audit': [
      { name: 'active device', target: onDevice('active', '/audit'), expect: [200, 200, 404, 404, ...ANON] },
      { name: 'transferring device', target: onDevice('transferring', '/audit'), expect: [200, 200, 403, 404, ...ANON] },
    ],
  };

  it('every route of the console router is in the console matrix (sign-in is tested on its own)', () => {
    const served = (app.consoleRouter.stack as { route?: { path: unknown; methods: Record<string, boolean> } }[])
      .filter((l) => l.route && typeof l.route.path === 'string')
      .flatMap((l) => Object.keys(l.route!.methods).map((m) => `${m.toUpperCase()} ${l.route!.path as string}`))
      .filter((r) => r !== 'POST /api/session');
    expect([...new Set(served)].sort()).toEqual(Object.keys(CONSOLE_MATRIX).sort());
  });

  describe.each(Object.keys(CONSOLE_MATRIX))('/console %s', (route) => {
    const fresh = route === 'POST /api/session/sign-out';
    cells(route, CONSOLE_MATRIX[route], consoleSend('', { fresh }));
  });

  const POSTS = [...DOCUMENTED.filter((r) => r.startsWith('POST ')).map((r) => ['/v1', r] as const), ['', 'POST /api/session/sign-out'] as const];
  it.each(POSTS)('without the CSRF token: %s%s is 403 for every signed-in caller, and changes nothing', async (prefix, route) => {
    const variants = MATRIX[route] ?? CONSOLE_MATRIX[route];
    for (const v of variants) {
      for (const caller of ['operator', 'owner', 'newOwner', 'other'] as const) {
        const t = await v.target(app);
        const before = await snapshot(t);
        const r = await consoleSend(prefix, { csrf: false })('POST', t, t.path, caller);
        expect({ route, caller, status: r.status, error: r.json?.error?.message }).toEqual({ route, caller, status: 403, error: 'missing or wrong X-CSRF-Token header' });
        expect(await snapshot(t)).toEqual(before);
      }
    }
  });
});
