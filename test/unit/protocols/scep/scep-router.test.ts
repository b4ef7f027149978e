import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { AddressInfo } from 'node:net';
import * as path from 'node:path';
import pino from 'pino';
import { issuerAndSerialNumber } from '../../../../src/cms/issuer-and-serial';
import { buildSignedData, verifySignedData } from '../../../../src/cms/signed-data';
import { children, readOne } from '../../../../src/der/der-reader';
import { printableString, octetString, tlv } from '../../../../src/der/der-writer';
import { softwareSigningKey } from '../../../../src/keys/software-key-backend';
import { SCEP_RA_RECORD } from '../../../../src/ca/service-certificates';
import { buildService, Service } from '../../../../src/main';
import { MESSAGE_TYPE, SCEP_OID } from '../../../../src/protocols/scep/scep-message';
import { openssl, opensslStatus } from '../../cms/cms-fixture';
import { makeTestCa, TestCa } from '../../../fixtures/test-ca';

/**
 * SCEP PKCSReq end to end, in process: the request is built the way a client builds it (CSR with the
 * challengePassword and self-signed certificate by openssl, EnvelopedData by `openssl cms -encrypt` to the
 * RA certificate from GetCACert, the pkiMessage signed with the device key), and openssl judges the reply.
 */
let t: TestCa;
let svc: Service;
let base: string;
let n = 0;

beforeAll(async () => {
  t = await makeTestCa({
    'scep.enabled': true,
    'scep.paths': { default: { profile: 'default' }, manual: { profile: 'manual' } },
    profiles: { default: {}, manual: { manualApproval: true } },
    'enrollment.secretHashCost': 10,
  });
  svc = await buildService(t.cfg, { log: pino({ level: 'silent' }) });
  await new Promise<void>((r) => svc.http.listen(0, '127.0.0.1', () => r()));
  base = `http://127.0.0.1:${(svc.http.address() as AddressInfo).port}`;
}, 60_000);
afterAll(async () => {
  await new Promise<void>((r) => svc.http.close(() => r()));
  await svc.close();
  t.cleanup();
});

const file = (name: string, data: Buffer | string): string => {
  const f = path.join(t.dir, name);
  fs.writeFileSync(f, data);
  return f;
};

async function get(query: string, pathName = '/scep'): Promise<{ status: number; type: string | null; body: Buffer }> {
  const r = await fetch(`${base}${pathName}?${query}`);
  return { status: r.status, type: r.headers.get('content-type'), body: Buffer.from(await r.arrayBuffer()) };
}

async function post(body: Buffer, pathName = '/scep'): Promise<{ status: number; type: string | null; body: Buffer }> {
  const r = await fetch(`${base}${pathName}?operation=PKIOperation`, { method: 'POST', body });
  return { status: r.status, type: r.headers.get('content-type'), body: Buffer.from(await r.arrayBuffer()) };
}

/** raCertFile: the first certificate GetCACert returns, as openssl prints them (the RA certificate). */
async function raCertFile(): Promise<string> {
  const r = await get('operation=GetCACert');
  const pems = openssl(['pkcs7', '-inform', 'DER', '-print_certs'], r.body)
    .toString()
    .match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)!;
  return file('ra.pem', `${pems[0]}\n`);
}

/** Client: a device key, its self-signed certificate and a CSR (CN, challengePassword) made by openssl. */
interface Client {
  keyFile: string;
  certFile: string;
  key: crypto.KeyObject;
  certDer: Buffer;
  csrDer: Buffer;
}

function client(cn: string, challenge: string): Client {
  const id = ++n;
  const keyFile = path.join(t.dir, `dev-${id}.key`);
  openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', keyFile]);
  const conf = file(`req-${id}.cnf`, `[req]\ndistinguished_name=dn\nattributes=attrs\nprompt=no\n[dn]\nCN=${cn}\n[attrs]\nchallengePassword=${challenge}\n`);
  const csrDer = openssl(['req', '-new', '-key', keyFile, '-config', conf, '-outform', 'DER']);
  const certFile = path.join(t.dir, `self-${id}.pem`);
  openssl(['req', '-x509', '-new', '-key', keyFile, '-subj', `/CN=${cn}`, '-days', '1', '-out', certFile]);
  const certDer = Buffer.from(new crypto.X509Certificate(fs.readFileSync(certFile)).raw);
  return { keyFile, certFile, key: crypto.createPrivateKey(fs.readFileSync(keyFile)), certDer, csrDer };
}

const transactionId = '12345678901234567890';

/** pkcsReq: the CSR enveloped by openssl to the RA certificate (AES-256-CBC, as certmonger does), signed as a PKCSReq pkiMessage. */
async function pkcsReq(c: Client, raPem: string, o: { transactionId?: string; csr?: Buffer; messageType?: string; signer?: { certDer: Buffer; key: crypto.KeyObject } } = {}): Promise<Buffer> {
  const envelope = openssl(['cms', '-encrypt', '-binary', '-outform', 'DER', '-aes256', raPem], o.csr ?? c.csrDer);
  const signer = o.signer ?? c;
  return buildSignedData({
    content: envelope,
    signer: { certificate: signer.certDer, key: softwareSigningKey(signer.key, 'rsa-2048', 'memory') },
    attributes: [
      { type: SCEP_OID.messageType, values: [printableString(o.messageType ?? MESSAGE_TYPE.PKCSReq)] },
      { type: SCEP_OID.transactionID, values: [printableString(o.transactionId ?? transactionId)] },
      { type: SCEP_OID.senderNonce, values: [octetString(crypto.randomBytes(16))] },
    ],
    certificates: [signer.certDer],
  });
}

/** certRep: the reply verified (our verifier and `openssl cms -verify` against the RA certificate) and its attributes read. */
function certRep(body: Buffer, raPem: string): { status: string; failInfo?: string; failInfoText?: string; content: Buffer | null; attrs: ReadonlyMap<string, Buffer[]> } {
  const m = verifySignedData(body);
  const str = (type: string) => {
    const v = m.signer.attributes.get(type)?.[0];
    return v ? v.subarray(2).toString('utf8') : undefined;
  };
  // every reply carries its content (a FAILURE an empty one), so openssl verifies it as it stands
  const verdict = opensslStatus(['cms', '-verify', '-inform', 'DER', '-binary', '-CAfile', raPem, '-partial_chain', '-purpose', 'any', '-out', '/dev/null'], body);
  expect(verdict.stderr).toContain('Verification successful');
  return { status: str(SCEP_OID.pkiStatus)!, failInfo: str(SCEP_OID.failInfo), failInfoText: str(SCEP_OID.failInfoText), content: m.content, attrs: m.signer.attributes };
}

describe('SCEP', () => {
  it('GetCACaps advertises what is implemented (Renewal, no GetNextCACert)', async () => {
    const r = await get('operation=GetCACaps');
    expect(r.status).toBe(200);
    expect(r.body.toString().trim().split('\n').sort()).toEqual(['AES', 'POSTPKIOperation', 'Renewal', 'SCEPStandard', 'SHA-256', 'SHA-512']);
  });

  it('GetCACert returns the RA (RSA) then the issuing and root CA certificates', async () => {
    const r = await get('operation=GetCACert', '/certsrv/mscep/mscep.dll');
    expect(r.status).toBe(200);
    expect(r.type).toBe('application/x-x509-ca-ra-cert');
    const text = openssl(['pkcs7', '-inform', 'DER', '-print_certs', '-noout'], r.body).toString();
    const subjects = text.split('\n').filter((l) => l.startsWith('subject='));
    expect(subjects).toHaveLength(3);
    expect(subjects[0]).toContain('SCEP RA');
    const ra = await raCertFile();
    expect(new crypto.X509Certificate(fs.readFileSync(ra)).publicKey.asymmetricKeyType).toBe('rsa');
  });

  it('PKCSReq (POST): SUCCESS with the certificate enveloped to the requester; openssl verifies it against the chain', async () => {
    const { secret } = await svc.ra.registerDevice({ id: 'scep-dev-1', actor: 'test' });
    const c = client('scep-dev-1', secret);
    const ra = await raCertFile();
    const request = await pkcsReq(c, ra);
    const r = await post(request);
    expect(r.status).toBe(200);
    expect(r.type).toBe('application/x-pki-message');
    const rep = certRep(r.body, ra);
    expect(rep.status).toBe('0');
    expect(rep.attrs.get(SCEP_OID.messageType)![0].subarray(2).toString()).toBe('3');
    expect(rep.attrs.get(SCEP_OID.transactionID)![0].subarray(2).toString()).toBe(transactionId);
    const sentNonce = verifySignedData(request).signer.attributes.get(SCEP_OID.senderNonce)![0];
    expect(rep.attrs.get(SCEP_OID.recipientNonce)![0]).toEqual(sentNonce);
    expect(rep.attrs.get(SCEP_OID.senderNonce)![0]).not.toEqual(sentNonce);
    const certsOnly = openssl(['cms', '-decrypt', '-inform', 'DER', '-recip', c.certFile, '-inkey', c.keyFile, '-binary'], rep.content!);
    const leaf = file('scep-dev-1.pem', openssl(['pkcs7', '-inform', 'DER', '-print_certs'], certsOnly));
    const chain = file('issuing.pem', new crypto.X509Certificate(t.hierarchy.issuing.der).toString());
    const root = file('root.pem', new crypto.X509Certificate(t.hierarchy.root.der).toString());
    expect(openssl(['verify', '-CAfile', root, '-untrusted', chain, '-purpose', 'sslclient', leaf]).toString()).toContain(': OK');
    const x = new crypto.X509Certificate(fs.readFileSync(leaf));
    expect(x.subject).toContain('CN=scep-dev-1');
    expect(await svc.store.getDevice('scep-dev-1')).toMatchObject({ state: 'active' });
    expect(x.publicKey.export({ type: 'spki', format: 'der' })).toEqual(crypto.createPublicKey(c.key).export({ type: 'spki', format: 'der' }));
  });

  it('PKCSReq (GET, %-encoded message=): a wrong secret is a signed FAILURE badRequest', async () => {
    await svc.ra.registerDevice({ id: 'scep-dev-2', actor: 'test' });
    const ra = await raCertFile();
    const msg = await pkcsReq(client('scep-dev-2', 'not-the-secret'), ra);
    const r = await get(`operation=PKIOperation&message=${encodeURIComponent(msg.toString('base64'))}`);
    expect(r.status).toBe(200);
    const rep = certRep(r.body, ra);
    expect([rep.status, rep.failInfo]).toEqual(['2', '2']);
    expect(rep.failInfoText).toBe('authentication failed');
    expect(rep.content).toEqual(Buffer.alloc(0)); // an empty eContent, not none: OpenSSL-based clients need one
  });

  it('a secret already spent, with another key: FAILURE badRequest', async () => {
    const { secret } = await svc.ra.registerDevice({ id: 'scep-dev-3', actor: 'test' });
    const ra = await raCertFile();
    expect(certRep((await post(await pkcsReq(client('scep-dev-3', secret), ra))).body, ra).status).toBe('0');
    const again = certRep((await post(await pkcsReq(client('scep-dev-3', secret), ra))).body, ra);
    expect([again.status, again.failInfo]).toEqual(['2', '2']);
  });

  it('a tampered signature: FAILURE badMessageCheck, nothing issued', async () => {
    const { secret } = await svc.ra.registerDevice({ id: 'scep-dev-4', actor: 'test' });
    const ra = await raCertFile();
    const msg = await pkcsReq(client('scep-dev-4', secret), ra);
    msg[msg.length - 10] ^= 0x01; // inside the RSA signature, the last field of the message
    const rep = certRep((await post(msg)).body, ra);
    expect([rep.status, rep.failInfo]).toEqual(['2', '1']);
    expect(await svc.store.getDevice('scep-dev-4')).toMatchObject({ state: 'registered' });
  });

  describe('refusals a client meets (issue 10 negatives)', () => {
    it('an expired challenge: FAILURE badRequest, the device stays unenrolled', async () => {
      const { secret } = await svc.ra.registerDevice({ id: 'scep-neg-expired', actor: 'test', secretTtlSeconds: 1 });
      const ra = await raCertFile();
      await new Promise((r) => setTimeout(r, 1200));
      const rep = certRep((await post(await pkcsReq(client('scep-neg-expired', secret), ra, { transactionId: 'neg-expired' }))).body, ra);
      expect([rep.status, rep.failInfo]).toEqual(['2', '2']);
      expect(await svc.store.getDevice('scep-neg-expired')).toMatchObject({ state: 'registered' });
    });

    it("a CSR for another device with this device's challenge: FAILURE badRequest, neither device enrolled", async () => {
      const { secret } = await svc.ra.registerDevice({ id: 'scep-neg-a', actor: 'test' });
      await svc.ra.registerDevice({ id: 'scep-neg-b', actor: 'test' });
      const ra = await raCertFile();
      const rep = certRep((await post(await pkcsReq(client('scep-neg-b', secret), ra, { transactionId: 'neg-other' }))).body, ra);
      expect([rep.status, rep.failInfo]).toEqual(['2', '2']);
      for (const id of ['scep-neg-a', 'scep-neg-b']) expect(await svc.store.getDevice(id)).toMatchObject({ state: 'registered' });
    });

    it('a content-encryption algorithm device-ca does not take (Camellia): FAILURE badAlg, nothing issued', async () => {
      const { secret } = await svc.ra.registerDevice({ id: 'scep-neg-alg', actor: 'test' });
      const ra = await raCertFile();
      const c = client('scep-neg-alg', secret);
      const envelope = openssl(['cms', '-encrypt', '-binary', '-outform', 'DER', '-camellia128', ra], c.csrDer);
      const msg = await buildSignedData({
        content: envelope,
        signer: { certificate: c.certDer, key: softwareSigningKey(c.key, 'rsa-2048', 'memory') },
        attributes: [
          { type: SCEP_OID.messageType, values: [printableString(MESSAGE_TYPE.PKCSReq)] },
          { type: SCEP_OID.transactionID, values: [printableString('neg-alg')] },
          { type: SCEP_OID.senderNonce, values: [octetString(crypto.randomBytes(16))] },
        ],
        certificates: [c.certDer],
      });
      const rep = certRep((await post(msg)).body, ra);
      expect([rep.status, rep.failInfo]).toEqual(['2', '0']);
      expect(await svc.store.getDevice('scep-neg-alg')).toMatchObject({ state: 'registered' });
    });

    it('a message encrypted to another recipient: a signed FAILURE, nothing issued, the secret unspent', async () => {
      const { secret } = await svc.ra.registerDevice({ id: 'scep-neg-recip', actor: 'test' });
      const ra = await raCertFile();
      const stranger = client('someone-else', 'x');
      const c = client('scep-neg-recip', secret);
      const rep = certRep((await post(await pkcsReq(c, stranger.certFile, { transactionId: 'neg-recip' }))).body, ra);
      expect(rep.status).toBe('2');
      expect(rep.failInfo).toBe('2'); // badRequest: no recipient info for the RA (RFC 8894 gives no finer reason)
      expect(await svc.store.getDevice('scep-neg-recip')).toMatchObject({ state: 'registered' });
      // the secret still works with a proper message
      expect(certRep((await post(await pkcsReq(c, ra, { transactionId: 'neg-recip-2' }))).body, ra).status).toBe('0');
    });

    it('garbage and oversize bodies: HTTP 4xx without a CertRep, nothing issued', async () => {
      const garbage = await post(crypto.randomBytes(3000));
      expect(garbage.status).toBe(400);
      const notCms = await post(Buffer.from('30820100', 'hex'));
      expect(notCms.status).toBe(400);
      const huge = await post(Buffer.alloc(8 * 1024 * 1024, 0x30));
      expect([400, 413]).toContain(huge.status);
      const badQuery = await get('operation=PKIOperation&message=%%%');
      expect(badQuery.status).toBe(400);
    });
  });

  /** issuedCert: the certificate in a SUCCESS CertRep, decrypted by openssl with the client's key. */
  const issuedCert = (rep: { content: Buffer | null }, c: Client): Buffer =>
    Buffer.from(
      new crypto.X509Certificate(
        openssl(['pkcs7', '-inform', 'DER', '-print_certs'], openssl(['cms', '-decrypt', '-inform', 'DER', '-recip', c.certFile, '-inkey', c.keyFile, '-binary'], rep.content!)),
      ).raw,
    );

  it('the same request sent again (new message, same transactionID and CSR): SUCCESS with the same certificate', async () => {
    const { secret } = await svc.ra.registerDevice({ id: 'scep-dev-5', actor: 'test' });
    const c = client('scep-dev-5', secret);
    const ra = await raCertFile();
    const first = certRep((await post(await pkcsReq(c, ra, { transactionId: 'tx-5' }))).body, ra);
    const again = certRep((await post(await pkcsReq(c, ra, { transactionId: 'tx-5' }))).body, ra);
    expect([first.status, again.status]).toEqual(['0', '0']);
    expect(issuedCert(again, c)).toEqual(issuedCert(first, c));
  });

  it('another CSR under a transactionID in use: FAILURE badRequest', async () => {
    const { secret } = await svc.ra.registerDevice({ id: 'scep-dev-6', actor: 'test' });
    const c = client('scep-dev-6', secret);
    const ra = await raCertFile();
    expect(certRep((await post(await pkcsReq(c, ra, { transactionId: 'tx-6' }))).body, ra).status).toBe('0');
    const conf = file('req-other.cnf', `[req]\ndistinguished_name=dn\nattributes=attrs\nprompt=no\n[dn]\nCN=scep-dev-6\n[attrs]\nchallengePassword=another\n`);
    const otherCsr = openssl(['req', '-new', '-key', c.keyFile, '-config', conf, '-outform', 'DER']); // same key, another request
    const rep = certRep((await post(await pkcsReq(c, ra, { transactionId: 'tx-6', csr: otherCsr }))).body, ra);
    expect([rep.status, rep.failInfo, rep.failInfoText]).toEqual(['2', '2', 'transactionID is already in use for another request']);
  });

  it('a PKCSReq signed with a key other than the CSR key: FAILURE badRequest, nothing issued', async () => {
    const { secret } = await svc.ra.registerDevice({ id: 'scep-dev-7', actor: 'test' });
    const c = client('scep-dev-7', secret);
    const ra = await raCertFile();
    const rep = certRep((await post(await pkcsReq(c, ra, { signer: client('scep-dev-7', 'x') }))).body, ra);
    expect([rep.status, rep.failInfo]).toEqual(['2', '2']);
    expect(rep.failInfoText).toContain('signed with the key its CSR is for');
    expect(await svc.store.getDevice('scep-dev-7')).toMatchObject({ state: 'registered' });
  });

  it('a profile with manual approval (/scep/manual): PENDING, then SUCCESS once an operator approves (the PKCSReq sent again); a rejected one FAILURE', async () => {
    const ra = await raCertFile();
    const { secret } = await svc.ra.registerDevice({ id: 'scep-dev-9', actor: 'test', label: 'manual' });
    const c = client('scep-dev-9', secret);
    const pending = certRep((await post(await pkcsReq(c, ra, { transactionId: 'tx-9' }), '/scep/manual')).body, ra);
    expect(pending.status).toBe('3');
    expect(pending.content).toEqual(Buffer.alloc(0));
    const [request] = (await svc.ra.listRequests({ status: 'pending' })).items.filter((r) => r.deviceId === 'scep-dev-9');
    await svc.ra.decideRequest(request.id, 'approved', 'operator');
    const done = certRep((await post(await pkcsReq(c, ra, { transactionId: 'tx-9' }), '/scep/manual')).body, ra);
    expect(done.status).toBe('0');
    expect(new crypto.X509Certificate(issuedCert(done, c)).subject).toContain('CN=scep-dev-9');

    const { secret: s2 } = await svc.ra.registerDevice({ id: 'scep-dev-10', actor: 'test', label: 'manual' });
    const d = client('scep-dev-10', s2);
    expect(certRep((await post(await pkcsReq(d, ra, { transactionId: 'tx-10' }), '/scep/manual')).body, ra).status).toBe('3');
    const [r2] = (await svc.ra.listRequests({ status: 'pending' })).items.filter((r) => r.deviceId === 'scep-dev-10');
    await svc.ra.decideRequest(r2.id, 'rejected', 'operator');
    const refused = certRep((await post(await pkcsReq(d, ra, { transactionId: 'tx-10' }), '/scep/manual')).body, ra);
    expect([refused.status, refused.failInfo, refused.failInfoText]).toEqual(['2', '2', 'the enrollment request was rejected by an operator']);
  });

  it('CertPoll (GetCertInitial, messageType 20): PENDING until an operator approves, then SUCCESS with the certificate; after a rejection FAILURE', async () => {
    const ra = await raCertFile();
    // IssuerAndSubject (RFC 8894 §3.3.3): the issuing CA's subject Name and the requester's
    const issuerAndSubject = (c: Client): Buffer => {
      const tbs = (der: Buffer) => {
        const f = children(children(readOne(der, 0x30))[0]);
        return f.slice(f[0].tag === 0xa0 ? 1 : 0);
      };
      return tlv(0x30, tbs(t.hierarchy.issuing.der)[4].full, tbs(c.certDer)[4].full);
    };
    const { secret } = await svc.ra.registerDevice({ id: 'scep-dev-11', actor: 'test', label: 'manual' });
    const c = client('scep-dev-11', secret);
    const poll = async () => certRep((await post(await pkcsReq(c, ra, { transactionId: 'tx-11', messageType: MESSAGE_TYPE.CertPoll, csr: issuerAndSubject(c) }), '/scep/manual')).body, ra);
    expect(certRep((await post(await pkcsReq(c, ra, { transactionId: 'tx-11' }), '/scep/manual')).body, ra).status).toBe('3');
    const waiting = await poll();
    expect([waiting.status, waiting.content]).toEqual(['3', Buffer.alloc(0)]);
    const [request] = (await svc.ra.listRequests({ status: 'pending' })).items.filter((r) => r.deviceId === 'scep-dev-11');
    await svc.ra.decideRequest(request.id, 'approved', 'operator');
    const done = await poll();
    expect(done.status).toBe('0');
    const cert = new crypto.X509Certificate(issuedCert(done, c));
    expect(cert.subject).toContain('CN=scep-dev-11');
    expect(cert.publicKey.export({ type: 'spki', format: 'der' })).toEqual(crypto.createPublicKey(c.key).export({ type: 'spki', format: 'der' }));
    expect(issuedCert(await poll(), c)).toEqual(Buffer.from(cert.raw));
    expect(await svc.store.activeSecrets('scep-dev-11', new Date())).toHaveLength(0);

    const { secret: s2 } = await svc.ra.registerDevice({ id: 'scep-dev-12', actor: 'test', label: 'manual' });
    const d = client('scep-dev-12', s2);
    expect(certRep((await post(await pkcsReq(d, ra, { transactionId: 'tx-12' }), '/scep/manual')).body, ra).status).toBe('3');
    const [r2] = (await svc.ra.listRequests({ status: 'pending' })).items.filter((r) => r.deviceId === 'scep-dev-12');
    await svc.ra.decideRequest(r2.id, 'rejected', 'operator');
    const refused = certRep((await post(await pkcsReq(d, ra, { transactionId: 'tx-12', messageType: MESSAGE_TYPE.CertPoll, csr: issuerAndSubject(d) }), '/scep/manual')).body, ra);
    expect([refused.status, refused.failInfo, refused.failInfoText]).toEqual(['2', '2', 'the enrollment request was rejected by an operator']);
    // a poll for a transaction never sent: FAILURE badCertId
    const stray = certRep((await post(await pkcsReq(d, ra, { transactionId: 'tx-none', messageType: MESSAGE_TYPE.CertPoll, csr: issuerAndSubject(d) }), '/scep/manual')).body, ra);
    expect([stray.status, stray.failInfo]).toEqual(['2', '4']);
  });

  describe('with a device certificate: RenewalReq, GetCert, GetCRL', () => {
    /** decrypt: the certs-only content of a SUCCESS CertRep, opened by openssl with the recipient's certificate and key. */
    const decrypt = (rep: { content: Buffer | null }, certFile: string, keyFile: string): Buffer =>
      openssl(['cms', '-decrypt', '-inform', 'DER', '-recip', certFile, '-inkey', keyFile, '-binary'], rep.content!);
    const pemCerts = (certsOnly: Buffer): crypto.X509Certificate[] =>
      (
        openssl(['pkcs7', '-inform', 'DER', '-print_certs'], certsOnly)
          .toString()
          .match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
      ).map((p) => new crypto.X509Certificate(p));
    let ra: string;
    let first: Client;
    let current: { der: Buffer; file: string; key: crypto.KeyObject; keyFile: string };
    let renewed: { der: Buffer; file: string };

    beforeAll(async () => {
      const { secret } = await svc.ra.registerDevice({ id: 'scep-dev-8', actor: 'test' });
      ra = await raCertFile();
      first = client('scep-dev-8', secret);
      const der = issuedCert(certRep((await post(await pkcsReq(first, ra, { transactionId: 'tx-8' }))).body, ra), first);
      current = { der, file: file('scep-dev-8.pem', new crypto.X509Certificate(der).toString()), key: first.key, keyFile: first.keyFile };
    }, 60_000);

    it('RenewalReq signed with the current certificate: a certificate for the new key, enveloped to the current certificate; openssl verifies it', async () => {
      const next = client('scep-dev-8', 'unused');
      const rep = certRep((await post(await pkcsReq(next, ra, { transactionId: 'tx-8r', messageType: MESSAGE_TYPE.RenewalReq, signer: { certDer: current.der, key: current.key } }))).body, ra);
      expect(rep.status).toBe('0');
      const [leaf] = pemCerts(decrypt(rep, current.file, current.keyFile));
      renewed = { der: Buffer.from(leaf.raw), file: file('scep-dev-8-renewed.pem', leaf.toString()) };
      expect(leaf.publicKey.export({ type: 'spki', format: 'der' })).toEqual(crypto.createPublicKey(next.key).export({ type: 'spki', format: 'der' }));
      const chain = file('issuing.pem', new crypto.X509Certificate(t.hierarchy.issuing.der).toString());
      const root = file('root.pem', new crypto.X509Certificate(t.hierarchy.root.der).toString());
      expect(openssl(['verify', '-CAfile', root, '-untrusted', chain, renewed.file]).toString()).toContain(': OK');
    });

    it('RenewalReq signed with a self-signed certificate: FAILURE badRequest', async () => {
      const c = client('scep-dev-8', 'unused');
      const rep = certRep((await post(await pkcsReq(c, ra, { transactionId: 'tx-8s', messageType: MESSAGE_TYPE.RenewalReq }))).body, ra);
      expect([rep.status, rep.failInfo]).toEqual(['2', '2']);
    });

    it("GetCert: the device's own certificate by issuer and serial; another device's is FAILURE badCertId", async () => {
      const mine = certRep(
        (
          await post(
            await pkcsReq(first, ra, { transactionId: 'tx-8g', messageType: MESSAGE_TYPE.GetCert, csr: issuerAndSerialNumber(current.der), signer: { certDer: current.der, key: current.key } }),
          )
        ).body,
        ra,
      );
      expect(mine.status).toBe('0');
      expect(Buffer.from(pemCerts(decrypt(mine, current.file, current.keyFile))[0].raw)).toEqual(current.der);
      const others = (await svc.store.listCertificates({ deviceId: 'scep-dev-1' })).items;
      expect(others.length).toBeGreaterThan(0);
      const theirs = certRep(
        (
          await post(
            await pkcsReq(first, ra, { transactionId: 'tx-8h', messageType: MESSAGE_TYPE.GetCert, csr: issuerAndSerialNumber(others[0].der), signer: { certDer: current.der, key: current.key } }),
          )
        ).body,
        ra,
      );
      expect([theirs.status, theirs.failInfo]).toEqual(['2', '4']);
      // signed with a self-signed certificate: no device to speak for
      const anon = certRep((await post(await pkcsReq(first, ra, { transactionId: 'tx-8i', messageType: MESSAGE_TYPE.GetCert, csr: issuerAndSerialNumber(current.der) }))).body, ra);
      expect([anon.status, anon.failInfo]).toEqual(['2', '2']);
    });

    it('GetCRL: the CRL of the shard covering the certificate, signed by the issuing CA (openssl verifies it)', async () => {
      const rep = certRep((await post(await pkcsReq(first, ra, { transactionId: 'tx-8c', messageType: MESSAGE_TYPE.GetCRL, csr: issuerAndSerialNumber(current.der) }))).body, ra);
      expect(rep.status).toBe('0');
      const crlPem = openssl(['pkcs7', '-inform', 'DER', '-print_certs'], decrypt(rep, first.certFile, first.keyFile)).toString();
      expect(crlPem).toContain('-----BEGIN X509 CRL-----');
      const issuing = file('issuing.pem', new crypto.X509Certificate(t.hierarchy.issuing.der).toString());
      const verdict = opensslStatus(['crl', '-noout', '-CAfile', issuing], Buffer.from(crlPem.slice(crlPem.indexOf('-----BEGIN X509 CRL-----'))));
      expect(verdict.stderr).toContain('verify OK');
      const unknown = Buffer.from(issuerAndSerialNumber(current.der));
      unknown[unknown.length - 1] ^= 0x01; // a serial this CA never issued
      const none = certRep((await post(await pkcsReq(first, ra, { transactionId: 'tx-8d', messageType: MESSAGE_TYPE.GetCRL, csr: unknown }))).body, ra);
      expect([none.status, none.failInfo]).toEqual(['2', '4']);
    });
  });

  it.each([
    ['garbage', Buffer.from('this is no pkiMessage')],
    ['truncated DER', Buffer.from([0x30, 0x82, 0x10, 0x00, 0x06])],
    ['empty', Buffer.alloc(0)],
  ])('%s body: HTTP 400', async (_name, body) => {
    expect((await post(body)).status).toBe(400);
  });

  it('an unknown operation, or an unknown path: HTTP 400 / 404', async () => {
    expect((await get('operation=Nope')).status).toBe(400);
    expect((await get('operation=GetCACaps', '/scep/nosuch')).status).toBe(404);
  });

  it('an operation the service does not know is counted as scep.unknown: a client cannot mint metric labels', async () => {
    for (const op of ['Nope', 'AttackerLabelA', 'AttackerLabelB']) expect((await get(`operation=${op}`)).status).toBe(400);
    await get('operation=GetCACaps');
    const text = await svc.registry.metrics();
    const routes = new Set([...text.matchAll(/^device_ca_http_requests_total\{[^}]*route="(scep\.[^"]*)"/gm)].map((m) => m[1]));
    expect(routes.has('scep.GetCACaps')).toBe(true);
    expect(routes.has('scep.unknown')).toBe(true);
    expect([...routes].filter((r) => /Nope|Attacker/.test(r))).toEqual([]);
  });
});

describe('SCEP disabled (the default)', () => {
  it('makes no RA key or certificate, and /scep is not served', async () => {
    const off = await makeTestCa({}, 'device-ca-scep-off-');
    const s = await buildService(off.cfg, { log: pino({ level: 'silent' }) });
    try {
      await new Promise<void>((r) => s.http.listen(0, '127.0.0.1', () => r()));
      const r = await fetch(`http://127.0.0.1:${(s.http.address() as AddressInfo).port}/scep?operation=GetCACert`);
      expect(r.status).toBe(404);
      expect(await s.store.getCaState(SCEP_RA_RECORD)).toBeNull();
      expect(fs.readdirSync(path.join(off.dir, 'keys')).filter((f) => f.includes('scep-ra'))).toEqual([]);
    } finally {
      await new Promise<void>((r) => s.http.close(() => r()));
      await s.close();
      off.cleanup();
    }
  }, 60_000);
});
