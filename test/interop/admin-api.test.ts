import Database from 'better-sqlite3';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Reply, header, must, openssl, opensslAny, pkiClient } from '../helpers/pki-client';
import { RunningService, assertBuilt, startService } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * The admin API (/api/v1) with curl, as an operator's script or an owner's portal would use it: tokens from
 * `device-ca tokens create`, every lifecycle operation, what an owner-scoped token may see and do (another
 * owner's devices are 404), the 401/400 replies, and that every change lands in the audit log. The effect of
 * a revocation is checked where relying parties look: `openssl ocsp` against the responder in the certificate.
 */

let svc: RunningService;
let tmp: TmpDir;
let issuingPem: string;
let api: string;

// ------------------------------------------------------------------------------------------- helpers

const { next, curl, cli, teardown } = pkiClient({ svc: () => svc, tmp: () => tmp, textEncoding: 'utf8' });

interface ApiReply extends Reply {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed JSON; each test reads the shape its route documents
  json: any;
}

/** call: one admin API request with curl; a JSON body unless raw is given; JSON reply parsed */
async function call(method: 'GET' | 'POST', p: string, o: { token?: string | null; json?: unknown; raw?: string; contentType?: string; authorization?: string } = {}): Promise<ApiReply> {
  const args = ['-X', method];
  if (o.token) args.push('-H', `Authorization: Bearer ${o.token}`);
  if (o.authorization) args.push('-H', `Authorization: ${o.authorization}`);
  const body = o.raw ?? (o.json === undefined ? undefined : JSON.stringify(o.json));
  if (body !== undefined) {
    args.push('-H', `Content-Type: ${o.contentType ?? 'application/json'}`, '--data-binary', `@${tmp.write(`api/${next()}.json`, body)}`);
  }
  const r = await curl(`${api}${p}`, args);
  let json: unknown;
  if (/^application\/json/.test(header(r, 'content-type') ?? '')) json = JSON.parse(r.text);
  return { ...r, json };
}

/** auditCount: `device-ca audit verify --json`; the chain must be intact every time it is asked */
async function auditCount(): Promise<number> {
  const r = await cli('audit', 'verify', '--json');
  expect(r.code).toBe(0);
  const v = JSON.parse(r.stdout) as { ok: boolean; records: number };
  expect(v.ok).toBe(true);
  return v.records;
}

type AuditRow = { seq: number; type: string; actor: string; subject: string; data: Record<string, unknown> };

/**
 * auditSince: the audit records after sequence number `after`, read from the store file (WAL: a reader
 * beside the running service), without the service's own crl.published records, which follow status
 * changes asynchronously.
 */
function auditSince(after: number): AuditRow[] {
  const db = new Database(path.join(svc.dataDir, 'device-ca.sqlite'), { readonly: true, fileMustExist: true });
  try {
    const rows = db.prepare("SELECT seq, type, actor, subject, data FROM audit WHERE seq > ? AND type <> 'crl.published' ORDER BY seq").all(after) as (Omit<AuditRow, 'data'> & { data: string })[];
    return rows.map((r) => ({ ...r, data: JSON.parse(r.data) as Record<string, unknown> }));
  } finally {
    db.close();
  }
}

/** expectAudited: the change made since `before` appears in the audit log as exactly one record of this shape */
async function expectAudited(before: number, shape: Partial<AuditRow> & { data?: Record<string, unknown> }): Promise<number> {
  const now = await auditCount();
  expect(now).toBeGreaterThan(before);
  expect(auditSince(before)).toEqual([expect.objectContaining({ ...shape, ...(shape.data ? { data: expect.objectContaining(shape.data) } : {}) })]);
  return now;
}

/** expectNotAudited: a refused change added no record (apart from CRL publications) */
async function expectNotAudited(before: number): Promise<void> {
  expect(await auditCount()).toBeGreaterThanOrEqual(before);
  expect(auditSince(before)).toEqual([]);
}

/** enrollOverEst: the README recipe with the one-time secret the API returned; the certificate file */
async function enrollOverEst(id: string, secret: string): Promise<{ crt: string; serial: string }> {
  const key = tmp.file(`keys/${id}.key`);
  const csr = tmp.file(`csr/${id}.der`);
  await openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-subj', `/CN=${id}`, '-outform', 'DER', '-out', csr);
  const b64 = tmp.write(`csr/${id}.b64`, (await must('base64', [csr])).stdout);
  const r = await curl(`${svc.est}/simpleenroll`, ['-u', `${id}:${secret}`, '-H', 'Content-Type: application/pkcs10', '--data-binary', `@${b64}`]);
  if (r.status !== 200) throw new Error(`enroll ${id}: ${r.status} ${r.text}`);
  const p7 = tmp.write(`p7/${id}.der`, (await must('base64', ['-d'], r.body)).stdoutBytes);
  const crt = tmp.file(`certs/${id}.crt`);
  await openssl('pkcs7', '-inform', 'DER', '-in', p7, '-print_certs', '-out', crt);
  const serial = (await openssl('x509', '-in', crt, '-noout', '-serial')).stdout
    .trim()
    .replace(/^serial=/, '')
    .toLowerCase();
  return { crt, serial };
}

/** ocspStatus: `openssl ocsp` against the URL in the certificate; "good" or "revoked (<reason>)" */
async function ocspStatus(crt: string): Promise<string> {
  const url = (await openssl('x509', '-in', crt, '-noout', '-ocsp_uri')).stdout.trim();
  const { out } = await opensslAny('ocsp', '-issuer', issuingPem, '-cert', crt, '-url', url, '-CAfile', svc.chainPem);
  expect(out).toContain('Response verify OK');
  const status = new RegExp(`${crt.replace(/[.]/g, '\\.')}: (\\w+)`).exec(out)![1];
  const reason = /\n\s*Reason: (\S+)/.exec(out)?.[1];
  return reason ? `${status} (${reason})` : status;
}

const TOKEN = /^dca_[A-Za-z0-9_-]{43}\n$/;
let operator: string;
let acme: string;
let acmeTokenId: string;

/** devices registered in beforeAll: id -> one-time secret */
const secrets = new Map<string, string>();
const certs = new Map<string, { crt: string; serial: string }>();

beforeAll(async () => {
  assertBuilt();
  tmp = makeTmpDir('device-ca-admin-');
  svc = await startService();
  issuingPem = path.join(svc.dataDir, 'ca', 'device-ca-issuing.pem');
  api = `https://localhost:${svc.httpsPort}/api/v1`;
  const [op, own] = await Promise.all([cli('tokens', 'create', '--scope', 'operator'), cli('tokens', 'create', '--scope', 'owner:acme', '--json')]);
  expect(op.code).toBe(0);
  operator = op.stdout.trim();
  const j = JSON.parse(own.stdout) as { id: string; scope: string; token: string };
  acme = j.token;
  acmeTokenId = j.id;
  // two devices of acme and one of globex, each enrolled over EST
  for (const [id, owner] of [
    ['acme-1', 'acme'],
    ['acme-2', 'acme'],
    ['globex-1', 'globex'],
  ]) {
    const r = await call('POST', '/devices', { token: operator, json: { id, owner } });
    expect(r.status).toBe(201);
    secrets.set(id, r.json.secret);
  }
  await Promise.all([...secrets].map(async ([id, s]) => certs.set(id, await enrollOverEst(id, s))));
}, 60_000);

afterAll(teardown);

// -------------------------------------------------------------------------------------------- tests

describe('tokens', () => {
  it('`tokens create --scope operator` and `--scope owner:<name>` print the token alone', async () => {
    expect(`${operator}\n`).toMatch(TOKEN);
    const r = await cli('tokens', 'create', '--scope', 'owner:globex');
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    expect(r.stdout).toMatch(TOKEN);
    expect(acme).toMatch(/^dca_/);
  });

  it('a scope that is neither operator nor owner:<name> is refused', async () => {
    const r = await cli('tokens', 'create', '--scope', 'admin');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/scope must be "operator" or "owner:<name>"/);
  });
});

describe('the OpenAPI document', () => {
  it('GET /api/v1/openapi.json: OpenAPI 3.x JSON describing every path', async () => {
    const r = await call('GET', '/openapi.json');
    expect(r.status).toBe(200);
    expect(header(r, 'content-type')).toMatch(/^application\/json/);
    expect(r.json.openapi).toMatch(/^3\.\d+\.\d+$/);
    expect(Object.keys(r.json.paths).sort()).toEqual(
      [
        '/openapi.json',
        '/devices',
        '/devices/{id}',
        '/devices/{id}/release',
        '/devices/{id}/claim',
        '/devices/{id}/cancel-release',
        '/devices/{id}/suspend',
        '/devices/{id}/resume',
        '/devices/{id}/retire',
        '/devices/{id}/transfer',
        '/devices/{id}/secret',
        '/devices/{id}/commands',
        '/certificates',
        '/certificates/{serial}',
        '/certificates/{serial}/revoke',
        '/requests',
        '/requests/{id}/approve',
        '/requests/{id}/reject',
        '/audit',
        '/audit/verify',
        '/firmware/{name}/status',
      ].sort(),
    );
    expect(Object.keys(r.json.paths['/devices'])).toEqual(['get', 'post']);
    expect(r.json.components.securitySchemes.bearer).toEqual({ type: 'http', scheme: 'bearer' });
  });
});

describe('operator token', () => {
  it('lists devices, and filters by owner and state', async () => {
    const all = await call('GET', '/devices', { token: operator });
    expect(all.status).toBe(200);
    expect(all.json.items.map((d: { id: string }) => d.id)).toEqual(expect.arrayContaining(['acme-1', 'acme-2', 'globex-1']));
    const globex = await call('GET', '/devices?owner=globex', { token: operator });
    expect(globex.json.items.map((d: { id: string }) => d.id)).toEqual(['globex-1']);
    const active = await call('GET', '/devices?state=active', { token: operator });
    expect(active.json.items.every((d: { state: string }) => d.state === 'active')).toBe(true);
    const bad = await call('GET', '/devices?state=sleeping', { token: operator });
    expect(bad.status).toBe(400);
    expect(bad.json.error.code).toBe('bad-request');
  });

  it('pages lists explicitly: { items, next }, and following next as ?after= sees every device once', async () => {
    const all = await call('GET', '/devices', { token: operator });
    expect(all.json.next).toBeNull();
    const seen: string[] = [];
    let after: string | null = null;
    for (let pages = 0; ; pages++) {
      const r: ApiReply = await call('GET', `/devices?limit=1${after === null ? '' : `&after=${encodeURIComponent(after)}`}`, { token: operator });
      expect(r.status).toBe(200);
      expect(r.json.items.length).toBeLessThanOrEqual(1);
      seen.push(...r.json.items.map((d: { id: string }) => d.id));
      after = r.json.next;
      if (after === null) break;
      expect(pages).toBeLessThan(1000);
    }
    expect(seen).toEqual(all.json.items.map((d: { id: string }) => d.id));
    expect(seen.length).toBeGreaterThan(1);
    const certsPage = await call('GET', '/certificates?limit=1', { token: operator });
    expect(certsPage.json.items).toHaveLength(1);
    expect(typeof certsPage.json.next).toBe('string');
    const requests = await call('GET', '/requests?limit=1000', { token: operator });
    expect(requests.json).toMatchObject({ items: expect.any(Array), next: null });
    expect((await call('GET', '/requests?status=lost', { token: operator })).status).toBe(400);
  });

  it('shows a device with its certificates, and one certificate with its PEM', async () => {
    const d = await call('GET', '/devices/acme-1', { token: operator });
    expect(d.status).toBe(200);
    expect(d.json).toMatchObject({ id: 'acme-1', owner: 'acme', state: 'active' });
    expect(d.json.certificates.map((c: { serial: string }) => c.serial)).toEqual([certs.get('acme-1')!.serial]);
    const c = await call('GET', `/certificates/${certs.get('acme-1')!.serial}`, { token: operator });
    expect(c.status).toBe(200);
    expect(c.json).toMatchObject({ serial: certs.get('acme-1')!.serial, deviceId: 'acme-1', status: 'valid', subject: 'O=acme, CN=acme-1' });
    expect(c.json.pem).toBe(/-----BEGIN CERTIFICATE-----\n[\s\S]+?\n-----END CERTIFICATE-----\n/.exec(fs.readFileSync(certs.get('acme-1')!.crt, 'utf8'))![0]);
    const list = await call('GET', '/certificates?device=acme-1', { token: operator });
    expect(list.json.items.map((x: { serial: string }) => x.serial)).toEqual([certs.get('acme-1')!.serial]);
  });

  it('registers a device (201 with a one-time secret) that then enrolls over EST; the audit log grows by one', async () => {
    const before = await auditCount();
    const r = await call('POST', '/devices', { token: operator, json: { id: 'api-new', owner: 'acme', secretTtl: '1h' } });
    expect(r.status).toBe(201);
    expect(r.json.device).toMatchObject({ id: 'api-new', owner: 'acme', state: 'registered' });
    expect(r.json.secret).toMatch(/^[A-Za-z0-9_-]{20,}$/);
    expect(new Date(r.json.secretExpiresAt).getTime() - Date.now()).toBeLessThanOrEqual(3600_000);
    await expectAudited(before, { type: 'device.registered', subject: 'api-new', actor: expect.stringMatching(/^token:[0-9a-f]{16}$/) });
    const issued = await enrollOverEst('api-new', r.json.secret);
    expect(await ocspStatus(issued.crt)).toBe('good');
    const dup = await call('POST', '/devices', { token: operator, json: { id: 'api-new' } });
    expect(dup.status).toBe(409);
  });

  it('suspend, resume, transfer and retire: each answered with the certificates it changed, visible in OCSP, one audit record each', async () => {
    const { crt, serial } = certs.get('acme-2')!;
    let count = await auditCount();
    const step = async (p: string, type: string, json?: unknown) => {
      const r = await call('POST', p, { token: operator, json });
      expect(r.status).toBe(200);
      count = await expectAudited(count, { type, subject: 'acme-2', actor: expect.stringMatching(/^token:/), ...(json ? { data: { from: 'acme', to: 'initech' } } : {}) });
      return r.json;
    };
    const s = await step('/devices/acme-2/suspend', 'device.suspended');
    expect(s.device.state).toBe('suspended');
    expect(s.certificates).toEqual([expect.objectContaining({ serial, status: 'revoked', reason: 'certificateHold' })]);
    expect(await ocspStatus(crt)).toBe('revoked (certificateHold)');

    const r = await step('/devices/acme-2/resume', 'device.resumed');
    expect(r.device.state).toBe('active');
    expect(r.certificates).toEqual([expect.objectContaining({ serial, status: 'valid', reason: null })]);
    expect(await ocspStatus(crt)).toBe('good');

    const t = await step('/devices/acme-2/transfer', 'device.transferred', { to: 'initech' });
    expect(t.device).toMatchObject({ owner: 'initech', state: 'registered' });
    expect(t.secret).toMatch(/^[A-Za-z0-9_-]{20,}$/);
    expect(await ocspStatus(crt)).toBe('revoked (affiliationChanged)');

    const fresh = await enrollOverEst('acme-2', t.secret);
    const subject = (await openssl('x509', '-in', fresh.crt, '-noout', '-subject', '-nameopt', 'RFC2253')).stdout.trim();
    expect(subject).toBe('subject=CN=acme-2,O=initech');
    count = await auditCount();

    const x = await step('/devices/acme-2/retire', 'device.retired');
    expect(x.device.state).toBe('retired');
    expect(x.certificates).toEqual([expect.objectContaining({ serial: fresh.serial, reason: 'cessationOfOperation' })]);
    expect(await ocspStatus(fresh.crt)).toBe('revoked (cessationOfOperation)');

    // a refused change: 409 with a JSON error, and no audit record
    const again = await call('POST', '/devices/acme-2/retire', { token: operator });
    expect(again.status).toBe(409);
    expect(again.json.error).toEqual({ code: 'conflict', message: 'device acme-2 is retired', requestId: header(again, 'x-request-id') });
    const resume = await call('POST', '/devices/acme-2/resume', { token: operator });
    expect(resume.status).toBe(409);
    await expectNotAudited(count);
  });

  it('transfer without a new owner is 400', async () => {
    const r = await call('POST', '/devices/acme-1/transfer', { token: operator, json: {} });
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe('bad-request');
  });

  it('revokes a certificate (keyCompromise): OCSP says revoked; again is idempotent (changed false, no audit record)', async () => {
    const { crt, serial } = certs.get('globex-1')!;
    const before = await auditCount();
    const r = await call('POST', `/certificates/${serial}/revoke`, { token: operator, json: { reason: 'keyCompromise' } });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ changed: true, certificate: { serial, status: 'revoked', revocationReason: 'keyCompromise' } });
    expect(r.json.certificate.pem).toBeUndefined();
    expect(await ocspStatus(crt)).toBe('revoked (keyCompromise)');
    const after = await expectAudited(before, { type: 'certificate.revoked', subject: serial, data: { reason: 'keyCompromise', device: 'globex-1' } });

    const again = await call('POST', `/certificates/${serial.toUpperCase()}/revoke`, { token: operator, json: { reason: 'superseded' } });
    expect(again.status).toBe(200);
    expect(again.json).toMatchObject({ changed: false, certificate: { revocationReason: 'keyCompromise' } });
    await expectNotAudited(after);

    const listed = await call('GET', '/certificates?status=revoked', { token: operator });
    expect(listed.json.items.map((c: { serial: string }) => c.serial)).toContain(serial);
  });

  it('an unknown reason is 400, an unknown device or serial 404, an unknown path 404 (all JSON)', async () => {
    const reason = await call('POST', `/certificates/${certs.get('acme-1')!.serial}/revoke`, { token: operator, json: { reason: 'stolen' } });
    expect([reason.status, reason.json.error.code]).toEqual([400, 'bad-request']);
    const device = await call('GET', '/devices/nope', { token: operator });
    expect([device.status, device.json.error.code]).toEqual([404, 'not-found']);
    const serial = await call('POST', '/certificates/0badc0ffee/revoke', { token: operator, json: {} });
    expect([serial.status, serial.json.error.code]).toEqual([404, 'not-found']);
    const p = await call('GET', '/nothing-here', { token: operator });
    expect(p.status).toBe(404);
    expect(p.json.error.code).toBe('not-found');
    expect(await ocspStatus(certs.get('acme-1')!.crt)).toBe('good');
  });
});

describe('owner-scoped token (owner:acme)', () => {
  it('sees only acme devices and certificates, whatever it asks for', async () => {
    const list = await call('GET', '/devices', { token: acme });
    expect(list.status).toBe(200);
    expect(list.json.items.length).toBeGreaterThan(0);
    expect(list.json.items.every((d: { owner: string }) => d.owner === 'acme')).toBe(true);
    expect(list.json.items.map((d: { id: string }) => d.id)).not.toContain('globex-1');
    const asked = await call('GET', '/devices?owner=globex', { token: acme });
    expect(asked.json.items.every((d: { owner: string }) => d.owner === 'acme')).toBe(true);
    const mine = new Set(list.json.items.map((d: { id: string }) => d.id));
    const c = await call('GET', '/certificates', { token: acme });
    expect(c.json.items.length).toBeGreaterThan(0);
    expect(c.json.items.filter((x: { deviceId: string }) => !mine.has(x.deviceId))).toEqual([]);
    expect(c.json.items.map((x: { serial: string }) => x.serial)).not.toContain(certs.get('globex-1')!.serial);
  });

  it("another owner's device and its certificate are 404: show, suspend, list its certificates, show and revoke the certificate; nothing changes", async () => {
    const before = await auditCount();
    const { serial } = certs.get('globex-1')!;
    const tries = await Promise.all([
      call('GET', '/devices/globex-1', { token: acme }),
      call('POST', '/devices/globex-1/suspend', { token: acme }),
      call('POST', '/devices/globex-1/retire', { token: acme }),
      call('POST', '/devices/globex-1/transfer', { token: acme, json: { to: 'acme' } }),
      call('GET', '/certificates?device=globex-1', { token: acme }),
      call('GET', `/certificates/${serial}`, { token: acme }),
      call('POST', `/certificates/${serial}/revoke`, { token: acme, json: { reason: 'superseded' } }),
    ]);
    expect(tries.map((t) => [t.status, t.json.error.code])).toEqual(tries.map(() => [404, 'not-found']));
    // the 404 says the same as for a device that does not exist at all
    const missing = await call('GET', '/devices/globex-none', { token: acme });
    expect(tries[0].json.error.message.replace('globex-1', 'X')).toBe(missing.json.error.message.replace('globex-none', 'X'));
    const d = await call('GET', '/devices/globex-1', { token: operator });
    expect(d.json.state).toBe('active');
    await expectNotAudited(before);
  });

  it('may act on its own devices: suspend and resume acme-1, audited under its token', async () => {
    const before = await auditCount();
    const s = await call('POST', '/devices/acme-1/suspend', { token: acme });
    expect(s.status).toBe(200);
    expect(await ocspStatus(certs.get('acme-1')!.crt)).toBe('revoked (certificateHold)');
    const mid = await expectAudited(before, { type: 'device.suspended', subject: 'acme-1', actor: `token:${acmeTokenId}` });
    const r = await call('POST', '/devices/acme-1/resume', { token: acme });
    expect(r.status).toBe(200);
    expect(await ocspStatus(certs.get('acme-1')!.crt)).toBe('good');
    await expectAudited(mid, { type: 'device.resumed', subject: 'acme-1', actor: `token:${acmeTokenId}` });
  });

  it('cannot transfer its device in one step (403): acme cannot hand a device to another owner, nor fill its list', async () => {
    const before = await auditCount();
    const r = await call('POST', '/devices/acme-1/transfer', { token: acme, json: { to: 'bravo' } });
    expect([r.status, r.json.error.code]).toEqual([403, 'forbidden']);
    expect(await ocspStatus(certs.get('acme-1')!.crt)).toBe('good');
    await expectNotAudited(before);
  });

  it('registers devices for its own owner only', async () => {
    const own = await call('POST', '/devices', { token: acme, json: { id: 'acme-3' } });
    expect(own.status).toBe(201);
    expect(own.json.device.owner).toBe('acme');
    const other = await call('POST', '/devices', { token: acme, json: { id: 'acme-4', owner: 'globex' } });
    expect(other.status).toBe(403);
    expect(other.json.error.code).toBe('forbidden');
    // a taken id: the same 409 for its own device and for globex's, naming no owner
    const taken = await Promise.all([call('POST', '/devices', { token: acme, json: { id: 'acme-3' } }), call('POST', '/devices', { token: acme, json: { id: 'globex-1' } })]);
    expect(taken.map((t) => [t.status, t.json.error.message])).toEqual([
      [409, 'device id acme-3 is not available'],
      [409, 'device id globex-1 is not available'],
    ]);
  });

  it('cannot see or decide the approval queue (403)', async () => {
    for (const [m, p] of [
      ['GET', '/requests'],
      ['POST', '/requests/00000000-0000-0000-0000-000000000000/approve'],
      ['POST', '/requests/x/reject'],
    ] as const) {
      const r = await call(m, p, { token: acme });
      expect([p, r.status, r.json.error.code]).toEqual([p, 403, 'forbidden']);
    }
    const op = await call('GET', '/requests', { token: operator });
    expect(op.status).toBe(200);
  });
});

describe('authentication and malformed requests', () => {
  const expect401 = (r: ApiReply) => {
    expect(r.status).toBe(401);
    expect(header(r, 'www-authenticate')).toMatch(/^Bearer realm="[^"]+"$/);
    expect(r.json.error.code).toBe('unauthenticated');
  };

  it('no token, a malformed token, an unknown token, another scheme: 401 with WWW-Authenticate: Bearer', async () => {
    expect401(await call('GET', '/devices'));
    expect401(await call('GET', '/devices', { token: 'not-a-token' }));
    expect401(await call('GET', '/devices', { token: 'dca_' + 'A'.repeat(43) }));
    expect401(await call('GET', '/devices', { authorization: `Basic ${Buffer.from('admin:admin').toString('base64')}` }));
    expect401(await call('POST', '/devices', { json: { id: 'sneaky' } }));
    expect((await call('GET', '/devices/sneaky', { token: operator })).status).toBe(404);
  });

  it('a revoked token (`tokens revoke <id>`) is 401 at once', async () => {
    const made = JSON.parse((await cli('tokens', 'create', '--scope', 'operator', '--json')).stdout) as { id: string; token: string };
    expect((await call('GET', '/devices', { token: made.token })).status).toBe(200);
    const before = await auditCount();
    const r = await cli('tokens', 'revoke', made.id);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${made.id} revoked\n`);
    await expectAudited(before, { type: 'token.revoked', subject: made.id, actor: expect.stringMatching(/^cli:/) });
    expect401(await call('GET', '/devices', { token: made.token }));
    const listed = JSON.parse((await cli('tokens', 'list', '--json')).stdout) as { id: string; revokedAt: string | null; hash?: string }[];
    expect(listed.find((t) => t.id === made.id)!.revokedAt).not.toBeNull();
    expect(listed.every((t) => t.hash === undefined)).toBe(true);
    expect((await cli('tokens', 'revoke', 'no-such-token')).code).toBe(4);
  });

  it.each([
    ['malformed JSON', { raw: '{"id": "x",' }],
    ['a JSON array', { raw: '["x"]' }],
    ['a JSON string', { raw: '"x"' }],
    ['the wrong Content-Type', { raw: '{"id":"x"}', contentType: 'text/plain' }],
    ['no id', { json: { owner: 'acme' } }],
    ['an invalid id', { json: { id: 'has space' } }],
    ['a bad secretTtl', { json: { id: 'ttl-dev', secretTtl: 'forever' } }],
  ])('POST /devices with %s: 400 and a JSON error', async (_w, o) => {
    const r = await call('POST', '/devices', { token: operator, ...o });
    expect(r.status).toBe(400);
    expect(header(r, 'content-type')).toMatch(/^application\/json/);
    expect(r.json.error.code).toBe('bad-request');
    expect(r.text).not.toMatch(/at .+\.js:\d+|node_modules|SyntaxError/);
  });

  it('a body over https.bodyLimit is 413', async () => {
    const r = await call('POST', '/devices', { token: operator, raw: JSON.stringify({ id: 'big', pad: 'x'.repeat(70_000) }) });
    expect(r.status).toBe(413);
    expect(r.json.error.code).toBe('too-large');
  });
});

describe('ownership transfer between owners: release, claim, cancel-release', () => {
  let bravo: string;
  let globex: string;
  beforeAll(async () => {
    bravo = (await cli('tokens', 'create', '--scope', 'owner:bravo')).stdout.trim();
    globex = (await cli('tokens', 'create', '--scope', 'owner:globex')).stdout.trim();
  });

  /** acmeDevice: an acme device enrolled over EST */
  async function acmeDevice(id: string): Promise<{ crt: string; serial: string }> {
    const r = await call('POST', '/devices', { token: acme, json: { id } });
    expect(r.status).toBe(201);
    return enrollOverEst(id, r.json.secret);
  }
  const ids = (r: ApiReply) => r.json.items.map((d: { id: string }) => d.id);

  it('acme releases to bravo: revoked at once (OCSP), transferring, no credential; bravo sees it but not in its list; globex gets 404; then bravo claims and the device enrolls as O=bravo', async () => {
    const { crt } = await acmeDevice('xfer-1');
    let count = await auditCount();
    const rel = await call('POST', '/devices/xfer-1/release', { token: acme, json: { to: 'bravo' } });
    expect(rel.status).toBe(200);
    expect(rel.json.device).toMatchObject({ id: 'xfer-1', owner: 'acme', state: 'transferring', pendingOwner: 'bravo' });
    expect(rel.json.secret).toBeUndefined();
    expect(await ocspStatus(crt)).toBe('revoked (affiliationChanged)');
    count = await expectAudited(count, { type: 'device.released', subject: 'xfer-1', data: { from: 'acme', to: 'bravo' } });

    // bravo's list is not filled by acme; bravo can look the device up to claim it; globex cannot
    expect(ids(await call('GET', '/devices', { token: bravo }))).not.toContain('xfer-1');
    expect(ids(await call('GET', '/devices', { token: acme }))).toContain('xfer-1');
    expect((await call('GET', '/devices/xfer-1', { token: bravo })).json).toMatchObject({ state: 'transferring', owner: 'acme', pendingOwner: 'bravo', certificates: [] });
    expect((await call('GET', '/devices/xfer-1', { token: globex })).status).toBe(404);
    expect((await call('POST', '/devices/xfer-1/claim', { token: globex })).status).toBe(404);
    // the releasing side cannot claim for bravo, bravo cannot suspend or cancel before claiming
    expect((await call('POST', '/devices/xfer-1/claim', { token: acme })).status).toBe(403);
    expect((await call('POST', '/devices/xfer-1/suspend', { token: bravo })).status).toBe(403);
    expect((await call('POST', '/devices/xfer-1/cancel-release', { token: bravo })).status).toBe(403);
    await expectNotAudited(count);

    const claim = await call('POST', '/devices/xfer-1/claim', { token: bravo, json: { secretTtl: '1h' } });
    expect(claim.status).toBe(200);
    expect(claim.json.device).toMatchObject({ owner: 'bravo', state: 'registered', pendingOwner: null });
    expect(claim.json.secret).toMatch(/^[A-Za-z0-9_-]{20,}$/);
    count = await expectAudited(count, { type: 'device.claimed', subject: 'xfer-1', data: { from: 'acme', to: 'bravo' } });
    expect((await call('GET', '/devices/xfer-1', { token: acme })).status).toBe(404);
    const fresh = await enrollOverEst('xfer-1', claim.json.secret);
    const subject = (await openssl('x509', '-in', fresh.crt, '-noout', '-subject', '-nameopt', 'RFC2253')).stdout.trim();
    expect(subject).toBe('subject=CN=xfer-1,O=bravo');
    expect(await ocspStatus(fresh.crt)).toBe('good');
  });

  it("acme cancels a release before the claim: the device stays acme's with a new secret (enrolls as O=acme); bravo can no longer claim", async () => {
    const { crt } = await acmeDevice('xfer-2');
    expect((await call('POST', '/devices/xfer-2/release', { token: acme, json: { to: 'bravo' } })).status).toBe(200);
    const before = await auditCount();
    const c = await call('POST', '/devices/xfer-2/cancel-release', { token: acme });
    expect(c.status).toBe(200);
    expect(c.json.device).toMatchObject({ owner: 'acme', state: 'registered', pendingOwner: null });
    await expectAudited(before, { type: 'device.release-cancelled', subject: 'xfer-2', data: { owner: 'acme', to: 'bravo' } });
    expect(await ocspStatus(crt)).toBe('revoked (affiliationChanged)');
    const claim = await call('POST', '/devices/xfer-2/claim', { token: bravo });
    expect([claim.status, claim.json.error.code]).toEqual([404, 'not-found']);
    const again = await enrollOverEst('xfer-2', c.json.secret);
    expect((await openssl('x509', '-in', again.crt, '-noout', '-subject', '-nameopt', 'RFC2253')).stdout.trim()).toBe('subject=CN=xfer-2,O=acme');
  });
});

describe('signed device commands: POST /devices/{id}/commands', () => {
  it('operator only: a retire command for a retired device (201, the CMS verifies with openssl against the firmware chain), shown pending in the device view; an owner token 403, an active device 403, bad bodies 400', async () => {
    const reg = await call('POST', '/devices', { token: acme, json: { id: 'cmd-1' } });
    expect(reg.status).toBe(201);
    await enrollOverEst('cmd-1', reg.json.secret);
    const active = await call('POST', '/devices/cmd-1/commands', { token: operator, json: { command: 'retire' } });
    expect([active.status, active.json.error.message]).toEqual([403, 'device cmd-1 is active: retire it first (devices retire cmd-1); the command tells its agent to delete what is left']);
    expect((await call('POST', '/devices/cmd-1/retire', { token: operator })).status).toBe(200);
    // the service never opens the root key: the firmware signer CA is made by the CLI first
    const noSignerCa = await call('POST', '/devices/cmd-1/commands', { token: operator, json: { command: 'retire' } });
    expect([noSignerCa.status, noSignerCa.json.error.message]).toEqual([
      409,
      'there is no firmware signer CA yet: it is made with the root key by the CLI (device-ca signers add, or device-ca devices command)',
    ]);
    expect((await cli('devices', 'command', 'cmd-1', '--retire', '--out', tmp.file('cmd-1-cli.der'))).code).toBe(0);
    const owner = await call('POST', '/devices/cmd-1/commands', { token: acme, json: { command: 'retire' } });
    expect([owner.status, owner.json.error.message]).toEqual([403, 'operator scope required']);
    for (const json of [{}, { command: 'wipe' }, { command: 'retire', extra: 1 }]) expect((await call('POST', '/devices/cmd-1/commands', { token: operator, json })).status).toBe(400);
    const before = await auditCount();
    const r = await call('POST', '/devices/cmd-1/commands', { token: operator, json: { command: 'retire' } });
    expect(r.status).toBe(201);
    expect(r.json).toMatchObject({ command: 'retire', device: 'cmd-1', nonce: expect.stringMatching(/^[0-9a-f]{32}$/) });
    await expectAudited(before, { type: 'device.command.issued', subject: 'cmd-1', data: { command: 'retire', nonce: r.json.nonce } });
    const der = tmp.write('cmd-1.der', Buffer.from(r.json.cms, 'base64'));
    const out = tmp.file('cmd-1.json');
    await openssl('cms', '-verify', '-inform', 'DER', '-in', der, '-CAfile', path.join(svc.dataDir, 'ca', 'firmware-chain.pem'), '-out', out);
    expect(JSON.parse(fs.readFileSync(out, 'utf8'))).toMatchObject({ command: 'retire', device: 'cmd-1', nonce: r.json.nonce });
    const shown = await call('GET', '/devices/cmd-1', { token: acme });
    expect(shown.json.command).toMatchObject({ command: 'retire', nonce: r.json.nonce, state: 'pending', fetches: 0, reportedAt: null });
  });
});
