import { Request, Response, Router } from 'express';
import { Registry } from 'prom-client';

/** opsRouter: /healthz (liveness and store reachability) and /metrics (Prometheus text format). */
export function opsRouter(args: { registry: Registry; health: () => Promise<void> }): Router {
  const r = Router();
  r.get('/healthz', async (_req: Request, res: Response) => {
    res.locals.route = 'healthz';
    try {
      await args.health();
      res.status(200).type('text/plain').send('ok\n');
    } catch {
      res.status(503).type('text/plain').send('unhealthy\n');
    }
  });
  r.get('/metrics', async (_req: Request, res: Response) => {
    res.locals.route = 'metrics';
    res.status(200).setHeader('Content-Type', args.registry.contentType);
    res.end(await args.registry.metrics());
  });
  return r;
}
