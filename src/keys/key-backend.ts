/**
 * KeyBackend is where device-ca's signing keys live: files (software) or a PKCS#11 token. The CA only
 * ever sees a SigningKey, so software and HSM keys take the same code paths.
 */
export type KeyAlgorithm = 'ecdsa-p256' | 'ecdsa-p384' | 'rsa-2048' | 'rsa-3072';
export const KEY_ALGORITHMS: readonly KeyAlgorithm[] = ['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'rsa-3072'];

/** KeyRole names what a key signs; one key per role per CA ('signer': the firmware signer CA, docs/firmware.md). */
export type KeyRole = 'root' | 'issuing' | 'ocsp' | 'ra' | 'signer';

export interface SigningKey {
  readonly algorithm: KeyAlgorithm;
  /** ref says where the key is: a file path or a PKCS#11 URI (RFC 7512). */
  readonly ref: string;
  /** spki is the DER SubjectPublicKeyInfo. */
  readonly spki: Buffer;
  /** signatureAlgorithm is the DER AlgorithmIdentifier this key signs with in X.509 structures. */
  readonly signatureAlgorithm: Buffer;
  /** sign returns the X.509 signature value: DER ECDSA-Sig-Value, or the RSA PKCS#1 v1.5 signature. */
  sign(data: Buffer): Promise<Buffer>;
}

export interface KeyBackend {
  readonly kind: string;
  /** generate creates a new non-exportable (where the backend can) key for a role. */
  generate(role: KeyRole, algorithm: KeyAlgorithm, label: string): Promise<SigningKey>;
  /** load finds an existing key by the ref that generate returned. */
  load(ref: string): Promise<SigningKey>;
  /**
   * probe checks cheaply that the key at ref could sign now (software: the file is readable; PKCS#11: a
   * session answers and the private key is found), for the health checks (key-health.ts). It never signs
   * and never reads key material into an error; it rejects with a 'key-backend' error saying what is wrong.
   */
  probe(ref: string): Promise<void>;
  close(): Promise<void>;
}
