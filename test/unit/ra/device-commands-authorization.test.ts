import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { verifyDeviceCommand } from '../../../src/cms/device-command';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { SoftwareKeyBackend } from '../../../src/keys/software-key-backend';
import { DeviceCommands } from '../../../src/ra/device-commands';
import { DeviceLifecycle, OPERATOR, Scope } from '../../../src/ra/device-lifecycle';
import { makeRaHarness, RaHarness, secretProof } from './ra-harness';

/**
 * Who gets a signed device command (ra/device-commands.ts), as a matrix: scope x device state. Only the
 * operator, only for a device the retire flow retired; every refusal names why and audits nothing. The
 * command made verifies (cms/device-command.ts) for that device only, and not after it expires.
 */
let h: RaHarness;
let dc: DeviceCommands;

async function active(id: string): Promise<void> {
  const secret = await h.register(id, { owner: 'acme' });
  await h.issued('default', 'enroll', h.csr(id).der, secretProof(id, secret));
}

beforeAll(async () => {
  h = await makeRaHarness();
  dc = new DeviceCommands(h.cfg, h.store, new SoftwareKeyBackend(path.join(h.dir, 'keys')));
  const life = new DeviceLifecycle(h.cfg, h.store);
  await h.register('d-registered', { owner: 'acme' });
  await active('d-active');
  await active('d-suspended');
  await life.suspend('d-suspended', OPERATOR, 'test');
  await active('d-transferring');
  await life.release('d-transferring', 'globex', OPERATOR, 'test');
  await active('d-retired');
  await life.retire('d-retired', OPERATOR, 'test');
}, 60_000);
afterAll(() => h.close());

const OWNER: Scope = { kind: 'owner', owner: 'acme' };
const cases: [string, Scope, string][] = [
  ['d-retired', OPERATOR, 'issued'],
  ['d-retired', OWNER, 'forbidden: operator scope required'],
  ['d-active', OPERATOR, 'forbidden: device d-active is active: retire it first (devices retire d-active); the command tells its agent to delete what is left'],
  ['d-registered', OPERATOR, 'forbidden: device d-registered is registered: retire it first (devices retire d-registered); the command tells its agent to delete what is left'],
  ['d-suspended', OPERATOR, 'forbidden: device d-suspended is suspended: retire it first (devices retire d-suspended); the command tells its agent to delete what is left'],
  ['d-transferring', OPERATOR, 'forbidden: device d-transferring is transferring: retire it first (devices retire d-transferring); the command tells its agent to delete what is left'],
  ['nope', OPERATOR, 'not-found: device nope is not registered'],
];
const RELEASE_FIRST = (id: string, state: string): string => `forbidden: device ${id} is ${state}: release it first (devices release ${id} --to <owner>); the command tells its agent to enroll again`;
const transferCases: [string, Scope, string][] = [
  ['d-transferring', OPERATOR, 'issued for globex'],
  ['d-transferring', OWNER, 'forbidden: operator scope required'],
  ['d-active', OPERATOR, RELEASE_FIRST('d-active', 'active')],
  ['d-registered', OPERATOR, RELEASE_FIRST('d-registered', 'registered')],
  ['d-suspended', OPERATOR, RELEASE_FIRST('d-suspended', 'suspended')],
  ['d-retired', OPERATOR, RELEASE_FIRST('d-retired', 'retired')],
  ['nope', OPERATOR, 'not-found: device nope is not registered'],
];

it.each(transferCases)('transfer command for %s as %j -> %s', async (id, scope, expected) => {
  const before = (await h.audit('device.command.issued')).length;
  let got: string;
  try {
    const r = await dc.issue({ deviceId: id, command: 'transfer', actor: 'test', scope });
    got = `issued for ${r.command.newOwner}`;
  } catch (e) {
    got = e instanceof DeviceCaError ? `${e.code}: ${e.message}` : `other: ${String(e)}`;
  }
  expect(got).toBe(expected);
  expect((await h.audit('device.command.issued')).length).toBe(before + (expected.startsWith('issued') ? 1 : 0));
});

it.each(cases)('retire command for %s as %j -> %s', async (id, scope, expected) => {
  const before = (await h.audit('device.command.issued')).length;
  let got: string;
  try {
    await dc.issue({ deviceId: id, command: 'retire', actor: 'test', scope });
    got = 'issued';
  } catch (e) {
    got = e instanceof DeviceCaError ? `${e.code}: ${e.message}` : `other: ${String(e)}`;
  }
  expect(got).toBe(expected);
  expect((await h.audit('device.command.issued')).length).toBe(before + (expected === 'issued' ? 1 : 0));
});

it('the command verifies with the firmware chain for its device only, within its validity', async () => {
  const { der, command } = await dc.issue({ deviceId: 'd-retired', command: 'retire', actor: 'test' });
  const chainPem = fs.readFileSync(path.join(h.dir, 'ca', 'firmware-chain.pem'), 'latin1');
  const chain = [...chainPem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)].map((m) => new crypto.X509Certificate(m[0]).raw);
  const now = new Date();
  expect(verifyDeviceCommand(der, { chain, device: 'd-retired', now })).toEqual(command);
  expect(() => verifyDeviceCommand(der, { chain, device: 'd-active', now })).toThrow('the command is for device "d-retired", not "d-active"');
  expect(() => verifyDeviceCommand(der, { chain, device: 'd-retired', now: new Date(now.getTime() + 8 * 24 * 3600_000) })).toThrow(/^the command is valid from/);
  const tampered = Buffer.from(der);
  const at = tampered.indexOf(Buffer.from('d-retired'));
  tampered[at] ^= 0x01;
  expect(() => verifyDeviceCommand(tampered, { chain, device: 'd-retired', now })).toThrow(DeviceCaError);
});

it('fuzz: a damaged command (flipped bytes, truncations, garbage) is a DeviceCaError, never a crash; one that passes says exactly what was signed', async () => {
  // (bytes outside the signature, e.g. in the unsigned certificates field, may change without effect)
  const { der, command } = await dc.issue({ deviceId: 'd-retired', command: 'retire', actor: 'test' });
  const chainPem = fs.readFileSync(path.join(h.dir, 'ca', 'firmware-chain.pem'), 'latin1');
  const chain = [...chainPem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)].map((m) => new crypto.X509Certificate(m[0]).raw);
  let seed = 13;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const inputs: Buffer[] = [Buffer.alloc(0), Buffer.from('not der'), crypto.randomBytes(64)];
  for (let i = 0; i < 300; i++) {
    const b = Buffer.from(der);
    b[rnd(b.length)] ^= 1 + rnd(255);
    inputs.push(b);
  }
  for (let i = 0; i < 50; i++) inputs.push(der.subarray(0, rnd(der.length)));
  let refused = 0;
  for (const input of inputs) {
    let got: unknown;
    try {
      got = verifyDeviceCommand(input, { chain, device: 'd-retired', now: new Date() });
    } catch (e) {
      got = e instanceof DeviceCaError ? 'refused' : e;
    }
    if (got === 'refused') refused++;
    else expect(got).toEqual(command); // another error (a crash) fails here too
  }
  expect(refused).toBeGreaterThanOrEqual(53); // at least every truncation and the garbage
});
