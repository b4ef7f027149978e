import * as crypto from 'node:crypto';
import { children, decodeOid, readOne, Tlv } from '../der/der-reader';
import { DeviceCaError } from '../errors/device-ca-error';
import { CMS_OID, contentCipherOf } from './cms-algorithms';
import { issuerAndSerialNumber } from './issuer-and-serial';
import { curveOf, x963Kdf } from './key-agree-recipient';
import { contextExplicit, octetString, oid, seq } from '../der/der-writer';
import { bufferSource, ByteSource, decipherInto, SourceTlv, tlvAt, tlvBytes } from './byte-source';
import { Sink } from './file-range';

/**
 * firmware-envelope-open: what a device does with the EnvelopedData of an encrypted release
 * (envelopeToCertificates wrote it): find its own RecipientEncryptedKey (RFC 5753 ECDH, by issuer and
 * serial, among the several of one KeyAgreeRecipientInfo: pkijs decrypts only the first) or its RSA-OAEP
 * KeyTransRecipientInfo, unwrap the content key and decrypt. The device's key is a software key here; the
 * TPM path belongs to the agent. Errors: 'bad-request' (malformed, or not addressed to this certificate,
 * or does not decrypt), 'bad-algorithm'.
 */
/**
 * EnvelopeRecipient: the device certificate and what can use its private key: a software key (`key`), or
 * a key held elsewhere (the agent's TPM) that does the one private-key step itself: `agree` returns the
 * ECDH shared secret Z (the x-coordinate, RFC 5753 §3.1.2) with the originator's public point, and
 * `decryptOaep` undoes RSA-OAEP with SHA-256 (RFC 8017 §7.1.2). The KDF, key unwrap and content
 * decryption stay here, so there is one CMS reader for both.
 */
export interface EnvelopeRecipient {
  certificate: Buffer;
  key?: crypto.KeyObject;
  agree?: (originatorPoint: Buffer) => Buffer;
  decryptOaep?: (encryptedKey: Buffer) => Buffer;
}

/**
 * openFirmwareEnvelope opens an EnvelopedData ContentInfo held in memory: envelopeContentOf over the
 * Buffer, the plaintext collected.
 */
export function openFirmwareEnvelope(contentInfo: Buffer, recipient: EnvelopeRecipient): { contentType: string; content: Buffer } {
  const opened = envelopeContentOf(bufferSource(contentInfo), recipient);
  const parts: Buffer[] = [];
  opened.decrypt((c) => parts.push(Buffer.from(c)));
  return { contentType: opened.contentType, content: Buffer.concat(parts) };
}

/** EnvelopeContent: an envelope whose content key is unwrapped; `decrypt` streams the plaintext to a sink. */
export interface EnvelopeContent {
  contentType: string;
  /**
   * decrypt sends the plaintext to the sink chunk by chunk as it is deciphered; the last block is checked
   * (CBC padding) only at the end, so a sink that writes a file must not keep it unless decrypt returns.
   */
  decrypt(sink: Sink): void;
}

/** MAX_RECIPIENT_INFOS_BYTES: bound on the recipientInfos, read into memory (about 150 bytes per device: 400,000 devices). */
const MAX_RECIPIENT_INFOS_BYTES = 64 << 20;

/**
 * envelopeContentOf reads an EnvelopedData ContentInfo (RFC 5652 §6.1) from a source without reading the
 * encrypted content: it walks the headers, reads the recipientInfos, unwraps our content key, and leaves
 * the encryptedContent in the source for `decrypt`. Errors as openFirmwareEnvelope's.
 */
export function envelopeContentOf(src: ByteSource, recipient: EnvelopeRecipient): EnvelopeContent {
  const ci = tlvAt(src, 0, src.length, 'ContentInfo');
  if (ci.tag !== 0x30 || ci.end !== src.length) throw new DeviceCaError('bad-request', 'the release does not hold an EnvelopedData');
  const type = tlvAt(src, ci.valueStart, ci.end, 'contentType');
  const body = type.end < ci.end ? tlvAt(src, type.end, ci.end, 'content') : null;
  if (type.tag !== 0x06 || decodeOid(readOne(tlvBytes(src, type), 0x06)) !== CMS_OID.envelopedData || body?.tag !== 0xa0 || body.end !== ci.end)
    throw new DeviceCaError('bad-request', 'the release does not hold an EnvelopedData');
  const env = tlvAt(src, body.valueStart, body.end, 'EnvelopedData');
  if (env.tag !== 0x30 || env.end !== body.end) throw new DeviceCaError('bad-request', 'the EnvelopedData cannot be read');
  const fields: SourceTlv[] = [];
  for (let p = env.valueStart; p < env.end;) {
    if (fields.length >= 8) throw new DeviceCaError('bad-request', 'malformed DER: too many elements');
    const f = tlvAt(src, p, env.end, 'EnvelopedData field');
    fields.push(f);
    p = f.end;
  }
  const [, risAt, eciAt] = fields.filter((f) => f.tag !== 0xa0); // skip originatorInfo
  if (risAt?.tag !== 0x31 || eciAt?.tag !== 0x30) throw new DeviceCaError('bad-request', 'the EnvelopedData cannot be read');
  if (risAt.end - risAt.start > MAX_RECIPIENT_INFOS_BYTES) throw new DeviceCaError('bad-request', 'the recipientInfos are too large');
  const ris = readOne(tlvBytes(src, risAt), 0x31);
  const ours = issuerAndSerialNumber(recipient.certificate);
  let cek: Buffer | null = null;
  for (const ri of children(ris, 64)) {
    cek = ri.tag === 0xa1 ? keyAgreeCek(ri, ours, recipient) : ri.tag === 0x30 ? keyTransCek(ri, ours, recipient) : null;
    if (cek) break;
  }
  if (!cek) throw new DeviceCaError('bad-request', 'the release is not encrypted to this device certificate');
  const ctAt = tlvAt(src, eciAt.valueStart, eciAt.end, 'contentType');
  const algAt = ctAt.end < eciAt.end ? tlvAt(src, ctAt.end, eciAt.end, 'contentEncryptionAlgorithm') : null;
  const encAt = algAt && algAt.end < eciAt.end ? tlvAt(src, algAt.end, eciAt.end, 'encryptedContent') : null;
  if (ctAt.tag !== 0x06 || algAt?.tag !== 0x30 || encAt?.tag !== 0x80) throw new DeviceCaError('bad-request', 'the encrypted content cannot be read');
  if (encAt.end !== eciAt.end) throw new DeviceCaError('bad-request', 'malformed DER: too many elements');
  const [algOid, ivTlv] = children(readOne(tlvBytes(src, algAt), 0x30), 2);
  const cipher = contentCipherOf(decodeOid(algOid));
  const key = cek;
  return {
    contentType: decodeOid(readOne(tlvBytes(src, ctAt), 0x06)),
    decrypt: (sink) => {
      let d: crypto.Decipher;
      try {
        d = crypto.createDecipheriv(cipher, key, ivTlv?.value ?? Buffer.alloc(0));
      } catch {
        throw new DeviceCaError('bad-request', 'the encrypted content does not decrypt');
      }
      decipherInto(src, encAt.valueStart, encAt.end - encAt.valueStart, d, sink, 'the encrypted content does not decrypt');
    },
  };
}

/** keyAgreeCek: our content key from a KeyAgreeRecipientInfo (RFC 5652 §6.2.2, RFC 5753 §3.1.2), or null when none of its keys is ours. */
function keyAgreeCek(kari: Tlv, ours: Buffer, recipient: EnvelopeRecipient): Buffer | null {
  const f = children(kari, 6);
  const originator = f.find((x) => x.tag === 0xa0);
  const alg = f.find((x, i) => i > 1 && x.tag === 0x30 && children(x, 2)[0]?.tag === 0x06);
  const reks = f[f.length - 1];
  if (!originator || !alg || reks?.tag !== 0x30) throw new DeviceCaError('bad-request', 'a KeyAgreeRecipientInfo cannot be read');
  const mine = children(reks, 100_000).find((r) => {
    const [rid] = children(r, 2);
    return rid !== undefined && Buffer.from(rid.full).equals(ours);
  });
  if (!mine) return null;
  const curve = curveOf(new crypto.X509Certificate(recipient.certificate).publicKey);
  if (!curve) throw new DeviceCaError('bad-algorithm', 'the release is encrypted by ECDH, and the device certificate does not hold a P-256/P-384 key');
  const scheme = decodeOid(children(alg, 2)[0]);
  const hash = scheme === CMS_OID.ecdhStdSha256Kdf ? 'sha256' : scheme === CMS_OID.ecdhStdSha384Kdf ? 'sha384' : null;
  if (!hash) throw new DeviceCaError('bad-algorithm', `key agreement ${scheme} is not one device-ca writes`);
  const [, point] = children(readOne(originator.value, 0xa1), 2); // [1] IMPLICIT OriginatorPublicKey
  const ephemeral = point.value.subarray(1); // BIT STRING: unused-bits octet, then the uncompressed point
  let z: Buffer;
  if (recipient.agree) z = recipient.agree(ephemeral);
  else if (recipient.key) {
    const ecdh = crypto.createECDH(curve);
    ecdh.setPrivateKey(Buffer.from(recipient.key.export({ format: 'jwk' }).d!, 'base64url'));
    try {
      z = ecdh.computeSecret(ephemeral);
    } catch {
      throw new DeviceCaError('bad-request', "the originator's key of a KeyAgreeRecipientInfo is not a point of the device key's curve");
    }
  } else throw new DeviceCaError('bad-algorithm', 'the release is encrypted by ECDH (RFC 5753), and the device key cannot do key agreement');
  const wrap = seq(oid(CMS_OID.aes256Wrap));
  const kek = x963Kdf(hash, z, seq(wrap, contextExplicit(2, octetString(Buffer.from([0, 0, 1, 0])))), 32);
  try {
    const d = crypto.createDecipheriv('id-aes256-wrap', kek, Buffer.from('a6a6a6a6a6a6a6a6', 'hex'));
    return Buffer.concat([d.update(children(mine, 2)[1].value), d.final()]);
  } catch {
    throw new DeviceCaError('bad-request', 'the content key does not unwrap with this device key');
  }
}

/** keyTransCek: our content key from an RSA-OAEP KeyTransRecipientInfo (RFC 5652 §6.2.1, RFC 8017 §7.1), or null when it is not ours. */
function keyTransCek(ktri: Tlv, ours: Buffer, recipient: EnvelopeRecipient): Buffer | null {
  const [, rid, , encryptedKey] = children(ktri, 4);
  if (!rid || !Buffer.from(rid.full).equals(ours) || encryptedKey?.tag !== 0x04) return null;
  const { key, decryptOaep } = recipient;
  if (!decryptOaep && !key) throw new DeviceCaError('bad-algorithm', 'the release wraps the content key by RSA-OAEP (RFC 8017), and the device key cannot decrypt RSA');
  try {
    if (decryptOaep) return decryptOaep(encryptedKey.value);
    return crypto.privateDecrypt({ key: key as crypto.KeyObject, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, encryptedKey.value);
  } catch (e) {
    if (e instanceof DeviceCaError && e.code !== 'bad-request') throw e;
    throw new DeviceCaError('bad-request', 'the content key does not decrypt with this device key');
  }
}
