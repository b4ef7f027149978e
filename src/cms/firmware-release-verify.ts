import * as crypto from 'node:crypto';
import { children, decodeOid, readOne } from '../der/der-reader';
import { DeviceCaError } from '../errors/device-ca-error';
import { CMS_OID } from './cms-algorithms';
import { FirmwareMetadata, HardwareTarget, firmwareAttributesOf, forHardware, readFirmwareMetadata, sameAttributes } from './firmware-attributes';
import { bufferSource, ByteSource, fileSource, hashSource, tlvAt } from './byte-source';
import { Sink } from './file-range';
import { firmwareChainOf } from './firmware-chain';
import { EnvelopeRecipient, envelopeContentOf } from './firmware-envelope-open';
import { encryptedDataContentOf } from './firmware-group-key';
import type { GroupKey } from './firmware-group-key';
import { decryptKeyIdValue } from './firmware-group-release';
import { describeShortfall, policyShortfall, rolePolicy } from './firmware-policy';
import { readSignedDataFile } from './signed-data-file';
import { parseSignedDataParts, SignedDataParts } from './signed-data-parts';
import { ContentDigests, signerInfoDigest, VerifiedSigner, verifySignerInfo } from './signer-info';

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

/**
 * verifyFirmwareRelease checks a release held in memory (openFirmwareRelease over the Buffer) and returns
 * the image. `firmware verify` and the agent read the file instead: verifyFirmwareReleaseFile.
 */
export function verifyFirmwareRelease(der: Buffer, check: ReleaseCheck): VerifiedRelease {
  const parts = parseSignedDataParts(der);
  if (!parts.eContent) throw new DeviceCaError('bad-request', 'the release has no content');
  // kept without copying: a bufferSource's pieces are views of `der`, and deciphered pieces are fresh
  // Buffers, neither reused (a plain image stays the view of der it was, as before streaming)
  const pieces: Buffer[] = [];
  const release = openFirmwareRelease(parts, bufferSource(parts.eContent), check);
  const approvals = release.verifyImage((c) => pieces.push(c));
  return { image: pieces.length === 1 ? pieces[0] : Buffer.concat(pieces), metadata: release.metadata, encrypted: release.encrypted, approvals };
}

/**
 * verifyFirmwareReleaseFile checks the release in an open file and streams the image to the sink
 * (openFirmwareRelease over the file's eContent: memory holds a chunk, not the image). The sink may have
 * received the image, or part of it, when this throws: write it to a temporary file and keep that only
 * when this returns (writeFileAtomicWith).
 */
export function verifyFirmwareReleaseFile(fd: number, check: ReleaseCheck, sink: Sink): Omit<VerifiedRelease, 'image'> {
  const release = openReleaseFile(fd, check);
  const approvals = release.verifyImage(sink);
  return { metadata: release.metadata, encrypted: release.encrypted, approvals };
}

/** openReleaseFile: openFirmwareRelease of the DER SignedData in an open file (its eContent left in the file). */
export function openReleaseFile(fd: number, check: ReleaseCheck): OpenedRelease {
  const { parts, content } = readSignedDataFile(fd);
  return openFirmwareRelease(parts, fileSource(content), check);
}

/**
 * OpenedRelease: a release whose CA counter-signature verified: its metadata can be trusted (a device
 * can refuse a downgrade before it decrypts anything), its image and approvals are not checked yet.
 */
export interface OpenedRelease {
  metadata: FirmwareMetadata;
  encrypted: boolean;
  /**
   * verifyImage sends the image to the sink (an encrypted release decrypted chunk by chunk, every
   * approval hashed over the plaintext as it goes) and then checks the approvals, the roles, the version
   * and the hardware. Parts of the image may reach the sink before a check fails.
   */
  verifyImage(sink: Sink): VerifiedRelease['approvals'];
}

/**
 * openFirmwareRelease checks the chain and every SignerInfo of the outer SignedData (its content hashed
 * once, in chunks, with every digest they name), finds the signer CA's and reads the RFC 4108 attributes
 * it signed. `parts.eContent` is ignored: the content is `content`.
 */
export function openFirmwareRelease(parts: SignedDataParts, content: ByteSource, check: ReleaseCheck): OpenedRelease {
  const { signerCa } = firmwareChainOf(check.chain);
  const outer: ContentDigests = { digests: hashSource(content, parts.signerInfos.map(signerInfoDigest)) };
  const signerInfos = parts.signerInfos.map((si) => verifySignerInfo(si, parts.eContentType, outer, parts.certificates));
  const ca = signerInfos.find((s) => s.certificate.equals(signerCa.raw));
  if (!ca) throw new DeviceCaError('bad-signature', 'the release is not counter-signed by the firmware signer CA');
  if (!within(signerCa, ca.signingTime ?? check.now)) throw new DeviceCaError('forbidden', 'the signer CA certificate was not valid when it counter-signed');
  const metadata = readFirmwareMetadata(new Map(firmwareAttributesOf(ca.attributes).map((a) => [a.type, a.values])));
  const encrypted = parts.eContentType === CMS_OID.data;
  if (!encrypted && parts.eContentType !== CMS_OID.firmwarePackage) throw new DeviceCaError('bad-request', 'the file is not a firmware release');
  // a release to a group (an EncryptedData under the group key the CA's signed decryptKeyID names) or to
  // this device (an EnvelopedData): which one, and whether the device has what opens it, before any image
  const groupKeyId = encrypted ? groupKeyOf(content, ca.attributes) : null;
  if (groupKeyId !== null) {
    if (!check.groupKey) throw new DeviceCaError('bad-request', `the release is encrypted to group key ${groupKeyId}: fetch it first (GET /firmware/keys/${groupKeyId})`);
    if (check.groupKey.id !== groupKeyId) throw new DeviceCaError('bad-request', `the release is encrypted to group key ${groupKeyId}, not ${check.groupKey.id}`);
  } else if (check.groupKey) throw new DeviceCaError('bad-request', `a group key (${check.groupKey.id}) was given but the release is not encrypted to a group key`);
  else if (encrypted && !check.recipient) throw new DeviceCaError('bad-request', 'the release is encrypted: give the device certificate and key (--cert, --key)');

  const verifyImage = (sink: Sink): VerifiedRelease['approvals'] => {
    let parties: VerifiedSigner[];
    if (encrypted) {
      // a release to a group or to devices: either is deciphered chunk by chunk from the source into the sink
      const opened = groupKeyId !== null ? encryptedDataContentOf(content, (check.groupKey as GroupKey).key) : envelopeContentOf(content, check.recipient as EnvelopeRecipient);
      if (opened.contentType !== CMS_OID.firmwarePackage) throw new DeviceCaError('bad-request', 'the encrypted content is not a firmware package');
      const approvals = ca.attributes.get(CMS_OID.approvals);
      if (!approvals || approvals.length !== 1) throw new DeviceCaError('forbidden', 'the release carries no approvals');
      const approvalInfos = children(readOne(approvals[0], 0x31), 64).map((si) => Buffer.from(si.full));
      const hashes = [...new Set(approvalInfos.map(signerInfoDigest))].map((d) => [d, crypto.createHash(d)] as const);
      opened.decrypt((c) => {
        for (const [, h] of hashes) h.update(c);
        sink(c);
      });
      const image: ContentDigests = { digests: new Map(hashes.map(([d, h]) => [d, h.digest()])) };
      parties = approvalInfos.map((si) => verifySignerInfo(si, CMS_OID.firmwarePackage, image, parts.certificates));
    } else parties = signerInfos.filter((s) => s !== ca);

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
    // a plain image is the content the signatures were checked over: sent only once every check passed
    // (hashed again on the way: a file that changed since its signatures were checked is refused, and the
    // caller drops what reached the sink)
    if (!encrypted) {
      const again = [...outer.digests.keys()].map((d) => [d, crypto.createHash(d)] as const);
      for (const c of content.chunks(0, content.length)) {
        for (const [, h] of again) h.update(c);
        sink(c);
      }
      for (const [d, h] of again) if (!h.digest().equals(outer.digests.get(d) as Buffer)) throw new DeviceCaError('bad-signature', 'the release changed while it was read');
    }
    return approvals;
  };
  return { metadata, encrypted, verifyImage };
}

/**
 * groupKeyOf: the group key a release is encrypted under (RFC 4108 §2.2.4 decryptKeyID, signed by the CA),
 * when its encrypted layer is an EncryptedData (a release to a group); null for an EnvelopedData. Reads
 * the ContentInfo's header and type only.
 */
function groupKeyOf(content: ByteSource, caAttributes: ReadonlyMap<string, Buffer[]>): string | null {
  const outer = tlvAt(content, 0, content.length, 'the encrypted ContentInfo');
  const type = tlvAt(content, outer.valueStart, outer.end, 'the encrypted content type');
  if (type.tag !== 0x06 || decodeOid(readOne(content.read(type.start, type.end - type.start))) !== CMS_OID.encryptedData) return null;
  const named = caAttributes.get(CMS_OID.decryptKeyId);
  if (!named) throw new DeviceCaError('bad-request', 'the release is encrypted to a group key but names none (RFC 4108 decryptKeyID)');
  return decryptKeyIdValue(named);
}

function within(x: crypto.X509Certificate, at: Date): boolean {
  return at >= new Date(x.validFrom) && at <= new Date(x.validTo);
}
