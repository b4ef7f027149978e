import { NULL, oid, seq } from '../der/der-writer';
import { OID } from '../der/oids';
import { KeyAlgorithm } from './key-backend';

/** hashFor: the digest each key algorithm signs with (RFC 5758 §3.2 pairs P-384 with SHA-384). */
export function hashFor(alg: KeyAlgorithm): 'sha256' | 'sha384' {
  return alg === 'ecdsa-p384' ? 'sha384' : 'sha256';
}

const ALG_IDS: Record<KeyAlgorithm, Buffer> = {
  // RFC 5758 §3.2: ECDSA AlgorithmIdentifiers omit parameters
  'ecdsa-p256': seq(oid(OID.ecdsaWithSHA256)),
  'ecdsa-p384': seq(oid(OID.ecdsaWithSHA384)),
  // RFC 4055 §5: RSA PKCS#1 v1.5 carries NULL parameters
  'rsa-2048': seq(oid(OID.sha256WithRSAEncryption), NULL),
  'rsa-3072': seq(oid(OID.sha256WithRSAEncryption), NULL),
};

/** signatureAlgorithmFor returns the DER AlgorithmIdentifier for signatures by such a key. */
export function signatureAlgorithmFor(alg: KeyAlgorithm): Buffer {
  return ALG_IDS[alg];
}
