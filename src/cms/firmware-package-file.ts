import { DeviceCaError } from '../errors/device-ca-error';
import { CMS_OID, DigestName } from './cms-algorithms';
import { copyRange, FileRange, hashRange, Sink } from './file-range';
import { FirmwareMetadata } from './firmware-attributes';
import { FirmwarePackage, FirmwareSigner, plainReleaseParts, unsignedPackageParts, verifiedPackage, withSignature } from './firmware-package';
import { readSignedDataFile } from './signed-data-file';
import { SignedDataParts, signedDataLayout } from './signed-data-parts';
import { ContentDigests, digestFor, signerInfoDigest } from './signer-info';

/**
 * firmware-package-file: the package operations of firmware-package.ts on files, streamed (issue 13,
 * "memory stays bounded"): the image stays in its file, is hashed once while read (a signed attribute
 * needs only its digest, RFC 5652 §11.2) and copied chunk by chunk between the DER written around it
 * (definite lengths known ahead from the file size). The output is byte for byte what the Buffer
 * functions write for the same inputs; the encoding decisions stay in firmware-package.ts.
 */

/** FirmwarePackageFile: a package in a file whose every signature verified; the image is a range of the file, with its digests. */
export interface FirmwarePackageFile extends Omit<FirmwarePackage, 'image'> {
  image: FileRange;
  digests: ContentDigests;
}

/** createFirmwarePackageFile writes an unsigned package around the image (createFirmwarePackage's bytes) to the sink; returns its length. */
export function createFirmwarePackageFile(image: FileRange, metadata: FirmwareMetadata, sink: Sink): number {
  const out = around(unsignedPackageParts(image.length, metadata), image);
  out.writeTo(sink);
  return out.length;
}

/**
 * readFirmwarePackageFile reads a package (or a plain release) from an open file and verifies every
 * SignerInfo over the image, hashing it once with each digest the SignerInfos name and the `also` ones
 * (a signature about to be added). Errors as readFirmwarePackage's.
 */
export function readFirmwarePackageFile(fd: number, also: DigestName[] = []): FirmwarePackageFile {
  const { parts, content } = readSignedDataFile(fd);
  if (parts.eContentType !== CMS_OID.firmwarePackage) throw new DeviceCaError('bad-request', 'the file is not a firmware package (id-ct-firmwarePackage, RFC 4108)');
  const digests = { digests: hashRange(content, [...parts.signerInfos.map(signerInfoDigest), ...also]) };
  return { ...verifiedPackage(parts, digests), image: content, digests };
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
  return { ...around(await withSignature(before, before.digests, signer, now), before.image), before };
}

/** buildPlainReleaseFile: buildFirmwareRelease's plain release of a package read by readFirmwarePackageFile (with the CA key's digest among `also`). */
export async function buildPlainReleaseFile(pkg: FirmwarePackageFile, ca: FirmwareSigner, now: Date): Promise<StreamedOutput> {
  if (!pkg.digests.digests.has(digestFor(ca.key))) throw new DeviceCaError('bad-algorithm', `the package was not hashed with ${digestFor(ca.key)}`);
  return around(await plainReleaseParts(pkg, pkg.digests, ca, now), pkg.image);
}

/** around: the SignedData of `parts` with the range as its eContent, to be streamed. */
function around(parts: Omit<SignedDataParts, 'eContent'>, content: FileRange): StreamedOutput {
  const { head, tail } = signedDataLayout(parts, content.length);
  return {
    length: head.length + content.length + tail.length,
    writeTo: (sink) => {
      sink(head);
      copyRange(content, sink);
      sink(tail);
    },
  };
}
