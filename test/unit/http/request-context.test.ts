import * as http from 'node:http';
import { AddressInfo } from 'node:net';
import pino from 'pino';
import { Registry } from 'prom-client';
import { createHttpListener } from '../../../src/http/listeners';
import { HttpObservability } from '../../../src/http/request-context';

/**
 * HttpObservability on the plain HTTP listener: every request is counted and timed under its own route,
 * method and status (the metric children are looked up once per combination, so one combination must never
 * be counted under another), and a quiet route's successful requests write no access line at level info
 * while its failures and every other route still do. A request whose client goes away before any answer
 * is recorded once, when its connection closes: aborted, status 0 (none was sent).
 */
let base: string;
let close: () => Promise<void>;
/** stalled: the requests of the `stalled` route, which never answers; the test ends them */
const stalled: http.ServerResponse[] = [];
const logs: Record<string, unknown>[] = [];
const registry = new Registry();

beforeAll(async () => {
  const log = pino({ level: 'info' }, { write: (l: string) => void logs.push(JSON.parse(l) as Record<string, unknown>) });
  const server = createHttpListener({
    mounts: [
      {
        path: '/cached',
        router: (req, res) => {
          // a conditional GET answered 304, and HEAD: no body, both end with 'finish'
          res.locals.route = 'cached';
          if (req.headers['if-none-match']) res.writeHead(304).end();
          else res.writeHead(200, { 'Content-Length': 2 }).end(req.method === 'HEAD' ? undefined : 'ok');
        },
      },
      {
        path: '/half',
        router: async (_req, res) => {
          // a handler that fails after its head went out: the last-resort handler cuts the response
          res.locals.route = 'half';
          res.writeHead(200, { 'Content-Length': 10 });
          res.write('12345');
          await new Promise((r) => setImmediate(r));
          throw new Error('store failed half way');
        },
      },
      {
        path: '/stalled',
        router: (_req, res) => {
          res.locals.route = 'stalled';
          stalled.push(res);
        },
      },
    ],
    fast: [
      {
        prefix: '/fast',
        route: 'fast',
        handler: (req, res) => {
          res.writeHead(req.url === '/fast/fail' ? 503 : 200, { 'Content-Length': 2 });
          res.end('ok');
        },
      },
    ],
    registry,
    log,
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  close = () => new Promise<void>((r) => server.close(() => r()));
});
afterAll(() => close());

async function counts(name: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const v of (await registry.getSingleMetric(name)!.get()).values as { labels: Record<string, string | number>; value: number; metricName?: string }[]) {
    if (name.endsWith('_seconds') && !v.metricName?.endsWith('_count')) continue; // a histogram: its _count series
    out[`${v.labels.route} ${v.labels.method} ${v.labels.status}`] = v.value;
  }
  return out;
}

it('counts and times each route, method and status apart; quiet successes write no line at info', async () => {
  const ids: string[] = [];
  for (const [path, method] of [
    ['/fast', 'POST'],
    ['/fast', 'POST'],
    ['/fast', 'GET'],
    ['/fast/fail', 'POST'],
    ['/nothing', 'GET'],
    ['/fast', 'POST'],
  ]) {
    const r = await fetch(base + path, { method, body: method === 'POST' ? 'x' : undefined });
    await r.arrayBuffer();
    ids.push(r.headers.get('x-request-id')!);
  }
  await new Promise((r) => setTimeout(r, 50));
  const expected = { 'fast POST 200': 3, 'fast GET 200': 1, 'fast POST 503': 1, 'not-found GET 404': 1 };
  expect(await counts('device_ca_http_requests_total')).toEqual(expected);
  expect(await counts('device_ca_http_request_duration_seconds')).toEqual(expected);
  const lines = logs.filter((l) => ids.includes(l.reqId as string)).map((l) => `${l.route} ${l.status}`);
  expect(lines.sort()).toEqual(['fast 503', 'not-found 404']);
});

it("a remote given as a function (the OCSP front's) is asked only for a line that is written, and the line carries it", () => {
  const lines: Record<string, unknown>[] = [];
  const obs = new HttpObservability('http', new Registry(), pino({ level: 'info' }, { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) }), new Set(['ocsp']));
  let asked = 0;
  const remote = () => (asked++, '192.0.2.7');
  const start = process.hrtime.bigint();
  obs.record({ route: 'ocsp', method: 'POST', status: 200, start, requestId: 'quiet', remote });
  expect([asked, lines.length]).toEqual([0, 0]);
  obs.record({ route: 'ocsp', method: 'POST', status: 200, start, requestId: 'failed', remote, errorCode: 'internal', error: { message: 'boom' } });
  obs.record({ route: 'other', method: 'GET', status: 200, start, requestId: 'loud', remote });
  expect(asked).toBe(2);
  expect(lines.map((l) => [l.reqId, l.remote])).toEqual([
    ['failed', '192.0.2.7'],
    ['loud', '192.0.2.7'],
  ]);
});

it('a client that goes away before any answer: one line, aborted, status 0, and one sample; an answer written after it adds none', async () => {
  const req = http.request(`${base}/stalled`);
  req.on('error', () => undefined);
  req.end();
  for (let i = 0; i < 200 && stalled.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  expect(stalled).toHaveLength(1);
  const res = stalled[0];
  const id = res.getHeader('x-request-id');
  req.destroy();
  const mine = () => logs.filter((l) => l.reqId === id);
  for (let i = 0; i < 200 && mine().length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  res.end('late'); // the handler answering after all: nobody gets it, and it is not counted again
  await new Promise((r) => setTimeout(r, 50));
  expect(mine().map((l) => [l.level, l.msg, l.route, l.status, l.aborted])).toEqual([[40, 'request aborted', 'stalled', 0, true]]);
  expect((await counts('device_ca_http_requests_total'))['stalled GET 0']).toBe(1);
  const aborted = (await registry.getSingleMetric('device_ca_http_requests_aborted_total')!.get()).values.map((v) => [v.labels, v.value]);
  expect(aborted).toEqual([[{ listener: 'http', route: 'stalled', method: 'GET' }, 1]]);
});

it('keep-alive reuse with GET, HEAD and a 304, then a response cut after its head: one line and one sample each', async () => {
  const before = await counts('device_ca_http_requests_total');
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const sockets = new Set<unknown>();
  const send = (method: string, p: string, headers: Record<string, string> = {}) =>
    new Promise<{ status: number; id: string; body: string }>((resolve, reject) => {
      const req = http.request(`${base}${p}`, { method, agent, headers }, (res) => {
        sockets.add(req.socket);
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, id: String(res.headers['x-request-id']), body }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
  const got = [await send('GET', '/cached'), await send('HEAD', '/cached'), await send('GET', '/cached', { 'If-None-Match': '"x"' }), await send('GET', '/fast')];
  expect(got.map((g) => [g.status, g.body])).toEqual([
    [200, 'ok'],
    [200, ''],
    [304, ''],
    [200, 'ok'],
  ]);
  expect(sockets.size).toBe(1);
  // the cut one: the client sees the connection end before the 10 bytes promised
  const cut = await new Promise<{ id: string; error: string }>((resolve) => {
    const req = http.request(`${base}/half`, { agent: false }, (res) => {
      res.on('data', () => undefined);
      res.on('error', (e) => resolve({ id: String(res.headers['x-request-id']), error: e.message }));
      res.on('end', () => resolve({ id: String(res.headers['x-request-id']), error: 'none' }));
    });
    req.on('error', (e) => resolve({ id: '', error: e.message }));
    req.end();
  });
  expect(cut.error).toBe('aborted');
  agent.destroy();
  await new Promise((r) => setTimeout(r, 50));
  const ids = [...got.map((g) => g.id), cut.id];
  const lines = ids.map((id) => logs.filter((l) => l.reqId === id).map((l) => [l.level, l.msg, l.route, l.method, l.status, l.aborted]));
  expect(lines).toEqual([
    [[30, 'request', 'cached', 'GET', 200, undefined]],
    [[30, 'request', 'cached', 'HEAD', 200, undefined]],
    [[30, 'request', 'cached', 'GET', 304, undefined]],
    [], // the quiet route's success: counted, no line at info
    [[50, 'request failed', 'half', 'GET', 200, true]],
  ]);
  const after = await counts('device_ca_http_requests_total');
  const added = (k: string) => (after[k] ?? 0) - (before[k] ?? 0);
  expect(['cached GET 200', 'cached HEAD 200', 'cached GET 304', 'fast GET 200', 'half GET 200'].map(added)).toEqual([1, 1, 1, 1, 1]);
  const aborted = (await registry.getSingleMetric('device_ca_http_requests_aborted_total')!.get()).values.filter((v) => v.labels.route === 'half');
  expect(aborted.map((v) => v.value)).toEqual([1]);
});
