import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { bufferSource } from '../../../src/cms/byte-source';
import { FirmwareReleases } from '../../../src/ra/firmware-release';

type ReleaseArgs = Parameters<FirmwareReleases['release']>[0];

/**
 * releaseToBuffer runs FirmwareReleases.release on a package held in a Buffer, into a directory of its
 * own, and gives the release's bytes back. It checks what a user would find in --out's directory: after
 * a release, the release and nothing else; after a refusal or an error, nothing at all (no half-written
 * --out, no temporary file).
 */
export async function releaseToBuffer(
  fw: FirmwareReleases,
  a: Omit<ReleaseArgs, 'package' | 'out'> & { package: Buffer },
): Promise<Awaited<ReturnType<FirmwareReleases['release']>> & { release: Buffer }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-release-'));
  const out = path.join(dir, 'release.der');
  try {
    let r: Awaited<ReturnType<FirmwareReleases['release']>>;
    try {
      r = await fw.release({ ...a, package: bufferSource(a.package), out });
    } catch (e) {
      const left = fs.readdirSync(dir);
      if (left.length > 0) throw new Error(`a refused release left ${left.join(', ')} (${String(e)})`);
      throw e;
    }
    const left = fs.readdirSync(dir);
    if (left.join() !== 'release.der') throw new Error(`a release left ${left.join(', ')} beside --out`);
    const release = fs.readFileSync(out);
    if (release.length !== r.bytes) throw new Error(`release says ${r.bytes} bytes, --out has ${release.length}`);
    return { ...r, release };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
