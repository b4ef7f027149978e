import { execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { tpm2ToolsCredentialFile } from '../../src/attestation/tpm/make-credential';
import { parseTpm2bPublic, tpmPublicKey } from '../../src/attestation/tpm/tpm-public';
import { DeviceCaError } from '../../src/errors/device-ca-error';
import { TpmAttestation } from '../../src/ra/tpm-attestation';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store';
import { provisionSwTpm, startSwTpm, SwTpm } from '../helpers/swtpm';
import { makeTmpDir, TmpDir } from '../helpers/tmp';

const AK = '0x81010002';
const KEY = '0x81010003';
const LOOSE = '0x81010004';
const CERTIFY = join(__dirname, '../fixtures/tpm/tpm-certify.py');

// The RA's TPM decisions against a real TPM (swtpm + tpm2-tools): AK registration answered by
// tpm2_activatecredential, then TPM2_Certify evidence with nonces from the RA.
describe('TpmAttestation (ra/) with swtpm', () => {
  let prov: TmpDir;
  let tpm: SwTpm;
  let tmp: TmpDir;
  let store: SqliteStore;
  let ra: TpmAttestation;
  let akName: Buffer;

  const audits = async (): Promise<unknown[]> => (await store.listAudit({ subject: 'dev-1', limit: 1000 })).items.map((r) => [r.type, r.data]);

  /** certify makes TPM2_Certify of `key` by the AK with qualifyingData = nonce (tpm2-tools 5.4 cannot set it). */
  function certify(key: string, nonce: Buffer): { tpmsAttest: Buffer; signature: Buffer } {
    execFileSync('python3', [CERTIFY, String(tpm.port), key, AK, nonce.toString('hex'), tpm.dir.file('c.attest'), tpm.dir.file('c.sig')]);
    return { tpmsAttest: tpm.dir.read('c.attest'), signature: tpm.dir.read('c.sig') };
  }
  const spkiOf = (pubFile: string): Buffer => tpmPublicKey(parseTpm2bPublic(tpm.dir.read(pubFile))).export({ type: 'spki', format: 'der' });
  const tpmtOf = (pubFile: string): Buffer => tpm.dir.read(pubFile).subarray(2);
  const expectRefused = async (p: Promise<unknown>, check: string): Promise<void> => {
    await expect(p).rejects.toBeInstanceOf(DeviceCaError);
    await expect(p).rejects.toMatchObject({ code: 'forbidden', message: `attestation failed: ${check}` });
  };

  beforeAll(async () => {
    prov = provisionSwTpm();
    tpm = await startSwTpm(prov);
    tmp = makeTmpDir();
    store = new SqliteStore(tmp.file('store.db'));
    ra = new TpmAttestation(store, { ekRoots: [new X509Certificate(tpm.ekRootPem)], nonceTtlSeconds: 60, challengeTtlSeconds: 60 });
    tpm.tpm2('tpm2_getekcertificate', ['-o', 'ek.der']);
    tpm.tpm2('tpm2_createek', ['-c', 'ek.ctx', '-G', 'rsa', '-u', 'ek.pub']);
    tpm.tpm2('tpm2_createak', ['-C', 'ek.ctx', '-c', 'ak.ctx', '-G', 'rsa', '-g', 'sha256', '-s', 'rsassa', '-u', 'ak.pub', '-n', 'ak.name']);
    tpm.tpm2('tpm2_evictcontrol', ['-C', 'o', '-c', 'ak.ctx', AK]);
    tpm.tpm2('tpm2_createprimary', ['-C', 'o', '-g', 'sha256', '-G', 'ecc', '-c', 'srk.ctx']);
    for (const [name, attrs, handle] of [
      ['key', 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign|noda', KEY],
      ['loose', 'sensitivedataorigin|userwithauth|sign|noda', LOOSE],
    ]) {
      tpm.tpm2('tpm2_create', ['-C', 'srk.ctx', '-G', 'ecc256:ecdsa-sha256', '-a', attrs, '-u', `${name}.pub`, '-r', `${name}.priv`]);
      tpm.tpm2('tpm2_load', ['-C', 'srk.ctx', '-u', `${name}.pub`, '-r', `${name}.priv`, '-c', `${name}.ctx`]);
      tpm.tpm2('tpm2_evictcontrol', ['-C', 'o', '-c', `${name}.ctx`, handle]);
    }
  });

  afterAll(async () => {
    await store?.close();
    await tpm?.stop();
    prov?.cleanup();
    tmp?.cleanup();
  });

  it('registers the AK: the EK certificate chain is checked and the TPM answers the credential challenge', async () => {
    const req = { ekCertificate: tpm.dir.read('ek.der'), ekChain: [new X509Certificate(tpm.ekIssuerPem).raw], ekPublic: tpm.dir.read('ek.pub'), akPublic: tpm.dir.read('ak.pub') };
    const challenge = await ra.registerAk('dev-1', req);
    akName = challenge.akName;
    expect(akName).toEqual(tpm.dir.read('ak.name'));
    const blob = tpm.dir.write('cred.blob', tpm2ToolsCredentialFile(challenge));
    tpm.tpm2('sh', [
      '-c',
      'tpm2_startauthsession --policy-session -S s.ctx >/dev/null && tpm2_policysecret -S s.ctx -c e >/dev/null && ' +
        `tpm2_activatecredential -c ${AK} -C ek.ctx -i ${blob} -o secret.out -P session:s.ctx >/dev/null; rc=$?; tpm2_flushcontext s.ctx >/dev/null 2>&1; exit $rc`,
    ]);
    await expectRefused(ra.activateAk('dev-1', akName, Buffer.alloc(32, 7)), 'credential');
    await expectRefused(ra.activateAk('dev-2', akName, tpm.dir.read('secret.out')), 'credential');
    const bound = await ra.activateAk('dev-1', akName, tpm.dir.read('secret.out'));
    expect(bound).toMatchObject({ status: 'active', deviceId: 'dev-1', ekModel: 'swtpm', ekCertSha256: createHash('sha256').update(tpm.dir.read('ek.der')).digest('hex') });
  });

  it('refuses an EK certificate from a CA that is not trusted, and audits the check by name', async () => {
    const untrusted = new TpmAttestation(store, { ekRoots: [new X509Certificate(fs.readFileSync(join(__dirname, '../fixtures/tpm/ek-root.pem')))], nonceTtlSeconds: 60, challengeTtlSeconds: 60 });
    const req = { ekCertificate: tpm.dir.read('ek.der'), ekChain: [new X509Certificate(tpm.ekIssuerPem).raw], ekPublic: tpm.dir.read('ek.pub'), akPublic: tpm.dir.read('ak.pub') };
    await expectRefused(untrusted.registerAk('dev-1', req), 'ek-certificate');
    expect(await audits()).toContainEqual(['tpm.attestation.failed', { check: 'ek-certificate' }]);
  });

  it('accepts TPM2_Certify of the CSR key with a fresh nonce of the device, once', async () => {
    const { nonce } = await ra.issueNonce('dev-1');
    const st = { ...certify(KEY, nonce), tpmtPublic: tpmtOf('key.pub') };
    await expect(ra.checkCertify('dev-1', st, spkiOf('key.pub'))).resolves.toMatchObject({ ak: { akName: akName.toString('hex') } });
    await expectRefused(ra.checkCertify('dev-1', st, spkiOf('key.pub')), 'nonce'); // reused
  });

  it("refuses a nonce of another device, an unknown nonce and an expired one (TTL on the CA's clock)", async () => {
    const other = await ra.issueNonce('dev-2');
    await expectRefused(ra.checkCertify('dev-1', { ...certify(KEY, other.nonce), tpmtPublic: tpmtOf('key.pub') }, spkiOf('key.pub')), 'nonce');
    await expectRefused(ra.checkCertify('dev-1', { ...certify(KEY, Buffer.alloc(32, 1)), tpmtPublic: tpmtOf('key.pub') }, spkiOf('key.pub')), 'nonce');
    let t = Date.now();
    const clocked = new TpmAttestation(store, { ekRoots: [], nonceTtlSeconds: 60, challengeTtlSeconds: 60, now: () => new Date(t) });
    const { nonce } = await clocked.issueNonce('dev-1');
    t += 61_000;
    await expectRefused(clocked.checkCertify('dev-1', { ...certify(KEY, nonce), tpmtPublic: tpmtOf('key.pub') }, spkiOf('key.pub')), 'nonce');
  });

  it('refuses a key without fixedTPM, a CSR key that was not certified, and a device with no registered AK', async () => {
    const { nonce } = await ra.issueNonce('dev-1');
    await expectRefused(ra.checkCertify('dev-1', { ...certify(LOOSE, nonce), tpmtPublic: tpmtOf('loose.pub') }, spkiOf('loose.pub')), 'key-attributes');
    await expectRefused(ra.checkCertify('dev-1', { ...certify(KEY, nonce), tpmtPublic: tpmtOf('key.pub') }, spkiOf('loose.pub')), 'key-mismatch');
    // the nonce survived the refusals (consumed only after every other check passed)
    await expect(ra.checkCertify('dev-1', { ...certify(KEY, nonce), tpmtPublic: tpmtOf('key.pub') }, spkiOf('key.pub'))).resolves.toBeDefined();
    const n2 = await ra.issueNonce('dev-3');
    await expectRefused(ra.checkCertify('dev-3', { ...certify(KEY, n2.nonce), tpmtPublic: tpmtOf('key.pub') }, spkiOf('key.pub')), 'ak-unregistered');
  });
});
