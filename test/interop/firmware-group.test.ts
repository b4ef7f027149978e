import Database from 'better-sqlite3';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Device, openssl, opensslAny, pkiClient } from '../helpers/pki-client';
import { RunningService, assertBuilt, runCli, startService } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * A release to a group key (issue 13, docs/firmware.md "Group key"), as an operator and an openssl device
 * live it: `firmware release --encrypt-to-group owner:acme`, each device fetches its copy of the key over
 * mTLS (GET /firmware/keys/<id>), `openssl cms -decrypt` opens it with the device key and
 * `openssl cms -EncryptedData_decrypt -secretkey` the image; a device retired before the next release cannot
 * fetch that release's key, which is a new one.
 */

let svc: RunningService;
let tmp: TmpDir;
let operatorToken: string;
const { cliOk, curl, enroll, teardown } = pkiClient({
  svc: () => svc,
  tmp: () => tmp,
  issuingPem: () => path.join(svc.dataDir, 'ca', 'device-ca-issuing.pem'),
  operatorToken: () => operatorToken,
});

interface Signer {
  key: string;
  crt: string;
}
const signers: Signer[] = [];
let image: string;
let devA: Device, devB: Device, devOther: Device;

const offline = async (...args: string[]): Promise<string> => {
  const r = await runCli(args, {});
  if (r.code !== 0) throw new Error(`device-ca ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
};
async function signedPackage(version: number): Promise<string> {
  let pkg = tmp.file(`pkg/${version}-0.der`);
  await offline('firmware', 'create', '--image', image, '--name', 'group-fw', '--version', String(version), '--out', pkg);
  for (const [i, s] of signers.entries()) {
    const out = tmp.file(`pkg/${version}-${i + 1}.der`);
    await offline('firmware', 'sign', '--in', pkg, '--cert', s.crt, '--key', s.key, '--out', out);
    pkg = out;
  }
  return pkg;
}
const chain = (): string => path.join(svc.dataDir, 'ca', 'firmware-chain.pem');
const keyUrl = (id: string): string => `https://localhost:${svc.httpsPort}/firmware/keys/${id}`;
const fetchKey = (id: string, d?: Device) => curl(keyUrl(id), d ? ['--cert', d.crt, '--key', d.key] : []);

/** releaseToGroup: the CLI's JSON (recipients, groupKeyId) and the release file */
async function releaseToGroup(version: number, group: string): Promise<{ file: string; groupKeyId: string; recipients: string[] }> {
  const file = tmp.file(`rel/${version}.der`);
  const rec = JSON.parse(await cliOk('firmware', 'release', '--in', await signedPackage(version), '--encrypt-to-group', group, '--out', file, '--json')) as {
    groupKeyId: string;
    recipients: string[];
  };
  return { file, ...rec };
}

/** openWithOpenssl: what the README tells an openssl device to do; the image bytes */
async function openWithOpenssl(release: string, keyPackage: Buffer, d: Device, tag: string): Promise<Buffer> {
  const x = tmp.file(`open/${tag}.x`);
  await openssl('cms', '-verify', '-inform', 'DER', '-in', release, '-CAfile', chain(), '-out', x);
  const kp = tmp.write(`open/${tag}.kp.der`, keyPackage);
  const k = tmp.file(`open/${tag}.k.der`);
  await openssl('cms', '-decrypt', '-inform', 'DER', '-in', kp, '-recip', d.crt, '-inkey', d.key, '-out', k);
  const hex = /OCTET STRING\s+\[HEX DUMP\]:([0-9A-F]{64})/.exec((await openssl('asn1parse', '-inform', 'DER', '-in', k)).stdout)![1];
  const out = tmp.file(`open/${tag}.bin`);
  await openssl('cms', '-EncryptedData_decrypt', '-inform', 'DER', '-in', x, '-secretkey', hex, '-out', out);
  return fs.readFileSync(out);
}

beforeAll(async () => {
  assertBuilt();
  tmp = makeTmpDir('device-ca-firmware-group-');
  svc = await startService();
  operatorToken = (await cliOk('tokens', 'create', '--scope', 'operator')).trim();
  [devA, devB, devOther] = await Promise.all([enroll('grp-a', 'acme'), enroll('grp-b', 'acme'), enroll('grp-other', 'globex')]);
  for (const role of ['manufacturer', 'developer', 'administrator']) {
    const key = tmp.file(`signers/${role}.key`);
    const csr = tmp.file(`signers/${role}.csr`);
    await openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key);
    await openssl('req', '-new', '-key', key, '-subj', `/CN=${role}-g`, '-out', csr);
    signers.push({ key, crt: tmp.write(`signers/${role}.crt`, await cliOk('signers', 'add', `${role}-g`, '--role', role, '--csr', csr)) });
  }
  image = tmp.write('image.bin', crypto.randomBytes(300_000));
}, 120_000);

afterAll(teardown);

describe('a release to a group key', () => {
  let first: { file: string; groupKeyId: string; recipients: string[] };
  let second: { file: string; groupKeyId: string; recipients: string[] };

  it('each member fetches its copy of the key over mTLS and openssl decrypts the exact image with it; the release does not carry the members', async () => {
    first = await releaseToGroup(1, 'owner:acme');
    expect(first.groupKeyId).toMatch(/^[0-9a-f]{32}$/);
    expect(first.recipients.sort()).toEqual(['grp-a', 'grp-b']);
    for (const d of [devA, devB]) {
      const r = await fetchKey(first.groupKeyId, d);
      expect([r.status, r.headers.get('content-type'), r.headers.get('cache-control')]).toEqual([200, 'application/cms', 'no-store']);
      expect((await openWithOpenssl(first.file, r.body, d, `1-${d.id}`)).equals(fs.readFileSync(image))).toBe(true);
    }
    // the release is the image plus a constant, however many members the group has
    expect(fs.statSync(first.file).size).toBeLessThan(300_000 + 12_000);
    // a member downloads the release itself as before
    const dl = await curl(`https://localhost:${svc.httpsPort}/firmware/group-fw/latest`, ['--cert', devA.crt, '--key', devA.key]);
    expect(dl.body.equals(fs.readFileSync(first.file))).toBe(true);
  });

  it("refusals: another owner's device 404, no client certificate 401, an unknown key 404, on plain HTTP the route does not exist", async () => {
    const other = await fetchKey(first.groupKeyId, devOther);
    expect([other.status, other.text]).toEqual([404, 'no such group key\n']);
    const anonymous = await fetchKey(first.groupKeyId);
    expect([anonymous.status, anonymous.text]).toEqual([401, 'a group key is fetched over TLS with the device certificate\n']);
    expect((await fetchKey('0'.repeat(32), devA)).status).toBe(404);
    expect((await fetchKey('__proto__', devA)).status).toBe(404);
    expect((await curl(`http://localhost:${svc.httpPort}/firmware/keys/${first.groupKeyId}`)).status).toBe(404);
  });

  it('a device retired before a release: the release names a new key, which the retired device cannot fetch nor decrypt', async () => {
    await cliOk('devices', 'retire', 'grp-b');
    second = await releaseToGroup(2, 'owner:acme');
    expect(second.groupKeyId).not.toBe(first.groupKeyId);
    expect(second.recipients).toEqual(['grp-a']);
    const retired = await fetchKey(second.groupKeyId, devB);
    expect([retired.status, retired.text]).toEqual([403, 'the client certificate is revoked\n']);
    // the old key (which grp-b may hold) does not open the new release
    const oldKey = await fetchKey(first.groupKeyId, devA);
    const x = tmp.file('open/2-old.x');
    await openssl('cms', '-verify', '-inform', 'DER', '-in', second.file, '-CAfile', chain(), '-out', x);
    const k = tmp.file('open/2-old.k.der');
    await openssl('cms', '-decrypt', '-inform', 'DER', '-in', tmp.write('open/2-old.kp', oldKey.body), '-recip', devA.crt, '-inkey', devA.key, '-out', k);
    const oldHex = /\[HEX DUMP\]:([0-9A-F]{64})/.exec((await openssl('asn1parse', '-inform', 'DER', '-in', k)).stdout)![1];
    const tried = await opensslAny('cms', '-EncryptedData_decrypt', '-inform', 'DER', '-in', x, '-secretkey', oldHex, '-out', tmp.file('open/2-old.bin'));
    const got = fs.existsSync(tmp.file('open/2-old.bin')) ? fs.readFileSync(tmp.file('open/2-old.bin')) : Buffer.alloc(0);
    expect(tried.code !== 0 || !got.equals(fs.readFileSync(image))).toBe(true);
    // the remaining member opens it
    const mine = await fetchKey(second.groupKeyId, devA);
    expect((await openWithOpenssl(second.file, mine.body, devA, '2-a')).equals(fs.readFileSync(image))).toBe(true);
  });

  it('firmware verify --key-package: an operator checks a group release as a device does and gets the exact image; a key package of another group key is refused', async () => {
    const kp = tmp.write('verify/a-1.kp.der', (await fetchKey(first.groupKeyId, devA)).body);
    const out = tmp.file('verify/a-1.bin');
    const v = JSON.parse(await offline('firmware', 'verify', '--in', first.file, '--chain', chain(), '--cert', devA.crt, '--key', devA.key, '--key-package', kp, '--out', out, '--json')) as {
      name: string;
      version: number;
      encrypted: boolean;
      groupKeyId: string;
    };
    expect([v.name, v.version, v.encrypted, v.groupKeyId]).toEqual(['group-fw', 1, true, first.groupKeyId]);
    expect(fs.readFileSync(out).equals(fs.readFileSync(image))).toBe(true);
    // release 2 is under a new key: the key package of release 1 is refused by name, and nothing is written
    const wrongOut = tmp.file('verify/a-2.bin');
    const refused = await runCli(['firmware', 'verify', '--in', second.file, '--chain', chain(), '--cert', devA.crt, '--key', devA.key, '--key-package', kp, '--out', wrongOut], {});
    expect([refused.code, refused.stderr]).toEqual([1, `device-ca: the release is encrypted to group key ${second.groupKeyId}, not ${first.groupKeyId}\n`]);
    expect(fs.existsSync(wrongOut)).toBe(false);
    // another device's key does not open devA's key package
    const stranger = await runCli(['firmware', 'verify', '--in', first.file, '--chain', chain(), '--cert', devOther.crt, '--key', devOther.key, '--key-package', kp, '--out', wrongOut], {});
    expect([stranger.code, stranger.stderr]).toEqual([1, 'device-ca: the release is not encrypted to this device certificate\n']);
    expect(fs.existsSync(wrongOut)).toBe(false);
    // without the key package the CLI says which key to fetch
    const missing = await runCli(['firmware', 'verify', '--in', first.file, '--chain', chain(), '--cert', devA.crt, '--key', devA.key, '--out', wrongOut], {});
    expect([missing.code, missing.stderr]).toEqual([1, `device-ca: the release is encrypted to group key ${first.groupKeyId}: fetch it first (GET /firmware/keys/${first.groupKeyId})\n`]);
    // --key-package without the device key that opens it
    const alone = await runCli(['firmware', 'verify', '--in', first.file, '--chain', chain(), '--key-package', kp, '--out', wrongOut], {});
    expect([alone.code, alone.stderr]).toEqual([1, 'device-ca: --key-package is opened with the device certificate and key: give --cert and --key\n']);
  });

  it('the audit log records the key made, replaced, and each fetch; the store holds no key in clear', async () => {
    const file = path.join(svc.dataDir, 'device-ca.sqlite');
    const db = new Database(file, { readonly: true });
    const rows = db.prepare("SELECT type, data FROM audit WHERE type LIKE 'firmware.group-key.%' ORDER BY seq").all() as { type: string; data: string }[];
    const state = db.prepare("SELECT value FROM ca_state WHERE name LIKE 'firmware-group-key:%'").all() as { value: string }[];
    const members = db.prepare('SELECT key_id, COUNT(*) AS n FROM firmware_group_key_members GROUP BY key_id').all() as { key_id: string; n: number }[];
    db.close();
    expect((await cliOk('audit', 'verify')).startsWith('audit log intact')).toBe(true);
    const created = rows.filter((r) => r.type === 'firmware.group-key.created').map((r) => JSON.parse(r.data) as { replaces: string | null; left: number });
    expect(created.map((c) => [c.replaces, c.left])).toEqual([
      [null, 0],
      [expect.stringMatching(/^[0-9a-f]{32}$/), 1],
    ]);
    expect(rows.filter((r) => r.type === 'firmware.group-key.fetched').length).toBeGreaterThanOrEqual(4);
    expect(state.length).toBe(2);
    for (const s of state) expect(Object.keys(JSON.parse(s.value) as object).sort()).toEqual(['createdAt', 'group', 'id', 'kek', 'wrapped']);
    // the software backend wraps under keys/firmware-group.key, and the record says so
    for (const s of state) expect((JSON.parse(s.value) as { kek: string }).kek).toBe('file');
    // the members are rows beside the records (one per device given the key)
    expect(members.map((m) => m.key_id).sort()).toEqual(state.map((s) => (JSON.parse(s.value) as { id: string }).id).sort());
    for (const m of members) expect(m.n).toBeGreaterThan(0);
    expect(fs.statSync(path.join(svc.dataDir, 'keys', 'firmware-group.key')).mode & 0o777).toBe(0o600);
  });
});
