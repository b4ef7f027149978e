import * as crypto from 'node:crypto';
import * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import { Tlv, children, decodeOid, readOne } from '../src/der/der-reader';

/**
 * ocsp-http-client is the load generator of bench/ocsp-http, run as its own Node process (fork) so its
 * event loop never shares one with the server or the harness. Raw sockets and a minimal HTTP/1.x reader:
 * Node's http client costs several times more CPU per request, and on a 2-core machine every microsecond
 * the client spends is taken from the server.
 *
 * Each of `concurrency` connections sends one request, waits for the whole response, then sends the next
 * (keep-alive, no pipelining). A server that closes the connection after a response (openssl's responder,
 * or `Connection: close` mode) is reconnected to at once, so the rate then includes a TCP connect per
 * request. Requests cycle over a pool of real DER OCSP requests; a request with a nonce gets a fresh one
 * for every send (a per-connection random prefix and a counter), so no two nonces in a run are equal.
 *
 * Every response is checked cheaply (HTTP 200, OCSPResponseStatus successful). Every `checkEvery`-th is
 * parsed (its SingleResponse must echo the request's CertID, carry the expected status, and echo exactly the
 * nonce sent, or carry none when none was sent; thisUpdate <= now < nextUpdate when present) and every
 * `verifyEvery`-th also has its signature verified with the responder's public key.
 */

export interface ClientRequestSpec {
  method: 'POST' | 'GET';
  /** path: "/ocsp" for POST, "/ocsp/<url-encoded base64>" for GET */
  path: string;
  /** body: the DER OCSPRequest (POST), base64 */
  body?: string;
  /** certId: the CertID DER the response must echo, base64 */
  certId: string;
  expect: 'good' | 'revoked';
  /** nonceOffset: where in body the 16 nonce octets sit (fresh ones are written there for each send) */
  nonceOffset?: number;
}

export interface ClientJob {
  host: string;
  port: number;
  concurrency: number;
  /** close: send `Connection: close` (a new connection per request) */
  connection: 'keep-alive' | 'close';
  warmupMs: number;
  durationMs: number;
  requests: ClientRequestSpec[];
  checkEvery: number;
  verifyEvery: number;
  /** initialChecks: the first responses of the run (warm-up) are all parsed and verified; default 4 per connection */
  initialChecks?: number;
  /** responderKey: SPKI PEM of the key that must have signed every response */
  responderKey: string;
}

export interface ClientResult {
  responses: number;
  /** responses before the timed window (warm-up) */
  warmupResponses: number;
  seconds: number;
  rate: number;
  /** HTTP or OCSP-level failures, and failed checks, in the timed window */
  errors: number;
  firstError?: string;
  checked: number;
  verified: number;
  /** connections opened in the timed window (reconnects after a server close included) */
  connects: number;
  /** per-response latency, ms */
  p50: number;
  p99: number;
  /** client CPU per response in the timed window, µs */
  clientCpuUs: number;
  outcomes: Record<string, number>;
  httpVersions: string[];
}

export type ClientMessage = { type: 'window-start' } | { type: 'window-end' } | { type: 'result'; result: ClientResult } | { type: 'failed'; message: string };

const OID_NONCE = '1.3.6.1.5.5.7.48.1.2';
const SIG_HASH: Record<string, string> = {
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
};

interface Prepared {
  spec: ClientRequestSpec;
  head: Buffer;
  body: Buffer | null;
  certId: Buffer;
}

/** prepare builds each request's bytes once: request line and headers, then the body. */
function prepare(job: ClientJob): Prepared[] {
  const conn = job.connection === 'close' ? 'Connection: close\r\n' : '';
  return job.requests.map((spec) => {
    const body = spec.body ? Buffer.from(spec.body, 'base64') : null;
    const head =
      spec.method === 'POST'
        ? `POST ${spec.path} HTTP/1.1\r\nHost: ${job.host}:${job.port}\r\n${conn}Content-Type: application/ocsp-request\r\nContent-Length: ${body?.length ?? 0}\r\n\r\n`
        : `GET ${spec.path} HTTP/1.1\r\nHost: ${job.host}:${job.port}\r\n${conn}\r\n`;
    return { spec, head: Buffer.from(head, 'latin1'), body, certId: Buffer.from(spec.certId, 'base64') };
  });
}

/** successful: the OCSPResponse starts with SEQUENCE { ENUMERATED 0, ... } (RFC 6960 §4.2.1), checked without parsing. */
function successful(b: Buffer): boolean {
  if (b.length < 8 || b[0] !== 0x30) return false;
  const l = b[1];
  const p = l < 0x80 ? 2 : 2 + (l & 0x7f);
  return b[p] === 0x0a && b[p + 1] === 0x01 && b[p + 2] === 0x00;
}

function gtimeMs(t: Tlv): number {
  const s = t.value.toString('latin1');
  const m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s);
  if (t.tag !== 0x18 || !m) throw new Error(`bad GeneralizedTime ${s}`);
  return Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]);
}

/**
 * checkResponse parses one successful OCSPResponse (RFC 6960 §4.2.1) and compares it with what was asked.
 * Throws with the reason on any mismatch; returns the status seen.
 */
export function checkResponse(der: Buffer, sent: { certId: Buffer; nonce: Buffer | null; expect: string }, verifyWith: crypto.KeyObject | null): string {
  const top = children(readOne(der, 0x30));
  if (top[0]?.tag !== 0x0a || top[0].value[0] !== 0) throw new Error('OCSPResponseStatus not successful');
  const rb = children(readOne(top[1].value, 0x30));
  if (decodeOid(rb[0]) !== '1.3.6.1.5.5.7.48.1.1') throw new Error('responseType is not id-pkix-ocsp-basic');
  const basic = children(readOne(rb[1].value, 0x30));
  const [tbs, sigAlg, sig] = basic;
  const f = children(tbs);
  let i = 0;
  if (f[i].tag === 0xa0) i++; // version
  i++; // responderID
  const producedAt = gtimeMs(f[i++]);
  const singles = children(f[i++]);
  if (singles.length !== 1) throw new Error(`${singles.length} SingleResponses`);
  const s = children(singles[0]);
  if (!s[0].full.equals(sent.certId)) throw new Error('CertID not echoed');
  const status = s[1].tag === 0x80 ? 'good' : s[1].tag === 0xa1 ? 'revoked' : s[1].tag === 0x82 ? 'unknown' : `tag 0x${s[1].tag.toString(16)}`;
  if (status !== sent.expect) throw new Error(`status ${status}, expected ${sent.expect}`);
  const now = Date.now();
  const thisUpdate = gtimeMs(s[2]);
  if (thisUpdate > now + 5000 || producedAt > now + 5000) throw new Error('thisUpdate/producedAt in the future');
  if (s[3]?.tag === 0xa0 && gtimeMs(readOne(s[3].value)) <= now) throw new Error('nextUpdate in the past');
  let nonce: Buffer | null = null;
  if (f[i]?.tag === 0xa1) {
    for (const e of children(readOne(f[i].value, 0x30))) {
      const ef = children(e);
      if (decodeOid(ef[0]) === OID_NONCE) nonce = ef[ef.length - 1].value;
    }
  }
  if (sent.nonce ? !nonce || !nonce.equals(sent.nonce) : nonce !== null) throw new Error(sent.nonce ? 'nonce not echoed' : 'nonce in a response to a request without one');
  if (verifyWith) {
    const hash = SIG_HASH[decodeOid(children(sigAlg)[0])];
    if (!hash) throw new Error('unknown signatureAlgorithm');
    if (!crypto.verify(hash, tbs.full, { key: verifyWith, dsaEncoding: 'der' }, sig.value.subarray(1))) throw new Error('bad signature');
  }
  return status;
}

/** nonceExtnValue: what the request carries as the nonce extnValue (OCTET STRING of 16 octets, as openssl sends). */
function nonceExtnValue(body: Buffer, offset: number): Buffer {
  return body.subarray(offset - 2, offset + 16);
}

export async function runClient(job: ClientJob, notify: (m: ClientMessage) => void): Promise<ClientResult> {
  const pool = prepare(job);
  const key = crypto.createPublicKey(job.responderKey);
  const initialChecks = job.initialChecks ?? 4 * job.concurrency;
  let next = 0;
  let phase: 'warm-up' | 'window' | 'done' = 'warm-up';
  let counting = false;
  let running = true;
  let responses = 0;
  let warmupResponses = 0;
  let errors = 0;
  let firstError: string | undefined;
  let checked = 0;
  let verified = 0;
  let connects = 0;
  let seen = 0;
  const outcomes: Record<string, number> = {};
  const versions = new Set<string>();
  const latencies: number[] = [];
  const fail = (why: string) => {
    if (phase === 'done') return;
    if (!counting) {
      // warm-up failures matter as much: they mean the setup is wrong
      if (!firstError) firstError = `warm-up: ${why}`;
      return;
    }
    errors++;
    if (!firstError) firstError = why;
  };

  // busy: connections connecting or waiting for a response; drained before the process leaves
  const busy = new Set<number>();
  const sockets = new Set<net.Socket>();

  const connection = (n: number) => {
    const prefix = crypto.randomBytes(8);
    let counter = 0;
    let sock: net.Socket;
    let buf: Buffer = Buffer.alloc(0);
    let inFlight: { p: Prepared; nonce: Buffer | null; t0: number } | null = null;
    let expectClose = false;

    // send is called on every new connection, even after the run ended: openssl's responder hangs for good on
    // a connection closed before its request line (openssl/openssl#31129, #23934), so none is left so
    const send = () => {
      busy.add(n);
      const p = pool[next++ % pool.length];
      let body = p.body;
      let nonce: Buffer | null = null;
      if (body && p.spec.nonceOffset !== undefined) {
        body = Buffer.from(body);
        prefix.copy(body, p.spec.nonceOffset);
        body.writeUInt32BE(n, p.spec.nonceOffset + 8);
        body.writeUInt32BE(counter++, p.spec.nonceOffset + 12);
        nonce = nonceExtnValue(body, p.spec.nonceOffset);
      }
      inFlight = { p, nonce, t0: performance.now() };
      if (body) {
        sock.cork();
        sock.write(p.head);
        sock.write(body);
        sock.uncork();
      } else sock.write(p.head);
    };

    const onResponse = (status: number, version: string, body: Buffer) => {
      const f = inFlight!;
      inFlight = null;
      busy.delete(n);
      versions.add(version);
      if (counting) {
        responses++;
        latencies.push(performance.now() - f.t0);
      } else if (phase === 'warm-up') warmupResponses++;
      if (status !== 200) fail(`HTTP ${status}`);
      else if (!successful(body)) fail(`OCSPResponseStatus not successful (${body.subarray(0, 8).toString('hex')})`);
      else if (++seen % job.checkEvery === 0 || seen <= initialChecks) {
        const verify = seen % job.verifyEvery === 0 || seen <= initialChecks;
        try {
          const s = checkResponse(body, { certId: f.p.certId, nonce: f.nonce, expect: f.p.spec.expect }, verify ? key : null);
          outcomes[s] = (outcomes[s] ?? 0) + 1;
          checked++;
          if (verify) verified++;
        } catch (e) {
          fail(`check: ${(e as Error).message}`);
        }
      }
      if (!expectClose) {
        if (running) send();
        else sock.end();
      }
    };

    const onData = (d: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.toString('latin1', 0, end);
        const lower = head.toLowerCase();
        const m = /content-length:\s*(\d+)/.exec(lower);
        if (!m) {
          fail('response without Content-Length');
          sock.destroy();
          return;
        }
        const len = Number(m[1]);
        if (buf.length < end + 4 + len) return;
        const body = buf.subarray(end + 4, end + 4 + len);
        buf = buf.subarray(end + 4 + len);
        const version = head.slice(0, 8);
        // HTTP/1.0 closes unless it says keep-alive; HTTP/1.1 keeps the connection unless it says close
        expectClose = version === 'HTTP/1.0' ? !/\r\nconnection:\s*keep-alive/.test(lower) : /\r\nconnection:\s*close/.test(lower);
        if (!inFlight) {
          fail('response without a request');
          sock.destroy();
          return;
        }
        onResponse(Number(head.slice(9, 12)), version, body);
      }
    };

    const open = () => {
      if (!running) return;
      buf = Buffer.alloc(0);
      expectClose = false;
      inFlight = null;
      if (counting) connects++;
      busy.add(n);
      sock = net.connect({ host: job.host, port: job.port, noDelay: true });
      sockets.add(sock);
      const s = sock;
      sock.on('connect', send);
      sock.on('data', onData);
      sock.on('error', (e) => fail(`socket: ${e.message}`));
      sock.on('close', () => {
        sockets.delete(s);
        busy.delete(n);
        if (inFlight) fail('connection closed before the response');
        inFlight = null;
        if (running) setImmediate(open);
      });
    };
    open();
  };

  for (let n = 0; n < job.concurrency; n++) connection(n);
  await new Promise((r) => setTimeout(r, job.warmupMs));
  if (firstError) throw new Error(firstError);
  counting = true;
  phase = 'window';
  notify({ type: 'window-start' });
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, job.durationMs));
  counting = false;
  running = false;
  phase = 'done';
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  notify({ type: 'window-end' });
  // drain: every request sent gets its answer, every connection opened gets a request, then close
  for (const until = Date.now() + 3000; busy.size && Date.now() < until;) await new Promise((r) => setTimeout(r, 5));
  for (const s of sockets) s.destroy();
  latencies.sort((a, b) => a - b);
  const q = (p: number) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] : NaN);
  return {
    responses,
    warmupResponses,
    seconds,
    rate: responses / seconds,
    errors,
    firstError,
    checked,
    verified,
    connects,
    p50: q(0.5),
    p99: q(0.99),
    clientCpuUs: responses ? (cpu.user + cpu.system) / responses : NaN,
    outcomes,
    httpVersions: [...versions],
  };
}

// run as a child process: one job from the parent, messages back, then exit
if (require.main === module && process.send) {
  process.once('message', (job: ClientJob) => {
    const send = (m: ClientMessage) => process.send!(m);
    runClient(job, send).then(
      (result) => {
        send({ type: 'result', result });
        process.disconnect();
        setTimeout(() => process.exit(0), 100).unref();
      },
      (e: unknown) => {
        send({ type: 'failed', message: (e as Error)?.message ?? String(e) });
        process.disconnect();
        setTimeout(() => process.exit(1), 100).unref();
      },
    );
  });
}
