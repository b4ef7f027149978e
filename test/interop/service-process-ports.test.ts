import * as net from 'node:net';
import { RunningService, startService } from '../helpers/service-process';

/**
 * The test helper's start on a port another process took between freePorts and the service's bind: the
 * service exits with EADDRINUSE, and startService starts it again on new ports instead of failing the test
 * that asked for it. The first freePorts answer is made to name a port this file holds open.
 */

let held: net.Server | undefined;
let heldPort = 0;
let handedOut = 0;

jest.mock('../helpers/ports', () => {
  const actual = jest.requireActual<typeof import('../helpers/ports')>('../helpers/ports');
  return {
    ...actual,
    freePorts: async (n: number, host?: string): Promise<number[]> => {
      const ports = await actual.freePorts(n, host);
      // the first answer names the held port as the HTTP port, as if another process had taken it meanwhile
      if (handedOut++ === 0 && heldPort !== 0) ports[1] = heldPort;
      return ports;
    },
  };
});

let svc: RunningService | undefined;

beforeAll(async () => {
  // '::' as the service binds: the listener holds the port on every address, as a process that took it would
  held = net.createServer((socket) => socket.destroy()); // a probe that reaches it gets no answer, and holds nothing open
  await new Promise<void>((resolve, reject) => {
    held!.once('error', reject);
    held!.listen({ port: 0, host: '::' }, () => resolve());
  });
  heldPort = (held.address() as net.AddressInfo).port;
});

afterAll(async () => {
  await svc?.stop();
  await new Promise<void>((resolve) => (held ? held.close(() => resolve()) : resolve()));
});

it('a port taken before the service bound it: started again on other ports, healthy, the held port left alone', async () => {
  svc = await startService();
  expect(handedOut).toBe(2);
  expect(svc.httpPort).not.toBe(heldPort);
  const r = await fetch(`http://127.0.0.1:${svc.httpPort}/healthz`);
  expect({ status: r.status, body: await r.text() }).toEqual({ status: 200, body: 'ok\n' });
  expect(held!.listening).toBe(true);
}, 120_000);
