import { NextFunction, Request, Response, Router } from 'express';
import { TLSSocket } from 'node:tls';
import { toPem } from '../../ca/pem';
import { parseDuration } from '../../config/duration';
import { DeviceCaError } from '../../errors/device-ca-error';
import { readRawBody } from '../../http/raw-body';
import { AdminAccess } from '../../ra/admin-access';
import { DeviceLifecycle, Scope } from '../../ra/device-lifecycle';
import { RegistrationAuthority } from '../../ra/registration-authority';
import { CertificateRecord, DeviceState } from '../../store/store';
import { HttpErrorReplyOptions, sendHttpError } from '../http-error-reply';
import { OPENAPI } from './openapi';

export interface AdminRouterOptions {
  access: AdminAccess;
  lifecycle: DeviceLifecycle;
  ra: RegistrationAuthority;
  bodyLimit: number;
}

type Caller = { scope: Scope; actor: string };
type Handler = (req: Request, caller: Caller, body: Record<string, unknown>) => Promise<[number, unknown]>;

/** ERROR_REPLY: JSON errors; a 401 asks for a bearer token (RFC 6750 §3), the admin API's credential */
const ERROR_REPLY: HttpErrorReplyOptions = { format: 'json', challenge: 'Bearer realm="device-ca admin"' };
const STATES: DeviceState[] = ['registered', 'active', 'suspended', 'retired'];
const certJson = ({ der, ...c }: CertificateRecord, withPem = false) => ({ ...c, ...(withPem ? { pem: toPem(der, 'CERTIFICATE') } : {}) });
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const limit = (v: unknown): number => Math.min(Math.max(Number(v ?? 100) || 100, 1), 1000);

/**
 * adminRouter is the admin API (/api/v1): JSON in and out, the same operations as the CLI. It
 * authenticates through AdminAccess and calls the RA; an owner-scoped caller meets another owner's
 * device as 404. Errors are { error: { code, message, requestId } } (sendHttpError).
 */
export function adminRouter(o: AdminRouterOptions): Router {
  const r = Router();
  const route = (name: string, fn: Handler) => async (req: Request, res: Response) => {
    res.locals.route = `admin.${name}`;
    try {
      const sock = req.socket as TLSSocket;
      const peer = typeof sock.getPeerCertificate === 'function' ? sock.getPeerCertificate() : undefined;
      const caller = await o.access.authenticate(req.headers.authorization, peer && peer.raw ? peer.raw : undefined);
      let body: Record<string, unknown> = {};
      if (req.method === 'POST') {
        const raw = await readRawBody(req, o.bodyLimit);
        if (raw.length) {
          if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) throw new DeviceCaError('bad-request', 'Content-Type must be application/json');
          try {
            body = JSON.parse(raw.toString('utf8'));
          } catch {
            throw new DeviceCaError('bad-request', 'body is not valid JSON');
          }
          if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new DeviceCaError('bad-request', 'body must be a JSON object');
        }
      }
      const [status, out] = await fn(req, caller, body);
      res.status(status).json(out);
    } catch (e) {
      sendHttpError(res, e, ERROR_REPLY);
    }
  };
  const operatorOnly = (c: Caller) => o.lifecycle.requireOperator(c.scope);

  r.get('/openapi.json', (_req: Request, res: Response) => {
    res.locals.route = 'admin.openapi';
    res.status(200).json(OPENAPI);
  });

  r.get('/devices', route('devices.list', async (req, c) => {
    const state = str(req.query.state);
    if (state !== undefined && !STATES.includes(state as DeviceState)) throw new DeviceCaError('bad-request', `state must be one of ${STATES.join(', ')}`);
    return [200, { items: await o.lifecycle.listDevices({ owner: str(req.query.owner), state: state as DeviceState | undefined, limit: limit(req.query.limit), after: str(req.query.after) }, c.scope) }];
  }));
  r.post('/devices', route('devices.add', async (_req, c, b) => {
    const ttl = b.secretTtl === undefined ? undefined : parseTtl(b.secretTtl);
    const out = await o.ra.registerDevice({ id: String(b.id ?? ''), owner: o.lifecycle.ownerFor(str(b.owner), c.scope), label: str(b.label), secretTtlSeconds: ttl, actor: c.actor });
    return [201, { device: out.device, secret: out.secret, secretExpiresAt: out.expiresAt }];
  }));
  r.get('/devices/:id', route('devices.show', async (req, c) => {
    const d = await o.lifecycle.device(String(req.params.id), c.scope);
    const certs = await o.lifecycle.listCertificates({ deviceId: d.id, limit: 1000 }, c.scope);
    return [200, { ...d, certificates: certs.map((x) => certJson(x)) }];
  }));
  for (const action of ['suspend', 'resume', 'retire'] as const) {
    r.post(`/devices/:id/${action}`, route(`devices.${action}`, async (req, c) => {
      const out = await o.lifecycle[action](String(req.params.id), c.scope, c.actor);
      return [200, { device: out.device, certificates: out.changed }];
    }));
  }
  r.post('/devices/:id/transfer', route('devices.transfer', async (req, c, b) => {
    const to = str(b.to);
    if (!to) throw new DeviceCaError('bad-request', 'body must name the new owner: {"to": "<owner>"}');
    const out = await o.lifecycle.transfer(String(req.params.id), to, c.scope, c.actor, b.secretTtl === undefined ? undefined : parseTtl(b.secretTtl));
    return [200, { device: out.device, certificates: out.changed, secret: out.secret, secretExpiresAt: out.expiresAt }];
  }));

  r.get('/certificates', route('certs.list', async (req, c) => {
    const status = str(req.query.status);
    if (status !== undefined && status !== 'valid' && status !== 'revoked') throw new DeviceCaError('bad-request', 'status must be valid or revoked');
    const items = await o.lifecycle.listCertificates({ deviceId: str(req.query.device), status: status as 'valid' | undefined, limit: limit(req.query.limit), after: str(req.query.after) }, c.scope);
    return [200, { items: items.map((x) => certJson(x)) }];
  }));
  r.get('/certificates/:serial', route('certs.show', async (req, c) => [200, certJson(await o.lifecycle.certificate(String(req.params.serial), c.scope), true)]));
  r.post('/certificates/:serial/revoke', route('certs.revoke', async (req, c, b) => {
    const out = await o.lifecycle.revoke(String(req.params.serial), str(b.reason) ?? 'unspecified', c.scope, c.actor);
    return [200, { certificate: certJson(out.cert), changed: out.changed }];
  }));

  r.get('/requests', route('requests.list', async (req, c) => {
    operatorOnly(c);
    const status = str(req.query.status);
    const items = await o.ra.listRequests(status as 'pending' | undefined);
    return [200, { items: items.map(({ csr: _c, ...x }) => x) }];
  }));
  for (const [action, decision] of [['approve', 'approved'], ['reject', 'rejected']] as const) {
    r.post(`/requests/:id/${action}`, route(`requests.${action}`, async (req, c) => {
      operatorOnly(c);
      const { csr: _c, ...x } = await o.ra.decideRequest(String(req.params.id), decision, c.actor);
      return [200, x];
    }));
  }
  r.use((_req: Request, res: Response, _n: NextFunction) => {
    res.locals.route = 'admin.unknown';
    sendHttpError(res, new DeviceCaError('not-found', 'unknown admin API path'), ERROR_REPLY);
  });
  return r;
}

function parseTtl(v: unknown): number {
  try {
    return parseDuration(v as string | number);
  } catch (e) {
    throw new DeviceCaError('bad-request', `secretTtl: ${(e as Error).message}`);
  }
}
