import { createHash, generateKeyPairSync, sign, X509Certificate } from 'node:crypto';
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

// clockInfo checks need statements a TPM would not sign (safe = 0 on demand, a clock going backwards): the
// golden TPMS_ATTEST edited and signed by a software AK. Its TPMT_PUBLIC is the golden AK's with the
// software key's modulus in `unique` (the last 256 bytes), so everything but the key is what swtpm wrote.
describe('TPM policy: clockInfo safe and not going backwards (edited golden statements, software AK)', () => {
  let h: RaHarness;
  let tpm: TpmAttestation;
  const soft = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const modulus = Buffer.from(soft.publicKey.export({ format: 'jwk' }).n!, 'base64url');
  const goldenAk = fx('ak.pub').subarray(2);
  const akPublic = Buffer.concat([goldenAk.subarray(0, goldenAk.length - 256), modulus]);
  /** CLOCK_AT: offset of clockInfo in the golden TPMS_ATTEST (magic, type, qualifiedSigner, extraData before it) */
  const CLOCK_AT = 76;
  type Clock = { clock: bigint; resetCount: number; restartCount: number; safe?: number };
  const edit = (golden: Buffer, c: Clock): Buffer => {
    const b = Buffer.from(golden);
    b.writeBigUInt64BE(c.clock, CLOCK_AT);
    b.writeUInt32BE(c.resetCount, CLOCK_AT + 8);
    b.writeUInt32BE(c.restartCount, CLOCK_AT + 12);
    b[CLOCK_AT + 16] = c.safe ?? 1;
    return b;
  };
  /** statement: the golden TPM2_Certify of key.pub with clockInfo c, signed by the software AK (raw RSASSA signature) */
  const statement = (c: Clock) => {
    const tpmsAttest = edit(fx('certify.attest'), c);
    return { tpmsAttest, signature: sign('sha256', tpmsAttest, soft.privateKey), tpmtPublic: fx('key.pub').subarray(2) };
  };

  beforeAll(async () => {
    h = await makeRaHarness({});
    tpm = new TpmAttestation(h.store, { ekRoots: [], nonceTtlSeconds: 60, challengeTtlSeconds: 60, now: h.now });
  });
  afterAll(() => h.close());

  async function bindSoftAk(deviceId: string): Promise<void> {
    const now = h.now();
    const challenge = Buffer.alloc(32, 3);
    const audit = { type: 'tpm.ak.challenge', actor: 'test', subject: deviceId, data: {} };
    const akName = `soft:${deviceId}`;
    await h.store.saveAkChallenge(
      {
        akName,
        deviceId,
        akPublic,
        ekCertSha256: sha256(Buffer.from(deviceId)),
        ekManufacturer: SWTPM,
        ekModel: 'swtpm',
        challengeSha256: sha256(challenge),
        challengeExpiresAt: new Date(now.getTime() + 60_000),
      },
      now,
      audit,
    );
    await h.store.activateAk(akName, deviceId, sha256(challenge), now, audit);
  }
  /** certifyWith: a fresh golden nonce for the device, then checkCertify of the statement with clockInfo c */
  async function certifyWith(deviceId: string, c: Clock): Promise<unknown> {
    const now = h.now();
    await h.store.saveNonce({ deviceId, nonceSha256: sha256(nonce), expiresAt: new Date(now.getTime() + 60_000) }, now, 8);
    return tpm.checkCertify(deviceId, statement(c), keySpki);
  }
  const lastClock = async (deviceId: string) => (await h.store.getAk(`soft:${deviceId}`))?.lastClock;
  const checks = async (deviceId: string): Promise<unknown[]> => (await h.audit('tpm.attestation.failed')).filter((a) => a.subject === deviceId).map((a) => a.data);

  it("accepts the golden clockInfo (swtpm: clock 1790, resetCount 2, restartCount 0, safe) and records it as the AK's last", async () => {
    await bindSoftAk('dev-c1');
    await expect(certifyWith('dev-c1', { clock: 1790n, resetCount: 2, restartCount: 0 })).resolves.toBeDefined();
    expect(await lastClock('dev-c1')).toEqual({ clock: 1790n, resetCount: 2, restartCount: 0 });
  });

  it('refuses clockInfo.safe = 0: 403 clock-unsafe, audited, the nonce not spent, nothing recorded', async () => {
    await bindSoftAk('dev-c2');
    await expect(certifyWith('dev-c2', { clock: 1790n, resetCount: 2, restartCount: 0, safe: 0 })).rejects.toMatchObject({ code: 'forbidden', message: 'attestation failed: clock-unsafe' });
    expect(await checks('dev-c2')).toEqual([{ check: 'clock-unsafe' }]);
    expect(await lastClock('dev-c2')).toBeNull();
    await expect(tpm.checkCertify('dev-c2', statement({ clock: 1790n, resetCount: 2, restartCount: 0 }), keySpki)).resolves.toBeDefined();
  });

  it.each([
    ['clock', { clock: 4999n, resetCount: 2, restartCount: 1 }],
    ['restartCount (same resetCount)', { clock: 6000n, resetCount: 2, restartCount: 0 }],
    ['resetCount', { clock: 6000n, resetCount: 1, restartCount: 5 }],
  ])('refuses %s going backwards from the last accepted statement: 403 clock-backwards; the last stays', async (_n, c) => {
    const id = `dev-back-${_n.split(' ')[0]}`;
    await bindSoftAk(id);
    await certifyWith(id, { clock: 5000n, resetCount: 2, restartCount: 1 });
    await expect(certifyWith(id, c)).rejects.toMatchObject({ code: 'forbidden', message: 'attestation failed: clock-backwards' });
    expect(await checks(id)).toEqual([{ check: 'clock-backwards' }]);
    expect(await lastClock(id)).toEqual({ clock: 5000n, resetCount: 2, restartCount: 1 });
  });

  it('accepts what a genuine TPM reports next: the same values, a later clock, or a TPM Reset (resetCount up, restartCount back to 0)', async () => {
    await bindSoftAk('dev-c3');
    for (const c of [
      { clock: 5000n, resetCount: 2, restartCount: 1 },
      { clock: 5000n, resetCount: 2, restartCount: 1 },
      { clock: 7000n, resetCount: 2, restartCount: 2 },
      { clock: 9000n, resetCount: 3, restartCount: 0 },
    ]) {
      await expect(certifyWith('dev-c3', c)).resolves.toBeDefined();
    }
    expect(await lastClock('dev-c3')).toEqual({ clock: 9000n, resetCount: 3, restartCount: 0 });
  });

  it("checks the quote's clockInfo too (PCR policy): safe = 0 in the quote alone is 403 clock-unsafe", async () => {
    await bindSoftAk('dev-c5');
    const now = h.now();
    await h.store.saveNonce({ deviceId: 'dev-c5', nonceSha256: sha256(nonce), expiresAt: new Date(now.getTime() + 60_000) }, now, 8);
    const zeros = Array.from({ length: 8 }, () => Buffer.alloc(32));
    const pcrPolicy = { bankAlg: 0x000b, pcrs: new Map(zeros.map((v, i) => [i, v] as [number, Buffer])) };
    const quoteOf = (safe: number) => {
      const tpmsAttest = edit(fx('quote.attest'), { clock: 2041n, resetCount: 2, restartCount: 0, safe });
      return { tpmsAttest, signature: sign('sha256', tpmsAttest, soft.privateKey), pcrValues: zeros };
    };
    const certify = statement({ clock: 1790n, resetCount: 2, restartCount: 0 });
    await expect(tpm.checkCertify('dev-c5', certify, keySpki, { policy: pcrPolicy, quote: quoteOf(0) })).rejects.toMatchObject({ message: 'attestation failed: clock-unsafe' });
    await expect(tpm.checkCertify('dev-c5', certify, keySpki, { policy: pcrPolicy, quote: quoteOf(1) })).resolves.toBeDefined();
    // the newer of the two statements is recorded: the quote, made after the certify
    expect(await lastClock('dev-c5')).toEqual({ clock: 2041n, resetCount: 2, restartCount: 0 });
  });

  it('two statements of one AK accepted at once: the later one is what stays recorded', async () => {
    await bindSoftAk('dev-c4');
    const now = h.now();
    const n2 = Buffer.alloc(32, 2);
    await h.store.saveNonce({ deviceId: 'dev-c4', nonceSha256: sha256(nonce), expiresAt: new Date(now.getTime() + 60_000) }, now, 8);
    await h.store.saveNonce({ deviceId: 'dev-c4', nonceSha256: sha256(n2), expiresAt: new Date(now.getTime() + 60_000) }, now, 8);
    const later = statement({ clock: 8000n, resetCount: 2, restartCount: 0 });
    const earlierAttest = edit(fx('certify.attest'), { clock: 7000n, resetCount: 2, restartCount: 0 });
    n2.copy(earlierAttest, 44); // extraData: TPM2B at offset 42 (u16 size 32, then the nonce)
    const earlier = { ...later, tpmsAttest: earlierAttest, signature: sign('sha256', earlierAttest, soft.privateKey) };
    await Promise.allSettled([tpm.checkCertify('dev-c4', later, keySpki), tpm.checkCertify('dev-c4', earlier, keySpki)]);
    expect(await lastClock('dev-c4')).toEqual({ clock: 8000n, resetCount: 2, restartCount: 0 });
  });
});
