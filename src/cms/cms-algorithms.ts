import { DeviceCaError } from '../errors/device-ca-error';

/** CMS_OID: the object identifiers of the CMS structures and attributes device-ca reads and writes (RFC 5652, RFC 2985). */
export const CMS_OID = {
  data: '1.2.840.113549.1.7.1',
  signedData: '1.2.840.113549.1.7.2',
  envelopedData: '1.2.840.113549.1.7.3',
  contentType: '1.2.840.113549.1.9.3',
  messageDigest: '1.2.840.113549.1.9.4',
  signingTime: '1.2.840.113549.1.9.5',
  rsaEncryption: '1.2.840.113549.1.1.1',
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
