import { parseTpm2bPublic, tpmPublicKey } from '../attestation/tpm/tpm-public';
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

/**
 * createDeviceKey makes a P-256 ECDSA key under the owner hierarchy's storage primary (the TCG SRK
 * template of tpm2_createprimary -G ecc, re-derived each time from the TPM's seed) and makes it persistent
 * at `handle`; returns its TPM2B_PUBLIC. `decrypt`: DECRYPT_KEY_ATTRIBUTES.
 */
export function createDeviceKey(tpm: TpmTools, handle: number, decrypt = false): Buffer {
  tpm.run('tpm2_createprimary', ['-C', 'o', '-g', 'sha256', '-G', 'ecc', '-c', 'srk.ctx']);
  const template = decrypt ? ['-G', 'ecc256', '-a', DECRYPT_KEY_ATTRIBUTES] : ['-G', 'ecc256:ecdsa-sha256', '-a', KEY_ATTRIBUTES];
  tpm.run('tpm2_create', ['-C', 'srk.ctx', ...template, '-u', 'key.pub', '-r', 'key.priv']);
  tpm.run('tpm2_load', ['-C', 'srk.ctx', '-u', 'key.pub', '-r', 'key.priv', '-c', 'key.ctx']);
  tpm.persist('key.ctx', handle);
  return tpm.read('key.pub');
}

/** spkiOf: the SubjectPublicKeyInfo (DER) of a TPM2B_PUBLIC. */
export const spkiOf = (tpm2bPublic: Buffer): Buffer => tpmPublicKey(parseTpm2bPublic(tpm2bPublic)).export({ type: 'spki', format: 'der' });

/**
 * attestedCsrFor: TPM2_Certify of the key at `keyHandle` by the AK at `akHandle` with qualifyingData =
 * the CA's nonce, and the CSR carrying that evidence, signed by the key in the TPM (tpm2_sign).
 */
export async function attestedCsrFor(tpm: TpmTools, o: { keyHandle: number; akHandle: number; keyPublic: Buffer; nonce: Buffer; subject: Buffer }): Promise<Buffer> {
  const c = await tpm.certify(o.keyHandle, o.akHandle, o.nonce);
  const evidence = certifyEvidence({ tpmsAttest: c.attest, signature: c.signature, tpmtPublic: o.keyPublic.subarray(2) });
  return attestedCsr({
    spki: spkiOf(o.keyPublic),
    subject: o.subject,
    evidence,
    sign: (info) => {
      tpm.write('csr.info', info);
      tpm.run('tpm2_sign', ['-c', hex(o.keyHandle), '-g', 'sha256', '-s', 'ecdsa', '-f', 'plain', '-o', 'csr.sig', 'csr.info']);
      return tpm.read('csr.sig');
    },
  });
}
