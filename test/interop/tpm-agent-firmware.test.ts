import Database from 'better-sqlite3';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CMS_OID } from '../../src/cms/cms-algorithms';
import { X509Certificate } from 'node:crypto';
import { TPM_ALG, TPMA_OBJECT } from '../../src/attestation/tpm/tpm-constants';
import { parseTpm2bPublic, tpmPublicKey } from '../../src/attestation/tpm/tpm-public';
import { openssl } from '../helpers/pki-client';
import { assertBuilt, CLI_JS, ProcessResult, RunningService, runCli, runProcess } from '../helpers/service-process';
import { SwTpm } from '../helpers/swtpm';
import { startTpmAgentSetup, TpmAgentSetup } from '../helpers/tpm-agent-setup';
import { TmpDir } from '../helpers/tmp';
import { TpmAbrmd } from '../helpers/tpm-abrmd';

/**
 * `device-ca agent update --check` (issue 13) against the BUILT service and swtpm behind tpm2-abrmd: a
 * device enrolled by the agent with a TPM key that can decrypt (--key-decrypt, on a label whose profile
 * sets tpmKeyDecrypt) downloads a release encrypted to it over TLS with that key, verifies it with the
 * firmware chain, opens it by TPM2_ECDH_ZGen and writes the exact image; a sign-only device is told why it
 * cannot; a downgrade served by the server and a tampered release are refused with their reasons, and
 * nothing is written. Each install posts an RFC 4108 load receipt signed by the TPM key: `firmware status`
 * shows the device on that version. The same with an RSA 2048 device key (--key-alg rsa2048): the
 * release's RSA-OAEP recipient info is opened by TPM2_RSA_Decrypt.
 */
let setup: TpmAgentSetup;
let tpm: SwTpm;
let rm: TpmAbrmd;
let tmp: TmpDir;
let svc: RunningService;
let image1: Buffer;
let image2: Buffer;
const signers: { role: string; key: string; crt: string }[] = [];

const agent = (args: string[]): Promise<ProcessResult> => runProcess(process.execPath, [CLI_JS, 'agent', ...args], { env: { ...rm.env, TPM2TOOLS_TCTI: rm.tcti }, timeoutMs: 90_000 });
const cliOk = async (...args: string[]): Promise<string> => {
  const r = await svc.cli(args);
  if (r.code !== 0) throw new Error(`device-ca ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
};
const firmwareChain = (): string => path.join(svc.dataDir, 'ca', 'firmware-chain.pem');
const outA = (): string => tmp.file('dev-a');
const outB = (): string => tmp.file('dev-b');
const outC = (): string => tmp.file('dev-c');
const outR = (): string => tmp.file('dev-r');
const outS = (): string => tmp.file('dev-s');
/** runs: `firmware status <name>`: device -> the version its receipts say it runs */
const runs = async (name = 'sensor-fw'): Promise<Record<string, number | null>> => {
  const st = JSON.parse(await cliOk('firmware', 'status', name, '--json')) as { devices: { device: string; version: number | null }[] };
  return Object.fromEntries(st.devices.map((d) => [d.device, d.version]));
};

/** errors: `firmware status <name>`: device -> [version, RFC 4108 error code] of its last load error report above the version it runs */
const errors = async (): Promise<Record<string, [number, number]>> => {
  const st = JSON.parse(await cliOk('firmware', 'status', 'sensor-fw', '--json')) as { errors: { device: string; version: number; code: number }[] };
  return Object.fromEntries(st.errors.map((e) => [e.device, [e.version, e.code]]));
};

async function enrollDevice(id: string, out: string, extra: string[]): Promise<void> {
  const secret = (await cliOk('devices', 'add', id, '--owner', 'acme', '--label', 'fwtpm')).trim();
  const r = await agent(['enroll', '--est', `${svc.est}/fwtpm`, '--device', id, '--secret', secret, '--trust', svc.chainPem, '--out', out, '--ek-chain', tmp.file('ek-issuer.pem'), ...extra]);
  if (r.code !== 0) throw new Error(`agent enroll ${id} exited ${r.code}: ${r.stderr}`);
}

/** release: create, have the three roles sign (offline), release encrypted to the devices (or, with --encrypt-to-group, to a group key); the release file */
async function release(version: number, image: Buffer, to: string, hardware?: string, name = 'sensor-fw', how = '--encrypt-to'): Promise<string> {
  const img = tmp.write(`img-${name}-${version}.bin`, image);
  let pkg = tmp.file(`pkg/${name}-${version}-0.der`);
  const offline = async (...args: string[]) => {
    const r = await runCli(args, {});
    if (r.code !== 0) throw new Error(`device-ca ${args.join(' ')}: ${r.stderr}`);
  };
  await offline('firmware', 'create', '--image', img, '--name', name, '--version', String(version), ...(hardware ? ['--hardware', hardware] : []), '--out', pkg);
  for (const [i, s] of signers.entries()) {
    const next = tmp.file(`pkg/${name}-${version}-${i + 1}.der`);
    await offline('firmware', 'sign', '--in', pkg, '--cert', s.crt, '--key', s.key, '--out', next);
    pkg = next;
  }
  const rel = tmp.file(`rel/${name}-${version}.der`);
  await cliOk('firmware', 'release', '--in', pkg, how, to, '--out', rel);
  return rel;
}

const update = (out: string, imageOut: string, name = 'sensor-fw'): Promise<ProcessResult> =>
  agent(['update', '--check', '--trust', svc.chainPem, '--firmware-chain', firmwareChain(), '--out', out, '--name', name, '--image-out', imageOut]);

/** storedRelease: the release bytes in the service's store (what GET /firmware/<name>/... serves) */
function withStore<T>(fn: (db: Database.Database) => T): T {
  const db = new Database(path.join(svc.dataDir, 'device-ca.sqlite'));
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

beforeAll(async () => {
  assertBuilt();
  setup = await startTpmAgentSetup({
    tmpPrefix: 'device-ca-agent-fw-',
    abrmd: true,
    configYaml: 'est:\n  labels:\n    fwtpm:\n      attestation: required\n      serverKeyGen: false\n      tpmKeyDecrypt: true',
  });
  ({ tmp, tpm, svc } = setup);
  rm = setup.rm!;
  for (const role of ['manufacturer', 'developer', 'administrator']) {
    const key = tmp.file(`signers/${role}.key`);
    const csr = tmp.file(`signers/${role}.csr`);
    await openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key);
    await openssl('req', '-new', '-key', key, '-subj', `/CN=${role}-1`, '-out', csr);
    signers.push({ role, key, crt: tmp.write(`signers/${role}.crt`, await cliOk('signers', 'add', `${role}-1`, '--role', role, '--csr', csr)) });
  }
  await enrollDevice('fw-tpm-a', outA(), ['--key-decrypt', '--ek-alg', 'ecc384']);
  // a second identity in the same TPM, sign-only (the default key), at other handles
  await enrollDevice('fw-tpm-b', outB(), ['--ak-handle', '0x81018010', '--key-handles', '0x81018011,0x81018012']);
  // a third: it fetches its retire command from the service
  await enrollDevice('fw-tpm-c', outC(), ['--ak-handle', '0x81018050', '--key-handles', '0x81018051,0x81018052']);
  // RSA 2048 device keys (--key-alg rsa2048): one that may decrypt, one sign-only
  await enrollDevice('fw-tpm-r', outR(), ['--key-alg', 'rsa2048', '--key-decrypt', '--ak-handle', '0x81018020', '--key-handles', '0x81018021,0x81018022']);
  await enrollDevice('fw-tpm-s', outS(), ['--key-alg', 'rsa2048', '--ak-handle', '0x81018030', '--key-handles', '0x81018031,0x81018032']);
  image1 = crypto.randomBytes(70_001);
  image2 = crypto.randomBytes(50_003);
}, 240_000);

afterAll(async () => {
  await setup?.stop();
});

describe('agent update --check (swtpm)', () => {
  it('an encrypted release: downloaded over TLS with the TPM key, opened in the TPM, the exact image written; the version remembered', async () => {
    await release(1, image1, 'fw-tpm-a,fw-tpm-b');
    const img = tmp.file('a/sensor-fw.bin');
    const r = await update(outA(), img);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`sensor-fw: installed version 1, decrypted in the TPM: ${img}\nsensor-fw: load receipt of version 1 recorded\n`);
    expect(fs.readFileSync(img).equals(image1)).toBe(true);
    expect(JSON.parse(fs.readFileSync(path.join(outA(), 'firmware.json'), 'utf8'))).toMatchObject({
      'sensor-fw': { version: 1, sha256: crypto.createHash('sha256').update(image1).digest('hex'), image: img, receipt: true },
    });
    // the receipt, signed by the TPM key, is what firmware status shows
    expect(await runs()).toEqual({ 'fw-tpm-a': 1 });
    // again: nothing newer, nothing rewritten
    const again = await update(outA(), img);
    expect([again.code, again.stdout]).toEqual([0, 'sensor-fw: version 1 is installed, nothing newer\n']);
  });

  it('a sign-only TPM key: refused, saying why and what to do; no image', async () => {
    const img = tmp.file('b/sensor-fw.bin');
    const r = await update(outB(), img);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      'device-ca: sensor-fw: refused: the release is encrypted by ECDH to this device, and its TPM key at 0x81018011 is sign-only (no decrypt attribute): enroll with "agent enroll --key-decrypt" on a profile with tpmKeyDecrypt: true; load error report (noDecryptKey) recorded\n',
    );
    expect(fs.existsSync(img)).toBe(false);
    // the refusal is an RFC 4108 load error report signed by the TPM key: firmware status shows it (noDecryptKey = 22)
    expect(await runs()).toEqual({ 'fw-tpm-a': 1, 'fw-tpm-b': null });
    expect(await errors()).toEqual({ 'fw-tpm-b': [1, 22] });
  });

  it('a tampered release (one byte of the stored release changed) is refused, the installed image untouched', async () => {
    await release(2, image2, 'fw-tpm-a');
    // the release's bytes are stored in chunks (firmware_release_chunks): one byte of its last chunk changed
    const last = withStore(
      (db) =>
        db
          .prepare(
            'SELECT c.set_id AS setId, c.seq AS seq, c.bytes AS bytes FROM firmware_release_chunks c JOIN firmware_releases r ON c.set_id = r.chunk_set WHERE r.name = ? AND r.version = ? ORDER BY c.seq DESC LIMIT 1',
          )
          .get('sensor-fw', 2) as { setId: string; seq: number; bytes: Buffer },
    );
    const bad = Buffer.from(last.bytes);
    bad[bad.length - 200] ^= 0x01; // inside the CA's signature or the envelope: either way the signature must fail
    const setChunk = (bytes: Buffer) => withStore((db) => db.prepare('UPDATE firmware_release_chunks SET bytes = ? WHERE set_id = ? AND seq = ?').run(bytes, last.setId, last.seq));
    setChunk(bad);
    const img = tmp.file('a/sensor-fw.bin');
    const r = await update(outA(), img);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^device-ca: sensor-fw: refused: .*(signature|digest).*; load error report \(signatureFailure\) recorded\n$/);
    expect(fs.readFileSync(img).equals(image1)).toBe(true);
    expect(await errors()).toEqual({ 'fw-tpm-b': [1, 22], 'fw-tpm-a': [2, 15] });
    setChunk(last.bytes);
  });

  it('version 2 installs; then a server replaying version 1 as the latest is refused (anti-rollback)', async () => {
    const img = tmp.file('a/sensor-fw.bin');
    const r = await update(outA(), img);
    expect([r.code, r.stderr, r.stdout]).toEqual([0, '', `sensor-fw: installed version 2 (was 1), decrypted in the TPM: ${img}\nsensor-fw: load receipt of version 2 recorded\n`]);
    expect(await runs()).toEqual({ 'fw-tpm-a': 2, 'fw-tpm-b': null });
    // the load receipt of version 2 settles the error about it
    expect(await errors()).toEqual({ 'fw-tpm-b': [1, 22] });
    expect(fs.readFileSync(img).equals(image2)).toBe(true);
    withStore((db) => db.prepare('DELETE FROM firmware_releases WHERE name = ? AND version = ?').run('sensor-fw', 2));
    const replay = await update(outA(), img);
    expect(replay.code).toBe(1);
    expect(replay.stderr).toBe('device-ca: sensor-fw: refused: version 1 is below the installed version 2 (anti-rollback, RFC 4108); load error report (stalePackage) recorded\n');
    expect(fs.readFileSync(img).equals(image2)).toBe(true);
  });

  it('a package for other hardware (RFC 4108 targetHardwareIDs) is refused with the reason and reported wrongHardware; the image untouched', async () => {
    // for the hardware type the server knows from the device's receipts so far (generic): the server offers
    // it (latest skips only releases for other hardware than that), and the agent, now naming its module
    // type 1.3.6.1.4.1.99999.2.2, refuses it itself
    await release(3, crypto.randomBytes(1_000), 'fw-tpm-a', CMS_OID.genericHardware);
    const img = tmp.file('a/sensor-fw.bin');
    const r = await agent([
      ...['update', '--check', '--trust', svc.chainPem, '--firmware-chain', firmwareChain(), '--out', outA(), '--name', 'sensor-fw', '--image-out', img],
      ...['--hardware', '1.3.6.1.4.1.99999.2.2:fw-tpm-a'],
    ]);
    expect([r.code, r.stderr]).toEqual([1, `device-ca: sensor-fw: refused: the package is for other hardware (${CMS_OID.genericHardware}); load error report (wrongHardware) recorded\n`]);
    expect(fs.readFileSync(img).equals(image2)).toBe(true);
    expect(await errors()).toEqual({ 'fw-tpm-b': [1, 22], 'fw-tpm-a': [3, 27] });
    // the report carries the device's hardware type, as its receipts do
    const hw = withStore((db) => db.prepare("SELECT hw_type FROM firmware_receipts WHERE name = 'sensor-fw' AND device_id = 'fw-tpm-a'").get() as { hw_type: string });
    expect(hw.hw_type).toBe('1.3.6.1.4.1.99999.2.2');
  });

  it('a release to a group key: the agent fetches its copy of the key (wrapped to its certificate, opened in the TPM) and decrypts the exact image', async () => {
    const groupImage = crypto.randomBytes(40_009);
    await release(1, groupImage, 'owner:acme', undefined, 'group-fw', '--encrypt-to-group');
    const img = tmp.file('a/group-fw.bin');
    const r = await agent(['update', '--check', '--trust', svc.chainPem, '--firmware-chain', firmwareChain(), '--out', outA(), '--name', 'group-fw', '--image-out', img]);
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect(r.stdout).toContain(`group-fw: installed version 1, decrypted in the TPM: ${img}\n`);
    expect(fs.readFileSync(img).equals(groupImage)).toBe(true);
    const fetched = withStore((db) => db.prepare("SELECT actor FROM audit WHERE type = 'firmware.group-key.fetched'").all() as { actor: string }[]);
    expect(fetched.map((f) => f.actor)).toEqual(['device:fw-tpm-a']);
  });

  it('a name with no release for this device: exit 4', async () => {
    const r = await agent(['update', '--check', '--trust', svc.chainPem, '--firmware-chain', firmwareChain(), '--out', outA(), '--name', 'no-such-fw']);
    expect([r.code, r.stderr]).toEqual([4, `device-ca: no release of no-such-fw for this device at ${new URL(svc.est).origin}\n`]);
  });
});

describe('agent update --check with an RSA 2048 device key (swtpm)', () => {
  const publicAt = (handle: string) => {
    rm.tpm2('tpm2_readpublic', ['-c', handle, '-o', `rsa-pub-${handle}.bin`]);
    return parseTpm2bPublic(tpm.dir.read(`rsa-pub-${handle}.bin`));
  };
  const certOf = (out: string): X509Certificate => new X509Certificate(fs.readFileSync(path.join(out, 'cert.pem')));

  it('agent enroll --key-alg rsa2048: an attested RSA 2048 key in the TPM (a decrypt key only with --key-decrypt), certified as is', () => {
    expect(rm.tpm2('tpm2_getcap', ['handles-persistent']).toString()).toMatch(/0x81018021[\s\S]*0x81018031/);
    for (const [out, handle, decrypt] of [
      [outR(), '0x81018021', true],
      [outS(), '0x81018031', false],
    ] as const) {
      const pub = publicAt(handle);
      expect([pub.type, pub.type === TPM_ALG.RSA ? pub.keyBits : 0]).toEqual([TPM_ALG.RSA, 2048]);
      expect((pub.objectAttributes & TPMA_OBJECT.decrypt) !== 0).toBe(decrypt);
      expect((pub.objectAttributes & TPMA_OBJECT.sign) !== 0).toBe(true);
      expect(certOf(out).publicKey.export({ type: 'spki', format: 'pem' })).toBe(tpmPublicKey(pub).export({ type: 'spki', format: 'pem' }));
    }
  });

  it('a release to RSA and EC devices: RSA-OAEP (SHA-256) recipient info opened by tpm2_rsadecrypt, the exact image written, the RSA-signed receipt recorded', async () => {
    const imageR = crypto.randomBytes(40_009);
    const rel = await release(1, imageR, 'fw-tpm-r,fw-tpm-s,fw-tpm-a', undefined, 'rsa-fw');
    // what the TPM must undo: one KeyTransRecipientInfo per RSA device, RSAES-OAEP with SHA-256 and MGF1-SHA-256
    const inner = tmp.file('rel/rsa-fw-1.x');
    await openssl('cms', '-verify', '-inform', 'DER', '-in', rel, '-CAfile', firmwareChain(), '-out', inner);
    const printed = (await openssl('cms', '-cmsout', '-print', '-inform', 'DER', '-in', inner)).stdout;
    // each OAEP recipient's RSAES-OAEP-params, as openssl lists their OIDs: hashFunc, maskGenFunc and its hash
    const oaepParams = printed
      .split('algorithm: rsaesOaep')
      .slice(1)
      .map((p) => [...p.split('encryptedKey')[0].matchAll(/OBJECT\s+:(\S+)/g)].map((m) => m[1]));
    expect(oaepParams).toEqual([
      ['sha256', 'mgf1', 'sha256'],
      ['sha256', 'mgf1', 'sha256'],
    ]);
    const img = tmp.file('r/rsa-fw.bin');
    const r = await update(outR(), img, 'rsa-fw');
    expect([r.code, r.stderr, r.stdout]).toEqual([0, '', `rsa-fw: installed version 1, decrypted in the TPM: ${img}\nrsa-fw: load receipt of version 1 recorded\n`]);
    expect(fs.readFileSync(img).equals(imageR)).toBe(true);
    expect(await runs('rsa-fw')).toEqual({ 'fw-tpm-r': 1 });
  }, 180_000);

  it('a sign-only RSA key: refused naming RSA-OAEP and what to do; no image', async () => {
    const img = tmp.file('s/rsa-fw.bin');
    const r = await update(outS(), img, 'rsa-fw');
    expect([r.code, r.stderr]).toEqual([
      1,
      'device-ca: rsa-fw: refused: the release is encrypted by RSA-OAEP to this device, and its TPM key at 0x81018031 is sign-only (no decrypt attribute): enroll with "agent enroll --key-decrypt" on a profile with tpmKeyDecrypt: true; load error report (noDecryptKey) recorded\n',
    ]);
    expect(fs.existsSync(img)).toBe(false);
    // the refusal is on record as a load error report: the device shows, running no version of it
    expect(await runs('rsa-fw')).toEqual({ 'fw-tpm-r': 1, 'fw-tpm-s': null });
  });

  it('agent renew: the next key is RSA 2048 and may decrypt too, and opens the next release', async () => {
    const renewed = await agent(['renew', '--trust', svc.chainPem, '--out', outR()]);
    expect([renewed.code, renewed.stderr]).toEqual([0, '']);
    const pub = publicAt('0x81018022');
    expect([pub.type, (pub.objectAttributes & TPMA_OBJECT.decrypt) !== 0]).toEqual([TPM_ALG.RSA, true]);
    expect(certOf(outR()).publicKey.export({ type: 'spki', format: 'pem' })).toBe(tpmPublicKey(pub).export({ type: 'spki', format: 'pem' }));
    expect(rm.tpm2('tpm2_getcap', ['handles-persistent']).toString()).not.toMatch(/0x81018021/);
    const imageR2 = crypto.randomBytes(30_011);
    await release(2, imageR2, 'fw-tpm-r', undefined, 'rsa-fw');
    const img = tmp.file('r/rsa-fw.bin');
    const r = await update(outR(), img, 'rsa-fw');
    expect([r.code, r.stderr, r.stdout]).toEqual([0, '', `rsa-fw: installed version 2 (was 1), decrypted in the TPM: ${img}\nrsa-fw: load receipt of version 2 recorded\n`]);
    expect(fs.readFileSync(img).equals(imageR2)).toBe(true);
  }, 180_000);
});

// before the retire: the CA refuses a TPM that belonged to a retired device (fw-tpm-b shares this swtpm)
describe('signed device commands: transfer (swtpm)', () => {
  const spkiOfHandle = (handle: string): string => {
    rm.tpm2('tpm2_readpublic', ['-c', handle, '-o', `pub-${handle}.bin`]);
    return tpmPublicKey(parseTpm2bPublic(tpm.dir.read(`pub-${handle}.bin`))).export({ type: 'spki', format: 'pem' }) as string;
  };

  it('released to a new owner: the agent fetches the command with its revoked certificate, evicts the old AK and key, deletes the identity, enrolls again with the new secret and its recorded EK algorithm, and reports done', async () => {
    const oldCert = new X509Certificate(fs.readFileSync(path.join(outA(), 'cert.pem')));
    const [oldAk, oldKey] = [spkiOfHandle('0x81018000'), spkiOfHandle('0x81018001')];
    // enrolled with --ek-alg ecc384: agent.json keeps it for the enrollment after the transfer
    expect(JSON.parse(fs.readFileSync(path.join(outA(), 'agent.json'), 'utf8'))).toMatchObject({ ekAlg: 'ecc384' });
    const ekBefore = (JSON.parse(await cliOk('devices', 'show', 'fw-tpm-a', '--json')) as { aks: { status: string; ekSha256: string }[] }).aks.filter((a) => a.status === 'active');
    expect(ekBefore).toHaveLength(1);
    // nothing pending yet: the agent says so and changes nothing
    const none = await agent(['command', '--fetch', '--firmware-chain', firmwareChain(), '--out', outA(), '--trust', svc.chainPem]);
    expect([none.code, none.stderr, none.stdout]).toEqual([0, '', 'no command for device fw-tpm-a\n']);
    await cliOk('devices', 'release', 'fw-tpm-a', '--to', 'globex');
    await cliOk('devices', 'command', 'fw-tpm-a', '--transfer', '--out', tmp.file('cmd/a.der'));
    expect(JSON.parse(await cliOk('devices', 'show', 'fw-tpm-a', '--json'))).toMatchObject({ command: { command: 'transfer', state: 'pending', newOwner: 'globex' } });
    const secret = (await cliOk('devices', 'claim', 'fw-tpm-a')).trim();
    // without the secret: refused before anything changes
    const bare = await agent(['command', '--fetch', '--firmware-chain', firmwareChain(), '--out', outA(), '--trust', svc.chainPem]);
    expect([bare.code, bare.stderr]).toEqual([
      1,
      'device-ca: a transfer command enrolls the device again under globex: give --secret (from the new owner\'s "devices claim") and --trust; nothing was changed\n',
    ]);
    expect(spkiOfHandle('0x81018001')).toBe(oldKey);
    const r = await agent([...['command', '--fetch', '--firmware-chain', firmwareChain(), '--out', outA()], ...['--secret', secret, '--trust', svc.chainPem, '--ek-chain', tmp.file('ek-issuer.pem')]]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /^transfer: device fw-tpm-a: evicted 0x81018000, 0x81018001 from the TPM, identity files deleted\nenrolled again for globex: .*cert\.pem \(serial [0-9A-F]+\)\nreport recorded: done\n$/,
    );
    const newCert = new X509Certificate(fs.readFileSync(path.join(outA(), 'cert.pem')));
    expect(newCert.serialNumber).not.toBe(oldCert.serialNumber);
    // no key of the old identity is left in the TPM: the handles hold new objects
    expect(spkiOfHandle('0x81018000')).not.toBe(oldAk);
    expect(spkiOfHandle('0x81018001')).not.toBe(oldKey);
    expect(newCert.publicKey.export({ type: 'spki', format: 'pem' })).toBe(spkiOfHandle('0x81018001'));
    const shown = JSON.parse(await cliOk('devices', 'show', 'fw-tpm-a', '--json')) as { owner: string; state: string; command: { state: string; fetches: number; evicted: string[] } };
    expect(shown).toMatchObject({ owner: 'globex', state: 'active', command: { command: 'transfer', state: 'done', fetches: 2, evicted: ['0x81018000', '0x81018001'] } });
    expect(fs.existsSync(path.join(outA(), 'firmware.json'))).toBe(false);
    // the new AK was registered with the same (P-384) EK, not the enroll default
    const aksAfter = (JSON.parse(await cliOk('devices', 'show', 'fw-tpm-a', '--json')) as { aks: { status: string; ekSha256: string }[] }).aks.filter((a) => a.status === 'active');
    expect(aksAfter.map((a) => a.ekSha256)).toEqual([ekBefore[0].ekSha256]);
    expect(JSON.parse(fs.readFileSync(path.join(outA(), 'agent.json'), 'utf8'))).toMatchObject({ ekAlg: 'ecc384' });
    // the report is audited, signed by the certificate that fetched the command (the old one, revoked by the release)
    const reported = withStore((db) => db.prepare("SELECT actor, data FROM audit WHERE type = 'device.command.reported' AND subject = 'fw-tpm-a'").all() as { actor: string; data: string }[]);
    expect(reported.map((x) => [x.actor, JSON.parse(x.data) as unknown])).toEqual([
      ['device:fw-tpm-a', expect.objectContaining({ outcome: 'done', serial: oldCert.serialNumber.toLowerCase().padStart(32, '0') })],
    ]);
  });
});

describe('signed device commands: retire (swtpm)', () => {
  const handles = (): string => rm.tpm2('tpm2_getcap', ['handles-persistent']).toString();
  const command = (out: string, cmd: string): Promise<ProcessResult> => agent(['command', '--in', cmd, '--firmware-chain', firmwareChain(), '--out', out]);

  it('refused for an active device; after devices retire, the command is made and audited', async () => {
    const early = await svc.cli(['devices', 'command', 'fw-tpm-b', '--retire', '--out', tmp.file('cmd/early.der')]);
    expect([early.code, early.stderr]).toEqual([1, 'device-ca: device fw-tpm-b is active: retire it first (devices retire fw-tpm-b); the command tells its agent to delete what is left\n']);
    expect(fs.existsSync(tmp.file('cmd/early.der'))).toBe(false);
    await cliOk('devices', 'retire', 'fw-tpm-b');
    expect(await cliOk('devices', 'command', 'fw-tpm-b', '--retire', '--out', tmp.file('cmd/b.der'))).toMatch(/^retire command for fw-tpm-b \(nonce [0-9a-f]{32}, valid until \S+\): .*b\.der\n$/);
    // openssl verifies it against the firmware chain like any release
    await openssl('cms', '-verify', '-inform', 'DER', '-in', tmp.file('cmd/b.der'), '-CAfile', firmwareChain(), '-out', tmp.file('cmd/b.json'));
    expect(JSON.parse(fs.readFileSync(tmp.file('cmd/b.json'), 'utf8'))).toMatchObject({ command: 'retire', device: 'fw-tpm-b' });
    const { nonce } = JSON.parse(fs.readFileSync(tmp.file('cmd/b.json'), 'utf8')) as { nonce: string };
    const audited = withStore((db) => db.prepare("SELECT actor, data FROM audit WHERE type = 'device.command.issued' AND subject = 'fw-tpm-b'").all() as { data: string }[]);
    expect(audited.map((a) => JSON.parse(a.data) as unknown)).toEqual([expect.objectContaining({ command: 'retire', nonce })]);
  });

  it("another device's agent refuses it; a command not signed by the signer CA is refused", async () => {
    const before = handles();
    const r = await command(outA(), tmp.file('cmd/b.der'));
    expect([r.code, r.stderr]).toEqual([1, 'device-ca: the command is for device "fw-tpm-b", not "fw-tpm-a"\n']);
    // the same content signed by a signer's key, not the signer CA
    const forged = tmp.file('cmd/forged.der');
    await openssl(
      'cms',
      '-sign',
      '-binary',
      '-nodetach',
      '-outform',
      'DER',
      '-econtent_type',
      '2.25.181106915634063386203377113302683929911',
      '-in',
      tmp.file('cmd/b.json'),
      '-signer',
      signers[0].crt,
      '-inkey',
      signers[0].key,
      '-out',
      forged,
    );
    const f = await command(outB(), forged);
    expect([f.code, f.stderr]).toEqual([1, 'device-ca: the command is not signed by the firmware signer CA\n']);
    expect(handles()).toBe(before);
    expect(fs.existsSync(path.join(outB(), 'agent.json'))).toBe(true);
  });

  it("the device's agent carries it out: its AK and key are gone from the TPM (tpm2_getcap), its files deleted; the other identity untouched", async () => {
    expect(handles()).toMatch(/0x81018010[\s\S]*0x81018011/);
    const r = await command(outB(), tmp.file('cmd/b.der'));
    expect([r.code, r.stderr, r.stdout]).toEqual([0, '', 'retire: device fw-tpm-b: evicted 0x81018010, 0x81018011 from the TPM, identity files deleted\n']);
    const after = handles();
    expect(after).not.toMatch(/0x81018010|0x81018011|0x81018012/);
    expect(after).toMatch(/0x81018000/); // fw-tpm-a's AK
    expect(fs.existsSync(outB())).toBe(false);
  });

  it('a retired device fetches its retire command with its last (revoked) certificate and a fresh nonce, carries it out and reports done; nothing left to fetch after', async () => {
    expect(JSON.parse(fs.readFileSync(path.join(outC(), 'agent.json'), 'utf8'))).toMatchObject({ ekAlg: 'rsa' });
    await cliOk('devices', 'retire', 'fw-tpm-c');
    await cliOk('devices', 'command', 'fw-tpm-c', '--retire', '--out', tmp.file('cmd/c.der'));
    expect(handles()).toMatch(/0x81018050[\s\S]*0x81018051/);
    const copy = tmp.file('dev-c-copy');
    fs.cpSync(outC(), copy, { recursive: true });
    const r = await agent(['command', '--fetch', '--firmware-chain', firmwareChain(), '--out', outC(), '--trust', svc.chainPem]);
    expect([r.code, r.stderr, r.stdout]).toEqual([0, '', 'retire: device fw-tpm-c: evicted 0x81018050, 0x81018051 from the TPM, identity files deleted\nreport recorded: done\n']);
    expect(handles()).not.toMatch(/0x81018050|0x81018051|0x81018052/);
    expect(fs.existsSync(outC())).toBe(false);
    const shown = JSON.parse(await cliOk('devices', 'show', 'fw-tpm-c', '--json')) as { command: unknown };
    expect(shown.command).toMatchObject({ command: 'retire', state: 'done', fetches: 1, evicted: ['0x81018050', '0x81018051'], reason: null });
    // the identity files kept aside: the key is gone, so the agent cannot even ask again
    const again = await agent(['command', '--fetch', '--firmware-chain', firmwareChain(), '--out', copy, '--trust', svc.chainPem]);
    expect([again.code, again.stderr]).toEqual([4, `device-ca: the key of ${path.join(copy, 'cert.pem')} is not at TPM handle 0x81018051 (TCTI "${rm.tcti}")\n`]);
  });
});
