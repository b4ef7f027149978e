import { parseTpm2bPublic } from '../attestation/tpm/tpm-public';
import { TPMA_OBJECT } from '../attestation/tpm/tpm-constants';
import { DeviceCaError } from '../errors/device-ca-error';
import { SigningKey } from '../keys/key-backend';
import { signatureAlgorithmFor } from '../keys/signature-algorithm';
import { spkiOf } from './attested-key';
import { hex, TpmTools } from './tpm-tools';

/**
 * tpm-device-key: the private-key steps of firmware updates done by the enrolled device key in the TPM,
 * through the agent's one TPM door (TpmTools): ECDH for an encrypted release, signatures for receipts.
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
 * tpmSigningKey: the device key at `handle` as a SigningKey (ECDSA P-256 with SHA-256, DER signature by
 * tpm2_sign, as the enrollment CSR is signed), so the CMS code signs RFC 4108 receipts with it.
 */
export function tpmSigningKey(tpm: TpmTools, handle: number): SigningKey {
  const spki = spkiOf(tpm.readPublic(handle));
  return {
    algorithm: 'ecdsa-p256',
    ref: `tpm:${hex(handle)}`,
    spki,
    signatureAlgorithm: signatureAlgorithmFor('ecdsa-p256'),
    sign: (data: Buffer) => {
      const input = tpm.write('sign-in.bin', data);
      tpm.run('tpm2_sign', ['-c', hex(handle), '-g', 'sha256', '-s', 'ecdsa', '-f', 'plain', '-o', 'sign-out.bin', input]);
      return Promise.resolve(tpm.read('sign-out.bin'));
    },
  };
}

const u16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n, 0);
  return b;
};
