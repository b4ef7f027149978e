import * as crypto from 'node:crypto';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { generateKeyPair } from '../../../src/keys/software-key-backend';
import { RaHarness, certProof, makeRaHarness, secretProof } from './ra-harness';

/**
 * RegistrationAuthority decisions through the one entry point enroll({ profile, operation, csr, proofs }),
 * over the real store and CA (ra-harness): what a device gets (certificate bytes, key type, validity), what
 * it is refused with (error code), and what the store and audit log say afterwards.
 */

const PROFILES = {
  default: {},
  strict: { keyAlgorithms: ['ecdsa-p256'] },
  pop: { proofOfPossession: true },
  manual: { manualApproval: true },
  sans: { allowCsrSans: true },
  sensors: { validity: '30d', keyAlgorithms: ['ecdsa-p384', 'ecdsa-p256'] },
  nokeygen: { serverKeyGen: false },
};

let h: RaHarness;
let n = 0;
const nextId = (): string => `dev-${++n}`;
beforeAll(async () => {
  h = await makeRaHarness({ overrides: { profiles: PROFILES, est: { labels: { default: {}, field: { profile: 'sensors' } } } } });
});
afterAll(() => h?.close());

const x509 = (der: Buffer) => new crypto.X509Certificate(der);
const spkiOf = (der: Buffer): Buffer => x509(der).publicKey.export({ type: 'spki', format: 'der' });

describe('names a client sends are looked up as own entries, never on Object.prototype', () => {
  const PROTO_NAMES = ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf'];

  it.each(PROTO_NAMES)('profile "%s": not-found for enroll and csrAttrs', async (name) => {
    const id = nextId();
    const secret = await h.register(id);
    expect(await h.refused(name, 'enroll', h.csr(id).der, secretProof(id, secret))).toBe('not-found');
    expect(() => h.ra.csrAttrs(name)).toThrow(expect.objectContaining({ code: 'not-found' }));
    // the secret was not spent by the refused request
    await h.issued('default', 'enroll', h.csr(id).der, secretProof(id, secret));
  });

  it.each(PROTO_NAMES)('EST label "%s": not-found (the EST adapter answers 404)', (name) => {
    expect(() => h.ra.profileForLabel(name)).toThrow(expect.objectContaining({ code: 'not-found' }));
  });

  it.each(PROTO_NAMES)('registering a device for label "%s" (admin API body {"label": ...}): not-found, nothing stored', async (name) => {
    const id = nextId();
    await expect(h.ra.registerDevice({ id, label: name, actor: 'test' })).rejects.toMatchObject({ code: 'not-found' });
    expect(await h.store.getDevice(id)).toBeNull();
  });
});

describe('profiles', () => {
  it("an EST label maps onto its profile; the CA signs with that profile's validity", async () => {
    expect(h.ra.profileForLabel('field')).toBe('sensors');
    expect(h.ra.profileForLabel('default')).toBe('default');
    const id = nextId();
    const secret = await h.register(id);
    const out = await h.issued(h.ra.profileForLabel('field'), 'enroll', h.csr(id, { alg: 'ecdsa-p384' }).der, secretProof(id, secret));
    const c = x509(out.certificate);
    // notBefore is backdated by ca.backdate (5 min)
    expect(new Date(c.validTo).getTime() - new Date(c.validFrom).getTime()).toBe(30 * 86400_000 + 300_000);
    expect((await h.store.getCertificate(out.serial))!.profile).toBe('sensors');
  });

  it('a device registered for a profile (by profile or label name) enrolls under that profile only', async () => {
    const id = nextId();
    const secret = (await h.ra.registerDevice({ id, owner: 'acme', label: 'field', actor: 'test' })).secret;
    expect((await h.store.getDevice(id))!.label).toBe('sensors');
    expect(await h.refused('default', 'enroll', h.csr(id).der, secretProof(id, secret))).toBe('forbidden');
    await h.issued('sensors', 'enroll', h.csr(id).der, secretProof(id, secret));
  });
});

describe('authorize', () => {
  it('a suspended device is forbidden; a retired one is forbidden whatever the secret', async () => {
    const a = nextId();
    const sa = await h.register(a);
    await h.store.applyDeviceChange({ deviceId: a, fromStates: ['registered'], toState: 'suspended', audit: { type: 't', actor: 't', subject: a, data: {} } });
    expect(await h.refused('default', 'enroll', h.csr(a).der, secretProof(a, sa))).toBe('forbidden');
    const b = nextId();
    await h.register(b);
    await h.store.applyDeviceChange({ deviceId: b, fromStates: ['registered'], toState: 'retired', deleteSecrets: true, audit: { type: 't', actor: 't', subject: b, data: {} } });
    expect(await h.refused('default', 'enroll', h.csr(b).der, secretProof(b, 'anything'))).toBe('forbidden');
  });

  it('identity: a CSR naming another device is forbidden; SANs only on a profile that allows them, copied into the certificate', async () => {
    const id = nextId();
    const secret = await h.register(id);
    expect(await h.refused('default', 'enroll', h.csr('dev-someone-else').der, secretProof(id, secret))).toBe('forbidden');
    const sans = [{ type: 'dns' as const, value: `${id}.example.net` }];
    expect(await h.refused('default', 'enroll', h.csr(id, { sans }).der, secretProof(id, secret))).toBe('forbidden');
    const out = await h.issued('sans', 'enroll', h.csr(id, { sans }).der, secretProof(id, secret));
    expect(x509(out.certificate).subjectAltName).toBe(`DNS:${id}.example.net`);
  });

  it('key policy: a key type the profile does not list is bad-key', async () => {
    const id = nextId();
    const secret = await h.register(id);
    expect(await h.refused('strict', 'enroll', h.csr(id, { alg: 'ecdsa-p384' }).der, secretProof(id, secret))).toBe('bad-key');
    await h.issued('strict', 'enroll', h.csr(id, { alg: 'ecdsa-p256' }).der, secretProof(id, secret));
  });

  it('proof of possession: without the channel binding forbidden; with it in challengePassword issued', async () => {
    const id = nextId();
    const secret = await h.register(id);
    const binding = crypto.randomBytes(12);
    expect(await h.refused('pop', 'enroll', h.csr(id).der, { ...secretProof(id, secret), channelBinding: { tlsUnique: binding } })).toBe('forbidden');
    expect(
      await h.refused('pop', 'enroll', h.csr(id, { challengePassword: crypto.randomBytes(12).toString('base64') }).der, { ...secretProof(id, secret), channelBinding: { tlsUnique: binding } }),
    ).toBe('forbidden');
    await h.issued('pop', 'enroll', h.csr(id, { challengePassword: binding.toString('base64') }).der, { ...secretProof(id, secret), channelBinding: { tlsUnique: binding } });
  });

  it('no proof at all is unauthenticated; a secret on renew is unauthenticated (renew takes the current certificate)', async () => {
    const id = nextId();
    const secret = await h.register(id);
    expect(await h.refused('default', 'enroll', h.csr(id).der, {})).toBe('unauthenticated');
    expect(await h.refused('default', 'renew', h.csr(id).der, secretProof(id, secret))).toBe('unauthenticated');
  });
});

describe('approve', () => {
  it('manual approval: pending until approved, then the same CSR is issued and the request settles as issued', async () => {
    const id = nextId();
    const secret = await h.register(id);
    const { der } = h.csr(id);
    const first = await h.enroll('manual', 'enroll', der, secretProof(id, secret));
    expect(first).toMatchObject({ status: 'pending', retryAfterSeconds: 60 });
    const requestId = (first as { requestId: string }).requestId;
    expect(await h.enroll('manual', 'enroll', der, secretProof(id, secret))).toMatchObject({ status: 'pending', requestId });
    expect((await h.store.listRequests({})).items.find((r) => r.id === requestId)).toMatchObject({ label: 'manual', operation: 'enroll', status: 'pending' });
    await h.ra.decideRequest(requestId, 'approved', 'test');
    const out = await h.issued('manual', 'enroll', der, secretProof(id, secret));
    expect((await h.store.listRequests({})).items.find((r) => r.id === requestId)).toMatchObject({ status: 'issued', certSerial: out.serial });
  });

  it('a rejected request is forbidden on retry', async () => {
    const id = nextId();
    const secret = await h.register(id);
    const { der } = h.csr(id);
    const first = (await h.enroll('manual', 'enroll', der, secretProof(id, secret))) as { requestId: string };
    await h.ra.decideRequest(first.requestId, 'rejected', 'test');
    expect(await h.refused('manual', 'enroll', der, secretProof(id, secret))).toBe('forbidden');
  });
});

describe('issue', () => {
  it('renew with the current certificate: same key renews, audited with the previous serial', async () => {
    const id = nextId();
    const secret = await h.register(id);
    const { der, key } = h.csr(id);
    const first = await h.issued('default', 'enroll', der, secretProof(id, secret));
    // RFC 7030 §4.2.2: the renewal CSR repeats the certificate's subject (O=acme, CN=<id>)
    const again = h.csr(id, { key, organization: 'acme' }).der;
    const renewed = await h.issued('default', 'renew', again, certProof(first.certificate));
    expect(renewed.serial).not.toBe(first.serial);
    expect(spkiOf(renewed.certificate).equals(spkiOf(first.certificate))).toBe(true);
    const issued = (await h.audit('certificate.issued')).find((a) => a.data.serial === renewed.serial)!;
    expect(issued.data).toMatchObject({ profile: 'default', operation: 'renew', renewal: 'renew', previous: first.serial });
  });

  it('an enrolled device presenting its certificate on enroll is told to renew: forbidden', async () => {
    const id = nextId();
    const secret = await h.register(id);
    const first = await h.issued('default', 'enroll', h.csr(id).der, secretProof(id, secret));
    expect(await h.refused('default', 'enroll', h.csr(id).der, certProof(first.certificate))).toBe('forbidden');
  });

  it('audit: intent before signing, result after, both naming profile and operation', async () => {
    const id = nextId();
    const secret = await h.register(id);
    const out = await h.issued('default', 'enroll', h.csr(id).der, secretProof(id, secret));
    const mine = (await h.audit()).filter((a) => a.subject === id);
    expect(mine.map((a) => a.type)).toEqual(['device.registered', 'certificate.issue.intent', 'certificate.issued']);
    expect(mine[1].data).toEqual({ profile: 'default', operation: 'enroll' });
    expect(mine[2].data).toMatchObject({ serial: out.serial, profile: 'default', operation: 'enroll' });
  });
});

describe("server-keygen key type: the CSR's when the profile allows it, else the profile's first", () => {
  it.each([
    ['sensors', 'ecdsa-p256', 'prime256v1'],
    ['sensors', 'ecdsa-p384', 'secp384r1'],
    ['sensors', 'rsa-2048', 'secp384r1'],
    ['strict', 'ecdsa-p384', 'prime256v1'],
  ] as const)('profile %s, CSR key %s: a %s key', async (profile, alg, curve) => {
    const id = nextId();
    const secret = await h.register(id);
    const out = await h.issued(profile, 'server-keygen', h.csr(id, { alg }).der, secretProof(id, secret));
    const priv = crypto.createPrivateKey({ key: out.privateKeyPkcs8!, format: 'der', type: 'pkcs8' });
    expect(priv.asymmetricKeyDetails?.namedCurve).toBe(curve);
    // the certificate certifies the generated key
    expect(spkiOf(out.certificate).equals(crypto.createPublicKey(priv).export({ type: 'spki', format: 'der' }))).toBe(true);
  });

  it('a profile without serverKeyGen: not-found', async () => {
    const id = nextId();
    const secret = await h.register(id);
    expect(await h.refused('nokeygen', 'server-keygen', h.csr(id).der, secretProof(id, secret))).toBe('not-found');
  });
});

describe('idempotent enrollment: a device that lost the reply gets the same certificate again', () => {
  // each test moves the clock: a harness of its own
  let hi: RaHarness;
  beforeEach(async () => {
    hi = await makeRaHarness({ overrides: { profiles: PROFILES } });
  });
  afterEach(() => hi?.close());
  it('same device, same secret, a new CSR for the same key within retryWindow: same serial, same bytes, audited certificate.repeated', async () => {
    const id = nextId();
    const secret = await hi.register(id);
    const key = generateKeyPair('ecdsa-p256').privateKey;
    const first = await hi.issued('default', 'enroll', hi.csr(id, { key }).der, secretProof(id, secret));
    hi.advance(9 * 60);
    const again = await hi.issued('default', 'enroll', hi.csr(id, { key }).der, secretProof(id, secret));
    expect(again.serial).toBe(first.serial);
    expect(again.certificate.equals(first.certificate)).toBe(true);
    expect((await hi.store.listCertificates({ deviceId: id })).items).toHaveLength(1);
    const repeated = (await hi.audit('certificate.repeated')).filter((a) => a.subject === id);
    expect(repeated).toHaveLength(1);
    expect(repeated[0].data).toMatchObject({ serial: first.serial, profile: 'default', operation: 'enroll' });
  });

  it('the same request sent twice at once (a client retrying before the reply): both answered with the one certificate', async () => {
    const id = nextId();
    const secret = await hi.register(id);
    const der = hi.csr(id).der;
    const [a, b] = await Promise.all([hi.issued('default', 'enroll', der, secretProof(id, secret)), hi.issued('default', 'enroll', der, secretProof(id, secret))]);
    expect(b.serial).toBe(a.serial);
    expect(b.certificate.equals(a.certificate)).toBe(true);
    expect((await hi.store.listCertificates({ deviceId: id })).items).toHaveLength(1);
    expect((await hi.audit('certificate.repeated')).filter((x) => x.subject === id)).toHaveLength(1);
  });

  it('the same secret with two different keys at once: one certificate, the other unauthenticated', async () => {
    const id = nextId();
    const secret = await hi.register(id);
    const results = await Promise.allSettled([hi.issued('default', 'enroll', hi.csr(id).der, secretProof(id, secret)), hi.issued('default', 'enroll', hi.csr(id).der, secretProof(id, secret))]);
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    expect(((results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason as DeviceCaError).code).toBe('unauthenticated');
    expect((await hi.store.listCertificates({ deviceId: id })).items).toHaveLength(1);
  });

  it('another key, another profile, server-keygen or after the window: unauthenticated, and counted as a failure', async () => {
    const id = nextId();
    const secret = await hi.register(id);
    const key = generateKeyPair('ecdsa-p256').privateKey;
    await hi.issued('default', 'enroll', hi.csr(id, { key }).der, secretProof(id, secret));
    expect(await hi.refused('default', 'enroll', hi.csr(id).der, secretProof(id, secret))).toBe('unauthenticated');
    expect(await hi.refused('sensors', 'enroll', hi.csr(id, { key }).der, secretProof(id, secret))).toBe('unauthenticated');
    expect(await hi.refused('default', 'server-keygen', hi.csr(id, { key }).der, secretProof(id, secret))).toBe('unauthenticated');
    expect((await hi.store.countAuthFailures(`basic:${id}`, hi.now(), hi.cfg.enrollment.authFailureWindow)).count).toBe(3);
    hi.advance(11 * 60);
    expect(await hi.refused('default', 'enroll', hi.csr(id, { key }).der, secretProof(id, secret))).toBe('unauthenticated');
  });

  it("another device presenting the first device's spent secret: unauthenticated", async () => {
    const a = nextId();
    const b = nextId();
    const secret = await hi.register(a);
    await hi.register(b);
    const key = generateKeyPair('ecdsa-p256').privateKey;
    await hi.issued('default', 'enroll', hi.csr(a, { key }).der, secretProof(a, secret));
    expect(await hi.refused('default', 'enroll', hi.csr(b, { key }).der, secretProof(b, secret))).toBe('unauthenticated');
  });

  it('a device suspended since, or whose certificate was revoked: no repeat', async () => {
    const a = nextId();
    const sa = await hi.register(a);
    const ka = generateKeyPair('ecdsa-p256').privateKey;
    const first = await hi.issued('default', 'enroll', hi.csr(a, { key: ka }).der, secretProof(a, sa));
    await hi.store.revokeCertificate(first.serial, 'keyCompromise', hi.now(), null, { type: 't', actor: 't', subject: first.serial, data: {} });
    expect(await hi.refused('default', 'enroll', hi.csr(a, { key: ka }).der, secretProof(a, sa))).toBe('unauthenticated');
    const b = nextId();
    const sb = await hi.register(b);
    const kb = generateKeyPair('ecdsa-p256').privateKey;
    await hi.issued('default', 'enroll', hi.csr(b, { key: kb }).der, secretProof(b, sb));
    await hi.store.applyDeviceChange({ deviceId: b, fromStates: ['active'], toState: 'suspended', audit: { type: 't', actor: 't', subject: b, data: {} } });
    expect(await hi.refused('default', 'enroll', hi.csr(b, { key: kb }).der, secretProof(b, sb))).toBe('forbidden');
  });

  it('enrollment.retryWindow 0 turns repeats off', async () => {
    const h0 = await makeRaHarness({ overrides: { 'enrollment.retryWindow': 0 } });
    try {
      const secret = await h0.register('dev-0');
      const key = generateKeyPair('ecdsa-p256').privateKey;
      await h0.issued('default', 'enroll', h0.csr('dev-0', { key }).der, secretProof('dev-0', secret));
      expect(await h0.refused('default', 'enroll', h0.csr('dev-0', { key }).der, secretProof('dev-0', secret))).toBe('unauthenticated');
    } finally {
      await h0.close();
    }
  });
});
