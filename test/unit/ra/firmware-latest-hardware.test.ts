import * as crypto from 'node:crypto';
import { readReleaseBytes } from '../../../src/store/release-chunks';
import { bufferSource } from '../../../src/cms/byte-source';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { FirmwareDistribution } from '../../../src/ra/firmware-distribution';
import { FirmwareReleaseInfo } from '../../../src/store/store';
import { makeRaHarness, RaHarness, secretProof } from './ra-harness';

/**
 * `GET /firmware/<name>/latest` and the device's hardware (issue 13, ra/firmware-distribution.ts) as a
 * matrix: the releases' RFC 4108 targets (none, a module type, a type with a serial list with and without
 * the device's serial, another type) x the device's hardware (a type its receipts reported, for this
 * name or another; unknown) x anonymous. The hardware serial is the device id (the receipts' hwSerialNum).
 */

const A = '1.3.6.1.4.1.99.1';
const B = '1.3.6.1.4.1.99.2';

let h: RaHarness;
let dist: FirmwareDistribution;
const certs = new Map<string, crypto.X509Certificate>();

async function device(id: string): Promise<void> {
  const secret = await h.register(id, { owner: 'acme' });
  const r = await h.issued('default', 'enroll', h.csr(id).der, secretProof(id, secret));
  certs.set(id, new crypto.X509Certificate(r.certificate));
}
async function release(name: string, version: number, hardware: FirmwareReleaseInfo['hardware']): Promise<void> {
  const info: FirmwareReleaseInfo = { name, version, sha256: '00'.repeat(32), signers: [], recipients: null, releasedAt: new Date(), ...(hardware ? { hardware } : {}) };
  await h.store.saveFirmwareRelease(info, bufferSource(Buffer.from(`${name} ${version}`)), { type: 'firmware.released', actor: 'test', subject: `firmware:${name}`, data: { version } });
}
let clock = Date.parse('2026-03-01T00:00:00Z');
/** reported: the device posted a receipt for `name` saying its hardware is of type `hwType` (each a second after the one before) */
async function reported(name: string, deviceId: string, hwType: string): Promise<void> {
  await h.store.recordFirmwareReceipt(
    { name, version: 1, deviceId, outcome: 'error', errorCode: 23, hwType, sha256: crypto.randomBytes(32).toString('hex'), at: new Date((clock += 1000)) },
    { type: 'firmware.receipt', actor: `device:${deviceId}`, subject: `firmware:${name}`, data: {} },
  );
}
/** outcome: the version served ("v<n>") or the refusal ("<code>") */
async function latest(who: string, name: string, version = 'latest'): Promise<string> {
  try {
    const got = await dist.download({ name, version, requester: { clientCertificate: who === 'anonymous' ? undefined : certs.get(who) } });
    expect(await readReleaseBytes(got.bytes)).toEqual(Buffer.from(`${name} ${got.release.version}`));
    return `v${got.release.version}`;
  } catch (e) {
    if (!(e instanceof DeviceCaError)) throw e;
    return e.code;
  }
}

const NAMES = ['none', 'type', 'serial', 'other'];
beforeAll(async () => {
  h = await makeRaHarness();
  dist = new FirmwareDistribution(h.store);
  for (const id of ['dev-a', 'dev-c', 'dev-b', 'dev-u']) await device(id);
  // none: the newest has no targets (a release recorded before targets were kept), an older one is for A
  await release('none', 1, [{ type: A }]);
  await release('none', 2, undefined);
  // type: any hardware, then A, then B
  await release('type', 1, []);
  await release('type', 2, [{ type: A }]);
  await release('type', 3, [{ type: B }]);
  // serial: A, then A for dev-a only, then A for two other devices
  await release('serial', 1, [{ type: A }]);
  await release('serial', 2, [{ type: A, serial: 'dev-a' }]);
  await release('serial', 3, [
    { type: A, serial: 'dev-x' },
    { type: A, serial: 'dev-y' },
  ]);
  // other: only for B
  await release('other', 1, [{ type: B }]);
  for (const name of NAMES) {
    await reported(name, 'dev-a', A);
    await reported(name, 'dev-c', A);
    await reported(name, 'dev-b', B);
  }
}, 60_000);
afterAll(() => h.close());

describe('latest skips releases for other hardware when the device reported its hardware', () => {
  // requester: none, type, serial, other
  const matrix: [string, string[]][] = [
    ['dev-a', ['v2', 'v2', 'v2', 'not-found']], // A, its serial named in serial@2
    ['dev-c', ['v2', 'v2', 'v1', 'not-found']], // A, its serial named nowhere: serial@2 and @3 are for other A devices
    ['dev-b', ['v2', 'v3', 'not-found', 'v1']], // B
    ['dev-u', ['v2', 'v3', 'v3', 'v1']], // no receipt: hardware unknown, the newest as before
    ['anonymous', ['v2', 'v3', 'v3', 'v1']],
  ];
  it.each(matrix)('%s', async (who, expected) => {
    const got: string[] = [];
    for (const name of NAMES) got.push(await latest(who, name));
    expect(got).toEqual(expected);
  });

  it('a named version is served whatever its targets (the agent refuses it with a load error report)', async () => {
    expect(await latest('dev-a', 'other', '1')).toBe('v1');
    expect(await latest('dev-c', 'serial', '3')).toBe('v3');
  });

  it("the device's newest receipt counts: hardware reported anew changes what latest serves", async () => {
    await release('moved', 1, [{ type: A }]);
    await release('moved', 2, [{ type: B }]);
    await reported('moved', 'dev-u', A);
    expect(await latest('dev-u', 'moved')).toBe('v1');
    await reported('moved', 'dev-u', B);
    expect(await latest('dev-u', 'moved')).toBe('v2');
  });

  it("a device's receipt of another name tells its hardware when it has none for this name; its receipt for this name comes first", async () => {
    await device('dev-n');
    await release('fresh', 1, [{ type: A }]);
    await release('fresh', 2, [{ type: B }]);
    expect(await latest('dev-n', 'fresh')).toBe('v2'); // nothing reported yet
    await reported('elsewhere', 'dev-n', A);
    expect(await latest('dev-n', 'fresh')).toBe('v1');
    await reported('another', 'dev-n', B); // newer, of another name: the newest of any name counts
    expect(await latest('dev-n', 'fresh')).toBe('v2');
    await reported('fresh', 'dev-n', A); // this name's own receipt, whatever came after elsewhere
    await reported('later', 'dev-n', B);
    expect(await latest('dev-n', 'fresh')).toBe('v1');
  });

  it('the download audit names the version served for the hardware', async () => {
    const before = (await h.audit('firmware.downloaded')).length;
    await latest('dev-c', 'serial');
    const added = (await h.audit('firmware.downloaded')).slice(before);
    expect(added.map((r) => r.data)).toEqual([{ version: 1, device: 'dev-c', encrypted: false }]);
  });
});
