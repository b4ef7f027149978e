import { DeviceCaError } from '../errors/device-ca-error';

/** CMS_OID: the object identifiers of the CMS structures and attributes device-ca reads and writes (RFC 5652, RFC 2985). */
export const CMS_OID = {
  data: '1.2.840.113549.1.7.1',
  signedData: '1.2.840.113549.1.7.2',
  envelopedData: '1.2.840.113549.1.7.3',
  /** RFC 5652 §8: id-encryptedData (content encrypted under a key delivered apart) */
  encryptedData: '1.2.840.113549.1.7.6',
  contentType: '1.2.840.113549.1.9.3',
  messageDigest: '1.2.840.113549.1.9.4',
  signingTime: '1.2.840.113549.1.9.5',
  rsaEncryption: '1.2.840.113549.1.1.1',
  /** RFC 4108 §2: id-ct-firmwarePackage, the content type of a firmware package */
  firmwarePackage: '1.2.840.113549.1.9.16.1.16',
  /** RFC 4108 §3: id-ct-firmwareLoadReceipt, a device's receipt for a package it loaded */
  firmwareLoadReceipt: '1.2.840.113549.1.9.16.1.17',
  /** RFC 4108 §4: id-ct-firmwareLoadError, a device's report of a package it failed to load */
  firmwareLoadError: '1.2.840.113549.1.9.16.1.18',
  /** RFC 4108 §2.2.1: id-aa-firmwarePackageID */
  firmwarePackageId: '1.2.840.113549.1.9.16.2.35',
  /** RFC 4108 §2.2.2: id-aa-targetHardwareIDs */
  targetHardwareIds: '1.2.840.113549.1.9.16.2.36',
  /** RFC 4108 §2.2.4: id-aa-decryptKeyID, names the key that decrypts an EncryptedData firmware package */
  decryptKeyId: '1.2.840.113549.1.9.16.2.37',
  /** RFC 6031 §1.1: id-ct-KP-sKeyPackage, the symmetric key package content type */
  symmetricKeyPackage: '2.16.840.1.101.2.1.2.78.5',
  /** RFC 6031 §3.2.7: id-pskc-keyId (UTF8String), a symmetric key's identifier */
  pskcKeyId: '1.2.840.113549.1.9.16.12.9',
  /** RFC 4108 §2.2.5: id-aa-communityIdentifiers */
  communityIdentifiers: '1.2.840.113549.1.9.16.2.40',
  /** RFC 8017 A.2.1: id-RSAES-OAEP, and MGF1 (B.2.1) */
  rsaesOaep: '1.2.840.113549.1.1.7',
  mgf1: '1.2.840.113549.1.1.8',
  /** RFC 5753 §7.1.4: dhSinglePass-stdDH-sha256kdf-scheme and -sha384kdf-scheme (ECDH, X9.63 KDF) */
  ecdhStdSha256Kdf: '1.3.132.1.11.1',
  ecdhStdSha384Kdf: '1.3.132.1.11.2',
  /** RFC 3394 / RFC 3565 §2.3.2: id-aes256-wrap (parameters absent) */
  aes256Wrap: '2.16.840.1.101.3.4.1.45',
  ecPublicKey: '1.2.840.10045.2.1',
  /**
   * device-ca's own UUID OIDs (X.667 2.25 arc, no registration needed):
   * packageTemplate: the RFC 4108 attributes of a package nobody has signed yet, carried as an
   * OtherRevocationInfoFormat (RFC 5652 §10.2.1) until the first signer copies them into its SignerInfo;
   * genericHardware: a receipt's hwType for a module without a type of its own;
   * approvals: signed attribute of the CA's SignerInfo in an encrypted release, holding the signers'
   * SignerInfos over the plaintext image (they cannot sit beside it: their digest is of the image).
   */
  packageTemplate: '2.25.42488998365112415796939854817394427682',
  /** genericHardware: the hwType `firmware receipt` writes when the device names no hardware module type */
  genericHardware: '2.25.7327223032410910152310828997899567310',
  approvals: '2.25.34095129011205272110375071476827141686',
} as const;

/** DigestName: the message digests device-ca accepts in a CMS signature (RFC 8894 §3.5.2 lists SHA-1, SHA-256, SHA-512; SHA-384 for P-384 signers). */
export type DigestName = 'sha1' | 'sha256' | 'sha384' | 'sha512';

const DIGEST_BY_OID: ReadonlyMap<string, DigestName> = new Map([
  ['1.3.14.3.2.26', 'sha1'],
  ['2.16.840.1.101.3.4.2.1', 'sha256'],
  ['2.16.840.1.101.3.4.2.2', 'sha384'],
  ['2.16.840.1.101.3.4.2.3', 'sha512'],
]);
export const DIGEST_OID: Record<DigestName, string> = { sha1: '1.3.14.3.2.26', sha256: '2.16.840.1.101.3.4.2.1', sha384: '2.16.840.1.101.3.4.2.2', sha512: '2.16.840.1.101.3.4.2.3' };

/**
 * SIGNATURE_DIGEST: signature algorithms and the digest each implies; null for the bare rsaEncryption OID,
 * which RFC 5652 §5.3 lets a signer use and real SCEP clients do (the digest is then the SignerInfo's
 * digestAlgorithm, RFC 3370 §3.2).
 */
const SIGNATURE_DIGEST: ReadonlyMap<string, DigestName | null> = new Map([
  [CMS_OID.rsaEncryption, null],
  ['1.2.840.113549.1.1.5', 'sha1'],
  ['1.2.840.113549.1.1.11', 'sha256'],
  ['1.2.840.113549.1.1.12', 'sha384'],
  ['1.2.840.113549.1.1.13', 'sha512'],
  ['1.2.840.10045.4.1', 'sha1'],
  ['1.2.840.10045.4.3.2', 'sha256'],
  ['1.2.840.10045.4.3.3', 'sha384'],
  ['1.2.840.10045.4.3.4', 'sha512'],
]);

/** digestOf maps a digestAlgorithm OID to its name; 'bad-algorithm' for any other. */
export function digestOf(oid: string): DigestName {
  const d = DIGEST_BY_OID.get(oid);
  if (!d) throw new DeviceCaError('bad-algorithm', 'unsupported digest algorithm', { detail: oid });
  return d;
}

/**
 * signatureDigest: the digest a SignerInfo's signatureAlgorithm signs with, checked against its
 * digestAlgorithm (a signature algorithm that names another hash than the digestAlgorithm is refused).
 */
export function signatureDigest(signatureOid: string, digest: DigestName): DigestName {
  const d = SIGNATURE_DIGEST.get(signatureOid);
  if (d === undefined) throw new DeviceCaError('bad-algorithm', 'unsupported signature algorithm', { detail: signatureOid });
  if (d !== null && d !== digest) throw new DeviceCaError('bad-algorithm', 'signature algorithm and digest algorithm differ', { detail: `${signatureOid} vs ${digest}` });
  return digest;
}

/** ContentCipher: the content-encryption algorithms of SCEP (RFC 8894 §3.5.2: AES-128/256-CBC; 3DES for old clients). */
export type ContentCipher = 'aes-128-cbc' | 'aes-256-cbc' | 'des-ede3-cbc';

interface CipherSpec {
  oid: string;
  keyLength: number;
  ivLength: number;
}
export const CONTENT_CIPHERS: Record<ContentCipher, CipherSpec> = {
  'aes-128-cbc': { oid: '2.16.840.1.101.3.4.1.2', keyLength: 16, ivLength: 16 }, // RFC 3565 §4.1
  'aes-256-cbc': { oid: '2.16.840.1.101.3.4.1.42', keyLength: 32, ivLength: 16 },
  'des-ede3-cbc': { oid: '1.2.840.113549.3.7', keyLength: 24, ivLength: 8 }, // RFC 3370 §5.1
};

/** contentCipherOf maps a contentEncryptionAlgorithm OID to its cipher; 'bad-algorithm' for any other. */
export function contentCipherOf(oid: string): ContentCipher {
  for (const [name, spec] of Object.entries(CONTENT_CIPHERS)) if (spec.oid === oid) return name as ContentCipher;
  throw new DeviceCaError('bad-algorithm', 'unsupported content-encryption algorithm', { detail: oid });
}
