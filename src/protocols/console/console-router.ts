import { NextFunction, Request, Response, Router } from 'express';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TLSSocket } from 'node:tls';
import { DeviceCaError } from '../../errors/device-ca-error';
import { readRawBody } from '../../http/raw-body';
import { ConsoleOverview } from '../../ra/console-overview';
import { ConsoleSessions } from '../../ra/console-sessions';
import { DEFAULT_PAGE_LIMIT } from '../../store/store';
import { QUERY, parseInput } from '../admin/admin-input';
import { AdminRouterOptions, adminRouter } from '../admin/admin-router';
import { HttpErrorReplyOptions, sendHttpError } from '../http-error-reply';

export interface ConsoleRouterOptions {
  sessions: ConsoleSessions;
  overview: ConsoleOverview;
  /** admin: what the admin API router needs; the console mounts it at /console/api/v1 behind the session */
  admin: Omit<AdminRouterOptions, 'authenticate'>;
  /** maxAgeSeconds: the session cookie's Max-Age (the session's absolute lifetime) */
  maxAgeSeconds: number;
  /** assetsDir: the built console (npm run build writes dist/console) */
  assetsDir?: string;
}

/** COOKIE: the session cookie; Path=/console keeps it off EST and the admin API, which never read it. */
export const CONSOLE_COOKIE = 'dca_console';
export const CSRF_HEADER = 'x-csrf-token';

/**
 * CSP: scripts, styles and data only from the console's own files, no inline script or style, no framing
 * (frame-ancestors; X-Frame-Options for older browsers), forms post nowhere else (W3C CSP Level 3).
 */
export const CONSOLE_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const ERROR_REPLY: HttpErrorReplyOptions = { format: 'json', challenge: 'Bearer realm="device-ca console"' };

/** TYPES: the kinds of file the console is made of; the built directory's files of these kinds are served, nothing else. */
const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };

/**
 * consoleRouter serves the operator console at /console: its static files, the session (sign-in with an
 * admin token or a pinned operator client certificate, sign-out), the overview, and the admin API at /console/api/v1 authenticated by the session
 * cookie instead of a bearer token. Every decision is the RA's (ConsoleSessions, ConsoleOverview, the admin
 * API's lifecycle calls); this file decodes and encodes.
 */
export function consoleRouter(o: ConsoleRouterOptions): Router {
  const r = Router();
  const dir = o.assetsDir ?? path.resolve(__dirname, '../../console');
  // read once at start: the console's files never change while the service runs
  const files = new Map<string, { body: Buffer; type: string }>();
  for (const name of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
    const type = TYPES[path.extname(name)];
    if (type && fs.statSync(path.join(dir, name)).isFile()) files.set(`/${name}`, { body: fs.readFileSync(path.join(dir, name)), type });
  }

  r.use((req: Request, res: Response, next: NextFunction) => {
    res.setHeader('Content-Security-Policy', CONSOLE_CSP);
    res.setHeader('X-Frame-Options', 'DENY');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'no-referrer');
    res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
    res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
    res.setHeader('Cache-Control', 'no-store');
    // a cross-site POST is refused before anything else: the browser says where it came from (Fetch
    // Metadata, Origin); the CSRF token below refuses it too, this says why in plain words
    if (req.method !== 'GET' && req.method !== 'HEAD' && crossSite(req)) {
      res.locals.route = 'console.cross-site';
      sendHttpError(res, new DeviceCaError('forbidden', 'cross-site request refused'), ERROR_REPLY);
      return;
    }
    next();
  });

  const json = (name: string, fn: (req: Request, res: Response) => Promise<[number, unknown]>) => async (req: Request, res: Response) => {
    res.locals.route = `console.${name}`;
    try {
      const [status, out] = await fn(req, res);
      res.status(status).json(out);
    } catch (e) {
      sendHttpError(res, e, ERROR_REPLY);
    }
  };

  r.post(
    '/api/session',
    json('session.create', async (req, res) => {
      const body = await jsonObject(req, ['token'], 'body must be {"token": "dca_..."}');
      const s = await o.sessions.signIn(body.token);
      res.setHeader('Set-Cookie', cookie(s.sessionId, o.maxAgeSeconds));
      return [201, { csrf: s.csrf, scope: scopeName(s.scope), idleExpiresAt: s.idleExpiresAt, expiresAt: s.expiresAt }];
    }),
  );
  // sign-in with the TLS client certificate: the HTTPS listener requests one (never requires it); the body
  // is {} as application/json, so a cross-site form cannot send it without a CORS preflight
  r.post(
    '/api/session/certificate',
    json('session.create-certificate', async (req, res) => {
      await jsonObject(req, [], 'body must be {}');
      const s = await o.sessions.signInWithCertificate(peerCertificate(req));
      res.setHeader('Set-Cookie', cookie(s.sessionId, o.maxAgeSeconds));
      return [201, { csrf: s.csrf, scope: scopeName(s.scope), idleExpiresAt: s.idleExpiresAt, expiresAt: s.expiresAt }];
    }),
  );
  r.get(
    '/api/session',
    json('session.show', async (req) => {
      const c = await o.sessions.authenticate(sessionOf(req), undefined, false);
      return [200, { csrf: c.csrf, scope: scopeName(c.scope), idleExpiresAt: c.idleExpiresAt }];
    }),
  );
  r.post(
    '/api/session/sign-out',
    json('session.delete', async (req, res) => {
      await o.sessions.signOut(sessionOf(req), header(req, CSRF_HEADER));
      res.setHeader('Set-Cookie', cookie('', 0));
      return [200, { signedOut: true }];
    }),
  );
  r.get(
    '/api/overview',
    json('overview', async (req) => {
      const c = await o.sessions.authenticate(sessionOf(req), undefined, false);
      return [200, await o.overview.overview(c.scope)];
    }),
  );
  r.get(
    '/api/overview/enrollments',
    json('overview.enrollments', async (req) => {
      const c = await o.sessions.authenticate(sessionOf(req), undefined, false);
      return [200, await o.overview.enrollmentsPerHour(c.scope)];
    }),
  );
  r.get(
    '/api/overview/expiring',
    json('overview.expiring', async (req) => {
      const c = await o.sessions.authenticate(sessionOf(req), undefined, false);
      return [200, await o.overview.expiringPerDay(c.scope)];
    }),
  );
  r.get(
    '/api/devices/:id/audit',
    json('device.audit', async (req) => {
      const c = await o.sessions.authenticate(sessionOf(req), undefined, false);
      const q = parseInput(QUERY.page, req.query, 'query');
      const page = await o.admin.lifecycle.deviceAudit(String(req.params.id), c.scope, { limit: q.limit ?? DEFAULT_PAGE_LIMIT, after: q.after });
      return [200, { items: page.items, next: page.next }];
    }),
  );
  r.use(
    '/api/v1',
    adminRouter({
      ...o.admin,
      authenticate: (req) => o.sessions.authenticate(sessionOf(req), header(req, CSRF_HEADER), req.method !== 'GET' && req.method !== 'HEAD'),
    }),
  );
  r.use('/api', (_req: Request, res: Response) => {
    res.locals.route = 'console.unknown';
    sendHttpError(res, new DeviceCaError('not-found', 'unknown console API path'), ERROR_REPLY);
  });

  r.get(/.*/, (req: Request, res: Response) => {
    res.locals.route = 'console.asset';
    // /console without the slash: the page's relative asset URLs need it
    if (req.originalUrl === '/console') {
      res.redirect(301, '/console/');
      return;
    }
    const file = files.get(req.path === '/' ? '/index.html' : req.path);
    if (!file) {
      const built = files.has('/index.html');
      sendHttpError(res, new DeviceCaError('not-found', built ? 'not found' : 'the console is not built (npm run build)'), { format: 'text', challenge: ERROR_REPLY.challenge });
      return;
    }
    res.status(200).type(file.type).send(file.body);
  });
  return r;
}

/** jsonObject: the request's JSON object body (application/json, at most 4 KiB) with only the keys allowed. */
async function jsonObject(req: Request, keys: string[], shape: string): Promise<Record<string, unknown>> {
  const raw = await readRawBody(req, 4096);
  if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) throw new DeviceCaError('bad-request', 'Content-Type must be application/json');
  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new DeviceCaError('bad-request', 'body is not valid JSON');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body) || Object.keys(body).some((k) => !keys.includes(k))) {
    throw new DeviceCaError('bad-request', shape);
  }
  return body as Record<string, unknown>;
}

/** peerCertificate: the DER of the TLS client certificate the browser presented on this connection, if any. */
function peerCertificate(req: Request): Buffer | undefined {
  const sock = req.socket as TLSSocket;
  const peer = typeof sock.getPeerCertificate === 'function' ? sock.getPeerCertificate() : undefined;
  return peer && peer.raw ? peer.raw : undefined;
}

function header(req: Request, name: string): string | undefined {
  const v = req.headers[name];
  return typeof v === 'string' ? v : undefined;
}

/** sessionOf: the session id from the Cookie header (RFC 6265 §5.4), or undefined. */
function sessionOf(req: Request): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === CONSOLE_COOKIE) return part.slice(i + 1).trim();
  }
  return undefined;
}

/** cookie: HttpOnly (no script reads it), Secure, SameSite=Strict (no cross-site request carries it), Path=/console. */
function cookie(value: string, maxAgeSeconds: number): string {
  return `${CONSOLE_COOKIE}=${value}; Path=/console; Max-Age=${maxAgeSeconds}; HttpOnly; Secure; SameSite=Strict`;
}

/** crossSite: the browser says the request came from another site (Sec-Fetch-Site) or another origin (Origin). */
function crossSite(req: Request): boolean {
  const site = header(req, 'sec-fetch-site');
  if (site && site !== 'same-origin' && site !== 'none') return true;
  const origin = header(req, 'origin');
  return origin !== undefined && origin !== `https://${req.headers.host ?? ''}`;
}

const scopeName = (s: { kind: 'operator' } | { kind: 'owner'; owner: string }): string => (s.kind === 'operator' ? 'operator' : `owner:${s.owner}`);
