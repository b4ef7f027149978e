import { children, decodeOid, readOne } from '../der/der-reader';
import { generalizedTime, oid, seq, set, time, tlv } from '../der/der-writer';
import { DeviceCaError } from '../errors/device-ca-error';
import { SigningKey } from '../keys/key-backend';
import { CMS_OID } from './cms-algorithms';
import { envelopeToCertificates } from './enveloped-data';
import { FirmwareMetadata, firmwareAttributes, firmwareAttributesOf, readFirmwareMetadata, sameAttributes } from './firmware-attributes';
import { issuerAndSerialNumber } from './issuer-and-serial';
import { encodeSignedData, parseSignedDataParts, SignedDataParts } from './signed-data-parts';
import { buildSignerInfo, ContentDigests, SignedAttribute, VerifiedSigner, verifySignerInfo } from './signer-info';

/**
 * firmware-package: RFC 4108 firmware packages as device-ca writes them. The nesting (docs/firmware.md):
 *
 * package (create, then sign once per party):
 *   ContentInfo SignedData { eContentType id-ct-firmwarePackage, eContent = the image,
 *     SignerInfos: one per party, each signing contentType, messageDigest, signingTime and the RFC 4108
 *     attributes (firmwarePackageID, targetHardwareIDs, communityIdentifiers) }
 * plain release = the package with the template dropped and the CA's SignerInfo added over the same image:
 *   `openssl cms -verify` checks every party and the CA, `-out` gives the image.
 * encrypted release:
 *   ContentInfo SignedData { eContentType id-data, eContent = DER ContentInfo EnvelopedData
 *     { contentType id-ct-firmwarePackage, the image, one RecipientInfo per device key or curve },
 *     SignerInfos: the CA's only, whose signed attributes hold the RFC 4108 attributes and `approvals`
 *     (the parties' SignerInfos over the plaintext image), certificates: the parties' and the CA's }
 *   `openssl cms -verify -out x` checks the CA's signature; `openssl cms -decrypt -in x` gives the image.
 * RFC 4108 §1.2 puts EncryptedData (key delivered apart) under the signatures instead; an EnvelopedData
 * ContentInfo is what a device's stock CMS tool opens with its own key, and the parties cannot sign the
 * ciphertext because the recipients are only known at release.
 */

/** FirmwareSigner: a key and its certificate, with the certificates a verifier needs to chain it. */
export interface FirmwareSigner {
  certificate: Buffer;
  key: SigningKey;
  chain?: Buffer[];
}

/** createFirmwarePackage: an unsigned package; the RFC 4108 attributes ride in a template until the first signer copies them. */
export function createFirmwarePackage(image: Buffer, metadata: FirmwareMetadata): Buffer {
  return encodeSignedData({ ...unsignedPackageParts(image.length, metadata), eContent: image });
}

/** unsignedPackageParts: the fields of an unsigned package around an image of imageLength bytes. */
export function unsignedPackageParts(imageLength: number, metadata: FirmwareMetadata): Omit<SignedDataParts, 'eContent'> {
  if (imageLength === 0) throw new DeviceCaError('bad-request', 'the firmware image is empty');
  return { digestAlgorithms: [], eContentType: CMS_OID.firmwarePackage, certificates: [], crls: [templateOf(firmwareAttributes(metadata))], signerInfos: [] };
}

/** FirmwarePackage: a package whose every signature verified, and what the parties signed. */
export interface FirmwarePackage {
  parts: SignedDataParts;
  image: Buffer;
  metadata: FirmwareMetadata;
  /** attributes: the RFC 4108 signed attributes every party signed (byte-equal across parties) */
  attributes: SignedAttribute[];
  signers: VerifiedSigner[];
}

/**
 * readFirmwarePackage parses a package (or a plain release) and verifies every SignerInfo over the image.
 * Every party must have signed the same RFC 4108 attributes; an unsigned package's come from its
 * template. It proves which keys signed, not whose keys they are: the caller checks the certificates.
 * Errors: 'bad-request' (not a package, attributes differ), 'bad-signature', 'bad-algorithm'.
 */
export function readFirmwarePackage(der: Buffer): FirmwarePackage {
  const parts = parseSignedDataParts(der);
  if (parts.eContentType !== CMS_OID.firmwarePackage || !parts.eContent) throw new DeviceCaError('bad-request', 'the file is not a firmware package (id-ct-firmwarePackage, RFC 4108)');
  return { ...verifiedPackage(parts, parts.eContent), image: parts.eContent };
}

/**
 * verifiedPackage verifies every SignerInfo of a package's parts over its image (the bytes, or their
 * digests when the image is streamed from a file) and reads the attributes the parties signed.
 */
export function verifiedPackage(parts: SignedDataParts, image: Buffer | ContentDigests): Omit<FirmwarePackage, 'image'> {
  if (parts.eContentType !== CMS_OID.firmwarePackage) throw new DeviceCaError('bad-request', 'the file is not a firmware package (id-ct-firmwarePackage, RFC 4108)');
  const signers = parts.signerInfos.map((si) => verifySignerInfo(si, CMS_OID.firmwarePackage, image, parts.certificates));
  let attributes: SignedAttribute[] | null = null;
  for (const s of signers) {
    const a = firmwareAttributesOf(s.attributes);
    if (attributes && !sameAttributes(attributes, a)) throw new DeviceCaError('bad-request', 'the signers signed different firmware package attributes');
    attributes = a;
  }
  const template = parts.crls.map(readTemplate).find((t) => t !== null) ?? null;
  if (!attributes) {
    if (!template) throw new DeviceCaError('bad-request', 'the package has neither signers nor a package template');
    attributes = firmwareAttributesOf(new Map(template.map((a) => [a.type, a.values]))); // nothing else is copied into a signature
  }
  return { parts, metadata: readFirmwareMetadata(new Map(attributes.map((a) => [a.type, a.values]))), attributes, signers };
}

/**
 * signFirmwarePackage adds one SignerInfo to a package, leaving the others byte for byte: the party signs
 * the image and the package's RFC 4108 attributes with a signingTime. It first verifies the signatures
 * already there, and refuses a certificate that already signed. Works offline: no store, no CA.
 */
export async function signFirmwarePackage(der: Buffer, signer: FirmwareSigner, now: Date): Promise<Buffer> {
  const pkg = readFirmwarePackage(der);
  return encodeSignedData({ ...(await withSignature(pkg, pkg.image, signer, now)), eContent: pkg.image });
}

/**
 * withSignature: the package's fields with one more SignerInfo over the image (its bytes, or its digests
 * when streamed), after refusing a certificate that already signed.
 */
export async function withSignature(pkg: Omit<FirmwarePackage, 'image'>, image: Buffer | ContentDigests, signer: FirmwareSigner, now: Date): Promise<Omit<SignedDataParts, 'eContent'>> {
  const ias = issuerAndSerialNumber(signer.certificate);
  if (pkg.signers.some((s) => issuerAndSerialNumber(s.certificate).equals(ias))) throw new DeviceCaError('conflict', 'this certificate has already signed the package');
  const { signerInfo, digestAlgorithm } = await buildSignerInfo({
    contentType: CMS_OID.firmwarePackage,
    content: image,
    signer,
    attributes: [...pkg.attributes, signingTimeAttribute(now)],
  });
  return {
    ...pkg.parts,
    digestAlgorithms: [...pkg.parts.digestAlgorithms, digestAlgorithm],
    certificates: [...pkg.parts.certificates, signer.certificate, ...(signer.chain ?? [])],
    signerInfos: [...pkg.parts.signerInfos, signerInfo],
  };
}

/**
 * buildFirmwareRelease counter-signs a verified package as the CA (the caller has checked its policy and
 * the parties' certificates) and, with recipients, encrypts the image to them (see the nesting above).
 * The template is dropped: a release carries only signed attributes.
 */
export async function buildFirmwareRelease(pkg: FirmwarePackage, ca: FirmwareSigner, opts: { recipients?: Buffer[]; now: Date }): Promise<Buffer> {
  if (pkg.signers.length === 0) throw new DeviceCaError('bad-request', 'the package has no signers');
  if (!opts.recipients) return encodeSignedData({ ...(await plainReleaseParts(pkg, pkg.image, ca, opts.now)), eContent: pkg.image });
  const envelope = envelopeToCertificates(pkg.image, CMS_OID.firmwarePackage, opts.recipients);
  const signed = await buildSignerInfo({ contentType: CMS_OID.data, content: envelope, signer: ca, attributes: encryptedReleaseAttributes(pkg, opts.now) });
  return encodeSignedData({ ...encryptedReleaseParts(pkg, ca, signed), eContent: envelope });
}

/**
 * encryptedReleaseAttributes: what the CA signs in an encrypted release beside contentType and
 * messageDigest: the RFC 4108 attributes, approvals (the parties' SignerInfos over the plaintext), `extra`
 * (a group release's decryptKeyID) and signingTime.
 */
export function encryptedReleaseAttributes(pkg: Omit<FirmwarePackage, 'image'>, now: Date, extra: SignedAttribute[] = []): SignedAttribute[] {
  if (pkg.signers.length === 0) throw new DeviceCaError('bad-request', 'the package has no signers');
  return [...pkg.attributes, { type: CMS_OID.approvals, values: [set(...pkg.parts.signerInfos)] }, ...extra, signingTimeAttribute(now)];
}

/** encryptedReleaseParts: the fields of an encrypted release (eContentType id-data) around its encrypted ContentInfo: the CA's SignerInfo only, the parties' and the CA's certificates. */
export function encryptedReleaseParts(pkg: Omit<FirmwarePackage, 'image'>, ca: FirmwareSigner, signed: { signerInfo: Buffer; digestAlgorithm: Buffer }): Omit<SignedDataParts, 'eContent'> {
  return {
    digestAlgorithms: [signed.digestAlgorithm],
    eContentType: CMS_OID.data,
    certificates: [...pkg.parts.certificates, ca.certificate, ...(ca.chain ?? [])],
    crls: [],
    signerInfos: [signed.signerInfo],
  };
}

/** plainReleaseParts: the fields of a plain release: the package's, without the template, with the CA's SignerInfo over the image added. */
export async function plainReleaseParts(pkg: Omit<FirmwarePackage, 'image'>, image: Buffer | ContentDigests, ca: FirmwareSigner, now: Date): Promise<Omit<SignedDataParts, 'eContent'>> {
  if (pkg.signers.length === 0) throw new DeviceCaError('bad-request', 'the package has no signers');
  const { signerInfo, digestAlgorithm } = await buildSignerInfo({ contentType: CMS_OID.firmwarePackage, content: image, signer: ca, attributes: [...pkg.attributes, signingTimeAttribute(now)] });
  return {
    ...pkg.parts,
    crls: pkg.parts.crls.filter((c) => readTemplate(c) === null),
    digestAlgorithms: [...pkg.parts.digestAlgorithms, digestAlgorithm],
    certificates: [...pkg.parts.certificates, ca.certificate, ...(ca.chain ?? [])],
    signerInfos: [...pkg.parts.signerInfos, signerInfo],
  };
}

/** signingTimeAttribute: RFC 5652 §11.3, UTCTime through 2049 and GeneralizedTime after, as RFC 5280 times. */
export function signingTimeAttribute(now: Date): SignedAttribute {
  return { type: CMS_OID.signingTime, values: [now.getUTCFullYear() < 2050 ? time(now) : generalizedTime(now)] };
}

/** templateOf: the [1] IMPLICIT OtherRevocationInfoFormat (RFC 5652 §10.2.1) carrying the attributes. */
function templateOf(attrs: SignedAttribute[]): Buffer {
  return tlv(0xa1, oid(CMS_OID.packageTemplate), seq(...attrs.map((a) => seq(oid(a.type), set(...a.values)))));
}

function readTemplate(crl: Buffer): SignedAttribute[] | null {
  const t = readOne(crl);
  if (t.tag !== 0xa1) return null;
  const [format, attrs] = children(t, 2);
  if (!format || decodeOid(format) !== CMS_OID.packageTemplate || !attrs) return null;
  return children(attrs, 16).map((a) => {
    const [type, values] = children(a, 2);
    if (!type || values?.tag !== 0x31) throw new DeviceCaError('bad-request', 'the package template cannot be read');
    return { type: decodeOid(type), values: children(values, 16).map((v) => Buffer.from(v.full)) };
  });
}
