import { constants, createCipheriv, createECDH, createHash, createHmac, publicEncrypt, randomBytes } from 'node:crypto';
import { DeviceCaError } from '../../errors/device-ca-error';
import { HASH_BY_ALG, TPM_ALG, TPM_ECC_CURVE } from './tpm-constants';
import { TpmPublic, tpmPublicKey } from './tpm-public';

/**
 * kdfa is the TPM's key derivation (TPM 2.0 Part 1 §11.4.10.2, NIST SP 800-108 counter mode with HMAC):
 * K(i) = HMAC(key, [i]32 || label || 0x00 || contextU || contextV || [bits]32), concatenated and cut to bits.
 */
export function kdfa(hashAlg: number, key: Buffer, label: string, contextU: Buffer, contextV: Buffer, bits: number): Buffer {
  const h = HASH_BY_ALG.get(hashAlg);
  if (!h) throw new DeviceCaError('bad-request', `KDFa: unknown hash 0x${hashAlg.toString(16)}`);
  const bytes = Math.ceil(bits / 8);
  const bitsBuf = Buffer.alloc(4);
  bitsBuf.writeUInt32BE(bits);
  const parts: Buffer[] = [];
  for (let i = 1, have = 0; have < bytes; i++) {
    const counter = Buffer.alloc(4);
    counter.writeUInt32BE(i);
    const k = createHmac(h.node, key).update(counter).update(label, 'latin1').update(Buffer.of(0)).update(contextU).update(contextV).update(bitsBuf).digest();
    parts.push(k);
    have += k.length;
  }
  return Buffer.concat(parts).subarray(0, bytes);
}

/**
 * kdfe is the TPM's KDF for ECDH shared secrets (TPM 2.0 Part 1 §11.4.10.3, the SP 800-56A concatenation
 * KDF): K(i) = H([i]32 || Z || label || 0x00 || partyUInfo || partyVInfo), concatenated and cut to bits.
 */
export function kdfe(hashAlg: number, z: Buffer, label: string, partyUInfo: Buffer, partyVInfo: Buffer, bits: number): Buffer {
  const h = HASH_BY_ALG.get(hashAlg);
  if (!h) throw new DeviceCaError('bad-request', `KDFe: unknown hash 0x${hashAlg.toString(16)}`);
  const bytes = Math.ceil(bits / 8);
  const parts: Buffer[] = [];
  for (let i = 1, have = 0; have < bytes; i++) {
    const counter = Buffer.alloc(4);
    counter.writeUInt32BE(i);
    const k = createHash(h.node).update(counter).update(z).update(label, 'latin1').update(Buffer.of(0)).update(partyUInfo).update(partyVInfo).digest();
    parts.push(k);
    have += k.length;
  }
  return Buffer.concat(parts).subarray(0, bytes);
}

/** ECDH_CURVES: the TPM curves an EK may use, with Node's name and the coordinate size in bytes. */
const ECDH_CURVES: ReadonlyMap<number, { node: string; size: number }> = new Map([
  [TPM_ECC_CURVE.NIST_P256, { node: 'prime256v1', size: 32 }],
  [TPM_ECC_CURVE.NIST_P384, { node: 'secp384r1', size: 48 }],
  [TPM_ECC_CURVE.NIST_P521, { node: 'secp521r1', size: 66 }],
]);

const leftPad = (b: Buffer, size: number): Buffer => (b.length >= size ? b : Buffer.concat([Buffer.alloc(size - b.length), b]));

/**
 * eccSeed makes the seed for an ECC EK (TPM 2.0 Part 1 Annex C.6.4, "ECC secret sharing for objects"):
 * an ephemeral key on the EK's curve, Z = x of ECDH(ephemeral, EK), seed = KDFe(nameAlg, Z, "IDENTITY",
 * x(ephemeral), x(EK)); the ephemeral public point (TPMS_ECC_POINT) is the encrypted secret.
 */
function eccSeed(ek: Extract<TpmPublic, { type: typeof TPM_ALG.ECC }>, seedBytes: number): { seed: Buffer; encrypted: Buffer } {
  const curve = ECDH_CURVES.get(ek.curveId);
  if (!curve) throw new DeviceCaError('bad-request', `endorsement key curve 0x${ek.curveId.toString(16)} is not supported`);
  const ecdh = createECDH(curve.node);
  const pub = ecdh.generateKeys();
  const ex = pub.subarray(1, 1 + curve.size);
  const ey = pub.subarray(1 + curve.size);
  const ekX = leftPad(ek.x, curve.size);
  let z: Buffer;
  try {
    z = ecdh.computeSecret(Buffer.concat([Buffer.of(4), ekX, leftPad(ek.y, curve.size)]));
  } catch {
    throw new DeviceCaError('bad-request', 'endorsement key is not a point on its curve');
  }
  const seed = kdfe(ek.nameAlg, z, 'IDENTITY', ex, ekX, seedBytes * 8);
  return { seed, encrypted: Buffer.concat([tpm2b(ex), tpm2b(ey)]) };
}

function tpm2b(b: Buffer): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length);
  return Buffer.concat([len, b]);
}

/**
 * Credential is what TPM2_MakeCredential returns: credentialBlob is a TPM2B_ID_OBJECT and secret a
 * TPM2B_ENCRYPTED_SECRET, both marshalled with their size prefix, ready for TPM2_ActivateCredential.
 */
export interface Credential {
  credentialBlob: Buffer;
  secret: Buffer;
}

/**
 * makeCredential does TPM2_MakeCredential in software (TPM 2.0 Part 1 §24, Part 3 §12.6) for an RSA EK:
 * only the TPM that holds the EK's private key, and in it only the object named `objectName`, can recover
 * `credential`. So a device that returns it proves the AK lives in the same TPM as the certified EK.
 * The seed is RSA-OAEP encrypted with label "IDENTITY\0" (Part 1 Annex B.10.3); the symmetric key is
 * KDFa(seed, "STORAGE", name) for the EK's AES-CFB with a zero IV, the HMAC key KDFa(seed, "INTEGRITY").
 * For an ECC EK the seed comes from ECDH with an ephemeral key and KDFe instead (eccSeed, Part 1 Annex C.6.4).
 */
export function makeCredential(ek: TpmPublic, objectName: Buffer, credential: Buffer, seed?: Buffer): Credential {
  if (ek.symmetric.algorithm !== TPM_ALG.AES || ek.symmetric.mode !== TPM_ALG.CFB || !ek.symmetric.keyBits) {
    throw new DeviceCaError('bad-request', 'endorsement key is not a storage key with AES-CFB');
  }
  const h = HASH_BY_ALG.get(ek.nameAlg)!;
  if (credential.length === 0 || credential.length > h.size) {
    throw new DeviceCaError('internal', `credential must be 1..${h.size} bytes`);
  }
  let s: Buffer;
  let encSeed: Buffer;
  if (ek.type === TPM_ALG.ECC) {
    // the seed comes from ECDH: a given seed cannot be used (tests of the RSA layout pass one)
    ({ seed: s, encrypted: encSeed } = eccSeed(ek, h.size));
  } else {
    s = seed ?? randomBytes(h.size);
    encSeed = publicEncrypt({ key: tpmPublicKey(ek), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: h.node, oaepLabel: Buffer.from('IDENTITY\0', 'latin1') }, s);
  }
  const symKey = kdfa(ek.nameAlg, s, 'STORAGE', objectName, Buffer.alloc(0), ek.symmetric.keyBits);
  const cipher = createCipheriv(`aes-${ek.symmetric.keyBits}-cfb`, symKey, Buffer.alloc(16));
  const encIdentity = Buffer.concat([cipher.update(tpm2b(credential)), cipher.final()]);
  const hmacKey = kdfa(ek.nameAlg, s, 'INTEGRITY', Buffer.alloc(0), Buffer.alloc(0), h.size * 8);
  const outerHmac = createHmac(h.node, hmacKey).update(encIdentity).update(objectName).digest();
  return { credentialBlob: tpm2b(Buffer.concat([tpm2b(outerHmac), encIdentity])), secret: tpm2b(encSeed) };
}

/**
 * tpm2ToolsCredentialFile lays a credential out as tpm2-tools 5 reads it (`tpm2_activatecredential -i`):
 * magic 0xBADCC0DE, version 1, then TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET. The agent writes it.
 */
export function tpm2ToolsCredentialFile(c: Credential): Buffer {
  const hdr = Buffer.alloc(8);
  hdr.writeUInt32BE(0xbadcc0de, 0);
  hdr.writeUInt32BE(1, 4);
  return Buffer.concat([hdr, c.credentialBlob, c.secret]);
}
