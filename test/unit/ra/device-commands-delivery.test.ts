import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { verifyDeviceCommand } from '../../../src/cms/device-command';
import { buildDeviceCommandReport, DeviceCommandReport } from '../../../src/cms/device-command-report';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { algorithmOfKey, SoftwareKeyBackend, softwareSigningKey } from '../../../src/keys/software-key-backend';
import { DeviceCommands } from '../../../src/ra/device-commands';
import { DeviceLifecycle, OPERATOR } from '../../../src/ra/device-lifecycle';
import { FirmwareRequester } from '../../../src/ra/firmware-distribution';
import { makeRaHarness, RaHarness, secretProof } from './ra-harness';

/**
 * Delivery of signed device commands (ra/device-commands.ts `fetch`, `report`, `state`), as a matrix of
 * who fetches (the TLS client certificate) x the device's state: a retired or released device fetches
 * its command with its last certificate, revoked by that very step; a certificate revoked for another
 * reason, one of another CA, or none gets nothing. The command is signed over the device's nonce. The
 * agent's signed report is recorded once, for the command it fetched, by the key that fetched it.
 */
let h: RaHarness;
let dc: DeviceCommands;
let life: DeviceLifecycle;
let chain: Buffer[];
interface Dev {
  id: string;
  cert: crypto.X509Certificate;
  key: crypto.KeyObject;
}
const devs: Record<string, Dev> = {};

async function active(id: string): Promise<Dev> {
  const secret = await h.register(id, { owner: 'acme' });
  const csr = h.csr(id);
  const out = await h.issued('default', 'enroll', csr.der, secretProof(id, secret));
  return (devs[id] = { id, cert: new crypto.X509Certificate(out.certificate), key: csr.key });
}
const nonce = (): string => crypto.randomBytes(32).toString('hex');
const as = (d: Dev | null): FirmwareRequester => (d ? { clientCertificate: d.cert } : {});
const signReport = (d: Dev, r: DeviceCommandReport): Promise<Buffer> =>
  buildDeviceCommandReport(r, { certificate: Buffer.from(d.cert.raw), key: softwareSigningKey(d.key, algorithmOfKey(d.key), 'test') }, new Date());

beforeAll(async () => {
  h = await makeRaHarness();
  dc = new DeviceCommands(h.cfg, h.store, new SoftwareKeyBackend(path.join(h.dir, 'keys')), h.now);
  life = new DeviceLifecycle(h.cfg, h.store);
  await active('c-active');
  await active('c-retired');
  await life.retire('c-retired', OPERATOR, 'test');
  await dc.issue({ deviceId: 'c-retired', command: 'retire', actor: 'test' });
  await active('c-retired-none');
  await life.retire('c-retired-none', OPERATOR, 'test');
  const leaked = await active('c-leaked');
  await life.revoke(leaked.cert.serialNumber.toLowerCase().padStart(32, '0'), 'keyCompromise', OPERATOR, 'test');
  await life.retire('c-leaked', OPERATOR, 'test');
  await dc.issue({ deviceId: 'c-leaked', command: 'retire', actor: 'test' });
  await active('c-released');
  await life.release('c-released', 'globex', OPERATOR, 'test');
  await dc.issue({ deviceId: 'c-released', command: 'transfer', actor: 'test' });
  await active('c-claimed');
  await life.release('c-claimed', 'globex', OPERATOR, 'test');
  await dc.issue({ deviceId: 'c-claimed', command: 'transfer', actor: 'test' });
  await life.claim('c-claimed', OPERATOR, 'test');
  await active('c-cancelled');
  await life.release('c-cancelled', 'globex', OPERATOR, 'test');
  await dc.issue({ deviceId: 'c-cancelled', command: 'transfer', actor: 'test' });
  await life.cancelRelease('c-cancelled', OPERATOR, 'test');
  // moved from acme to globex (its acme certificate revoked affiliationChanged), enrolled by globex, retired by
  // globex: the acme certificate is not the device's last, so it must not fetch globex's retire command
  await active('c-moved');
  devs['c-moved-acme'] = devs['c-moved'];
  await life.release('c-moved', 'globex', OPERATOR, 'test');
  const claimed = await life.claim('c-moved', OPERATOR, 'test');
  const movedCsr = h.csr('c-moved');
  const moved = await h.issued('default', 'enroll', movedCsr.der, secretProof('c-moved', claimed.secret));
  devs['c-moved'] = { id: 'c-moved', cert: new crypto.X509Certificate(moved.certificate), key: movedCsr.key };
  await life.retire('c-moved', OPERATOR, 'test');
  await dc.issue({ deviceId: 'c-moved', command: 'retire', actor: 'test' });
  const chainPem = fs.readFileSync(path.join(h.dir, 'ca', 'firmware-chain.pem'), 'latin1');
  chain = [...chainPem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)].map((m) => new crypto.X509Certificate(m[0]).raw);
}, 60_000);
afterAll(() => h.close());

// [who fetches, expected]: 'command <kind>' when the device's command comes back signed over the nonce
const cases: [string, () => Dev | null, string][] = [
  ['no client certificate', () => null, 'unauthenticated: a device fetches its command over HTTPS with its device certificate (TLS client authentication)'],
  ['an active device (valid certificate), no command made', () => devs['c-active'], 'none'],
  ['a retired device, its last certificate (revoked cessationOfOperation), retire command made', () => devs['c-retired'], 'command retire'],
  ['a retired device, no command made yet', () => devs['c-retired-none'], 'none'],
  ['a retired device whose certificate was revoked keyCompromise first', () => devs['c-leaked'], 'forbidden: the certificate is revoked (keyCompromise)'],
  ['a released device (revoked affiliationChanged), transfer command made', () => devs['c-released'], 'command transfer'],
  ['a released device the new owner claimed (not enrolled yet)', () => devs['c-claimed'], 'command transfer'],
  ['a released device whose release was cancelled (the command no longer stands)', () => devs['c-cancelled'], 'none'],
  [
    "a device's earlier owner's certificate (revoked affiliationChanged) after the new owner enrolled and retired it",
    () => devs['c-moved-acme'],
    'forbidden: the certificate is revoked and the device has a newer one: only its last certificate may fetch or answer its command',
  ],
  ["that device with the new owner's last certificate (revoked cessationOfOperation)", () => devs['c-moved'], 'command retire'],
];

it.each(cases)('fetch by %s -> %s', async (_what, who, expected) => {
  const before = (await h.audit('device.command.fetched')).length;
  const n = nonce();
  const d = who();
  let got: string;
  try {
    const r = await dc.fetch({ requester: as(d), deviceNonce: n });
    if (r) {
      // the device's agent accepts it only with the nonce it sent
      const c = verifyDeviceCommand(r.der, { chain, device: (d as Dev).id, now: new Date(), deviceNonce: n });
      expect(c).toEqual(r.command);
      expect(() => verifyDeviceCommand(r.der, { chain, device: (d as Dev).id, now: new Date(), deviceNonce: nonce() })).toThrow(
        'the command is not signed over the nonce this agent sent (a recorded command replayed?)',
      );
    }
    got = r ? `command ${r.command.command}` : 'none';
  } catch (e) {
    got = e instanceof DeviceCaError ? `${e.code}: ${e.message}` : `other: ${String(e)}`;
  }
  expect(got).toBe(expected);
  expect((await h.audit('device.command.fetched')).length).toBe(before + (expected.startsWith('command') ? 1 : 0));
});

it('fetch: a certificate this CA never issued, and a malformed nonce, are refused', async () => {
  // a certificate of another CA, for a device of the same id
  const other = await makeRaHarness();
  try {
    const secret = await other.register('c-retired', { owner: 'acme' });
    const csr = other.csr('c-retired');
    const out = await other.issued('default', 'enroll', csr.der, secretProof('c-retired', secret));
    await expect(dc.fetch({ requester: { clientCertificate: new crypto.X509Certificate(out.certificate) }, deviceNonce: nonce() })).rejects.toThrow(
      'the certificate is not a device certificate of this CA',
    );
  } finally {
    await other.close();
  }
  for (const bad of ['', 'ab', 'AB'.repeat(16), 'ab'.repeat(65), 'zz'.repeat(16)])
    await expect(dc.fetch({ requester: as(devs['c-retired']), deviceNonce: bad })).rejects.toThrow('nonce: 16 to 64 random bytes in lowercase hex');
});

it('report: recorded once for the fetched command by the fetching key; the same again is a repeat, another outcome a conflict; devices show the state', async () => {
  await active('c-rep');
  await life.retire('c-rep', OPERATOR, 'test');
  const issued = await dc.issue({ deviceId: 'c-rep', command: 'retire', actor: 'test' });
  expect(await dc.state('c-rep')).toMatchObject({ command: 'retire', nonce: issued.command.nonce, state: 'pending', fetches: 0 });
  const n = nonce();
  const fetched = await dc.fetch({ requester: as(devs['c-rep']), deviceNonce: n });
  expect(fetched?.command).toMatchObject({ nonce: issued.command.nonce, deviceNonce: n });
  expect(await dc.state('c-rep')).toMatchObject({ state: 'fetched', fetches: 1 });
  const base: DeviceCommandReport = { device: 'c-rep', command: 'retire', nonce: issued.command.nonce, deviceNonce: n, outcome: 'done', evicted: ['0x81018000', '0x81018001'] };

  // a nonce the device never fetched with, another device's key, a command that is not the current one
  await expect(dc.report(await signReport(devs['c-rep'], { ...base, deviceNonce: nonce() }))).rejects.toThrow(`device c-rep never fetched command ${issued.command.nonce} with that device nonce`);
  await expect(dc.report(await signReport(devs['c-active'], base))).rejects.toThrow('the report is for device "c-rep" but signed by a certificate of device c-active');
  await expect(dc.report(await signReport(devs['c-rep'], { ...base, nonce: 'ab'.repeat(16) }))).rejects.toThrow(
    `the report answers retire command ${'ab'.repeat(16)}, which is not device c-rep's current command`,
  );
  expect(await h.audit('device.command.reported')).toHaveLength(0);

  const body = await signReport(devs['c-rep'], base);
  const r = await dc.report(body);
  expect(r.outcome).toBe('recorded');
  expect(r.state).toMatchObject({ state: 'done', evicted: ['0x81018000', '0x81018001'], reason: null });
  expect(await dc.state('c-rep')).toMatchObject({ state: 'done' });
  expect((await dc.report(body)).outcome).toBe('repeat');
  await expect(dc.report(await signReport(devs['c-rep'], { ...base, outcome: 'failed', reason: 'x' }))).rejects.toThrow(`device c-rep already reported command ${issued.command.nonce} done`);
  const audited = await h.audit('device.command.reported');
  expect(audited.map((a) => [a.subject, a.actor, a.data.outcome, a.data.serial])).toEqual([['c-rep', 'device:c-rep', 'done', devs['c-rep'].cert.serialNumber.toLowerCase().padStart(32, '0')]]);
  // done: nothing left to fetch
  expect(await dc.fetch({ requester: as(devs['c-rep']), deviceNonce: nonce() })).toBeNull();
});

it('two different reports at once: exactly one is recorded, the other is a conflict (and the same one twice at once: recorded and repeat)', async () => {
  for (const [id, second] of [
    ['c-race', 'failed'],
    ['c-race-same', 'done'],
  ] as const) {
    await active(id);
    await life.retire(id, OPERATOR, 'test');
    const issued = await dc.issue({ deviceId: id, command: 'retire', actor: 'test' });
    const n = nonce();
    await dc.fetch({ requester: as(devs[id]), deviceNonce: n });
    const base: DeviceCommandReport = { device: id, command: 'retire', nonce: issued.command.nonce, deviceNonce: n, outcome: 'done' };
    const bodies = [await signReport(devs[id], base), await signReport(devs[id], second === 'failed' ? { ...base, outcome: 'failed', reason: 'x' } : base)];
    const outcomes = await Promise.allSettled(bodies.map((b) => dc.report(b)));
    const got = outcomes.map((o) => (o.status === 'fulfilled' ? o.value.outcome : o.reason instanceof DeviceCaError ? o.reason.code : 'other')).sort();
    expect(got).toEqual(second === 'failed' ? ['conflict', 'recorded'] : ['recorded', 'repeat']);
    expect((await h.audit('device.command.reported')).filter((a) => a.subject === id)).toHaveLength(1);
  }
});

it('a failed report keeps its reason; a command not fetched before it expires is expired, and is not served', async () => {
  await active('c-fail');
  await life.retire('c-fail', OPERATOR, 'test');
  const issued = await dc.issue({ deviceId: 'c-fail', command: 'retire', actor: 'test' });
  const n = nonce();
  await dc.fetch({ requester: as(devs['c-fail']), deviceNonce: n });
  const r = await dc.report(await signReport(devs['c-fail'], { device: 'c-fail', command: 'retire', nonce: issued.command.nonce, deviceNonce: n, outcome: 'failed', reason: 'TPM_RC_LOCKOUT' }));
  expect(r.state).toMatchObject({ state: 'failed', reason: 'TPM_RC_LOCKOUT' });

  await active('c-late');
  await life.retire('c-late', OPERATOR, 'test');
  await dc.issue({ deviceId: 'c-late', command: 'retire', actor: 'test' });
  h.advance(8 * 24 * 3600);
  try {
    expect(await dc.state('c-late')).toMatchObject({ state: 'expired' });
    expect(await dc.fetch({ requester: as(devs['c-late']), deviceNonce: nonce() })).toBeNull();
  } finally {
    h.advance(-8 * 24 * 3600);
  }
});

it('fuzz: damaged reports (flipped bytes, truncations, garbage) are DeviceCaErrors and record nothing', async () => {
  await active('c-fz');
  await life.retire('c-fz', OPERATOR, 'test');
  const issued = await dc.issue({ deviceId: 'c-fz', command: 'retire', actor: 'test' });
  const n = nonce();
  await dc.fetch({ requester: as(devs['c-fz']), deviceNonce: n });
  const good = await signReport(devs['c-fz'], { device: 'c-fz', command: 'retire', nonce: issued.command.nonce, deviceNonce: n, outcome: 'done' });
  let seed = 29;
  const rnd = (k: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % k;
  };
  const inputs: Buffer[] = [Buffer.alloc(0), Buffer.from('{}'), crypto.randomBytes(80)];
  for (let i = 0; i < 200; i++) {
    const b = Buffer.from(good);
    b[rnd(b.length)] ^= 1 + rnd(255);
    inputs.push(b);
  }
  for (let i = 0; i < 40; i++) inputs.push(good.subarray(0, rnd(good.length)));
  const before = (await h.audit('device.command.reported')).length;
  let accepted = 0;
  for (const input of inputs) {
    try {
      const r = await dc.report(input);
      // only a change outside the signed content (e.g. the unsigned certificate set) can pass: then it is this report
      expect(r.state).toMatchObject({ nonce: issued.command.nonce, state: 'done' });
      accepted++;
    } catch (e) {
      if (!(e instanceof DeviceCaError)) throw e;
    }
  }
  expect((await h.audit('device.command.reported')).length).toBe(before + (accepted > 0 ? 1 : 0));
});
