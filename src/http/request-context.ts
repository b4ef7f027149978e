import * as crypto from 'node:crypto';
import { NextFunction, Request, Response } from 'express';
import { Counter, Histogram, Registry } from 'prom-client';
import { Logger } from 'pino';

/**
 * HttpObservability owns the per-endpoint metrics of one listener and writes one access-log line per
 * request, with a request id. Handlers set res.locals.route to a fixed name (never the raw path, which
 * would explode label cardinality). Headers and bodies are never logged: they carry secrets.
 */
export class HttpObservability {
  private readonly duration: Histogram<'listener' | 'route' | 'method' | 'status'>;
  private readonly total: Counter<'listener' | 'route' | 'method' | 'status'>;

  constructor(
    private readonly listener: 'https' | 'http',
    registry: Registry,
    private readonly log: Logger,
    /** quietRoutes: hot routes (OCSP) whose successful requests are logged at debug; the metrics count them */
    private readonly quietRoutes: ReadonlySet<string> = new Set(),
  ) {
    this.duration =
      (registry.getSingleMetric('device_ca_http_request_duration_seconds') as Histogram<'listener' | 'route' | 'method' | 'status'>) ??
      new Histogram({
        name: 'device_ca_http_request_duration_seconds',
        help: 'HTTP request latency by listener, route, method and status',
        labelNames: ['listener', 'route', 'method', 'status'],
        buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
        registers: [registry],
      });
    this.total =
      (registry.getSingleMetric('device_ca_http_requests_total') as Counter<'listener' | 'route' | 'method' | 'status'>) ??
      new Counter({ name: 'device_ca_http_requests_total', help: 'HTTP requests by listener, route, method and status', labelNames: ['listener', 'route', 'method', 'status'], registers: [registry] });
  }

  middleware() {
    return (req: Request, res: Response, next: NextFunction): void => {
      const start = process.hrtime.bigint();
      const incoming = req.headers['x-request-id'];
      const id = typeof incoming === 'string' && /^[A-Za-z0-9._-]{1,64}$/.test(incoming) ? incoming : crypto.randomUUID();
      res.setHeader('X-Request-Id', id);
      res.locals.requestId = id; // error replies quote it (sendHttpError), so a user's report finds the log line
      res.on('finish', () => {
        const secs = Number(process.hrtime.bigint() - start) / 1e9;
        const labels = { listener: this.listener, route: String(res.locals.route ?? 'unknown'), method: req.method, status: String(res.statusCode) };
        this.duration.observe(labels, secs);
        this.total.inc(labels);
        const line = { reqId: id, method: req.method, route: labels.route, status: res.statusCode, ms: Math.round(secs * 1e4) / 10, remote: req.socket.remoteAddress, code: res.locals.errorCode };
        if (res.locals.error) this.log.error({ ...line, err: { message: res.locals.error.message, detail: res.locals.error.detail } }, 'request failed');
        else if (this.quietRoutes.has(labels.route) && res.statusCode < 400) this.log.debug(line, 'request');
        else this.log.info(line, 'request');
      });
      next();
    };
  }
}
