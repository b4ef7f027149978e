import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openssl, opensslAny } from '../helpers/pki-client';
import { RunningService, assertBuilt, runCli, startService } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * Firmware releases after `device-ca ca rollover-root` (issue 13 with RFC 4210 §4.4 link certificates),
 * judged by `openssl cms -verify` and `device-ca firmware verify`: a device keeps the trust it was given
 * before the rollover. Two CAs: in one the firmware signer CA is made after the rollover (under the new
 * root), and a device that trusts only the OLD root still verifies its releases and signed commands,
 * through OldWithNew carried in the release; in the other the signer CA was made before the rollover
 * (under the old root), and ca/firmware-chain.pem keeps naming the root that issued it.
 */

let tmp: TmpDir;
const services: RunningService[] = [];
let image: string;

const OLD_ROOT = 'device-ca-root';
const NEW_ROOT = 'device-ca-root-2';

const cliOk = async (svc: RunningService, ...args: string[]): Promise<string> => {
  const r = await svc.cli(args);
  if (r.code !== 0) throw new Error(`device-ca ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
};
const offline = async (...args: string[]): Promise<void> => {
  const r = await runCli(args, {});
  if (r.code !== 0) throw new Error(`device-ca ${args.join(' ')}: ${r.stderr}`);
};
const caFile = (svc: RunningService, name: string): string => path.join(svc.dataDir, 'ca', name);

/** newCa: a service whose release policy is the manufacturer alone, and its root certificate as exported before any rollover */
async function newCa(tag: string): Promise<{ svc: RunningService; oldRoot: string }> {
  const svc = await startService();
  services.push(svc);
  await cliOk(svc, 'firmware', 'policy', 'set', '--roles', 'manufacturer');
  return { svc, oldRoot: tmp.write(`${tag}/old-root.pem`, fs.readFileSync(caFile(svc, `${OLD_ROOT}.pem`))) };
}

/** addSigner: the manufacturer's key and CSR (openssl), certified by `signers add` */
async function addSigner(svc: RunningService, tag: string): Promise<{ key: string; crt: string }> {
  const key = tmp.file(`${tag}/manufacturer.key`);
  const csr = tmp.file(`${tag}/manufacturer.csr`);
  await openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key);
  await openssl('req', '-new', '-key', key, '-subj', '/CN=manufacturer-1', '-out', csr);
  return { key, crt: tmp.write(`${tag}/manufacturer.crt`, await cliOk(svc, 'signers', 'add', 'manufacturer-1', '--role', 'manufacturer', '--csr', csr)) };
}

/** plainRelease: create, sign (offline), release; the release file */
async function plainRelease(svc: RunningService, tag: string, signer: { key: string; crt: string }): Promise<string> {
  const pkg = tmp.file(`${tag}/pkg.der`);
  const signed = tmp.file(`${tag}/pkg-signed.der`);
  await offline('firmware', 'create', '--image', image, '--name', 'fw', '--version', '1', '--out', pkg);
  await offline('firmware', 'sign', '--in', pkg, '--cert', signer.crt, '--key', signer.key, '--out', signed);
  const rel = tmp.file(`${tag}/release.der`);
  await cliOk(svc, 'firmware', 'release', '--in', signed, '--out', rel);
  return rel;
}

/** subjects: `subject <- issuer` of each certificate of a PEM file, as openssl reads them */
async function subjects(file: string): Promise<string[]> {
  const text = (await openssl('crl2pkcs7', '-nocrl', '-certfile', file)).stdout;
  const p7 = tmp.write(`p7-${crypto.randomBytes(4).toString('hex')}.pem`, text);
  const printed = (await openssl('pkcs7', '-in', p7, '-print_certs', '-noout')).stdout;
  return [...printed.matchAll(/subject=(.*)\nissuer=(.*)\n/g)].map((m) => `${m[1]} <- ${m[2]}`);
}

const ROOT1 = 'O = device-ca, CN = device-ca Root CA';
const ROOT2 = 'O = device-ca, CN = device-ca Root CA 2';
const SIGNER_CA = 'O = device-ca, CN = device-ca Firmware Signer CA';

beforeAll(() => {
  assertBuilt();
  tmp = makeTmpDir('device-ca-fw-rollover-');
  image = tmp.write('image.bin', crypto.randomBytes(20_011));
});

afterAll(async () => {
  for (const s of services) await s.stop();
  tmp?.cleanup();
});

describe('the signer CA is made after the root rollover (under the new root)', () => {
  let svc: RunningService;
  let oldRoot: string;
  let release: string;

  beforeAll(async () => {
    ({ svc, oldRoot } = await newCa('after'));
    expect(await cliOk(svc, 'ca', 'rollover-root')).toContain(`root CA ${NEW_ROOT}`);
    release = await plainRelease(svc, 'after', await addSigner(svc, 'after'));
  }, 120_000);

  it('the signer CA is under the new root; ca/firmware-chain.pem is the signer CA and the new root', async () => {
    expect(await subjects(caFile(svc, 'firmware-chain.pem'))).toEqual([`${SIGNER_CA} <- ${ROOT2}`, `${ROOT2} <- ${ROOT2}`]);
  });

  it('openssl cms -verify trusting only the OLD root verifies the release (OldWithNew rides in the release) and gives the image', async () => {
    const out = tmp.file('after/image.out');
    const r = await opensslAny('cms', '-verify', '-inform', 'DER', '-in', release, '-CAfile', oldRoot, '-out', out);
    expect([r.code, r.out]).toEqual([0, expect.stringContaining('Verification successful')]);
    expect(fs.readFileSync(out).equals(fs.readFileSync(image))).toBe(true);
    // the new root as anchor verifies it too; a root of the same name that is not this CA's does not
    expect((await opensslAny('cms', '-verify', '-inform', 'DER', '-in', release, '-CAfile', caFile(svc, `${NEW_ROOT}.pem`), '-out', tmp.file('after/new.out'))).code).toBe(0);
    const stranger = tmp.file('after/stranger.pem');
    await openssl(
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      tmp.file('after/stranger.key'),
      '-subj',
      '/O=device-ca/CN=device-ca Root CA',
      '-days',
      '2',
      '-out',
      stranger,
    );
    expect((await opensslAny('cms', '-verify', '-inform', 'DER', '-in', release, '-CAfile', stranger, '-out', tmp.file('after/x.out'))).code).not.toBe(0);
  });

  it('a device given ca/firmware-chain-<old root>.pem (signer CA, OldWithNew, old root) verifies the release as the agent does', async () => {
    const viaOld = caFile(svc, `firmware-chain-${OLD_ROOT}.pem`);
    expect(await subjects(viaOld)).toEqual([`${SIGNER_CA} <- ${ROOT2}`, `${ROOT2} <- ${ROOT1}`, `${ROOT1} <- ${ROOT1}`]);
    const out = tmp.file('after/verified.bin');
    const v = await runCli(['firmware', 'verify', '--in', release, '--chain', viaOld, '--roles', 'manufacturer', '--out', out], {});
    expect([v.code, v.stderr, v.stdout]).toEqual([0, '', 'verified fw version 1, approved by manufacturer\n']);
    expect(fs.readFileSync(out).equals(fs.readFileSync(image))).toBe(true);
    // the old root alone names no signer CA: refused, saying what the chain must hold
    const bare = await runCli(
      [
        'firmware',
        'verify',
        '--in',
        release,
        '--chain',
        tmp.write('after/roots.pem', fs.readFileSync(oldRoot, 'utf8') + fs.readFileSync(caFile(svc, `${NEW_ROOT}.pem`), 'utf8')),
        '--out',
        tmp.file('after/no.bin'),
      ],
      {},
    );
    expect(bare.code).toBe(1);
    expect(bare.stderr).toContain('the chain must hold the firmware signer CA');
    expect(fs.existsSync(tmp.file('after/no.bin'))).toBe(false);
  });

  it('a signed device command carries the link too: openssl trusting only the old root verifies it', async () => {
    await cliOk(svc, 'devices', 'add', 'dev-r1', '--owner', 'acme');
    await cliOk(svc, 'devices', 'retire', 'dev-r1');
    const cmd = tmp.file('after/cmd.der');
    await cliOk(svc, 'devices', 'command', 'dev-r1', '--retire', '--out', cmd);
    const r = await opensslAny('cms', '-verify', '-inform', 'DER', '-in', cmd, '-CAfile', oldRoot, '-out', tmp.file('after/cmd.json'));
    expect(r.code).toBe(0);
    expect(JSON.parse(fs.readFileSync(tmp.file('after/cmd.json'), 'utf8'))).toMatchObject({ command: 'retire', device: 'dev-r1' });
  });
});

describe('the signer CA was made before the root rollover (under the old root)', () => {
  let svc: RunningService;
  let oldRoot: string;
  let release: string;
  let chainBefore: string;

  beforeAll(async () => {
    ({ svc, oldRoot } = await newCa('before'));
    const signer = await addSigner(svc, 'before');
    chainBefore = fs.readFileSync(caFile(svc, 'firmware-chain.pem'), 'utf8');
    expect(await cliOk(svc, 'ca', 'rollover-root')).toContain(`root CA ${NEW_ROOT}`);
    release = await plainRelease(svc, 'before', signer);
  }, 120_000);

  it('ca/firmware-chain.pem still holds the old root that issued the signer CA', async () => {
    expect(await subjects(caFile(svc, 'firmware-chain.pem'))).toEqual([`${SIGNER_CA} <- ${ROOT1}`, `${ROOT1} <- ${ROOT1}`]);
    expect(fs.readFileSync(caFile(svc, 'firmware-chain.pem'), 'utf8')).toBe(chainBefore);
  });

  it('a device with the firmware chain of before the rollover verifies the release (openssl and firmware verify); one trusting only the NEW root too, through NewWithOld', async () => {
    const chain = tmp.write('before/chain-before.pem', chainBefore);
    for (const anchor of [chain, oldRoot, caFile(svc, `${NEW_ROOT}.pem`)]) {
      const r = await opensslAny('cms', '-verify', '-inform', 'DER', '-in', release, '-CAfile', anchor, '-out', tmp.file('before/image.out'));
      expect([path.basename(anchor), r.code]).toEqual([path.basename(anchor), 0]);
      expect(fs.readFileSync(tmp.file('before/image.out')).equals(fs.readFileSync(image))).toBe(true);
    }
    const out = tmp.file('before/verified.bin');
    for (const c of [chain, caFile(svc, `firmware-chain-${NEW_ROOT}.pem`)]) {
      const v = await runCli(['firmware', 'verify', '--in', release, '--chain', c, '--roles', 'manufacturer', '--out', out], {});
      expect([path.basename(c), v.code, v.stderr, v.stdout]).toEqual([path.basename(c), 0, '', 'verified fw version 1, approved by manufacturer\n']);
      expect(fs.readFileSync(out).equals(fs.readFileSync(image))).toBe(true);
    }
    expect(await subjects(caFile(svc, `firmware-chain-${NEW_ROOT}.pem`))).toEqual([`${SIGNER_CA} <- ${ROOT1}`, `${ROOT1} <- ${ROOT2}`, `${ROOT2} <- ${ROOT2}`]);
  });
});
