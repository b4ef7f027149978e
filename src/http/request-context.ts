import * as crypto from 'node:crypto';
import { NextFunction, Request, Response } from 'express';
import { Counter, Histogram, Registry } from 'prom-client';
import { DeferredChild, deferredCounter } from '../metrics/deferred-counter';
import { Logger } from 'pino';
import { CLIENT_REQUEST_ID } from './request-id';

/** RequestRecord: one finished request, as HttpObservability.record counts and logs it. */
export interface RequestRecord {
  route: string;
  method: string;
  status: number;
  /** start: process.hrtime.bigint() when the request began */
  start: bigint;
  requestId: string;
  /**
   * remote: the client's address, or a function giving it, called only when a line is written: the
   * connection-level front passes one, so a quiet request costs no getpeername (one per connection when a
   * client connects for each request)
   */
  remote?: string | (() => string | undefined);
  errorCode?: string;
  /** error: a failure of ours, logged at error level with its detail */
  error?: { message: string; detail?: unknown };
  /**
   * aborted: the response was cut before it ended (destroyed by us half way, or the client went away):
   * `status` is then the status sent, 0 when not even the head was
   */
  aborted?: boolean;
}

/**
 * HttpObservability owns the per-endpoint metrics of one listener and writes one access-log line per
 * request, with a request id. Handlers set res.locals.route to a fixed name (never the raw path, which
 * would explode label cardinality). Headers and bodies are never logged: they carry secrets.
 */
export class HttpObservability {
  private readonly duration: Histogram<'listener' | 'route' | 'method' | 'status'>;
  private readonly total: (labels: Partial<Record<'listener' | 'route' | 'method' | 'status', string>>) => DeferredChild;
  /** aborted: the requests whose response was cut (counted in `total` too, under the status sent) */
  private readonly aborted: Counter<'listener' | 'route' | 'method'>;
  /** children: route -> method -> status -> the metric children (metricsFor) */
  private readonly children = new Map<string, Map<string, Map<number, { duration: { observe(v: number): void }; total: { inc(): void } }>>>();

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
    // counted in plain numbers, added to the counter when /metrics reads it (metrics/deferred-counter.ts)
    this.total = deferredCounter(registry, {
      name: 'device_ca_http_requests_total',
      help: 'HTTP requests by listener, route, method and status',
      labelNames: ['listener', 'route', 'method', 'status'],
    });
    this.aborted =
      (registry.getSingleMetric('device_ca_http_requests_aborted_total') as Counter<'listener' | 'route' | 'method'>) ??
      new Counter({
        name: 'device_ca_http_requests_aborted_total',
        help: 'HTTP requests whose response was cut before it ended (a failure half way, or the client went away), by listener, route and method',
        labelNames: ['listener', 'route', 'method'],
        registers: [registry],
      });
  }

  /**
   * metricsFor: the metric children of one route, method and status, looked up once: prom-client hashes a
   * labels object on every observe, which the OCSP route would pay per request. Bounded: routes are fixed
   * names, Node's parser accepts a fixed set of methods, statuses are three digits.
   */
  private metricsFor(route: string, method: string, status: number): { duration: { observe(v: number): void }; total: { inc(): void } } {
    // nested maps, not a joined key: no string is built per request
    let byMethod = this.children.get(route);
    if (!byMethod) this.children.set(route, (byMethod = new Map()));
    let byStatus = byMethod.get(method);
    if (!byStatus) byMethod.set(method, (byStatus = new Map()));
    let m = byStatus.get(status);
    if (!m) {
      const labels = { listener: this.listener, route, method, status: String(status) };
      m = { duration: this.duration.labels(labels), total: this.total(labels) };
      byStatus.set(status, m);
    }
    return m;
  }

  /**
   * record counts one finished request and writes its access line: for express routes (middleware) and for
   * the requests the connection-level front answers itself (fast-front.ts), so both are counted alike.
   */
  record(r: RequestRecord): void {
    const secs = Number(process.hrtime.bigint() - r.start) / 1e9;
    const metrics = this.metricsFor(r.route, r.method, r.status);
    metrics.duration.observe(secs);
    metrics.total.inc();
    if (r.aborted) this.aborted.inc({ listener: this.listener, route: r.route, method: r.method });
    const quiet = !r.error && !r.aborted && this.quietRoutes.has(r.route) && r.status < 400;
    if (quiet && !this.log.isLevelEnabled('debug')) return; // the hot path builds no line nobody writes
    const line = {
      reqId: r.requestId,
      method: r.method,
      route: r.route,
      status: r.status,
      ms: Math.round(secs * 1e4) / 10,
      remote: typeof r.remote === 'function' ? r.remote() : r.remote,
      code: r.errorCode,
      aborted: r.aborted || undefined,
    };
    if (r.error) this.log.error({ ...line, err: { message: r.error.message, detail: r.error.detail } }, 'request failed');
    else if (r.aborted) this.log.warn(line, 'request aborted');
    else if (quiet) this.log.debug(line, 'request');
    else this.log.info(line, 'request');
  }

  /** requestIdFor: the client's X-Request-Id when it is a plain token of at most 64 characters, else a new one. */
  requestIdFor(incoming: unknown): string {
    return typeof incoming === 'string' && CLIENT_REQUEST_ID.test(incoming) ? incoming : crypto.randomUUID();
  }

  middleware() {
    return (req: Request, res: Response, next: NextFunction): void => {
      const start = process.hrtime.bigint();
      const id = this.requestIdFor(req.headers['x-request-id']);
      res.setHeader('X-Request-Id', id);
      res.locals.requestId = id; // error replies quote it (sendHttpError), so a user's report finds the log line
      // 'finish' when the response ended; a response cut before that (destroyed half way by a store error,
      // or its client gone) emits only 'close', and is recorded then, once, as aborted
      let recorded = false;
      const remote = req.socket.remoteAddress; // read now: a socket already gone at 'close' may no longer tell it
      const done = (aborted: boolean): void => {
        if (recorded) return;
        recorded = true;
        this.record({
          route: String(res.locals.route ?? 'unknown'),
          method: req.method,
          status: aborted && !res.headersSent ? 0 : res.statusCode,
          start,
          requestId: id,
          remote,
          errorCode: res.locals.errorCode as string | undefined,
          error: res.locals.error as { message: string; detail?: unknown } | undefined,
          aborted: aborted || undefined,
        });
      };
      res.once('finish', () => done(false));
      res.once('close', () => done(!res.writableFinished));
      next();
    };
  }
}
