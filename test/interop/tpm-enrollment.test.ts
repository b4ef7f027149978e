import { createHash, generateKeyPairSync, randomBytes, sign, X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { TpmTools } from '../../src/agent/tpm-tools';
import { tpm2ToolsCredentialFile } from '../../src/attestation/tpm/make-credential';
import { parseTpm2bPublic, tpmPublicKey } from '../../src/attestation/tpm/tpm-public';
import { seq } from '../../src/der/der-writer';
import { buildExternallySignedCsr, tpmCertifyStatement, tpmQuoteStatement } from '../fixtures/build-csr';
import { openssl, opensslAny, pkiClient, Reply } from '../helpers/pki-client';
import { assertBuilt, RunningService, startService } from '../helpers/service-process';
import { provisionSwTpm, startSwTpm, SwTpm } from '../helpers/swtpm';
import { makeTmpDir, TmpDir } from '../helpers/tmp';

/**
 * TPM attestation end to end through the BUILT service (issue 9): a device with a real TPM (swtpm,
 * tpm2-tools) registers its AK over EST (EK certificate from swtpm's provisioning, MakeCredential answered by
 * tpm2_activatecredential), fetches a nonce, has the AK certify a key created in the TPM with the nonce as
 * qualifyingData, and enrolls with a CSR signed by that TPM key carrying the evidence attribute. openssl
 * verifies the certificate. Keys outside the TPM, stale nonces and another device's AK are refused with
 * the failed check in the body and an audit record naming it.
 */
const AK1 = '0x81010002';
const KEY = '0x81010003';
const AK2 = '0x81010005';
const AK3 = '0x81010006';
const AK4 = '0x81010007';
const AK5 = '0x81010008';
const AK6 = '0x81010009';
const AK7 = '0x8101000a';
/** PCR_EVENT: what the PCR test extends PCR 23 with; the policy expects sha256(zeros || PCR_EVENT) */
const PCR_EVENT = createHash('sha256').update('device-ca boot event').digest();

let prov: TmpDir;
let tpm: SwTpm;
let tmp: TmpDir;
let svc: RunningService;
let current: RunningService;
const secrets = new Map<string, string>();
/** labels: the EST label (and profile) each device is registered for */
const labels = new Map<string, string>();
const c = pkiClient({ svc: () => current, tmp: () => tmp });

/** configYaml: EK roots from the test's swtpm CA; with `own`, profiles and labels of the test, else the built-in label "tpm" */
const configYaml = (nonceTtl: string, own = true): string =>
  [
    'attestation:',
    `  ekRoots: [${JSON.stringify(tmp.file('tpm-roots'))}]`,
    `  nonceTtl: ${nonceTtl}`,
    ...(own
      ? [
          'profiles:',
          '  default: {}',
          '  tpm: { auth: [basic], attestation: required, keyAlgorithms: [ecdsa-p256] }',
          '  tpm-manual: { auth: [basic], attestation: required, manualApproval: true }',
          // swtpm is manufacturer id:00001014, model swtpm, firmware 0x2019102300163636
          "  tpm-vendor: { auth: [basic], attestation: required, allowedTpms: [{ manufacturer: 'id:49465800' }] }",
          "  tpm-fw: { auth: [basic], attestation: required, allowedTpms: [{ manufacturer: 'id:00001014', model: swtpm, minFirmwareVersion: '0x2019102300163637' }] }",
          `  tpm-pcr: { auth: [basic], attestation: required, pcrPolicy: { bank: sha256, pcrs: { '0': '${'00'.repeat(32)}', '23': '${createHash('sha256').update(Buffer.alloc(32)).update(PCR_EVENT).digest('hex')}' } } }`,
          'est:',
          '  labels:',
          '    default: {}',
          '    tpm: { profile: tpm }',
          '    tpm-manual: { profile: tpm-manual }',
          '    tpm-vendor: { profile: tpm-vendor }',
          '    tpm-fw: { profile: tpm-fw }',
          '    tpm-pcr: { profile: tpm-pcr }',
        ]
      : []),
    '',
  ].join('\n');

/** postTpm: POST <est>/tpm/<path> with the device's id and one-time secret (HTTP Basic), JSON in and out */
async function postTpm(path: string, id: string, body: unknown): Promise<Reply> {
  const f = tmp.write(`json/${c.next()}.json`, JSON.stringify(body));
  return c.curl(`${current.est}/${labels.get(id)}/tpm/${path}`, ['-u', `${id}:${secrets.get(id)}`, '-H', 'Content-Type: application/json', '--data-binary', `@${f}`]);
}

/**
 * registerAk: POST tpm/ak, tpm2_activatecredential on the challenge, POST tpm/ak/activate. With `ecc`, the
 * P-384 EK (certificate from NV 0x01c00016, key from the TCG high-range template H-3 that
 * `tpm2_createek -G ecc384` makes): that template has userWithAuth, so the EK is used with its empty
 * password instead of the PolicySecret(endorsement) session the RSA EK (template L-1) needs.
 */
async function registerAk(id: string, akHandle: string, akPub: string, ecc = false): Promise<Reply> {
  const r = await postTpm('ak', id, {
    ekCertificate: tpm.dir.read(ecc ? 'ekecc.der' : 'ek.der').toString('base64'),
    ekChain: [new X509Certificate(tpm.ekIssuerPem).raw.toString('base64')],
    ekPublic: tpm.dir.read(ecc ? 'ekecc.pub' : 'ek.pub').toString('base64'),
    akPublic: tpm.dir.read(akPub).toString('base64'),
  });
  expect(r.status).toBe(200);
  const ch = JSON.parse(r.text) as { akName: string; credentialBlob: string; encryptedSecret: string };
  const blob = tpm.dir.write(`cred-${id}.blob`, tpm2ToolsCredentialFile({ credentialBlob: Buffer.from(ch.credentialBlob, 'base64'), secret: Buffer.from(ch.encryptedSecret, 'base64') }));
  if (ecc) {
    tpm.tpm2('tpm2_activatecredential', ['-c', akHandle, '-C', 'ekecc.ctx', '-i', blob, '-o', `secret-${id}.out`]);
    return postTpm('ak/activate', id, { akName: ch.akName, secret: tpm.dir.read(`secret-${id}.out`).toString('base64') });
  }
  tpm.tpm2('sh', [
    '-c',
    'tpm2_startauthsession --policy-session -S s.ctx >/dev/null && tpm2_policysecret -S s.ctx -c e >/dev/null && ' +
      `tpm2_activatecredential -c ${akHandle} -C ek.ctx -i ${blob} -o secret-${id}.out -P session:s.ctx >/dev/null; rc=$?; tpm2_flushcontext s.ctx >/dev/null 2>&1; exit $rc`,
  ]);
  return postTpm('ak/activate', id, { akName: ch.akName, secret: tpm.dir.read(`secret-${id}.out`).toString('base64') });
}

async function nonceOf(id: string): Promise<Buffer> {
  const r = await postTpm('nonce', id, {});
  expect(r.status).toBe(200);
  return Buffer.from((JSON.parse(r.text) as { nonce: string }).nonce, 'base64');
}

/**
 * certify: TPM2_Certify of KEY by the AK with qualifyingData = nonce, as the evidence statement of the CSR
 * (older single-statement form with a hint). The command goes through the device agent's TpmTools, the
 * same code `device-ca agent` certifies with (tpm2-tools 5.4 tpm2_certify cannot set qualifyingData).
 */
async function evidence(akHandle: string, nonce: Buffer): Promise<Buffer> {
  const c = await new TpmTools(tpm.dir.path, tpm.env.TPM2TOOLS_TCTI).certify(parseInt(KEY, 16), parseInt(akHandle, 16), nonce);
  return tpmCertifyStatement({ tpmsAttest: c.attest, signature: c.signature, tpmtPublic: tpm.dir.read('key.pub').subarray(2) }, 'tpm2');
}

/** tpmCsr: a CSR for the TPM key, signed by the TPM (tpm2_sign), optionally carrying evidence */
function tpmCsr(id: string, ev?: Buffer): Buffer {
  const spki = tpmPublicKey(parseTpm2bPublic(tpm.dir.read('key.pub'))).export({ type: 'spki', format: 'der' });
  return buildExternallySignedCsr({
    spki,
    subject: [{ type: 'CN', value: id }],
    evidence: ev,
    sign: (info) => {
      tpm.dir.write('csr.info', info);
      tpm.tpm2('tpm2_sign', ['-c', KEY, '-g', 'sha256', '-s', 'ecdsa', '-f', 'plain', '-o', 'csr.sig', 'csr.info']);
      return tpm.dir.read('csr.sig');
    },
  });
}

/** softwareCsr: a CSR for a key openssl made outside the TPM, optionally carrying (someone else's) evidence */
function softwareCsr(id: string, ev?: Buffer): Buffer {
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const spki = key.publicKey.export({ type: 'spki', format: 'der' });
  return buildExternallySignedCsr({ spki, subject: [{ type: 'CN', value: id }], evidence: ev, sign: (info) => sign('sha256', info, key.privateKey) });
}

const postLabel = async (id: string, csr: Buffer): Promise<Reply> => {
  const f = tmp.write(`req/${c.next()}.b64`, csr.toString('base64'));
  return c.curl(`${current.est}/${labels.get(id)}/simpleenroll`, ['-H', 'Content-Type: application/pkcs10', '--data-binary', `@${f}`, '-u', `${id}:${secrets.get(id)}`]);
};

/** failedChecks: the checks named by tpm.attestation.failed audit records of a device, read from the store file */
function failedChecks(s: RunningService, id: string): string[] {
  const db = new Database(join(s.dataDir, 'device-ca.sqlite'), { readonly: true });
  try {
    const rows = db.prepare("SELECT data FROM audit WHERE type = 'tpm.attestation.failed' AND subject = ? ORDER BY seq").all(id) as { data: string }[];
    return rows.map((r) => (JSON.parse(r.data) as { check: string }).check);
  } finally {
    db.close();
  }
}

async function addDevice(s: RunningService, id: string, label = 'tpm'): Promise<void> {
  labels.set(id, label);
  const r = await s.cli(['devices', 'add', id, '--owner', 'acme', '--label', label]);
  expect(r.code).toBe(0);
  secrets.set(id, r.stdout.trim());
}

beforeAll(async () => {
  assertBuilt();
  tmp = makeTmpDir('device-ca-tpm-enroll-');
  prov = provisionSwTpm();
  tpm = await startSwTpm(prov);
  tmp.write('tpm-roots/swtpm-root.pem', tpm.ekRootPem);
  tpm.tpm2('tpm2_getekcertificate', ['-o', 'ek.der']);
  tpm.tpm2('tpm2_createek', ['-c', 'ek.ctx', '-G', 'rsa', '-u', 'ek.pub']);
  for (const [name, handle] of [
    ['ak1', AK1],
    ['ak2', AK2],
    ['ak3', AK3],
    ['ak4', AK4],
    ['ak5', AK5],
    ['ak7', AK7],
  ]) {
    tpm.tpm2('tpm2_createak', ['-C', 'ek.ctx', '-c', `${name}.ctx`, '-G', 'rsa', '-g', 'sha256', '-s', 'rsassa', '-u', `${name}.pub`, '-n', `${name}.name`]);
    tpm.tpm2('tpm2_evictcontrol', ['-C', 'o', '-c', `${name}.ctx`, handle]);
  }
  // the ECC EK: swtpm's P-384 EK certificate and the EK from the matching high-range template, an AK under it
  tpm.tpm2('tpm2_nvread', ['0x01c00016', '-o', 'ekecc.der']);
  tpm.tpm2('tpm2_createek', ['-c', 'ekecc.ctx', '-G', 'ecc384', '-u', 'ekecc.pub']);
  tpm.tpm2('tpm2_createak', ['-C', 'ekecc.ctx', '-c', 'ak6.ctx', '-G', 'rsa', '-g', 'sha256', '-s', 'rsassa', '-u', 'ak6.pub', '-n', 'ak6.name']);
  tpm.tpm2('tpm2_evictcontrol', ['-C', 'o', '-c', 'ak6.ctx', AK6]);
  tpm.tpm2('tpm2_createprimary', ['-C', 'o', '-g', 'sha256', '-G', 'ecc', '-c', 'srk.ctx']);
  tpm.tpm2('tpm2_create', ['-C', 'srk.ctx', '-G', 'ecc256:ecdsa-sha256', '-a', 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign|noda', '-u', 'key.pub', '-r', 'key.priv']);
  tpm.tpm2('tpm2_load', ['-C', 'srk.ctx', '-u', 'key.pub', '-r', 'key.priv', '-c', 'key.ctx']);
  tpm.tpm2('tpm2_evictcontrol', ['-C', 'o', '-c', 'key.ctx', KEY]);
  svc = await startService({ configYaml: configYaml('5m') });
  current = svc;
  await addDevice(svc, 'dev-1');
  await addDevice(svc, 'dev-2');
}, 60_000);

afterAll(async () => {
  await svc?.stop();
  await tpm?.stop();
  prov?.cleanup();
  tmp?.cleanup();
});

describe('TPM-attested enrollment through EST (swtpm + tpm2-tools)', () => {
  it('registers each device its own AK: EK certificate chain checked, credential activated in the TPM', async () => {
    const r1 = await registerAk('dev-1', AK1, 'ak1.pub');
    expect(r1.status).toBe(200);
    const a1 = JSON.parse(r1.text) as { akName: string; status: string; serial: string; certificate: string };
    expect(a1).toMatchObject({ akName: tpm.dir.read('ak1.name').toString('hex'), status: 'active' });
    // the AK certificate: chains to the CA, EKU tcg-kp-AIKCertificate, TCG policies residency + restricted, the AK's key
    const akCrt = tmp.file('ak1.crt');
    await openssl('x509', '-inform', 'DER', '-in', tmp.write('ak1.der', Buffer.from(a1.certificate, 'base64')), '-out', akCrt);
    expect((await opensslAny('verify', '-CAfile', svc.chainPem, akCrt)).out).toBe(`${akCrt}: OK\n`);
    const text = (await openssl('x509', '-in', akCrt, '-noout', '-text', '-serial')).stdout;
    expect(text).toMatch(/X509v3 Extended Key Usage: *\n *2\.23\.133\.8\.3\n/);
    expect(text).toMatch(/X509v3 Certificate Policies: *\n *Policy: 2\.23\.133\.11\.1\.1\n *Policy: 2\.23\.133\.11\.1\.3\n/);
    expect(text).toContain('Subject: O = acme, CN = dev-1');
    expect(text).toContain(`serial=${a1.serial.toUpperCase()}`);
    expect((await openssl('x509', '-in', akCrt, '-noout', '-pubkey')).stdout).toBe(tpmPublicKey(parseTpm2bPublic(tpm.dir.read('ak1.pub'))).export({ type: 'spki', format: 'pem' }));
    expect((await registerAk('dev-2', AK2, 'ak2.pub')).status).toBe(200);
  });

  it('a lost activation reply: the same activation repeated answers the same AK certificate, once; a wrong secret is refused', async () => {
    await addDevice(svc, 'dev-7');
    const first = await registerAk('dev-7', AK5, 'ak5.pub');
    expect(first.status).toBe(200);
    const body = { akName: tpm.dir.read('ak5.name').toString('hex'), secret: tpm.dir.read('secret-dev-7.out').toString('base64') };
    const again = await postTpm('ak/activate', 'dev-7', body);
    expect(again.status).toBe(200);
    expect(JSON.parse(again.text)).toEqual(JSON.parse(first.text));
    const wrong = await postTpm('ak/activate', 'dev-7', { ...body, secret: randomBytes(32).toString('base64') });
    expect(wrong.status).toBe(403);
    expect(wrong.text).toContain('attestation failed: credential');
    const shown = JSON.parse(await c.cliOk('devices', 'show', 'dev-7', '--json')) as { certificates: { profile: string; serial: string }[] };
    expect(shown.certificates.map((x) => [x.profile, x.serial])).toEqual([['tpm-ak', (JSON.parse(first.text) as { serial: string }).serial]]);
  });

  it('registers an AK under the ECC P-384 EK (certificate from NV 0x01c00016): ECDH + KDFe MakeCredential activated by the TPM', async () => {
    await addDevice(svc, 'dev-8');
    expect(new X509Certificate(tpm.dir.read('ekecc.der')).publicKey.asymmetricKeyDetails).toEqual({ namedCurve: 'secp384r1' });
    const r = await registerAk('dev-8', AK6, 'ak6.pub', true);
    expect(r.status).toBe(200);
    const a = JSON.parse(r.text) as { akName: string; status: string; certificate: string };
    expect(a).toMatchObject({ akName: tpm.dir.read('ak6.name').toString('hex'), status: 'active' });
    const crt = tmp.file('ak6.crt');
    await openssl('x509', '-inform', 'DER', '-in', tmp.write('ak6.der', Buffer.from(a.certificate, 'base64')), '-out', crt);
    expect((await opensslAny('verify', '-CAfile', svc.chainPem, crt)).out).toBe(`${crt}: OK\n`);
    const shown = JSON.parse(await c.cliOk('devices', 'show', 'dev-8', '--json')) as { aks: { ekSha256: string }[] };
    expect(shown.aks.map((x) => x.ekSha256)).toEqual([createHash('sha256').update(tpm.dir.read('ekecc.der')).digest('hex')]);
  });

  it("TPM allow-list: a profile that names another manufacturer refuses swtpm's AK registration (403 tpm-model), before any challenge", async () => {
    await addDevice(svc, 'dev-9', 'tpm-vendor');
    const r = await postTpm('ak', 'dev-9', {
      ekCertificate: tpm.dir.read('ek.der').toString('base64'),
      ekChain: [new X509Certificate(tpm.ekIssuerPem).raw.toString('base64')],
      ekPublic: tpm.dir.read('ek.pub').toString('base64'),
      akPublic: tpm.dir.read('ak7.pub').toString('base64'),
    });
    expect(r.status).toBe(403);
    expect(r.text).toContain('attestation failed: tpm-model');
    expect(r.text).not.toContain('credentialBlob');
    expect(failedChecks(svc, 'dev-9')).toEqual(['tpm-model']);
  });

  it("minimum firmware version: swtpm's TPM2_Certify reports 0x2019102300163636, below the profile's minimum: 403 firmware-version", async () => {
    await addDevice(svc, 'dev-10', 'tpm-fw');
    expect((await registerAk('dev-10', AK7, 'ak7.pub')).status).toBe(200); // manufacturer and model are on the list
    const r = await postLabel('dev-10', tpmCsr('dev-10', await evidence(AK7, await nonceOf('dev-10'))));
    expect(r.status).toBe(403);
    expect(r.text).toContain('attestation failed: firmware-version');
    expect(failedChecks(svc, 'dev-10')).toEqual(['firmware-version']);
  });

  it('refuses a key that is not in the TPM: no evidence, or evidence about another key', async () => {
    const none = await postLabel('dev-1', softwareCsr('dev-1'));
    expect(none.status).toBe(403);
    expect(none.text).toContain('attestation failed: evidence');
    const other = await postLabel('dev-1', softwareCsr('dev-1', await evidence(AK1, await nonceOf('dev-1'))));
    expect(other.status).toBe(403);
    expect(other.text).toContain('attestation failed: key-mismatch');
    expect(failedChecks(svc, 'dev-1')).toEqual(['evidence', 'key-mismatch']);
  });

  it("refuses evidence certified by another device's AK, and a nonce of another device", async () => {
    const byAk1 = await postLabel('dev-2', tpmCsr('dev-2', await evidence(AK1, await nonceOf('dev-2'))));
    expect(byAk1.status).toBe(403);
    expect(byAk1.text).toContain('attestation failed: ak-unregistered');
    const foreignNonce = await postLabel('dev-2', tpmCsr('dev-2', await evidence(AK2, await nonceOf('dev-1'))));
    expect(foreignNonce.status).toBe(403);
    expect(foreignNonce.text).toContain('attestation failed: nonce');
    expect(failedChecks(svc, 'dev-2')).toEqual(['ak-unregistered', 'nonce']);
  });

  it('issues a certificate for the TPM key: CSR signed by the TPM, TPM2_Certify with a fresh nonce; openssl verifies it', async () => {
    const r = await postLabel('dev-1', tpmCsr('dev-1', await evidence(AK1, await nonceOf('dev-1'))));
    const crt = await c.certOf(r, 'dev-1');
    expect((await opensslAny('verify', '-CAfile', svc.chainPem, crt)).out).toBe(`${crt}: OK\n`);
    const pub = (await openssl('x509', '-in', crt, '-noout', '-pubkey')).stdout;
    expect(pub).toBe(tpmPublicKey(parseTpm2bPublic(tpm.dir.read('key.pub'))).export({ type: 'spki', format: 'pem' }));
    // the marker a relying party reads: TCG policies tcg-cap-verifiedTPMResidency and tcg-cap-verifiedTPMFixed
    const text = (await openssl('x509', '-in', crt, '-noout', '-text')).stdout;
    expect(text).toMatch(/X509v3 Certificate Policies: *\n *Policy: 2\.23\.133\.11\.1\.1\n *Policy: 2\.23\.133\.11\.1\.2\n/);
    expect(text).toMatch(/X509v3 Extended Key Usage: *\n *TLS Web Client Authentication\n/);
    // swtpm's clockInfo (safe, a real TPM's counters) is recorded on the AK binding as its last accepted
    const db = new Database(join(svc.dataDir, 'device-ca.sqlite'), { readonly: true });
    let recorded: Record<string, unknown>;
    try {
      const ak = (recorded = db.prepare('SELECT last_clock, last_reset_count, last_restart_count FROM tpm_aks WHERE ak_name = ?').get(tpm.dir.read('ak1.name').toString('hex')) as Record<
        string,
        unknown
      >);
      expect(BigInt(String(ak.last_clock))).toBeGreaterThan(0n);
      expect(ak.last_reset_count).toEqual(expect.any(Number));
      expect(ak.last_restart_count).toEqual(expect.any(Number));
    } finally {
      db.close();
    }

    // devices show: the AK binding with its EK, the verdict, and which certificate's key was attested
    const serial = (await openssl('x509', '-in', crt, '-noout', '-serial')).stdout
      .trim()
      .replace(/^serial=/, '')
      .toLowerCase();
    const shown = JSON.parse(await c.cliOk('devices', 'show', 'dev-1', '--json')) as {
      aks: { akName: string; status: string; ekSha256: string; ekModel: string; akCertSerial: string; lastClock: unknown }[];
      lastAttestation: { verdict: string; serial: string };
      certificates: { serial: string; profile: string; tpmAttested: boolean }[];
    };
    expect(shown.aks).toEqual([
      expect.objectContaining({ akName: tpm.dir.read('ak1.name').toString('hex'), status: 'active', ekSha256: createHash('sha256').update(tpm.dir.read('ek.der')).digest('hex'), ekModel: 'swtpm' }),
    ]);
    // per AK: the AK certificate's serial and the clock the clock checks recorded (decimal text: a UINT64)
    const akCert = shown.certificates.find((x) => x.profile === 'tpm-ak');
    expect(shown.aks[0].akCertSerial).toBe(akCert?.serial);
    expect(shown.aks[0].lastClock).toEqual({ resetCount: recorded.last_reset_count, restartCount: recorded.last_restart_count, clock: String(recorded.last_clock) });
    expect(shown.lastAttestation).toMatchObject({ verdict: 'attested', serial });
    expect(shown.certificates.map((x) => [x.profile, x.tpmAttested]).sort()).toEqual([
      ['tpm', true],
      ['tpm-ak', false],
    ]);
    // the admin API's device view says the same, to the device's owner
    const token = (await c.cliOk('tokens', 'create', '--scope', 'owner:acme')).trim();
    const api = await c.curl(`https://localhost:${svc.httpsPort}/api/v1/devices/dev-1`, ['-H', `Authorization: Bearer ${token}`]);
    expect(api.status).toBe(200);
    const view = JSON.parse(api.text) as typeof shown;
    expect(view.aks).toEqual(shown.aks);
    expect(view.lastAttestation).toEqual(shown.lastAttestation);
    expect(view.certificates.map((x) => [x.serial, x.tpmAttested]).sort()).toEqual(shown.certificates.map((x) => [x.serial, x.tpmAttested]).sort());
    expect(await c.cliOk('devices', 'show', 'dev-2')).toMatch(/\nlastAttestation: refused \S+ check nonce\n/);
  });

  it('a certificate from a profile without attestation carries no TPM marker', async () => {
    const d = await c.enroll('dev-5', 'acme', 'cli');
    expect((await openssl('x509', '-in', d.crt, '-noout', '-text')).stdout).not.toContain('Certificate Policies');
  });

  it('manual approval: the device polls with the same CSR and gets its certificate once approved; a new CSR cannot reuse the nonce', async () => {
    await addDevice(svc, 'dev-4', 'tpm-manual');
    expect((await registerAk('dev-4', AK3, 'ak3.pub')).status).toBe(200);
    const ev = await evidence(AK3, await nonceOf('dev-4'));
    const csr = tpmCsr('dev-4', ev);
    const held = await postLabel('dev-4', csr);
    expect(held.status).toBe(202);
    const requestId = /request (\S+) is waiting/.exec(held.text)![1];
    expect((await postLabel('dev-4', csr)).status).toBe(202); // polling while the operator has not decided
    // another CSR (the TPM signs again: ECDSA is randomized) with the evidence whose nonce the queued one spent
    const reused = await postLabel('dev-4', tpmCsr('dev-4', ev));
    expect(reused.status).toBe(403);
    expect(reused.text).toContain('attestation failed: nonce');
    await c.cliOk('requests', 'approve', requestId);
    const crt = await c.certOf(await postLabel('dev-4', csr), 'dev-4');
    expect((await opensslAny('verify', '-CAfile', svc.chainPem, crt)).out).toBe(`${crt}: OK\n`);
    // evidence checked when the request was queued: the approved certificate carries the marker too
    expect((await openssl('x509', '-in', crt, '-noout', '-text')).stdout).toContain('Policy: 2.23.133.11.1.2');
    expect(failedChecks(svc, 'dev-4')).toEqual(['nonce']);
  });

  it('PCR policy: a TPM2_Quote with the nonce over the policy PCRs passes; with PCR 23 extended once more it is named in the 403', async () => {
    await addDevice(svc, 'dev-6', 'tpm-pcr');
    expect((await registerAk('dev-6', AK4, 'ak4.pub')).status).toBe(200);
    tpm.tpm2('tpm2_pcrextend', [`23:sha256=${PCR_EVENT.toString('hex')}`]);
    /** withQuote: certify + tpm2_quote over sha256:0,23 with the same nonce, both statements in the CSR's evidence */
    const withQuote = async (nonce: Buffer): Promise<Buffer> => {
      const certify = await evidence(AK4, nonce);
      tpm.tpm2('tpm2_quote', ['-c', AK4, '-l', 'sha256:0,23', '-q', nonce.toString('hex'), '-m', 'q.attest', '-s', 'q.sig', '-o', 'q.pcrs', '-F', 'values']);
      const pcrs = tpm.dir.read('q.pcrs');
      const quote = tpmQuoteStatement({ tpmsAttest: tpm.dir.read('q.attest'), signature: tpm.dir.read('q.sig'), pcrValues: [pcrs.subarray(0, 32), pcrs.subarray(32, 64)] });
      return tpmCsr('dev-6', seq(certify, quote));
    };
    const none = await postLabel('dev-6', tpmCsr('dev-6', await evidence(AK4, await nonceOf('dev-6'))));
    expect(none.status).toBe(403);
    expect(none.text).toContain('attestation failed: quote');
    // one extend too many: PCR 23 is off the policy (the enrollment's secret stays unspent)
    tpm.tpm2('tpm2_pcrextend', [`23:sha256=${PCR_EVENT.toString('hex')}`]);
    const off = await postLabel('dev-6', await withQuote(await nonceOf('dev-6')));
    expect(off.status).toBe(403);
    expect(off.text).toContain('attestation failed: pcr-value 23');
    // back to the known state (PCR 23 is resettable from locality 0): the same device now enrolls
    tpm.tpm2('tpm2_pcrreset', ['23']);
    tpm.tpm2('tpm2_pcrextend', [`23:sha256=${PCR_EVENT.toString('hex')}`]);
    const crt = await c.certOf(await postLabel('dev-6', await withQuote(await nonceOf('dev-6'))), 'dev-6');
    expect((await opensslAny('verify', '-CAfile', svc.chainPem, crt)).out).toBe(`${crt}: OK\n`);
    expect(failedChecks(svc, 'dev-6')).toEqual(['quote', 'pcr-value']);
  });

  it('refuses a stale nonce: older than attestation.nonceTtl on the CA clock (the built-in label "tpm" of the default config)', async () => {
    const short = await startService({ configYaml: configYaml('1s', false) });
    try {
      current = short;
      await addDevice(short, 'dev-3');
      expect((await registerAk('dev-3', AK1, 'ak1.pub')).status).toBe(200);
      const nonce = await nonceOf('dev-3');
      await new Promise((r) => setTimeout(r, 1500));
      const stale = await postLabel('dev-3', tpmCsr('dev-3', await evidence(AK1, nonce)));
      expect(stale.status).toBe(403);
      expect(stale.text).toContain('attestation failed: nonce');
      expect(failedChecks(short, 'dev-3')).toEqual(['nonce']);
    } finally {
      current = svc;
      expect(await short.stop()).toBe(0);
    }
  }, 60_000);
});
