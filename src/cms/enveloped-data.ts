import * as crypto from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { contextExplicit, contextImplicitPrimitive, derLength, integer, NULL, octetString, oid, seq, set } from '../der/der-writer';
import { DeviceCaError } from '../errors/device-ca-error';
import { CMS_OID, CONTENT_CIPHERS, ContentCipher, contentCipherOf } from './cms-algorithms';
import { octets, parsed, toBuffer, unwrapContentInfo } from './content-info';
import { issuerAndSerialNumber } from './issuer-and-serial';
import { ecPointOf, EcCurve, keyAgreeRecipientInfo } from './key-agree-recipient';
import { KeyTransportDecryptor } from './rsa-key-transport';
import { oaepKeyTransRecipientInfo } from './rsa-oaep-recipient';

/** OpenedEnvelope: the decrypted content and the cipher the sender chose (a reply is encrypted the same way). */
export interface OpenedEnvelope {
  content: Buffer;
  cipher: ContentCipher;
}

/**
 * openEnvelopedData decrypts a CMS EnvelopedData (RFC 5652 §6) whose KeyTransRecipientInfo names our
 * certificate (by issuer and serial, or by subjectKeyIdentifier). Errors: 'bad-request' when the input is
 * malformed, not addressed to us, or does not decrypt (a bad key blob lands here too, through implicit
 * rejection in the KeyTransportDecryptor); 'bad-algorithm' for a key-transport or content cipher we do not
 * accept.
 */
export async function openEnvelopedData(ber: Buffer, recipient: { certificate: Buffer; key: KeyTransportDecryptor }): Promise<OpenedEnvelope> {
  const content = unwrapContentInfo(ber, CMS_OID.envelopedData, 'EnvelopedData');
  const env = parsed('EnvelopedData', () => new pkijs.EnvelopedData({ schema: content }));
  const ours = issuerAndSerialNumber(recipient.certificate);
  const ski = subjectKeyIdentifier(recipient.certificate);
  // re-encoding a rid pkijs accepted can still throw on hostile input (a RangeError from a DataView): bad-request
  const ktri = parsed('EnvelopedData recipients', () =>
    env.recipientInfos
      .filter((ri) => ri.variant === 1)
      .map((ri) => ri.value as pkijs.KeyTransRecipientInfo)
      .find((k) => (k.rid instanceof pkijs.IssuerAndSerialNumber ? toBuffer(k.rid.toSchema().toBER()).equals(ours) : ski !== null && toBuffer(k.rid.valueBlock.valueHexView).equals(ski))),
  );
  if (!ktri) throw new DeviceCaError('bad-request', 'the message is not encrypted to this RA certificate');
  if (ktri.keyEncryptionAlgorithm.algorithmId !== CMS_OID.rsaEncryption)
    throw new DeviceCaError('bad-algorithm', 'unsupported key-transport algorithm', { detail: ktri.keyEncryptionAlgorithm.algorithmId });
  const eci = env.encryptedContentInfo;
  const cipher = contentCipherOf(eci.contentEncryptionAlgorithm.algorithmId);
  const spec = CONTENT_CIPHERS[cipher];
  const params = eci.contentEncryptionAlgorithm.algorithmParams as unknown;
  if (!(params instanceof asn1js.OctetString)) throw new DeviceCaError('bad-request', 'content-encryption IV missing');
  const iv = octets(params);
  if (iv.length !== spec.ivLength) throw new DeviceCaError('bad-request', 'content-encryption IV has the wrong length');
  if (!eci.encryptedContent) throw new DeviceCaError('bad-request', 'EnvelopedData carries no encrypted content');
  const encrypted = octets(eci.encryptedContent);
  const key = await recipient.key.unwrapKey(toBuffer(ktri.encryptedKey.valueBlock.valueHexView), spec.keyLength);
  try {
    const d = crypto.createDecipheriv(cipher, key, iv);
    return { content: Buffer.concat([d.update(encrypted), d.final()]), cipher };
  } catch {
    throw new DeviceCaError('bad-request', 'the message cannot be decrypted');
  }
}

/**
 * buildEnvelopedData encrypts content to one RSA certificate (KeyTransRecipientInfo v0, RSAES-PKCS1-v1_5
 * key transport, RFC 5652 §6.2.1), with a fresh key and IV. Public-key encryption with PKCS#1 v1.5 padding
 * stays allowed on Node 20; only private decryption was disabled.
 */
export function buildEnvelopedData(content: Buffer, recipientCertificate: Buffer, cipher: ContentCipher): Buffer {
  const spec = CONTENT_CIPHERS[cipher];
  const key = crypto.randomBytes(spec.keyLength);
  const iv = crypto.randomBytes(spec.ivLength);
  const c = crypto.createCipheriv(cipher, key, iv);
  const encrypted = Buffer.concat([c.update(content), c.final()]);
  const publicKey = new crypto.X509Certificate(recipientCertificate).publicKey;
  if (publicKey.asymmetricKeyType !== 'rsa') throw new DeviceCaError('bad-algorithm', 'the recipient certificate has no RSA key to encrypt to');
  const encryptedKey = crypto.publicEncrypt({ key: publicKey, padding: crypto.constants.RSA_PKCS1_PADDING }, key);
  const ktri = seq(integer(0), issuerAndSerialNumber(recipientCertificate), seq(oid(CMS_OID.rsaEncryption), NULL), octetString(encryptedKey));
  const eci = seq(oid(CMS_OID.data), seq(oid(spec.oid), octetString(iv)), contextImplicitPrimitive(0, encrypted));
  return seq(oid(CMS_OID.envelopedData), contextExplicit(0, seq(integer(0), set(ktri), eci)));
}

/** subjectKeyIdentifier: the certificate's SKI extension value, or null. */
function subjectKeyIdentifier(certDer: Buffer): Buffer | null {
  const cert = parsed('certificate', () => pkijs.Certificate.fromBER(certDer));
  const e = cert.extensions?.find((x) => x.extnID === '2.5.29.14');
  if (!e) return null;
  const inner = asn1js.fromBER(e.extnValue.valueBlock.valueHexView);
  return inner.result instanceof asn1js.OctetString ? toBuffer(inner.result.valueBlock.valueHexView) : null;
}

/**
 * envelopeToCertificates encrypts content (AES-256-CBC, fresh key and IV) to every certificate given and
 * returns the DER ContentInfo of the EnvelopedData (RFC 5652 §6.1, version 2): one KeyAgreeRecipientInfo
 * per EC curve (ECDH, RFC 5753) holding every EC recipient of that curve, and one KeyTransRecipientInfo
 * with RSA-OAEP per RSA recipient (RFC 8017). `contentType` labels the encrypted content (RFC 4108 §2.1:
 * id-ct-firmwarePackage for an image). 'bad-algorithm' for a certificate key we cannot encrypt to;
 * 'bad-request' for no recipient.
 */
export function envelopeToCertificates(content: Buffer, contentType: string, certificates: Buffer[]): Buffer {
  return encryptInto(envelopeLayout(content.length, contentType, certificates), content);
}

/**
 * EncryptedLayout: an encrypted ContentInfo (EnvelopedData, or the EncryptedData of a group release) laid
 * out ahead of its content: CBC with PKCS#7 padding makes the ciphertext length known from the content
 * length, so the DER before the ciphertext (`head`) is complete before any byte is encrypted, and a
 * 64 MiB image can be encrypted chunk by chunk into its place, in memory or in a file.
 */
export interface EncryptedLayout {
  /** head: the DER up to the encryptedContent's value; the ciphertext follows and ends the encoding */
  head: Buffer;
  encryptedLength: number;
  /** cipher: a fresh cipher under the layout's key and IV (the same ciphertext each time) */
  cipher(): crypto.Cipher;
}

/** envelopeLayout: envelopeToCertificates' EnvelopedData for a content of contentLength bytes, its key wrapped to every certificate. */
export function envelopeLayout(contentLength: number, contentType: string, certificates: Buffer[]): EncryptedLayout {
  if (certificates.length === 0) throw new DeviceCaError('bad-request', 'an encrypted package needs at least one recipient');
  const spec = CONTENT_CIPHERS['aes-256-cbc'];
  const cek = crypto.randomBytes(spec.keyLength);
  const iv = crypto.randomBytes(spec.ivLength);
  const byCurve = new Map<EcCurve, { certificate: Buffer; point: Buffer }[]>();
  const recipientInfos: Buffer[] = [];
  for (const certificate of certificates) {
    const ec = ecPointOf(certificate);
    if (ec) {
      const group = byCurve.get(ec.curve);
      if (group) group.push({ certificate, point: ec.point });
      else byCurve.set(ec.curve, [{ certificate, point: ec.point }]);
      continue;
    }
    const publicKey = new crypto.X509Certificate(certificate).publicKey;
    if (publicKey.asymmetricKeyType === 'rsa') recipientInfos.push(oaepKeyTransRecipientInfo(cek, certificate, publicKey));
    else throw new DeviceCaError('bad-algorithm', `a recipient certificate has a ${publicKey.asymmetricKeyType} key; device-ca encrypts to RSA, P-256 and P-384 keys`);
  }
  for (const [curve, rs] of byCurve) recipientInfos.unshift(keyAgreeRecipientInfo(cek, curve, rs));
  // RFC 5652 §6.1: version 2 when a RecipientInfo is not version 0 (kari is 3), else 0
  const version = integer(byCurve.size > 0 ? 2 : 0);
  const encryptedLength = cbcLength(contentLength);
  const eciFields = Buffer.concat([oid(contentType), seq(oid(spec.oid), octetString(iv)), header(0x80, encryptedLength)]);
  const eciHeader = header(0x30, eciFields.length + encryptedLength);
  const fields = Buffer.concat([version, set(...recipientInfos), eciHeader, eciFields]);
  const envelopedHeader = header(0x30, fields.length + encryptedLength);
  const explicitHeader = header(0xa0, envelopedHeader.length + fields.length + encryptedLength);
  const type = oid(CMS_OID.envelopedData);
  const head = Buffer.concat([header(0x30, type.length + explicitHeader.length + envelopedHeader.length + fields.length + encryptedLength), type, explicitHeader, envelopedHeader, fields]);
  return { head, encryptedLength, cipher: () => crypto.createCipheriv('aes-256-cbc', cek, iv) };
}

/** cbcLength: the AES-CBC ciphertext length of a content with PKCS#7 padding (always 1 to 16 bytes of it). */
export function cbcLength(contentLength: number): number {
  return (Math.floor(contentLength / 16) + 1) * 16;
}

/** encryptInto: the whole encoding of a layout in one Buffer, the content encrypted chunk by chunk into place (one copy of a 64 MiB image). */
export function encryptInto(layout: EncryptedLayout, content: Buffer): Buffer {
  const out = Buffer.allocUnsafe(layout.head.length + layout.encryptedLength);
  let p = layout.head.copy(out);
  const c = layout.cipher();
  for (let at = 0; at < content.length; at += 1 << 20) p += c.update(content.subarray(at, at + (1 << 20))).copy(out, p);
  p += c.final().copy(out, p);
  if (p !== out.length) throw new Error('encryptInto: ciphertext length differs from the layout'); // cannot happen with CBC
  return out;
}

/** header: a DER tag and definite length (X.690 §8.1.2-3) for content written after it. */
function header(tag: number, length: number): Buffer {
  return Buffer.concat([Buffer.from([tag]), derLength(length)]);
}
