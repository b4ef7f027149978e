import * as crypto from 'node:crypto';
import { readReleaseBytes } from '../../../src/store/release-chunks';
import { bufferSource } from '../../../src/cms/byte-source';
import * as x509 from '@peculiar/x509';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { DeviceLifecycle, OPERATOR } from '../../../src/ra/device-lifecycle';
import { FirmwareDistribution } from '../../../src/ra/firmware-distribution';
import { makeRaHarness, RaHarness, secretProof } from './ra-harness';

/**
 * The download authorization of ra/firmware-distribution.ts as a matrix: requester (anonymous, each kind
 * of device certificate) x release (plain, encrypted to the device or not) x version (named, latest).
 * Releases are stored directly (their bytes are opaque here); test/interop/firmware.test.ts serves real
 * releases over HTTP and mTLS.
 */

let h: RaHarness;
let dist: FirmwareDistribution;
const certs = new Map<string, crypto.X509Certificate>();

async function device(id: string): Promise<void> {
  const secret = await h.register(id, { owner: 'acme' });
  const r = await h.issued('default', 'enroll', h.csr(id).der, secretProof(id, secret));
  certs.set(id, new crypto.X509Certificate(r.certificate));
}
async function release(version: number, recipients: string[] | null): Promise<void> {
  const info = { name: 'fw', version, sha256: '00'.repeat(32), signers: [], recipients, releasedAt: new Date() };
  await h.store.saveFirmwareRelease(info, bufferSource(Buffer.from(`release ${version}`)), { type: 'firmware.released', actor: 'test', subject: 'firmware:fw', data: { version } });
}
/** outcome: the release served ("v<n>") or the refusal ("<code>: <message>") */
async function outcome(who: string, version: string, name = 'fw'): Promise<string> {
  const clientCertificate = who === 'anonymous' ? undefined : certs.get(who);
  try {
    const got = await dist.download({ name, version, requester: { clientCertificate } });
    expect(await readReleaseBytes(got.bytes)).toEqual(Buffer.from(`release ${got.release.version}`));
    return `v${got.release.version}`;
  } catch (e) {
    if (!(e instanceof DeviceCaError)) throw e;
    return `${e.code}: ${e.message}`;
  }
}

beforeAll(async () => {
  h = await makeRaHarness();
  dist = new FirmwareDistribution(h.store);
  for (const id of ['dev-a', 'dev-b', 'dev-s', 'dev-r']) await device(id);
  // a certificate the CA never issued, with the serial of dev-a's
  const keys = (await crypto.webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as crypto.webcrypto.CryptoKeyPair;
  const foreign = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: certs.get('dev-a')!.serialNumber,
    name: 'CN=dev-a',
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86400_000),
  });
  certs.set('foreign', new crypto.X509Certificate(Buffer.from(foreign.rawData)));
  await release(1, null);
  await release(2, ['dev-a', 'dev-s', 'dev-r']);
  await release(3, ['dev-b']);
  const lifecycle = new DeviceLifecycle(h.cfg, h.store);
  await lifecycle.suspend('dev-s', OPERATOR, 'test');
  await lifecycle.retire('dev-r', OPERATOR, 'test');
}, 60_000);
afterAll(() => h.close());

const NF = 'not-found: no such firmware release';
describe('who may download which release', () => {
  const matrix: [string, string, string][] = [
    // anonymous (HTTP, or HTTPS without a client certificate): plain releases only
    ['anonymous', '1', 'v1'],
    ['anonymous', '2', NF],
    ['anonymous', '3', NF],
    ['anonymous', 'latest', 'v1'],
    // an active recipient: plain ones and its own
    ['dev-a', '1', 'v1'],
    ['dev-a', '2', 'v2'],
    ['dev-a', '3', NF],
    ['dev-a', 'latest', 'v2'],
    ['dev-b', '2', NF],
    ['dev-b', '3', 'v3'],
    ['dev-b', 'latest', 'v3'],
    // a suspended (its certificates are on hold) or retired device, a certificate this CA did not issue: nothing
    ['dev-s', '1', 'forbidden: the client certificate is revoked'],
    ['dev-s', '2', 'forbidden: the client certificate is revoked'],
    ['dev-r', '2', 'forbidden: the client certificate is revoked'],
    ['dev-r', 'latest', 'forbidden: the client certificate is revoked'],
    ['foreign', '1', 'forbidden: the client certificate is not a device certificate of this CA'],
  ];
  it.each(matrix)('%s asks for version %s -> %s', async (who, version, expected) => {
    expect(await outcome(who, version)).toBe(expected);
  });

  it('unknown names and versions, malformed ones included, are the same not-found', async () => {
    for (const [name, version] of [
      ['fw', '4'],
      ['other', 'latest'],
      ['fw', '01'],
      ['fw', '-1'],
      ['fw', '99999999999999999'],
      ['fw', 'LATEST'],
      ['../fw', '1'],
      ['', '1'],
      ['constructor', 'latest'],
    ])
      expect(await outcome('dev-a', version, name)).toBe(NF);
  });

  it("every device's download is audited with who got which version; a refusal is not a download", async () => {
    const before = (await h.audit('firmware.downloaded')).length;
    await outcome('dev-a', 'latest');
    await outcome('anonymous', '1');
    await outcome('dev-b', '2');
    const after = (await h.audit('firmware.downloaded')).slice(before);
    expect(after.map((r) => [r.actor, r.data])).toEqual([['device:dev-a', { version: 2, device: 'dev-a', encrypted: true }]]);
    await dist.flushAnonymous();
  });

  it('a HEAD request gets the same decision and length but is no download: nothing audited or counted', async () => {
    const t = new Date();
    const quiet = new FirmwareDistribution(h.store, () => t, 3_600_000);
    const before = (await h.audit()).length;
    const mine = await quiet.download({ name: 'fw', version: '2', requester: { clientCertificate: certs.get('dev-a') }, head: true });
    expect(mine.release.version).toBe(2);
    expect(mine.bytes.length).toBeGreaterThan(0);
    expect((await quiet.download({ name: 'fw', version: 'latest', requester: {}, head: true })).release.version).toBe(1);
    await expect(quiet.download({ name: 'fw', version: '2', requester: {}, head: true })).rejects.toThrow('no such firmware release');
    await quiet.close();
    expect((await h.audit()).length).toBe(before);
  });

  it('anonymous downloads are one firmware.downloads record per release per interval, with the count: the audit log does not grow per download', async () => {
    const t = new Date();
    const quiet = new FirmwareDistribution(h.store, () => t, 3_600_000);
    const before = (await h.audit()).length;
    for (let i = 0; i < 250; i++) expect((await quiet.download({ name: 'fw', version: 'latest', requester: {} })).release.version).toBe(1);
    await quiet.download({ name: 'fw', version: '1', requester: {} });
    expect((await h.audit()).length).toBe(before); // nothing yet: counted
    await quiet.download({ name: 'fw', version: '2', requester: { clientCertificate: certs.get('dev-a') } });
    await quiet.close();
    const added = (await h.audit()).slice(before);
    expect(added.map((r) => [r.type, r.actor, r.subject, r.data])).toEqual([
      ['firmware.downloaded', 'device:dev-a', 'firmware:fw', { version: 2, device: 'dev-a', encrypted: true }],
      ['firmware.downloads', 'anonymous', 'firmware:fw', { version: 1, count: 251, since: t.toISOString() }],
    ]);
    await quiet.close(); // nothing counted since: no record
    expect((await h.audit()).length).toBe(before + 2);
  });
});
