import { TPM_ALG } from '../attestation/tpm/tpm-constants';
import { parseTpm2bPublic, tpmPublicKey } from '../attestation/tpm/tpm-public';
import { KeyAlgorithm } from '../keys/key-backend';
import { attestedCsr, certifyEvidence } from './attested-csr';
import { hex, TpmTools } from './tpm-tools';

/**
 * KEY_ATTRIBUTES: the device key's TPMA_OBJECT (tpm2_create -a): made in and bound to this TPM
 * (fixedTPM, fixedParent, sensitiveDataOrigin), a signing key, usable without a password (userWithAuth,
 * empty authValue) and outside dictionary-attack protection (noDA: a TLS stack using it can never lock
 * the TPM out). The CA's default key policy asks for exactly the first four.
 */
export const KEY_ATTRIBUTES = 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign|noda';

/**
 * DECRYPT_KEY_ATTRIBUTES: `agent enroll --key-decrypt` (issue 13): the same key, also a decrypt key, so
 * firmware encrypted to its certificate is opened with TPM2_ECDH_ZGen (TPM 2.0 Part 3 §14.5: an
 * unrestricted decrypt key whose scheme is ECDH or NULL; the key is made with the NULL scheme and
 * tpm2_sign names ECDSA-SHA256 per signature). The CA accepts it on profiles with tpmKeyDecrypt.
 */
export const DECRYPT_KEY_ATTRIBUTES = `${KEY_ATTRIBUTES}|decrypt`;

/** DeviceKeyAlgorithm: the device key's type (`agent enroll --key-alg`), as tpm2_create -G names it. */
export type DeviceKeyAlgorithm = 'ecc256' | 'rsa2048';
export const DEVICE_KEY_ALGORITHMS: readonly DeviceKeyAlgorithm[] = ['ecc256', 'rsa2048'];

/**
 * keyTemplate: tpm2_create -G and -a of a device key. P-256: a sign-only key names ECDSA-SHA256 as its
 * scheme, a decrypt key has the NULL scheme (a key that both signs and decrypts must: TPM 2.0 Part 2, the
 * scheme rules of TPMS_RSA_PARMS and TPMS_ECC_PARMS). RSA 2048: always the NULL scheme, so one key signs PKCS#1 v1.5 (the CSR, receipts), RSASSA-PSS
 * (TLS 1.3 CertificateVerify, RFC 8446 §4.2.3, through openssl's tpm2 provider) and, with decrypt,
 * undoes RSA-OAEP (tpm2_rsadecrypt -s oaep-sha256): the scheme is chosen per command.
 */
function keyTemplate(alg: DeviceKeyAlgorithm, decrypt: boolean): string[] {
  const attributes = ['-a', decrypt ? DECRYPT_KEY_ATTRIBUTES : KEY_ATTRIBUTES];
  if (alg === 'rsa2048') return ['-G', 'rsa2048:null', ...attributes];
  return ['-G', decrypt ? 'ecc256' : 'ecc256:ecdsa-sha256', ...attributes];
}

/**
 * createDeviceKey makes a P-256 (default) or RSA 2048 key under the owner hierarchy's storage primary
 * (the TCG SRK template of tpm2_createprimary -G ecc, re-derived each time from the TPM's seed) and makes
 * it persistent at `handle`; returns its TPM2B_PUBLIC. `decrypt`: DECRYPT_KEY_ATTRIBUTES.
 */
export function createDeviceKey(tpm: TpmTools, handle: number, decrypt = false, alg: DeviceKeyAlgorithm = 'ecc256'): Buffer {
  tpm.run('tpm2_createprimary', ['-C', 'o', '-g', 'sha256', '-G', 'ecc', '-c', 'srk.ctx']);
  const template = keyTemplate(alg, decrypt);
  tpm.run('tpm2_create', ['-C', 'srk.ctx', ...template, '-u', 'key.pub', '-r', 'key.priv']);
  tpm.run('tpm2_load', ['-C', 'srk.ctx', '-u', 'key.pub', '-r', 'key.priv', '-c', 'key.ctx']);
  tpm.persist('key.ctx', handle);
  return tpm.read('key.pub');
}

/** spkiOf: the SubjectPublicKeyInfo (DER) of a TPM2B_PUBLIC. */
export const spkiOf = (tpm2bPublic: Buffer): Buffer => tpmPublicKey(parseTpm2bPublic(tpm2bPublic)).export({ type: 'spki', format: 'der' });

/**
 * tpmSignatureOf: how the device key of a TPM2B_PUBLIC signs: the algorithm the CMS and CSR code name
 * (SHA-256 either way, as the enrollment CSR is signed) and tpm2_sign's scheme for it (ECDSA, or RSASSA
 * PKCS#1 v1.5, RFC 8017 §8.2; `-f plain` gives the DER ECDSA signature or the raw RSA signature).
 */
export function tpmSignatureOf(tpm2bPublic: Buffer): { algorithm: KeyAlgorithm; signArgs: string[] } {
  const rsa = parseTpm2bPublic(tpm2bPublic).type === TPM_ALG.RSA;
  return { algorithm: rsa ? 'rsa-2048' : 'ecdsa-p256', signArgs: ['-g', 'sha256', '-s', rsa ? 'rsassa' : 'ecdsa', '-f', 'plain'] };
}

/**
 * attestedCsrFor: TPM2_Certify of the key at `keyHandle` by the AK at `akHandle` with qualifyingData =
 * the CA's nonce, and the CSR carrying that evidence, signed by the key in the TPM (tpm2_sign).
 */
export async function attestedCsrFor(tpm: TpmTools, o: { keyHandle: number; akHandle: number; keyPublic: Buffer; nonce: Buffer; subject: Buffer }): Promise<Buffer> {
  const c = await tpm.certify(o.keyHandle, o.akHandle, o.nonce);
  const evidence = certifyEvidence({ tpmsAttest: c.attest, signature: c.signature, tpmtPublic: o.keyPublic.subarray(2) });
  const how = tpmSignatureOf(o.keyPublic);
  return attestedCsr({
    algorithm: how.algorithm,
    spki: spkiOf(o.keyPublic),
    subject: o.subject,
    evidence,
    sign: (info) => {
      tpm.write('csr.info', info);
      tpm.run('tpm2_sign', ['-c', hex(o.keyHandle), ...how.signArgs, '-o', 'csr.sig', 'csr.info']);
      return tpm.read('csr.sig');
    },
  });
}
