import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { verifyAuditChain } from '../../../src/audit/audit-verify';
import { loadConfig } from '../../../src/config/load-config';
import { Config } from '../../../src/config/schema';
import { DeviceCaError, ErrorCode } from '../../../src/errors/device-ca-error';
import { DeviceLifecycle, OPERATOR, Scope, normalizeSerial } from '../../../src/ra/device-lifecycle';
import { hashChosenSecret, serverSecretKey, verifySecret } from '../../../src/ra/enrollment-secret';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { CertificateChange, CertificateRecord } from '../../../src/store/store';

/**
 * DeviceLifecycle over a real SqliteStore: every legal transition changes device, certificates, secrets and
 * audit together and tells the listener what changed; every illegal one is 'conflict' and changes nothing;
 * a device or certificate outside an owner's scope is 'not-found' and is left alone.
 */

const NOW = new Date('2026-03-01T12:00:00.000Z');
const DAY = 86400_000;
const ACME: Scope = { kind: 'owner', owner: 'acme' };
const GLOBEX: Scope = { kind: 'owner', owner: 'globex' };

let dir: string;
let store: SqliteStore;
let cfg: Config;
let changes: CertificateChange[][];
let lifecycle: DeviceLifecycle;
let serialSeq = 0;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-lifecycle-'));
  cfg = loadConfig({ env: { DEVICE_CA_DATA: dir }, overrides: { 'enrollment.secretHashCost': 10, 'crl.shards': 4 } });
  store = new SqliteStore(path.join(dir, 'device-ca.sqlite'));
  changes = [];
  lifecycle = new DeviceLifecycle(
    cfg,
    store,
    (c) => changes.push(c),
    () => NOW,
  );
});
afterEach(async () => {
  await store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function addDevice(id: string, owner: string | null = 'acme', secret = 'first-secret'): Promise<void> {
  await store.createDevice(
    { id, owner, label: null, state: 'registered' },
    { hash: await hashChosenSecret(secret, 10), expiresAt: new Date(Date.now() + DAY) },
    { type: 'device.registered', actor: 'test', subject: id, data: {} },
  );
}

/** issue records a certificate for a device (as the RA does after signing); expired ones end before now. */
async function issue(deviceId: string | null, o: { expired?: boolean } = {}): Promise<string> {
  const serial = (0x40000000 + ++serialSeq).toString(16) + crypto.randomBytes(12).toString('hex');
  // expired by both clocks: the store's (real time) and the lifecycle's (NOW)
  const notAfter = o.expired ? new Date(Math.min(Date.now(), NOW.getTime()) - DAY) : new Date(Date.now() + 365 * DAY);
  await store.recordIssuance({
    cert: {
      serial,
      deviceId,
      issuer: 'device-ca-issuing',
      subject: `CN=${deviceId}`,
      profile: 'default',
      notBefore: new Date(Date.now() - 400 * DAY),
      notAfter,
      shard: serialSeq % 4,
      spkiSha256: 'ab'.repeat(32),
      der: Buffer.from(`der ${serial}`),
    },
    audit: { type: 'certificate.issued', actor: 'test', subject: deviceId ?? 'none', data: { serial } },
  });
  return serial;
}

const cert = async (serial: string): Promise<CertificateRecord> => (await store.getCertificate(serial))!;
const state = async (id: string) => (await store.getDevice(id))!.state;

async function codeOf(p: Promise<unknown>): Promise<ErrorCode | 'resolved'> {
  try {
    await p;
    return 'resolved';
  } catch (e) {
    if (!(e instanceof DeviceCaError)) throw e;
    return e.code;
  }
}

/** snapshot: everything a failed transition must leave untouched */
async function snapshot(id: string) {
  const d = await store.getDevice(id);
  const certs = (await store.listCertificates({ deviceId: id, limit: 1000 })).items.map((c) => [c.serial, c.status, c.revocationReason]);
  const secrets = (await store.activeSecrets(id, new Date())).map((s) => s.id);
  const audit = (await store.listAudit({ limit: 1000 })).items.length;
  return { d, certs, secrets, audit };
}

describe('suspend and resume', () => {
  it('suspend puts only valid, unexpired certificates on hold; resume releases exactly those', async () => {
    await addDevice('dev-1');
    const valid = await issue('dev-1');
    const compromised = await issue('dev-1');
    const expired = await issue('dev-1', { expired: true });
    await lifecycle.revoke(compromised, 'keyCompromise', OPERATOR, 'test');
    changes = [];

    const s = await lifecycle.suspend('dev-1', OPERATOR, 'op');
    expect(s.device.state).toBe('suspended');
    expect(s.changed).toEqual([{ serial: valid, issuer: 'device-ca-issuing', shard: expect.any(Number), status: 'revoked', reason: 'certificateHold' }]);
    expect(changes).toEqual([s.changed]);
    expect(await cert(valid)).toMatchObject({ status: 'revoked', revocationReason: 'certificateHold', revokedAt: NOW });
    expect(await cert(compromised)).toMatchObject({ status: 'revoked', revocationReason: 'keyCompromise' });
    expect(await cert(expired)).toMatchObject({ status: 'valid', revocationReason: null });
    expect(await state('dev-1')).toBe('suspended');

    changes = [];
    const r = await lifecycle.resume('dev-1', OPERATOR, 'op');
    expect(r.device.state).toBe('active');
    expect(r.changed).toEqual([{ serial: valid, issuer: 'device-ca-issuing', shard: expect.any(Number), status: 'valid', reason: null }]);
    expect(changes).toEqual([r.changed]);
    expect(await cert(valid)).toMatchObject({ status: 'valid', revocationReason: null, revokedAt: null });
    expect(await cert(compromised)).toMatchObject({ status: 'revoked', revocationReason: 'keyCompromise' });
  });

  it('resume of a device with more certificates than one store page: all held ones come back and the device is active', async () => {
    // 1,000 expired certificates sort first (lower serials); the 1,050 held ones are all on later pages
    await addDevice('dev-many');
    await Promise.all(Array.from({ length: 1000 }, () => issue('dev-many', { expired: true })));
    const held = await Promise.all(Array.from({ length: 1050 }, () => issue('dev-many')));
    const s = await lifecycle.suspend('dev-many', OPERATOR, 'op');
    expect(s.changed.map((c) => c.serial).sort()).toEqual([...held].sort());

    const r = await lifecycle.resume('dev-many', OPERATOR, 'op');
    expect(r.device.state).toBe('active');
    expect(await state('dev-many')).toBe('active');
    expect(r.changed.map((c) => c.serial).sort()).toEqual([...held].sort());
    expect(r.changed.every((c) => c.status === 'valid')).toBe(true);
    const stillHeld = (await store.listCertificates({ deviceId: 'dev-many', status: 'revoked', limit: 1000 })).items;
    expect(stillHeld).toEqual([]);
  });

  it('a suspended device that never had a certificate resumes as registered, with no certificate change', async () => {
    await addDevice('dev-new');
    await lifecycle.suspend('dev-new', OPERATOR, 'op');
    const r = await lifecycle.resume('dev-new', OPERATOR, 'op');
    expect(r).toMatchObject({ device: { state: 'registered' }, changed: [] });
    expect(changes).toEqual([]); // nothing to re-publish
  });

  it('resume returns a device to the state it was suspended from: a transferred device that has not enrolled again stays registered', async () => {
    // registered -> (transfer revokes every certificate) -> suspend -> resume: the new owner has no certificate yet
    await addDevice('dev-moved');
    await issue('dev-moved');
    await lifecycle.transfer('dev-moved', 'globex', OPERATOR, 'op');
    expect(await state('dev-moved')).toBe('registered');
    await lifecycle.suspend('dev-moved', OPERATOR, 'op');
    const r = await lifecycle.resume('dev-moved', OPERATOR, 'op');
    expect(r.changed).toEqual([]);
    expect(r.device.state).toBe('registered');
    expect(await state('dev-moved')).toBe('registered');
  });

  it.each([
    ['resume of an active device', async () => (await addDevice('d'), await issue('d'), lifecycle.resume('d', OPERATOR, 'op'))],
    ['resume of a registered device', async () => (await addDevice('d'), lifecycle.resume('d', OPERATOR, 'op'))],
    ['suspend twice', async () => (await addDevice('d'), await lifecycle.suspend('d', OPERATOR, 'op'), lifecycle.suspend('d', OPERATOR, 'op'))],
    ['resume twice', async () => (await addDevice('d'), await lifecycle.suspend('d', OPERATOR, 'op'), await lifecycle.resume('d', OPERATOR, 'op'), lifecycle.resume('d', OPERATOR, 'op'))],
    ['retire twice', async () => (await addDevice('d'), await lifecycle.retire('d', OPERATOR, 'op'), lifecycle.retire('d', OPERATOR, 'op'))],
    ['suspend a retired device', async () => (await addDevice('d'), await lifecycle.retire('d', OPERATOR, 'op'), lifecycle.suspend('d', OPERATOR, 'op'))],
    ['resume a retired device', async () => (await addDevice('d'), await lifecycle.retire('d', OPERATOR, 'op'), lifecycle.resume('d', OPERATOR, 'op'))],
    ['transfer a retired device', async () => (await addDevice('d'), await lifecycle.retire('d', OPERATOR, 'op'), lifecycle.transfer('d', 'globex', OPERATOR, 'op'))],
  ] as [string, () => Promise<unknown>][])('%s is a conflict', async (_what, attempt) => {
    const p = attempt();
    const code = await codeOf(p);
    expect(code).toBe('conflict');
  });

  it('an illegal transition changes nothing: no certificate, secret or audit record', async () => {
    await addDevice('dev-c');
    await issue('dev-c');
    const before = await snapshot('dev-c');
    changes = [];
    expect(await codeOf(lifecycle.resume('dev-c', OPERATOR, 'op'))).toBe('conflict');
    expect(await snapshot('dev-c')).toEqual(before);
    expect(changes).toEqual([]);
  });
});

describe('transfer', () => {
  it('changes the owner, revokes valid and held certificates with affiliationChanged and replaces the secrets', async () => {
    await addDevice('dev-t', 'acme', 'old-secret');
    const a = await issue('dev-t');
    const b = await issue('dev-t');
    const c = await issue('dev-t'); // stays valid next to the held ones
    for (const held of [a, b]) await lifecycle.revoke(held, 'certificateHold', OPERATOR, 'op');
    changes = [];

    const t = await lifecycle.transfer('dev-t', 'globex', OPERATOR, 'op', 3600);
    expect(t.device).toMatchObject({ id: 'dev-t', owner: 'globex', state: 'registered' });
    expect(t.changed.map((x) => x.serial).sort()).toEqual([a, b, c].sort());
    expect(t.changed.every((x) => x.status === 'revoked' && x.reason === 'affiliationChanged')).toBe(true);
    expect(changes).toEqual([t.changed]);
    for (const s of [a, b, c]) expect(await cert(s)).toMatchObject({ status: 'revoked', revocationReason: 'affiliationChanged', revokedAt: NOW });
    expect((await store.getDevice('dev-t'))!.owner).toBe('globex');

    // the new secret is the only one, it works, the old one is gone, and it expires after the given TTL
    expect(t.expiresAt).toEqual(new Date(NOW.getTime() + 3600_000));
    const secrets = await store.activeSecrets('dev-t', NOW);
    expect(secrets).toHaveLength(1);
    expect(await verifySecret(t.secret, secrets[0].hash, serverSecretKey(cfg))).toBe(true);
    expect(await verifySecret('old-secret', secrets[0].hash, serverSecretKey(cfg))).toBe(false);

    const last = (await store.listAudit({ subject: 'dev-t', limit: 100 })).items.pop()!;
    expect(last).toMatchObject({ type: 'device.transferred', actor: 'op', data: { from: 'acme', to: 'globex' } });
    expect((last.data.certificates as string[]).sort()).toEqual([a, b, c].sort());
  });

  it('the default secret lifetime is enrollment.secretTtl', async () => {
    await addDevice('dev-ttl');
    const t = await lifecycle.transfer('dev-ttl', 'globex', OPERATOR, 'op');
    expect(t.expiresAt).toEqual(new Date(NOW.getTime() + cfg.enrollment.secretTtl * 1000));
  });

  it('leaves already revoked certificates with their reason', async () => {
    await addDevice('dev-k');
    const k = await issue('dev-k');
    await lifecycle.revoke(k, 'keyCompromise', OPERATOR, 'op');
    const t = await lifecycle.transfer('dev-k', 'globex', OPERATOR, 'op');
    expect(t.changed).toEqual([]);
    expect(await cert(k)).toMatchObject({ revocationReason: 'keyCompromise' });
  });

  it('rejects an unprintable or empty owner, and an owner releasing a device to itself', async () => {
    await addDevice('dev-o');
    expect(await codeOf(lifecycle.transfer('dev-o', '', OPERATOR, 'op'))).toBe('bad-request');
    expect(await codeOf(lifecycle.transfer('dev-o', 'evil\nowner', OPERATOR, 'op'))).toBe('bad-request');
    expect(await codeOf(lifecycle.transfer('dev-o', 'x'.repeat(129), OPERATOR, 'op'))).toBe('bad-request');
    expect(await codeOf(lifecycle.release('dev-o', 'evil\nowner', ACME, 'op'))).toBe('bad-request');
    expect(await codeOf(lifecycle.release('dev-o', 'acme', ACME, 'op'))).toBe('conflict');
    expect(await store.getDevice('dev-o')).toMatchObject({ owner: 'acme', state: 'registered', pendingOwner: null });
  });

  it('an owner cannot transfer in one step (it releases; the new owner claims): forbidden, and nothing changes', async () => {
    await addDevice('dev-h');
    const s = await issue('dev-h');
    const before = await snapshot('dev-h');
    expect(await codeOf(lifecycle.transfer('dev-h', 'globex', ACME, 'token:acme'))).toBe('forbidden');
    expect(await snapshot('dev-h')).toEqual(before);
    expect(await cert(s)).toMatchObject({ status: 'valid' });
    expect(await codeOf(lifecycle.device('dev-h', GLOBEX))).toBe('not-found');
  });
});

describe('two-sided transfer: release, claim, cancel-release', () => {
  const BRAVO: Scope = { kind: 'owner', owner: 'bravo' };

  it('release revokes at once (affiliationChanged), drops every credential and leaves the device with its owner, transferring', async () => {
    await addDevice('dev-x', 'acme', 'old-secret');
    const a = await issue('dev-x');
    const r = await lifecycle.release('dev-x', 'bravo', ACME, 'token:acme');
    expect(r.device).toMatchObject({ id: 'dev-x', owner: 'acme', state: 'transferring', pendingOwner: 'bravo' });
    expect(r.changed).toEqual([expect.objectContaining({ serial: a, status: 'revoked', reason: 'affiliationChanged' })]);
    expect(changes).toEqual([r.changed]);
    expect(await cert(a)).toMatchObject({ status: 'revoked', revocationReason: 'affiliationChanged' });
    expect(await store.activeSecrets('dev-x', NOW)).toEqual([]);
    expect(await store.getDevice('dev-x')).toMatchObject({ owner: 'acme', state: 'transferring', pendingOwner: 'bravo' });
    const last = (await store.listAudit({ subject: 'dev-x', limit: 100 })).items.pop()!;
    expect(last).toMatchObject({ type: 'device.released', actor: 'token:acme', data: { from: 'acme', to: 'bravo', certificates: [a] } });
  });

  it('the old and the new owner see a transferring device, nobody else; the new owner may only claim it', async () => {
    await addDevice('dev-x');
    await lifecycle.release('dev-x', 'bravo', ACME, 'x');
    expect((await lifecycle.device('dev-x', ACME)).state).toBe('transferring');
    expect((await lifecycle.device('dev-x', BRAVO)).pendingOwner).toBe('bravo');
    expect(await codeOf(lifecycle.device('dev-x', GLOBEX))).toBe('not-found');
    const before = await snapshot('dev-x');
    for (const [what, p] of [
      ['suspend', lifecycle.suspend('dev-x', BRAVO, 'x')],
      ['retire', lifecycle.retire('dev-x', BRAVO, 'x')],
      ['release again', lifecycle.release('dev-x', 'globex', BRAVO, 'x')],
      ['cancel', lifecycle.cancelRelease('dev-x', BRAVO, 'x')],
      ['transfer', lifecycle.transfer('dev-x', 'bravo', BRAVO, 'x')],
    ] as [string, Promise<unknown>][])
      expect([what, await codeOf(p)]).toEqual([what, 'forbidden']);
    for (const [what, p] of [
      ['claim by another owner', lifecycle.claim('dev-x', GLOBEX, 'x')],
      ['cancel by another owner', lifecycle.cancelRelease('dev-x', GLOBEX, 'x')],
    ] as [string, Promise<unknown>][])
      expect([what, await codeOf(p)]).toEqual([what, 'not-found']);
    expect(await codeOf(lifecycle.claim('dev-x', ACME, 'x'))).toBe('forbidden'); // the releasing side cannot claim for the other
    expect(await codeOf(lifecycle.suspend('dev-x', ACME, 'x'))).toBe('conflict');
    expect(await codeOf(lifecycle.release('dev-x', 'globex', ACME, 'x'))).toBe('conflict');
    expect(await snapshot('dev-x')).toEqual(before);
  });

  it('claim by the new owner makes it the owner and issues the only credential: a one-time secret with the given lifetime', async () => {
    await addDevice('dev-x');
    await issue('dev-x');
    await lifecycle.release('dev-x', 'bravo', ACME, 'x');
    changes = [];
    const c = await lifecycle.claim('dev-x', BRAVO, 'token:bravo', 3600);
    expect(c.device).toMatchObject({ owner: 'bravo', state: 'registered', pendingOwner: null });
    expect(c.changed).toEqual([]);
    expect(c.expiresAt).toEqual(new Date(NOW.getTime() + 3600_000));
    const secrets = await store.activeSecrets('dev-x', NOW);
    expect(secrets).toHaveLength(1);
    expect(await verifySecret(c.secret, secrets[0].hash, serverSecretKey(cfg))).toBe(true);
    expect(await codeOf(lifecycle.device('dev-x', ACME))).toBe('not-found');
    expect((await lifecycle.device('dev-x', BRAVO)).owner).toBe('bravo');
    const last = (await store.listAudit({ subject: 'dev-x', limit: 100 })).items.pop()!;
    expect(last).toMatchObject({ type: 'device.claimed', actor: 'token:bravo', data: { from: 'acme', to: 'bravo' } });
    expect(await codeOf(lifecycle.claim('dev-x', BRAVO, 'x'))).toBe('conflict'); // once
  });

  it("an operator may claim on the new owner's behalf, and cancel a release", async () => {
    await addDevice('dev-op');
    await lifecycle.release('dev-op', 'bravo', OPERATOR, 'op');
    expect((await lifecycle.claim('dev-op', OPERATOR, 'op')).device).toMatchObject({ owner: 'bravo', state: 'registered' });
    await lifecycle.release('dev-op', 'globex', OPERATOR, 'op');
    expect((await lifecycle.cancelRelease('dev-op', OPERATOR, 'op')).device).toMatchObject({ owner: 'bravo', state: 'registered', pendingOwner: null });
  });

  it('cancel-release returns the device to its owner, registered, with a new secret; the certificates stay revoked and the new owner can no longer claim', async () => {
    await addDevice('dev-c', 'acme', 'old-secret');
    const a = await issue('dev-c');
    await lifecycle.release('dev-c', 'bravo', ACME, 'x');
    const r = await lifecycle.cancelRelease('dev-c', ACME, 'token:acme');
    expect(r.device).toMatchObject({ owner: 'acme', state: 'registered', pendingOwner: null });
    expect(await cert(a)).toMatchObject({ status: 'revoked', revocationReason: 'affiliationChanged' });
    const secrets = await store.activeSecrets('dev-c', NOW);
    expect(secrets).toHaveLength(1);
    expect(await verifySecret(r.secret, secrets[0].hash, serverSecretKey(cfg))).toBe(true);
    expect(await verifySecret('old-secret', secrets[0].hash, serverSecretKey(cfg))).toBe(false);
    expect(await codeOf(lifecycle.claim('dev-c', BRAVO, 'x'))).toBe('not-found');
    const last = (await store.listAudit({ subject: 'dev-c', limit: 100 })).items.pop()!;
    expect(last).toMatchObject({ type: 'device.release-cancelled', data: { owner: 'acme', to: 'bravo' } });
  });

  it('a claim decided on a release that was cancelled and re-released meanwhile is a conflict (the store re-checks the pending owner)', async () => {
    await addDevice('dev-race');
    await lifecycle.release('dev-race', 'bravo', ACME, 'x');
    const stale = await store.getDevice('dev-race');
    await lifecycle.cancelRelease('dev-race', ACME, 'x');
    await lifecycle.release('dev-race', 'globex', ACME, 'x');
    const p = store.applyDeviceChange({
      deviceId: 'dev-race',
      expect: { pendingOwner: stale!.pendingOwner },
      fromStates: ['transferring'],
      toState: 'registered',
      newOwner: 'bravo',
      pendingOwner: null,
      audit: { type: 't', actor: 'x', subject: 'dev-race', data: {} },
    });
    expect(await codeOf(p)).toBe('conflict');
    expect(await store.getDevice('dev-race')).toMatchObject({ owner: 'acme', pendingOwner: 'globex', state: 'transferring' });
  });

  it("a transferring device may be retired (by its owner or an operator); the operator's one-step transfer overrides a release", async () => {
    await addDevice('dev-r1');
    await lifecycle.release('dev-r1', 'bravo', ACME, 'x');
    expect((await lifecycle.retire('dev-r1', ACME, 'x')).device).toMatchObject({ state: 'retired', pendingOwner: null });
    expect(await codeOf(lifecycle.device('dev-r1', BRAVO))).toBe('not-found');
    await addDevice('dev-r2');
    await lifecycle.release('dev-r2', 'bravo', ACME, 'x');
    expect((await lifecycle.transfer('dev-r2', 'globex', OPERATOR, 'op')).device).toMatchObject({ owner: 'globex', state: 'registered', pendingOwner: null });
  });
});

describe('retire', () => {
  it('revokes valid and held certificates with cessationOfOperation and deletes every secret', async () => {
    await addDevice('dev-r');
    const a = await issue('dev-r');
    const b = await issue('dev-r');
    await lifecycle.suspend('dev-r', OPERATOR, 'op');
    await lifecycle.resume('dev-r', OPERATOR, 'op');
    await lifecycle.revoke(b, 'certificateHold', OPERATOR, 'op');
    changes = [];
    const r = await lifecycle.retire('dev-r', OPERATOR, 'op');
    expect(r.device.state).toBe('retired');
    expect(r.changed.map((x) => [x.serial, x.reason]).sort()).toEqual(
      [
        [a, 'cessationOfOperation'],
        [b, 'cessationOfOperation'],
      ].sort(),
    );
    expect(changes).toEqual([r.changed]);
    expect(await store.activeSecrets('dev-r', NOW)).toEqual([]);
    expect(await state('dev-r')).toBe('retired');
  });
});

describe('new secret (replaceSecret)', () => {
  it('a registered device gets a new secret with the given lifetime; the old one stops working, pending requests are cancelled, the audit names no secret', async () => {
    await addDevice('dev-s', 'acme', 'lost-secret');
    const csr = crypto.randomBytes(16);
    await store.createRequest(
      { id: 'req-s', deviceId: 'dev-s', label: 'default', operation: 'enroll', csrSha256: crypto.createHash('sha256').update(csr).digest('hex'), csr },
      { type: 'request.created', actor: 'test', subject: 'req-s', data: {} },
    );
    const r = await lifecycle.replaceSecret('dev-s', ACME, 'token:acme', 7200);
    expect(r.device).toMatchObject({ id: 'dev-s', owner: 'acme', state: 'registered' });
    expect(r.changed).toEqual([]);
    expect(r.expiresAt).toEqual(new Date(NOW.getTime() + 7200_000));
    const secrets = await store.activeSecrets('dev-s', NOW);
    expect(secrets).toHaveLength(1);
    expect(await verifySecret(r.secret, secrets[0].hash, serverSecretKey(cfg))).toBe(true);
    expect(await verifySecret('lost-secret', secrets[0].hash, serverSecretKey(cfg))).toBe(false);
    expect((await store.listRequests({ status: 'pending', limit: 10 })).items).toEqual([]);
    const last = (await store.listAudit({ subject: 'dev-s', limit: 100 })).items.pop()!;
    expect(last).toMatchObject({ type: 'device.secret-replaced', actor: 'token:acme', data: { expiresAt: r.expiresAt.toISOString() } });
    expect(JSON.stringify(last)).not.toContain(r.secret);
  });

  it('an active device keeps its state and its valid certificates; the default lifetime is enrollment.secretTtl', async () => {
    await addDevice('dev-sa');
    const a = await issue('dev-sa');
    expect(await state('dev-sa')).toBe('active');
    changes = [];
    const r = await lifecycle.replaceSecret('dev-sa', OPERATOR, 'op');
    expect(r.device.state).toBe('active');
    expect(await cert(a)).toMatchObject({ status: 'valid' });
    expect(r.expiresAt).toEqual(new Date(NOW.getTime() + cfg.enrollment.secretTtl * 1000));
    expect(changes).toEqual([]);
  });

  it.each(['suspended', 'transferring', 'retired'] as const)('a %s device is a conflict and nothing changes', async (s) => {
    await addDevice('dev-sx', 'acme', 'kept-secret');
    await issue('dev-sx');
    if (s === 'suspended') await lifecycle.suspend('dev-sx', OPERATOR, 'op');
    if (s === 'transferring') await lifecycle.release('dev-sx', 'bravo', OPERATOR, 'op');
    if (s === 'retired') await lifecycle.retire('dev-sx', OPERATOR, 'op');
    const before = await snapshot('dev-sx');
    expect(await codeOf(lifecycle.replaceSecret('dev-sx', ACME, 'x'))).toBe('conflict');
    expect(await codeOf(lifecycle.replaceSecret('dev-sx', OPERATOR, 'x'))).toBe('conflict');
    expect(await snapshot('dev-sx')).toEqual(before);
  });

  it("another owner's device is not-found, the new owner of a transferring device forbidden, and nothing changes", async () => {
    await addDevice('dev-so', 'acme', 'kept-secret');
    const before = await snapshot('dev-so');
    expect(await codeOf(lifecycle.replaceSecret('dev-so', GLOBEX, 'x'))).toBe('not-found');
    expect(await snapshot('dev-so')).toEqual(before);
    await lifecycle.release('dev-so', 'bravo', OPERATOR, 'op');
    const released = await snapshot('dev-so');
    expect(await codeOf(lifecycle.replaceSecret('dev-so', { kind: 'owner', owner: 'bravo' }, 'x'))).toBe('forbidden');
    expect(await snapshot('dev-so')).toEqual(released);
  });
});

describe('revoke', () => {
  it('revokes once; a second revocation changes nothing and publishes nothing', async () => {
    await addDevice('dev-v');
    const s = await issue('dev-v');
    const first = await lifecycle.revoke(s, 'superseded', OPERATOR, 'op');
    expect(first).toMatchObject({ changed: true, cert: { status: 'revoked', revocationReason: 'superseded', revokedAt: NOW } });
    expect(changes).toEqual([[{ serial: s, issuer: 'device-ca-issuing', shard: first.cert.shard, status: 'revoked', reason: 'superseded' }]]);
    const second = await lifecycle.revoke(s, 'keyCompromise', OPERATOR, 'op');
    expect(second).toMatchObject({ changed: false, cert: { revocationReason: 'superseded' } });
    expect(changes).toHaveLength(1);
  });

  it('a held certificate may be revoked for good', async () => {
    await addDevice('dev-hold');
    const s = await issue('dev-hold');
    await lifecycle.suspend('dev-hold', OPERATOR, 'op');
    const r = await lifecycle.revoke(s, 'keyCompromise', OPERATOR, 'op');
    expect(r).toMatchObject({ changed: true, cert: { revocationReason: 'keyCompromise' } });
    // and resume does not bring it back
    await lifecycle.resume('dev-hold', OPERATOR, 'op');
    expect(await cert(s)).toMatchObject({ status: 'revoked', revocationReason: 'keyCompromise' });
  });

  it('accepts the serial as openssl and operators write it', async () => {
    await addDevice('dev-s');
    const s = await issue('dev-s');
    const colons = s.toUpperCase().match(/../g)!.join(':');
    expect((await lifecycle.certificate(colons, OPERATOR)).serial).toBe(s);
    expect((await lifecycle.certificate(`0x00${s.toUpperCase()}`, OPERATOR)).serial).toBe(s);
    expect(normalizeSerial(' 00:0A:bc ')).toBe('abc');
    expect(normalizeSerial('xyz')).toBeNull();
    expect(normalizeSerial('1'.repeat(41))).toBeNull();
  });

  it.each([
    ['an unknown reason', 'removeFromCRL', 'bad-request'],
    ['a made-up reason', 'stolen', 'bad-request'],
  ])('%s is bad-request', async (_w, reason, code) => {
    await addDevice('dev-b');
    const s = await issue('dev-b');
    expect(await codeOf(lifecycle.revoke(s, reason, OPERATOR, 'op'))).toBe(code);
    expect(await cert(s)).toMatchObject({ status: 'valid' });
  });

  it('an unknown or malformed serial is not-found', async () => {
    expect(await codeOf(lifecycle.revoke('deadbeef', 'keyCompromise', OPERATOR, 'op'))).toBe('not-found');
    expect(await codeOf(lifecycle.revoke('not hex', 'keyCompromise', OPERATOR, 'op'))).toBe('not-found');
  });
});

describe('owner scope', () => {
  it("another owner's device and certificates are not-found and stay untouched", async () => {
    await addDevice('acme-1', 'acme');
    const s = await issue('acme-1');
    const before = await snapshot('acme-1');
    const attempts: [string, Promise<unknown>][] = [
      ['device', lifecycle.device('acme-1', GLOBEX)],
      ['suspend', lifecycle.suspend('acme-1', GLOBEX, 'x')],
      ['resume', lifecycle.resume('acme-1', GLOBEX, 'x')],
      ['retire', lifecycle.retire('acme-1', GLOBEX, 'x')],
      ['transfer', lifecycle.transfer('acme-1', 'globex', GLOBEX, 'x')],
      ['certificate', lifecycle.certificate(s, GLOBEX)],
      ['revoke', lifecycle.revoke(s, 'keyCompromise', GLOBEX, 'x')],
    ];
    for (const [what, p] of attempts) expect([what, await codeOf(p)]).toEqual([what, 'not-found']);
    expect(await snapshot('acme-1')).toEqual(before);
    expect(changes).toEqual([]);
    // its own owner and the operator see it
    expect((await lifecycle.device('acme-1', ACME)).id).toBe('acme-1');
    expect((await lifecycle.certificate(s, ACME)).serial).toBe(s);
    expect((await lifecycle.certificate(s, OPERATOR)).serial).toBe(s);
  });

  it('certificates without a device (the TLS server, the OCSP responder) and devices without an owner are operator-only', async () => {
    const tls = await issue(null);
    await addDevice('orphan', null);
    expect(await codeOf(lifecycle.certificate(tls, ACME))).toBe('not-found');
    expect(await codeOf(lifecycle.device('orphan', ACME))).toBe('not-found');
    expect((await lifecycle.certificate(tls, OPERATOR)).serial).toBe(tls);
    expect((await lifecycle.device('orphan', OPERATOR)).owner).toBeNull();
  });

  it('an unknown or invalid device id is not-found', async () => {
    expect(await codeOf(lifecycle.device('nope', OPERATOR))).toBe('not-found');
    expect(await codeOf(lifecycle.suspend('a:b', OPERATOR, 'op'))).toBe('not-found');
    expect(await codeOf(lifecycle.retire('', OPERATOR, 'op'))).toBe('not-found');
  });
});

it('every change leaves an intact audit chain', async () => {
  await addDevice('dev-a');
  const s = await issue('dev-a');
  await lifecycle.suspend('dev-a', OPERATOR, 'op');
  await lifecycle.resume('dev-a', OPERATOR, 'op');
  await lifecycle.revoke(s, 'superseded', OPERATOR, 'op');
  await lifecycle.transfer('dev-a', 'globex', OPERATOR, 'op');
  await lifecycle.retire('dev-a', OPERATOR, 'op');
  const v = await verifyAuditChain(store);
  expect(v).toMatchObject({ ok: true });
  const types = (await store.listAudit({ subject: 'dev-a', limit: 100 })).items.map((r) => r.type);
  expect(types).toEqual(['device.registered', 'certificate.issued', 'device.suspended', 'device.resumed', 'device.transferred', 'device.retired']);
  expect((await store.listAudit({ subject: s, limit: 100 })).items.map((r) => r.type)).toEqual(['certificate.revoked']);
});

describe('TPM attestation keys through the lifecycle (issue 9)', () => {
  const sha = (s: string): string => crypto.createHash('sha256').update(s).digest('hex');
  async function bindAk(deviceId: string, ak: string, ek: string): Promise<void> {
    const audit = { type: 'tpm.ak.challenge', actor: 'test', subject: deviceId, data: {} };
    await store.saveAkChallenge(
      { akName: ak, deviceId, akPublic: Buffer.alloc(4), ekCertSha256: sha(ek), ekManufacturer: null, ekModel: null, challengeSha256: sha('c'), challengeExpiresAt: new Date(NOW.getTime() + DAY) },
      NOW,
      audit,
    );
    expect(await store.activateAk(ak, deviceId, sha('c'), NOW, audit)).toMatchObject({ status: 'active' });
  }
  const statuses = async (id: string): Promise<string[]> => (await store.aksOfDevice(id)).map((a) => a.status);

  it('release and transfer revoke the AKs (a fresh registration of the same TPM is allowed); retire also blocks the EK', async () => {
    await addDevice('dev-r');
    await bindAk('dev-r', '000b01', 'ek-r');
    await lifecycle.release('dev-r', 'globex', ACME, 'op');
    expect(await statuses('dev-r')).toEqual(['revoked']);
    await addDevice('dev-t');
    await bindAk('dev-t', '000b02', 'ek-t');
    await lifecycle.transfer('dev-t', 'globex', OPERATOR, 'op');
    expect(await statuses('dev-t')).toEqual(['revoked']);
    await bindAk('dev-t', '000b03', 'ek-t'); // same TPM, new owner: registers again
    expect(await statuses('dev-t')).toContain('active');
    await lifecycle.retire('dev-t', OPERATOR, 'op');
    expect(await statuses('dev-t')).toEqual(['revoked', 'revoked']);
    // the retired device's EK may never register again, for any device
    await addDevice('dev-new');
    await expect(bindAk('dev-new', '000b04', 'ek-t')).rejects.toBeInstanceOf(DeviceCaError);
    expect((await store.listAudit({ subject: 'dev-t', limit: 100 })).items.map((a) => [a.type, a.data])).toContainEqual(['tpm.ak.revoked', { blockEks: true }]);
  });

  it('a crash between the AK revocation and the device change fails closed: the retry retires, the EK stays blocked', async () => {
    await addDevice('dev-c');
    await bindAk('dev-c', '000b05', 'ek-c');
    // the process dies as the device change is written: the change never commits
    const apply = jest.spyOn(store, 'applyDeviceChange').mockRejectedValueOnce(new Error('killed'));
    await expect(lifecycle.retire('dev-c', OPERATOR, 'op')).rejects.toThrow('killed');
    apply.mockRestore();
    expect(await statuses('dev-c')).toEqual(['revoked']);
    expect((await store.getDevice('dev-c'))?.state).not.toBe('retired');
    // the operator retries (no reply reached it) and the retirement completes
    await lifecycle.retire('dev-c', OPERATOR, 'op');
    expect((await store.getDevice('dev-c'))?.state).toBe('retired');
    await addDevice('dev-c2');
    await expect(bindAk('dev-c2', '000b06', 'ek-c')).rejects.toBeInstanceOf(DeviceCaError);
  });

  it('the device view shows per AK the AK certificate serial and the last accepted TPM clock, as JSON can carry them', async () => {
    await addDevice('dev-f');
    await bindAk('dev-f', '000b09', 'ek-f');
    await bindAk('dev-f', '000b0a', 'ek-f');
    expect(await store.claimAkCertificate('000b0a', 'dev-f', new Date(NOW.getTime() + DAY), NOW)).toMatchObject({ state: 'claimed' });
    await store.settleAkCertificate('000b0a', '7f3a0c11');
    // a UINT64 clock past 2^53: kept exactly, as decimal text
    const clock = { clock: 2n ** 60n + 7n, resetCount: 3, restartCount: 11 };
    expect(await store.setAkClock('000b0a', null, clock)).toBe(true);
    const facts = await lifecycle.attestation('dev-f', ACME);
    const byName = Object.fromEntries(facts.aks.map((a) => [a.akName, a]));
    expect(byName['000b0a']).toMatchObject({ akCertSerial: '7f3a0c11', lastClock: { resetCount: 3, restartCount: 11, clock: '1152921504606846983' } });
    expect(byName['000b09']).toMatchObject({ akCertSerial: null, lastClock: null });
    // what the admin API and `devices show --json` print
    expect(JSON.parse(JSON.stringify(facts.aks)).find((a: { akName: string }) => a.akName === '000b0a').lastClock.clock).toBe('1152921504606846983');
  });

  it('a device change refused as a conflict leaves the AKs alone', async () => {
    await addDevice('dev-k');
    await bindAk('dev-k', '000b07', 'ek-k');
    await lifecycle.release('dev-k', 'globex', ACME, 'op');
    await bindAk('dev-k', '000b08', 'ek-k');
    // a transferring device cannot be released again: nothing changes, its new AK stays active
    await expect(lifecycle.release('dev-k', 'initech', ACME, 'op')).rejects.toMatchObject({ code: 'conflict' });
    expect(await statuses('dev-k')).toContain('active');
  });
});

describe("deviceAudit: an owner sees its own ownership period of a device's history, the operator all of it", () => {
  const types = (p: { items: { type: string }[] }) => p.items.map((r) => r.type);

  it('after a transfer the new owner does not see what the previous owner did; the operator does', async () => {
    await addDevice('dev-h');
    await issue('dev-h');
    await lifecycle.suspend('dev-h', ACME, 'acme-op');
    await lifecycle.transfer('dev-h', 'globex', OPERATOR, 'op');
    await lifecycle.replaceSecret('dev-h', GLOBEX, 'globex-op');
    const all = await lifecycle.deviceAudit('dev-h', OPERATOR, {});
    expect(types(all)).toEqual(['device.registered', 'certificate.issued', 'device.suspended', 'device.transferred', 'device.secret-replaced']);
    const globex = await lifecycle.deviceAudit('dev-h', GLOBEX, {});
    expect(types(globex)).toEqual(['device.transferred', 'device.secret-replaced']);
    expect(globex.items.map((r) => r.actor)).not.toContain('acme-op');
    // a cursor from before the period does not reach back into it
    expect(types(await lifecycle.deviceAudit('dev-h', GLOBEX, { after: '0' }))).toEqual(['device.transferred', 'device.secret-replaced']);
    // the previous owner no longer sees the device at all
    await expect(lifecycle.deviceAudit('dev-h', ACME, {})).rejects.toMatchObject({ code: 'not-found' });
  });

  it('release and claim: the period starts at the claim; an owner that registered the device sees it all; paging stays in the period', async () => {
    await addDevice('dev-r');
    await lifecycle.release('dev-r', 'globex', ACME, 'acme-op');
    expect(types(await lifecycle.deviceAudit('dev-r', ACME, {}))).toEqual(['device.registered', 'device.released']);
    await lifecycle.claim('dev-r', GLOBEX, 'globex-op');
    await lifecycle.replaceSecret('dev-r', GLOBEX, 'globex-op');
    const first = await lifecycle.deviceAudit('dev-r', GLOBEX, { limit: 1 });
    expect(types(first)).toEqual(['device.claimed']);
    const second = await lifecycle.deviceAudit('dev-r', GLOBEX, { limit: 1, after: first.next! });
    expect(types(second)).toEqual(['device.secret-replaced']);
    // and back: acme's second period starts at its own claim, not at its first registration
    await lifecycle.release('dev-r', 'acme', GLOBEX, 'globex-op');
    await lifecycle.claim('dev-r', ACME, 'acme-op');
    expect(types(await lifecycle.deviceAudit('dev-r', ACME, {}))).toEqual(['device.claimed']);
    await expect(lifecycle.deviceAudit('dev-r', ACME, { after: 'x' })).rejects.toMatchObject({ code: 'bad-request' });
  });
});

it('listDevices by label: an owner scope finds only its own devices with that label, whatever owner it asks for', async () => {
  for (const [id, owner] of [
    ['gw-a', 'acme'],
    ['gw-g', 'globex'],
  ] as const)
    await store.createDevice(
      { id, owner, label: 'gateway', state: 'registered' },
      { hash: 'h', expiresAt: new Date(Date.now() + DAY) },
      { type: 'device.registered', actor: 'test', subject: id, data: {} },
    );
  expect((await lifecycle.listDevices({ label: 'gateway' }, OPERATOR)).items.map((d) => d.id)).toEqual(['gw-a', 'gw-g']);
  expect((await lifecycle.listDevices({ label: 'gateway', owner: 'acme' }, GLOBEX)).items.map((d) => d.id)).toEqual(['gw-g']);
});
