import express from 'express';
import * as crypto from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { DeviceCaError } from '../../../../src/errors/device-ca-error';
import { firmwareRouter } from '../../../../src/protocols/firmware/firmware-router';
import { FirmwareDistribution } from '../../../../src/ra/firmware-distribution';
import { RELEASE_CHUNK_BYTES, ReleaseBytes } from '../../../../src/store/store';

/**
 * GET /firmware/<name>/<version> pipes the release's chunks as the RA hands them (issue 13): with
 * Content-Length, at the client's pace (a client that stops reading stops the store reads, and one that
 * goes away ends them), HEAD reads nothing, and a store error half way cuts the connection instead of
 * ending a short body as if it were whole.
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
beforeAll(async () => {
  server = express().use('/firmware', firmwareRouter({ distribution })).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  port = (server.address() as AddressInfo).port;
});
afterAll(() => new Promise((r) => server.close(r)));
beforeEach(() => {
  reads = 0;
  ended = false;
  failAt = -1;
});

const request = (method: string): Promise<http.IncomingMessage> =>
  new Promise((resolve, reject) => http.request({ host: '127.0.0.1', port, method, path: '/firmware/fw/1' }, resolve).on('error', reject).end());
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
});

it('HEAD gives the length and reads nothing', async () => {
  const res = await request('HEAD');
  res.resume();
  expect(res.headers['content-length']).toBe(String(CHUNKS * RELEASE_CHUNK_BYTES));
  expect(reads).toBe(0);
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
