import { createHash, X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseTpm2bPublic, tpmPublicKey } from '../../../src/attestation/tpm/tpm-public';
import { TpmAttestation, TpmProfilePolicy } from '../../../src/ra/tpm-attestation';
import { makeRaHarness, RaHarness, secretProof } from './ra-harness';

// The profile's TPM policy beyond the evidence itself (issue 9 points 4 and 5): the manufacturer/model
// allow-list read from the EK certificate, and the firmware version the TPM reports in TPMS_ATTEST.
// Golden bytes from swtpm (test/fixtures/tpm/generate.sh): manufacturer id:00001014, model swtpm,
// firmware 0x2019102300163636.
const fx = (f: string): Buffer => fs.readFileSync(path.join(__dirname, '../../fixtures/tpm', f));
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const nonce = Buffer.from(fx('nonce.hex').toString().trim(), 'hex');
const golden = { tpmsAttest: fx('certify.attest'), signature: fx('certify.sig'), tpmtPublic: fx('key.pub').subarray(2) };
const keySpki = tpmPublicKey(parseTpm2bPublic(fx('key.pub'))).export({ type: 'spki', format: 'der' });
const registration = { ekCertificate: fx('ek-cert.der'), ekChain: [] as Buffer[], ekPublic: fx('ek.pub'), akPublic: fx('ak.pub') };
const SWTPM = 'id:00001014';

describe('TPM policy: manufacturer/model allow-list and firmware version', () => {
  let h: RaHarness;
  let tpm: TpmAttestation;
  beforeAll(async () => {
    h = await makeRaHarness({
      ekRoots: [new X509Certificate(fx('ek-issuer.pem'))],
      overrides: {
        profiles: {
          default: {},
          infineon: { attestation: 'required', allowedTpms: [{ manufacturer: 'id:49465800' }] },
          swtpm: { attestation: 'required', allowedTpms: [{ manufacturer: SWTPM, model: 'swtpm' }] },
        },
        'est.labels': { default: { profile: 'default' }, infineon: {}, swtpm: {} },
      },
    });
    tpm = new TpmAttestation(h.store, { ekRoots: [], nonceTtlSeconds: 60, challengeTtlSeconds: 60, now: h.now });
  });
  afterAll(() => h.close());

  /** bindGoldenAk: the golden AK active for the device, as a completed registration leaves it, and the golden nonce outstanding. */
  async function bindGoldenAk(deviceId: string, ekManufacturer: string | null = SWTPM, ekModel: string | null = 'swtpm'): Promise<void> {
    const now = h.now();
    const challenge = Buffer.alloc(32, 7);
    // the store keys bindings by AK name, unique across devices: each device here gets its own key for the golden AK
    const akName = `${fx('ak.name').toString('hex')}:${deviceId}`;
    const audit = { type: 'tpm.ak.challenge', actor: 'test', subject: deviceId, data: {} };
    const akPublic = fx('ak.pub').subarray(2);
    await h.store.saveAkChallenge(
      { akName, deviceId, akPublic, ekCertSha256: sha256(Buffer.from(deviceId)), ekManufacturer, ekModel, challengeSha256: sha256(challenge), challengeExpiresAt: new Date(now.getTime() + 60_000) },
      now,
      audit,
    );
    await h.store.activateAk(akName, deviceId, sha256(challenge), now, audit);
    await h.store.saveNonce({ deviceId, nonceSha256: sha256(nonce), expiresAt: new Date(now.getTime() + 60_000) }, now, 8);
  }
  const refusals = async (deviceId: string): Promise<unknown[]> => (await h.audit('tpm.attestation.failed')).filter((a) => a.subject === deviceId).map((a) => a.data);

  it("AK registration: swtpm's EK certificate under a profile that allows only another manufacturer is 403 tpm-model, audited, no challenge stored", async () => {
    const secret = await h.register('dev-vendor');
    await expect(h.ra.tpmRegisterAk('infineon', secretProof('dev-vendor', secret), registration)).rejects.toMatchObject({ code: 'forbidden', message: 'attestation failed: tpm-model' });
    expect(await refusals('dev-vendor')).toEqual([{ check: 'tpm-model' }]);
    expect(await h.store.aksOfDevice('dev-vendor')).toEqual([]);
  });

  it('AK registration: a profile that lists swtpm (manufacturer and model) answers the challenge and records the TPM identity', async () => {
    const secret = await h.register('dev-swtpm');
    const c = await h.ra.tpmRegisterAk('swtpm', secretProof('dev-swtpm', secret), registration);
    expect(c.akName).toEqual(fx('ak.name'));
    expect(await h.store.aksOfDevice('dev-swtpm')).toMatchObject([{ status: 'pending', ekManufacturer: SWTPM, ekModel: 'swtpm' }]);
  });

  const policy = (p: TpmProfilePolicy): TpmProfilePolicy => p;

  it('certify: accepted at or above the minimum firmware version (nonce consumed)', async () => {
    await bindGoldenAk('dev-fw-ok');
    await expect(tpm.checkCertify('dev-fw-ok', golden, keySpki, undefined, policy({ allowedTpms: [{ manufacturer: SWTPM, minFirmwareVersion: 0x2019102300163636n }] }))).resolves.toBeDefined();
    await expect(tpm.checkCertify('dev-fw-ok', golden, keySpki)).rejects.toMatchObject({ message: 'attestation failed: nonce' });
  });

  it('certify: below the minimum firmware version is 403 firmware-version, audited, and the nonce is not spent', async () => {
    await bindGoldenAk('dev-fw-old');
    const p = policy({ allowedTpms: [{ manufacturer: SWTPM, minFirmwareVersion: 0x2019102300163637n }] });
    await expect(tpm.checkCertify('dev-fw-old', golden, keySpki, undefined, p)).rejects.toMatchObject({ code: 'forbidden', message: 'attestation failed: firmware-version' });
    expect(await refusals('dev-fw-old')).toEqual([{ check: 'firmware-version' }]);
    await expect(tpm.checkCertify('dev-fw-old', golden, keySpki)).resolves.toBeDefined();
  });

  it('certify: an AK whose TPM is off the allow-list now (registered under another profile or before the list changed) is 403 tpm-model', async () => {
    await bindGoldenAk('dev-moved');
    await expect(tpm.checkCertify('dev-moved', golden, keySpki, undefined, policy({ allowedTpms: [{ manufacturer: 'id:49465800' }] }))).rejects.toMatchObject({
      message: 'attestation failed: tpm-model',
    });
    await bindGoldenAk('dev-anon', null, null);
    await expect(tpm.checkCertify('dev-anon', golden, keySpki, undefined, policy({ allowedTpms: [{ manufacturer: SWTPM }] }))).rejects.toMatchObject({ message: 'attestation failed: tpm-model' });
  });
});
