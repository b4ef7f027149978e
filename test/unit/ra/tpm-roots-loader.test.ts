import { X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { loadTpmRoots } from '../../../src/ra/tpm-roots-loader';
import { makeTmpDir } from '../../helpers/tmp';

const FIXTURES = path.join(__dirname, '../../fixtures/tpm');

describe('loadTpmRoots (attestation.ekRoots)', () => {
  it('reads every PEM of a directory and skips a directory that does not exist', () => {
    const dir = makeTmpDir();
    try {
      fs.copyFileSync(path.join(FIXTURES, 'ek-root.pem'), dir.file('a.pem'));
      fs.copyFileSync(path.join(FIXTURES, 'ek-issuer.pem'), dir.file('b.crt'));
      dir.write('README.md', 'not a certificate');
      const roots = loadTpmRoots({ attestation: { ekRoots: [dir.path, dir.file('missing')], nonceTtl: 60, challengeTtl: 60 } });
      const want = ['ek-root.pem', 'ek-issuer.pem'].map((f) => fs.readFileSync(path.join(FIXTURES, f), 'utf8'));
      expect(roots.map((r) => r.toString())).toEqual(want.map((w) => new X509Certificate(w).toString()));
    } finally {
      dir.cleanup();
    }
  });

  it('refuses a listed file without a certificate, naming it', () => {
    const dir = makeTmpDir();
    try {
      const f = dir.write('root.pem', 'garbage');
      expect(() => loadTpmRoots({ attestation: { ekRoots: [f], nonceTtl: 60, challengeTtl: 60 } })).toThrow(new DeviceCaError('config', `attestation.ekRoots: no PEM certificate in ${f}`));
    } finally {
      dir.cleanup();
    }
  });
});
