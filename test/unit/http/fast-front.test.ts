import * as http from 'node:http';
import * as net from 'node:net';
import { AddressInfo } from 'node:net';
import pino from 'pino';
import { Registry } from 'prom-client';
import { FrontRoute, attachFastFront } from '../../../src/http/fast-front';
import { HttpObservability } from '../../../src/http/request-context';

/**
 * The connection-level front (src/http/fast-front.ts) before a node:http server: what it answers itself
 * (marked "front:" in the body), what it hands to node:http (marked "node:"), and the limits it keeps.
 */

interface Reply {
  status: number;
  headers: Map<string, string>;
  body: string;
}

/** parseReplies: the complete HTTP/1.1 responses (Content-Length framed) at the start of bytes. */
function parseReplies(bytes: Buffer): Reply[] {
  const out: Reply[] = [];
  let p = 0;
  for (;;) {
    const end = bytes.indexOf('\r\n\r\n', p, 'latin1');
    if (end < 0) return out;
    const lines = bytes.toString('latin1', p, end).split('\r\n');
    const headers = new Map<string, string>();
    for (const l of lines.slice(1)) headers.set(l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim());
    const len = Number(headers.get('content-length') ?? 0);
    if (bytes.length < end + 4 + len) return out;
    out.push({ status: Number(lines[0].split(' ')[1]), headers, body: bytes.toString('latin1', end + 4, end + 4 + len) });
    p = end + 4 + len;
  }
}

describe('attachFastFront', () => {
  let server: http.Server;
  let port: number;
  const registry = new Registry();
  const answered: string[] = [];
  /** slow: the answers of body "slow", held until the test releases them */
  const slow: (() => void)[] = [];
  const route: FrontRoute = {
    route: 'ocsp',
    prefixes: ['POST /ocsp ', 'GET /ocsp/'],
    maxBody: 64,
    accepts: (method, target) => (method === 'POST' ? target === '/ocsp' : /^\/ocsp\/[A-Za-z0-9]+$/.test(target)),
    answer: async (method, target, body) => {
      answered.push(`${method} ${target}`);
      if (body.toString() === 'throw') throw new Error('boom');
      if (body.toString() === 'slow') await new Promise<void>((r) => slow.push(r));
      return { status: 200, headers: 'Content-Type: text/plain\r\n', body: Buffer.from(`front:${method}:${target}:${body.toString('latin1')}`) };
    },
    // bodies starting "now" are answered at once (as a kept OCSP answer), "nowthrow" throws there
    answerNow: (method, target, body) => {
      const text = body.toString('latin1');
      if (text === 'nowthrow') throw new Error('boom');
      if (!text.startsWith('now')) return undefined;
      answered.push(`now ${method} ${target}`);
      return { status: 200, headers: 'Content-Type: text/plain\r\n', body: Buffer.from(`now:${method}:${target}:${text}`) };
    },
  };

  beforeAll(async () => {
    server = http.createServer({ maxHeaderSize: 1024 }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.from(`node:${req.method}:${req.url}:${Buffer.concat(chunks).toString('latin1')}`);
        res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': body.length });
        res.end(body);
      });
    });
    server.headersTimeout = 20_000;
    const obs = new HttpObservability('http', registry, pino({ level: 'silent' }), new Set(['ocsp']));
    attachFastFront(server, [route], obs, { maxHeaderSize: 1024, headersTimeout: 300, requestTimeout: 600, keepAliveTimeout: 300 });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  /** talk sends the pieces (one write each, in order) and resolves with all bytes read until the server closes, or until `until` holds. */
  function talk(pieces: (string | Buffer)[], until?: (b: Buffer) => boolean): Promise<{ bytes: Buffer; closed: boolean }> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1');
      const got: Buffer[] = [];
      let done = false;
      const timer = setTimeout(() => finish(false), 5000);
      const finish = (closed: boolean) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        s.destroy();
        resolve({ bytes: Buffer.concat(got), closed });
      };
      s.on('connect', async () => {
        for (const p of pieces) {
          if (done) return;
          s.write(p);
          await new Promise((r) => setTimeout(r, 5));
        }
      });
      s.on('data', (c: Buffer) => {
        got.push(c);
        if (until?.(Buffer.concat(got))) finish(false);
      });
      s.on('end', () => finish(true));
      s.on('close', () => finish(true));
      s.on('error', (e) => (done ? undefined : reject(e)));
    });
  }
  const post = (body: string, extra = '') => `POST /ocsp HTTP/1.1\r\nHost: a\r\n${extra}Content-Length: ${body.length}\r\n\r\n${body}`;
  const replies = (n: number) => (b: Buffer) => parseReplies(b).length >= n;

  it('answers keep-alive requests on one connection itself, with a request id, Date and keep-alive headers', async () => {
    const { bytes } = await talk([post('one'), post('two', 'X-Request-Id: my-id\r\n')], replies(2));
    const r = parseReplies(bytes);
    expect(r.map((x) => x.body)).toEqual(['front:POST:/ocsp:one', 'front:POST:/ocsp:two']);
    expect(r[0].headers.get('connection')).toBe('keep-alive');
    expect(r[0].headers.get('keep-alive')).toBe('timeout=0');
    expect(r[0].headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    expect(r[1].headers.get('x-request-id')).toBe('my-id');
    expect(Date.parse(r[0].headers.get('date')!)).toBeGreaterThan(0);
  });

  it('answers pipelined requests in order, and hands the connection to node:http at the first one it does not take', async () => {
    const all = post('a') + 'GET /ocsp/QUJD HTTP/1.1\r\nHost: a\r\n\r\n' + post('b') + 'GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n' + post('c');
    const { bytes } = await talk([all], replies(5));
    expect(parseReplies(bytes).map((x) => x.body)).toEqual(['front:POST:/ocsp:a', 'front:GET:/ocsp/QUJD:', 'front:POST:/ocsp:b', 'node:GET:/healthz:', 'node:POST:/ocsp:c']);
  });

  it('answers at once what answerNow has, and keeps the order when pipelined with answers that wait and with a hand-over', async () => {
    const all = post('now1') + post('later') + post('now2') + post('now3') + 'GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n' + post('now4');
    const { bytes } = await talk([all], replies(6));
    const r = parseReplies(bytes);
    expect(r.map((x) => x.body)).toEqual(['now:POST:/ocsp:now1', 'front:POST:/ocsp:later', 'now:POST:/ocsp:now2', 'now:POST:/ocsp:now3', 'node:GET:/healthz:', 'node:POST:/ocsp:now4']);
    expect(r[0].headers.get('connection')).toBe('keep-alive');
    expect(r[2].headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('answerNow that throws leaves the request to answer', async () => {
    const { bytes } = await talk([post('nowthrow'), post('now5')], replies(2));
    expect(parseReplies(bytes).map((x) => [x.status, x.body])).toEqual([
      [200, 'front:POST:/ocsp:nowthrow'],
      [200, 'now:POST:/ocsp:now5'],
    ]);
  });

  it('a head repeated byte for byte on a connection is read as the first; one that changes (same length) is read anew', async () => {
    // the same length as the keep-alive head: only the bytes tell them apart
    const all = post('one1') + post('two2') + post('thr3', 'X-Request-Id: aaaa\r\n') + post('fou4', 'X-Request-Id: bbbb\r\n') + post('fiv5', 'Connection: close\r\n');
    const { bytes, closed } = await talk([all]);
    const r = parseReplies(bytes);
    expect(r.map((x) => x.body)).toEqual(['front:POST:/ocsp:one1', 'front:POST:/ocsp:two2', 'front:POST:/ocsp:thr3', 'front:POST:/ocsp:fou4', 'front:POST:/ocsp:fiv5']);
    expect(r.map((x) => x.headers.get('x-request-id')!.length)).toEqual([36, 36, 4, 4, 36]);
    expect([r[2].headers.get('x-request-id'), r[3].headers.get('x-request-id')]).toEqual(['aaaa', 'bbbb']);
    expect(r.map((x) => x.headers.get('connection'))).toEqual(['keep-alive', 'keep-alive', 'keep-alive', 'keep-alive', 'close']);
    expect(closed).toBe(true);
  });

  it('reads a request that arrives a few bytes at a time', async () => {
    const req = post('split');
    const pieces = [];
    for (let i = 0; i < req.length; i += 7) pieces.push(req.slice(i, i + 7));
    const { bytes } = await talk(pieces, replies(1));
    expect(parseReplies(bytes)[0].body).toBe('front:POST:/ocsp:split');
  });

  it('HTTP/1.0 and Connection: close get Connection: close and the connection ends', async () => {
    for (const req of ['GET /ocsp/QUJD HTTP/1.0\r\n\r\n', 'GET /ocsp/QUJD HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n']) {
      const { bytes, closed } = await talk([req]);
      const r = parseReplies(bytes);
      expect(r.map((x) => x.body)).toEqual(['front:GET:/ocsp/QUJD:']);
      expect(r[0].headers.get('connection')).toBe('close');
      expect(closed).toBe(true);
    }
  });

  it('HTTP/1.0 with Connection: keep-alive stays open', async () => {
    const req = 'GET /ocsp/QUJD HTTP/1.0\r\nConnection: keep-alive\r\n\r\n';
    const { bytes } = await talk([req, req], replies(2));
    expect(parseReplies(bytes).map((x) => x.headers.get('connection'))).toEqual(['keep-alive', 'keep-alive']);
  });

  it.each([
    ['another path', 'GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n', 'node:GET:/healthz:'],
    ['another method on /ocsp', 'PUT /ocsp HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx', 'node:PUT:/ocsp:x'],
    ['a query on POST /ocsp', 'POST /ocsp?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx', 'node:POST:/ocsp?x=1:x'],
    ['a chunked body', 'POST /ocsp HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n', 'node:POST:/ocsp:abc'],
    ['Expect: 100-continue', 'POST /ocsp HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nxy', 'node:POST:/ocsp:xy'],
    ['a body over the route limit', `POST /ocsp HTTP/1.1\r\nHost: a\r\nContent-Length: 65\r\n\r\n${'z'.repeat(65)}`, `node:POST:/ocsp:${'z'.repeat(65)}`],
    ['a GET with a body', 'GET /ocsp/QUJD HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx', 'node:GET:/ocsp/QUJD:x'],
    ['a target the route refuses', 'GET /ocsp/a%2fb HTTP/1.1\r\nHost: a\r\n\r\n', 'node:GET:/ocsp/a%2fb:'],
  ])('%s goes to node:http with the bytes already read', async (_n, req, body) => {
    const { bytes } = await talk([req], (b) => parseReplies(b).some((r) => r.status === 200));
    expect(parseReplies(bytes).find((r) => r.status === 200)?.body).toBe(body);
  });

  it.each([
    ['no Host header', 'POST /ocsp HTTP/1.1\r\nContent-Length: 1\r\n\r\nx', 400],
    ['two Content-Length headers that differ', 'POST /ocsp HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy', 400],
    ['Content-Length and Transfer-Encoding', 'POST /ocsp HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400],
    ['a space before a colon', 'POST /ocsp HTTP/1.1\r\nHost : a\r\nContent-Length: 1\r\n\r\nx', 400],
    ['a NUL in a header value', 'POST /ocsp HTTP/1.1\r\nHost: a\r\nX: a\u0000b\r\nContent-Length: 1\r\n\r\nx', 400],
    ['a head over maxHeaderSize', `POST /ocsp HTTP/1.1\r\nHost: a\r\nX: ${'a'.repeat(2000)}\r\nContent-Length: 1\r\n\r\nx`, 431],
    ['an endless head over maxHeaderSize', `GET /ocsp/QUJD HTTP/1.1\r\nHost: a\r\nX: ${'a'.repeat(20_000)}`, 431],
  ])('%s: node:http refuses it as it always has (HTTP %d)', async (_n, req, status) => {
    const before = [...answered];
    const { bytes, closed } = await talk([req]);
    expect(parseReplies(bytes)[0]?.status).toBe(status);
    expect(closed).toBe(true);
    expect(answered).toEqual(before);
  });

  it('a head that does not end within headersTimeout gets 408 and the connection is closed', async () => {
    const { bytes, closed } = await talk(['POST /ocsp HTTP/1.1\r\nHost: a\r\n']);
    expect(parseReplies(bytes).map((r) => r.status)).toEqual([408]);
    expect(closed).toBe(true);
  });

  it('a body that never comes gets 408 (slow body)', async () => {
    const { bytes, closed } = await talk(['POST /ocsp HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc']);
    expect(parseReplies(bytes).map((r) => r.status)).toEqual([408]);
    expect(closed).toBe(true);
  });

  it('a head dripped a byte at a time past requestTimeout gets 408 although the socket never idles', async () => {
    const pieces: string[] = [];
    const req = `POST /ocsp HTTP/1.1\r\nHost: a\r\nX: ${'a'.repeat(150)}\r\nContent-Length: 1\r\n\r\nx`;
    for (const ch of req) pieces.push(ch);
    const { bytes } = await talk(pieces);
    expect(parseReplies(bytes).map((r) => r.status)).toEqual([408]);
  });

  it('an idle keep-alive connection is closed after keepAliveTimeout', async () => {
    const { bytes, closed } = await talk([post('x')]);
    expect(parseReplies(bytes).map((r) => r.body)).toEqual(['front:POST:/ocsp:x']);
    expect(closed).toBe(true);
  });

  it('a client that keeps its side open after Connection: close holds no connection on the server', async () => {
    const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    s.on('error', () => undefined);
    let got = Buffer.alloc(0);
    s.on('data', (c: Buffer) => (got = Buffer.concat([got, c])));
    const ended = new Promise<void>((r) => s.on('end', () => r()));
    s.write(post('x', 'Connection: close\r\n'));
    await ended; // the server's FIN; this side stays open
    expect(parseReplies(got).map((r) => r.body)).toEqual(['front:POST:/ocsp:x']);
    const connections = () => new Promise<number>((r) => server.getConnections((_e, n) => r(n)));
    for (let i = 0; i < 100 && (await connections()) > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await connections()).toBe(0);
    s.destroy();
  });

  it('a route that throws: 500, logged as an error, connection closed', async () => {
    const { bytes, closed } = await talk([post('throw')]);
    expect(parseReplies(bytes).map((r) => r.status)).toEqual([500]);
    expect(closed).toBe(true);
  });

  it('counts every answer in device_ca_http_requests_total like a request through express', async () => {
    const count = async () =>
      (await registry.getSingleMetric('device_ca_http_requests_total')!.get()).values.find((v) => v.labels.route === 'ocsp' && v.labels.method === 'POST' && v.labels.status === '200')?.value ?? 0;
    const before = await count();
    await talk([post('1'), post('2'), post('now3')], replies(3));
    expect((await count()) - before).toBe(3);
  });

  it('a client gone before its answer is ready: counted once, aborted, status 0 (nothing was sent), as through express', async () => {
    const count = async (name: string, status?: string) =>
      (await registry.getSingleMetric(name)!.get()).values.find((v) => v.labels.route === 'ocsp' && v.labels.method === 'POST' && (status === undefined || v.labels.status === status))?.value ?? 0;
    const before = [await count('device_ca_http_requests_total', '0'), await count('device_ca_http_requests_total', '200'), await count('device_ca_http_requests_aborted_total')];
    const sock = net.connect(port, '127.0.0.1');
    await new Promise<void>((r) => sock.once('connect', () => r()));
    sock.write(post('slow'));
    for (let i = 0; i < 200 && slow.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
    expect(slow).toHaveLength(1);
    sock.destroy();
    await new Promise((r) => setTimeout(r, 50));
    slow.shift()!();
    await new Promise((r) => setTimeout(r, 50));
    const after = [await count('device_ca_http_requests_total', '0'), await count('device_ca_http_requests_total', '200'), await count('device_ca_http_requests_aborted_total')];
    expect(after.map((v, i) => v - before[i])).toEqual([1, 0, 1]);
  });

  it('closeIdleConnections closes the idle connections the front holds', async () => {
    const s = net.connect(port, '127.0.0.1');
    const closed = new Promise<boolean>((r) => s.on('close', () => r(true)));
    s.on('error', () => undefined);
    let got = Buffer.alloc(0);
    await new Promise<void>((r) => {
      s.on('data', (c: Buffer) => {
        got = Buffer.concat([got, c]);
        if (parseReplies(got).length === 1) r();
      });
      s.write(post('idle'));
    });
    server.closeIdleConnections();
    expect(await closed).toBe(true);
  });
});

/**
 * The front's request deadlines on a fake clock: headersTimeout and requestTimeout run from the request's
 * first byte, and a byte that arrives just inside the limit does not push them back (the socket's own idle
 * timeout, which each byte restarts, runs on the real clock here and is far longer than the test).
 */
describe('attachFastFront: one deadline from the first byte', () => {
  const headersTimeout = 60_000;
  const requestTimeout = 120_000;
  const realSetTimeout = globalThis.setTimeout;
  let server: http.Server;
  let port: number;
  const serverSide: net.Socket[] = [];
  const route: FrontRoute = {
    route: 'ocsp',
    prefixes: ['POST /ocsp '],
    maxBody: 64,
    accepts: (method, target) => method === 'POST' && target === '/ocsp',
    answer: async () => ({ status: 200, headers: '', body: Buffer.from('answered') }),
  };

  beforeAll(async () => {
    server = http.createServer((_req, res) => res.end('node'));
    const obs = new HttpObservability('http', new Registry(), pino({ level: 'silent' }), new Set(['ocsp']));
    attachFastFront(server, [route], obs, { maxHeaderSize: 1024, headersTimeout, requestTimeout, keepAliveTimeout: headersTimeout });
    // after the front's listener: a chunk this sees has been read by the front
    server.on('connection', (s: net.Socket) => serverSide.push(s));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(
    () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections(); // the last test leaves a request half read
      }),
  );
  beforeEach(() => jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] }));
  afterEach(() => jest.useRealTimers());

  /** dripped: sends each piece after moving the fake clock by its delay (once the front has read the one before), then moves it by `last` */
  async function dripped(pieces: [number, string][], last: number, waitMs = 3000): Promise<{ bytes: Buffer; closed: boolean }> {
    const client = net.connect(port, '127.0.0.1');
    client.on('error', () => undefined);
    const got: Buffer[] = [];
    client.on('data', (c: Buffer) => got.push(c));
    const closed = new Promise<boolean>((r) => client.once('close', () => r(true)));
    await new Promise<void>((r) => client.once('connect', () => r()));
    while (serverSide.length === 0) await new Promise((r) => setImmediate(r));
    const peer = serverSide.shift()!;
    for (const [delay, piece] of pieces) {
      jest.advanceTimersByTime(delay);
      const read = new Promise<void>((r) => peer.once('data', () => r()));
      client.write(piece);
      await read;
    }
    jest.advanceTimersByTime(last);
    // real time (3 s unless told) for a reply and the close to arrive over loopback
    const result = await Promise.race([closed, new Promise<boolean>((r) => realSetTimeout(() => r(false), waitMs))]);
    client.destroy();
    return { bytes: Buffer.concat(got), closed: result };
  }

  it.each([
    [
      'a head',
      [
        [0, 'POST /ocsp HTTP/1.1\r\n'],
        [headersTimeout - 1000, 'Host: a\r\n'],
      ],
      1500,
    ],
    [
      'a body',
      [
        [0, 'POST /ocsp HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab'],
        [requestTimeout - 1000, 'c'],
      ],
      1500,
    ],
  ] as [string, [number, string][], number][])('%s dripped just inside its limit: 408 and closed once the limit from the first byte is over', async (_what, pieces, last) => {
    const { bytes, closed } = await dripped(pieces, last);
    expect(bytes.toString('latin1')).toBe('HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    expect(closed).toBe(true);
  });

  it('a request completed inside its limit is answered, and its deadline does not end the next one', async () => {
    const { bytes, closed } = await dripped(
      [
        [0, 'POST /ocsp HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n'],
        [headersTimeout - 1000, '\r\nx'],
        [0, 'POST /ocsp HTTP/1.1\r\n'],
      ],
      1500,
      500,
    );
    // the first answer, then nothing: the second request began 1.5 s ago (fake clock)
    expect(parseReplies(bytes).map((r) => [r.status, r.body])).toEqual([[200, 'answered']]);
    expect(closed).toBe(false);
  });
});
