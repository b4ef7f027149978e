import * as crypto from 'node:crypto';
import { children, decodeOid, readOne } from '../der/der-reader';
import { DeviceCaError } from '../errors/device-ca-error';
import { CMS_OID } from './cms-algorithms';
import { FirmwareMetadata, HardwareTarget, firmwareAttributesOf, readFirmwareMetadata, sameAttributes } from './firmware-attributes';
import { firmwareChainOf } from './firmware-chain';
import { EnvelopeRecipient, openFirmwareEnvelope } from './firmware-envelope-open';
import { GroupKey, openEncryptedData } from './firmware-group-key';
import { decryptKeyIdValue } from './firmware-group-release';
import { describeShortfall, policyShortfall, rolePolicy } from './firmware-policy';
import { parseSignedDataParts } from './signed-data-parts';
import { VerifiedSigner, verifySignerInfo } from './signer-info';

/**
 * firmware-release-verify: what a device checks before it installs a release (docs/firmware.md), with
 * nothing but the firmware chain (signer CA, root) and its own key: the signer CA's counter-signature, the
 * image (decrypted when the release is encrypted), every party's signature over the image with a
 * certificate of the signer CA valid at its signing time, the roles (the OU of each party's certificate)
 * against the policy, the version against the installed one (RFC 4108 anti-rollback), and the hardware.
 * Each refusal is a DeviceCaError naming the check: 'bad-signature' (a signature or digest), 'forbidden'
 * (a policy check), 'bad-request' (malformed, or not addressed to this device).
 */

/** ReleaseCheck: what the device knows and requires. */
export interface ReleaseCheck {
  /** chain: the firmware chain: the signer CA certificate and the root (and link certificates between them: firmwareChainOf) */
  chain: Buffer[];
  /** recipient: the device's certificate and its key (software, or the agent's TPM), to decrypt an encrypted release */
  recipient?: EnvelopeRecipient;
  /** groupKey: the group key a release to a group is encrypted under (decryptKeyIdOf names it; the agent fetches it) */
  groupKey?: GroupKey;
  /** roles: the roles of the device's policy */
  roles: readonly string[];
  /** require: how many distinct roles of `roles` must have approved (default: all) */
  require?: number;
  /** installed: the installed version; the release must be above it */
  installed?: number;
  /** hardware: this device's module type and serial number */
  hardware?: HardwareTarget;
  now: Date;
}

/** VerifiedRelease: the image and who approved it. */
export interface VerifiedRelease {
  image: Buffer;
  metadata: FirmwareMetadata;
  encrypted: boolean;
  approvals: { subject: string; role: string; signingTime: Date }[];
}

export function verifyFirmwareRelease(der: Buffer, check: ReleaseCheck): VerifiedRelease {
  const { signerCa } = firmwareChainOf(check.chain);
  const parts = parseSignedDataParts(der);
  if (!parts.eContent) throw new DeviceCaError('bad-request', 'the release has no content');
  const signerInfos = parts.signerInfos.map((si) => verifySignerInfo(si, parts.eContentType, parts.eContent, parts.certificates));
  const ca = signerInfos.find((s) => s.certificate.equals(signerCa.raw));
  if (!ca) throw new DeviceCaError('bad-signature', 'the release is not counter-signed by the firmware signer CA');
  if (!within(signerCa, ca.signingTime ?? check.now)) throw new DeviceCaError('forbidden', 'the signer CA certificate was not valid when it counter-signed');
  const metadata = readFirmwareMetadata(new Map(firmwareAttributesOf(ca.attributes).map((a) => [a.type, a.values])));

  let image: Buffer;
  let parties: VerifiedSigner[];
  const encrypted = parts.eContentType === CMS_OID.data;
  if (encrypted) {
    const opened = openEncryptedRelease(parts.eContent, ca.attributes, check);
    if (opened.contentType !== CMS_OID.firmwarePackage) throw new DeviceCaError('bad-request', 'the encrypted content is not a firmware package');
    image = opened.content;
    const approvals = ca.attributes.get(CMS_OID.approvals);
    if (!approvals || approvals.length !== 1) throw new DeviceCaError('forbidden', 'the release carries no approvals');
    parties = children(readOne(approvals[0], 0x31), 64).map((si) => verifySignerInfo(Buffer.from(si.full), CMS_OID.firmwarePackage, image, parts.certificates));
  } else if (parts.eContentType === CMS_OID.firmwarePackage) {
    image = parts.eContent;
    parties = signerInfos.filter((s) => s !== ca);
  } else throw new DeviceCaError('bad-request', 'the file is not a firmware release');

  const approvals: VerifiedRelease['approvals'] = [];
  for (const p of parties) {
    const x = new crypto.X509Certificate(p.certificate);
    const subject = x.subject.replace(/\n/g, ', ');
    if (!x.checkIssued(signerCa) || !x.verify(signerCa.publicKey)) throw new DeviceCaError('forbidden', `an approval is signed by ${subject}, not a certificate of the firmware signer CA`);
    if (!p.signingTime || !within(x, p.signingTime)) throw new DeviceCaError('forbidden', `the approval of ${subject} has no signing time within its certificate's validity`);
    if (!sameAttributes(firmwareAttributesOf(p.attributes), firmwareAttributesOf(ca.attributes)))
      throw new DeviceCaError('forbidden', `${subject} approved another package (name, version or hardware)`);
    const role = /(?:^|\n)OU=([^\n]*)/.exec(x.subject)?.[1] ?? '';
    approvals.push({ subject, role, signingTime: p.signingTime });
  }
  const policy = rolePolicy(check.roles, check.require);
  const short = policyShortfall(policy, new Set(approvals.map((a) => a.role)));
  if (short) throw new DeviceCaError('forbidden', `the release lacks approvals of ${describeShortfall(policy, short)}`);
  if (check.installed !== undefined && metadata.version <= check.installed)
    throw new DeviceCaError('forbidden', `version ${metadata.version} is not above the installed version ${check.installed} (anti-rollback)`);
  if (check.hardware && !forHardware(metadata.hardware, check.hardware))
    throw new DeviceCaError('forbidden', `the package is for other hardware (${metadata.hardware.map((h) => (h.serial ? `${h.type}:${h.serial}` : h.type)).join(', ')})`);
  return { image, metadata, encrypted, approvals };
}

/**
 * openEncryptedRelease: the encrypted layer of a release: an EnvelopedData opened with the device key, or
 * an EncryptedData (a release to a group) opened with the group key the CA's signed decryptKeyID names.
 */
function openEncryptedRelease(contentInfo: Buffer, caAttributes: ReadonlyMap<string, Buffer[]>, check: ReleaseCheck): { contentType: string; content: Buffer } {
  const [type] = children(readOne(contentInfo, 0x30), 2);
  if (type?.tag === 0x06 && decodeOid(type) === CMS_OID.encryptedData) {
    const named = caAttributes.get(CMS_OID.decryptKeyId);
    if (!named) throw new DeviceCaError('bad-request', 'the release is encrypted to a group key but names none (RFC 4108 decryptKeyID)');
    const id = decryptKeyIdValue(named);
    if (!check.groupKey) throw new DeviceCaError('bad-request', `the release is encrypted to group key ${id}: fetch it first (GET /firmware/keys/${id})`);
    if (check.groupKey.id !== id) throw new DeviceCaError('bad-request', `the release is encrypted to group key ${id}, not ${check.groupKey.id}`);
    return openEncryptedData(contentInfo, check.groupKey.key);
  }
  if (!check.recipient) throw new DeviceCaError('bad-request', 'the release is encrypted: give the device certificate and key (--cert, --key)');
  return openFirmwareEnvelope(contentInfo, check.recipient);
}

/** forHardware: RFC 4108 §2.2.2: the module type is a target (no targets: any), and when serials of that type are named (§2.2.5), ours is one. */
function forHardware(targets: HardwareTarget[], ours: HardwareTarget): boolean {
  if (targets.length === 0) return true;
  const ofType = targets.filter((t) => t.type === ours.type);
  if (ofType.length === 0) return false;
  const serials = ofType.filter((t) => t.serial !== undefined).map((t) => t.serial);
  return serials.length === 0 || (ours.serial !== undefined && serials.includes(ours.serial));
}

function within(x: crypto.X509Certificate, at: Date): boolean {
  return at >= new Date(x.validFrom) && at <= new Date(x.validTo);
}
