import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { KeyTransportDecryptor, softwareKeyTransport, tokenKeyTransport } from '../cms/rsa-key-transport';
import { Config } from '../config/schema';
import { DeviceCaError } from '../errors/device-ca-error';
import { KeyBackend } from '../keys/key-backend';
import { isRsaDecryptor } from '../keys/pkcs11/key-capabilities';

/**
 * scepRaKeyTransport opens the SCEP RA key for CMS key transport (RFC 8894 §3.2.2): a key on a token
 * decrypts there (CKM_RSA_PKCS, through the KeyRouter), a software key file is read once into memory for
 * the raw RSA operation with constant-time unpadding (Node 20 refuses PKCS#1 v1.5 private decryption,
 * CVE-2023-46809). The software backend signs but does not decrypt, so its file is opened here with the
 * same passphrase (keys.passphraseEnv).
 */
export function scepRaKeyTransport(cfg: Config, keys: KeyBackend, ref: string): KeyTransportDecryptor {
  if (ref.startsWith('pkcs11:')) {
    if (!isRsaDecryptor(keys)) throw new DeviceCaError('key-backend', `the key backend holding ${ref} cannot decrypt`);
    return tokenKeyTransport(keys, ref);
  }
  const pass = process.env[cfg.keys.passphraseEnv];
  try {
    const key = crypto.createPrivateKey({ key: fs.readFileSync(ref, 'utf8'), format: 'pem', passphrase: pass && pass.length ? pass : undefined });
    if (key.asymmetricKeyType !== 'rsa') throw new DeviceCaError('key-backend', `the SCEP RA key ${ref} is not RSA`);
    return softwareKeyTransport(key);
  } catch (e) {
    if (e instanceof DeviceCaError) throw e;
    throw new DeviceCaError('key-backend', `cannot open the SCEP RA key file ${ref}`, { cause: e });
  }
}
