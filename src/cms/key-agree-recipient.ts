import * as crypto from 'node:crypto';
import { children, readOne } from '../der/der-reader';
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

/**
 * keyAgreeRecipientInfo wraps `cek` to every certificate given (all on one curve) in one
 * KeyAgreeRecipientInfo (RFC 5652 §6.2.2, version 3) with one ephemeral-static ECDH originator key
 * (RFC 5753 §3.1.1: the ephemeral public key is shared, each recipient gets its own
 * RecipientEncryptedKey). The KEK of each recipient is the ANSI X9.63 KDF of the shared secret with
 * ECC-CMS-SharedInfo (RFC 5753 §7.2); no ukm.
 */
export function keyAgreeRecipientInfo(cek: Buffer, curve: EcCurve, recipients: { certificate: Buffer; publicKey: crypto.KeyObject }[]): Buffer {
  const { scheme, hash } = KDF_BY_CURVE[curve];
  const ecdh = crypto.createECDH(curve);
  const ephemeral = ecdh.generateKeys(); // uncompressed point
  const sharedInfo = seq(KEY_WRAP, contextExplicit(2, octetString(uint32(KEK_BYTES * 8))));
  const reks = recipients.map((r) => {
    if (curveOf(r.publicKey) !== curve) throw new DeviceCaError('bad-algorithm', 'a recipient key is not on the curve of its key-agreement group');
    const z = ecdh.computeSecret(rawPoint(r.publicKey));
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

/** rawPoint: the EC point (SEC 1 §2.3.3) of a public key: the subjectPublicKey BIT STRING of its SPKI, unused-bits octet dropped. */
function rawPoint(key: crypto.KeyObject): Buffer {
  const spki = key.export({ type: 'spki', format: 'der' });
  return children(readOne(spki, 0x30), 2)[1].value.subarray(1);
}
