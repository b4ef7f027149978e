import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { RunningService, runCli, startService } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * startService's retry on a port taken between freePorts and the bind, with a data directory the caller
 * chose: the start that failed had already made a CA in it (keys, certificates, audit records: serve binds
 * last), so the retry must begin on the directory as the caller gave it, not on what the failed start left,
 * or the test that asked for a first start gets a restart. The first freePorts answer names a port this
 * file holds open; the second records what the data directory held when the retry began.
 */

let held: net.Server | undefined;
let heldPort = 0;
let handedOut = 0;
let dataDir = '';
let seenByRetry: string[] | null | undefined;

jest.mock('../helpers/ports', () => {
  const actual = jest.requireActual<typeof import('../helpers/ports')>('../helpers/ports');
  return {
    ...actual,
    freePorts: async (n: number, host?: string): Promise<number[]> => {
      const ports = await actual.freePorts(n, host);
      const call = handedOut++;
      if (call === 0 && heldPort !== 0) ports[1] = heldPort;
      if (call === 1) seenByRetry = fs.existsSync(dataDir) ? fs.readdirSync(dataDir) : null;
      return ports;
    },
  };
});

let tmp: TmpDir;
let svc: RunningService | undefined;

beforeAll(async () => {
  tmp = makeTmpDir('device-ca-svc-datadir-');
  held = net.createServer((socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    held!.once('error', reject);
    held!.listen({ port: 0, host: '::' }, () => resolve());
  });
  heldPort = (held.address() as net.AddressInfo).port;
});

afterAll(async () => {
  await svc?.stop();
  await new Promise<void>((resolve) => (held ? held.close(() => resolve()) : resolve()));
  tmp?.cleanup();
});

it("a caller's new data directory: the retried start begins on it as given (absent), and its CA is the retry's own", async () => {
  dataDir = tmp.file('data');
  svc = await startService({ dataDir });
  expect(handedOut).toBe(2);
  expect(seenByRetry).toBeNull();
  // one CA made, once: the audit chain of a first start, verified as a user would
  const v = JSON.parse((await runCli(['audit', 'verify', '--json'], { DEVICE_CA_DATA: dataDir })).stdout) as { ok: boolean };
  expect(v.ok).toBe(true);
  expect(fs.existsSync(path.join(dataDir, 'ca'))).toBe(true);
}, 120_000);
