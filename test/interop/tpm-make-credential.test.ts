import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeCredential, tpm2ToolsCredentialFile } from '../../src/attestation/tpm/make-credential';
import { parseTpm2bPublic, tpmName } from '../../src/attestation/tpm/tpm-public';
import { provisionSwTpm, startSwTpm, SwTpm } from '../helpers/swtpm';
import { TmpDir } from '../helpers/tmp';

// MakeCredential made in Node, activated by a real TPM (swtpm) with tpm2_activatecredential:
// the TPM is the only judge of whether the KDFa / AES-CFB / OAEP "IDENTITY" layout is right.
describe('MakeCredential against tpm2_activatecredential on swtpm', () => {
  let prov: TmpDir;
  let tpm: SwTpm;

  beforeAll(async () => {
    prov = provisionSwTpm();
    tpm = await startSwTpm(prov);
    tpm.tpm2('tpm2_createek', ['-c', 'ek.ctx', '-G', 'rsa', '-u', 'ek.pub']);
    tpm.tpm2('tpm2_createak', ['-C', 'ek.ctx', '-c', 'ak.ctx', '-G', 'rsa', '-g', 'sha256', '-s', 'rsassa', '-u', 'ak.pub', '-n', 'ak.name']);
    // an ECC P-256 EK (the TCG default ECC template) with an ECC AK under it
    tpm.tpm2('tpm2_createek', ['-c', 'eccek.ctx', '-G', 'ecc', '-u', 'eccek.pub']);
    tpm.tpm2('tpm2_createak', ['-C', 'eccek.ctx', '-c', 'eccak.ctx', '-G', 'ecc', '-g', 'sha256', '-s', 'ecdsa', '-u', 'eccak.pub', '-n', 'eccak.name']);
  });

  afterAll(async () => {
    await tpm?.stop();
    prov?.cleanup();
  });

  /** activate runs TPM2_ActivateCredential with the EK's policy session (PolicySecret on the endorsement hierarchy). */
  function activate(blob: Buffer, ak = 'ak.ctx', ek = 'ek.ctx'): Buffer {
    const f = tpm.dir.write('cred.blob', blob);
    fs.rmSync(tpm.dir.file('secret.out'), { force: true });
    tpm.tpm2('sh', [
      '-c',
      'tpm2_startauthsession --policy-session -S s.ctx >/dev/null && tpm2_policysecret -S s.ctx -c e >/dev/null && ' +
        `tpm2_activatecredential -c ${ak} -C ${ek} -i ${f} -o secret.out -P session:s.ctx >/dev/null; rc=$?; ` +
        'tpm2_flushcontext s.ctx >/dev/null 2>&1; exit $rc',
    ]);
    return tpm.dir.read('secret.out');
  }

  it('the TPM recovers the secret from a credential for its EK and its AK name', () => {
    const ek = parseTpm2bPublic(tpm.dir.read('ek.pub'));
    const ak = parseTpm2bPublic(tpm.dir.read('ak.pub'));
    expect(tpmName(ak)).toEqual(tpm.dir.read('ak.name'));
    const secret = randomBytes(32);
    expect(activate(tpm2ToolsCredentialFile(makeCredential(ek, tpmName(ak), secret)))).toEqual(secret);
  });

  it('refuses a credential made for another object name (the integrity HMAC covers the name)', () => {
    const ek = parseTpm2bPublic(tpm.dir.read('ek.pub'));
    const otherName = Buffer.concat([Buffer.from([0x00, 0x0b]), randomBytes(32)]);
    expect(() => activate(tpm2ToolsCredentialFile(makeCredential(ek, otherName, randomBytes(32))))).toThrow();
  });

  it('ECC EK (ECDH + KDFe): the TPM recovers the secret; a credential for another name is refused', () => {
    const ek = parseTpm2bPublic(tpm.dir.read('eccek.pub'));
    const ak = parseTpm2bPublic(tpm.dir.read('eccak.pub'));
    expect(ek.type).toBe(0x0023);
    expect(tpmName(ak)).toEqual(tpm.dir.read('eccak.name'));
    const secret = randomBytes(32);
    expect(activate(tpm2ToolsCredentialFile(makeCredential(ek, tpmName(ak), secret)), 'eccak.ctx', 'eccek.ctx')).toEqual(secret);
    const otherName = Buffer.concat([Buffer.from([0x00, 0x0b]), randomBytes(32)]);
    expect(() => activate(tpm2ToolsCredentialFile(makeCredential(ek, otherName, randomBytes(32))), 'eccak.ctx', 'eccek.ctx')).toThrow();
  });

  it("refuses a credential made for another TPM's EK", () => {
    const otherEk = parseTpm2bPublic(readFileSync(join(__dirname, '../fixtures/tpm/ek.pub')));
    const ak = parseTpm2bPublic(tpm.dir.read('ak.pub'));
    expect(() => activate(tpm2ToolsCredentialFile(makeCredential(otherEk, tpmName(ak), randomBytes(32))))).toThrow();
  });
});
