import * as crypto from 'node:crypto';
import * as asn1js from 'asn1js';
import { contextExplicit, contextImplicitConstructed, integer, octetString, oid, seq, set } from '../der/der-writer';
import { DeviceCaError } from '../errors/device-ca-error';
import { SigningKey } from '../keys/key-backend';
import { CMS_OID, DigestName, digestOf, signatureDigest } from './cms-algorithms';
import { octets, parsed } from './content-info';
import { issuerAndSerialNumber } from './issuer-and-serial';
import { signedMessageParts } from './signed-message-parts';
import { buildSignerInfo, SignedAttribute } from './signer-info';

export type { SignedAttribute } from './signer-info';

/** SignedMessage: a verified SignedData with one signer and signed attributes. */
export interface SignedMessage {
  /** content: the encapsulated content (eContent), or null when absent */
  content: Buffer | null;
  contentType: string;
  /** certificates: DER of every certificate the message carries */
  certificates: Buffer[];
  signer: {
    /** certificate: DER of the certificate whose key made the signature */
    certificate: Buffer;
    digest: DigestName;
    /** attributes: signed attribute type -> the DER of each of its values */
    attributes: ReadonlyMap<string, Buffer[]>;
  };
}

/**
 * verifySignedData parses a CMS SignedData (RFC 5652 §5) with exactly one SignerInfo carrying signed
 * attributes, finds the signer's certificate among those the message carries, and checks the
 * messageDigest and contentType attributes (§11.1, §11.2) and the signature over the DER SET OF the signed
 * attributes (§5.4). It proves the message was signed by the key of that certificate, nothing about who
 * the certificate belongs to: that is the caller's decision. Errors: 'bad-request' (malformed),
 * 'bad-algorithm' (digest or signature algorithm not accepted), 'bad-signature' (does not verify).
 */
export function verifySignedData(ber: Buffer): SignedMessage {
  const sd = signedMessageParts(ber);
  const certificates = sd.certificates;
  const signerCert = sd.sid ? certificates.find((c) => issuerAndSerialNumber(c).equals(sd.sid!)) : undefined;
  if (!signerCert) throw new DeviceCaError('bad-request', "SignedData does not carry the signer's certificate");
  const body = sd.eContent;
  const digest = digestOf(sd.digestAlgorithm);
  signatureDigest(sd.signatureAlgorithm, digest);
  if (!sd.signedAttrs) throw new DeviceCaError('bad-request', 'SignedData has no signed attributes');

  const attributes = new Map<string, Buffer[]>();
  for (const a of sd.attributes) {
    if (attributes.has(a.type)) throw new DeviceCaError('bad-request', 'a signed attribute occurs twice');
    attributes.set(a.type, a.values);
  }
  const ct = single(attributes, CMS_OID.contentType);
  const md = single(attributes, CMS_OID.messageDigest);
  const ctOid = parsed('contentType attribute', () => asn1js.fromBER(ct)).result;
  if (!(ctOid instanceof asn1js.ObjectIdentifier) || ctOid.valueBlock.toString() !== sd.eContentType) throw new DeviceCaError('bad-signature', 'contentType attribute differs from the content type');
  const mdValue = parsed('messageDigest attribute', () => asn1js.fromBER(md)).result;
  if (!(mdValue instanceof asn1js.OctetString)) throw new DeviceCaError('bad-request', 'messageDigest attribute is not an OCTET STRING');
  const expected = crypto
    .createHash(digest)
    .update(body ?? Buffer.alloc(0))
    .digest();
  const got = octets(mdValue);
  if (got.length !== expected.length || !crypto.timingSafeEqual(got, expected)) throw new DeviceCaError('bad-signature', 'message digest does not match the content');

  // RFC 5652 §5.4: the signature covers the attributes as received, with the EXPLICIT SET OF tag in place of [0] IMPLICIT
  const signedBytes = sd.signedAttrs;
  if (signedBytes[0] !== 0x31) throw new DeviceCaError('bad-request', 'signed attributes cannot be read');
  let publicKey: crypto.KeyObject;
  try {
    publicKey = new crypto.X509Certificate(signerCert).publicKey;
  } catch {
    // a TLV that names the signer but is no certificate Node can read: the sender's fault, not ours
    throw new DeviceCaError('bad-request', "the signer's certificate cannot be parsed");
  }
  let ok: boolean;
  try {
    ok = crypto.verify(digest, signedBytes, publicKey, sd.signature);
  } catch {
    ok = false;
  }
  if (!ok) throw new DeviceCaError('bad-signature', 'the message signature does not verify');
  return { content: body, contentType: sd.eContentType, certificates, signer: { certificate: signerCert, digest, attributes } };
}

/**
 * buildSignedData signs content (or nothing: SCEP failure replies carry none) with signed attributes
 * (contentType and messageDigest added by buildSignerInfo, RFC 5652 §5.3), the signer identified by issuer
 * and serial (SignerInfo v1) and the given certificates carried. The digest follows the key (SHA-256,
 * SHA-384 for P-384), as SigningKey.sign hashes with its own X.509 signature algorithm.
 */
export async function buildSignedData(args: {
  content: Buffer | null;
  contentType?: string;
  signer: { certificate: Buffer; key: SigningKey };
  attributes: SignedAttribute[];
  certificates: Buffer[];
}): Promise<Buffer> {
  const contentType = args.contentType ?? CMS_OID.data;
  const { signerInfo, digestAlgorithm } = await buildSignerInfo({ contentType, content: args.content, signer: args.signer, attributes: args.attributes });
  const encap = args.content ? seq(oid(contentType), contextExplicit(0, octetString(args.content))) : seq(oid(contentType));
  const certs = args.certificates.length > 0 ? [contextImplicitConstructed(0, Buffer.concat(args.certificates))] : [];
  // RFC 5652 §5.1: version 3 when the eContentType is not id-data (an RFC 4108 receipt, §3), else 1
  const signedData = seq(integer(contentType === CMS_OID.data ? 1 : 3), set(digestAlgorithm), encap, ...certs, set(signerInfo));
  return seq(oid(CMS_OID.signedData), contextExplicit(0, signedData));
}

function single(attrs: ReadonlyMap<string, Buffer[]>, type: string): Buffer {
  const v = attrs.get(type);
  if (!v || v.length !== 1) throw new DeviceCaError('bad-request', `signed attribute ${type} must have exactly one value`);
  return v[0];
}
