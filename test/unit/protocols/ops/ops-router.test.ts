import express from 'express';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
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
});
