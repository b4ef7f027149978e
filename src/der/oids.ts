/** oids: the object identifiers device-ca reads or writes, by name. */
export const OID = {
  // algorithms
  ecPublicKey: '1.2.840.10045.2.1',
  secp256r1: '1.2.840.10045.3.1.7',
  secp384r1: '1.3.132.0.34',
  ecdsaWithSHA256: '1.2.840.10045.4.3.2',
  ecdsaWithSHA384: '1.2.840.10045.4.3.3',
  ecdsaWithSHA512: '1.2.840.10045.4.3.4',
  rsaEncryption: '1.2.840.113549.1.1.1',
  sha256WithRSAEncryption: '1.2.840.113549.1.1.11',
  sha384WithRSAEncryption: '1.2.840.113549.1.1.12',
  sha512WithRSAEncryption: '1.2.840.113549.1.1.13',
  rsassaPss: '1.2.840.113549.1.1.10',
  ed25519: '1.3.101.112',
  // names
  commonName: '2.5.4.3',
  serialNumber: '2.5.4.5',
  organizationName: '2.5.4.10',
  organizationalUnitName: '2.5.4.11',
  // extensions
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  crlDistributionPoints: '2.5.29.31',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  authorityInfoAccess: '1.3.6.1.5.5.7.1.1',
  ocsp: '1.3.6.1.5.5.7.48.1',
  caIssuers: '1.3.6.1.5.5.7.48.2',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  // PKCS#9 / CMS
  challengePassword: '1.2.840.113549.1.9.7',
  extensionRequest: '1.2.840.113549.1.9.14',
  /** id-aa-evidence (draft-ietf-lamps-csr-attestation): TPM or other attestation evidence in a CSR */
  evidence: '1.2.840.113549.1.9.16.2.59',
  /** tcg-attest-tpm-certify (TCG): SEQUENCE { tpmsAttest, signature, keyBlob } OCTET STRINGs */
  tcgAttestTpmCertify: '2.23.133.20.1',
  /**
   * device-ca TPM quote statement (README "TPM attestation"): SEQUENCE { tpmsAttest, signature, pcrValues }.
   * Neither the TCG nor draft-ietf-lamps-csr-attestation registers a statement type for a TPM2_Quote, so it
   * is a UUID OID (ITU-T X.667: 2.25.<UUID as an integer>), which needs no registration.
   */
  deviceCaTpmQuote: '2.25.122469466147481820546994239296106441130',
  /** certificatePolicies (RFC 5280 §4.2.1.4) */
  certificatePolicies: '2.5.29.32',
  /** tcg-kp-AIKCertificate (TCG EK Credential Profile): the EKU of an attestation key certificate */
  tcgKpAkCertificate: '2.23.133.8.3',
  /** tcg-cap-verifiedTPMResidency (TCG "TPM 2.0 Keys for Device Identity and Attestation" §8): the CA verified the key lives in a TPM */
  tcgVerifiedTpmResidency: '2.23.133.11.1.1',
  /** tcg-cap-verifiedTPMFixed: the CA verified the key is fixedTPM (an identity key, not an AK) */
  tcgVerifiedTpmFixed: '2.23.133.11.1.2',
  /** tcg-cap-verifiedTPMRestricted: the CA verified the key is a restricted TPM key (an attestation key) */
  tcgVerifiedTpmRestricted: '2.23.133.11.1.3',
  signedData: '1.2.840.113549.1.7.2',
  data: '1.2.840.113549.1.7.1',
  // CRL (RFC 5280 §5.2, §5.3)
  cRLNumber: '2.5.29.20',
  cRLReason: '2.5.29.21',
  invalidityDate: '2.5.29.24',
  issuingDistributionPoint: '2.5.29.28',
  // OCSP (RFC 6960)
  ocspSigning: '1.3.6.1.5.5.7.3.9',
  ocspBasic: '1.3.6.1.5.5.7.48.1.1',
  ocspNonce: '1.3.6.1.5.5.7.48.1.2',
  ocspNoCheck: '1.3.6.1.5.5.7.48.1.5',
  // digests (OCSP CertID)
  sha1: '1.3.14.3.2.26',
  sha256: '2.16.840.1.101.3.4.2.1',
  sha384: '2.16.840.1.101.3.4.2.2',
  sha512: '2.16.840.1.101.3.4.2.3',
} as const;
