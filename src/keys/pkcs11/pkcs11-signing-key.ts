import * as crypto from 'node:crypto';
import * as graphene from 'graphene-pk11';
import { DeviceCaError } from '../../errors/device-ca-error';
import { KeyAlgorithm, SigningKey } from '../key-backend';
import { hashFor, signatureAlgorithmFor } from '../signature-algorithm';
import { RsaPssOptions, RsaPssSigner } from './key-capabilities';
import { EC_CURVES, digestInfo, ecdsaRawToDer, isEcAlgorithm } from './public-key-info';
import { TokenJob } from './token-threads';

/**
 * Pkcs11SigningKey is a SigningKey whose private half never leaves the token. The message is hashed in
 * Node and only the digest (ECDSA) or DigestInfo (RSA) crosses into PKCS#11, for two reasons: SoftHSM
 * 2.6 has no CKM_ECDSA_SHA256, and a CRL of tens of megabytes should not be streamed into an HSM.
 */

/** KeyLocator is how a key is found again after its handle went stale: by CKA_ID, else by CKA_LABEL. */
export interface KeyLocator {
  id?: Buffer;
  label?: string;
}

/**
 * Pkcs11KeyRunner runs one private-key operation with the key's current object handle, on a token
 * thread (token-threads.ts); it finds the key again when the handle went stale.
 */
export interface Pkcs11KeyRunner {
  runWithKey(key: Pkcs11SigningKey, what: string, job: Omit<TokenJob, 'key'>): Promise<Buffer>;
}

export class Pkcs11SigningKey implements SigningKey {
  readonly signatureAlgorithm: Buffer;
  /** cached is the private key object's handle under one pool generation: handles change after a re-login. */
  cached?: { generation: number; handle: Buffer };

  constructor(
    protected readonly runner: Pkcs11KeyRunner,
    readonly algorithm: KeyAlgorithm,
    readonly ref: string,
    readonly spki: Buffer,
    readonly locator: KeyLocator,
  ) {
    this.signatureAlgorithm = signatureAlgorithmFor(algorithm);
  }

  async sign(data: Buffer): Promise<Buffer> {
    const hash = hashFor(this.algorithm);
    const digest = crypto.createHash(hash).update(data).digest();
    if (isEcAlgorithm(this.algorithm)) {
      const fieldBytes = EC_CURVES[this.algorithm].fieldBytes;
      const raw = await this.runner.runWithKey(this, 'ECDSA signature', { op: 'sign', mechanism: graphene.MechanismEnum.ECDSA, input: digest });
      return ecdsaRawToDer(raw, fieldBytes);
    }
    return this.runner.runWithKey(this, 'RSA signature', { op: 'sign', mechanism: graphene.MechanismEnum.RSA_PKCS, input: digestInfo(hash, digest) });
  }
}

const PSS_MECH: Record<NonNullable<RsaPssOptions['hash']>, { hash: graphene.MechanismEnum; mgf: graphene.RsaMgf; len: number }> = {
  sha256: { hash: graphene.MechanismEnum.SHA256, mgf: graphene.RsaMgf.MGF1_SHA256, len: 32 },
  sha384: { hash: graphene.MechanismEnum.SHA384, mgf: graphene.RsaMgf.MGF1_SHA384, len: 48 },
  sha512: { hash: graphene.MechanismEnum.SHA512, mgf: graphene.RsaMgf.MGF1_SHA512, len: 64 },
};

/** Pkcs11RsaSigningKey adds what only RSA keys do: RSASSA-PSS and (backend-internal) PKCS#1 v1.5 decryption. */
export class Pkcs11RsaSigningKey extends Pkcs11SigningKey implements RsaPssSigner {
  constructor(
    runner: Pkcs11KeyRunner,
    algorithm: KeyAlgorithm,
    ref: string,
    spki: Buffer,
    locator: KeyLocator,
    readonly modulusBytes: number,
  ) {
    super(runner, algorithm, ref, spki, locator);
  }

  /** signRsaPss hashes in Node and signs the digest with CKM_RSA_PKCS_PSS (hash and MGF1 hash equal). */
  async signRsaPss(data: Buffer, opts: RsaPssOptions = {}): Promise<Buffer> {
    const hash = opts.hash ?? 'sha256';
    const m = PSS_MECH[hash];
    if (!m) throw new DeviceCaError('bad-request', `unsupported RSA-PSS hash ${String(hash)}`);
    const saltLength = opts.saltLength ?? m.len;
    if (!Number.isInteger(saltLength) || saltLength < 0 || saltLength > this.modulusBytes - m.len - 2) {
      throw new DeviceCaError('bad-request', `RSA-PSS salt length ${saltLength} out of range`);
    }
    const digest = crypto.createHash(hash).update(data).digest();
    const pss = { hashAlg: m.hash as number, mgf: m.mgf as number, saltLen: saltLength };
    return this.runner.runWithKey(this, 'RSA-PSS signature', { op: 'sign', mechanism: graphene.MechanismEnum.RSA_PKCS_PSS, pss, input: digest });
  }

  /** decrypt is CKM_RSA_PKCS decryption; reached through Pkcs11KeyBackend.rsaDecrypt. */
  async decrypt(ciphertext: Buffer): Promise<Buffer> {
    if (ciphertext.length !== this.modulusBytes) {
      throw new DeviceCaError('bad-request', `RSA ciphertext must be ${this.modulusBytes} octets, got ${ciphertext.length}`);
    }
    return this.runner.runWithKey(this, 'RSA decryption', { op: 'decrypt', mechanism: graphene.MechanismEnum.RSA_PKCS, input: ciphertext, maxOut: this.modulusBytes });
  }
}
