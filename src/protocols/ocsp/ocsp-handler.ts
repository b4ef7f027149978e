import * as http from 'node:http';
import { Counter, Registry } from 'prom-client';
import { OcspService } from '../../ca/ocsp-service';
import { encodeOcspError } from '../../ca/ocsp-codec';
import { DeviceCaError, toDeviceCaError } from '../../errors/device-ca-error';
import { OCSP_ERROR_OUTCOME, OCSP_ERROR_STATUS } from './ocsp-error-map';

/**
 * ocspHandler is the OCSP adapter (RFC 6960 Appendix A, RFC 5019): POST /ocsp with the DER request as
 * body, GET /ocsp/<url-encoded base64 request>. It runs on the raw Node request, ahead of express,
 * because it is the hottest path of the service. Every reply is an OCSPResponse with HTTP 200, errors
 * included, as clients expect: a thrown DeviceCaError becomes the status OCSP_ERROR_STATUS names. A
 * failure of ours (internalError, tryLater) goes to res.locals.error, which the access log writes at error
 * level with the request id; the metrics count every outcome.
 */
export function ocspHandler(service: OcspService, opts: { maxRequestBytes: number; maxAgeSeconds: number; registry: Registry }) {
  const answers =
    (opts.registry.getSingleMetric('device_ca_ocsp_responses_total') as Counter<'method' | 'outcome'>) ??
    new Counter({ name: 'device_ca_ocsp_responses_total', help: 'OCSP responses by method and outcome', labelNames: ['method', 'outcome'], registers: [opts.registry] });

  // the counter's child per method and outcome, looked up once (prom-client hashes a labels object per inc)
  const counted = new Map<string, { inc(): void }>();
  const count = (method: string, outcome: string) => {
    const key = `${method} ${outcome}`;
    let c = counted.get(key);
    if (!c) counted.set(key, (c = answers.labels({ method, outcome })));
    c.inc();
  };

  const send = (res: http.ServerResponse, der: Buffer, headers?: Record<string, string>) => {
    res.writeHead(
      200,
      headers ? { 'Content-Type': 'application/ocsp-response', 'Content-Length': der.length, ...headers } : { 'Content-Type': 'application/ocsp-response', 'Content-Length': der.length },
    );
    res.end(der);
  };

  return (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const method = req.method ?? '';
    const answer = (request: Buffer | null) => {
      const work = request === null ? Promise.reject(new DeviceCaError('bad-request', 'OCSP request is not base64 DER or is over ocsp.maxRequestBytes')) : service.respond(request);
      work.then(
        (a) => {
          count(method, a.outcome);
          if (method !== 'GET') return send(res, a.der);
          const headers: Record<string, string> = {};
          if (a.cache) {
            // RFC 5019 §6.2: caching headers bounded by nextUpdate
            const left = Math.floor((a.cache.nextUpdate.getTime() - Date.now()) / 1000);
            headers['Cache-Control'] = `max-age=${Math.max(0, Math.min(left, opts.maxAgeSeconds))}, public, no-transform, must-revalidate`;
            headers['Last-Modified'] = a.cache.thisUpdate.toUTCString();
            headers['Expires'] = a.cache.nextUpdate.toUTCString();
            headers['ETag'] = a.cache.etag;
          } else headers['Cache-Control'] = 'no-store';
          send(res, a.der, headers);
        },
        (thrown: unknown) => {
          const e = toDeviceCaError(thrown);
          const status = OCSP_ERROR_STATUS[e.code];
          count(method, OCSP_ERROR_OUTCOME[status]);
          const locals = (res as http.ServerResponse & { locals?: Record<string, unknown> }).locals;
          if (locals) {
            locals.errorCode = e.code;
            if (status === 'internalError' || status === 'tryLater') locals.error = e;
          }
          send(res, encodeOcspError(status), method === 'GET' ? { 'Cache-Control': 'no-store' } : undefined);
        },
      );
    };

    if (method === 'GET') {
      const raw = (req.url ?? '').replace(/^\/ocsp\/?/, '');
      let der: Buffer | null = null;
      try {
        const b64 = decodeURIComponent(raw).replace(/-/g, '+').replace(/_/g, '/');
        if (b64.length > 0 && b64.length <= opts.maxRequestBytes * 2 && /^[A-Za-z0-9+/]+=*$/.test(b64)) der = Buffer.from(b64, 'base64');
      } catch {
        der = null;
      }
      answer(der);
      return;
    }
    if (method !== 'POST') {
      res.writeHead(405, { Allow: 'GET, POST', 'Content-Type': 'text/plain', 'Content-Length': 19 });
      res.end('method not allowed\n');
      return;
    }
    const declared = Number(req.headers['content-length'] ?? 0);
    const chunks: Buffer[] = [];
    let size = 0;
    let over = declared > opts.maxRequestBytes;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > opts.maxRequestBytes) over = true;
      else chunks.push(c);
    });
    req.on('end', () => answer(over ? null : Buffer.concat(chunks, size)));
    req.on('error', () => res.destroy());
  };
}
