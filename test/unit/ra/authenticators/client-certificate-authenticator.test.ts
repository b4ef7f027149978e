import * as crypto from 'node:crypto';
import { TPM_AK_PROFILE } from '../../../../src/ca/certificate-authority';
import { signAndRecord } from '../../../../src/ca/issuance';
import { generateKeyPair } from '../../../../src/keys/software-key-backend';
import { serverSecretKey } from '../../../../src/ra/enrollment-secret';
import { ClientCertificateAuthenticator } from '../../../../src/ra/authenticators/client-certificate-authenticator';
import { DeviceCaError } from '../../../../src/errors/device-ca-error';
import { TestCa, makeTestCa } from '../../../fixtures/test-ca';
import { RaHarness, certProof, makeRaHarness, secretProof } from '../ra-harness';

/**
 * ClientCertificateAuthenticator: a certificate this CA recorded is a current device certificate; one
 * chaining to a bootstrap trust anchor (a manufacturer CA, here a second CA made by initCa) is a bootstrap
 * identity with the device id from the configured field; anything else is refused with a reason.
 */

let h: RaHarness;
let mfr: TestCa;
let other: TestCa;
let auth: ClientCertificateAuthenticator;
let deps: () => ConstructorParameters<typeof ClientCertificateAuthenticator>[0];

/** idevid: a manufacturer certificate with subject serialNumber = sn (the default deviceIdFrom) */
async function idevid(ca: TestCa, sn: string): Promise<Buffer> {
  const spki = crypto.createPublicKey(generateKeyPair('ecdsa-p256').privateKey).export({ type: 'spki', format: 'der' });
  const out = await ca.caWith({ idevid: { validitySeconds: 86400, serverAuth: false } }).issue({
    profile: 'idevid',
    subject: [
      { type: 'serialNumber', value: sn },
      { type: 'CN', value: `device ${sn}` },
    ],
    spki,
    keyType: 'ec',
    sans: [],
  });
  return out.der;
}

beforeAll(async () => {
  [mfr, other] = await Promise.all([makeTestCa({}, 'device-ca-mfr-'), makeTestCa({}, 'device-ca-rogue-')]);
  const anchors = [new crypto.X509Certificate(mfr.hierarchy.root.der)];
  h = await makeRaHarness({ overrides: { 'bootstrap.autoRegisterOwner': 'maker' }, bootstrap: { anchors, deviceIdFrom: 'subject.serialNumber' } });
  deps = () => ({
    store: h.store,
    issuingCas: () => [h.ca.issuer.der],
    bootstrap: { anchors, deviceIdFrom: 'subject.serialNumber' },
    bootstrapConfig: h.cfg.bootstrap,
    secretKey: serverSecretKey(h.cfg),
    now: h.now,
  });
  auth = new ClientCertificateAuthenticator(deps());
});
afterAll(async () => {
  await h?.close();
  mfr?.cleanup();
  other?.cleanup();
});

const code = (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'no error',
    (e) => (e instanceof DeviceCaError ? e.code : Promise.reject(e)),
  );

async function enrolled(id: string): Promise<{ serial: string; certificate: Buffer }> {
  const secret = await h.register(id);
  return h.issued('default', 'enroll', h.csr(id).der, secretProof(id, secret));
}

describe('ClientCertificateAuthenticator', () => {
  it('no client certificate: null', async () => {
    expect(await auth.authenticate({})).toBeNull();
    expect(auth.method).toBe('bootstrap-cert');
  });

  it('a certificate this CA issued and recorded: device-cert with its record', async () => {
    const c = await enrolled('dev-cur');
    const p = await auth.authenticate(certProof(c.certificate));
    expect(p).toMatchObject({ kind: 'device-cert', deviceId: 'dev-cur' });
    expect(p!.kind === 'device-cert' && p!.cert.serial).toBe(c.serial);
  });

  it('a revoked device certificate: forbidden', async () => {
    const c = await enrolled('dev-rev');
    await h.store.revokeCertificate(c.serial, 'keyCompromise', h.now(), null, { type: 't', actor: 't', subject: c.serial, data: {} });
    expect(await code(auth.authenticate(certProof(c.certificate)))).toBe('forbidden');
  });

  it('a recorded device certificate outside its validity: forbidden as expired, one second either side of the window; inside it device-cert', async () => {
    const c = await enrolled('dev-window');
    const x = new crypto.X509Certificate(c.certificate);
    const at = (t: Date) => new ClientCertificateAuthenticator({ ...deps(), now: () => t });
    const from = new Date(x.validFrom);
    const to = new Date(x.validTo);
    await expect(at(new Date(from.getTime() - 1000)).authenticate(certProof(c.certificate))).rejects.toMatchObject({ code: 'forbidden', message: 'certificate has expired' });
    await expect(at(new Date(to.getTime() + 1000)).authenticate(certProof(c.certificate))).rejects.toMatchObject({ code: 'forbidden', message: 'certificate has expired' });
    for (const t of [from, to]) expect(await at(t).authenticate(certProof(c.certificate))).toMatchObject({ kind: 'device-cert', deviceId: 'dev-window' });
  });

  it('an attestation key certificate of a device (profile tpm-ak): forbidden, an AK never authenticates a device', async () => {
    await h.register('dev-ak');
    const spki = crypto.createPublicKey(generateKeyPair('rsa-2048').privateKey).export({ type: 'spki', format: 'der' });
    const ak = await signAndRecord(h.store, { spki, profile: TPM_AK_PROFILE }, () => h.ca.issueAttestationKey({ subject: [{ type: 'CN', value: 'dev-ak' }], spki, validitySeconds: 86400 }), {
      deviceId: 'dev-ak',
      subject: 'CN=dev-ak',
      audit: { actor: 'test', subject: 'dev-ak' },
    });
    await expect(auth.authenticate(certProof(ak.der))).rejects.toMatchObject({ code: 'forbidden', message: 'an attestation key certificate does not authenticate a device' });
  });

  it('a certificate signed by this CA but not in the store: forbidden', async () => {
    const spki = crypto.createPublicKey(generateKeyPair('ecdsa-p256').privateKey).export({ type: 'spki', format: 'der' });
    const stray = await h.ca.issue({ profile: 'default', subject: [{ type: 'CN', value: 'dev-stray' }], spki, keyType: 'ec', sans: [] });
    expect(await code(auth.authenticate(certProof(stray.der)))).toBe('forbidden');
  });

  it('a manufacturer certificate chaining to a bootstrap anchor: bootstrap, device id from subject serialNumber, auto-registered', async () => {
    const der = await idevid(mfr, 'SN-0042');
    const p = await auth.authenticate(certProof(der, [mfr.hierarchy.issuing.der]));
    expect(p).toMatchObject({ kind: 'bootstrap', deviceId: 'SN-0042', anchor: new crypto.X509Certificate(mfr.hierarchy.root.der).fingerprint256 });
    expect(await h.store.getDevice('SN-0042')).toMatchObject({ owner: 'maker', state: 'registered' });
  });

  it('the same certificate without its intermediate, or from an untrusted manufacturer: unauthenticated', async () => {
    expect(await code(auth.authenticate(certProof(await idevid(mfr, 'SN-0043'))))).toBe('unauthenticated');
    expect(await code(auth.authenticate(certProof(await idevid(other, 'SN-0044'), [other.hierarchy.issuing.der])))).toBe('unauthenticated');
  });

  it('a bootstrap certificate whose serialNumber is no valid device id: forbidden', async () => {
    expect(await code(auth.authenticate(certProof(await idevid(mfr, 'has space'), [mfr.hierarchy.issuing.der])))).toBe('forbidden');
  });

  it('through the RA: a profile listing only basic ignores a bootstrap certificate (unauthenticated); the default profile enrolls with it', async () => {
    const der = await idevid(mfr, 'SN-0050');
    const h2 = await makeRaHarness({
      overrides: { profiles: { default: {}, secretonly: { auth: ['basic'] } }, 'bootstrap.autoRegisterOwner': 'maker' },
      bootstrap: { anchors: [new crypto.X509Certificate(mfr.hierarchy.root.der)], deviceIdFrom: 'subject.serialNumber' },
    });
    try {
      const proofs = certProof(der, [mfr.hierarchy.issuing.der]);
      expect(await h2.refused('secretonly', 'enroll', h2.csr('SN-0050').der, proofs)).toBe('unauthenticated');
      const out = await h2.issued('default', 'enroll', h2.csr('SN-0050').der, proofs);
      expect(new crypto.X509Certificate(out.certificate).subject).toBe('O=maker\nCN=SN-0050');
    } finally {
      await h2.close();
    }
  });
});
