import Database from 'better-sqlite3';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Device, openssl, opensslAny, pkiClient } from '../helpers/pki-client';
import { RunningService, assertBuilt, runCli, startService } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * Firmware (issue 13) as the parties and a device live it: three signers make their keys and CSRs with
 * openssl on their own machines, `device-ca signers add` certifies them, each signs the package offline
 * (`device-ca firmware sign` with no data directory), the operator releases it; openssl cms verifies the
 * release against ca/firmware-chain.pem and a device's own key decrypts the exact image.
 */

let svc: RunningService;
let tmp: TmpDir;
let operatorToken: string;
const { cli, cliOk, curl, enroll, register, certOf, postEst, csrB64, teardown } = pkiClient({
  svc: () => svc,
  tmp: () => tmp,
  issuingPem: () => path.join(svc.dataDir, 'ca', 'device-ca-issuing.pem'),
  operatorToken: () => operatorToken,
});

interface Signer {
  role: string;
  key: string;
  crt: string;
}
const signers: Signer[] = [];
let image: string;
let devA: Device, devB: Device, devOther: Device;

/** offline: the CLI with no DEVICE_CA_* environment at all (a signer's machine) */
const offline = async (...args: string[]): Promise<string> => {
  const r = await runCli(args, {});
  if (r.code !== 0) throw new Error(`device-ca ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
};

async function signedPackage(name: string, version: number, by: Signer[]): Promise<string> {
  let pkg = tmp.file(`pkg/${name}-${version}-0.der`);
  await offline('firmware', 'create', '--image', image, '--name', name, '--version', String(version), '--hardware', '1.3.6.1.4.1.99999.1:SN-1,1.3.6.1.4.1.99999.2', '--out', pkg);
  for (const [i, s] of by.entries()) {
    const out = tmp.file(`pkg/${name}-${version}-${i + 1}.der`);
    expect(await offline('firmware', 'sign', '--in', pkg, '--cert', s.crt, '--key', s.key, '--out', out)).toContain(`signed ${name} version ${version}`);
    pkg = out;
  }
  return pkg;
}

beforeAll(async () => {
  assertBuilt();
  tmp = makeTmpDir('device-ca-firmware-');
  svc = await startService();
  operatorToken = (await cliOk('tokens', 'create', '--scope', 'operator')).trim();
  [devA, devB, devOther] = await Promise.all([enroll('fw-a', 'acme'), enroll('fw-b', 'acme'), enroll('fw-other', 'globex')]);
  for (const [role, alg] of [
    ['manufacturer', ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256']],
    ['developer', ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384']],
    ['administrator', ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048']],
  ] as const) {
    const key = tmp.file(`signers/${role}.key`);
    const csr = tmp.file(`signers/${role}.csr`);
    await openssl('genpkey', ...alg, '-out', key);
    await openssl('req', '-new', '-key', key, '-subj', `/CN=${role}-1`, '-out', csr);
    const crt = tmp.write(`signers/${role}.crt`, await cliOk('signers', 'add', `${role}-1`, '--role', role, '--csr', csr));
    signers.push({ role, key, crt });
  }
  image = tmp.write('image.bin', crypto.randomBytes(1 << 20));
}, 120_000);

afterAll(teardown);

const chain = (): string => path.join(svc.dataDir, 'ca', 'firmware-chain.pem');

describe('signers', () => {
  it('signer certificates come from the signer CA (not the issuing CA), for code signing', async () => {
    const text = (await openssl('x509', '-in', signers[0].crt, '-noout', '-text')).stdout;
    expect(text).toContain('Code Signing');
    expect(text).toMatch(/Subject: O = .*, OU = manufacturer, CN = manufacturer-1/);
    expect(text).toMatch(/Issuer: .*Firmware Signer CA/);
    expect((await opensslAny('verify', '-CAfile', chain(), signers[0].crt)).code).toBe(0);
    expect((await opensslAny('verify', '-CAfile', path.join(svc.dataDir, 'ca', 'chain.pem'), '-partial_chain', signers[0].crt)).code).not.toBe(0);
    const list = JSON.parse(await cliOk('signers', 'list', '--json')) as { name: string; role: string }[];
    expect(list.map((s) => [s.name, s.role])).toEqual([
      ['manufacturer-1', 'manufacturer'],
      ['developer-1', 'developer'],
      ['administrator-1', 'administrator'],
    ]);
  });

  it('a second signer of the same name is refused', async () => {
    const csr = tmp.file('signers/dup.csr');
    await openssl('req', '-new', '-key', signers[0].key, '-subj', '/CN=dup', '-out', csr);
    const r = await cli('signers', 'add', 'manufacturer-1', '--role', 'manufacturer', '--csr', csr);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('device-ca: signer manufacturer-1 exists\n');
  });
});

describe('signing', () => {
  it("a key that is not the certificate's, and a file that is not a package, are refused with a clear message", async () => {
    const pkg = tmp.file('pkg/bad-0.der');
    await offline('firmware', 'create', '--image', image, '--name', 'bad', '--version', '1', '--out', pkg);
    const wrongKey = await runCli(['firmware', 'sign', '--in', pkg, '--cert', signers[0].crt, '--key', signers[1].key, '--out', tmp.file('pkg/bad-1.der')], {});
    expect([wrongKey.code, wrongKey.stderr]).toEqual([1, 'device-ca: the key does not belong to the certificate\n']);
    const notPkg = await runCli(['firmware', 'sign', '--in', image, '--cert', signers[0].crt, '--key', signers[0].key, '--out', tmp.file('pkg/bad-2.der')], {});
    expect(notPkg.code).toBe(1);
    expect(notPkg.stderr).toMatch(/^device-ca: the file is not a DER CMS SignedData \(malformed DER/);
    const badVersion = await runCli(['firmware', 'create', '--image', image, '--name', 'bad', '--version', '1.2', '--out', tmp.file('pkg/bad-3.der')], {});
    expect([badVersion.code, badVersion.stderr]).toEqual([1, 'device-ca: --version must be a non-negative integer\n']);
  });
});

describe('signing a multi-MiB image (streamed)', () => {
  it('create and three signatures in place (--in and --out the same file): openssl cms -verify gives the exact image; a truncated package is refused and nothing is written', async () => {
    const big = tmp.write('big.bin', crypto.randomBytes((6 << 20) + 7)); // several 1 MiB read chunks, the last one partial
    const pkg = tmp.file('pkg/big.der');
    expect(JSON.parse(await offline('firmware', 'create', '--image', big, '--name', 'big-fw', '--version', '3', '--out', pkg, '--json'))).toEqual({ out: pkg, bytes: fs.statSync(pkg).size });
    const sha256 = crypto.createHash('sha256').update(fs.readFileSync(big)).digest('hex');
    for (const [i, s] of signers.entries()) {
      const summary = JSON.parse(await offline('firmware', 'sign', '--in', pkg, '--cert', s.crt, '--key', s.key, '--out', pkg, '--json')) as { sha256: string; signers: number };
      expect(summary).toMatchObject({ sha256, signers: i + 1 });
    }
    const out = tmp.file('pkg/big.out');
    await openssl('cms', '-verify', '-binary', '-inform', 'DER', '-in', pkg, '-CAfile', chain(), '-out', out);
    expect(fs.readFileSync(out).equals(fs.readFileSync(big))).toBe(true);

    const cut = tmp.write('pkg/big-cut.der', fs.readFileSync(pkg).subarray(0, 3 << 20));
    const refused = await runCli(['firmware', 'sign', '--in', cut, '--cert', signers[0].crt, '--key', signers[0].key, '--out', tmp.file('pkg/big-cut-signed.der')], {});
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^device-ca: the file is not a DER CMS SignedData \(malformed DER: ContentInfo ends at \d+, not 3145728: truncated or trailing bytes\?\)\n$/);
    expect(fs.readdirSync(path.dirname(cut)).filter((f) => f.startsWith('big-cut-signed'))).toEqual([]);
  });
});

describe('release', () => {
  it('signed by all three roles: the release verifies with openssl against the firmware chain and gives the image', async () => {
    const pkg = await signedPackage('sensor-fw', 1, signers);
    const release = tmp.file('rel/plain.der');
    expect(await cliOk('firmware', 'release', '--in', pkg, '--out', release)).toBe('released sensor-fw version 1\n');
    const out = tmp.file('rel/plain.out');
    await openssl('cms', '-verify', '-inform', 'DER', '-in', release, '-CAfile', chain(), '-out', out);
    expect(fs.readFileSync(out).equals(fs.readFileSync(image))).toBe(true);
  });

  it('encrypted to devices: openssl verifies, and each device key decrypts the exact image; a device not named cannot', async () => {
    const pkg = await signedPackage('sensor-fw', 2, signers);
    const release = tmp.file('rel/enc.der');
    await cliOk('firmware', 'release', '--in', pkg, '--encrypt-to', 'fw-a,fw-b', '--out', release);
    const x = tmp.file('rel/enc.x');
    await openssl('cms', '-verify', '-inform', 'DER', '-in', release, '-CAfile', chain(), '-out', x);
    for (const d of [devA, devB]) {
      const out = tmp.file(`rel/enc-${d.id}.bin`);
      await openssl('cms', '-decrypt', '-inform', 'DER', '-in', x, '-recip', d.crt, '-inkey', d.key, '-out', out);
      expect(fs.readFileSync(out).equals(fs.readFileSync(image))).toBe(true);
    }
    expect((await opensslAny('cms', '-decrypt', '-inform', 'DER', '-in', x, '-recip', devOther.crt, '-inkey', devOther.key, '-out', tmp.file('rel/no.bin'))).code).not.toBe(0);
  });

  it('encrypted to an RSA device: openssl cms -decrypt with its RSA key opens the RSA-OAEP recipient info (SHA-256), the exact image; firmware verify too', async () => {
    // a device enrolled with an RSA 2048 key (the README recipe, RSA instead of P-256), of an owner no other case releases to
    const secret = await register('fw-rsa', 'initech', 'api');
    const key = tmp.file('keys/fw-rsa.key');
    await openssl('genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', key);
    const crt = await certOf(await postEst('simpleenroll', await csrB64(key, '/CN=fw-rsa'), { user: ['fw-rsa', secret] }), 'fw-rsa');
    const pkg = await signedPackage('rsa-fw', 1, signers);
    const release = tmp.file('rel/rsa.der');
    await cliOk('firmware', 'release', '--in', pkg, '--encrypt-to', 'fw-rsa,fw-a', '--out', release);
    const x = tmp.file('rel/rsa.x');
    await openssl('cms', '-verify', '-inform', 'DER', '-in', release, '-CAfile', chain(), '-out', x);
    const printed = (await openssl('cms', '-cmsout', '-print', '-inform', 'DER', '-in', x)).stdout;
    expect(printed).toMatch(/algorithm: rsaesOaep[\s\S]*?OBJECT\s+:sha256[\s\S]*?OBJECT\s+:mgf1[\s\S]*?OBJECT\s+:sha256/);
    for (const [c, k] of [
      [crt, key],
      [devA.crt, devA.key],
    ]) {
      const out = tmp.file(`rel/rsa-${path.basename(c)}.bin`);
      await openssl('cms', '-decrypt', '-inform', 'DER', '-in', x, '-recip', c, '-inkey', k, '-out', out);
      expect(fs.readFileSync(out).equals(fs.readFileSync(image))).toBe(true);
    }
    const out = tmp.file('rel/rsa-verified.bin');
    const r = await runCli(['firmware', 'verify', '--in', release, '--chain', chain(), '--cert', crt, '--key', key, '--installed', '0', '--out', out], {});
    expect([r.code, r.stderr, r.stdout]).toEqual([0, '', 'verified rsa-fw version 1 (decrypted), approved by manufacturer, developer, administrator\n']);
    expect(fs.readFileSync(out).equals(fs.readFileSync(image))).toBe(true);
  });

  it('two of three roles: refused, naming the missing role, and nothing is released', async () => {
    const pkg = await signedPackage('sensor-fw', 3, signers.slice(0, 2));
    const r = await cli('firmware', 'release', '--in', pkg, '--out', tmp.file('rel/two.der'));
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('device-ca: the release policy is not met: missing signatures of role administrator\n');
    expect(fs.existsSync(tmp.file('rel/two.der'))).toBe(false);
    const releases = JSON.parse(await cliOk('firmware', 'list', '--json')) as { name: string; version: number; hardware: unknown }[];
    expect(releases.filter((x) => x.name === 'sensor-fw').map((x) => x.version)).toEqual([2, 1]); // newest first
    // each release's target hardware: in JSON as recorded, in the table as `firmware create --hardware` takes it
    const targets = [{ type: '1.3.6.1.4.1.99999.1', serial: 'SN-1' }, { type: '1.3.6.1.4.1.99999.2' }];
    expect(releases.filter((x) => x.name === 'sensor-fw').map((x) => x.hardware)).toEqual([targets, targets]);
    const table = (await cliOk('firmware', 'list')).trimEnd().split('\n');
    expect(table[0].trimEnd().split(/ +/)).toEqual(['name', 'version', 'sha256', 'releasedAt', 'hardware']);
    const rows = table.slice(1).map((l) => l.split(/ +/));
    expect(rows.filter((r) => r[0] === 'sensor-fw').map((r) => [r[1], r[4]])).toEqual([
      ['2', '1.3.6.1.4.1.99999.1:SN-1,1.3.6.1.4.1.99999.2'],
      ['1', '1.3.6.1.4.1.99999.1:SN-1,1.3.6.1.4.1.99999.2'],
    ]);
  });

  it('a policy for an owner: two roles suffice for its fleet', async () => {
    await cliOk('firmware', 'policy', 'set', '--roles', 'manufacturer,developer', '--owner', 'globex');
    const pkg = await signedPackage('sensor-fw', 3, signers.slice(0, 2));
    expect(await cliOk('firmware', 'release', '--in', pkg, '--encrypt-to', 'owner:globex', '--out', tmp.file('rel/globex.der'))).toBe('released sensor-fw version 3 encrypted to 1 device(s)\n');
  });

  it('a retired device is not a recipient of a later release to its owner, and is refused by name', async () => {
    await cliOk('devices', 'retire', 'fw-b');
    const pkg = await signedPackage('sensor-fw', 4, signers);
    const release = tmp.file('rel/after-retire.der');
    const rec = JSON.parse(await cliOk('firmware', 'release', '--in', pkg, '--encrypt-to', 'owner:acme', '--out', release, '--json')) as { recipients: string[] };
    expect(rec.recipients).toEqual(['fw-a']);
    const x = tmp.file('rel/after-retire.x');
    await openssl('cms', '-verify', '-inform', 'DER', '-in', release, '-CAfile', chain(), '-out', x);
    expect((await opensslAny('cms', '-decrypt', '-inform', 'DER', '-in', x, '-recip', devB.crt, '-inkey', devB.key, '-out', tmp.file('rel/b.bin'))).code).not.toBe(0);
    const r = await cli('firmware', 'release', '--in', pkg, '--encrypt-to', 'fw-b', '--out', tmp.file('rel/b.der'));
    expect(r.stderr).toBe('device-ca: device fw-b is retired: it cannot receive firmware\n');
  });

  it('an older version than the latest release is refused (anti-rollback)', async () => {
    const pkg = await signedPackage('sensor-fw', 2, signers);
    const r = await cli('firmware', 'release', '--in', pkg, '--out', tmp.file('rel/old.der'));
    expect(r.stderr).toBe('device-ca: version 2 is below the released version 4 of sensor-fw\n');
  });

  it('a signer whose certificate is revoked is refused', async () => {
    const serial = (await openssl('x509', '-in', signers[1].crt, '-noout', '-serial')).stdout
      .trim()
      .replace(/^serial=/, '')
      .toLowerCase();
    const pkg = await signedPackage('other-fw', 1, signers);
    await cliOk('revoke', serial, '--reason', 'keyCompromise');
    const r = await cli('firmware', 'release', '--in', pkg, '--out', tmp.file('rel/revoked.der'));
    expect(r.stderr).toBe("device-ca: signer developer-1's certificate is revoked\n");
  });

  it('the audit log records the signatures and the release', async () => {
    const db = new Database(path.join(svc.dataDir, 'device-ca.sqlite'), { readonly: true });
    const types = (db.prepare("SELECT type FROM audit WHERE subject = 'firmware:sensor-fw'").all() as { type: string }[]).map((a) => a.type);
    db.close();
    expect((await cliOk('audit', 'verify')).startsWith('audit log intact')).toBe(true);
    expect(types.filter((t) => t === 'firmware.released').length).toBe(4);
    expect(types.filter((t) => t === 'firmware.signature.accepted').length).toBe(3 + 3 + 2 + 3);
  });
});

describe('distribution (GET /firmware/<name>/latest and /<version>)', () => {
  const http = (p: string) => curl(`http://localhost:${svc.httpPort}/firmware/${p}`);
  const https = (p: string, d?: Device) => curl(`https://localhost:${svc.httpsPort}/firmware/${p}`, d ? ['--cert', d.crt, '--key', d.key] : []);

  it('on HTTP: the newest plain release, byte for byte, which openssl verifies; an encrypted one does not exist there', async () => {
    const latest = await http('sensor-fw/latest');
    expect([latest.status, latest.headers.get('content-type')]).toEqual([200, 'application/cms']);
    expect(latest.body.equals(fs.readFileSync(tmp.file('rel/plain.der')))).toBe(true);
    const out = tmp.file('dl/plain.out');
    await openssl('cms', '-verify', '-inform', 'DER', '-in', tmp.write('dl/plain.der', latest.body), '-CAfile', chain(), '-out', out);
    expect(fs.readFileSync(out).equals(fs.readFileSync(image))).toBe(true);
    expect((await http('sensor-fw/1')).status).toBe(200);
    for (const p of ['sensor-fw/2', 'sensor-fw/4', 'sensor-fw/9', 'nope/latest', 'sensor-fw/x']) {
      const r = await http(p);
      expect([p, r.status, r.text]).toEqual([p, 404, 'no such firmware release\n']);
    }
  });

  it('on HTTPS per device: its newest release, which its key decrypts; another device gets its own; a retired device nothing', async () => {
    const a = await https('sensor-fw/latest', devA);
    expect(a.status).toBe(200);
    expect(a.body.equals(fs.readFileSync(tmp.file('rel/after-retire.der')))).toBe(true);
    const x = tmp.file('dl/a.x');
    await openssl('cms', '-verify', '-inform', 'DER', '-in', tmp.write('dl/a.der', a.body), '-CAfile', chain(), '-out', x);
    const img = tmp.file('dl/a.bin');
    await openssl('cms', '-decrypt', '-inform', 'DER', '-in', x, '-recip', devA.crt, '-inkey', devA.key, '-out', img);
    expect(fs.readFileSync(img).equals(fs.readFileSync(image))).toBe(true);
    expect((await https('sensor-fw/latest', devOther)).body.equals(fs.readFileSync(tmp.file('rel/globex.der')))).toBe(true);
    expect((await https('sensor-fw/4', devOther)).status).toBe(404);
    expect((await https('sensor-fw/1', devOther)).status).toBe(200);
    const retired = await https('sensor-fw/latest', devB);
    expect([retired.status, retired.text]).toEqual([403, 'the client certificate is revoked\n']);
    expect((await https('sensor-fw/latest')).body.equals(fs.readFileSync(tmp.file('rel/plain.der')))).toBe(true);
  });

  it("each device's download is an audit record naming the device and the version; anonymous ones are counted", async () => {
    const db = new Database(path.join(svc.dataDir, 'device-ca.sqlite'), { readonly: true });
    const rows = (db.prepare("SELECT actor, data FROM audit WHERE type = 'firmware.downloaded'").all() as { actor: string; data: string }[]).map((r) => [r.actor, JSON.parse(r.data)]);
    db.close();
    expect(rows).toContainEqual(['device:fw-a', { version: 4, device: 'fw-a', encrypted: true }]);
    expect(rows).toContainEqual(['device:fw-other', { version: 3, device: 'fw-other', encrypted: true }]);
    // HTTP latest and /1, HTTPS latest without a certificate: counted, audited as firmware.downloads once per interval
    expect(rows.filter(([actor]) => actor === 'anonymous')).toEqual([]);
  });
});

describe('firmware verify (what the device agent checks, offline)', () => {
  const verify = (release: string, ...args: string[]) => runCli(['firmware', 'verify', '--in', release, '--chain', chain(), '--out', tmp.file(`verify/${crypto.randomUUID()}.bin`), ...args], {});
  const refusal = async (release: string, ...args: string[]): Promise<string> => {
    const r = await verify(release, ...args);
    expect(r.code).toBe(1);
    return r.stderr;
  };

  it('a plain release: every approval and role checked, the exact image written', async () => {
    const out = tmp.file('verify/plain.bin');
    const r = await runCli(['firmware', 'verify', '--in', tmp.file('rel/plain.der'), '--chain', chain(), '--installed', '0', '--hardware', '1.3.6.1.4.1.99999.1:SN-1', '--out', out], {});
    expect([r.code, r.stdout]).toEqual([0, 'verified sensor-fw version 1, approved by manufacturer, developer, administrator\n']);
    expect(fs.readFileSync(out).equals(fs.readFileSync(image))).toBe(true);
  });

  it('an encrypted release: decrypted with the device key, approvals checked against the image', async () => {
    const out = tmp.file('verify/enc.bin');
    const r = await runCli(['firmware', 'verify', '--in', tmp.file('rel/after-retire.der'), '--chain', chain(), '--cert', devA.crt, '--key', devA.key, '--installed', '3', '--out', out], {});
    expect([r.code, r.stdout]).toEqual([0, 'verified sensor-fw version 4 (decrypted), approved by manufacturer, developer, administrator\n']);
    expect(fs.readFileSync(out).equals(fs.readFileSync(image))).toBe(true);
  });

  it('refused, each with its reason: tampered image, missing role, older version, other hardware, another device', async () => {
    const tampered = Buffer.from(fs.readFileSync(tmp.file('rel/plain.der')));
    const at = tampered.indexOf(fs.readFileSync(image).subarray(0, 64));
    tampered[at + 100] ^= 1;
    expect(await refusal(tmp.write('verify/tampered.der', tampered))).toBe('device-ca: message digest does not match the content\n');
    expect(await refusal(tmp.file('rel/globex.der'), '--cert', devOther.crt, '--key', devOther.key)).toBe('device-ca: the release lacks approvals of role administrator\n');
    expect(await refusal(tmp.file('rel/plain.der'), '--installed', '1')).toBe('device-ca: version 1 is not above the installed version 1 (anti-rollback)\n');
    expect(await refusal(tmp.file('rel/plain.der'), '--hardware', '1.3.6.1.4.1.99999.1:SN-2')).toBe('device-ca: the package is for other hardware (1.3.6.1.4.1.99999.1:SN-1, 1.3.6.1.4.1.99999.2)\n');
    expect(await refusal(tmp.file('rel/plain.der'), '--hardware', '1.3.6.1.4.1.99999.3')).toMatch(/^device-ca: the package is for other hardware/);
    expect(await refusal(tmp.file('rel/after-retire.der'), '--cert', devOther.crt, '--key', devOther.key)).toBe('device-ca: the release is not encrypted to this device certificate\n');
    expect(await refusal(tmp.file('rel/after-retire.der'))).toBe('device-ca: the release is encrypted: give the device certificate and key (--cert, --key)\n');
    // a module type named without serials takes any serial of it
    expect((await verify(tmp.file('rel/plain.der'), '--hardware', '1.3.6.1.4.1.99999.2:whatever')).code).toBe(0);
  });

  it('M-of-N: 2 of 3 roles releases with any two, refused with one naming how many more; the device applies its own --require', async () => {
    await cliOk('firmware', 'policy', 'set', '--roles', 'manufacturer,developer,administrator', '--require', '2', '--owner', 'globex');
    const one = await cli('firmware', 'release', '--in', await signedPackage('mn-fw', 1, [signers[2]]), '--encrypt-to', 'owner:globex', '--out', tmp.file('rel/mn-1.der'));
    expect(one.stderr).toBe('device-ca: the release policy is not met: missing signatures: 1 more of role manufacturer, developer (2 of manufacturer, developer, administrator)\n');
    const release = tmp.file('rel/mn.der');
    await cliOk('firmware', 'release', '--in', await signedPackage('mn-fw', 1, [signers[0], signers[2]]) /* developer-1 is revoked by now */, '--encrypt-to', 'owner:globex', '--out', release);
    const dev = ['--cert', devOther.crt, '--key', devOther.key];
    const ok = await verify(release, ...dev, '--require', '2');
    expect([ok.code, ok.stdout]).toEqual([0, 'verified mn-fw version 1 (decrypted), approved by manufacturer, administrator\n']);
    expect(await refusal(release, ...dev)).toBe('device-ca: the release lacks approvals of role developer\n');
    expect(await refusal(release, ...dev, '--require', 'two')).toBe('device-ca: --require must be a positive integer\n');
  });
});
