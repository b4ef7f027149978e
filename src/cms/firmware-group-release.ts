import { children, decodeOid, readOne } from '../der/der-reader';
import { octetString } from '../der/der-writer';
import { DeviceCaError } from '../errors/device-ca-error';
import { CMS_OID } from './cms-algorithms';
import { encryptedDataContentInfo, GROUP_KEY_ID_BYTES, GroupKey } from './firmware-group-key';
import { encryptedReleaseAttributes, encryptedReleaseParts, FirmwarePackage, FirmwareSigner } from './firmware-package';
import { encodeSignedData, parseSignedDataParts } from './signed-data-parts';
import { buildSignerInfo, SignedAttribute } from './signer-info';

/**
 * firmware-group-release: an encrypted release to a group key (docs/firmware.md "Group key"). The nesting
 * is the per-device encrypted release's, with the EnvelopedData replaced by an EncryptedData:
 *
 *   ContentInfo SignedData { eContentType id-data, eContent = DER ContentInfo EncryptedData
 *     { id-ct-firmwarePackage, aes-256-cbc, the image under the group key },
 *     SignerInfos: the CA's only, signing contentType, messageDigest, signingTime, the RFC 4108
 *     attributes, approvals, and decryptKeyID (RFC 4108 §2.2.4: OCTET STRING, the key's 16 bytes) }
 *
 * `openssl cms -verify -out x` checks the CA; `openssl cms -EncryptedData_decrypt -secretkey <hex> -in x`
 * gives the image.
 */

/** buildGroupFirmwareRelease counter-signs a verified package as the CA and encrypts its image under the group key. */
export async function buildGroupFirmwareRelease(pkg: FirmwarePackage, ca: FirmwareSigner, opts: { groupKey: GroupKey; now: Date }): Promise<Buffer> {
  if (pkg.signers.length === 0) throw new DeviceCaError('bad-request', 'the package has no signers');
  const encrypted = encryptedDataContentInfo(pkg.image, CMS_OID.firmwarePackage, opts.groupKey.key);
  const attributes = encryptedReleaseAttributes(pkg, opts.now, [decryptKeyIdAttribute(opts.groupKey)]);
  const signed = await buildSignerInfo({ contentType: CMS_OID.data, content: encrypted, signer: ca, attributes });
  return encodeSignedData({ ...encryptedReleaseParts(pkg, ca, signed), eContent: encrypted });
}

/** decryptKeyIdAttribute: RFC 4108 §2.2.4 decryptKeyID naming the group key (OCTET STRING of its 16 bytes), signed by the CA. */
export function decryptKeyIdAttribute(g: GroupKey): SignedAttribute {
  return { type: CMS_OID.decryptKeyId, values: [octetString(Buffer.from(g.id, 'hex'))] };
}

/**
 * decryptKeyIdOf: the group key identifier (32 hex digits) a release names in a SignerInfo's
 * decryptKeyID attribute, or null when no SignerInfo has one (a plain or per-device release). It reads,
 * it does not verify: the agent fetches the key, then verifyFirmwareRelease checks the CA signed this
 * attribute. 'bad-request' for a malformed attribute.
 */
export function decryptKeyIdOf(release: Buffer): string | null {
  return decryptKeyIdOfSignerInfos(parseSignedDataParts(release).signerInfos);
}

/** decryptKeyIdOfSignerInfos: decryptKeyIdOf over SignerInfos already read (e.g. by readSignedDataFile, the content left in the file). */
export function decryptKeyIdOfSignerInfos(signerInfos: Buffer[]): string | null {
  for (const si of signerInfos) {
    const values = signedAttributeValues(si, CMS_OID.decryptKeyId);
    if (values === null) continue;
    return decryptKeyIdValue(values);
  }
  return null;
}

/** decryptKeyIdValue: the key identifier of a decryptKeyID attribute's values (exactly one OCTET STRING of 16 bytes). */
export function decryptKeyIdValue(values: Buffer[]): string {
  const v = values.length === 1 ? readOne(values[0]) : null;
  if (v?.tag !== 0x04 || v.value.length !== GROUP_KEY_ID_BYTES) throw new DeviceCaError('bad-request', 'the decrypt key identifier (RFC 4108 §2.2.4) is not a 16-byte OCTET STRING');
  return v.value.toString('hex');
}

/** signedAttributeValues: the values of one signed attribute of a DER SignerInfo, or null. */
function signedAttributeValues(signerInfo: Buffer, type: string): Buffer[] | null {
  const fields = children(readOne(signerInfo, 0x30), 8);
  const attrs = fields.find((f) => f.tag === 0xa0);
  if (!attrs) return null;
  for (const a of children(attrs, 64)) {
    const [t, values] = children(a, 2);
    if (t?.tag === 0x06 && values?.tag === 0x31 && decodeOid(t) === type) return children(values, 16).map((x) => Buffer.from(x.full));
  }
  return null;
}
