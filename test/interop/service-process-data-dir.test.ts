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
/** rigFrom: the freePorts call that names the held port (the next one records what the retry begins on) */
let rigFrom = 0;
let recordsSeenByRetry: number | undefined;

jest.mock('../helpers/ports', () => {
  const actual = jest.requireActual<typeof import('../helpers/ports')>('../helpers/ports');
  return {
    ...actual,
    freePorts: async (n: number, host?: string): Promise<number[]> => {
      const ports = await actual.freePorts(n, host);
      const call = handedOut++;
      if (call === rigFrom && heldPort !== 0) ports[1] = heldPort;
      if (call === rigFrom + 1) {
        seenByRetry = fs.existsSync(dataDir) ? fs.readdirSync(dataDir) : null;
        if (seenByRetry) recordsSeenByRetry = await auditRecords(dataDir);
      }
      return ports;
    },
  };
});

/** auditRecords: the length of the audit chain in a data directory, as `audit verify` tells a user */
async function auditRecords(dir: string): Promise<number> {
  const v = JSON.parse((await runCli(['audit', 'verify', '--json'], { DEVICE_CA_DATA: dir })).stdout) as { ok: boolean; records: number };
  if (!v.ok) throw new Error(`audit chain of ${dir} does not verify`);
  return v.records;
}

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

it("a caller's data directory of a stopped service: the retried restart begins on what the service left (restored from the copy taken before the failed start)", async () => {
  await svc?.stop();
  svc = undefined;
  dataDir = tmp.file('data-restart');
  rigFrom = Number.MAX_SAFE_INTEGER;
  const first = await startService({ dataDir });
  await first.stop();
  const left = await auditRecords(dataDir);
  rigFrom = handedOut;
  svc = await startService({ dataDir });
  expect(handedOut).toBe(rigFrom + 2);
  expect(recordsSeenByRetry).toBe(left);
}, 120_000);
