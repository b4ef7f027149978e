import * as crypto from 'node:crypto';
import { children, decodeOid, decodeString, readOne } from '../der/der-reader';
import { derLength, integer, octetString, oid, seq, set, utf8String } from '../der/der-writer';
import { DeviceCaError } from '../errors/device-ca-error';
import { CMS_OID, CONTENT_CIPHERS } from './cms-algorithms';
import { cbcLength, EncryptedLayout, encryptInto, envelopeToCertificates } from './enveloped-data';
import { bufferSource, ByteSource, decipherInto, tlvAt, tlvBytes } from './byte-source';
import { EnvelopeContent, EnvelopeRecipient, openFirmwareEnvelope } from './firmware-envelope-open';

/**
 * firmware-group-key: the CMS pieces of a group content-encryption key (issue 13, docs/firmware.md
 * "Group key"): the image in an EncryptedData (RFC 5652 §8) under an AES-256 key that the release names
 * by RFC 4108's decrypt key identifier (§2.2.4), and the key itself delivered to each device apart, as an
 * RFC 6031 SymmetricKeyPackage inside an EnvelopedData to the device's current certificate. The release
 * does not grow with the fleet; each device's key package is about 0.5 KB.
 */

/** GROUP_KEY_ID_BYTES: a group key identifier is 16 random bytes (the decrypt key identifier's OCTET STRING); its text form is 32 lower-case hex digits. */
export const GROUP_KEY_ID_BYTES = 16;
/** GROUP_KEY_BYTES: AES-256. */
export const GROUP_KEY_BYTES = 32;
/** GROUP_KEY_ID_RE: the text form of a key identifier, as URLs and records carry it. */
export const GROUP_KEY_ID_RE = /^[0-9a-f]{32}$/;

/** GroupKey: an AES-256 key and its identifier (32 hex digits). */
export interface GroupKey {
  id: string;
  key: Buffer;
}

/** newGroupKey: fresh random key and identifier. */
export function newGroupKey(): GroupKey {
  return { id: crypto.randomBytes(GROUP_KEY_ID_BYTES).toString('hex'), key: crypto.randomBytes(GROUP_KEY_BYTES) };
}

/**
 * groupKeyPackage encodes RFC 6031's SymmetricKeyPackage (§2) holding one key:
 * SEQUENCE { version v1 DEFAULT (absent), sKeys SEQUENCE { OneSymmetricKey { sKeyAttrs { id-pskc-keyId
 * (§3.2.7, UTF8String: the 32 hex digits) }, sKey OCTET STRING (the 32 key bytes) } } }.
 */
export function groupKeyPackage(g: GroupKey): Buffer {
  checkGroupKey(g);
  const attrs = seq(seq(oid(CMS_OID.pskcKeyId), set(utf8String(g.id))));
  return seq(seq(seq(attrs, octetString(g.key))));
}

/** readGroupKeyPackage decodes what groupKeyPackage wrote; 'bad-request' for anything else (several keys, no key id, another length). */
export function readGroupKeyPackage(der: Buffer): GroupKey {
  const fields = children(readOne(der, 0x30), 3);
  const sKeys = fields[fields.length - 1];
  // before sKeys: an optional version (INTEGER) and optional sKeyPkgAttrs ([0]), in that order
  const before = fields.slice(0, -1).map((f) => f.tag);
  if (sKeys?.tag !== 0x30 || !['', '2', 'a0', '2,a0'].includes(before.map((t) => t.toString(16)).join(',')))
    throw new DeviceCaError('bad-request', 'the symmetric key package cannot be read (RFC 6031)');
  const keys = children(sKeys, 2);
  if (keys.length !== 1 || keys[0].tag !== 0x30) throw new DeviceCaError('bad-request', 'the symmetric key package must hold exactly one key');
  const [attrs, sKey] = children(keys[0], 2);
  if (attrs?.tag !== 0x30 || sKey?.tag !== 0x04) throw new DeviceCaError('bad-request', 'the symmetric key package key has no identifier or no key');
  let id: string | null = null;
  for (const a of children(attrs, 16)) {
    const [type, values] = children(a, 2);
    const value = type && decodeOid(type) === CMS_OID.pskcKeyId && values?.tag === 0x31 ? children(values, 1)[0] : undefined;
    if (value) id = decodeString(value);
  }
  if (id === null) throw new DeviceCaError('bad-request', 'the symmetric key package key has no identifier (id-pskc-keyId)');
  const g = { id, key: Buffer.from(sKey.value) };
  checkGroupKey(g);
  return g;
}

/** wrapGroupKeyTo: the key package as a DER ContentInfo EnvelopedData to one device certificate (ECDH or RSA-OAEP, as a release is). */
export function wrapGroupKeyTo(certificate: Buffer, g: GroupKey): Buffer {
  return envelopeToCertificates(groupKeyPackage(g), CMS_OID.symmetricKeyPackage, [certificate]);
}

/** openGroupKeyEnvelope: the device's side of wrapGroupKeyTo, with its software or TPM key. */
export function openGroupKeyEnvelope(der: Buffer, recipient: EnvelopeRecipient): GroupKey {
  const opened = openFirmwareEnvelope(der, recipient);
  if (opened.contentType !== CMS_OID.symmetricKeyPackage) throw new DeviceCaError('bad-request', 'the envelope does not hold a symmetric key package (RFC 6031)');
  return readGroupKeyPackage(opened.content);
}

/**
 * encryptedDataContentInfo: the DER ContentInfo of an EncryptedData (RFC 5652 §8, version 0) of `content`
 * labelled `contentType`, AES-256-CBC with a fresh IV under the group key. Laid out ahead and encrypted
 * chunk by chunk into place, as envelopeToCertificates does: one copy of the image.
 */
export function encryptedDataContentInfo(content: Buffer, contentType: string, key: Buffer): Buffer {
  return encryptInto(encryptedDataLayout(content.length, contentType, key), content);
}

/** encryptedDataLayout: encryptedDataContentInfo's EncryptedData for a content of contentLength bytes, to be encrypted into place (a file, or a Buffer). */
export function encryptedDataLayout(contentLength: number, contentType: string, key: Buffer): EncryptedLayout {
  if (key.length !== GROUP_KEY_BYTES) throw new DeviceCaError('bad-request', 'a group key has 32 bytes (AES-256)');
  const spec = CONTENT_CIPHERS['aes-256-cbc'];
  const iv = crypto.randomBytes(spec.ivLength);
  const encryptedLength = cbcLength(contentLength);
  const eciFields = Buffer.concat([oid(contentType), seq(oid(spec.oid), octetString(iv)), header(0x80, encryptedLength)]);
  const eci = Buffer.concat([header(0x30, eciFields.length + encryptedLength), eciFields]);
  const version = integer(0);
  const body = Buffer.concat([header(0x30, version.length + eci.length + encryptedLength), version, eci]);
  const explicit = Buffer.concat([header(0xa0, body.length + encryptedLength), body]);
  const type = oid(CMS_OID.encryptedData);
  const head = Buffer.concat([header(0x30, type.length + explicit.length + encryptedLength), type, explicit]);
  return { head, encryptedLength, cipher: () => crypto.createCipheriv('aes-256-cbc', key, iv) };
}

/**
 * openEncryptedData decrypts a ContentInfo EncryptedData held in memory with the group key:
 * encryptedDataContentOf over the Buffer, the plaintext collected. Errors as encryptedDataContentOf's.
 */
export function openEncryptedData(contentInfo: Buffer, key: Buffer): { contentType: string; content: Buffer } {
  const opened = encryptedDataContentOf(bufferSource(contentInfo), key);
  const parts: Buffer[] = [];
  opened.decrypt((c) => parts.push(c)); // each piece is a fresh Buffer of the decipher's
  return { contentType: opened.contentType, content: Buffer.concat(parts) };
}

/**
 * encryptedDataContentOf reads a ContentInfo EncryptedData (RFC 5652 §8) from a source without reading
 * the encrypted content: it walks the headers and leaves the encryptedContent in the source for
 * `decrypt`, which deciphers it chunk by chunk (AES-256-CBC) into the sink, as envelopeContentOf does for a
 * release to devices. The padding (RFC 5652 §6.3) is checked only at the end, so a sink that writes a file
 * keeps it only when decrypt returns. 'bad-request' when it is malformed or does not decrypt with this
 * key; 'bad-algorithm' for a cipher device-ca does not write.
 */
export function encryptedDataContentOf(src: ByteSource, key: Buffer): EnvelopeContent {
  const ci = tlvAt(src, 0, src.length, 'ContentInfo');
  if (ci.tag !== 0x30 || ci.end !== src.length) throw new DeviceCaError('bad-request', 'the release does not hold an EncryptedData');
  const type = tlvAt(src, ci.valueStart, ci.end, 'contentType');
  const body = type.end < ci.end ? tlvAt(src, type.end, ci.end, 'content') : null;
  if (type.tag !== 0x06 || decodeOid(readOne(tlvBytes(src, type), 0x06)) !== CMS_OID.encryptedData || body?.tag !== 0xa0 || body.end !== ci.end)
    throw new DeviceCaError('bad-request', 'the release does not hold an EncryptedData');
  const ed = tlvAt(src, body.valueStart, body.end, 'EncryptedData');
  const version = ed.tag === 0x30 && ed.end === body.end ? tlvAt(src, ed.valueStart, ed.end, 'version') : null;
  const eci = version?.tag === 0x02 && version.end < ed.end ? tlvAt(src, version.end, ed.end, 'encryptedContentInfo') : null;
  // unprotectedAttrs ([1]) may follow; device-ca writes none and reads past them
  if (eci?.tag !== 0x30) throw new DeviceCaError('bad-request', 'the EncryptedData cannot be read');
  const ct = tlvAt(src, eci.valueStart, eci.end, 'contentType');
  const alg = ct.end < eci.end ? tlvAt(src, ct.end, eci.end, 'contentEncryptionAlgorithm') : null;
  const enc = alg && alg.end < eci.end ? tlvAt(src, alg.end, eci.end, 'encryptedContent') : null;
  if (ct.tag !== 0x06 || alg?.tag !== 0x30 || enc?.tag !== 0x80 || enc.end !== eci.end) throw new DeviceCaError('bad-request', 'the encrypted content cannot be read');
  const [algOid, iv] = children(readOne(tlvBytes(src, alg), 0x30), 2);
  if (algOid?.tag !== 0x06 || decodeOid(algOid) !== CONTENT_CIPHERS['aes-256-cbc'].oid)
    throw new DeviceCaError('bad-algorithm', 'a group release is encrypted with AES-256-CBC', { detail: algOid?.tag === 0x06 ? decodeOid(algOid) : 'none' });
  if (iv?.tag !== 0x04 || iv.value.length !== 16) throw new DeviceCaError('bad-request', 'the content-encryption IV is missing or has the wrong length');
  if (key.length !== GROUP_KEY_BYTES) throw new DeviceCaError('bad-request', 'a group key has 32 bytes (AES-256)');
  const ivBytes = Buffer.from(iv.value);
  return {
    contentType: decodeOid(readOne(tlvBytes(src, ct), 0x06)),
    decrypt: (sink) =>
      // a wrong key or a changed last block: the CBC padding does not check (the key's identity is the CA's signed decryptKeyID)
      decipherInto(src, enc.valueStart, enc.end - enc.valueStart, crypto.createDecipheriv('aes-256-cbc', key, ivBytes), sink, 'the encrypted content does not decrypt with this group key'),
  };
}

function checkGroupKey(g: GroupKey): void {
  if (!GROUP_KEY_ID_RE.test(g.id)) throw new DeviceCaError('bad-request', 'a group key identifier is 32 lower-case hex digits');
  if (g.key.length !== GROUP_KEY_BYTES) throw new DeviceCaError('bad-request', 'a group key has 32 bytes (AES-256)');
}

/** header: a DER tag and definite length (X.690 §8.1.2-3) for content written after it. */
function header(tag: number, length: number): Buffer {
  return Buffer.concat([Buffer.from([tag]), derLength(length)]);
}
