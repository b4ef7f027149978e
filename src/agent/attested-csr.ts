import { encodeName } from '../ca/name';
import { children, readOne } from '../der/der-reader';
import { bitString, integer, octetString, oid, seq, set, tlv } from '../der/der-writer';
import { OID } from '../der/oids';
import { KeyAlgorithm } from '../keys/key-backend';
import { signatureAlgorithmFor } from '../keys/signature-algorithm';

/** CertifyEvidence: TPM2_Certify's output and the certified key's TPMT_PUBLIC (TPM2B_PUBLIC without its size). */
export interface CertifyEvidence {
  tpmsAttest: Buffer;
  signature: Buffer;
  tpmtPublic: Buffer;
}

/**
 * certifyEvidence encodes the CSR's evidence attribute value in the newest form of
 * draft-ietf-lamps-csr-attestation: EvidenceStatements ::= SEQUENCE OF EvidenceStatement, one statement
 * of type tcg-attest-tpm-certify (2.23.133.20.1) whose stmt is { TPMS_ATTEST, TPMT_SIGNATURE, TPMT_PUBLIC }
 * as OCTET STRINGs (the form ra/csr.ts reads; the AK certificate is known to the CA, so no certs).
 */
export function certifyEvidence(e: CertifyEvidence): Buffer {
  const stmt = seq(octetString(e.tpmsAttest), octetString(e.signature), octetString(e.tpmtPublic));
  return seq(seq(oid(OID.tcgAttestTpmCertify), stmt));
}

/**
 * attestedCsr builds a PKCS#10 request (RFC 2986 §4) for a key held in the TPM: the subject (DER
 * Name: `deviceSubject` for a first enrollment, `certificateSubject` of the current certificate for a
 * renewal, RFC 7030 §4.2.2), the evidence attribute (OID id-aa-evidence), signed by `sign` (the
 * TPM: tpm2_sign over the DER CertificationRequestInfo with SHA-256; `algorithm` names the signature:
 * ECDSA P-256 (the default) or RSA PKCS#1 v1.5).
 */
export function attestedCsr(o: { algorithm?: KeyAlgorithm; spki: Buffer; subject: Buffer; evidence: Buffer; sign: (info: Buffer) => Buffer }): Buffer {
  const attrs = [seq(oid(OID.evidence), set(o.evidence))];
  const info = seq(integer(0), o.subject, o.spki, tlv(0xa0, ...attrs));
  return seq(info, signatureAlgorithmFor(o.algorithm ?? 'ecdsa-p256'), bitString(o.sign(info)));
}

/** deviceSubject: the Name of a first enrollment, CN = the device id (the RA's identity rule). */
export const deviceSubject = (deviceId: string): Buffer => encodeName([{ type: 'CN', value: deviceId }]);

/** certificateSubject: the DER subject Name of a certificate (TBSCertificate, RFC 5280 §4.1), repeated by a renewal's CSR. */
export function certificateSubject(certDer: Buffer): Buffer {
  const tbs = children(children(readOne(certDer, 0x30))[0]);
  return tbs[tbs[0].tag === 0xa0 ? 5 : 4].full;
}
