import * as crypto from 'node:crypto';
import { DeviceCaError } from '../errors/device-ca-error';
import { ByteSource, fileSource, hashSource, subSource } from './byte-source';
import { CMS_OID, DigestName } from './cms-algorithms';
import { FileRange, Sink, wholeFile } from './file-range';
import { FirmwareMetadata } from './firmware-attributes';
import { FirmwarePackage, FirmwareSigner, plainReleaseParts, unsignedPackageParts, verifiedPackage, withSignature } from './firmware-package';
import { readSignedDataSource } from './signed-data-file';
import { SignedDataParts, signedDataLayout } from './signed-data-parts';
import { ContentDigests, digestFor, signerInfoDigest } from './signer-info';

/**
 * firmware-package-file: the package operations of firmware-package.ts on files, streamed (issue 13,
 * "memory stays bounded"): the image stays in its file, is hashed once while read (a signed attribute
 * needs only its digest, RFC 5652 §11.2) and copied chunk by chunk between the DER written around it
 * (definite lengths known ahead from the file size). The output is byte for byte what the Buffer
 * functions write for the same inputs; the encoding decisions stay in firmware-package.ts.
 */

/**
 * FirmwarePackageFile: a package whose every signature verified, its image left in its source (a range of
 * the package file, or of a Buffer), with the digests computed while verifying.
 */
export interface FirmwarePackageFile extends Omit<FirmwarePackage, 'image'> {
  image: ByteSource;
  digests: ContentDigests;
}

/** createFirmwarePackageFile writes an unsigned package around the image (createFirmwarePackage's bytes) to the sink; returns its length. */
export function createFirmwarePackageFile(image: FileRange, metadata: FirmwareMetadata, sink: Sink): number {
  const out = around(unsignedPackageParts(image.length, metadata), fileSource(image));
  out.writeTo(sink);
  return out.length;
}

/**
 * readFirmwarePackageFile reads a package (or a plain release) from an open file and verifies every
 * SignerInfo over the image, hashing it once with each digest the SignerInfos name and the `also` ones
 * (a signature about to be added). Errors as readFirmwarePackage's.
 */
export function readFirmwarePackageFile(fd: number, also: DigestName[] = []): FirmwarePackageFile {
  return readFirmwarePackageSource(fileSource(wholeFile(fd)), also);
}

/**
 * readFirmwarePackageSource is readFirmwarePackageFile over any source (the release of the RA takes a
 * file or a Buffer alike): one pass over the image, whatever the number of signers.
 */
export function readFirmwarePackageSource(src: ByteSource, also: DigestName[] = []): FirmwarePackageFile {
  const { parts, content } = readSignedDataSource(src);
  if (parts.eContentType !== CMS_OID.firmwarePackage) throw new DeviceCaError('bad-request', 'the file is not a firmware package (id-ct-firmwarePackage, RFC 4108)');
  const image = subSource(src, content.offset, content.length);
  const digests = { digests: hashSource(image, [...parts.signerInfos.map(signerInfoDigest), ...also]) };
  return { ...verifiedPackage(parts, digests), image, digests };
}

/**
 * StreamedOutput: a signed encoding ready to be written: everything but the image is in memory (the
 * signatures are made), and writeTo streams the whole of it, image included, to a sink; `length` is its size.
 */
export interface StreamedOutput {
  length: number;
  writeTo(sink: Sink): void;
}

/**
 * signFirmwarePackageFile adds one SignerInfo to the package in `fd`, as signFirmwarePackage does; the
 * result streams the signed package (the fd must stay open until then). `before` is the package as it
 * was (what the party signed).
 */
export async function signFirmwarePackageFile(fd: number, signer: FirmwareSigner, now: Date): Promise<StreamedOutput & { before: FirmwarePackageFile }> {
  const before = readFirmwarePackageFile(fd, [digestFor(signer.key)]);
  return { ...around(await withSignature(before, before.digests, signer, now), before.image, before.digests), before };
}

/** buildPlainReleaseFile: buildFirmwareRelease's plain release of a package read by readFirmwarePackageSource (with the CA key's digest among `also`). */
export async function buildPlainReleaseFile(pkg: FirmwarePackageFile, ca: FirmwareSigner, now: Date): Promise<StreamedOutput> {
  if (!pkg.digests.digests.has(digestFor(ca.key))) throw new DeviceCaError('bad-algorithm', `the package was not hashed with ${digestFor(ca.key)}`);
  return around(await plainReleaseParts(pkg, pkg.digests, ca, now), pkg.image, pkg.digests);
}

/**
 * around: the SignedData of `parts` with the source as its eContent, to be streamed. With `signed` (the
 * digests the signatures were made over) the content is hashed again on its way out and a content that
 * changed since (a file rewritten under us) is refused after the write, which the caller's atomic write
 * then discards: what is kept always matches its signatures.
 */
function around(parts: Omit<SignedDataParts, 'eContent'>, content: ByteSource, signed?: ContentDigests): StreamedOutput {
  const { head, tail } = signedDataLayout(parts, content.length);
  return {
    length: head.length + content.length + tail.length,
    writeTo: (sink) => {
      sink(head);
      const [digest, expected] = signed ? [...signed.digests][0] : [];
      const h = digest ? crypto.createHash(digest) : null;
      for (const c of content.chunks(0, content.length)) {
        h?.update(c);
        sink(c);
      }
      if (h && !h.digest().equals(expected as Buffer)) throw new DeviceCaError('bad-request', 'the package changed while it was read');
      sink(tail);
    },
  };
}
