import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fsyncDirectory, writeNewFileSync } from '../data-dir/atomic-file';
import { DeviceCaError } from '../errors/device-ca-error';
import { KeyAlgorithm, KeyBackend, KeyRole, SigningKey } from './key-backend';
import { hashFor, signatureAlgorithmFor } from './signature-algorithm';

/**
 * SoftwareKeyBackend keeps keys as PKCS#8 PEM files (mode 0600) under one directory, encrypted with
 * AES-256-CBC when a passphrase is given. It is the quick-start backend; operators move to pkcs11.
 */
export class SoftwareKeyBackend implements KeyBackend {
  readonly kind = 'software';
  constructor(
    private readonly dir: string,
    private readonly passphrase?: string,
  ) {}

  async generate(role: KeyRole, algorithm: KeyAlgorithm, label: string): Promise<SigningKey> {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const file = path.join(this.dir, `${label}.key.pem`);
    if (fs.existsSync(file)) throw new DeviceCaError('conflict', `key file ${file} exists; refusing to overwrite`);
    const { privateKey } = generateKeyPair(algorithm);
    const pem = privateKey.export(this.passphrase ? { type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: this.passphrase } : { type: 'pkcs8', format: 'pem' }) as string;
    // created exclusively: never clobber a key another process created meanwhile
    writeNewFileSync(file, pem, 0o600);
    // the store records this file as the CA's key next: its name must survive a power loss
    fsyncDirectory(this.dir);
    void role;
    return softwareSigningKey(privateKey, algorithm, file);
  }

  async load(ref: string): Promise<SigningKey> {
    let pem: string;
    try {
      pem = fs.readFileSync(ref, 'utf8');
    } catch (e) {
      throw new DeviceCaError('key-backend', `cannot read key file ${ref}`, { cause: e });
    }
    let key: crypto.KeyObject;
    try {
      key = crypto.createPrivateKey({ key: pem, format: 'pem', passphrase: this.passphrase });
    } catch (e) {
      throw new DeviceCaError('key-backend', `cannot open key file ${ref} (wrong or missing passphrase?)`, { cause: e });
    }
    return softwareSigningKey(key, algorithmOfKey(key), ref);
  }

  /** probe: the key file is there and readable by this process (its contents are not read: a health check parses no key). */
  async probe(ref: string): Promise<void> {
    try {
      await fs.promises.access(ref, fs.constants.R_OK);
    } catch (e) {
      throw new DeviceCaError('key-backend', `key file ${ref} is not readable (${(e as NodeJS.ErrnoException).code ?? 'error'})`, { retryAfterSeconds: 30 });
    }
  }

  async close(): Promise<void> {}
}

export function generateKeyPair(algorithm: KeyAlgorithm): crypto.KeyPairKeyObjectResult {
  switch (algorithm) {
    case 'ecdsa-p256':
      return crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    case 'ecdsa-p384':
      return crypto.generateKeyPairSync('ec', { namedCurve: 'P-384' });
    case 'rsa-2048':
      return crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    case 'rsa-3072':
      return crypto.generateKeyPairSync('rsa', { modulusLength: 3072 });
  }
}

/** algorithmOfKey maps a Node key to the KeyAlgorithm names used in config. */
export function algorithmOfKey(key: crypto.KeyObject): KeyAlgorithm {
  const d = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec') {
    if (d.namedCurve === 'prime256v1') return 'ecdsa-p256';
    if (d.namedCurve === 'secp384r1') return 'ecdsa-p384';
  }
  if (key.asymmetricKeyType === 'rsa') {
    if (d.modulusLength === 2048) return 'rsa-2048';
    if (d.modulusLength === 3072) return 'rsa-3072';
  }
  throw new DeviceCaError('key-backend', `unsupported key type ${key.asymmetricKeyType} ${JSON.stringify(d)}`);
}

/** softwareSigningKey wraps a Node private key; signing is synchronous OpenSSL, about 25 µs for P-256. */
export function softwareSigningKey(privateKey: crypto.KeyObject, algorithm: KeyAlgorithm, ref: string): SigningKey {
  const spki = crypto.createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  const hash = hashFor(algorithm);
  const isEc = algorithm.startsWith('ecdsa');
  return {
    algorithm,
    ref,
    spki,
    signatureAlgorithm: signatureAlgorithmFor(algorithm),
    sign: (data: Buffer) => Promise.resolve(crypto.sign(hash, data, isEc ? { key: privateKey, dsaEncoding: 'der' } : privateKey)),
  };
}
