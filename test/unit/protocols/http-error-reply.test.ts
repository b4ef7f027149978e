import express, { Request, Response, Router } from 'express';
import * as http from 'node:http';
import { AddressInfo } from 'node:net';
import pino from 'pino';
import { Registry } from 'prom-client';
import { CrlPublisher } from '../../../src/ca/crl-publisher';
import { DeviceCaError, ErrorCode } from '../../../src/errors/device-ca-error';
import { HttpObservability } from '../../../src/http/request-context';
import { adminRouter } from '../../../src/protocols/admin/admin-router';
import { crlRouter } from '../../../src/protocols/crl/crl-router';
import { estRouter } from '../../../src/protocols/est/est-router';
import { DEFAULT_RETRY_AFTER_SECONDS, HttpErrorReplyOptions, sendHttpError } from '../../../src/protocols/http-error-reply';
import { HTTP_ERROR_STATUS } from '../../../src/protocols/http-error-status';
import { AdminAccess } from '../../../src/ra/admin-access';
import { AuditBrowser } from '../../../src/ra/audit-browser';
import { DeviceLifecycle } from '../../../src/ra/device-lifecycle';
import { RegistrationAuthority } from '../../../src/ra/registration-authority';

/**
 * sendHttpError is the one error reply of EST, the admin API and CRLs. Each case runs a real HTTP request
 * through the access-log middleware, as the service does, and checks what a client receives (status,
 * headers, body) and what the operator's log holds (the detail, under the same request id).
 */

const SECRET = 'token-slot-3 pin=1234 /var/lib/device-ca/keys';

interface Served {
  url: string;
  logs: Record<string, unknown>[];
  close(): Promise<void>;
}

/** serve: an express app with HttpObservability (request ids, access log into `logs`) and the given mounts */
async function serve(mount: (app: express.Express) => void): Promise<Served> {
  const logs: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) });
  const app = express();
  app.use(new HttpObservability('https', new Registry(), log).middleware());
  mount(app);
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    logs,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

interface Got {
  status: number;
  headers: Headers;
  text: string;
}

async function get(url: string, init: RequestInit = {}): Promise<Got> {
  const r = await fetch(url, init);
  return { status: r.status, headers: r.headers, text: await r.text() };
}

/** logOf: the access log line of a request (bounded wait), written on 'finish', just after the client has the reply */
async function logOf(s: Served, reqId: string): Promise<Record<string, unknown>> {
  for (const end = Date.now() + 10_000; Date.now() < end;) {
    const line = s.logs.find((l) => l.reqId === reqId);
    if (line) return line;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`no access log line for request ${reqId}`);
}

const CODES = Object.keys(HTTP_ERROR_STATUS) as ErrorCode[];

describe('sendHttpError: every error code', () => {
  let s: Served;
  const text: HttpErrorReplyOptions = { format: 'text', challenge: 'Basic realm="test", charset="UTF-8"' };
  const json: HttpErrorReplyOptions = { format: 'json', challenge: 'Bearer realm="test admin"' };
  beforeAll(async () => {
    s = await serve((app) => {
      app.get('/:format/:code', (req: Request, res: Response) => {
        const code = req.params.code as ErrorCode;
        const retry = req.query.retry === undefined ? undefined : Number(req.query.retry);
        sendHttpError(res, new DeviceCaError(code, `message for ${code}`, { detail: SECRET, retryAfterSeconds: retry }), req.params.format === 'json' ? json : text);
      });
      app.get('/thrown', (_req: Request, res: Response) => sendHttpError(res, new TypeError(`Cannot read properties of undefined (${SECRET})`), text));
    });
  });
  afterAll(() => s.close());

  it.each(CODES)('%s: the status of the one table; 4xx tells the message, 5xx only the kind and the request id', async (code) => {
    const status = HTTP_ERROR_STATUS[code];
    for (const format of ['text', 'json'] as const) {
      const r = await get(`${s.url}/${format}/${code}`);
      const id = r.headers.get('x-request-id')!;
      expect(id).toMatch(/^[0-9a-f-]{36}$/);
      expect(r.status).toBe(status);
      expect(r.headers.get('content-length')).toBe(String(Buffer.byteLength(r.text)));
      expect(r.text).not.toContain(SECRET);
      expect(r.text).not.toContain('token-slot');
      if (format === 'text') {
        expect(r.headers.get('content-type')).toBe('text/plain; charset=utf-8');
        if (status < 500) expect(r.text).toBe(`message for ${code}\n`);
        else expect(r.text).toBe(`${status === 503 ? 'service unavailable' : status === 501 ? 'not implemented' : 'internal error'}, request id ${id}\n`);
      } else {
        expect(r.headers.get('content-type')).toBe('application/json; charset=utf-8');
        const body = JSON.parse(r.text) as { error: { code: string; message: string; requestId: string } };
        expect(body.error.code).toBe(code);
        expect(body.error.requestId).toBe(id);
        expect(body.error.message).toBe(status < 500 ? `message for ${code}` : status === 503 ? 'service unavailable' : status === 501 ? 'not implemented' : 'internal error');
      }
      // WWW-Authenticate on 401 only, in the scheme of the protocol
      expect(r.headers.get('www-authenticate')).toBe(status === 401 ? (format === 'text' ? text.challenge : json.challenge) : null);
      // Retry-After on every 429 and 503, and nowhere else
      expect(r.headers.get('retry-after')).toBe(status === 429 || status === 503 ? String(DEFAULT_RETRY_AFTER_SECONDS) : null);
      // the operator's log: the code always; a failure of ours (500, 503) at error level with its detail
      const line = await logOf(s, id);
      expect(line.code).toBe(code);
      if (status >= 500 && status !== 501) {
        expect(line.level).toBe(50);
        expect((line.err as { detail: string }).detail).toBe(SECRET);
      } else {
        expect(line.level).toBe(30);
        expect(JSON.stringify(line)).not.toContain(SECRET);
      }
    }
  });

  it("Retry-After is the error's own delay when it names one (rounded up to whole seconds)", async () => {
    expect((await get(`${s.url}/text/rate-limited?retry=899.2`)).headers.get('retry-after')).toBe('900');
    expect((await get(`${s.url}/json/key-backend?retry=5`)).headers.get('retry-after')).toBe('5');
  });

  it('anything thrown that is not a DeviceCaError is a 500 whose message stays in the log', async () => {
    const r = await get(`${s.url}/thrown`);
    const id = r.headers.get('x-request-id')!;
    expect(r.status).toBe(500);
    expect(r.text).toBe(`internal error, request id ${id}\n`);
    const line = await logOf(s, id);
    expect(line.msg).toBe('request failed');
    expect((line.err as { detail: string }).detail).toContain(SECRET);
  });

  it('quotes the request id the client sent (X-Request-Id), so its report finds the log line', async () => {
    const r = await get(`${s.url}/text/internal`, { headers: { 'X-Request-Id': 'device-42.boot-7' } });
    expect(r.text).toBe('internal error, request id device-42.boot-7\n');
    expect((await logOf(s, 'device-42.boot-7')).status).toBe(500);
  });
});

describe('the routers answer errors through sendHttpError', () => {
  let s: Served;
  let estFailure: unknown;
  let adminFailure: unknown;
  let crlFailure: unknown;

  beforeAll(async () => {
    const ra = {
      profileForLabel: (name: string) => {
        if (name !== 'default') throw new DeviceCaError('not-found', `unknown EST label "${name}"`);
        return 'default';
      },
      enroll: async () => {
        throw estFailure;
      },
      csrAttrs: () => Buffer.from([0x30, 0x00]),
    } as unknown as RegistrationAuthority;
    const access = {
      authenticate: async () => {
        throw adminFailure;
      },
    } as unknown as AdminAccess;
    const publisher = {
      caName: 'issuing',
      current: async () => {
        throw crlFailure;
      },
    } as unknown as CrlPublisher;
    s = await serve((app) => {
      app.use('/.well-known/est', estRouter({ ra, caCerts: [], bodyLimit: 4096 }));
      app.use('/api/v1', adminRouter({ access, lifecycle: {} as DeviceLifecycle, ra, audit: {} as AuditBrowser, bodyLimit: 4096 }));
      app.use('/crl', crlRouter([publisher], 60) as Router);
    });
  });
  afterAll(() => s.close());

  const enroll = (auth?: string) =>
    get(`${s.url}/.well-known/est/simpleenroll`, { method: 'POST', headers: { 'Content-Type': 'application/pkcs10', ...(auth ? { Authorization: auth } : {}) }, body: 'MAA=\n' });

  it('EST: 401 asks for Basic, 429 and 503 carry Retry-After, 500 hides its detail, unknown label 404', async () => {
    estFailure = new DeviceCaError('unauthenticated', 'authentication failed');
    const u = await enroll();
    expect(u.status).toBe(401);
    expect(u.headers.get('www-authenticate')).toBe('Basic realm="device-ca EST", charset="UTF-8"');
    expect(u.text).toBe('authentication failed\n');

    estFailure = new DeviceCaError('rate-limited', 'too many failed authentications', { retryAfterSeconds: 600 });
    const l = await enroll('Basic ZDE6eA==');
    expect([l.status, l.headers.get('retry-after')]).toEqual([429, '600']);

    estFailure = new DeviceCaError('key-backend', 'signing key unavailable', { detail: SECRET });
    const k = await enroll('Basic ZDE6eA==');
    expect([k.status, k.headers.get('retry-after')]).toEqual([503, String(DEFAULT_RETRY_AFTER_SECONDS)]);
    expect(k.text).toBe(`service unavailable, request id ${k.headers.get('x-request-id')}\n`);

    estFailure = new Error(SECRET);
    const i = await enroll('Basic ZDE6eA==');
    expect(i.status).toBe(500);
    expect(i.text).not.toContain(SECRET);
    expect(((await logOf(s, i.headers.get('x-request-id')!)).err as { detail: string }).detail).toBe(SECRET);

    const n = await get(`${s.url}/.well-known/est/nolabel/cacerts`);
    expect([n.status, n.text]).toEqual([404, 'unknown EST label "nolabel"\n']);
    const op = await get(`${s.url}/.well-known/est/nosuchop`);
    expect([op.status, op.text]).toEqual([404, 'unknown EST operation or label\n']);
  });

  it('admin API: 401 asks for a Bearer token, errors are JSON with the request id, 5xx without detail', async () => {
    adminFailure = new DeviceCaError('unauthenticated', 'a valid bearer token or operator certificate is required');
    const u = await get(`${s.url}/api/v1/devices`);
    expect(u.status).toBe(401);
    expect(u.headers.get('www-authenticate')).toBe('Bearer realm="device-ca admin"');
    expect(JSON.parse(u.text)).toEqual({ error: { code: 'unauthenticated', message: 'a valid bearer token or operator certificate is required', requestId: u.headers.get('x-request-id') } });

    adminFailure = new Error(SECRET);
    const i = await get(`${s.url}/api/v1/devices`);
    expect(i.status).toBe(500);
    expect(JSON.parse(i.text)).toEqual({ error: { code: 'internal', message: 'internal error', requestId: i.headers.get('x-request-id') } });

    const n = await get(`${s.url}/api/v1/no/such/path`);
    expect(n.status).toBe(404);
    expect((JSON.parse(n.text) as { error: { code: string } }).error.code).toBe('not-found');
  });

  it('CRL: an unknown CA or shard is 404; a CRL that cannot be produced is a 5xx with no detail, logged', async () => {
    expect((await get(`${s.url}/crl/other/0.crl`)).status).toBe(404);
    crlFailure = new DeviceCaError('not-found', 'no CRL shard 99');
    const sh = await get(`${s.url}/crl/issuing/99.crl`);
    expect([sh.status, sh.text]).toEqual([404, 'no CRL shard 99\n']);

    crlFailure = new DeviceCaError('key-backend', 'signing key unavailable', { detail: SECRET });
    const k = await get(`${s.url}/crl/issuing/0.crl`);
    expect([k.status, k.headers.get('retry-after')]).toEqual([503, String(DEFAULT_RETRY_AFTER_SECONDS)]);
    expect(k.text).not.toContain(SECRET);

    crlFailure = new Error(SECRET);
    const i = await get(`${s.url}/crl/issuing/0.crl`);
    const id = i.headers.get('x-request-id')!;
    expect([i.status, i.text]).toEqual([500, `internal error, request id ${id}\n`]);
    expect(((await logOf(s, id)).err as { detail: string }).detail).toBe(SECRET);
  });
});
