import express, { NextFunction, Request, Response } from 'express';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { Logger } from 'pino';
import { Registry } from 'prom-client';
import { DeviceCaError } from '../errors/device-ca-error';
import { HttpErrorReplyOptions, sendHttpError } from '../protocols/http-error-reply';
import { FrontRoute, attachFastFront } from './fast-front';
import { HttpObservability } from './request-context';
import { TlsFailureLog } from './tls-failure-log';

/** baseApp: an express app with the settings both listeners share. */
function baseApp(obs: HttpObservability): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(obs.middleware());
  return app;
}

/** FALLBACK_REPLY: errors no protocol router answered (unknown path, a parser express itself ran) */
const FALLBACK_REPLY: HttpErrorReplyOptions = { format: 'text', challenge: 'Basic realm="device-ca"' };

/** finish adds the 404 and last-resort error handlers: the one error reply, never a stack trace, never HTML. */
function finish(app: express.Express): void {
  app.use((_req: Request, res: Response) => {
    res.locals.route = res.locals.route ?? 'not-found';
    sendHttpError(res, new DeviceCaError('not-found', 'not found'), FALLBACK_REPLY);
  });
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const status = (err as { status?: unknown } | null)?.status;
    // express and its parsers mark client errors with a status (a bad URI, an oversize body)
    if (typeof status === 'number' && status >= 400 && status < 500) {
      sendHttpError(res, new DeviceCaError(status === 413 ? 'too-large' : 'bad-request', status === 413 ? 'body too large' : 'bad request'), FALLBACK_REPLY);
      return;
    }
    sendHttpError(res, err, FALLBACK_REPLY); // 'internal': logged with the request id by the access log
  });
}

export interface Mount {
  path: string;
  router: express.RequestHandler;
}

/**
 * createHttpsListener: EST and the admin API, with optional TLS client certificates. args.tls carries the
 * cipher list and handshakeTimeout from the config (https.ciphers, https.handshakeTimeout).
 */
export function createHttpsListener(args: { tls: https.ServerOptions; mounts: Mount[]; registry: Registry; log: Logger }): https.Server {
  const obs = new HttpObservability('https', args.registry, args.log);
  const app = baseApp(obs);
  for (const m of args.mounts) app.use(m.path, m.router);
  finish(app);
  const server = https.createServer(args.tls, app);
  // every failed handshake is logged with the peer address (rate-limited): no shared cipher, handshakeTimeout,
  // and a client certificate with a bad signature, which OpenSSL reports on the first read after the
  // handshake (an 'error' on the socket that https.Server would otherwise close silently)
  const failures = new TlsFailureLog(args.log);
  const peers = new WeakMap<net.Socket, Peer>();
  server.on('connection', (tcp: net.Socket) => peers.set(tcp, { address: tcp.remoteAddress, port: tcp.remotePort }));
  server.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => failures.report(err, peerOf(socket, peers)));
  server.on('secureConnection', (socket: tls.TLSSocket) => {
    socket.on('error', (err: Error & { library?: string; code?: string }) => {
      if (typeof err.library === 'string' || /^ERR_SSL_/.test(err.code ?? '')) failures.report(err, peerOf(socket, peers));
    });
  });
  server.headersTimeout = 20_000;
  server.requestTimeout = 30_000;
  server.keepAliveTimeout = 5_000;
  return server;
}

type Peer = { address?: string; port?: number };

/**
 * peerOf: the client's address. https.Server destroys a socket whose handshake timed out before it emits
 * tlsClientError, and a destroyed TLS socket no longer knows its address; so the address is also taken
 * from the TCP socket when it connects, and found again through the TCP socket the TLS socket wraps.
 */
function peerOf(socket: tls.TLSSocket, peers: WeakMap<net.Socket, Peer>): Peer {
  if (socket.remoteAddress) return { address: socket.remoteAddress, port: socket.remotePort };
  const tcp = (socket as tls.TLSSocket & { _parent?: net.Socket })._parent;
  return (tcp && peers.get(tcp)) ?? {};
}

/** FastRoute: a hot path (OCSP) served on the raw Node request, ahead of express, still logged and measured. */
export interface FastRoute {
  prefix: string;
  route: string;
  handler: (req: http.IncomingMessage, res: http.ServerResponse) => void;
  /** front: the requests of this route the connection-level front answers without node:http (fast-front.ts) */
  front?: Omit<FrontRoute, 'route'>;
}

/** createHttpListener: CA certificates, CRLs, OCSP, health and metrics over plain HTTP. */
export function createHttpListener(args: { mounts: Mount[]; fast?: FastRoute[]; registry: Registry; log: Logger }): http.Server {
  const obs = new HttpObservability('http', args.registry, args.log, new Set((args.fast ?? []).map((f) => f.route)));
  const app = baseApp(obs);
  for (const m of args.mounts) app.use(m.path, m.router);
  finish(app);
  const track = obs.middleware();
  const fast = args.fast ?? [];
  const server = http.createServer((req, res) => {
    const url = req.url ?? '';
    for (const f of fast) {
      if (url === f.prefix || url.startsWith(f.prefix + '/') || url.startsWith(f.prefix + '?')) {
        const r = res as http.ServerResponse & { locals: Record<string, unknown> };
        r.locals = { route: f.route };
        track(req as never, r as never, () => f.handler(req, res));
        return;
      }
    }
    app(req, res);
  });
  server.headersTimeout = 20_000;
  server.requestTimeout = 30_000;
  server.keepAliveTimeout = 5_000;
  attachFastFront(
    server,
    fast.flatMap((f) => (f.front ? [{ ...f.front, route: f.route }] : [])),
    obs,
    { maxHeaderSize: http.maxHeaderSize, headersTimeout: server.headersTimeout, requestTimeout: server.requestTimeout, keepAliveTimeout: server.keepAliveTimeout },
  );
  return server;
}
