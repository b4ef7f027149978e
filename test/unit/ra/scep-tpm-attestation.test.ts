import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as x509 from '@peculiar/x509';
import { parseTpm2bPublic, parseTpmtPublic, tpmName } from '../../../src/attestation/tpm/tpm-public';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { EnrollOutcome } from '../../../src/ra/registration-authority';
import { children, readOne } from '../../../src/der/der-reader';
import { printableString, tlv } from '../../../src/der/der-writer';
import { SCEP_FAIL_INFO } from '../../../src/protocols/scep/scep-error-map';
import { buildCsr, tpmCertifyStatement } from '../../fixtures/build-csr';
import { openssl } from '../cms/cms-fixture';
import { certProof, makeRaHarness, RaHarness, secretProof } from './ra-harness';

// Issue 9 "Also": the evidence attribute of a CSR is checked whichever protocol carries it. Here SCEP
// (RFC 8894 PKCSReq / RenewalReq through RegistrationAuthority.scepEnroll) carries the same
// tcg-attest-tpm-certify statement EST carries, to a SCEP path (scep.paths.tpm) serving a profile with
// attestation required. The statements are made in software so the CSR's key is the certified one: the
// golden swtpm TPM2_Certify (test/fixtures/tpm) with its certified name and extraData replaced (the
// qualifiedSigner stays swtpm's: it is not checked, the AK is found by its signature), signed by a
// software AK whose TPMT_PUBLIC is the golden AK's with the software modulus.
const fx = (f: string): Buffer => fs.readFileSync(path.join(__dirname, '../../fixtures/tpm', f));
const sha256 = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');
const TPM_POLICIES = ['2.23.133.11.1.1', '2.23.133.11.1.2'];

const softAk = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const goldenAk = fx('ak.pub').subarray(2);
const akPublic = Buffer.concat([goldenAk.subarray(0, goldenAk.length - 256), Buffer.from(softAk.publicKey.export({ format: 'jwk' }).n!, 'base64url')]);
const akName = tpmName(parseTpmtPublic(akPublic));

/** tpmtPublicOf: the golden device key's TPMT_PUBLIC (ECC P-256, fixedTPM|fixedParent|sensitiveDataOrigin|sign) holding key's point */
function tpmtPublicOf(key: crypto.KeyObject): Buffer {
  const jwk = crypto.createPublicKey(key).export({ format: 'jwk' });
  const golden = fx('key.pub').subarray(2);
  const point = (c: string): Buffer => Buffer.concat([Buffer.from([0x00, 0x20]), Buffer.from(c, 'base64url')]);
  return Buffer.concat([golden.subarray(0, golden.length - 68), point(jwk.x!), point(jwk.y!)]);
}

/** replace: b with the bytes `from` (found once) replaced by `to` of the same length */
function replace(b: Buffer, from: Buffer, to: Buffer): Buffer {
  const at = b.indexOf(from);
  if (at < 0 || to.length !== from.length) throw new Error('golden bytes not found');
  const out = Buffer.from(b);
  to.copy(out, at);
  return out;
}

/** certifyStatement: TPM2_Certify(key, soft AK, qualifyingData = nonce) as a tcg-attest-tpm-certify EvidenceStatement */
function certifyStatement(key: crypto.KeyObject, nonce: Buffer): Buffer {
  const tpmtPublic = tpmtPublicOf(key);
  let attest = fx('certify.attest');
  attest = replace(attest, tpmName(parseTpm2bPublic(fx('key.pub'))), tpmName(parseTpmtPublic(tpmtPublic)));
  attest = replace(attest, Buffer.from(fx('nonce.hex').toString().trim(), 'hex'), nonce);
  return tpmCertifyStatement({ tpmsAttest: attest, signature: crypto.sign('sha256', attest, softAk.privateKey), tpmtPublic });
}

let h: RaHarness;
/** profile: what the SCEP router passes for /scep/tpm (the profile scep.paths.tpm serves) */
let profile: string;
beforeAll(async () => {
  h = await makeRaHarness({
    overrides: {
      profiles: { default: {}, tpm: { attestation: 'required' }, tpmmanual: { attestation: 'required', manualApproval: true } },
      'est.labels': { default: { profile: 'default' }, tpm: {}, tpmmanual: {} },
      'scep.enabled': true,
      'scep.paths': { default: { profile: 'default' }, tpm: { profile: 'tpm' }, tpmmanual: { profile: 'tpmmanual' } },
      'enrollment.retryWindow': '10m',
    },
  });
  profile = h.cfg.scep.paths.tpm.profile;
});
afterAll(() => h?.close());

/** registered: a device with its one-time secret and the soft AK bound to it, as a completed AK registration leaves it */
async function registered(id: string): Promise<string> {
  const secret = await h.register(id);
  const now = h.now();
  const challenge = crypto.randomBytes(32);
  const audit = { type: 'tpm.ak.challenge', actor: 'test', subject: id, data: {} };
  // AK names are unique across devices: each device gets its own (the name is the store's key, not checked against TPMS_ATTEST)
  const name = `${akName.toString('hex')}:${id}`;
  const ak = { akName: name, deviceId: id, akPublic, ekCertSha256: sha256(Buffer.from(id)), ekManufacturer: null, ekModel: null };
  await h.store.saveAkChallenge({ ...ak, challengeSha256: sha256(challenge), challengeExpiresAt: new Date(now.getTime() + 60_000) }, now, audit);
  await h.store.activateAk(name, id, sha256(challenge), now, audit);
  return secret;
}

/** selfSigned: a self-signed certificate for key, made by openssl, as a SCEP client signs its PKCSReq (RFC 8894 §2.3). */
function selfSigned(key: crypto.KeyObject, cn: string): Buffer {
  const f = path.join(h.dir, `k-${crypto.randomUUID()}.pem`);
  fs.writeFileSync(f, key.export({ type: 'pkcs8', format: 'pem' }));
  return Buffer.from(new crypto.X509Certificate(openssl(['req', '-x509', '-new', '-key', f, '-subj', `/CN=${cn}`, '-days', '1'])).raw);
}

const newKey = (): crypto.KeyObject => crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
const policiesOf = (der: Buffer): readonly string[] => new x509.X509Certificate(der).getExtension(x509.CertificatePolicyExtension)?.policies ?? [];

function pkcsReq(id: string, tx: string, key: crypto.KeyObject, csr: Buffer): Promise<EnrollOutcome> {
  return h.ra.scepEnroll({ profile, kind: 'PKCSReq', transactionId: printableString(tx), signerCertificate: selfSigned(key, id), csr });
}

async function refusal(p: Promise<EnrollOutcome>): Promise<DeviceCaError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof DeviceCaError) return e;
    throw e;
  }
  throw new Error('expected a refusal');
}

function issued(out: EnrollOutcome): Extract<EnrollOutcome, { status: 'issued' }> {
  if (out.status !== 'issued') throw new Error(`expected a certificate, got ${out.status}`);
  return out;
}

const failedChecks = async (id: string): Promise<unknown[]> => (await h.audit('tpm.attestation.failed')).filter((a) => a.subject === id).map((a) => a.data);

describe('SCEP carries TPM key attestation (scep.paths.tpm -> profile with attestation: required)', () => {
  it('the config accepts a SCEP path serving an attestation profile', () => {
    expect(profile).toBe('tpm');
    expect(h.cfg.profiles.tpm.attestation).toBe('required');
  });

  it('PKCSReq with valid certify evidence (registered AK, fresh nonce of this device): issued, the certificate carries the TPM policies', async () => {
    const id = 'scep-tpm-ok';
    const secret = await registered(id);
    const { nonce } = await h.ra.tpmNonce(profile, secretProof(id, secret));
    const key = newKey();
    const csr = buildCsr({ privateKey: key, subject: [{ type: 'CN', value: id }], challengePassword: { value: secret }, evidence: certifyStatement(key, nonce) });
    const out = issued(await pkcsReq(id, 'ok-1', key, csr));
    expect(policiesOf(out.certificate)).toEqual(TPM_POLICIES);
    expect(new crypto.X509Certificate(out.certificate).publicKey.export({ type: 'spki', format: 'der' })).toEqual(crypto.createPublicKey(key).export({ type: 'spki', format: 'der' }));
    expect((await h.audit('certificate.issued')).find((a) => a.subject === id)?.data).toMatchObject({ tpmAttested: true });
    expect(await failedChecks(id)).toEqual([]);
  });

  it('the same CSR without evidence: refused (forbidden -> failInfo badRequest), audited as check "evidence", secret and nonce unspent', async () => {
    const id = 'scep-tpm-none';
    const secret = await registered(id);
    const { nonce } = await h.ra.tpmNonce(profile, secretProof(id, secret));
    const key = newKey();
    const bare = buildCsr({ privateKey: key, subject: [{ type: 'CN', value: id }], challengePassword: { value: secret } });
    const e = await refusal(pkcsReq(id, 'none-1', key, bare));
    expect({ code: e.code, message: e.message }).toEqual({ code: 'forbidden', message: 'attestation failed: evidence' });
    expect(SCEP_FAIL_INFO[e.code]).toBe('badRequest');
    expect(await failedChecks(id)).toEqual([{ check: 'evidence' }]);
    expect((await h.store.listCertificates({ deviceId: id })).items.filter((c) => c.profile !== 'tpm-ak')).toEqual([]);
    // nothing was spent: the device then enrolls with evidence under a new transaction
    const csr = buildCsr({ privateKey: key, subject: [{ type: 'CN', value: id }], challengePassword: { value: secret }, evidence: certifyStatement(key, nonce) });
    expect(policiesOf(issued(await pkcsReq(id, 'none-2', key, csr)).certificate)).toEqual(TPM_POLICIES);
  });

  it('a nonce already spent: refused as check "nonce"; RenewalReq with a fresh one is issued attested', async () => {
    const id = 'scep-tpm-reuse';
    const secret = await registered(id);
    const { nonce } = await h.ra.tpmNonce(profile, secretProof(id, secret));
    const key = newKey();
    const first = buildCsr({ privateKey: key, subject: [{ type: 'CN', value: id }], challengePassword: { value: secret }, evidence: certifyStatement(key, nonce) });
    const cert = issued(await pkcsReq(id, 'reuse-1', key, first)).certificate;

    // renewal: signed with the current certificate, a new key certified with the nonce the enrollment spent
    const renew = (k: crypto.KeyObject, n: Buffer, tx: string) =>
      h.ra.scepEnroll({
        profile,
        kind: 'RenewalReq',
        transactionId: printableString(tx),
        signerCertificate: cert,
        // the renewal CSR repeats the current certificate's subject
        csr: buildCsr({
          privateKey: k,
          subject: [
            { type: 'O', value: 'acme' },
            { type: 'CN', value: id },
          ],
          evidence: certifyStatement(k, n),
        }),
      });
    const e = await refusal(renew(newKey(), nonce, 'reuse-2'));
    expect({ code: e.code, message: e.message }).toEqual({ code: 'forbidden', message: 'attestation failed: nonce' });
    expect(await failedChecks(id)).toEqual([{ check: 'nonce' }]);

    const fresh = await h.ra.tpmNonce(profile, certProof(cert));
    const out = issued(await renew(newKey(), fresh.nonce, 'reuse-3'));
    expect(policiesOf(out.certificate)).toEqual(TPM_POLICIES);
  });

  it('manual approval: the PKCSReq is checked (nonce spent) when queued; once approved, the CertPoll issues it with the TPM policies', async () => {
    const id = 'scep-tpm-held';
    const manual = h.cfg.scep.paths.tpmmanual.profile;
    const secret = await registered(id);
    const { nonce } = await h.ra.tpmNonce(manual, secretProof(id, secret));
    const key = newKey();
    const csr = buildCsr({ privateKey: key, subject: [{ type: 'CN', value: id }], challengePassword: { value: secret }, evidence: certifyStatement(key, nonce) });
    const signer = selfSigned(key, id);
    const first = await h.ra.scepEnroll({ profile: manual, kind: 'PKCSReq', transactionId: printableString('held-1'), signerCertificate: signer, csr });
    if (first.status !== 'pending') throw new Error(`expected PENDING, got ${first.status}`);
    // the evidence was checked before the operator sees the request: its nonce is gone
    expect(await h.store.consumeNonce(id, sha256(nonce), h.now())).toBe(false);
    await h.ra.decideRequest(first.requestId, 'approved', 'operator');
    // CertPoll (RFC 8894 §3.3.3): IssuerAndSubject of the self-signed certificate, the same transactionID and signer
    const f = children(children(readOne(signer, 0x30))[0]);
    const i = f[0].tag === 0xa0 ? 1 : 0;
    const out = issued(await h.ra.scepPoll({ profile: manual, transactionId: printableString('held-1'), signerCertificate: signer, issuerAndSubject: tlv(0x30, f[i + 2].full, f[i + 4].full) }));
    expect(policiesOf(out.certificate)).toEqual(TPM_POLICIES);
    expect(await failedChecks(id)).toEqual([]);
  });
});
