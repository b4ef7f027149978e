import express from 'express';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { DeviceCaError } from '../../../../src/errors/device-ca-error';
import { opsRouter } from '../../../../src/protocols/ops/ops-router';

/** /healthz stays `ok` for load balancers; `/healthz?detail` adds the operator's warnings, one a line. */
describe('opsRouter /healthz', () => {
  const get = async (warnings: string[], pathAndQuery: string) => {
    const app = express().use('/', opsRouter({ registry: new Registry(), health: async () => undefined, warnings: () => warnings }));
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    try {
      const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}${pathAndQuery}`);
      return { status: res.status, body: await res.text() };
    } finally {
      server.close();
    }
  };

  it('plain /healthz: 200 ok, whatever the warnings', async () => {
    expect(await get(['publicUrl is not set'], '/healthz')).toEqual({ status: 200, body: 'ok\n' });
  });

  it('/healthz?detail: 200, ok then one warning line each', async () => {
    expect(await get(['publicUrl is not set', 'root CRL lapses soon'], '/healthz?detail')).toEqual({
      status: 200,
      body: 'ok\nwarning: publicUrl is not set\nwarning: root CRL lapses soon\n',
    });
    expect(await get([], '/healthz?detail=1')).toEqual({ status: 200, body: 'ok\n' });
  });

  const getWith = async (health: () => Promise<void>, keyHealth: () => Promise<void>) => {
    const app = express().use('/', opsRouter({ registry: new Registry(), health, keyHealth }));
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    try {
      const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/healthz`);
      return { status: res.status, retryAfter: res.headers.get('retry-after'), body: await res.text() };
    } finally {
      server.close();
    }
  };
  const ok = async () => undefined;
  const keyDown = async () => {
    throw new DeviceCaError('key-backend', 'key backend did not answer within 2000 ms', { retryAfterSeconds: 30, detail: 'not for the body' });
  };

  it('an unhealthy key backend: 503 with its reason and Retry-After, never the detail', async () => {
    expect(await getWith(ok, keyDown)).toEqual({ status: 503, retryAfter: '30', body: 'unhealthy: key backend did not answer within 2000 ms\n' });
  });

  it('store and key backend both down: the store reason; both healthy: ok', async () => {
    const storeDown = async () => {
      throw new DeviceCaError('store-unavailable', 'store probe failed', { retryAfterSeconds: 5 });
    };
    expect(await getWith(storeDown, keyDown)).toEqual({ status: 503, retryAfter: '5', body: 'unhealthy: store probe failed\n' });
    expect(await getWith(ok, ok)).toEqual({ status: 200, retryAfter: null, body: 'ok\n' });
  });
});
