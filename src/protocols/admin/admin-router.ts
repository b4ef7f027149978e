import { NextFunction, Request, Response, Router } from 'express';
import { X509Certificate } from 'node:crypto';
import { TLSSocket } from 'node:tls';
import { toPem } from '../../ca/pem';
import { DeviceCaError } from '../../errors/device-ca-error';
import { readRawBody } from '../../http/raw-body';
import { AdminAccess } from '../../ra/admin-access';
import { AuditBrowser } from '../../ra/audit-browser';
import { DeviceCommands } from '../../ra/device-commands';
import { DeviceLifecycle, Scope } from '../../ra/device-lifecycle';
import { FirmwareReceipts } from '../../ra/firmware-receipts';
import { RegistrationAuthority } from '../../ra/registration-authority';
import { collectItems } from '../../store/paging';
import { CertificateRecord, DEFAULT_PAGE_LIMIT, DeviceState, RequestStatus } from '../../store/store';
import { HttpErrorReplyOptions, sendHttpError } from '../http-error-reply';
import { BODY, QUERY, parseInput } from './admin-input';
import { OPENAPI } from './openapi';

export interface AdminRouterOptions {
  access: AdminAccess;
  lifecycle: DeviceLifecycle;
  ra: RegistrationAuthority;
  /** audit: the audit listing and chunked chain verification (operator only; the decision is the RA's) */
  audit: AuditBrowser;
  bodyLimit: number;
  /** firmware: receipts and `GET /firmware/{name}/status` (absent: that route answers 501) */
  firmware?: FirmwareReceipts;
  /** commands: signed device commands, `POST /devices/{id}/commands` and the device view's `command` (absent: 501, no field) */
  commands?: DeviceCommands;
  /**
   * authenticate: who is calling; default a bearer token or a pinned operator client certificate. The console
   * mounts the same router behind its session cookie and CSRF check (protocols/console).
   */
  authenticate?: (req: Request) => Promise<Caller>;
}

export type Caller = { scope: Scope; actor: string };
type Handler = (req: Request, caller: Caller, body: Record<string, unknown>) => Promise<[number, unknown]>;

/** ERROR_REPLY: JSON errors; a 401 asks for a bearer token (RFC 6750 §3), the admin API's credential */
const ERROR_REPLY: HttpErrorReplyOptions = { format: 'json', challenge: 'Bearer realm="device-ca admin"' };
const certJson = ({ der, ...c }: CertificateRecord, withPem = false) => ({ ...c, ...(withPem ? { pem: toPem(der, 'CERTIFICATE') } : {}) });

/**
 * adminRouter is the admin API (/api/v1): JSON in and out, the same operations as the CLI. It
 * authenticates through AdminAccess, checks the body and query string (admin-input.ts) and calls the
 * RA, which decides scope: an owner-scoped caller meets another owner's device as 404. Every route is
 * listed in openapi.ts (the authorization matrix test fails on one that is not). Errors are
 * { error: { code, message, requestId } } (sendHttpError).
 */
export function adminRouter(o: AdminRouterOptions): Router {
  const r = Router();
  const authenticate =
    o.authenticate ??
    ((req: Request) => {
      const sock = req.socket as TLSSocket;
      const peer = typeof sock.getPeerCertificate === 'function' ? sock.getPeerCertificate() : undefined;
      return o.access.authenticate(req.headers.authorization, peer && peer.raw ? peer.raw : undefined);
    });
  const route = (name: string, fn: Handler) => async (req: Request, res: Response) => {
    res.locals.route = `admin.${name}`;
    try {
      const caller = await authenticate(req);
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

  r.get(
    '/devices',
    route('devices.list', async (req, c) => {
      const q = parseInput(QUERY.devices, req.query, 'query');
      const page = await o.lifecycle.listDevices(
        { idPrefix: q.idPrefix, owner: q.owner, state: q.state as DeviceState | undefined, label: q.label, limit: q.limit ?? DEFAULT_PAGE_LIMIT, after: q.after },
        c.scope,
      );
      return [200, { items: page.items, next: page.next }];
    }),
  );
  r.post(
    '/devices',
    route('devices.add', async (req, c, raw) => {
      parseInput(QUERY.none, req.query, 'query');
      const b = parseInput(BODY.register, raw, 'body');
      const out = await o.ra.registerDevice({ id: b.id, owner: o.lifecycle.ownerFor(b.owner, c.scope), label: b.label, secretTtlSeconds: b.secretTtl, actor: c.actor });
      return [201, { device: out.device, secret: out.secret, secretExpiresAt: out.expiresAt }];
    }),
  );
  r.get(
    '/devices/:id',
    route('devices.show', async (req, c) => {
      parseInput(QUERY.none, req.query, 'query');
      const d = await o.lifecycle.device(String(req.params.id), c.scope);
      // all of them: GET /certificates?device= pages through the same list
      const certs = await collectItems((after, want) => o.lifecycle.listCertificates({ deviceId: d.id, after, limit: want }, c.scope));
      const tpm = await o.lifecycle.attestation(d.id, c.scope);
      const certificates = certs.items.map((x) => ({ ...certJson(x), tpmAttested: tpm.attestedSerials.has(x.serial) }));
      const command = o.commands ? { command: await o.commands.state(d.id) } : {};
      return [200, { ...d, certificates, aks: tpm.aks, lastAttestation: tpm.lastAttestation, ...command }];
    }),
  );
  r.post(
    '/devices/:id/commands',
    route('devices.command', async (req, c, raw) => {
      parseInput(QUERY.none, req.query, 'query');
      const b = parseInput(BODY.command, raw, 'body');
      if (!o.commands) throw new DeviceCaError('not-implemented', 'device commands are not available here');
      // a device the caller may not see is 404, as for any device route; then the RA's rule (operator only)
      await o.lifecycle.device(String(req.params.id), c.scope);
      const out = await o.commands.issue({ deviceId: String(req.params.id), command: b.command, actor: c.actor, scope: c.scope });
      return [201, { ...out.command, cms: out.der.toString('base64') }];
    }),
  );
  for (const action of ['suspend', 'resume', 'retire'] as const) {
    r.post(
      `/devices/:id/${action}`,
      route(`devices.${action}`, async (req, c, raw) => {
        parseInput(QUERY.none, req.query, 'query');
        parseInput(BODY.none, raw, 'body');
        const out = await o.lifecycle[action](String(req.params.id), c.scope, c.actor);
        return [200, { device: out.device, certificates: out.changed }];
      }),
    );
  }
  r.post(
    '/devices/:id/transfer',
    route('devices.transfer', async (req, c, raw) => {
      parseInput(QUERY.none, req.query, 'query');
      const b = parseInput(BODY.transfer, raw, 'body');
      const out = await o.lifecycle.transfer(String(req.params.id), b.to, c.scope, c.actor, b.secretTtl);
      return [200, { device: out.device, certificates: out.changed, secret: out.secret, secretExpiresAt: out.expiresAt }];
    }),
  );
  r.post(
    '/devices/:id/release',
    route('devices.release', async (req, c, raw) => {
      parseInput(QUERY.none, req.query, 'query');
      const b = parseInput(BODY.release, raw, 'body');
      const out = await o.lifecycle.release(String(req.params.id), b.to, c.scope, c.actor);
      return [200, { device: out.device, certificates: out.changed }];
    }),
  );
  for (const action of ['claim', 'cancelRelease'] as const) {
    r.post(
      `/devices/:id/${action === 'claim' ? 'claim' : 'cancel-release'}`,
      route(`devices.${action}`, async (req, c, raw) => {
        parseInput(QUERY.none, req.query, 'query');
        const b = parseInput(BODY.newSecret, raw, 'body');
        const out = await o.lifecycle[action](String(req.params.id), c.scope, c.actor, b.secretTtl);
        return [200, { device: out.device, certificates: out.changed, secret: out.secret, secretExpiresAt: out.expiresAt }];
      }),
    );
  }

  r.post(
    '/devices/:id/secret',
    route('devices.secret', async (req, c, raw) => {
      parseInput(QUERY.none, req.query, 'query');
      const b = parseInput(BODY.newSecret, raw, 'body');
      const out = await o.lifecycle.replaceSecret(String(req.params.id), c.scope, c.actor, b.secretTtl);
      return [200, { device: out.device, certificates: out.changed, secret: out.secret, secretExpiresAt: out.expiresAt }];
    }),
  );

  r.get(
    '/certificates',
    route('certs.list', async (req, c) => {
      const q = parseInput(QUERY.certificates, req.query, 'query');
      const page = await o.lifecycle.listCertificates({ deviceId: q.device, status: q.status, limit: q.limit ?? DEFAULT_PAGE_LIMIT, after: q.after }, c.scope);
      return [200, { items: page.items.map((x) => certJson(x)), next: page.next }];
    }),
  );
  r.get(
    '/certificates/:serial',
    route('certs.show', async (req, c) => {
      parseInput(QUERY.none, req.query, 'query');
      const cert = await o.lifecycle.certificate(String(req.params.serial), c.scope);
      return [200, { ...certJson(cert, true), decoded: decodeCertificate(cert.der) }];
    }),
  );
  r.post(
    '/certificates/:serial/revoke',
    route('certs.revoke', async (req, c, raw) => {
      parseInput(QUERY.none, req.query, 'query');
      const b = parseInput(BODY.revoke, raw, 'body');
      const out = await o.lifecycle.revoke(String(req.params.serial), b.reason ?? 'unspecified', c.scope, c.actor);
      return [200, { certificate: certJson(out.cert), changed: out.changed }];
    }),
  );

  r.get(
    '/requests',
    route('requests.list', async (req, c) => {
      operatorOnly(c);
      const q = parseInput(QUERY.requests, req.query, 'query');
      const page = await o.ra.listRequests({ status: q.status as RequestStatus | undefined, limit: q.limit ?? DEFAULT_PAGE_LIMIT, after: q.after });
      return [200, { items: page.items.map(({ csr: _c, ...x }) => x), next: page.next }];
    }),
  );
  for (const [action, decision] of [
    ['approve', 'approved'],
    ['reject', 'rejected'],
  ] as const) {
    r.post(
      `/requests/:id/${action}`,
      route(`requests.${action}`, async (req, c, raw) => {
        operatorOnly(c);
        parseInput(QUERY.none, req.query, 'query');
        parseInput(BODY.none, raw, 'body');
        const { csr: _c, ...x } = await o.ra.decideRequest(String(req.params.id), decision, c.actor);
        return [200, x];
      }),
    );
  }
  r.get(
    '/audit',
    route('audit.list', async (req, c) => {
      const q = parseInput(QUERY.audit, req.query, 'query');
      const page = await o.audit.list(c.scope, { device: q.device, type: q.type, from: q.from, to: q.to, after: q.after, limit: q.limit ?? DEFAULT_PAGE_LIMIT });
      return [200, { items: page.items.map(({ prevHash: _p, ...x }) => x), next: page.next }];
    }),
  );
  r.get(
    '/audit/verify',
    route('audit.verify', async (req, c) => {
      const q = parseInput(QUERY.auditVerify, req.query, 'query');
      return [200, await o.audit.verify(c.scope, { after: q.after ?? 0, hash: q.hash, limit: q.limit ?? 2000 })];
    }),
  );
  r.get(
    '/firmware/:name/status',
    route('firmware.status', async (req, c) => {
      const q = parseInput(QUERY.page, req.query, 'query');
      if (!o.firmware) throw new DeviceCaError('not-implemented', 'firmware status is not available here');
      return [200, await o.firmware.status(String(req.params.name), c.scope, { limit: q.limit ?? DEFAULT_PAGE_LIMIT, after: q.after })];
    }),
  );
  r.use((_req: Request, res: Response, _n: NextFunction) => {
    res.locals.route = 'admin.unknown';
    sendHttpError(res, new DeviceCaError('not-found', 'unknown admin API path'), ERROR_REPLY);
  });
  return r;
}

/**
 * decodeCertificate: the fields an operator reads in `openssl x509 -text`, as Node's X509Certificate
 * (OpenSSL) prints them, for GET /certificates/{serial} (the console's certificate page shows them).
 */
function decodeCertificate(der: Buffer): Record<string, unknown> | null {
  let x: X509Certificate;
  try {
    x = new X509Certificate(der);
  } catch {
    return null; // bytes OpenSSL cannot read: the record and its PEM are still shown
  }
  const key = x.publicKey;
  const details = key.asymmetricKeyDetails ?? {};
  return {
    subject: x.subject.split('\n').join(', '),
    issuer: x.issuer.split('\n').join(', '),
    serialNumber: x.serialNumber,
    validFrom: new Date(x.validFrom).toISOString(),
    validTo: new Date(x.validTo).toISOString(),
    subjectAltName: x.subjectAltName ?? null,
    keyUsage: x.keyUsage ?? [],
    publicKey: [key.asymmetricKeyType, details.namedCurve ?? (details.modulusLength ? `${details.modulusLength} bits` : undefined)].filter(Boolean).join(' '),
    fingerprintSha256: x.fingerprint256,
    ca: x.ca,
  };
}
