import { children, expectTag, readOne } from '../../der/der-reader';
import { DeviceCaError } from '../../errors/device-ca-error';
import { CertifyStatement } from './certify-evidence';

/** MAX_CERTIFY_STATEMENT_BYTES: a TPMS_ATTEST, an RSA-4096 signature and a TPMT_PUBLIC stay far below. */
const MAX_CERTIFY_STATEMENT_BYTES = 4096;

/**
 * decodeTpmCertifyStatement reads a tcg-attest-tpm-certify statement (2.23.133.20.1, TCG "TPM 2.0 Keys for
 * Device Identity and Attestation", carried by draft-ietf-lamps-csr-attestation):
 *   SEQUENCE { tpmsAttest OCTET STRING, signature OCTET STRING, keyBlob OCTET STRING }
 * keyBlob is the certified key's TPMT_PUBLIC; a TPM2B_PUBLIC (the same with its 2-byte size, as
 * tpm2_create -u writes it) is accepted and unwrapped. Malformed input is 'bad-request'.
 */
export function decodeTpmCertifyStatement(der: Buffer): CertifyStatement {
  if (der.length > MAX_CERTIFY_STATEMENT_BYTES) throw new DeviceCaError('too-large', 'tcg-attest-tpm-certify statement too large');
  const parts = children(readOne(der, 0x30), 4);
  if (parts.length !== 3) throw new DeviceCaError('bad-request', 'tcg-attest-tpm-certify must be SEQUENCE { tpmsAttest, signature, keyBlob }');
  const [tpmsAttest, signature, keyBlob] = parts.map((p, i) => Buffer.from(expectTag(p, 0x04, ['tpmsAttest', 'signature', 'keyBlob'][i]).value));
  const sized = keyBlob.length >= 2 && keyBlob.readUInt16BE(0) === keyBlob.length - 2;
  return { tpmsAttest, signature, tpmtPublic: sized ? keyBlob.subarray(2) : keyBlob };
}
