import * as http from 'node:http';
import { Registry } from 'prom-client';
import { deferredCounter } from '../../metrics/deferred-counter';
import { OcspAnswer, OcspService } from '../../ca/ocsp-service';
import { encodeOcspError } from '../../ca/ocsp-codec';
import { DeviceCaError, toDeviceCaError } from '../../errors/device-ca-error';
import { OCSP_ERROR_OUTCOME, OCSP_ERROR_STATUS } from './ocsp-error-map';

export interface OcspHandlerOptions {
  maxRequestBytes: number;
  maxAgeSeconds: number;
  registry: Registry;
}

/**
 * OcspReply is one answer of the OCSP adapter, before HTTP: the OCSPResponse (always with HTTP 200), the
 * headers beyond Content-Type and Content-Length, and what the access log needs to know of a failure.
 */
export interface OcspReply {
  der: Buffer;
  headers?: Record<string, string>;
  errorCode?: string;
  /** error: a failure of ours (internalError, tryLater), logged at error level with the request id */
  error?: DeviceCaError;
}

const GET_PREFIX = /^\/ocsp\/?/;
const BASE64 = /^[A-Za-z0-9+/]+=*$/;

/** OcspAnswerFn: one OCSP answer without HTTP (ocspAnswerer) */
export type OcspAnswerFn = (method: string, target: string, body: Buffer | null) => Promise<OcspReply>;

/**
 * OcspAnswerers: the OCSP adapter's two doors. `answer` answers any request; `answerKept` answers a repeated
 * cached request synchronously (OcspService.answerKept) and gives undefined for anything else, which then
 * goes to `answer`. Both give the same bytes and count alike.
 */
export interface OcspAnswerers {
  answer: OcspAnswerFn;
  answerKept(method: string, target: string, body: Buffer | null): OcspReply | undefined;
}

/**
 * ocspAnswerer is the OCSP adapter (RFC 6960 Appendix A, RFC 5019) without HTTP: POST with the DER request
 * as body, GET /ocsp/<url-encoded base64 request>. Every reply is an OCSPResponse for HTTP 200, errors
 * included, as clients expect: a thrown DeviceCaError becomes the status OCSP_ERROR_STATUS names; the
 * metrics count every outcome. Both the node:http route and the connection-level front
 * (http/fast-front.ts) call it, so the two give the same bytes.
 */
export function ocspAnswerer(service: OcspService, opts: OcspHandlerOptions): OcspAnswerFn {
  return ocspAnswerers(service, opts).answer;
}

/** ocspAnswerers: ocspAnswerer and its synchronous door for kept answers (OcspAnswerers). */
export function ocspAnswerers(service: OcspService, opts: OcspHandlerOptions): OcspAnswerers {
  // counted in plain numbers, added to the counter when /metrics reads it (metrics/deferred-counter.ts)
  const answers = deferredCounter(opts.registry, { name: 'device_ca_ocsp_responses_total', help: 'OCSP responses by method and outcome', labelNames: ['method', 'outcome'] });

  // the counter's child per method and outcome, looked up once; nested maps, not a joined key: no string is
  // built per answer
  const counted = new Map<string, Map<string, { inc(): void }>>();
  const count = (method: string, outcome: string) => {
    let byOutcome = counted.get(method);
    if (!byOutcome) counted.set(method, (byOutcome = new Map()));
    let c = byOutcome.get(outcome);
    if (!c) byOutcome.set(outcome, (c = answers({ method, outcome })));
    c.inc();
  };

  /** requestOf: the DER request: the body of a POST, the decoded target of a GET; null when it is not base64 or too long */
  const requestOf = (method: string, target: string, body: Buffer | null): Buffer | null => {
    if (method !== 'GET') return body;
    const raw = target.replace(GET_PREFIX, '');
    try {
      const b64 = decodeURIComponent(raw).replace(/-/g, '+').replace(/_/g, '/');
      if (b64.length > 0 && b64.length <= opts.maxRequestBytes * 2 && BASE64.test(b64)) return Buffer.from(b64, 'base64');
    } catch {
      // not percent-encoding: refused below as any other malformed request
    }
    return null;
  };

  /** success: the reply to an answer, counted; a GET gets RFC 5019 caching headers */
  const success = (method: string, a: OcspAnswer): OcspReply => {
    count(method, a.outcome);
    if (method !== 'GET') return { der: a.der };
    const headers: Record<string, string> = {};
    if (a.cache) {
      // RFC 5019 §6.2: caching headers bounded by nextUpdate
      const left = Math.floor((a.cache.nextUpdate.getTime() - Date.now()) / 1000);
      headers['Cache-Control'] = `max-age=${Math.max(0, Math.min(left, opts.maxAgeSeconds))}, public, no-transform, must-revalidate`;
      headers['Last-Modified'] = a.cache.thisUpdate.toUTCString();
      headers['Expires'] = a.cache.nextUpdate.toUTCString();
      headers['ETag'] = a.cache.etag;
    } else headers['Cache-Control'] = 'no-store';
    return { der: a.der, headers };
  };

  return {
    answer: async (method, target, body) => {
      const request = requestOf(method, target, body);
      try {
        if (request === null) throw new DeviceCaError('bad-request', 'OCSP request is not base64 DER or is over ocsp.maxRequestBytes');
        return success(method, await service.respond(request));
      } catch (thrown: unknown) {
        const e = toDeviceCaError(thrown);
        const status = OCSP_ERROR_STATUS[e.code];
        count(method, OCSP_ERROR_OUTCOME[status]);
        return {
          der: encodeOcspError(status),
          headers: method === 'GET' ? { 'Cache-Control': 'no-store' } : undefined,
          errorCode: e.code,
          error: status === 'internalError' || status === 'tryLater' ? e : undefined,
        };
      }
    },
    answerKept: (method, target, body) => {
      const request = requestOf(method, target, body);
      const a = request === null ? undefined : service.answerKept(request);
      return a && success(method, a);
    },
  };
}

/**
 * ocspHandler is the OCSP route on the raw node:http request, ahead of express: the requests the
 * connection-level front (http/fast-front.ts) hands over (chunked bodies, Expect, odd targets, other
 * methods). A failure of ours goes to res.locals.error, which the access log writes at error level with the
 * request id.
 */
export function ocspHandler(service: OcspService, opts: OcspHandlerOptions, answer = ocspAnswerer(service, opts)) {
  const send = (res: http.ServerResponse, r: OcspReply) => {
    const locals = (res as http.ServerResponse & { locals?: Record<string, unknown> }).locals;
    if (locals && r.errorCode) {
      locals.errorCode = r.errorCode;
      if (r.error) locals.error = r.error;
    }
    res.writeHead(
      200,
      r.headers ? { 'Content-Type': 'application/ocsp-response', 'Content-Length': r.der.length, ...r.headers } : { 'Content-Type': 'application/ocsp-response', 'Content-Length': r.der.length },
    );
    res.end(r.der);
  };

  return (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const method = req.method ?? '';
    if (method === 'GET') {
      void answer(method, req.url ?? '', null).then((r) => send(res, r));
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
    req.on('end', () => void answer(method, req.url ?? '', over ? null : Buffer.concat(chunks, size)).then((r) => send(res, r)));
    req.on('error', () => res.destroy());
  };
}

/**
 * OcspRoute: the OCSP route as createHttpListener takes it (http/listeners.ts FastRoute, structurally: the
 * adapter does not import the listener layer): the node:http handler and the connection-level front's part.
 */
export interface OcspRoute {
  prefix: string;
  route: string;
  handler: (req: http.IncomingMessage, res: http.ServerResponse) => void;
  front: {
    prefixes: string[];
    maxBody: number;
    accepts(method: string, target: string): boolean;
    answer(method: string, target: string, body: Buffer): Promise<{ status: number; headers: string; body: Buffer; errorCode?: string; error?: DeviceCaError }>;
    answerNow(method: string, target: string, body: Buffer): { status: number; headers: string; body: Buffer } | undefined;
  };
}

const CONTENT_TYPE = 'Content-Type: application/ocsp-response\r\n';

/** GET_TARGET: what the front answers itself for GET: /ocsp/ and URL-safe base64, percent-encoded or not */
const GET_TARGET = /^\/ocsp\/[A-Za-z0-9%+/=_-]+$/;

/**
 * ocspRoute is the OCSP route for createHttpListener: the node:http handler, and the same answers for the
 * connection-level front, which takes `POST /ocsp` with a Content-Length up to ocsp.maxRequestBytes and
 * `GET /ocsp/<base64>`; anything else on /ocsp reaches the node:http handler.
 */
export function ocspRoute(service: OcspService, opts: OcspHandlerOptions): OcspRoute {
  const { answer, answerKept } = ocspAnswerers(service, opts);
  const headersOf = (r: OcspReply) => {
    let headers = CONTENT_TYPE;
    if (r.headers) for (const k in r.headers) headers += `${k}: ${r.headers[k]}\r\n`;
    return headers;
  };
  return {
    prefix: '/ocsp',
    route: 'ocsp',
    handler: ocspHandler(service, opts, answer),
    front: {
      prefixes: ['POST /ocsp ', 'GET /ocsp/'],
      maxBody: opts.maxRequestBytes,
      accepts: (method, target) => (method === 'POST' ? target === '/ocsp' : method === 'GET' && GET_TARGET.test(target)),
      answer: async (method, target, body) => {
        const r = await answer(method, target, method === 'POST' ? body : null);
        return { status: 200, headers: headersOf(r), body: r.der, errorCode: r.errorCode, error: r.error };
      },
      answerNow: (method, target, body) => {
        const r = answerKept(method, target, method === 'POST' ? body : null);
        return r && { status: 200, headers: headersOf(r), body: r.der };
      },
    },
  };
}
