import * as http from 'node:http';
import { DeviceCaError, toDeviceCaError } from '../errors/device-ca-error';
import { HTTP_ERROR_STATUS } from './http-error-status';

/**
 * DEFAULT_RETRY_AFTER_SECONDS is sent with a 429 or 503 whose error names no delay of its own: RFC 9110
 * §10.2.3 makes Retry-After the way to tell a client when to come back, and devices without it tend to
 * retry at once, in a loop, against a service that is already overloaded or waiting for its key store.
 */
export const DEFAULT_RETRY_AFTER_SECONDS = 30;

/** HttpErrorReplyOptions: what differs between the HTTP protocols; everything else is the same reply. */
export interface HttpErrorReplyOptions {
  /** format: short text/plain reasons (EST, CRL: what curl users and devices read) or the admin API's JSON */
  format: 'text' | 'json';
  /** challenge: the WWW-Authenticate value on 401 (RFC 9110 §11.6.1 requires one), e.g. `Basic realm="..."` */
  challenge: string;
}

/** the response as express gives it: res.locals carries the request id in and the error out to the access log */
type ReplyTarget = http.ServerResponse & { locals: Record<string, unknown> };

/**
 * sendHttpError is the one error reply of the HTTP protocols (EST, admin API, CRL): the status from the one
 * table (HTTP_ERROR_STATUS), `WWW-Authenticate` on 401, `Retry-After` on every 429 and 503, always a
 * Content-Length. A 4xx tells the client the error's short message. A 5xx body says only what kind of
 * failure it was and the request id: the message and detail go to the access log (HttpObservability, which
 * logs res.locals.error with the same request id) so an operator can find them, and never to the client.
 */
export function sendHttpError(res: ReplyTarget, thrown: unknown, opts: HttpErrorReplyOptions): void {
  const e = toDeviceCaError(thrown);
  const status = HTTP_ERROR_STATUS[e.code];
  const requestId = requestIdOf(res);
  res.locals.errorCode = e.code;
  if (status >= 500 && status !== 501) res.locals.error = e; // a failure of ours: logged at error level
  if (res.headersSent) {
    res.destroy(); // a reply was already under way: the client must not take half of it as whole
    return;
  }
  const headers: Record<string, string | number> = {};
  if (status === 401) headers['WWW-Authenticate'] = opts.challenge;
  if (status === 429 || status === 503) headers['Retry-After'] = String(retryAfter(e));
  const message = status >= 500 ? publicReason(status) : e.message;
  let body: string;
  if (opts.format === 'json') {
    headers['Content-Type'] = 'application/json; charset=utf-8';
    body = JSON.stringify({ error: { code: e.code, message, ...(requestId ? { requestId } : {}) } });
  } else {
    headers['Content-Type'] = 'text/plain; charset=utf-8';
    body = status >= 500 && requestId ? `${message}, request id ${requestId}\n` : `${message}\n`;
  }
  headers['Content-Length'] = Buffer.byteLength(body);
  res.writeHead(status, headers);
  res.end(body);
}

/** publicReason: all a client learns of a 5xx, e.g. "internal error", "service unavailable" */
function publicReason(status: number): string {
  return (http.STATUS_CODES[status] ?? 'internal error').toLowerCase().replace(/^internal server error$/, 'internal error');
}

function retryAfter(e: DeviceCaError): number {
  const s = e.retryAfterSeconds;
  return s !== undefined && Number.isFinite(s) && s >= 0 ? Math.ceil(s) : DEFAULT_RETRY_AFTER_SECONDS;
}

/** requestIdOf: the id HttpObservability gave this request (also sent as X-Request-Id) */
function requestIdOf(res: ReplyTarget): string | undefined {
  const id = res.locals.requestId ?? res.getHeader('X-Request-Id');
  return typeof id === 'string' ? id : undefined;
}
