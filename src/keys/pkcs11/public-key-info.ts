import { DeviceCaError } from '../../errors/device-ca-error';
import { NULL, bitString, integerFromUnsigned, oid, seq } from '../../der/der-writer';
import { OID } from '../../der/oids';
import { readOne } from '../../der/der-reader';
import { KeyAlgorithm } from '../key-backend';

/**
 * public-key-info: turning what a token stores (CKA_EC_PARAMS + CKA_EC_POINT, CKA_MODULUS +
 * CKA_PUBLIC_EXPONENT) into the DER structures X.509 wants, and raw PKCS#11 signatures into X.509
 * signature values. test/unit/keys/pkcs11-public-key-info.test.ts checks every output byte for byte
 * against Node's crypto for the same key.
 */

const EC_PUBLIC_KEY = oid(OID.ecPublicKey);
const RSA_ALG_ID = seq(oid(OID.rsaEncryption), NULL);

/** EC_CURVES: CKA_EC_PARAMS is the DER namedCurve OID (X9.62 ECParameters, the only form device-ca accepts). */
export const EC_CURVES = {
  'ecdsa-p256': { params: oid(OID.secp256r1), fieldBytes: 32 },
  'ecdsa-p384': { params: oid(OID.secp384r1), fieldBytes: 48 },
} as const;

export type EcAlgorithm = keyof typeof EC_CURVES;
export const isEcAlgorithm = (a: KeyAlgorithm): a is EcAlgorithm => a === 'ecdsa-p256' || a === 'ecdsa-p384';

/** ecAlgorithmOf maps CKA_EC_PARAMS to a KeyAlgorithm, or undefined for curves device-ca does not sign with. */
export function ecAlgorithmOf(params: Buffer): EcAlgorithm | undefined {
  for (const [alg, c] of Object.entries(EC_CURVES)) if (c.params.equals(params)) return alg as EcAlgorithm;
  return undefined;
}

/** rsaAlgorithmOf maps a modulus to a KeyAlgorithm by its bit length. */
export function rsaAlgorithmOf(modulus: Buffer): KeyAlgorithm | undefined {
  const bits = bitLength(modulus);
  if (bits === 2048) return 'rsa-2048';
  if (bits === 3072) return 'rsa-3072';
  return undefined;
}

function bitLength(b: Buffer): number {
  let i = 0;
  while (i < b.length && b[i] === 0) i++;
  if (i === b.length) return 0;
  return (b.length - i - 1) * 8 + (32 - Math.clz32(b[i]));
}

/**
 * ecPointFromAttribute reads CKA_EC_POINT. PKCS#11 v2.40 §2.3.3 says it is a DER OCTET STRING holding
 * the X9.62 point, and SoftHSM does that; some older tokens return the bare point. Tell them apart by
 * length, since an uncompressed point also starts with 0x04.
 */
export function ecPointFromAttribute(value: Buffer, fieldBytes: number): Buffer {
  const rawLen = 1 + 2 * fieldBytes;
  if (value.length === rawLen && value[0] === 0x04) return value;
  try {
    const point = readOne(value, 0x04).value;
    if (point.length === rawLen && point[0] === 0x04) return point;
  } catch {
    /* fall through */
  }
  throw new DeviceCaError('key-backend', 'CKA_EC_POINT is not an uncompressed point of the expected curve');
}

/** ecSpki builds SubjectPublicKeyInfo (RFC 5480 §2) with the namedCurve parameters, as Node exports it. */
export function ecSpki(algorithm: EcAlgorithm, point: Buffer): Buffer {
  return seq(seq(EC_PUBLIC_KEY, EC_CURVES[algorithm].params), bitString(point));
}

/** rsaSpki builds SubjectPublicKeyInfo for RSA (RFC 3279 §2.3.1): rsaEncryption, NULL, RSAPublicKey. */
export function rsaSpki(modulus: Buffer, publicExponent: Buffer): Buffer {
  return seq(RSA_ALG_ID, bitString(seq(integerFromUnsigned(modulus), integerFromUnsigned(publicExponent))));
}

/** ecdsaRawToDer turns the PKCS#11 (and WebCrypto) r||s form into the DER ECDSA-Sig-Value X.509 wants (RFC 3279 §2.2.3). */
export function ecdsaRawToDer(raw: Buffer, fieldBytes: number): Buffer {
  if (raw.length !== 2 * fieldBytes) {
    throw new DeviceCaError('key-backend', `ECDSA signature from token has ${raw.length} octets, expected ${2 * fieldBytes}`);
  }
  return seq(integerFromUnsigned(raw.subarray(0, fieldBytes)), integerFromUnsigned(raw.subarray(fieldBytes)));
}

// RFC 8017 §9.2 note 1: the DER DigestInfo prefixes for EMSA-PKCS1-v1_5
const DIGEST_INFO_PREFIX: Record<'sha256' | 'sha384' | 'sha512', Buffer> = {
  sha256: Buffer.from('3031300d060960864801650304020105000420', 'hex'),
  sha384: Buffer.from('3041300d060960864801650304020205000430', 'hex'),
  sha512: Buffer.from('3051300d060960864801650304020305000440', 'hex'),
};

/**
 * digestInfo wraps a digest for CKM_RSA_PKCS signing. Hashing in Node and sending the 51-byte
 * DigestInfo means a million-entry CRL never crosses the PKCS#11 boundary, and it works on tokens
 * without the combined CKM_SHA256_RSA_PKCS.
 */
export function digestInfo(hash: 'sha256' | 'sha384' | 'sha512', digest: Buffer): Buffer {
  return Buffer.concat([DIGEST_INFO_PREFIX[hash], digest]);
}
