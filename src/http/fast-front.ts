import * as http from 'node:http';
import * as net from 'node:net';
import { HttpObservability } from './request-context';
import { FastHead, headEnd, parseFastHead } from './http1-head';

/**
 * FrontRoute: a hot route (OCSP) the connection-level front answers itself, without node:http.
 * `prefixes` are the first bytes of the request line it takes (e.g. `POST /ocsp `); `accepts` decides on the
 * parsed method and target; a POST body is read only up to `maxBody` (a larger Content-Length goes to
 * node:http, which answers it as the route always has).
 */
export interface FrontRoute {
  route: string;
  prefixes: string[];
  maxBody: number;
  accepts(method: string, target: string): boolean;
  answer(method: string, target: string, body: Buffer): Promise<FrontReply>;
  /**
   * answerNow: the reply when the route has it at hand (a kept OCSP answer), without a promise; undefined
   * sends the request to `answer`. Optional.
   */
  answerNow?(method: string, target: string, body: Buffer): FrontReply | undefined;
}

/** FrontReply: status, header lines (each ending CRLF; Content-Length, Date, Connection are added), body. */
export interface FrontReply {
  status: number;
  headers: string;
  body: Buffer;
  errorCode?: string;
  error?: { message: string; detail?: unknown };
}

/** FrontLimits: the node:http server's limits, which the front applies the same way or more strictly. */
export interface FrontLimits {
  maxHeaderSize: number;
  headersTimeout: number;
  requestTimeout: number;
  keepAliveTimeout: number;
}

const REASON: Record<number, string> = { 200: 'OK', 408: 'Request Timeout', 500: 'Internal Server Error' };
const TIMEOUT_REPLY = Buffer.from('HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n', 'latin1');

let dateSecond = 0;
let dateText = '';
/** httpDate: the Date header (RFC 9110 §6.6.1), formatted once per second as node:http does */
function httpDate(): string {
  const now = Date.now();
  const s = Math.floor(now / 1000);
  if (s !== dateSecond) {
    dateSecond = s;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}

type ConnectionListener = (this: http.Server, socket: net.Socket) => void;

/**
 * attachFastFront puts a connection-level front before a node:http server: it reads the first request's
 * head on the raw socket; when it is one a FrontRoute takes (the plain shape http1-head.ts accepts, a
 * Content-Length within the route's limit), the front answers it, and the keep-alive and pipelined requests
 * that follow, writing each reply as one buffer. node:http costs about as much CPU per request as all of the
 * OCSP work of a cached answer (bench/ocsp-http, the node:http floor row); this is what the front saves.
 * Anything else (another path or method, chunked, Expect, Upgrade, a head node:http would refuse, a head over
 * maxHeaderSize) is handed to node:http with the bytes read so far (socket.unshift, then node:http's own
 * connection listener), so every other route keeps its behaviour, errors included.
 *
 * Limits: a head must be complete within maxHeaderSize bytes and headersTimeout, a request within
 * requestTimeout, both counted from the request's first byte (else 408 and close: one deadline, which bytes
 * dripped slowly do not push back, unlike the socket's idle timeout); a connection idle for keepAliveTimeout after an answer is closed
 * (headersTimeout before the first request); an unanswered pipeline is read no further than one head and
 * one body ahead. `Connection: close` and HTTP/1.0 without keep-alive end the connection after the answer;
 * after server.close() every answer ends its connection. server.closeIdleConnections and
 * closeAllConnections include the front's connections. Every answer is counted and logged by
 * HttpObservability.record like a request through express.
 */
export function attachFastFront(server: http.Server, routes: FrontRoute[], obs: HttpObservability, limits: FrontLimits): void {
  if (routes.length === 0) return;
  const nodeListeners = server.listeners('connection') as ConnectionListener[];
  server.removeAllListeners('connection');
  const open = new Set<FrontConnection>();
  const prefixes = routes.flatMap((r) => r.prefixes.map((p) => Buffer.from(p, 'latin1')));
  const ctx: FrontContext = {
    server,
    routes,
    obs,
    limits,
    prefixes,
    maxBody: Math.max(...routes.map((r) => r.maxBody)),
    keepAliveTail: `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(limits.keepAliveTimeout / 1000)}\r\n\r\n`,
    open,
    handOver: (socket, pending) => {
      socket.pause();
      for (const l of nodeListeners) l.call(server, socket);
      if (pending && pending.length > 0) socket.unshift(pending);
      socket.resume();
    },
  };
  server.on('connection', (socket: net.Socket) => new FrontConnection(socket, ctx).start());
  const closeIdle = server.closeIdleConnections.bind(server);
  const closeAll = server.closeAllConnections.bind(server);
  server.closeIdleConnections = () => {
    closeIdle();
    for (const c of open) if (c.idle()) c.socket.destroy();
  };
  server.closeAllConnections = () => {
    closeAll();
    for (const c of open) c.socket.destroy();
  };
}

interface FrontContext {
  server: http.Server;
  routes: FrontRoute[];
  obs: HttpObservability;
  limits: FrontLimits;
  prefixes: Buffer[];
  /** maxBody: the largest body any route reads */
  maxBody: number;
  /** keepAliveTail: the last lines of a head that keeps the connection open (the limits are fixed) */
  keepAliveTail: string;
  open: Set<FrontConnection>;
  handOver(socket: net.Socket, pending: Buffer | null): void;
}

/** startsLike: whether buf starts with prefix, or (shorter) could still turn out to */
function startsLike(buf: Buffer, prefix: Buffer): boolean {
  const n = Math.min(buf.length, prefix.length);
  return buf.compare(prefix, 0, n, 0, n) === 0;
}

/** hasBareLf: whether buf holds a LF not preceded by CR (a head node:http may read differently) */
function hasBareLf(buf: Buffer): boolean {
  for (let i = buf.indexOf(0x0a); i >= 0; i = buf.indexOf(0x0a, i + 1)) if (i === 0 || buf[i - 1] !== 0x0d) return true;
  return false;
}

/** FrontConnection: one connection the front serves until it hands it over or it ends. */
class FrontConnection {
  private buf: Buffer | null = null;
  private busy = false;
  private done = false;
  /** requestStart: Date.now() when the first byte of the request being read arrived; 0 between requests */
  private requestStart = 0;
  private answered = 0;
  /**
   * lastHead, lastParsed: the bytes of the last head this connection sent (up to its blank line) and its
   * parse. A client sends the same head for every request of its connection unless something in it changes
   * (a new Content-Length, a request id): equal bytes are equal heads, compared instead of parsed again.
   */
  private lastHead: Buffer | null = null;
  private lastParsed: FastHead | null = null;
  /** deadline: the timer ending the request being read at deadlineAt (requestStart + a limit); null when none is set */
  private deadline: NodeJS.Timeout | null = null;
  private deadlineAt = 0;
  private readonly onDeadline = () => {
    this.deadline = null;
    if (!this.done && !this.busy) this.requestTimedOut();
  };
  private readonly onData = (chunk: Buffer) => this.data(chunk);
  private readonly onTimeout = () => this.timeout();
  private readonly onError = () => this.socket.destroy();
  private readonly onClose = () => {
    this.clearDeadline();
    this.ctx.open.delete(this);
  };
  /** remote: the client's address, read only when an access line is written (HttpObservability.record) */
  private readonly remote = () => this.socket.remoteAddress;

  constructor(
    readonly socket: net.Socket,
    private readonly ctx: FrontContext,
  ) {}

  start(): void {
    this.ctx.open.add(this);
    this.socket.on('data', this.onData);
    this.socket.on('timeout', this.onTimeout);
    this.socket.on('error', this.onError);
    this.socket.on('close', this.onClose);
    this.socket.setTimeout(this.ctx.limits.headersTimeout);
  }

  /** idle: no request being read or answered (what closeIdleConnections may close) */
  idle(): boolean {
    return !this.busy && this.buf === null;
  }

  private data(chunk: Buffer): void {
    if (this.done) return;
    this.buf = this.buf === null ? chunk : Buffer.concat([this.buf, chunk]);
    if (this.busy) {
      // pipelined requests wait; read no further than one more request's worth
      if (this.buf.length > this.ctx.limits.maxHeaderSize + this.ctx.maxBody) this.socket.pause();
      return;
    }
    this.next();
  }

  /**
   * next: answer the requests at the start of buf while they are complete and answered at once (answerNow);
   * stop at one answered asynchronously (its reply calls next again) or at an incomplete one; hand over
   * what the front does not take.
   */
  private next(): void {
    while (this.step());
  }

  /** step: one request of next; true when it was answered at once and the connection may read the next one */
  private step(): boolean {
    const buf = this.buf;
    if (buf === null || this.busy || this.done) return false;
    if (this.requestStart === 0) this.requestStart = Date.now();
    if (!this.ctx.prefixes.some((p) => startsLike(buf, p))) return (this.handOver(), false);
    const end = headEnd(buf, 0);
    if (end < 0) {
      // node:http answers an oversized head (431) and decides on a bare LF
      if (buf.length > this.ctx.limits.maxHeaderSize || hasBareLf(buf)) return (this.handOver(), false);
      if (this.late(this.ctx.limits.headersTimeout)) this.requestTimedOut();
      else this.waitAtMost(this.ctx.limits.headersTimeout);
      return false;
    }
    if (end - 4 > this.ctx.limits.maxHeaderSize) return (this.handOver(), false);
    const head = this.headOf(buf, end);
    const route = head ? this.ctx.routes.find((r) => r.accepts(head.method, head.target)) : undefined;
    if (!head || !route || head.contentLength > route.maxBody || (head.method !== 'POST' && head.contentLength > 0)) return (this.handOver(), false);
    if (buf.length < end + head.contentLength) {
      if (this.late(this.ctx.limits.requestTimeout)) this.requestTimedOut();
      else this.waitAtMost(this.ctx.limits.requestTimeout);
      return false;
    }
    const body = buf.subarray(end, end + head.contentLength);
    this.buf = buf.length > end + head.contentLength ? buf.subarray(end + head.contentLength) : null;
    return this.answer(head, route, body);
  }

  /** headOf: the parsed head ending at `end` in buf (parseFastHead), or null; the last one again when the bytes are equal */
  private headOf(buf: Buffer, end: number): FastHead | null {
    const last = this.lastHead;
    if (last !== null && last.length === end && buf.compare(last, 0, end, 0, end) === 0) return this.lastParsed;
    const head = parseFastHead(buf.toString('latin1', 0, end - 4));
    this.lastHead = head ? Buffer.from(buf.subarray(0, end)) : null; // a copy: buf is not ours to keep
    this.lastParsed = head;
    return head;
  }

  private late(limit: number): boolean {
    return Date.now() - this.requestStart > limit;
  }

  /**
   * waitAtMost sets the deadline of the request being read to requestStart + limit. The socket's idle
   * timeout alone restarts with every byte, so a head dripped just inside it took up to twice
   * headersTimeout; a request that arrives in one piece never sets a timer.
   */
  private waitAtMost(limit: number): void {
    const at = this.requestStart + limit;
    if (this.deadline !== null && this.deadlineAt === at) return;
    this.clearDeadline();
    this.deadlineAt = at;
    this.deadline = setTimeout(this.onDeadline, Math.max(0, at - Date.now()));
  }

  private clearDeadline(): void {
    if (this.deadline === null) return;
    clearTimeout(this.deadline);
    this.deadline = null;
  }

  /** answer: one request; true when it was answered at once and the connection may go on (step) */
  private answer(head: FastHead, route: FrontRoute, body: Buffer): boolean {
    const start = process.hrtime.bigint();
    const requestId = this.ctx.obs.requestIdFor(head.requestId);
    let now: FrontReply | undefined;
    try {
      now = route.answerNow?.(head.method, head.target, body);
    } catch {
      now = undefined; // `answer` decides, and reports a failure as it always has
    }
    if (now) return this.reply(head, route, start, requestId, now);
    this.busy = true;
    const go = (r: FrontReply) => {
      if (this.reply(head, route, start, requestId, r)) this.next();
    };
    route.answer(head.method, head.target, body).then(go, (e: unknown) =>
      go({
        status: 500,
        headers: 'Content-Type: text/plain\r\n',
        body: Buffer.from('internal error\n'),
        errorCode: 'internal',
        error: { message: (e as Error)?.message ?? String(e) },
      }),
    );
    return false;
  }

  /** reply writes one answer; true when the connection may read its next request now (else the end, or a drain, decides) */
  private reply(head: FastHead, route: FrontRoute, start: bigint, requestId: string, r: FrontReply): boolean {
    this.busy = false;
    this.requestStart = 0;
    this.clearDeadline();
    this.answered++;
    const keepAlive = head.keepAlive && r.status < 500 && this.ctx.server.listening;
    const text =
      `HTTP/1.1 ${r.status} ${REASON[r.status] ?? ''}\r\n${r.headers}Content-Length: ${r.body.length}\r\nDate: ${httpDate()}\r\nX-Request-Id: ${requestId}\r\n` +
      (keepAlive ? this.ctx.keepAliveTail : 'Connection: close\r\n\r\n');
    const out = Buffer.allocUnsafe(text.length + r.body.length);
    out.write(text, 0, 'latin1');
    r.body.copy(out, text.length);
    // a client gone while the answer was made (the socket destroyed, or its FIN read: node:http aborts the
    // requests of a connection whose client ended it, httpAllowHalfOpen being false) gets nothing; recorded
    // as request-context.ts records a response cut before its head (aborted, status 0)
    const gone = this.socket.destroyed || this.socket.readableEnded;
    this.ctx.obs.record({
      route: route.route,
      method: head.method,
      status: gone ? 0 : r.status,
      start,
      requestId,
      remote: this.remote,
      errorCode: r.errorCode,
      error: r.error,
      aborted: gone || undefined,
    });
    if (gone) {
      this.socket.destroy();
      return false;
    }
    if (!keepAlive) {
      this.finish(out);
      return false;
    }
    if (this.answered === 1) this.socket.setTimeout(this.ctx.limits.keepAliveTimeout);
    if (!this.socket.write(out)) {
      // a client that does not read its answers: read no more requests until they are taken
      this.busy = true;
      this.socket.pause();
      this.socket.once('drain', () => {
        this.busy = false;
        this.socket.resume();
        this.next();
      });
      return false;
    }
    if (this.socket.isPaused()) this.socket.resume();
    return true;
  }

  /**
   * finish writes the last bytes and closes the connection once they are written (destroySoon, as node:http
   * does after a `Connection: close` answer), so a client that never closes its side holds nothing open.
   */
  private finish(out: Buffer): void {
    this.done = true;
    this.clearDeadline();
    this.buf = null;
    this.socket.removeListener('data', this.onData);
    this.socket.write(out);
    this.socket.destroySoon();
  }

  private requestTimedOut(): void {
    this.finish(TIMEOUT_REPLY);
  }

  private timeout(): void {
    if (this.done) return void this.socket.destroy(); // ended by us, and the client never closed its side
    if (this.busy) return; // an answer in flight: its reply decides
    if (this.buf === null)
      this.socket.destroy(); // idle keep-alive connection
    else this.requestTimedOut();
  }

  /** handOver: node:http takes the connection from here, with the bytes read and not yet answered. */
  private handOver(): void {
    const pending = this.buf;
    this.buf = null;
    this.done = true;
    this.clearDeadline();
    this.ctx.open.delete(this);
    this.socket.removeListener('data', this.onData);
    this.socket.removeListener('timeout', this.onTimeout);
    this.socket.removeListener('error', this.onError);
    this.socket.removeListener('close', this.onClose);
    this.socket.setTimeout(0);
    this.ctx.handOver(this.socket, pending);
  }
}
