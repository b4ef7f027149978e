import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { DeviceCaError } from '../../../../src/errors/device-ca-error';
import { TPM_ALG, TPM_ST_ATTEST, TPMA_OBJECT, attributeNames } from '../../../../src/attestation/tpm/tpm-constants';
import { parseTpm2bPublic, parseTpmtPublic, tpmName, tpmPublicKey } from '../../../../src/attestation/tpm/tpm-public';
import { isTpmGenerated, parseTpmsAttest } from '../../../../src/attestation/tpm/tpms-attest';
import { parseTpmtSignature, verifyTpmSignature } from '../../../../src/attestation/tpm/tpmt-signature';

// Golden bytes from swtpm + tpm2-tools: test/fixtures/tpm/generate.sh
const fx = (f: string): Buffer => readFileSync(join(__dirname, '../../../fixtures/tpm', f));
const nonce = Buffer.from(fx('nonce.hex').toString('ascii'), 'hex');

describe('TPMT_PUBLIC from swtpm', () => {
  it('computes the names tpm2-tools printed for the AK and the certified key', () => {
    expect(tpmName(parseTpm2bPublic(fx('ak.pub')))).toEqual(fx('ak.name'));
    expect(tpmName(parseTpm2bPublic(fx('key.pub')))).toEqual(fx('key.name'));
  });

  it('reads the AK as a restricted RSA-2048 signing key made in the TPM', () => {
    const ak = parseTpm2bPublic(fx('ak.pub'));
    expect(ak.type).toBe(TPM_ALG.RSA);
    if (ak.type !== TPM_ALG.RSA) return;
    expect(ak.keyBits).toBe(2048);
    expect(ak.scheme).toEqual({ scheme: TPM_ALG.RSASSA, hashAlg: TPM_ALG.SHA256 });
    expect(attributeNames(ak.objectAttributes)).toEqual(expect.arrayContaining(['fixedTPM', 'fixedParent', 'sensitiveDataOrigin', 'restricted', 'sign']));
    expect(ak.objectAttributes & TPMA_OBJECT.decrypt).toBe(0);
  });

  it('reads the device key as ECC P-256 and gives the same public key as the EK certificate does for the EK', () => {
    const key = parseTpm2bPublic(fx('key.pub'));
    expect(key.type === TPM_ALG.ECC && key.curveId).toBe(0x0003);
    expect(tpmPublicKey(key).asymmetricKeyDetails).toEqual({ namedCurve: 'prime256v1' });
    const ekFromCert = new X509Certificate(fx('ek-cert.der')).publicKey.export({ type: 'spki', format: 'der' });
    expect(tpmPublicKey(parseTpm2bPublic(fx('ek.pub'))).export({ type: 'spki', format: 'der' })).toEqual(ekFromCert);
  });

  it('sees that the loose key lacks fixedTPM and fixedParent', () => {
    const loose = parseTpm2bPublic(fx('loose-key.pub'));
    expect(loose.objectAttributes & TPMA_OBJECT.fixedTPM).toBe(0);
    expect(loose.objectAttributes & TPMA_OBJECT.fixedParent).toBe(0);
  });
});

describe('TPMS_ATTEST and TPMT_SIGNATURE from swtpm', () => {
  const ak = parseTpm2bPublic(fx('ak.pub'));

  it('parses TPM2_Certify evidence: magic, type, the nonce in extraData, the certified key by name', () => {
    const a = parseTpmsAttest(fx('certify.attest'));
    expect(isTpmGenerated(a)).toBe(true);
    expect(a.extraData).toEqual(nonce);
    expect(a.attested.type).toBe(TPM_ST_ATTEST.CERTIFY);
    if (a.attested.type === TPM_ST_ATTEST.CERTIFY) expect(a.attested.name).toEqual(fx('key.name'));
    expect(a.clockInfo.safe).toBe(true);
  });

  it('parses a quote over sha256 PCRs 0-7 with the nonce', () => {
    const a = parseTpmsAttest(fx('quote.attest'));
    expect(a.extraData).toEqual(nonce);
    expect(a.attested.type).toBe(TPM_ST_ATTEST.QUOTE);
    if (a.attested.type === TPM_ST_ATTEST.QUOTE) {
      expect(a.attested.pcrSelect).toEqual([{ hashAlg: TPM_ALG.SHA256, pcrs: [0, 1, 2, 3, 4, 5, 6, 7] }]);
      expect(a.attested.pcrDigest).toHaveLength(32);
    }
  });

  it.each(['certify', 'quote'])('verifies the AK signature over %s and refuses it after one flipped bit', (what) => {
    const attest = fx(`${what}.attest`);
    const sig = parseTpmtSignature(fx(`${what}.sig`));
    expect(sig.sigAlg).toBe(TPM_ALG.RSASSA);
    expect(verifyTpmSignature(ak, attest, sig)).toBe(true);
    const tampered = Buffer.from(attest);
    tampered[tampered.length - 1] ^= 1;
    expect(verifyTpmSignature(ak, tampered, sig)).toBe(false);
    // a different key (the certified ECC key) never verifies the AK's RSA signature
    expect(verifyTpmSignature(parseTpm2bPublic(fx('key.pub')), attest, sig)).toBe(false);
  });
});

describe('malformed TPM structures are typed errors, never crashes', () => {
  const goldens: Array<[string, (b: Buffer) => unknown]> = [
    ['ak.pub', parseTpm2bPublic],
    ['key.pub', parseTpm2bPublic],
    ['certify.attest', parseTpmsAttest],
    ['quote.attest', parseTpmsAttest],
    ['certify.sig', parseTpmtSignature],
  ];

  it.each(goldens)('%s: every truncation and one extra byte give bad-request', (file, parse) => {
    const good = fx(file);
    expect(() => parse(good)).not.toThrow();
    for (let n = 0; n < good.length; n++) {
      expect(() => parse(good.subarray(0, n))).toThrow(DeviceCaError);
    }
    try {
      parse(Buffer.concat([good, Buffer.of(0)]));
      throw new Error('accepted a trailing byte');
    } catch (e) {
      expect(e).toBeInstanceOf(DeviceCaError);
      expect((e as DeviceCaError).code).toBe('bad-request');
    }
  });

  it.each(goldens)('%s: every single-byte corruption parses or throws DeviceCaError', (file, parse) => {
    const good = fx(file);
    for (let i = 0; i < good.length; i++) {
      for (const v of [0x00, 0xff, good[i] ^ 0x80]) {
        const b = Buffer.from(good);
        b[i] = v;
        try {
          parse(b);
        } catch (e) {
          expect(e).toBeInstanceOf(DeviceCaError);
        }
      }
    }
  });

  it('refuses oversized length prefixes before allocating', () => {
    expect(() => parseTpm2bPublic(Buffer.from([0xff, 0xff]))).toThrow(/exceeds/);
    expect(() => parseTpmtPublic(Buffer.alloc(5000))).toThrow(DeviceCaError);
  });

  it('refuses a key whose ECC point is not on the curve when turning it into a key', () => {
    const key = parseTpm2bPublic(fx('key.pub'));
    if (key.type !== TPM_ALG.ECC) throw new Error('fixture');
    const off = { ...key, y: Buffer.from(key.y).fill(1) };
    expect(() => tpmPublicKey(off)).toThrow(DeviceCaError);
  });
});
