import { createECDH, generateKeyPairSync, randomBytes } from 'node:crypto';
import { kdfe, makeCredential } from '../../../../src/attestation/tpm/make-credential';
import { TPM_ALG, TPM_ECC_CURVE } from '../../../../src/attestation/tpm/tpm-constants';
import { TpmPublic } from '../../../../src/attestation/tpm/tpm-public';

// MakeCredential for ECC EKs (ECDH + KDFe, TPM 2.0 Part 1 Annex C.6.4). Whether a TPM accepts the result is
// the interop test's (tpm2_activatecredential on swtpm); here: the layout, the KDF, and bad EKs refused.
function eccEk(curveId: number, x: Buffer, y: Buffer): TpmPublic {
  return {
    type: TPM_ALG.ECC,
    nameAlg: TPM_ALG.SHA256,
    objectAttributes: 0,
    authPolicy: Buffer.alloc(0),
    raw: Buffer.alloc(0),
    symmetric: { algorithm: TPM_ALG.AES, keyBits: 128, mode: TPM_ALG.CFB },
    scheme: { scheme: TPM_ALG.NULL },
    curveId,
    kdf: { scheme: TPM_ALG.NULL },
    x,
    y,
  };
}
const name = Buffer.concat([Buffer.from([0x00, 0x0b]), randomBytes(32)]);

describe('makeCredential with an ECC EK', () => {
  const kp = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = kp.privateKey.export({ format: 'jwk' });
  const [x, y, d] = [jwk.x!, jwk.y!, jwk.d!].map((v) => Buffer.from(v, 'base64url'));

  it('sends the ephemeral point as TPMS_ECC_POINT; the EK holder derives the same seed (ECDH, KDFe "IDENTITY")', () => {
    const c = makeCredential(eccEk(TPM_ECC_CURVE.NIST_P256, x, y), name, randomBytes(32));
    // TPM2B_ENCRYPTED_SECRET { TPM2B x, TPM2B y } of 32-byte coordinates
    expect(c.secret.readUInt16BE(0)).toBe(c.secret.length - 2);
    expect(c.secret.length).toBe(2 + 2 + 32 + 2 + 32);
    const ex = c.secret.subarray(4, 36);
    const ey = c.secret.subarray(38, 70);
    const ecdh = createECDH('prime256v1');
    ecdh.setPrivateKey(d);
    const z = ecdh.computeSecret(Buffer.concat([Buffer.of(4), ex, ey]));
    expect(kdfe(TPM_ALG.SHA256, z, 'IDENTITY', ex, x, 256)).toHaveLength(32);
    // two credentials use two ephemeral keys
    expect(makeCredential(eccEk(TPM_ECC_CURVE.NIST_P256, x, y), name, randomBytes(32)).secret.equals(c.secret)).toBe(false);
  });

  it('kdfe is H(counter || Z || label || 0 || partyU || partyV), cut to the bits asked', () => {
    const one = kdfe(TPM_ALG.SHA256, Buffer.alloc(32, 1), 'IDENTITY', Buffer.alloc(32, 2), Buffer.alloc(32, 3), 256);
    const two = kdfe(TPM_ALG.SHA256, Buffer.alloc(32, 1), 'IDENTITY', Buffer.alloc(32, 2), Buffer.alloc(32, 3), 384);
    expect(two.subarray(0, 32)).toEqual(one);
    expect(two).toHaveLength(48);
  });

  it('refuses an EK point that is not on its curve, and a curve it does not know, as bad-request', () => {
    const off = Buffer.from(y);
    off[31] ^= 1;
    expect(() => makeCredential(eccEk(TPM_ECC_CURVE.NIST_P256, x, off), name, randomBytes(32))).toThrow(expect.objectContaining({ code: 'bad-request' }));
    expect(() => makeCredential(eccEk(0x0010, x, y), name, randomBytes(32))).toThrow(expect.objectContaining({ code: 'bad-request' }));
  });
});
