import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { octetString, oid, seq } from '../../../src/der/der-writer';
import { generateKeyPair } from '../../../src/keys/software-key-backend';
import { buildCsr, tpmCertifyStatement } from '../../fixtures/build-csr';
import { makeRaHarness, RaHarness } from './ra-harness';

// The RA's attestation policy per profile (profiles.<name>.attestation) over the CSR evidence attribute.
// The golden TPM2_Certify (test/fixtures/tpm) certifies a TPM key whose private half stays in swtpm, so a
// CSR here is signed by a software key: the checks must reach 'key-mismatch'. The whole flow with a CSR
// signed in the TPM is the interop test's.
const tpm = (f: string): Buffer => fs.readFileSync(path.join(__dirname, '../../fixtures/tpm', f));
const golden = { tpmsAttest: tpm('certify.attest'), signature: tpm('certify.sig'), tpmtPublic: tpm('key.pub').subarray(2) };
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('RegistrationAuthority: TPM attestation policy', () => {
  let h: RaHarness;
  beforeAll(async () => {
    h = await makeRaHarness({
      overrides: { profiles: { default: {}, tpm: { attestation: 'required' }, maybe: { attestation: 'optional' } }, 'est.labels': { default: { profile: 'default' }, tpm: {}, maybe: {} } },
    });
  });
  afterAll(() => h.close());

  const csrWith = (cn: string, evidence?: Buffer): Buffer => buildCsr({ privateKey: generateKeyPair('ecdsa-p256').privateKey, subject: [{ type: 'CN', value: cn }], evidence });
  const basic = (deviceId: string, secret: string) => ({ secret: { deviceId, secret } });

  it("required: a CSR without evidence is 403 'attestation failed: evidence', audited by check name", async () => {
    const secret = await h.register('dev-none');
    await expect(h.enroll('tpm', 'enroll', csrWith('dev-none'), basic('dev-none', secret))).rejects.toMatchObject({ code: 'forbidden', message: 'attestation failed: evidence' });
    expect((await h.audit('tpm.attestation.failed')).map((a) => [a.subject, a.data])).toContainEqual(['dev-none', { check: 'evidence' }]);
    await expect(h.enroll('tpm', 'server-keygen', csrWith('dev-none'), basic('dev-none', secret))).rejects.toMatchObject({ message: 'attestation failed: evidence' });
  });

  it('off and optional: a CSR without evidence is issued; off ignores evidence it would refuse', async () => {
    const s1 = await h.register('dev-opt');
    await expect(h.issued('maybe', 'enroll', csrWith('dev-opt'), basic('dev-opt', s1))).resolves.toMatchObject({ status: 'issued' });
    const s2 = await h.register('dev-off');
    await expect(h.issued('default', 'enroll', csrWith('dev-off', tpmCertifyStatement(golden)), basic('dev-off', s2))).resolves.toMatchObject({ status: 'issued' });
  });

  it('optional: evidence present is checked (no AK registered to the device: ak-unregistered)', async () => {
    const secret = await h.register('dev-noak');
    await expect(h.enroll('maybe', 'enroll', csrWith('dev-noak', tpmCertifyStatement(golden)), basic('dev-noak', secret))).rejects.toMatchObject({ message: 'attestation failed: ak-unregistered' });
  });

  it("required: the evidence reaches TpmAttestation.checkCertify (AK signature and name pass, the CSR's key is not the certified one)", async () => {
    const secret = await h.register('dev-ak');
    const now = h.now();
    const akName = tpm('ak.name').toString('hex');
    const challenge = Buffer.alloc(32, 9);
    const audit = { type: 'tpm.ak.challenge', actor: 'test', subject: 'dev-ak', data: {} };
    await h.store.saveAkChallenge(
      {
        akName,
        deviceId: 'dev-ak',
        akPublic: tpm('ak.pub').subarray(2),
        ekCertSha256: sha256(tpm('ek-cert.der')),
        ekManufacturer: null,
        ekModel: null,
        challengeSha256: sha256(challenge),
        challengeExpiresAt: new Date(now.getTime() + 60_000),
      },
      now,
      audit,
    );
    expect(await h.store.activateAk(akName, 'dev-ak', sha256(challenge), now, audit)).toMatchObject({ status: 'active' });
    await h.store.saveNonce({ deviceId: 'dev-ak', nonceSha256: sha256(Buffer.from(tpm('nonce.hex').toString().trim(), 'hex')), expiresAt: new Date(now.getTime() + 60_000) }, now, 8);
    await expect(h.enroll('tpm', 'enroll', csrWith('dev-ak', tpmCertifyStatement(golden)), basic('dev-ak', secret))).rejects.toMatchObject({ message: 'attestation failed: key-mismatch' });
    // a malformed statement is a bad request, not a crash
    const broken = seq(oid('2.23.133.20.1'), seq(octetString(golden.tpmsAttest)));
    await expect(h.enroll('tpm', 'enroll', csrWith('dev-ak', broken), basic('dev-ak', secret))).rejects.toMatchObject({ code: 'bad-request' });
  });

  it('nonces: only on a profile with attestation, only for an authenticated device, 32 bytes, TTL on the CA clock', async () => {
    const secret = await h.register('dev-n');
    await expect(h.ra.tpmNonce('default', basic('dev-n', secret))).rejects.toMatchObject({ code: 'not-found' });
    await expect(h.ra.tpmNonce('tpm', basic('dev-n', 'wrong'))).rejects.toMatchObject({ code: 'unauthenticated' });
    await expect(h.ra.tpmNonce('tpm', {})).rejects.toMatchObject({ code: 'unauthenticated' });
    const n = await h.ra.tpmNonce('tpm', basic('dev-n', secret));
    expect(n.nonce).toHaveLength(32);
    expect(n.expiresAt.getTime() - h.now().getTime()).toBeGreaterThan((h.cfg.attestation.nonceTtl - 5) * 1000);
    expect(n.expiresAt.getTime() - h.now().getTime()).toBeLessThanOrEqual(h.cfg.attestation.nonceTtl * 1000);
    // a device bound to another profile gets no nonce here
    const other = await h.register('dev-other', { label: 'maybe' });
    await expect(h.ra.tpmNonce('tpm', basic('dev-other', other))).rejects.toMatchObject({ code: 'forbidden' });
  });
});
