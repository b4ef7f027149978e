import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openSignerCa, issueSignerCertificate, signerCaCertificate } from '../../../src/ca/signer-ca';
import { createFirmwarePackage, readFirmwarePackage, signFirmwarePackage } from '../../../src/cms/firmware-package';
import { verifyFirmwareRelease } from '../../../src/cms/firmware-release-verify';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { KeyAlgorithm } from '../../../src/keys/key-backend';
import { generateKeyPair, softwareSigningKey, SoftwareKeyBackend } from '../../../src/keys/software-key-backend';
import { DeviceLifecycle, OPERATOR } from '../../../src/ra/device-lifecycle';
import { FirmwareReleases } from '../../../src/ra/firmware-release';
import { releaseToBuffer } from './release-to-buffer';
import { bufferSource } from '../../../src/cms/byte-source';
import { readReleaseBytes } from '../../../src/store/release-chunks';
import { issuerAndSerialNumber } from '../../../src/cms/issuer-and-serial';
import * as x509 from '@peculiar/x509';
import { makeRaHarness, RaHarness, secretProof } from './ra-harness';

/**
 * The release decisions of ra/firmware-release.ts, in process with the real SQLite store and software
 * keys: which signatures count, which roles a release needs (as a matrix), which devices receive it, and
 * that a refusal records nothing. test/interop/firmware.test.ts drives the same through the CLI and openssl.
 */

let h: RaHarness;
let fw: FirmwareReleases;
interface Party {
  name: string;
  role: string;
  certificate: Buffer;
  key: ReturnType<typeof softwareSigningKey>;
}
const parties = new Map<string, Party>();

async function addParty(name: string, role: string, alg: KeyAlgorithm = 'ecdsa-p256'): Promise<Party> {
  const { privateKey } = generateKeyPair(alg);
  const r = await fw.addSigner({ name, role, csr: h.csr(name, { key: privateKey }).der, actor: 'test' });
  const p = { name, role, certificate: r.certificate, key: softwareSigningKey(privateKey, alg, `${name}.key`) };
  parties.set(role, p);
  return p;
}

const META: { name: string; version: number; hardware: { type: string; serial?: string }[] } = { name: 'fw', version: 1, hardware: [] };
const ALL_ROLES = ['manufacturer', 'developer', 'administrator'];
async function pkgSignedBy(roles: string[], meta = META, at = new Date()): Promise<Buffer> {
  let pkg = createFirmwarePackage(Buffer.from('image bytes'), meta);
  for (const r of roles) pkg = await signFirmwarePackage(pkg, parties.get(r)!, at);
  return pkg;
}
async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'released';
  } catch (e) {
    return e instanceof DeviceCaError ? `${e.code}: ${e.message}` : `other: ${String(e)}`;
  }
}
async function device(id: string, owner = 'acme'): Promise<void> {
  const secret = await h.register(id, { owner });
  await h.issued('default', 'enroll', h.csr(id).der, secretProof(id, secret));
}

beforeAll(async () => {
  h = await makeRaHarness();
  fw = new FirmwareReleases(h.cfg, h.store, new SoftwareKeyBackend(path.join(h.dir, 'keys')));
  await addParty('m', 'manufacturer');
  await addParty('d', 'developer', 'ecdsa-p384');
  await addParty('a', 'administrator', 'rsa-2048');
  await addParty('q', 'qa');
  await Promise.all([device('dev-1'), device('dev-2'), device('dev-g', 'globex')]);
}, 60_000);
afterAll(() => h.close());

describe('roles: the default policy needs manufacturer, developer and administrator', () => {
  const all = ['manufacturer', 'developer', 'administrator'];
  const cases: [string[], string][] = [
    [all, 'released'],
    [[...all, 'qa'], 'released'],
    [['developer', 'administrator'], 'forbidden: the release policy is not met: missing signatures of role manufacturer'],
    [['manufacturer', 'administrator'], 'forbidden: the release policy is not met: missing signatures of role developer'],
    [['manufacturer', 'developer', 'qa'], 'forbidden: the release policy is not met: missing signatures of role administrator'],
    [['qa'], 'forbidden: the release policy is not met: missing signatures of role manufacturer, developer, administrator'],
    [[], 'forbidden: the package is not signed'],
  ];
  it.each(cases)('signed by %j -> %s', async (roles, expected) => {
    expect(await refusal(releaseToBuffer(fw, { package: await pkgSignedBy(roles), actor: 'test' }))).toBe(expected);
  });

  it('an owner policy applies to releases for its devices; other owners keep the default', async () => {
    await fw.setPolicy({ roles: ['qa'], owner: 'globex', actor: 'test' });
    expect(await refusal(releaseToBuffer(fw, { package: await pkgSignedBy(['qa']), encryptTo: { owner: 'globex' }, actor: 'test' }))).toBe('released');
    expect(await refusal(releaseToBuffer(fw, { package: await pkgSignedBy(['qa']), encryptTo: { deviceIds: ['dev-g'] }, actor: 'test' }))).toBe('released');
    // a release to devices of both owners needs both policies
    expect(await refusal(releaseToBuffer(fw, { package: await pkgSignedBy(['qa']), encryptTo: { deviceIds: ['dev-g', 'dev-1'] }, actor: 'test' }))).toMatch(
      /^forbidden: .*missing signatures of role manufacturer, developer, administrator$/,
    );
    expect(await fw.requiredRoles('acme')).toEqual(['manufacturer', 'developer', 'administrator']);
  });
});

describe('M-of-N: a policy that needs some of its roles, at release and on the device alike', () => {
  let chain: Buffer[];
  beforeAll(async () => {
    await fw.setPolicy({ roles: ['manufacturer', 'developer', 'administrator'], require: 2, owner: 'initech', actor: 'test' });
    await device('dev-i', 'initech');
    const root = Buffer.from(((await h.store.getCaState('hierarchy'))!.value as { root: { der: string } }).root.der, 'base64');
    chain = [(await signerCaCertificate(h.store))!, root];
  });
  const release = async (roles: string[], version: number) =>
    refusal(releaseToBuffer(fw, { package: await pkgSignedBy(roles, { name: 'mn', version, hardware: [] }), encryptTo: { owner: 'initech' }, actor: 'test' }));
  const verify = (rel: Buffer, roles: string[], require?: number): string => {
    try {
      const v = verifyFirmwareRelease(rel, { chain, roles, require, now: new Date() });
      return `verified by ${v.approvals.map((a) => a.role).join(', ')}`;
    } catch (e) {
      return e instanceof DeviceCaError ? `${e.code}: ${e.message}` : `other: ${String(e)}`;
    }
  };

  it.each([
    [['manufacturer', 'developer'], 'released'],
    [['developer', 'administrator'], 'released'],
    [['qa', 'administrator'], 'forbidden: the release policy is not met: missing signatures: 1 more of role manufacturer, developer (2 of manufacturer, developer, administrator)'],
    [['qa'], 'forbidden: the release policy is not met: missing signatures: 2 more of role manufacturer, developer, administrator (2 of manufacturer, developer, administrator)'],
  ])('signed by %j for initech (2 of 3) -> %s', async (roles, expected) => {
    expect(await release(roles, 1)).toBe(expected);
  });

  it('a release to devices of an M-of-N owner and of an all-of owner must meet both', async () => {
    const pkg = await pkgSignedBy(['manufacturer', 'developer'], { name: 'mn', version: 2, hardware: [] });
    expect(await refusal(releaseToBuffer(fw, { package: pkg, encryptTo: { deviceIds: ['dev-i', 'dev-1'] }, actor: 'test' }))).toBe(
      'forbidden: the release policy is not met: missing signatures of role administrator',
    );
  });

  it('the device applies the same rule with its own --roles/--require (the CA cannot lower it)', async () => {
    const two = await pkgSignedBy(['manufacturer', 'developer'], { name: 'mn-plain', version: 1, hardware: [] });
    await fw.setPolicy({ roles: ['manufacturer', 'developer', 'administrator'], require: 2, actor: 'test' });
    let rel: Buffer;
    try {
      rel = (await releaseToBuffer(fw, { package: two, actor: 'test' })).release;
    } finally {
      await fw.setPolicy({ roles: ['manufacturer', 'developer', 'administrator'], actor: 'test' });
    }
    const all = ['manufacturer', 'developer', 'administrator'];
    expect(verify(rel, all, 2)).toBe('verified by manufacturer, developer');
    expect(verify(rel, all)).toBe('forbidden: the release lacks approvals of role administrator');
    expect(verify(rel, all, 3)).toBe('forbidden: the release lacks approvals of role administrator');
    expect(verify(rel, ['administrator', 'qa'], 1)).toBe('forbidden: the release lacks approvals of 1 more of role administrator, qa (1 of administrator, qa)');
    expect(verify(rel, all, 4)).toBe('bad-request: --require must be between 1 and the number of roles (3)');
  });

  it('a policy whose count is out of range is refused and not recorded', async () => {
    expect(await refusal(fw.setPolicy({ roles: ['a', 'b'], require: 3, actor: 't' }))).toBe('bad-request: --require must be between 1 and the number of roles (2)');
    expect(await refusal(fw.setPolicy({ roles: ['a', 'b'], require: 0, actor: 't' }))).toBe('bad-request: --require must be between 1 and the number of roles (2)');
    expect(await fw.policyFor()).toEqual({ roles: ['manufacturer', 'developer', 'administrator'], require: 3 });
    expect(await fw.policyFor('initech')).toEqual({ roles: ['manufacturer', 'developer', 'administrator'], require: 2 });
    const audit = (await h.audit('firmware.policy.set')).find((r) => r.subject === 'owner:initech');
    expect(audit?.data).toEqual({ roles: ['manufacturer', 'developer', 'administrator'], require: 2 });
  });

  it('a policy stored in the first form (a bare role list) still means all of them', async () => {
    const e = (await h.store.getCaState('firmware-policy'))!;
    await h.store.saveCaState('firmware-policy', { ...(e.value as object), owners: { ...(e.value as { owners: object }).owners, legacy: ['qa', 'developer'] } }, e.version);
    expect(await fw.policyFor('legacy')).toEqual({ roles: ['qa', 'developer'], require: 2 });
  });
});

describe('signers: which signatures count', () => {
  it('a certificate from another CA, with a valid signature, is not a signer', async () => {
    const { privateKey } = generateKeyPair('ecdsa-p256');
    const issued = await h.issued('default', 'enroll', h.csr('dev-x', { key: privateKey }).der, secretProof('dev-x', await h.register('dev-x')));
    const foreign = { certificate: issued.certificate, key: softwareSigningKey(privateKey, 'ecdsa-p256', 'x') };
    const pkg = await signFirmwarePackage(await pkgSignedBy(['manufacturer', 'developer', 'administrator']), foreign, new Date());
    expect(await refusal(releaseToBuffer(fw, { package: pkg, actor: 'test' }))).toMatch(/^forbidden: a signature is by .*CN=dev-x, which is not a registered signer certificate$/);
  });

  it('a signer CA certificate that was never registered as a signer does not count', async () => {
    const { privateKey } = generateKeyPair('ecdsa-p256');
    const ca = await openSignerCa(h.cfg, new SoftwareKeyBackend(path.join(h.dir, 'keys')), h.store);
    const spki = crypto.createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
    const c = await issueSignerCertificate(h.cfg, ca, h.store, { name: 'ghost', role: 'administrator', spki, validitySeconds: 86400, actor: 'test' });
    const ghost = { certificate: c.der, key: softwareSigningKey(privateKey, 'ecdsa-p256', 'g') };
    const pkg = await signFirmwarePackage(await pkgSignedBy(['manufacturer', 'developer']), ghost, new Date());
    expect(await refusal(releaseToBuffer(fw, { package: pkg, actor: 'test' }))).toMatch(/not a registered signer certificate$/);
  });

  it('a signing time outside the certificate, or ahead of the CA clock, is refused', async () => {
    const before = await pkgSignedBy(['manufacturer', 'developer', 'administrator'], META, new Date(Date.now() - 86400_000));
    expect(await refusal(releaseToBuffer(fw, { package: before, actor: 'test' }))).toBe("forbidden: signer m's certificate was not valid at its signing time");
    const ahead = await pkgSignedBy(['manufacturer', 'developer', 'administrator'], META, new Date(Date.now() + 3600_000));
    expect(await refusal(releaseToBuffer(fw, { package: ahead, actor: 'test' }))).toBe("forbidden: signer m's signing time is in the future");
  });

  it('a signer whose certificate is revoked is refused, and nothing is left at --out', async () => {
    const { privateKey } = generateKeyPair('ecdsa-p256');
    const r = await fw.addSigner({ name: 'revoked-one', role: 'auditor', csr: h.csr('revoked-one', { key: privateKey }).der, actor: 'test' });
    await h.store.revokeCertificate(r.serial, 'keyCompromise', new Date(), null, { type: 'certificate.revoked', actor: 'test', subject: r.serial, data: {} });
    const pkg = await signFirmwarePackage(await pkgSignedBy(ALL_ROLES), { certificate: r.certificate, key: softwareSigningKey(privateKey, 'ecdsa-p256', 'r') }, new Date());
    // releaseToBuffer fails the refusal if anything (the release or its temporary file) is left beside --out
    expect(await refusal(releaseToBuffer(fw, { package: pkg, actor: 'test' }))).toBe("forbidden: signer revoked-one's certificate is revoked");
  });

  it('a truncated or garbled package is a clear bad-request, and nothing is left at --out', async () => {
    const pkg = await pkgSignedBy(ALL_ROLES);
    expect(await refusal(releaseToBuffer(fw, { package: pkg.subarray(0, pkg.length - 10), actor: 'test' }))).toMatch(
      /^bad-request: the file is not a DER CMS SignedData \(malformed DER: ContentInfo ends at \d+, not \d+/,
    );
    expect(await refusal(releaseToBuffer(fw, { package: Buffer.from('not a package'), actor: 'test' }))).toMatch(/^bad-request: the file is not a DER CMS SignedData/);
  });

  it('a tampered package is refused as bad-signature', async () => {
    const pkg = await pkgSignedBy(['manufacturer', 'developer', 'administrator']);
    const at = pkg.indexOf(Buffer.from('image bytes'));
    pkg[at] ^= 1;
    expect(await refusal(releaseToBuffer(fw, { package: pkg, actor: 'test' }))).toBe('bad-signature: message digest does not match the content');
  });
});

describe('recipients', () => {
  const ALL = ['manufacturer', 'developer', 'administrator'];

  it('by owner: every active device of the owner with a valid certificate', async () => {
    const r = await releaseToBuffer(fw, { package: await pkgSignedBy(ALL, { ...META, version: 2 }), encryptTo: { owner: 'acme' }, actor: 'test' });
    expect(r.record.recipients).toEqual(['dev-1', 'dev-2', 'dev-x']);
  });

  it('a suspended, retired, unknown or never-enrolled device named explicitly is refused; by owner it is left out', async () => {
    const lifecycle = new DeviceLifecycle(h.cfg, h.store);
    await lifecycle.suspend('dev-2', OPERATOR, 'test');
    await lifecycle.retire('dev-x', OPERATOR, 'test');
    await h.register('dev-new');
    const pkg = await pkgSignedBy(ALL, { ...META, version: 3 });
    expect(await refusal(releaseToBuffer(fw, { package: pkg, encryptTo: { deviceIds: ['dev-2'] }, actor: 'test' }))).toBe('forbidden: device dev-2 is suspended: it cannot receive firmware');
    expect(await refusal(releaseToBuffer(fw, { package: pkg, encryptTo: { deviceIds: ['dev-x'] }, actor: 'test' }))).toBe('forbidden: device dev-x is retired: it cannot receive firmware');
    expect(await refusal(releaseToBuffer(fw, { package: pkg, encryptTo: { deviceIds: ['nope'] }, actor: 'test' }))).toBe('not-found: device nope is not registered');
    expect(await refusal(releaseToBuffer(fw, { package: pkg, encryptTo: { deviceIds: ['dev-new'] }, actor: 'test' }))).toBe('forbidden: device dev-new is registered: it cannot receive firmware');
    const r = await releaseToBuffer(fw, { package: pkg, encryptTo: { owner: 'acme' }, actor: 'test' });
    expect(r.record.recipients).toEqual(['dev-1']);
    expect(await refusal(releaseToBuffer(fw, { package: pkg, encryptTo: { owner: 'nobody' }, actor: 'test' }))).toBe('bad-request: no active device with a valid certificate to encrypt to');
  });
});

describe('records', () => {
  it('a refusal records nothing; a release records the signers, audited per signature', async () => {
    const before = (await fw.listReleases()).length;
    const auditBefore = (await h.audit('firmware.released')).length;
    await refusal(releaseToBuffer(fw, { package: await pkgSignedBy(['qa']), actor: 'test' }));
    expect((await fw.listReleases()).length).toBe(before);
    expect((await h.audit('firmware.released')).length).toBe(auditBefore);
    const r = await releaseToBuffer(fw, { package: await pkgSignedBy(['manufacturer', 'developer', 'administrator'], { ...META, version: 9 }), actor: 'test' });
    expect(r.record.signers.map((s) => [s.name, s.role])).toEqual([
      ['m', 'manufacturer'],
      ['d', 'developer'],
      ['a', 'administrator'],
    ]);
    expect(r.record.sha256).toBe(crypto.createHash('sha256').update('image bytes').digest('hex'));
    expect((await h.audit('firmware.released')).length).toBe(auditBefore + 1);
    expect(readFirmwarePackage(r.release).signers.length).toBe(4); // the parties and the signer CA
  });

  it("a release records the package's target hardware (RFC 4108 §2.2.2 types, §2.2.5 serials) in the store", async () => {
    const hardware = [{ type: '1.3.6.1.4.1.99.1' }, { type: '1.3.6.1.4.1.99.2', serial: 'dev-1' }];
    const r = await releaseToBuffer(fw, { package: await pkgSignedBy(ALL_ROLES, { name: 'fw-hw', version: 1, hardware }), actor: 'test' });
    expect(r.record.hardware).toEqual(hardware);
    expect((await h.store.getFirmwareRelease('fw-hw', 1))?.hardware).toEqual(hardware);
    await releaseToBuffer(fw, { package: await pkgSignedBy(ALL_ROLES, { name: 'fw-hw', version: 2, hardware: [] }), actor: 'test' });
    expect((await h.store.getFirmwareRelease('fw-hw', 2))?.hardware).toEqual([]);
  });

  it('an older version than the latest release of the name is refused', async () => {
    expect(await refusal(releaseToBuffer(fw, { package: await pkgSignedBy(['manufacturer', 'developer', 'administrator']), actor: 'test' }))).toBe(
      'conflict: version 1 is below the released version 9 of fw',
    );
  });

  it('signer names and roles are checked, and a name is registered once', async () => {
    const csr = h.csr('z').der;
    expect(await refusal(fw.addSigner({ name: 'm', role: 'x', csr, actor: 't' }))).toBe('conflict: signer m exists');
    expect(await refusal(fw.addSigner({ name: 'bad name', role: 'x', csr, actor: 't' }))).toMatch(/^bad-request: signer name must be/);
    expect(await refusal(fw.addSigner({ name: 'ok', role: '', csr, actor: 't' }))).toMatch(/^bad-request: role must be/);
    expect(await refusal(fw.addSigner({ name: 'ok', role: 'x', csr: Buffer.from('junk'), actor: 't' }))).toMatch(/^bad-request/);
    expect(await refusal(fw.setPolicy({ roles: [], actor: 't' }))).toBe('bad-request: a policy names at least one role');
  });
});

describe('recipients of a TPM device', () => {
  it("the device's certificate, never its AK certificate, even when the AK certificate is the newer one", async () => {
    const dev = (await h.store.listCertificates({ deviceId: 'dev-1', status: 'valid', limit: 10 })).items.find((c) => c.profile === 'default')!;
    const keys = (await crypto.webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as crypto.webcrypto.CryptoKeyPair;
    const notBefore = new Date(dev.notBefore.getTime() + 3600_000);
    const ak = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: '7a7a01',
      name: 'CN=dev-1',
      keys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      notBefore,
      notAfter: dev.notAfter,
    });
    const akDer = Buffer.from(ak.rawData);
    await h.store.recordIssuance({
      cert: { serial: '7a7a01', deviceId: 'dev-1', issuer: dev.issuer, subject: 'CN=dev-1', profile: 'tpm-ak', notBefore, notAfter: dev.notAfter, shard: 0, spkiSha256: '00', der: akDer },
      audit: { type: 'test', actor: 'test', subject: 'device:dev-1', data: {} },
    });
    const r = await releaseToBuffer(fw, { package: await pkgSignedBy(ALL_ROLES, { ...META, name: 'fw-ak' }), encryptTo: { deviceIds: ['dev-1'] }, actor: 'test' });
    expect(r.release.includes(issuerAndSerialNumber(dev.der))).toBe(true);
    expect(r.release.includes(issuerAndSerialNumber(akDer))).toBe(false);
  });
});

it('recorded but --out never renamed (the rename fails, as a kill -9 after the store commit leaves it): the same version released again is accepted and replaces it', async () => {
  const meta = { name: 'fw-rename', version: 3, hardware: [] };
  const pkg = await pkgSignedBy(ALL_ROLES, meta);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-rename-'));
  try {
    const out = path.join(dir, 'release.der');
    fs.mkdirSync(out); // renameSync(file, directory) fails after the store recorded the release
    await expect(fw.release({ package: bufferSource(pkg), out, actor: 'test' })).rejects.toThrow();
    expect(fs.readdirSync(dir)).toEqual(['release.der']);
    const first = await h.store.getFirmwareRelease('fw-rename', 3);
    expect(first?.version).toBe(3);
    fs.rmdirSync(out);
    const again = await fw.release({ package: bufferSource(pkg), out, actor: 'test' });
    expect(fs.statSync(out).size).toBe(again.bytes);
    const stored = await readReleaseBytes((await h.store.openFirmwareRelease('fw-rename', 3))!);
    expect(stored.equals(fs.readFileSync(out))).toBe(true);
    expect((await h.store.listFirmwareReleases({ name: 'fw-rename' })).items).toHaveLength(1);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

it('a release whose <out>.lock was taken from it meanwhile (removed by hand, taken by another writer) records nothing and leaves that lock and --out alone', async () => {
  const meta = { name: 'fw-lock-lost', version: 1, hardware: [] };
  const pkg = await pkgSignedBy(ALL_ROLES, meta);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-lock-lost-'));
  const theirs = `${JSON.stringify({ host: os.hostname(), pidNs: null, bootId: null, pid: process.ppid, since: new Date().toISOString() })}\n`;
  const appendAudit = h.store.appendAudit.bind(h.store);
  const spy = jest.spyOn(h.store, 'appendAudit').mockImplementation(async (a) => {
    // after the lock is taken, before the release is written: an operator removes the lock, another writer links its own
    fs.rmSync(path.join(dir, 'release.der.lock'), { force: true });
    fs.writeFileSync(path.join(dir, 'release.der.lock'), theirs);
    return appendAudit(a);
  });
  try {
    const out = path.join(dir, 'release.der');
    const e = await fw.release({ package: bufferSource(pkg), out, actor: 'test' }).catch((x: unknown) => x);
    expect(e instanceof DeviceCaError ? `${e.code}: ${e.message}` : String(e)).toMatch(/^conflict: a firmware release to .*release\.der: .*release\.der\.lock.* no longer this writer's/);
    expect(await h.store.getFirmwareRelease('fw-lock-lost', 1)).toBeNull();
    expect(fs.readdirSync(dir)).toEqual(['release.der.lock']);
    expect(fs.readFileSync(path.join(dir, 'release.der.lock'), 'utf8')).toBe(theirs);
  } finally {
    spy.mockRestore();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
