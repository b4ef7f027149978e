import * as crypto from 'node:crypto';
import * as graphene from 'graphene-pk11';
import { DeviceCaError } from '../../errors/device-ca-error';
import { KeyAlgorithm, SigningKey } from '../key-backend';
import { hashFor, signatureAlgorithmFor } from '../signature-algorithm';
import { RsaPssOptions, RsaPssSigner } from './key-capabilities';
import { EC_CURVES, digestInfo, ecdsaRawToDer, isEcAlgorithm } from './public-key-info';

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

/** Pkcs11KeyRunner runs one operation on a pooled session with the key's current object handle. */
export interface Pkcs11KeyRunner {
  withKey<T>(key: Pkcs11SigningKey, what: string, op: (session: graphene.Session, key: graphene.Key) => Promise<T>): Promise<T>;
}

export class Pkcs11SigningKey implements SigningKey {
  readonly signatureAlgorithm: Buffer;
  /** cached is the private key object under one pool generation: handles change after a re-login. */
  cached?: { generation: number; object: graphene.Key };

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
      const raw = await this.runner.withKey(this, 'ECDSA signature', (s, k) => signOnce(s, graphene.MechanismEnum.ECDSA, k, digest));
      return ecdsaRawToDer(raw, fieldBytes);
    }
    return this.runner.withKey(this, 'RSA signature', (s, k) => signOnce(s, graphene.MechanismEnum.RSA_PKCS, k, digestInfo(hash, digest)));
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
    const mech: graphene.IAlgorithm = { name: 'RSA_PKCS_PSS', params: new graphene.RsaPssParams(m.hash, m.mgf, saltLength) };
    return this.runner.withKey(this, 'RSA-PSS signature', (s, k) => signOnce(s, mech, k, digest));
  }

  /** decrypt is CKM_RSA_PKCS decryption; reached through Pkcs11KeyBackend.rsaDecrypt. */
  async decrypt(ciphertext: Buffer): Promise<Buffer> {
    if (ciphertext.length !== this.modulusBytes) {
      throw new DeviceCaError('bad-request', `RSA ciphertext must be ${this.modulusBytes} octets, got ${ciphertext.length}`);
    }
    return this.runner.withKey(this, 'RSA decryption', (s, k) => decryptOnce(s, graphene.MechanismEnum.RSA_PKCS, k, ciphertext, this.modulusBytes));
  }
}

/** NativeLib: the pkcs11js callback forms under graphene's Session (lib and handle are public there). */
type NativeLib = {
  C_Sign(h: Buffer, data: Buffer, out: Buffer, cb: (err: Error | null, sig: Buffer) => void): void;
  C_Decrypt(h: Buffer, data: Buffer, out: Buffer, cb: (err: Error | null, out: Buffer) => void): void;
};
const native = (session: graphene.Session): { lib: NativeLib; handle: Buffer } => session as unknown as { lib: NativeLib; handle: Buffer };

/** keep holds buffers alive until the native call that points into them has called back. */
function keep(...bufs: Buffer[]): number {
  return bufs.length;
}

/**
 * signOnce runs C_SignInit (synchronous: it only sets up the operation) and C_Sign through pkcs11js'
 * callback form, which runs on the libuv thread pool, so the event loop never waits for the token.
 * The input and output buffers are held by the callback's closure: pkcs11js keeps only raw pointers
 * into them while the call waits for a pool thread, and graphene's Sign.once makes a copy that nothing
 * holds, so a garbage collection in that gap let the token sign freed memory (about 1% of signatures
 * under load; test/interop/pkcs11-service-signatures.test.ts).
 */
export function signOnce(session: graphene.Session, mechanism: graphene.MechanismType, key: graphene.Key, input: Buffer): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    try {
      session.createSign(mechanism, key); // C_SignInit
      const data = Buffer.from(input);
      const out = Buffer.alloc(1024);
      const { lib, handle } = native(session);
      lib.C_Sign(handle, data, out, (err, sig) => {
        keep(data, out);
        if (err) reject(err);
        else resolve(Buffer.from(sig));
      });
    } catch (e) {
      reject(e);
    }
  });
}

/** decryptOnce is signOnce's counterpart for C_DecryptInit + C_Decrypt (callback form). */
export function decryptOnce(session: graphene.Session, mechanism: graphene.MechanismType, key: graphene.Key, input: Buffer, maxOut: number): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    try {
      session.createDecipher(mechanism, key); // C_DecryptInit
      const data = Buffer.from(input);
      const out = Buffer.alloc(maxOut);
      const { lib, handle } = native(session);
      lib.C_Decrypt(handle, data, out, (err, plain) => {
        keep(data, out);
        if (err) reject(err);
        else resolve(Buffer.from(plain));
      });
    } catch (e) {
      reject(e);
    }
  });
}
