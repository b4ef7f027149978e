import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { makeRaHarness, RaHarness, secretProof } from './ra-harness';

const fx = (f: string): Buffer => fs.readFileSync(path.join(__dirname, '../../fixtures/tpm', f));
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const SWTPM = 'id:00001014';

// Issue 9: two first activations of one AK at once (a device that retried before the first reply came)
// each found no AK certificate and each issued one. The binding now records its certificate, claimed
// atomically in the store: the loser answers the same certificate (or 409 while the winner still signs).
describe('TPM AK activation: two at once issue one AK certificate', () => {
  let h: RaHarness;
  beforeAll(async () => {
    h = await makeRaHarness({ overrides: { profiles: { default: {}, tpm: { attestation: 'required' } }, 'est.labels': { default: { profile: 'default' }, tpm: {} } } });
  });
  afterAll(() => h.close());

  async function pendingAk(deviceId: string, secret: Buffer): Promise<Buffer> {
    const now = h.now();
    const akName = Buffer.concat([fx('ak.name'), Buffer.from(deviceId)]);
    const audit = { type: 'tpm.ak.challenge', actor: 'test', subject: deviceId, data: {} };
    await h.store.saveAkChallenge(
      {
        akName: akName.toString('hex'),
        deviceId,
        akPublic: fx('ak.pub').subarray(2),
        ekCertSha256: sha256(Buffer.from(deviceId)),
        ekManufacturer: SWTPM,
        ekModel: 'swtpm',
        challengeSha256: sha256(secret),
        challengeExpiresAt: new Date(now.getTime() + 60_000),
      },
      now,
      audit,
    );
    return akName;
  }
  const akCerts = async (deviceId: string) => (await h.store.listCertificates({ deviceId })).items.filter((c) => c.profile === 'tpm-ak');

  it.each([2, 4])('%i activations at once: one AK certificate; every answer is that certificate or a 409', async (n) => {
    const id = `dev-race-${n}`;
    const secret = await h.register(id);
    const credential = Buffer.alloc(32, n);
    const akName = await pendingAk(id, credential);
    const got = await Promise.allSettled(Array.from({ length: n }, () => h.ra.tpmActivateAk('tpm', secretProof(id, secret), akName, credential)));
    const certs = await akCerts(id);
    expect(certs).toHaveLength(1);
    for (const r of got) {
      if (r.status === 'fulfilled') expect(r.value).toMatchObject({ serial: certs[0].serial, certificate: certs[0].der, status: 'active' });
      else expect(r.reason).toMatchObject({ code: 'conflict' });
    }
    expect(got.some((r) => r.status === 'fulfilled')).toBe(true);
    // and a repeat afterwards (the lost reply) answers the same certificate
    await expect(h.ra.tpmActivateAk('tpm', secretProof(id, secret), akName, credential)).resolves.toMatchObject({ serial: certs[0].serial });
    expect(await akCerts(id)).toHaveLength(1);
  });
});
