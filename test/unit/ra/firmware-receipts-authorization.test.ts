import type { HardwareTarget } from '../../../src/cms/firmware-attributes';
import * as crypto from 'node:crypto';
import { bufferSource } from '../../../src/cms/byte-source';
import { buildFirmwareReceipt, FirmwareReceipt } from '../../../src/cms/firmware-receipt';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { algorithmOfKey, softwareSigningKey } from '../../../src/keys/software-key-backend';
import { DeviceLifecycle, OPERATOR } from '../../../src/ra/device-lifecycle';
import { FirmwareReceipts } from '../../../src/ra/firmware-receipts';
import { makeRaHarness, RaHarness, secretProof } from './ra-harness';

/**
 * The receipt decisions of ra/firmware-receipts.ts as a matrix: who posts (anonymous, an active device,
 * a suspended or retired one) x which release (plain, encrypted to the device or not, unknown) x what the
 * receipt says and who signed it. Releases are stored directly; test/interop/firmware-receipt.test.ts
 * posts real receipts with curl over mTLS.
 */

let h: RaHarness;
let receipts: FirmwareReceipts;
const devices = new Map<string, { cert: crypto.X509Certificate; key: crypto.KeyObject }>();
const HW = '1.3.6.1.4.1.99999.1';

async function device(id: string): Promise<void> {
  const secret = await h.register(id, { owner: 'acme' });
  const csr = h.csr(id);
  const r = await h.issued('default', 'enroll', csr.der, secretProof(id, secret));
  devices.set(id, { cert: new crypto.X509Certificate(r.certificate), key: csr.key });
}
async function release(version: number, recipients: string[] | null, name = 'fw', hardware?: HardwareTarget[]): Promise<void> {
  const info = { name, version, sha256: '00'.repeat(32), signers: [], recipients, hardware, releasedAt: new Date() };
  await h.store.saveFirmwareRelease(info, bufferSource(Buffer.from(`release ${version}`)), { type: 'firmware.released', actor: 'test', subject: `firmware:${name}`, data: { version } });
}
/** receipt: a receipt signed by `signer` (default: the device named in it) */
async function receipt(r: Partial<FirmwareReceipt> & { hwSerial: string }, signer = r.hwSerial): Promise<Buffer> {
  const d = devices.get(signer)!;
  const full: FirmwareReceipt = { kind: 'loaded', hwType: HW, package: { name: 'fw', version: 1 }, ...r };
  return buildFirmwareReceipt(full, { certificate: Buffer.from(d.cert.raw), key: softwareSigningKey(d.key, algorithmOfKey(d.key), 'test') }, new Date());
}
/** post: the outcome ("recorded"/"repeat" with the running version) or the refusal ("<code>: <message>") */
async function post(who: string, version: string, body: Buffer, name = 'fw'): Promise<string> {
  const clientCertificate = who === 'anonymous' ? undefined : devices.get(who)!.cert;
  try {
    const got = await receipts.submit({ name, version, body, requester: { clientCertificate } });
    return `${got.outcome} ${got.kind}: runs ${got.record.running?.version ?? 'none'}${got.record.error ? `, error ${got.record.error.code} at ${got.record.error.version}` : ''}`;
  } catch (e) {
    if (!(e instanceof DeviceCaError)) throw e;
    return `${e.code}: ${e.message}`;
  }
}

beforeAll(async () => {
  h = await makeRaHarness();
  receipts = new FirmwareReceipts(h.store);
  for (const id of ['dev-a', 'dev-b', 'dev-s', 'dev-r', 'dev-c']) await device(id);
  await release(1, null);
  await release(2, ['dev-a', 'dev-s', 'dev-r']);
  await release(3, ['dev-b']);
  const lifecycle = new DeviceLifecycle(h.cfg, h.store);
  await lifecycle.suspend('dev-s', OPERATOR, 'test');
  await lifecycle.retire('dev-r', OPERATOR, 'test');
}, 60_000);
afterAll(() => h.close());

const NF = 'not-found: no such firmware release';
describe('who may post which receipt', () => {
  it('the authentication and release matrix', async () => {
    const own = (id: string, version: number) => receipt({ hwSerial: id, package: { name: 'fw', version } });
    const matrix: [string, string, Buffer, string][] = [
      ['anonymous', '1', await own('dev-a', 1), 'unauthenticated: a receipt is posted over HTTPS with the device certificate (TLS client authentication)'],
      ['dev-s', '2', await own('dev-s', 2), 'forbidden: the client certificate is revoked'],
      ['dev-r', '2', await own('dev-r', 2), 'forbidden: the client certificate is revoked'],
      ['dev-a', '3', await own('dev-a', 3), NF], // encrypted to another device: as if it did not exist
      ['dev-a', '4', await own('dev-a', 4), NF],
      ['dev-a', 'latest', await own('dev-a', 1), NF],
      ['dev-b', '1', await own('dev-b', 1), 'recorded loaded: runs 1'],
      ['dev-b', '3', await own('dev-b', 3), 'recorded loaded: runs 3'],
    ];
    for (const [who, version, body, expected] of matrix) expect(`${who} v${version}: ${await post(who, version, body)}`).toBe(`${who} v${version}: ${expected}`);
    expect(await post('dev-a', '1', await own('dev-a', 1), 'other')).toBe(NF);
  });

  it("refuses another device's receipt, a receipt for another serial, and one naming another package", async () => {
    // dev-c relays dev-a's receipt: signed by dev-a's key, not the TLS certificate's
    expect(await post('dev-c', '1', await receipt({ hwSerial: 'dev-a' }))).toBe('forbidden: the receipt is signed by O=acme, CN=dev-a, not by the client certificate of device dev-c');
    // signed by dev-c's own key, but says it is dev-a
    expect(await post('dev-c', '1', await receipt({ hwSerial: 'dev-a' }, 'dev-c'))).toBe('forbidden: the receipt is for hardware serial "dev-a", not device dev-c');
    expect(await post('dev-c', '1', await receipt({ hwSerial: 'dev-c', package: { name: 'fw', version: 2 } }))).toBe('bad-request: the receipt names fw version 2, not fw version 1');
    expect(await post('dev-c', '1', await receipt({ hwSerial: 'dev-c', package: { name: 'fw2', version: 1 } }))).toBe('bad-request: the receipt names fw2 version 1, not fw version 1');
    expect(await post('dev-c', '1', Buffer.from('not a receipt'))).toMatch(/^bad-request: /);
    const tampered = await receipt({ hwSerial: 'dev-c' });
    tampered[tampered.indexOf(Buffer.from('dev-c')) + 4] = 'x'.charCodeAt(0);
    expect(await post('dev-c', '1', tampered)).toMatch(/^bad-signature: /);
    // nothing of the refused ones was recorded
    expect(await h.store.getFirmwareReceipt('fw', 'dev-c')).toBeNull();
    expect((await h.audit('firmware.receipt')).filter((r) => r.actor === 'device:dev-c')).toEqual([]);
  });

  it('a repeat is idempotent (one audit record), a replayed older receipt is a conflict, an error report is kept until that version loads', async () => {
    const v1 = await receipt({ hwSerial: 'dev-a', package: { name: 'fw', version: 1 } });
    expect(await post('dev-a', '1', v1)).toBe('recorded loaded: runs 1');
    expect(await post('dev-a', '1', v1)).toBe('repeat loaded: runs 1');
    const failed = await receipt({ hwSerial: 'dev-a', kind: 'error', errorCode: 23, vendorErrorCode: 5, package: null });
    expect(await post('dev-a', '2', failed)).toBe('recorded error: runs 1, error 23 at 2');
    expect(await post('dev-a', '2', await receipt({ hwSerial: 'dev-a', package: { name: 'fw', version: 2 } }))).toBe('recorded loaded: runs 2');
    expect(await post('dev-a', '1', v1)).toBe('conflict: device dev-a already reported version 2 of fw: a receipt for 1 is stale');
    const audit = (await h.audit('firmware.receipt')).filter((r) => r.actor === 'device:dev-a');
    expect(audit.map((r) => [r.subject, r.data.version, r.data.outcome, r.data.errorCode])).toEqual([
      ['firmware:fw', 1, 'loaded', undefined],
      ['firmware:fw', 2, 'error', 23],
      ['firmware:fw', 2, 'loaded', undefined],
    ]);
  });

  it('status: versions run, counts per version, devices with a load error', async () => {
    await release(1, null, 'st');
    await release(2, null, 'st', [{ type: '1.3.6.1.4.1.99.1', serial: 'SN-1' }, { type: '1.3.6.1.4.1.99.2' }]);
    const st = (id: string, version: number, extra: Partial<FirmwareReceipt> = {}) => receipt({ hwSerial: id, package: { name: 'st', version }, ...extra });
    await post('dev-a', '1', await st('dev-a', 1), 'st');
    await post('dev-a', '2', await st('dev-a', 2), 'st');
    await post('dev-b', '1', await st('dev-b', 1), 'st');
    await post('dev-c', '1', await st('dev-c', 1), 'st');
    await post('dev-c', '2', await st('dev-c', 2, { kind: 'error', errorCode: 34, package: null }), 'st');
    const s = await receipts.status('st');
    expect(s.releases.map((r) => r.version)).toEqual([2, 1]);
    // each release's target hardware, [] for any hardware
    expect(s.releases.map((r) => r.hardware)).toEqual([[{ type: '1.3.6.1.4.1.99.1', serial: 'SN-1' }, { type: '1.3.6.1.4.1.99.2' }], []]);
    expect(s.versions).toEqual([
      { version: 2, devices: 1 },
      { version: 1, devices: 2 },
    ]);
    expect(s.devices.map((d) => [d.device, d.version, d.error?.code ?? null])).toEqual([
      ['dev-a', 2, null],
      ['dev-b', 1, null],
      ['dev-c', 1, 34],
    ]);
    expect(s.errors).toEqual([{ device: 'dev-c', version: 2, code: 34, vendorCode: null, at: expect.any(Date) }]);
    expect([s.summary, s.next]).toEqual([{ devices: 3, loadErrors: [{ code: 34, devices: 1 }] }, null]);
    // paged: the device rows and their errors one page at a time, the summary of every device on each page
    const p1 = await receipts.status('st', OPERATOR, { limit: 2 });
    expect([p1.devices.map((d) => d.device), p1.errors, p1.next, p1.versions, p1.summary]).toEqual([['dev-a', 'dev-b'], [], 'dev-b', s.versions, s.summary]);
    const p2 = await receipts.status('st', OPERATOR, { limit: 2, after: p1.next! });
    expect([p2.devices.map((d) => d.device), p2.errors.map((e) => e.device), p2.next]).toEqual([['dev-c'], ['dev-c'], null]);
    for (const limit of [0, 1001, 1.5]) await expect(receipts.status('st', OPERATOR, { limit })).rejects.toMatchObject({ code: 'bad-request', message: 'limit must be 1 to 1000' });
    await expect(receipts.status('st', { kind: 'owner', owner: 'acme' }, { limit: 1 })).rejects.toMatchObject({ code: 'forbidden' });
    await expect(receipts.status('nothing')).rejects.toMatchObject({ code: 'not-found' });
    await expect(receipts.status('../x')).rejects.toMatchObject({ code: 'not-found' });
  });
});
