import { performance } from 'node:perf_hooks';
import * as tls from 'node:tls';

/**
 * est-client is the EST benchmark's load generator, run as its own process (child_process.fork) so the
 * numbers it reports are not disturbed by the orchestrator and its client-side crypto is the same in
 * every run. By default each request is a NEW TLS connection (full handshake, no session resumption: no
 * session is ever offered) with a hand-written HTTP/1.1 request and `Connection: close`; with
 * `connection: 'keep-alive'` each of the `concurrency` lanes keeps one TLS connection and sends its
 * requests on it one after another (requests then say `Connection: keep-alive`). A fixed number of
 * requests are kept in flight for a fixed time.
 */

/** ClientRequest is one request: raw HTTP/1.1 text (none: TLS connect, then close) and a TLS identity. */
export interface ClientRequest {
  http?: string;
  /** index into ClientJob.identities: the TLS client certificate to present */
  identity?: number;
}

export interface ClientJob {
  port: number;
  concurrency: number;
  durationMs: number;
  requests: ClientRequest[];
  /** cycle: reuse requests round-robin; otherwise each is sent once (one-time secrets) */
  cycle: boolean;
  identities: { certPem: string; keyPem: string }[];
  /**
   * connection: 'new' (default) a TLS connection per request; 'keep-alive' one per lane, reused (lane i
   * presents identity i % identities.length and sends only the requests made for that identity)
   */
  connection?: 'new' | 'keep-alive';
}

export interface ClientResult {
  /** sent: requests started, including those still in flight at the deadline (their secrets are spent) */
  sent: number;
  ok: number;
  failed: number;
  elapsedMs: number;
  /** exhausted: every request was sent before the time was up, so elapsedMs is shorter */
  exhausted: boolean;
  statuses: Record<string, number>;
  /** latMs: latency of each counted success, connect to close */
  latMs: number[];
  clientCpuMs: number;
  firstError?: string;
}

type One = { ok: boolean; status: string; ms: number; error?: string };

/**
 * Tally counts the replies that complete before a job's deadline and builds its ClientResult: one place for
 * both connection modes (a new TLS connection per request, or keep-alive lanes).
 */
class Tally {
  private readonly statuses: Record<string, number> = {};
  private readonly lat: number[] = [];
  private ok = 0;
  private failed = 0;
  private last = 0;
  private firstError: string | undefined;
  private readonly cpu0 = process.cpuUsage();
  private readonly start = performance.now();
  readonly deadline: number;

  constructor(private readonly job: ClientJob) {
    this.deadline = this.start + job.durationMs;
  }

  /** count: one reply, unless it completed after the deadline */
  count(r: One): void {
    const t = performance.now();
    if (t > this.deadline) return;
    this.last = t;
    this.statuses[r.status] = (this.statuses[r.status] ?? 0) + 1;
    if (r.ok) {
      this.ok++;
      this.lat.push(r.ms);
    } else {
      this.failed++;
      this.firstError = this.firstError ?? r.error;
    }
  }

  /** result: `sent` requests started; `next` is how far the shared request list was consumed */
  result(sent: number, next: number): ClientResult {
    const exhausted = !this.job.cycle && next >= this.job.requests.length && this.last < this.deadline;
    const cpu = process.cpuUsage(this.cpu0);
    return {
      sent,
      ok: this.ok,
      failed: this.failed,
      elapsedMs: exhausted ? this.last - this.start : this.job.durationMs,
      exhausted,
      statuses: this.statuses,
      latMs: this.lat.map((x) => Math.round(x * 100) / 100),
      clientCpuMs: (cpu.user + cpu.system) / 1000,
      firstError: this.firstError,
    };
  }
}

function once(port: number, ctx: tls.SecureContext, req: ClientRequest): Promise<One> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let status = '';
    let head = '';
    let error: string | undefined;
    const s = tls.connect({ host: '127.0.0.1', port, secureContext: ctx, rejectUnauthorized: false });
    s.setTimeout(15_000, () => s.destroy(new Error('timeout')));
    s.on('secureConnect', () => {
      // connect+close: half-close and wait for the server's close, so its side of the handshake is done too.
      // A request is written without half-closing: node's HTTP server aborts a request whose client has ended.
      if (req.http === undefined) s.end();
      else s.write(req.http);
    });
    s.on('data', (d: Buffer) => {
      if (status || head.length > 256) return;
      head += d.toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(head);
      if (m) status = m[1];
    });
    s.on('error', (e) => (error = error ?? e.message));
    s.on('close', () => {
      const ok = !error && (req.http === undefined ? true : status.startsWith('2'));
      resolve({
        ok,
        status: error ? 'error' : req.http === undefined ? 'closed' : status || 'no-status',
        ms: performance.now() - t0,
        error: error ?? (ok ? undefined : `HTTP ${status}: ${head.split('\r\n\r\n')[1]?.slice(0, 200) ?? ''}`),
      });
    });
  });
}

/**
 * responseEnd: where the first complete HTTP/1.1 response in `buf` ends (Content-Length or chunked),
 * with its status; null while incomplete.
 */
function responseEnd(buf: Buffer): { end: number; status: string; head: string } | null {
  const h = buf.indexOf('\r\n\r\n');
  if (h < 0) return null;
  const head = buf.subarray(0, h).toString('latin1');
  const status = /^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 'no-status';
  const len = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  if (len) {
    const end = h + 4 + Number(len[1]);
    return buf.length >= end ? { end, status, head: buf.subarray(0, end).toString('latin1') } : null;
  }
  if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
    const z = buf.indexOf('\r\n0\r\n\r\n', h);
    return z < 0 ? null : { end: z + 7, status, head: buf.subarray(0, z + 7).toString('latin1') };
  }
  return { end: h + 4, status, head };
}

/**
 * keepAliveLane sends `next()`'s requests one after another on one TLS connection (opened again when the
 * server closes it), reporting each; it stops when next() gives nothing.
 */
function keepAliveLane(port: number, ctx: tls.SecureContext, next: () => ClientRequest | undefined, report: (r: One) => void): Promise<void> {
  return new Promise((done) => {
    let s: tls.TLSSocket | null = null;
    let buf = Buffer.alloc(0);
    let waiting: ((r: One) => void) | null = null;
    let t0 = 0;
    const connect = (): Promise<tls.TLSSocket> =>
      new Promise((resolve) => {
        const c = tls.connect({ host: '127.0.0.1', port, secureContext: ctx, rejectUnauthorized: false });
        c.setTimeout(15_000, () => c.destroy(new Error('timeout')));
        c.on('secureConnect', () => resolve(c));
        c.on('data', (d: Buffer) => {
          buf = Buffer.concat([buf, d]);
          const r = responseEnd(buf);
          if (r && waiting) {
            buf = buf.subarray(r.end);
            const w = waiting;
            waiting = null;
            const ok = r.status.startsWith('2');
            w({ ok, status: r.status, ms: performance.now() - t0, error: ok ? undefined : `HTTP ${r.status}: ${r.head.split('\r\n\r\n')[1]?.slice(0, 200) ?? ''}` });
          }
        });
        const fail = (e?: Error) => {
          if (s === c) s = null;
          resolve(c); // a connection that failed before it was up: the request on it reports the error
          if (waiting) {
            const w = waiting;
            waiting = null;
            w({ ok: false, status: 'error', ms: performance.now() - t0, error: e?.message ?? 'connection closed' });
          }
        };
        c.on('error', fail);
        c.on('close', () => fail());
      });
    const loop = async () => {
      for (let req = next(); req !== undefined; req = next()) {
        t0 = performance.now();
        if (!s || s.destroyed) {
          buf = Buffer.alloc(0);
          s = await connect();
        }
        const sock = s;
        report(
          await new Promise<One>((resolve) => {
            waiting = resolve;
            if (sock.destroyed) {
              waiting = null;
              resolve({ ok: false, status: 'error', ms: performance.now() - t0, error: 'connection closed' });
            } else sock.write(req.http ?? '');
          }),
        );
      }
      s?.end();
      done();
    };
    void loop();
  });
}

/** runJob keeps job.concurrency requests in flight for job.durationMs; completions after the deadline are not counted. */
export function runJob(job: ClientJob): Promise<ClientResult> {
  if (job.connection === 'keep-alive') return runKeepAlive(job);
  const anon = tls.createSecureContext({});
  const ctxs = job.identities.map((i) => tls.createSecureContext({ cert: i.certPem, key: i.keyPem }));
  const tally = new Tally(job);
  let next = 0;
  let inflight = 0;
  return new Promise((resolve) => {
    const launch = () => {
      while (inflight < job.concurrency && performance.now() < tally.deadline && (job.cycle || next < job.requests.length)) {
        const req = job.requests[next++ % job.requests.length];
        inflight++;
        void once(job.port, req.identity === undefined ? anon : ctxs[req.identity], req).then((r) => {
          inflight--;
          tally.count(r);
          launch();
        });
      }
      if (inflight === 0) resolve(tally.result(next, next));
    };
    launch();
  });
}

/** runKeepAlive is runJob with one reused connection per lane (see ClientJob.connection). */
async function runKeepAlive(job: ClientJob): Promise<ClientResult> {
  const anon = tls.createSecureContext({});
  const ctxs = job.identities.map((i) => tls.createSecureContext({ cert: i.certPem, key: i.keyPem }));
  const tally = new Tally(job);
  const deadline = tally.deadline;
  let sent = 0;
  let next = 0;
  const lanes = Array.from({ length: job.concurrency }, (_, lane) => {
    const identity = job.identities.length ? lane % job.identities.length : undefined;
    const mine = identity === undefined ? [] : job.requests.filter((r) => r.identity === identity);
    let k = 0;
    const pick = (): ClientRequest | undefined => {
      if (performance.now() >= deadline) return undefined;
      if (identity !== undefined) {
        if (mine.length === 0) return undefined;
        sent++;
        return mine[k++ % mine.length];
      }
      if (!job.cycle && next >= job.requests.length) return undefined;
      sent++;
      return job.requests[next++ % job.requests.length];
    };
    return keepAliveLane(job.port, identity === undefined ? anon : ctxs[identity], pick, (r) => tally.count(r));
  });
  await Promise.all(lanes);
  return tally.result(sent, next);
}

if (require.main === module && process.send) {
  process.on('message', (m: { type: string; job: ClientJob }) => {
    if (m.type === 'run') void runJob(m.job).then((result) => process.send!({ type: 'result', result }));
    if (m.type === 'exit') process.disconnect();
  });
  process.send({ type: 'ready' });
}
