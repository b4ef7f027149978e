import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { bufferSource } from '../../../src/cms/byte-source';
import { readFirmwarePackageFile, readFirmwarePackageSource } from '../../../src/cms/firmware-package-file';
import { createFirmwarePackage, readFirmwarePackage, signFirmwarePackage } from '../../../src/cms/firmware-package';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { softwareSigningKey } from '../../../src/keys/software-key-backend';
import { mutateBytes } from '../../fuzz/byte-mutations';
import { SeededRandom } from '../../fuzz/seeded-random';
import { makeParty, removeParty } from './cms-fixture';

/**
 * Seeded mutations of a valid signed package (and of an unsigned one, whose template is read): the reader
 * either accepts the bytes or refuses them with a DeviceCaError; never a TypeError or RangeError (which
 * the CLI would report as an internal error), and never a package whose image differs from what was signed.
 */
const SEED = Number(process.env.FUZZ_SEED ?? 4108);

it('readFirmwarePackage refuses mutated packages with a DeviceCaError, and accepts none with another image', async () => {
  const party = makeParty('fuzz-signer', 'P-256');
  try {
    const signer = { certificate: party.certDer, key: softwareSigningKey(party.key, 'ecdsa-p256', party.keyFile) };
    const image = crypto.randomBytes(2000);
    const unsigned = createFirmwarePackage(image, { name: 'fuzz', version: 3, hardware: [{ type: '1.2.3.4', serial: 'S1' }, { type: '1.2.3.5' }] });
    const signed = await signFirmwarePackage(unsigned, signer, new Date());
    const rng = new SeededRandom(SEED);
    const others: string[] = [];
    let refused = 0;
    for (let i = 0; i < 3000; i++) {
      const base = i % 3 === 0 ? unsigned : signed;
      const m = mutateBytes(rng, base);
      try {
        const p = readFirmwarePackage(m.bytes);
        if (p.signers.length > 0 && !p.image.equals(image)) others.push(`case ${i} (${m.how}): accepted another image`);
      } catch (e) {
        refused++;
        if (!(e instanceof DeviceCaError)) others.push(`case ${i} (${m.how}): ${String(e)}`);
      }
    }
    expect(others).toEqual([]);
    expect(refused).toBeGreaterThan(1000); // the mutations reach the checks
  } finally {
    removeParty(party);
  }
});

it('readFirmwarePackageFile and readFirmwarePackageSource (streamed) give the same verdict as readFirmwarePackage on every mutated package, and the same image', async () => {
  const party = makeParty('fuzz-signer', 'P-256');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-fw-fuzz-'));
  try {
    const signer = { certificate: party.certDer, key: softwareSigningKey(party.key, 'ecdsa-p256', party.keyFile) };
    const image = crypto.randomBytes(2000);
    const unsigned = createFirmwarePackage(image, { name: 'fuzz', version: 3, hardware: [{ type: '1.2.3.4' }] });
    const signed = await signFirmwarePackage(unsigned, signer, new Date());
    const rng = new SeededRandom(SEED + 1);
    const verdict = (f: () => Buffer): string => {
      try {
        return `accepted ${crypto.createHash('sha256').update(f()).digest('hex')}`;
      } catch (e) {
        return e instanceof DeviceCaError ? `refused ${e.code}` : `other ${String(e)}`;
      }
    };
    const differ: string[] = [];
    const file = path.join(dir, 'm.der');
    for (let i = 0; i < 1500; i++) {
      const m = mutateBytes(rng, i % 3 === 0 ? unsigned : signed);
      fs.writeFileSync(file, m.bytes);
      const fd = fs.openSync(file, 'r');
      try {
        const ours = verdict(() => {
          const p = readFirmwarePackageFile(fd);
          return Buffer.concat([...p.image.chunks(0, p.image.length)].map((c) => Buffer.from(c)));
        });
        // the RA's release reads a package from a source: a Buffer's must give the file's verdict
        const source = verdict(() => {
          const p = readFirmwarePackageSource(bufferSource(m.bytes));
          return p.image.read(0, p.image.length);
        });
        const theirs = verdict(() => readFirmwarePackage(m.bytes).image);
        if (ours !== theirs || source !== theirs) differ.push(`case ${i} (${m.how}): file ${ours}, source ${source}, buffer ${theirs}`);
      } finally {
        fs.closeSync(fd);
      }
    }
    expect(differ).toEqual([]);
  } finally {
    removeParty(party);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
