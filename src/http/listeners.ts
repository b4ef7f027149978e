import express, { NextFunction, Request, Response } from 'express';
import * as http from 'node:http';
import * as https from 'node:https';
import { Logger } from 'pino';
import { Registry } from 'prom-client';
import { HttpObservability } from './request-context';

/** baseApp: an express app with the settings both listeners share. */
function baseApp(obs: HttpObservability): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(obs.middleware());
  return app;
}

/** finish adds the 404 and last-resort error handlers: never a stack trace, never HTML. */
function finish(app: express.Express, log: Logger): void {
  app.use((_req: Request, res: Response) => {
    res.locals.route = res.locals.route ?? 'not-found';
    res.status(404).type('text/plain').send('not found\n');
  });
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const e = err as { status?: number; message?: string };
    if (typeof e.status === 'number' && e.status >= 400 && e.status < 500) {
      res.status(e.status).type('text/plain').send('bad request\n');
      return;
    }
    log.error({ err: { message: e?.message } }, 'unhandled error');
    res.status(500).type('text/plain').send('internal error\n');
  });
}

export interface Mount {
  path: string;
  router: express.RequestHandler;
}

/** createHttpsListener: EST and (later) the admin API, with optional TLS client certificates. */
export function createHttpsListener(args: { tls: https.ServerOptions; mounts: Mount[]; registry: Registry; log: Logger }): https.Server {
  const obs = new HttpObservability('https', args.registry, args.log);
  const app = baseApp(obs);
  for (const m of args.mounts) app.use(m.path, m.router);
  finish(app, args.log);
  const server = https.createServer(args.tls, app);
  server.headersTimeout = 20_000;
  server.requestTimeout = 30_000;
  server.keepAliveTimeout = 5_000;
  return server;
}

/** FastRoute: a hot path (OCSP) served on the raw Node request, ahead of express, still logged and measured. */
export interface FastRoute {
  prefix: string;
  route: string;
  handler: (req: http.IncomingMessage, res: http.ServerResponse) => void;
}

/** createHttpListener: CA certificates, CRLs, OCSP, health and metrics over plain HTTP. */
export function createHttpListener(args: { mounts: Mount[]; fast?: FastRoute[]; registry: Registry; log: Logger }): http.Server {
  const obs = new HttpObservability('http', args.registry, args.log, new Set((args.fast ?? []).map((f) => f.route)));
  const app = baseApp(obs);
  for (const m of args.mounts) app.use(m.path, m.router);
  finish(app, args.log);
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
  return server;
}
