import * as crypto from 'node:crypto';
import { children, decodeOid, readOne } from '../der/der-reader';
import { bitString, contextExplicit, contextImplicitConstructed, integer, octetString, oid, seq, tlv } from '../der/der-writer';
import { DeviceCaError } from '../errors/device-ca-error';
import { CMS_OID } from './cms-algorithms';
import { issuerAndSerialNumber } from './issuer-and-serial';

/** EcCurve: the device key curves device-ca encrypts to (RFC 5753 §7.1: P-256, P-384). */
export type EcCurve = 'prime256v1' | 'secp384r1';

/**
 * KDF_BY_CURVE pairs each curve with its key-agreement scheme, as RFC 5753 §7.1.4 / RFC 6318 do:
 * dhSinglePass-stdDH-sha256kdf-scheme for P-256, -sha384kdf-scheme for P-384; both wrap the
 * content-encryption key with AES-256 key wrap (RFC 3394), which fits the AES-256 content key.
 */
const KDF_BY_CURVE: Record<EcCurve, { scheme: string; hash: 'sha256' | 'sha384' }> = {
  prime256v1: { scheme: CMS_OID.ecdhStdSha256Kdf, hash: 'sha256' },
  secp384r1: { scheme: CMS_OID.ecdhStdSha384Kdf, hash: 'sha384' },
};
const KEY_WRAP = seq(oid(CMS_OID.aes256Wrap)); // RFC 3565 §2.3.2: parameters absent
const KEK_BYTES = 32;
const RFC3394_IV = Buffer.from('a6a6a6a6a6a6a6a6', 'hex');

/** curveOf: the named curve of an EC certificate key, or null when the key is not EC on a curve we encrypt to. */
export function curveOf(key: crypto.KeyObject): EcCurve | null {
  if (key.asymmetricKeyType !== 'ec') return null;
  const c = key.asymmetricKeyDetails?.namedCurve;
  return c === 'prime256v1' || c === 'secp384r1' ? c : null;
}

const CURVE_BY_OID: ReadonlyMap<string, EcCurve> = new Map([
  ['1.2.840.10045.3.1.7', 'prime256v1'],
  ['1.3.132.0.34', 'secp384r1'],
]);

/**
 * ecPointOf reads a certificate's EC public key straight from its DER (RFC 5280 §4.1: tbsCertificate ->
 * subjectPublicKeyInfo; RFC 5480 §2.1.1: id-ecPublicKey with a named curve): its curve and point, or null
 * when the key is not EC on a curve device-ca encrypts to. It spares encrypting to a fleet the parse of a
 * whole X509Certificate and a key export per recipient, which cost more than the ECDH itself; ECDH still
 * checks the point is on the curve. 'bad-request' when the certificate cannot be read.
 */
export function ecPointOf(certificate: Buffer): { curve: EcCurve; point: Buffer } | null {
  const [tbsTlv] = children(readOne(certificate, 0x30), 3);
  if (tbsTlv?.tag !== 0x30) throw new DeviceCaError('bad-request', 'a recipient certificate cannot be read');
  const tbs = children(tbsTlv, 12);
  const spki = tbs[tbs[0]?.tag === 0xa0 ? 6 : 5];
  if (spki?.tag !== 0x30) throw new DeviceCaError('bad-request', 'a recipient certificate cannot be read');
  const [alg, key] = children(spki, 2);
  if (alg?.tag !== 0x30 || key?.tag !== 0x03) throw new DeviceCaError('bad-request', 'a recipient certificate cannot be read');
  const [algOid, params] = children(alg, 2);
  if (decodeOid(algOid) !== CMS_OID.ecPublicKey || params?.tag !== 0x06) return null;
  const curve = CURVE_BY_OID.get(decodeOid(params));
  return curve && key.value[0] === 0 ? { curve, point: key.value.subarray(1) } : null;
}

/**
 * keyAgreeRecipientInfo wraps `cek` to every certificate given (all on one curve) in one
 * KeyAgreeRecipientInfo (RFC 5652 §6.2.2, version 3) with one ephemeral-static ECDH originator key
 * (RFC 5753 §3.1.1: the ephemeral public key is shared, each recipient gets its own
 * RecipientEncryptedKey). The KEK of each recipient is the ANSI X9.63 KDF of the shared secret with
 * ECC-CMS-SharedInfo (RFC 5753 §7.2); no ukm.
 */
export function keyAgreeRecipientInfo(cek: Buffer, curve: EcCurve, recipients: { certificate: Buffer; point: Buffer }[]): Buffer {
  const { scheme, hash } = KDF_BY_CURVE[curve];
  const ecdh = crypto.createECDH(curve);
  const ephemeral = ecdh.generateKeys(); // uncompressed point
  const sharedInfo = seq(KEY_WRAP, contextExplicit(2, octetString(uint32(KEK_BYTES * 8))));
  const reks = recipients.map((r) => {
    let z: Buffer;
    try {
      z = ecdh.computeSecret(r.point);
    } catch {
      throw new DeviceCaError('bad-algorithm', 'a recipient key is not a point of the curve of its key-agreement group');
    }
    const kek = x963Kdf(hash, z, sharedInfo, KEK_BYTES);
    const w = crypto.createCipheriv('id-aes256-wrap', kek, RFC3394_IV);
    const wrapped = Buffer.concat([w.update(cek), w.final()]);
    return seq(issuerAndSerialNumber(r.certificate), octetString(wrapped));
  });
  // RFC 5753 §7.1.1: originatorKey algorithm id-ecPublicKey with absent parameters
  const originator = contextExplicit(0, contextImplicitConstructed(1, Buffer.concat([seq(oid(CMS_OID.ecPublicKey)), bitString(ephemeral)])));
  return tlv(0xa1, integer(3), originator, seq(oid(scheme), KEY_WRAP), seq(...reks)); // [1] IMPLICIT: the kari CHOICE of RecipientInfo
}

/** x963Kdf: ANSI X9.63 KDF (SEC 1 §3.6.1), K = H(Z || counter || SharedInfo) ..., as RFC 5753 §7.2 uses it. */
export function x963Kdf(hash: 'sha256' | 'sha384', z: Buffer, sharedInfo: Buffer, length: number): Buffer {
  const out: Buffer[] = [];
  for (let counter = 1, have = 0; have < length; counter++) {
    const block = crypto.createHash(hash).update(z).update(uint32(counter)).update(sharedInfo).digest();
    out.push(block);
    have += block.length;
  }
  return Buffer.concat(out).subarray(0, length);
}

function uint32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}
