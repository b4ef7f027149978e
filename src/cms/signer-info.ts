import * as crypto from 'node:crypto';
import { children, decodeOid, readOne, Tlv } from '../der/der-reader';
import { contextImplicitConstructed, integer, octetString, oid, seq, set } from '../der/der-writer';
import { DeviceCaError } from '../errors/device-ca-error';
import { SigningKey } from '../keys/key-backend';
import { CMS_OID, DIGEST_OID, DigestName, digestOf, signatureDigest } from './cms-algorithms';
import { issuerAndSerialNumber } from './issuer-and-serial';

/** SignedAttribute: one signed attribute to add, as its type and the DER of each value. */
export interface SignedAttribute {
  type: string;
  values: Buffer[];
}

const digestMemo = new WeakMap<Buffer, Map<DigestName, Buffer>>();

/**
 * contentDigest hashes content once per digest and remembers it for that Buffer: a release verifies
 * several SignerInfos over the same (possibly 64 MiB) image.
 */
export function contentDigest(content: Buffer, digest: DigestName): Buffer {
  let m = digestMemo.get(content);
  if (!m) digestMemo.set(content, (m = new Map()));
  let d = m.get(digest);
  if (!d) m.set(digest, (d = crypto.createHash(digest).update(content).digest()));
  return d;
}

/**
 * ContentDigests: a content's digests computed ahead, in place of its bytes, when the content is streamed
 * from a file (a 64 MiB image hashed once while reading, for every SignerInfo over it).
 */
export interface ContentDigests {
  digests: ReadonlyMap<DigestName, Buffer>;
}

/** digestOfContent: the content's digest, from its bytes or from the digests computed ahead ('bad-algorithm' when that one was not). */
function digestOfContent(content: Buffer | null | ContentDigests, digest: DigestName): Buffer {
  if (content === null || Buffer.isBuffer(content)) return contentDigest(content ?? Buffer.alloc(0), digest);
  const d = content.digests.get(digest);
  if (!d) throw new DeviceCaError('bad-algorithm', `the content was not hashed with ${digest}`);
  return d;
}

/** digestFor: the digest a SignerInfo made with this key uses (SHA-384 for P-384, RFC 5753 §7.1.1 / RFC 5758 §3.2; else SHA-256). */
export function digestFor(key: SigningKey): DigestName {
  return key.algorithm === 'ecdsa-p384' ? 'sha384' : 'sha256';
}

/** digestForCertificate: digestFor of the key a certificate certifies (a package is hashed for the CA before its key is opened). */
export function digestForCertificate(certificate: Buffer): DigestName {
  return new crypto.X509Certificate(certificate).publicKey.asymmetricKeyDetails?.namedCurve === 'secp384r1' ? 'sha384' : 'sha256';
}

/**
 * buildSignerInfo makes one SignerInfo (RFC 5652 §5.3, version 1, signer named by issuer and serial) over
 * content of the given type, with contentType and messageDigest (§11.1, §11.2) and the given attributes
 * signed. It returns the SignerInfo and its DER digestAlgorithm, for the SignedData's digestAlgorithms.
 */
export async function buildSignerInfo(args: {
  contentType: string;
  content: Buffer | null | ContentDigests;
  signer: { certificate: Buffer; key: SigningKey };
  attributes: SignedAttribute[];
}): Promise<{ signerInfo: Buffer; digestAlgorithm: Buffer }> {
  const digest = digestFor(args.signer.key);
  const digestAlgorithm = seq(oid(DIGEST_OID[digest])); // RFC 5754 §2: parameters absent
  const md = digestOfContent(args.content, digest);
  const attrs = [{ type: CMS_OID.contentType, values: [oid(args.contentType)] }, { type: CMS_OID.messageDigest, values: [octetString(md)] }, ...args.attributes]
    .map((a) => seq(oid(a.type), set(...a.values)))
    .sort(Buffer.compare); // X.690 §11.6: DER SET OF in ascending order of the encodings
  const signature = await args.signer.key.sign(set(...attrs));
  const signerInfo = seq(
    integer(1),
    issuerAndSerialNumber(args.signer.certificate),
    digestAlgorithm,
    contextImplicitConstructed(0, Buffer.concat(attrs)),
    args.signer.key.signatureAlgorithm,
    octetString(signature),
  );
  return { signerInfo, digestAlgorithm };
}

/** VerifiedSigner: a SignerInfo whose signature verified, with what it signed. */
export interface VerifiedSigner {
  /** certificate: DER of the certificate whose key made the signature */
  certificate: Buffer;
  digest: DigestName;
  /** attributes: signed attribute type -> the DER of each of its values */
  attributes: ReadonlyMap<string, Buffer[]>;
  /** signingTime: the signingTime attribute (RFC 5652 §11.3), or null when absent */
  signingTime: Date | null;
  /** signerInfo: the SignerInfo's DER, as received */
  signerInfo: Buffer;
}

/**
 * verifySignerInfo checks one SignerInfo against content of the given type (RFC 5652 §5.4, §5.6): the
 * signer's certificate is among `certificates` (by issuer and serial, or subjectKeyIdentifier), the
 * contentType and messageDigest attributes match, and the signature over the DER SET OF the signed
 * attributes verifies with the certificate's key. It says nothing about who the certificate belongs to.
 * Errors: 'bad-request' (malformed), 'bad-algorithm', 'bad-signature'.
 */
export function verifySignerInfo(signerInfo: Buffer, contentType: string, content: Buffer | null | ContentDigests, certificates: Buffer[]): VerifiedSigner {
  const f = children(readOne(signerInfo, 0x30), 8);
  if (f.length < 5 || f[0].tag !== 0x02) throw new DeviceCaError('bad-request', 'SignerInfo cannot be read');
  const [, sid, digestAlg, signedAttrs, sigAlg, sig] = f;
  if (signedAttrs.tag !== 0xa0 || digestAlg.tag !== 0x30 || sigAlg.tag !== 0x30 || sig.tag !== 0x04) throw new DeviceCaError('bad-request', 'SignerInfo has no signed attributes');
  const certificate = certificates.find((c) => matchesSid(sid, c));
  if (!certificate) throw new DeviceCaError('bad-request', "the SignedData does not carry a signer's certificate");
  const digest = digestOf(decodeOid(children(digestAlg)[0]));
  signatureDigest(decodeOid(children(sigAlg)[0]), digest);

  const attributes = new Map<string, Buffer[]>();
  for (const a of children(signedAttrs, 64)) {
    const [t, values] = children(a, 2);
    if (!t || !values || values.tag !== 0x31) throw new DeviceCaError('bad-request', 'a signed attribute cannot be read');
    const type = decodeOid(t);
    if (attributes.has(type)) throw new DeviceCaError('bad-request', 'a signed attribute occurs twice');
    attributes.set(
      type,
      children(values, 64).map((v) => Buffer.from(v.full)),
    );
  }
  const ct = singleValue(attributes, CMS_OID.contentType);
  if (decodeOid(readOne(ct)) !== contentType) throw new DeviceCaError('bad-signature', 'contentType attribute differs from the content type');
  const md = readOne(singleValue(attributes, CMS_OID.messageDigest), 0x04).value;
  const expected = digestOfContent(content, digest);
  if (md.length !== expected.length || !crypto.timingSafeEqual(md, expected)) throw new DeviceCaError('bad-signature', 'message digest does not match the content');
  const st = attributes.get(CMS_OID.signingTime);
  const signingTime = st && st.length === 1 ? decodeTime(readOne(st[0])) : null;

  // RFC 5652 §5.4: the signature covers the attributes as received, the [0] IMPLICIT tag replaced by SET OF
  const signed = Buffer.from(signedAttrs.full);
  signed[0] = 0x31;
  let ok: boolean;
  try {
    ok = crypto.verify(digest, signed, new crypto.X509Certificate(certificate).publicKey, sig.value);
  } catch {
    ok = false;
  }
  if (!ok) throw new DeviceCaError('bad-signature', 'a signature does not verify');
  return { certificate, digest, attributes, signingTime, signerInfo };
}

/** signerInfoDigest: the digest a SignerInfo names (its digestAlgorithm), to hash a streamed content with before verifying it. */
export function signerInfoDigest(signerInfo: Buffer): DigestName {
  const f = children(readOne(signerInfo, 0x30), 8);
  if (f.length < 5 || f[2].tag !== 0x30) throw new DeviceCaError('bad-request', 'SignerInfo cannot be read');
  return digestOf(decodeOid(children(f[2])[0]));
}

/** singleValue: the one value of a signed attribute that must occur with exactly one (RFC 5652 §11). */
export function singleValue(attrs: ReadonlyMap<string, Buffer[]>, type: string): Buffer {
  const v = attrs.get(type);
  if (!v || v.length !== 1) throw new DeviceCaError('bad-request', `signed attribute ${type} must have exactly one value`);
  return v[0];
}

function matchesSid(sid: Tlv, certDer: Buffer): boolean {
  if (sid.tag === 0x30) return sid.full.equals(issuerAndSerialNumber(certDer));
  if (sid.tag === 0x80) return subjectKeyId(certDer)?.equals(sid.value) ?? false; // [0] IMPLICIT SubjectKeyIdentifier (SignerInfo v3)
  return false;
}

/** subjectKeyId: the certificate's subjectKeyIdentifier extension value (RFC 5280 §4.2.1.2), or null. */
function subjectKeyId(certDer: Buffer): Buffer | null {
  const tbs = children(children(readOne(certDer, 0x30))[0]);
  const ext = tbs.find((t) => t.tag === 0xa3);
  if (!ext) return null;
  for (const e of children(children(ext)[0])) {
    const [id, ...rest] = children(e);
    if (decodeOid(id) === '2.5.29.14') return readOne(rest[rest.length - 1].value, 0x04).value;
  }
  return null;
}

/** decodeTime reads a UTCTime (RFC 5280 §4.1.2.5.1: YY < 50 is 20YY) or GeneralizedTime ending in Z. */
export function decodeTime(t: Tlv): Date {
  const s = t.value.toString('ascii');
  const m = t.tag === 0x17 ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s) : t.tag === 0x18 ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s) : null;
  if (!m) throw new DeviceCaError('bad-request', 'a time cannot be read');
  let y = Number(m[1]);
  if (t.tag === 0x17) y += y < 50 ? 2000 : 1900;
  return new Date(Date.UTC(y, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
}
