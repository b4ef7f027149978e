import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { seq, oid } from '../der/der-writer';
import { DeviceCaError } from '../errors/device-ca-error';
import { hashSource } from './byte-source';
import { CMS_OID, DIGEST_OID } from './cms-algorithms';
import { EncryptedLayout, envelopeLayout } from './enveloped-data';
import { fdSink, moveWithin, writeAt } from './file-range';
import { encryptedDataLayout, GroupKey } from './firmware-group-key';
import { decryptKeyIdAttribute } from './firmware-group-release';
import { encryptedReleaseAttributes, encryptedReleaseParts, FirmwareSigner } from './firmware-package';
import { buildPlainReleaseFile, FirmwarePackageFile } from './firmware-package-file';
import { signedDataLayout } from './signed-data-parts';
import { buildSignerInfo, ContentDigests, digestFor } from './signer-info';

/**
 * firmware-release-file: a release written into an open (temporary) file piece by piece, with one chunk
 * of the image in memory (issue 13, "memory stays bounded"). The bytes are structured as
 * buildFirmwareRelease and buildGroupFirmwareRelease write them (the encoding decisions are theirs:
 * plainReleaseParts, encryptedReleaseParts, encryptedReleaseAttributes, the layouts of the encrypted
 * ContentInfos); only the randomness (content key, IV, ECDH keys) and the CA's signature differ.
 *
 * A plain release's CA signature is made first, over the digests the package was verified with, then the
 * file is written in order. An encrypted release's messageDigest is over the ciphertext, known only once
 * the image is encrypted, and the CA's SignerInfo (whose length varies with its ECDSA signature) ends
 * the file: the encrypted ContentInfo is written after a DER head laid out with a placeholder SignerInfo,
 * hashed in the same pass, then the CA signs, and the real head is written in front. DER lengths are
 * definite, so the real head differs from the laid-out one in its length only when a length crosses a
 * 128/256/64 KiB/16 MiB boundary; then the content is moved by those bytes within the file.
 */

/** ReleaseFileOptions: a plain release (neither), one encrypted to device certificates, or one under a group key. */
export interface ReleaseFileOptions {
  recipients?: Buffer[];
  groupKey?: GroupKey;
  now: Date;
  /** signerInfoGuess: the placeholder SignerInfo's length (default: from the attributes); tests force a wrong one to move the content */
  signerInfoGuess?: number;
}

/**
 * writeFirmwareReleaseFile counter-signs a verified package as the CA (the caller has made every
 * decision) and writes the release from the start of the open, empty file `fd`; returns its length. The
 * image is read once more (encrypted on the way when asked to) and hashed again: a package that changed
 * since its signatures were verified is refused ('bad-request'), and the caller drops the file.
 */
export async function writeFirmwareReleaseFile(pkg: FirmwarePackageFile, ca: FirmwareSigner, opts: ReleaseFileOptions, fd: number): Promise<number> {
  if (pkg.signers.length === 0) throw new DeviceCaError('bad-request', 'the package has no signers');
  if (opts.recipients && opts.groupKey) throw new DeviceCaError('bad-request', 'a release is encrypted to devices or to a group, not both');
  const digest = digestFor(ca.key);
  if (!opts.recipients && !opts.groupKey) {
    // the CA's digest is among the package's when the RA asked for it (readFirmwarePackageSource `also`); else one more pass
    const digests: ContentDigests = pkg.digests.digests.has(digest) ? pkg.digests : { digests: new Map([...pkg.digests.digests, ...hashSource(pkg.image, [digest])]) };
    const out = await buildPlainReleaseFile({ ...pkg, digests }, ca, opts.now);
    out.writeTo(fdSink(fd));
    return out.length;
  }
  const layout: EncryptedLayout = opts.groupKey
    ? encryptedDataLayout(pkg.image.length, CMS_OID.firmwarePackage, opts.groupKey.key)
    : envelopeLayout(pkg.image.length, CMS_OID.firmwarePackage, opts.recipients as Buffer[]);
  const attributes = encryptedReleaseAttributes(pkg, opts.now, opts.groupKey ? [decryptKeyIdAttribute(opts.groupKey)] : []);
  const contentLength = layout.head.length + layout.encryptedLength;
  // the placeholder: as long as the attributes the CA will sign and a signature; only its length matters
  const placeholder = Buffer.alloc(opts.signerInfoGuess ?? attributes.reduce((n, a) => n + a.values.reduce((m, v) => m + v.length + 8, 16), 0) + 512);
  const laidOut = signedDataLayout(encryptedReleaseParts(pkg, ca, { signerInfo: placeholder, digestAlgorithm: seq(oid(DIGEST_OID[digest])) }), contentLength).head.length;

  const outer = crypto.createHash(digest);
  const [checkDigest, checkValue] = [...pkg.digests.digests][0];
  const plain = crypto.createHash(checkDigest);
  let at = laidOut;
  const put = (b: Buffer): void => {
    outer.update(b);
    writeAt(fd, b, at);
    at += b.length;
  };
  put(layout.head);
  const cipher = layout.cipher();
  for (const c of pkg.image.chunks(0, pkg.image.length)) {
    plain.update(c);
    const e = cipher.update(c);
    if (e.length > 0) put(e);
  }
  put(cipher.final());
  if (at !== laidOut + contentLength) throw new Error('writeFirmwareReleaseFile: ciphertext length differs from the layout'); // cannot happen with CBC
  if (!plain.digest().equals(checkValue)) throw new DeviceCaError('bad-request', 'the package changed while it was read');

  const signed = await buildSignerInfo({ contentType: CMS_OID.data, content: { digests: new Map([[digest, outer.digest()]]) }, signer: ca, attributes });
  const { head, tail } = signedDataLayout(encryptedReleaseParts(pkg, ca, signed), contentLength);
  moveWithin(fd, laidOut, head.length, contentLength);
  writeAt(fd, head, 0);
  writeAt(fd, tail, head.length + contentLength);
  const length = head.length + contentLength + tail.length;
  fs.ftruncateSync(fd, length);
  return length;
}
