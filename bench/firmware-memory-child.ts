import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createFirmwarePackage, buildFirmwareRelease, FirmwareSigner, readFirmwarePackage, signFirmwarePackage } from '../src/cms/firmware-package';
import { fileSource } from '../src/cms/byte-source';
import { fdSink, readAt, wholeFile } from '../src/cms/file-range';
import { ReleaseFileOptions, writeFirmwareReleaseFile } from '../src/cms/firmware-release-file';
import { GroupKey, openEncryptedData } from '../src/cms/firmware-group-key';
import { readSignedDataFile } from '../src/cms/signed-data-file';
import { buildPlainReleaseFile, createFirmwarePackageFile, readFirmwarePackageFile, readFirmwarePackageSource, signFirmwarePackageFile } from '../src/cms/firmware-package-file';
import { openFirmwareRelease, ReleaseCheck, verifyFirmwareRelease, verifyFirmwareReleaseFile } from '../src/cms/firmware-release-verify';
import { pemBlocks } from '../src/ca/pem';
import { softwareSigningKey } from '../src/keys/software-key-backend';

/**
 * firmware-memory-child: one firmware operation in a process of its own, as the CLI runs it (files in,
 * files out), printing the process's peak resident set (VmHWM of /proc/self/status, in KiB) on stdout.
 * bench/firmware.ts runs it once per operation: a peak is only meaningful in a fresh process.
 * Usage: node firmware-memory-child.js <operation> <dir>; the dir holds image.bin, signer.key, signer.crt,
 * recipients.der (DER certificates, each length-prefixed), and for the release-verify operations chain.pem
 * (signer CA, root), device.crt/device.key, verify-plain.der/verify-enc.der, and verify-group.der with
 * group-key.json (id, key in hex); it receives the outputs.
 */
export const MEMORY_OPERATIONS = [
  'baseline',
  'create',
  'sign',
  'verify',
  'release-plain',
  'release-encrypted',
  'create-streamed',
  'sign-streamed',
  'verify-streamed',
  'release-plain-streamed',
  'release-verify-plain',
  'release-verify-encrypted',
  'release-verify-plain-streamed',
  'release-verify-encrypted-streamed',
  'release-encrypted-one',
  'release-file-plain',
  'release-file-encrypted-one',
  'release-verify-group-previous',
  'release-verify-group-streamed',
] as const;
export type MemoryOperation = (typeof MEMORY_OPERATIONS)[number];

function peakKiB(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'latin1'));
  if (!m) throw new Error('no VmHWM in /proc/self/status');
  return Number(m[1]);
}

function recipients(file: string): Buffer[] {
  const all = fs.readFileSync(file);
  const out: Buffer[] = [];
  for (let p = 0; p < all.length;) {
    const n = all.readUInt32BE(p);
    out.push(all.subarray(p + 4, p + 4 + n));
    p += 4 + n;
  }
  return out;
}

/** streamed: a streaming operation from one file into another, as the CLI runs it (without the atomic rename). */
async function streamed(from: string, to: string, op: (fd: number, sink: (b: Buffer) => void) => unknown): Promise<void> {
  const fd = fs.openSync(from, 'r');
  const out = fs.openSync(to, 'w');
  try {
    await op(fd, fdSink(out));
  } finally {
    fs.closeSync(fd);
    fs.closeSync(out);
  }
}

/**
 * releaseFile: what `firmware release` does with the package and the release (the RA's path without its
 * store): the package verified from its file, the release written into another file piece by piece.
 */
export async function releaseFile(from: string, to: string, signer: FirmwareSigner, opts: ReleaseFileOptions): Promise<void> {
  const fd = fs.openSync(from, 'r');
  const out = fs.openSync(to, 'w+');
  try {
    await writeFirmwareReleaseFile(readFirmwarePackageSource(fileSource(wholeFile(fd)), ['sha256']), signer, opts, out);
  } finally {
    fs.closeSync(fd);
    fs.closeSync(out);
  }
}

/** groupKey: the group key releasesToVerify encrypted verify-group.der under. */
function groupKey(f: (name: string) => string): GroupKey {
  const j = JSON.parse(fs.readFileSync(f('group-key.json'), 'utf8')) as { id: string; key: string };
  return { id: j.id, key: Buffer.from(j.key, 'hex') };
}

/** releaseCheck: a device of the bench's chain (role manufacturer is the policy). */
function releaseCheck(f: (name: string) => string): ReleaseCheck {
  return {
    chain: pemBlocks(fs.readFileSync(f('chain.pem'), 'latin1'), 'CERTIFICATE'),
    recipient: { certificate: Buffer.from(new crypto.X509Certificate(fs.readFileSync(f('device.crt'))).raw), key: crypto.createPrivateKey(fs.readFileSync(f('device.key'))) },
    roles: ['manufacturer'],
    now: new Date(),
  };
}

async function run(op: MemoryOperation, dir: string): Promise<void> {
  const f = (name: string): string => path.join(dir, name);
  const signer = {
    certificate: Buffer.from(new crypto.X509Certificate(fs.readFileSync(f('signer.crt'))).raw),
    key: softwareSigningKey(crypto.createPrivateKey(fs.readFileSync(f('signer.key'))), 'ecdsa-p256', f('signer.key')),
  };
  const now = new Date();
  switch (op) {
    case 'baseline':
      return;
    case 'create':
      fs.writeFileSync(f('unsigned.der'), createFirmwarePackage(fs.readFileSync(f('image.bin')), { name: 'bench', version: 1, hardware: [] }));
      return;
    case 'sign':
      fs.writeFileSync(f('signed.der'), await signFirmwarePackage(fs.readFileSync(f('unsigned.der')), signer, now));
      return;
    case 'verify':
      readFirmwarePackage(fs.readFileSync(f('signed.der')));
      return;
    case 'release-plain':
      fs.writeFileSync(f('release.der'), await buildFirmwareRelease(readFirmwarePackage(fs.readFileSync(f('signed.der'))), signer, { now }));
      return;
    case 'release-encrypted':
      fs.writeFileSync(f('release-enc.der'), await buildFirmwareRelease(readFirmwarePackage(fs.readFileSync(f('signed.der'))), signer, { now, recipients: recipients(f('recipients.der')) }));
      return;
    case 'create-streamed':
      return streamed(f('image.bin'), f('unsigned-s.der'), (fd, sink) => createFirmwarePackageFile(wholeFile(fd), { name: 'bench', version: 1, hardware: [] }, sink));
    case 'sign-streamed':
      return streamed(f('unsigned-s.der'), f('signed-s.der'), async (fd, sink) => (await signFirmwarePackageFile(fd, signer, now)).writeTo(sink));
    case 'verify-streamed':
      return streamed(f('signed-s.der'), '/dev/null', (fd) => readFirmwarePackageFile(fd));
    case 'release-verify-plain':
    case 'release-verify-encrypted':
      fs.writeFileSync(f('verified.bin'), verifyFirmwareRelease(fs.readFileSync(f(op === 'release-verify-plain' ? 'verify-plain.der' : 'verify-enc.der')), releaseCheck(f)).image);
      return;
    case 'release-verify-plain-streamed':
    case 'release-verify-encrypted-streamed':
      return streamed(f(op === 'release-verify-plain-streamed' ? 'verify-plain.der' : 'verify-enc.der'), f('verified-s.bin'), (fd, sink) => verifyFirmwareReleaseFile(fd, releaseCheck(f), sink));
    case 'release-encrypted-one':
      fs.writeFileSync(
        f('release-enc1.der'),
        await buildFirmwareRelease(readFirmwarePackage(fs.readFileSync(f('signed.der'))), signer, { now, recipients: recipients(f('recipients.der')).slice(0, 1) }),
      );
      return;
    case 'release-file-plain':
    case 'release-file-encrypted-one':
      return releaseFile(f('signed-s.der'), f('release-file.der'), signer, op === 'release-file-plain' ? { now } : { now, recipients: recipients(f('recipients.der')).slice(0, 1) });
    case 'release-verify-group-streamed':
      return streamed(f('verify-group.der'), f('verified-g.bin'), (fd, sink) => verifyFirmwareReleaseFile(fd, { ...releaseCheck(f), recipient: undefined, groupKey: groupKey(f) }, sink));
    case 'release-verify-group-previous':
      // the previous version's group path: the CA's signature checked over the file (streamed, as now),
      // then the whole EncryptedData read into memory and opened there
      return streamed(f('verify-group.der'), f('verified-g.bin'), (fd, sink) => {
        const { parts, content } = readSignedDataFile(fd);
        openFirmwareRelease(parts, fileSource(content), { ...releaseCheck(f), recipient: undefined, groupKey: groupKey(f) });
        sink(openEncryptedData(readAt(fd, content.offset, content.length), groupKey(f).key).content);
      });
    case 'release-plain-streamed':
      return streamed(f('signed-s.der'), f('release-s.der'), async (fd, sink) => (await buildPlainReleaseFile(readFirmwarePackageFile(fd, ['sha256']), signer, now)).writeTo(sink));
  }
}

if (require.main === module) {
  const [op, dir] = process.argv.slice(2);
  if (!MEMORY_OPERATIONS.includes(op as MemoryOperation) || !dir) {
    process.stderr.write(`usage: firmware-memory-child <${MEMORY_OPERATIONS.join('|')}> <dir>\n`);
    process.exit(2);
  }
  run(op as MemoryOperation, dir).then(
    () => process.stdout.write(`${peakKiB()}\n`),
    (e: unknown) => {
      process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
      process.exit(1);
    },
  );
}
