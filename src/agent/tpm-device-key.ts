import { parseTpm2bPublic } from '../attestation/tpm/tpm-public';
import { TPMA_OBJECT } from '../attestation/tpm/tpm-constants';
import { DeviceCaError } from '../errors/device-ca-error';
import { SigningKey } from '../keys/key-backend';
import { signatureAlgorithmFor } from '../keys/signature-algorithm';
import { spkiOf, tpmSignatureOf } from './attested-key';
import { hex, TpmTools } from './tpm-tools';

/**
 * tpm-device-key: the private-key steps of firmware updates done by the enrolled device key in the TPM,
 * through the agent's one TPM door (TpmTools): ECDH or RSA-OAEP for an encrypted release, signatures
 * for receipts.
 */

/** keyCanDecrypt: whether the persistent key at `handle` has the decrypt attribute (TPMA_OBJECT, TPM 2.0 Part 2 §8.3). */
export function keyCanDecrypt(tpm: TpmTools, handle: number): boolean {
  return (parseTpm2bPublic(tpm.readPublic(handle)).objectAttributes & TPMA_OBJECT.decrypt) !== 0;
}

/**
 * tpmEcdhZ: the ECDH shared secret Z of the key at `handle` with `point` (an uncompressed X9.62 point,
 * as a KeyAgreeRecipientInfo's originator key carries it): TPM2_ECDH_ZGen through tpm2_ecdhzgen, whose
 * input and output are TPM2B_ECC_POINTs (TPM 2.0 Part 2 §11.2.5.2); Z is the output's x-coordinate
 * (RFC 5753 §3.1.2, SEC 1 §3.3.1).
 */
export function tpmEcdhZ(tpm: TpmTools, handle: number, point: Buffer): Buffer {
  if (point.length < 3 || point[0] !== 0x04 || point.length % 2 !== 1) throw new DeviceCaError('bad-request', 'the originator key of the release is not an uncompressed EC point');
  const n = (point.length - 1) / 2;
  const inner = Buffer.concat([u16(n), point.subarray(1, 1 + n), u16(n), point.subarray(1 + n)]);
  const input = tpm.write('ecdh-in.bin', Buffer.concat([u16(inner.length), inner]));
  tpm.run('tpm2_ecdhzgen', ['-c', hex(handle), '-u', input, '-o', 'ecdh-z.bin']);
  const out = tpm.read('ecdh-z.bin');
  const xLen = out.length >= 4 ? out.readUInt16BE(2) : -1;
  if (xLen <= 0 || 4 + xLen > out.length) throw new DeviceCaError('key-backend', 'tpm2_ecdhzgen: the TPM returned no ECC point');
  return Buffer.from(out.subarray(4, 4 + xLen));
}

/**
 * tpmOaepDecrypt: the content key of a release's RSA-OAEP KeyTransRecipientInfo, undone by the RSA key at
 * `handle` with TPM2_RSA_Decrypt (TPM 2.0 Part 3 §14.3) through tpm2_rsadecrypt. The scheme is named
 * with its hash, `oaep-sha256`: the TPM uses that one hash for the label and for MGF1 (TPM 2.0 Part 1
 * Annex B, RSAES_OAEP), which is what the CA writes (rsa-oaep-recipient.ts: SHA-256, MGF1-SHA-256, RFC 8017
 * §7.1); the label is the empty one, RFC 4055 §4.1's default (no -l). A TPM that cannot do OAEP with
 * SHA-256 fails the command: the error names the tool.
 */
export function tpmOaepDecrypt(tpm: TpmTools, handle: number, encryptedKey: Buffer): Buffer {
  const input = tpm.write('oaep-in.bin', encryptedKey);
  tpm.run('tpm2_rsadecrypt', ['-c', hex(handle), '-s', 'oaep-sha256', '-o', 'oaep-out.bin', input]);
  return tpm.read('oaep-out.bin');
}

/**
 * tpmSigningKey: the device key at `handle` as a SigningKey (SHA-256 with ECDSA P-256 or RSA PKCS#1 v1.5
 * by tpm2_sign, as the enrollment CSR is signed: tpmSignatureOf), so the CMS code signs RFC 4108 receipts
 * with it.
 */
export function tpmSigningKey(tpm: TpmTools, handle: number): SigningKey {
  const pub = tpm.readPublic(handle);
  const spki = spkiOf(pub);
  const how = tpmSignatureOf(pub);
  return {
    algorithm: how.algorithm,
    ref: `tpm:${hex(handle)}`,
    spki,
    signatureAlgorithm: signatureAlgorithmFor(how.algorithm),
    sign: (data: Buffer) => {
      const input = tpm.write('sign-in.bin', data);
      tpm.run('tpm2_sign', ['-c', hex(handle), ...how.signArgs, '-o', 'sign-out.bin', input]);
      return Promise.resolve(tpm.read('sign-out.bin'));
    },
  };
}

const u16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n, 0);
  return b;
};
