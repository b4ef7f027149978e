import { Request, Response, Router } from 'express';
import { Registry } from 'prom-client';
import { isDeviceCaError } from '../../errors/device-ca-error';

/**
 * opsRouter: /healthz (the store can be read and written, and the CA signing key is usable: `keyHealth`)
 * and /metrics (Prometheus text format).
 * health rejects when the service should be taken out of a pool; a DeviceCaError's short message is the
 * reason in the 503 body (never its detail), and its retryAfterSeconds the Retry-After.
 * `/healthz?detail` adds one `warning: ...` line per thing an operator should fix that does not take
 * the service out of a pool (publicUrl not set, a root CRL about to lapse); plain /healthz stays `ok`.
 */
export function opsRouter(args: { registry: Registry; health: () => Promise<void>; keyHealth?: () => Promise<void>; warnings?: () => string[] }): Router {
  const r = Router();
  r.get('/healthz', async (req: Request, res: Response) => {
    res.locals.route = 'healthz';
    try {
      // both at once; the store's reason first when both fail
      const [store, key] = await Promise.allSettled([args.health(), args.keyHealth?.()]);
      if (store.status === 'rejected') throw store.reason;
      if (key.status === 'rejected') throw key.reason;
      const detail = req.query.detail !== undefined ? (args.warnings?.() ?? []) : [];
      res
        .status(200)
        .type('text/plain')
        .send(['ok', ...detail.map((w) => `warning: ${w}`)].join('\n') + '\n');
    } catch (e) {
      const err = isDeviceCaError(e) ? e : null;
      res.setHeader('Retry-After', String(err?.retryAfterSeconds ?? 1));
      res
        .status(503)
        .type('text/plain')
        .send(`unhealthy: ${err?.message ?? 'health check failed'}\n`);
    }
  });
  r.get('/metrics', async (_req: Request, res: Response) => {
    res.locals.route = 'metrics';
    res.status(200).setHeader('Content-Type', args.registry.contentType);
    res.end(await args.registry.metrics());
  });
  return r;
}
