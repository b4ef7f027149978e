import express from 'express';
import * as crypto from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { Registry } from 'prom-client';
import { HttpObservability } from '../../../../src/http/request-context';
import { DeviceCaError } from '../../../../src/errors/device-ca-error';
import { firmwareRouter } from '../../../../src/protocols/firmware/firmware-router';
import { FirmwareDistribution } from '../../../../src/ra/firmware-distribution';
import { RELEASE_CHUNK_BYTES, ReleaseBytes } from '../../../../src/store/store';

/**
 * GET /firmware/<name>/<version> pipes the release's chunks as the RA hands them (issue 13): with
 * Content-Length, at the client's pace (a client that stops reading stops the store reads, and one that
 * goes away ends them), HEAD reads nothing, and a store error half way cuts the connection instead of
 * ending a short body as if it were whole. Every download writes one access line and one metric sample; a
 * cut one (store error half way, client gone) is marked aborted, the store error's reason on its line.
 */
const CHUNKS = 64;
const chunkOf = (i: number): Buffer => Buffer.alloc(RELEASE_CHUNK_BYTES, i);
let reads = 0;
let ended = false;
let failAt = -1;
const bytes: ReleaseBytes = {
  length: CHUNKS * RELEASE_CHUNK_BYTES,
  async *chunks() {
    try {
      for (let i = 0; i < CHUNKS; i++) {
        if (i === failAt) throw new DeviceCaError('conflict', 'the firmware release was replaced while it was read');
        reads++;
        yield chunkOf(i);
      }
    } finally {
      ended = true;
    }
  },
};
const distribution = {
  download: async () => ({ release: { name: 'fw', version: 1, sha256: '', signers: [], recipients: null, releasedAt: new Date() }, bytes }),
} as unknown as FirmwareDistribution;

let server: http.Server;
let port: number;
const logs: Record<string, unknown>[] = [];
const registry = new Registry();
beforeAll(async () => {
  const log = pino({ level: 'info' }, { write: (l: string) => void logs.push(JSON.parse(l) as Record<string, unknown>) });
  const obs = new HttpObservability('http', registry, log);
  server = express().use(obs.middleware()).use('/firmware', firmwareRouter({ distribution })).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  port = (server.address() as AddressInfo).port;
});
afterAll(() => new Promise((r) => server.close(r)));
beforeEach(async () => {
  logs.length = 0;
  await registry.metrics(); // the deferred counts taken in first (metrics/deferred-counter.ts), then every count reset
  registry.resetMetrics();
  reads = 0;
  ended = false;
  failAt = -1;
});

const request = (method: string): Promise<http.IncomingMessage> =>
  new Promise((resolve, reject) => http.request({ host: '127.0.0.1', port, method, path: '/firmware/fw/1' }, resolve).on('error', reject).end());
/** linesOf: the access lines of the request whose response carried this X-Request-Id */
const linesOf = (res: http.IncomingMessage): Record<string, unknown>[] => logs.filter((l) => l.reqId === res.headers['x-request-id']);
/** samples: the value of a counter's series, as `route method status` (or `route method`) -> count */
async function samples(name: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const v of (await registry.getSingleMetric(name)!.get()).values) out[[v.labels.route, v.labels.method, v.labels.status].filter((x) => x !== undefined).join(' ')] = v.value;
  return out;
}
const until = async (what: () => boolean): Promise<void> => {
  for (let i = 0; i < 500 && !what(); i++) await new Promise((r) => setTimeout(r, 10));
};

it('sends every chunk with Content-Length, the bytes in order', async () => {
  const res = await request('GET');
  expect(res.statusCode).toBe(200);
  expect(res.headers['content-length']).toBe(String(CHUNKS * RELEASE_CHUNK_BYTES));
  expect(res.headers['transfer-encoding']).toBeUndefined();
  const h = crypto.createHash('sha256');
  for await (const c of res) h.update(c as Buffer);
  const want = crypto.createHash('sha256');
  for (let i = 0; i < CHUNKS; i++) want.update(chunkOf(i));
  expect(h.digest('hex')).toBe(want.digest('hex'));
  expect([reads, ended]).toEqual([CHUNKS, true]);
  await until(() => linesOf(res).length > 0);
  await new Promise((r) => setTimeout(r, 50)); // time for a second line, were one written on 'close' too
  expect(linesOf(res).map((l) => [l.msg, l.route, l.status, l.aborted])).toEqual([['request', 'firmware', 200, undefined]]);
  expect(await samples('device_ca_http_requests_total')).toEqual({ 'firmware GET 200': 1 });
  expect(await samples('device_ca_http_requests_aborted_total')).toEqual({});
});

it('reads at the pace of the client: a client that stops reading holds the store reads back, and one that goes away ends them', async () => {
  const res = await request('GET');
  res.pause();
  await new Promise((r) => setTimeout(r, 300)); // time enough to read every chunk if nothing waited on the socket
  expect(reads).toBeLessThan(CHUNKS / 2);
  res.destroy();
  await until(() => ended);
  expect(ended).toBe(true);
  expect(reads).toBeLessThan(CHUNKS / 2);
  // the client gone: one line, at warn, marked aborted, with the status that was sent
  await until(() => linesOf(res).length > 0);
  await new Promise((r) => setTimeout(r, 50));
  expect(linesOf(res).map((l) => [l.level, l.msg, l.route, l.status, l.aborted])).toEqual([[40, 'request aborted', 'firmware', 200, true]]);
  expect(await samples('device_ca_http_requests_total')).toEqual({ 'firmware GET 200': 1 });
  expect(await samples('device_ca_http_requests_aborted_total')).toEqual({ 'firmware GET': 1 });
});

it('HEAD gives the length and reads nothing', async () => {
  const res = await request('HEAD');
  res.resume();
  expect(res.headers['content-length']).toBe(String(CHUNKS * RELEASE_CHUNK_BYTES));
  expect(reads).toBe(0);
  await until(() => linesOf(res).length > 0);
  expect(linesOf(res).map((l) => [l.method, l.status, l.aborted])).toEqual([['HEAD', 200, undefined]]);
});

it('a store error half way cuts the connection: the client never sees a complete reply', async () => {
  failAt = 3;
  const res = await request('GET');
  let got = 0;
  const outcome = await new Promise<string>((resolve) => {
    res.on('data', (c: Buffer) => (got += c.length));
    res.on('end', () => resolve('end'));
    res.on('error', () => resolve('error'));
    res.on('aborted', () => resolve('aborted'));
  });
  expect(outcome).not.toBe('end');
  expect(got).toBeLessThan(CHUNKS * RELEASE_CHUNK_BYTES);
  expect(ended).toBe(true);
  // the operator sees it: one line at error level, aborted, with the store's reason; one sample, counted aborted
  await until(() => linesOf(res).length > 0);
  await new Promise((r) => setTimeout(r, 50));
  expect(linesOf(res).map((l) => [l.level, l.msg, l.status, l.aborted, l.code, (l.err as { message?: string } | undefined)?.message])).toEqual([
    [50, 'request failed', 200, true, 'conflict', 'the firmware release was replaced while it was read'],
  ]);
  expect(await samples('device_ca_http_requests_total')).toEqual({ 'firmware GET 200': 1 });
  expect(await samples('device_ca_http_requests_aborted_total')).toEqual({ 'firmware GET': 1 });
  // the server goes on serving
  failAt = -1;
  const next = await request('HEAD');
  next.resume();
  expect(next.statusCode).toBe(200);
});

it('a release whose bytes cannot be read at all (replaced meanwhile, chunks missing) gets an error reply with its reason, not an empty one', async () => {
  failAt = 0;
  const res = await request('GET');
  let body = '';
  res.setEncoding('utf8');
  for await (const c of res) body += c as string;
  expect(res.statusCode).toBe(409);
  expect(res.headers['content-disposition']).toBeUndefined();
  expect(body).toBe('the firmware release was replaced while it was read\n');
  expect(ended).toBe(true);
});
