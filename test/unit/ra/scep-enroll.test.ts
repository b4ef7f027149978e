import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DeviceCaError, ErrorCode } from '../../../src/errors/device-ca-error';
import { EnrollOutcome } from '../../../src/ra/registration-authority';
import { issuerAndSerialNumber } from '../../../src/cms/issuer-and-serial';
import { children, readOne } from '../../../src/der/der-reader';
import { printableString, tlv } from '../../../src/der/der-writer';
import { openssl } from '../cms/cms-fixture';
import { RaHarness, makeRaHarness } from './ra-harness';

/**
 * RegistrationAuthority.scepEnroll: the decisions behind a SCEP PKCSReq / RenewalReq (RFC 8894) once the
 * adapter verified the message: who signed it (the CSR's own key for PKCSReq, the current certificate for
 * RenewalReq) and the transactionID rules (same request -> same answer, another request -> refused),
 * over the real store and CA.
 */
let h: RaHarness;
let n = 0;
const nextId = (): string => `scep-ra-${++n}`;
beforeAll(async () => {
  h = await makeRaHarness({ overrides: { profiles: { default: {}, manual: { manualApproval: true } }, 'enrollment.retryWindow': '10m' } });
});
afterAll(() => h?.close());

/** selfSigned: a self-signed certificate for key, made by openssl, as a SCEP client makes one for its PKCSReq. */
function selfSigned(key: crypto.KeyObject, cn: string): Buffer {
  const f = path.join(h.dir, `k-${crypto.randomUUID()}.pem`);
  fs.writeFileSync(f, key.export({ type: 'pkcs8', format: 'pem' }));
  return Buffer.from(new crypto.X509Certificate(openssl(['req', '-x509', '-new', '-key', f, '-subj', `/CN=${cn}`, '-days', '1'])).raw);
}

const txId = (s: string): Buffer => printableString(s);

async function refusal(p: Promise<EnrollOutcome>): Promise<{ code: ErrorCode; message: string }> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(DeviceCaError);
    return { code: (e as DeviceCaError).code, message: (e as DeviceCaError).message };
  }
  throw new Error('expected a refusal');
}

function issued(out: EnrollOutcome): Extract<EnrollOutcome, { status: 'issued' }> {
  if (out.status !== 'issued') throw new Error(`expected a certificate, got ${out.status}`);
  return out;
}

describe('PKCSReq: the message is signed with the key its CSR is for', () => {
  it('a self-signed certificate of the CSR key: issued', async () => {
    const id = nextId();
    const secret = await h.register(id);
    const csr = h.csr(id, { challengePassword: secret });
    const out = issued(await h.ra.scepEnroll({ profile: 'default', kind: 'PKCSReq', transactionId: txId('t-1'), signerCertificate: selfSigned(csr.key, id), csr: csr.der }));
    expect(new crypto.X509Certificate(out.certificate).subject).toBe(`O=acme\nCN=${id}`);
  });

  it('signed with another key: forbidden, nothing issued and the secret still unspent', async () => {
    const id = nextId();
    const secret = await h.register(id);
    const csr = h.csr(id, { challengePassword: secret });
    const other = h.csr(id).key;
    const r = await refusal(h.ra.scepEnroll({ profile: 'default', kind: 'PKCSReq', transactionId: txId('t-2'), signerCertificate: selfSigned(other, id), csr: csr.der }));
    expect(r).toEqual({ code: 'forbidden', message: expect.stringContaining('signed with the key its CSR is for') });
    expect(await h.store.getDevice(id)).toMatchObject({ state: 'registered' });
    expect(await h.store.activeSecrets(id, h.now())).toHaveLength(1);
  });

  it('a CSR without challengePassword: bad-csr', async () => {
    const id = nextId();
    await h.register(id);
    const csr = h.csr(id);
    expect((await refusal(h.ra.scepEnroll({ profile: 'default', kind: 'PKCSReq', transactionId: txId('t-3'), signerCertificate: selfSigned(csr.key, id), csr: csr.der }))).code).toBe('bad-csr');
  });
});

describe('transactionID (RFC 8894 §3.2.1.1)', () => {
  it('the same request again gets the same certificate, byte for byte, with no second issuance', async () => {
    const id = nextId();
    const secret = await h.register(id);
    const csr = h.csr(id, { challengePassword: secret });
    const signer = selfSigned(csr.key, id);
    const req = { profile: 'default', kind: 'PKCSReq' as const, transactionId: txId('same'), signerCertificate: signer, csr: csr.der };
    const first = issued(await h.ra.scepEnroll(req));
    h.advance(60);
    const again = issued(await h.ra.scepEnroll(req));
    expect(again.certificate).toEqual(first.certificate);
    expect((await h.audit('certificate.issued')).filter((a) => a.subject === id)).toHaveLength(1);
  });

  it('another request under a transactionID in use: bad-request, and the first answer still stands', async () => {
    const id = nextId();
    const secret = await h.register(id);
    const key = h.csr(id).key;
    const signer = selfSigned(key, id);
    const first = issued(
      await h.ra.scepEnroll({ profile: 'default', kind: 'PKCSReq', transactionId: txId('busy'), signerCertificate: signer, csr: h.csr(id, { key, challengePassword: secret }).der }),
    );
    const other = h.csr(id, { key, challengePassword: 'something-else' }).der;
    expect(await refusal(h.ra.scepEnroll({ profile: 'default', kind: 'PKCSReq', transactionId: txId('busy'), signerCertificate: signer, csr: other }))).toEqual({
      code: 'bad-request',
      message: 'transactionID is already in use for another request',
    });
    expect((await h.store.getCertificate(first.serial))?.status).toBe('valid');
  });

  it('a refusal is the answer of its transaction: the same wrong secret again is refused without a second failed attempt', async () => {
    const id = nextId();
    await h.register(id);
    const csr = h.csr(id, { challengePassword: 'wrong' });
    const req = { profile: 'default', kind: 'PKCSReq' as const, transactionId: txId('bad'), signerCertificate: selfSigned(csr.key, id), csr: csr.der };
    const first = await refusal(h.ra.scepEnroll(req));
    expect(first.code).toBe('unauthenticated');
    const failures = () => h.store.countAuthFailures(`basic:${id}`, h.now(), 3600).then((c) => c.count);
    expect(await failures()).toBe(1);
    expect(await refusal(h.ra.scepEnroll(req))).toEqual(first);
    expect(await failures()).toBe(1);
  });

  it("the same transactionID from another key is another transaction (no one can occupy a device's transactionIDs)", async () => {
    const id = nextId();
    const secret = await h.register(id);
    const squatter = h.csr('someone-else').key;
    await refusal(
      h.ra.scepEnroll({
        profile: 'default',
        kind: 'PKCSReq',
        transactionId: txId('shared'),
        signerCertificate: selfSigned(squatter, 'x'),
        csr: h.csr('someone-else', { key: squatter, challengePassword: 'x' }).der,
      }),
    );
    const csr = h.csr(id, { challengePassword: secret });
    expect((await h.ra.scepEnroll({ profile: 'default', kind: 'PKCSReq', transactionId: txId('shared'), signerCertificate: selfSigned(csr.key, id), csr: csr.der })).status).toBe('issued');
  });

  it('after enrollment.retryWindow the transactionID is free again', async () => {
    const id = nextId();
    await h.register(id);
    const key = h.csr(id).key;
    const signer = selfSigned(key, id);
    await refusal(h.ra.scepEnroll({ profile: 'default', kind: 'PKCSReq', transactionId: txId('old'), signerCertificate: signer, csr: h.csr(id, { key, challengePassword: 'a' }).der }));
    h.advance(601);
    try {
      const r = await refusal(h.ra.scepEnroll({ profile: 'default', kind: 'PKCSReq', transactionId: txId('old'), signerCertificate: signer, csr: h.csr(id, { key, challengePassword: 'b' }).der }));
      expect(r.code).toBe('unauthenticated'); // asked anew, not "in use"
    } finally {
      // the store stamps spent secrets with the real time: later tests compare them with the RA clock
      h.advance(-601);
    }
  });
});

describe('RenewalReq: signed with the current certificate, the rules of EST re-enroll', () => {
  async function enrolled(): Promise<{ id: string; cert: Buffer; key: crypto.KeyObject }> {
    const id = nextId();
    const secret = await h.register(id);
    const csr = h.csr(id, { organization: 'acme', challengePassword: secret });
    const out = issued(await h.ra.scepEnroll({ profile: 'default', kind: 'PKCSReq', transactionId: txId(`e-${id}`), signerCertificate: selfSigned(csr.key, id), csr: csr.der }));
    return { id, cert: out.certificate, key: csr.key };
  }

  it('the current certificate renews (new key), audited as a rekey of the previous serial', async () => {
    const d = await enrolled();
    const csr = h.csr(d.id, { organization: 'acme' });
    const out = issued(await h.ra.scepEnroll({ profile: 'default', kind: 'RenewalReq', transactionId: txId('r-1'), signerCertificate: d.cert, csr: csr.der }));
    const prev = new crypto.X509Certificate(d.cert).serialNumber.toLowerCase().replace(/^0+/, '');
    const audit = (await h.audit('certificate.issued')).find((a) => a.data.serial === out.serial)!;
    expect(audit.data).toMatchObject({ operation: 'renew', renewal: 'rekey', previous: prev });
  });

  it('a PKCSReq signed with the current certificate renews (certmonger), under the transactionID of the enrollment (same key kept)', async () => {
    const id = nextId();
    const secret = await h.register(id);
    const key = h.csr(id).key;
    const tx = txId('derived-from-the-public-key');
    const first = issued(
      await h.ra.scepEnroll({
        profile: 'default',
        kind: 'PKCSReq',
        transactionId: tx,
        signerCertificate: selfSigned(key, id),
        csr: h.csr(id, { key, organization: 'acme', challengePassword: secret }).der,
      }),
    );
    const renewed = issued(
      await h.ra.scepEnroll({
        profile: 'default',
        kind: 'PKCSReq',
        transactionId: tx,
        signerCertificate: first.certificate,
        csr: h.csr(id, { key, organization: 'acme', challengePassword: secret }).der,
      }),
    );
    expect(renewed.serial).not.toBe(first.serial);
    expect((await h.audit('certificate.issued')).find((a) => a.data.serial === renewed.serial)!.data).toMatchObject({ operation: 'renew', renewal: 'renew' });
  });

  it('a revoked certificate, a self-signed one, or a subject change: refused', async () => {
    const d = await enrolled();
    const csr = h.csr(d.id, { organization: 'acme' });
    expect((await refusal(h.ra.scepEnroll({ profile: 'default', kind: 'RenewalReq', transactionId: txId('r-2'), signerCertificate: selfSigned(d.key, d.id), csr: csr.der }))).code).toBe(
      'unauthenticated',
    );
    expect((await refusal(h.ra.scepEnroll({ profile: 'default', kind: 'RenewalReq', transactionId: txId('r-3'), signerCertificate: d.cert, csr: h.csr(d.id).der }))).code).toBe('forbidden');
    const serial = new crypto.X509Certificate(d.cert).serialNumber.toLowerCase().replace(/^0+/, '');
    await h.store.revokeCertificate(serial, 'keyCompromise', h.now(), null, { type: 'certificate.revoked', actor: 'test', subject: serial, data: {} });
    expect(await refusal(h.ra.scepEnroll({ profile: 'default', kind: 'RenewalReq', transactionId: txId('r-4'), signerCertificate: d.cert, csr: csr.der }))).toEqual({
      code: 'forbidden',
      message: 'certificate is revoked',
    });
  });

  it('a secret is no renewal credential: RenewalReq ignores a challengePassword', async () => {
    const id = nextId();
    const secret = await h.register(id);
    const csr = h.csr(id, { challengePassword: secret });
    expect((await refusal(h.ra.scepEnroll({ profile: 'default', kind: 'RenewalReq', transactionId: txId('r-5'), signerCertificate: selfSigned(csr.key, id), csr: csr.der }))).code).toBe(
      'unauthenticated',
    );
    expect(await h.store.activeSecrets(id, h.now())).toHaveLength(1);
  });
});

describe('GetCert authorization (RFC 8894 §3.3.4): a device fetches only its own certificates', () => {
  const serialOf = (der: Buffer): string => new crypto.X509Certificate(der).serialNumber.toLowerCase().replace(/^0+/, '');
  const revoke = (der: Buffer) => h.store.revokeCertificate(serialOf(der), 'superseded', h.now(), null, { type: 'certificate.revoked', actor: 'test', subject: serialOf(der), data: {} });
  async function device(): Promise<{ id: string; cert: Buffer; key: crypto.KeyObject }> {
    const id = nextId();
    const secret = await h.register(id);
    const csr = h.csr(id, { challengePassword: secret });
    const out = issued(await h.ra.scepEnroll({ profile: 'default', kind: 'PKCSReq', transactionId: txId(`g-${id}`), signerCertificate: selfSigned(csr.key, id), csr: csr.der }));
    return { id, cert: out.certificate, key: csr.key };
  }
  const getCert = async (signer: Buffer, asked: Buffer): Promise<Buffer | ErrorCode> => {
    try {
      return await h.ra.scepGetCert({ signerCertificate: signer, issuerAndSerial: issuerAndSerialNumber(asked) });
    } catch (e) {
      if (e instanceof DeviceCaError) return e.code;
      throw e;
    }
  };

  it.each([
    ['its own current certificate, signed with it', 'own', 'current', 'cert'],
    ['its own revoked certificate, signed with the current one', 'own-revoked', 'current', 'cert'],
    ["another device's certificate", 'other', 'current', 'not-found'],
    ['any certificate, signed with a self-signed certificate', 'own', 'self-signed', 'unauthenticated'],
    ['its own certificate, signed with a revoked certificate', 'own', 'revoked', 'forbidden'],
  ] as const)('%s: %s / %s -> %s', async (_name, asked, signer, expected) => {
    const d = await device();
    const other = await device();
    let askedDer = d.cert;
    let signerDer = d.cert;
    if (asked === 'other') askedDer = other.cert;
    if (asked === 'own-revoked') {
      // renew, then revoke the first certificate: the device signs with the new one
      const r = issued(await h.ra.scepEnroll({ profile: 'default', kind: 'RenewalReq', transactionId: txId(`rr-${d.id}`), signerCertificate: d.cert, csr: h.csr(d.id, { organization: 'acme' }).der }));
      await revoke(d.cert);
      signerDer = r.certificate;
    }
    if (signer === 'self-signed') signerDer = selfSigned(d.key, d.id);
    if (signer === 'revoked') await revoke(d.cert);
    const got = await getCert(signerDer, askedDer);
    expect(expected === 'cert' ? (got as Buffer).equals(askedDer) : got).toBe(expected === 'cert' ? true : expected);
  });

  it('a malformed IssuerAndSerialNumber: bad-request', async () => {
    const d = await device();
    await expect(h.ra.scepGetCert({ signerCertificate: d.cert, issuerAndSerial: Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01]) })).rejects.toMatchObject({ code: 'bad-request' });
  });
});

describe('CertPoll (GetCertInitial, RFC 8894 §3.3.3) for a profile with manual approval', () => {
  /** issuerAndSubject: what a client polls with, the issuer and subject Names of its self-signed certificate. */
  const issuerAndSubject = (certDer: Buffer): Buffer => {
    const f = children(children(readOne(certDer, 0x30))[0]);
    const i = f[0].tag === 0xa0 ? 1 : 0;
    return tlv(0x30, f[i + 2].full, f[i + 4].full);
  };
  /** held: a device whose PKCSReq on /scep/manual was answered PENDING, and what it polls with. */
  async function held(): Promise<{ id: string; pkcsReq: Parameters<RaHarness['ra']['scepEnroll']>[0]; poll: () => Promise<EnrollOutcome>; requestId: string }> {
    const id = nextId();
    const secret = await h.register(id, { label: 'manual' });
    const csr = h.csr(id, { challengePassword: secret });
    const signer = selfSigned(csr.key, id);
    const pkcsReq = { profile: 'manual', kind: 'PKCSReq' as const, transactionId: txId(`p-${id}`), signerCertificate: signer, csr: csr.der };
    const first = await h.ra.scepEnroll(pkcsReq);
    if (first.status !== 'pending') throw new Error('expected PENDING');
    const poll = () => h.ra.scepPoll({ profile: 'manual', transactionId: txId(`p-${id}`), signerCertificate: signer, issuerAndSubject: issuerAndSubject(signer) });
    return { id, pkcsReq, poll, requestId: first.requestId };
  }
  const issuedTo = async (id: string) => (await h.audit('certificate.issued')).filter((a) => a.subject === id);

  it('PENDING before the decision; once approved the poll issues the queued CSR and spends the secret; polls and the PKCSReq again get the same certificate', async () => {
    const d = await held();
    expect(await d.poll()).toMatchObject({ status: 'pending', requestId: d.requestId });
    expect(await h.store.activeSecrets(d.id, h.now())).toHaveLength(1);
    await h.ra.decideRequest(d.requestId, 'approved', 'operator');
    const out = issued(await d.poll());
    const x = new crypto.X509Certificate(out.certificate);
    expect(x.subject).toBe(`O=acme\nCN=${d.id}`);
    expect(x.publicKey.export({ type: 'spki', format: 'der' })).toEqual(new crypto.X509Certificate(d.pkcsReq.signerCertificate).publicKey.export({ type: 'spki', format: 'der' }));
    expect(await h.store.activeSecrets(d.id, h.now())).toHaveLength(0);
    expect(await h.store.spentSecrets(d.id, new Date(0))).toEqual([expect.objectContaining({ certSerial: out.serial })]);
    expect((await h.store.listRequests({})).items.find((r) => r.id === d.requestId)).toMatchObject({ status: 'issued', certSerial: out.serial });
    expect(issued(await d.poll()).certificate).toEqual(out.certificate);
    expect(issued(await h.ra.scepEnroll(d.pkcsReq)).certificate).toEqual(out.certificate);
    expect(await issuedTo(d.id)).toHaveLength(1);
  });

  it('polls and the PKCSReq sent again at once after approval: one certificate, the secret spent once', async () => {
    const d = await held();
    await h.ra.decideRequest(d.requestId, 'approved', 'operator');
    const outs = (await Promise.all([d.poll(), d.poll(), h.ra.scepEnroll(d.pkcsReq), d.poll()])).map(issued);
    expect(new Set(outs.map((o) => o.serial)).size).toBe(1);
    expect(await issuedTo(d.id)).toHaveLength(1);
    expect(await h.store.spentSecrets(d.id, new Date(0))).toHaveLength(1);
  });

  it('rejected: FAILURE (forbidden), and it stays the answer; nothing issued, the secret unspent', async () => {
    const d = await held();
    await h.ra.decideRequest(d.requestId, 'rejected', 'operator');
    const r = await refusal(d.poll());
    expect(r).toEqual({ code: 'forbidden', message: 'the enrollment request was rejected by an operator' });
    expect(await refusal(d.poll())).toEqual(r);
    expect(await issuedTo(d.id)).toHaveLength(0);
    expect(await h.store.activeSecrets(d.id, h.now())).toHaveLength(1);
  });

  it('a device suspended after approval: the poll is refused and nothing is issued', async () => {
    const d = await held();
    await h.ra.decideRequest(d.requestId, 'approved', 'operator');
    await h.store.applyDeviceChange({ deviceId: d.id, fromStates: ['registered'], toState: 'suspended', audit: { type: 'device.suspended', actor: 'test', subject: d.id, data: {} } });
    expect((await refusal(d.poll())).code).toBe('forbidden');
    expect(await issuedTo(d.id)).toHaveLength(0);
  });

  it('a poll signed by another key, under an unknown transactionID, on another path, or with a malformed IssuerAndSubject: refused, nothing issued, the transaction still open', async () => {
    const d = await held();
    await h.ra.decideRequest(d.requestId, 'approved', 'operator');
    const other = selfSigned(h.csr(d.id).key, d.id);
    const base = { profile: 'manual', transactionId: d.pkcsReq.transactionId, signerCertificate: d.pkcsReq.signerCertificate, issuerAndSubject: issuerAndSubject(d.pkcsReq.signerCertificate) };
    expect((await refusal(h.ra.scepPoll({ ...base, signerCertificate: other }))).code).toBe('not-found');
    expect((await refusal(h.ra.scepPoll({ ...base, transactionId: txId('never-used') }))).code).toBe('not-found');
    expect((await refusal(h.ra.scepPoll({ ...base, profile: 'default' }))).code).toBe('not-found');
    expect((await refusal(h.ra.scepPoll({ ...base, issuerAndSubject: Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01]) }))).code).toBe('bad-request');
    expect(await issuedTo(d.id)).toHaveLength(0);
    expect((await d.poll()).status).toBe('issued');
  });

  it('a transaction that was never PENDING (issued at once) is not polled into a second certificate', async () => {
    const id = nextId();
    const secret = await h.register(id);
    const csr = h.csr(id, { challengePassword: secret });
    const signer = selfSigned(csr.key, id);
    const first = issued(await h.ra.scepEnroll({ profile: 'default', kind: 'PKCSReq', transactionId: txId('np'), signerCertificate: signer, csr: csr.der }));
    const again = issued(await h.ra.scepPoll({ profile: 'default', transactionId: txId('np'), signerCertificate: signer, issuerAndSubject: issuerAndSubject(signer) }));
    expect(again.serial).toBe(first.serial);
    expect(await issuedTo(id)).toHaveLength(1);
  });

  it('held longer than enrollment.retryWindow: an approval days later is still collected by the poll', async () => {
    const d = await held();
    h.advance(3 * 24 * 3600);
    try {
      await h.ra.decideRequest(d.requestId, 'approved', 'operator');
      expect((await d.poll()).status).toBe('issued');
    } finally {
      h.advance(-3 * 24 * 3600);
    }
  });
});
