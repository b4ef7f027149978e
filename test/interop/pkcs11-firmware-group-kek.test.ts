import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { Device, openssl, pkiClient } from '../helpers/pki-client';
import { RunningService, assertBuilt, runCli, startService } from '../helpers/service-process';
import { SoftHsm, createSoftHsm } from '../helpers/softhsm';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * The firmware group key-encryption key in the PKCS#11 token (issue 13, docs/firmware.md "Group key"):
 * the service with keys.backend pkcs11 on a SoftHSM2 token releases to a group, a device fetches its copy
 * of the group key over mTLS and openssl opens the exact image with it; pkcs11-tool lists the AES key
 * `device-ca-firmware-group-kek` in the token (sensitive, never extractable), the group key record says
 * `kek: "pkcs11"`, and no keys/firmware-group.key is created in the data directory.
 */

jest.setTimeout(120_000);

let hsm: SoftHsm;
let svc: RunningService;
let tmp: TmpDir;
let operatorToken: string;
const { cliOk, curl, enroll, teardown } = pkiClient({
  svc: () => svc,
  tmp: () => tmp,
  issuingPem: () => path.join(svc.dataDir, 'ca', 'device-ca-issuing.pem'),
  operatorToken: () => operatorToken,
});
const signers: { key: string; crt: string }[] = [];
let image: string;
let devA: Device;
/** seen: what the first test learnt (the key in clear, its wrapped form, the token key's CKA_ID, the CLI's output) */
const seen = { keyId: '', keyHex: '', wrapped: '', kekId: '', cliOut: '' };

const offline = async (...args: string[]): Promise<string> => {
  const r = await runCli(args, {});
  if (r.code !== 0) throw new Error(`device-ca ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
};
async function signedPackage(version: number): Promise<string> {
  let pkg = tmp.file(`pkg/${version}-0.der`);
  await offline('firmware', 'create', '--image', image, '--name', 'kek-fw', '--version', String(version), '--out', pkg);
  for (const [i, s] of signers.entries()) {
    const out = tmp.file(`pkg/${version}-${i + 1}.der`);
    await offline('firmware', 'sign', '--in', pkg, '--cert', s.crt, '--key', s.key, '--out', out);
    pkg = out;
  }
  return pkg;
}

beforeAll(async () => {
  assertBuilt();
  hsm = createSoftHsm({ labels: ['ca'] });
  tmp = makeTmpDir('device-ca-p11kek-');
  svc = await startService({ env: { DEVICE_CA_PKCS11_MODULE: hsm.module, DEVICE_CA_PKCS11_TOKEN: 'ca', DEVICE_CA_PKCS11_PIN: hsm.pin, SOFTHSM2_CONF: hsm.conf } });
  operatorToken = (await cliOk('tokens', 'create', '--scope', 'operator')).trim();
  devA = await enroll('kek-a', 'acme');
  for (const role of ['manufacturer', 'developer', 'administrator']) {
    const key = tmp.file(`signers/${role}.key`);
    const csr = tmp.file(`signers/${role}.csr`);
    await openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key);
    await openssl('req', '-new', '-key', key, '-subj', `/CN=${role}-k`, '-out', csr);
    signers.push({ key, crt: tmp.write(`signers/${role}.crt`, await cliOk('signers', 'add', `${role}-k`, '--role', role, '--csr', csr)) });
  }
  image = tmp.write('image.bin', crypto.randomBytes(100_000));
}, 180_000);

afterAll(async () => {
  await teardown();
  hsm?.cleanup();
});

it('a group release and a key fetch with the key-encryption key in the token; no key file; pkcs11-tool lists the AES key', async () => {
  const file = tmp.file('rel/1.der');
  seen.cliOut = await cliOk('firmware', 'release', '--in', await signedPackage(1), '--encrypt-to-group', 'owner:acme', '--out', file, '--json');
  const rec = JSON.parse(seen.cliOut) as {
    groupKeyId: string;
    recipients: string[];
  };
  expect(rec.recipients).toEqual(['kek-a']);
  // the service (not the CLI process that released) unwraps the key with the token and wraps it to the device
  const r = await curl(`https://localhost:${svc.httpsPort}/firmware/keys/${rec.groupKeyId}`, ['--cert', devA.crt, '--key', devA.key]);
  expect(r.status).toBe(200);
  const x = tmp.file('open/x');
  await openssl('cms', '-verify', '-inform', 'DER', '-in', file, '-CAfile', path.join(svc.dataDir, 'ca', 'firmware-chain.pem'), '-out', x);
  const k = tmp.file('open/k.der');
  await openssl('cms', '-decrypt', '-inform', 'DER', '-in', tmp.write('open/kp.der', r.body), '-recip', devA.crt, '-inkey', devA.key, '-out', k);
  const hex = /OCTET STRING\s+\[HEX DUMP\]:([0-9A-F]{64})/.exec((await openssl('asn1parse', '-inform', 'DER', '-in', k)).stdout)![1];
  const out = tmp.file('open/image.bin');
  await openssl('cms', '-EncryptedData_decrypt', '-inform', 'DER', '-in', x, '-secretkey', hex, '-out', out);
  expect(fs.readFileSync(out).equals(fs.readFileSync(image))).toBe(true);

  // the token holds the key-encryption key, and only one; the data directory holds no key file
  expect(fs.existsSync(path.join(svc.dataDir, 'keys', 'firmware-group.key'))).toBe(false);
  const listing = hsm.pkcs11Tool(['--token-label', 'ca', '--login', '--pin', hsm.pin, '--list-objects', '--type', 'secrkey']);
  const objects = listing.split(/\n(?=Secret Key Object)/).filter((b) => b.includes('device-ca-firmware-group-kek'));
  expect(objects).toHaveLength(1);
  expect(objects[0]).toMatch(/AES length 32/);
  expect(objects[0]).toMatch(/Access:\s+.*sensitive.*never extractable/);
  expect(objects[0]).toMatch(/Usage:\s+encrypt, decrypt\s*\n/);

  // the record names the token's key; the store names its CKA_ID
  const db = new Database(path.join(svc.dataDir, 'device-ca.sqlite'), { readonly: true });
  const keyRec = JSON.parse((db.prepare('SELECT value FROM ca_state WHERE name = ?').get(`firmware-group-key:${rec.groupKeyId}`) as { value: string }).value) as {
    kek: string;
    wrapped: string;
  };
  const kek = JSON.parse((db.prepare("SELECT value FROM ca_state WHERE name = 'firmware-group-kek'").get() as { value: string }).value) as { id: string };
  db.close();
  expect(keyRec.kek).toBe('pkcs11');
  Object.assign(seen, { keyId: rec.groupKeyId, keyHex: hex, wrapped: keyRec.wrapped, kekId: kek.id });
  expect(objects[0]).toMatch(new RegExp(`ID:\\s+${kek.id}`));
});

it('neither the key nor its wrapped form reaches a log line; the token key deleted by an operator: a 503 naming nothing, the reason in the log, the service up', async () => {
  expect(seen.keyHex).toMatch(/^[0-9A-F]{64}$/);
  const secrets = [seen.keyHex, seen.keyHex.toLowerCase(), seen.wrapped, seen.wrapped.slice(24 + 32)];
  for (const text of [svc.logs(), seen.cliOut]) for (const x of secrets) expect(text).not.toContain(x);

  // an operator deletes the AES key the store names
  hsm.pkcs11Tool(['--token-label', 'ca', '--login', '--pin', hsm.pin, '--delete-object', '--type', 'secrkey', '--id', seen.kekId]);
  for (let i = 0; i < 2; i++) {
    const r = await curl(`https://localhost:${svc.httpsPort}/firmware/keys/${seen.keyId}`, ['--cert', devA.crt, '--key', devA.key]);
    expect(r.status).toBe(503);
    expect(r.body.toString()).toMatch(/^service unavailable, request id [\w-]+\n$/);
  }
  // the access line is written when the response finishes and reaches us through the child's stdout pipe, which may
  // lag curl's exit: wait for both lines (bounded) rather than reading the log once
  const failedLines = (log: string): string[] => log.split('\n').filter((l) => l.includes('"route":"firmware-group-key"') && l.includes('"status":503'));
  const failed = failedLines(await svc.waitForLog((log) => failedLines(log).length >= 2));
  expect(failed).toHaveLength(2);
  expect(failed[0]).toContain(`no AES secret key with CKA_ID ${seen.kekId}`);
  expect(failed[0]).not.toMatch(/\n\s+at /);
  for (const x of secrets) expect(svc.logs()).not.toContain(x);
});
