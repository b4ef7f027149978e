import { X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import { parseTpm2bPublic, tpmPublicKey } from '../../src/attestation/tpm/tpm-public';
import { freePort } from '../helpers/ports';
import { opensslAny } from '../helpers/pki-client';
import { assertBuilt, ProcessResult, RunningService, runProcess, CLI_JS } from '../helpers/service-process';
import { SwTpm } from '../helpers/swtpm';
import { startTpmAgentSetup, TpmAgentSetup } from '../helpers/tpm-agent-setup';
import { TpmAbrmd } from '../helpers/tpm-abrmd';
import { TmpDir } from '../helpers/tmp';

/**
 * The reference device agent (issue 9, README "Device agent") against the BUILT service and a real TPM
 * (swtpm + tpm2-tools + the tpm2 openssl provider): `device-ca agent enroll` registers the AK, activates
 * the credential, has the AK certify a new TPM key with the CA's nonce and enrolls it under the built-in
 * label "tpm" (attestation required); `agent renew` re-enrolls over TLS with the TPM key. Refusals print
 * the server's or the TPM's reason, exit non-zero and leave --out untouched.
 */
let setup: TpmAgentSetup;
let tpm: SwTpm;
/** rm: tpm2-abrmd in front of swtpm (the device's /dev/tpmrm0): every TPM command of this file goes through it */
let rm: TpmAbrmd;
let tmp: TmpDir;
let svc: RunningService;

const agent = (args: string[], tcti = rm.tcti): Promise<ProcessResult> => runProcess(process.execPath, [CLI_JS, 'agent', ...args], { env: { ...rm.env, TPM2TOOLS_TCTI: tcti }, timeoutMs: 60_000 });
/** enrollArgs: agent enroll at the built-in label with the EK's issuing CA of swtpm's local CA (--ek-chain) */
const enrollArgs = (device: string, secret: string, out: string): string[] => [
  'enroll',
  ...['--est', `${svc.est}/tpm`, '--device', device, '--secret', secret, '--trust', svc.chainPem, '--out', out],
  ...['--ek-chain', tmp.file('ek-issuer.pem')],
];

async function addDevice(id: string): Promise<string> {
  const r = await svc.cli(['devices', 'add', id, '--owner', 'acme', '--label', 'tpm']);
  expect(r.code).toBe(0);
  return r.stdout.trim();
}

async function showDevice(id: string): Promise<{
  aks: { status: string }[];
  lastAttestation: { verdict: string; serial: string };
  certificates: { serial: string; profile: string; status: string; tpmAttested: boolean }[];
}> {
  const r = await svc.cli(['devices', 'show', id, '--json']);
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout);
}

/** verifies: openssl's verdict on a certificate file against the service's CA chain */
const verifies = async (crt: string): Promise<string> => (await opensslAny('verify', '-CAfile', svc.chainPem, crt)).out;

const spkiAt = (handle: string): string => {
  rm.tpm2('tpm2_readpublic', ['-c', handle, '-o', `pub-${handle}.bin`]);
  return tpmPublicKey(parseTpm2bPublic(tpm.dir.read(`pub-${handle}.bin`))).export({ type: 'spki', format: 'pem' }) as string;
};

beforeAll(async () => {
  assertBuilt();
  // the built-in label "tpm" (attestation required); the EK roots: the test's swtpm CA
  setup = await startTpmAgentSetup({ tmpPrefix: 'device-ca-tpm-agent-', abrmd: true });
  ({ tmp, tpm, svc } = setup);
  rm = setup.rm!;
}, 60_000);

afterAll(async () => {
  await setup?.stop();
});

describe('device-ca agent (swtpm + tpm2-tools + tpm2-openssl)', () => {
  it("a wrong secret: non-zero exit with the server's reason, no --out directory", async () => {
    await addDevice('agent-0');
    const out = tmp.file('out-0');
    const r = await agent(enrollArgs('agent-0', 'not-the-secret', out));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^device-ca: EST server refused tpm\/ak \(HTTP 401\): \S.*\n$/);
    expect(fs.existsSync(out)).toBe(false);
    // the TPM objects of the failed run are gone: the handles are free for the next try
    expect(rm.tpm2('tpm2_getcap', ['handles-persistent']).toString()).not.toMatch(/0x81018000|0x81018001/);
  });

  it('enroll: cert.pem verifies with openssl, its key is the one at the TPM handle, the device shows as attested', async () => {
    const secret = await addDevice('agent-1');
    const out = tmp.file('out-1');
    const r = await agent(enrollArgs('agent-1', secret, out));
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^enrolled: .*cert\.pem \(serial [0-9A-F]+\)\n$/);
    expect(fs.readdirSync(out).sort()).toEqual(['agent.json', 'ak.pem', 'cert.pem', 'chain.pem']);
    expect(await verifies(`${out}/cert.pem`)).toBe(`${out}/cert.pem: OK\n`);
    const state = JSON.parse(fs.readFileSync(`${out}/agent.json`, 'utf8')) as { keyHandle: string; akHandle: string };
    expect(state).toMatchObject({ keyHandle: '0x81018001', akHandle: '0x81018000' });
    const cert = new X509Certificate(fs.readFileSync(`${out}/cert.pem`));
    expect(cert.publicKey.export({ type: 'spki', format: 'pem' })).toBe(spkiAt(state.keyHandle));
    expect(cert.subject).toContain('CN=agent-1');
    const shown = await showDevice('agent-1');
    expect(shown.aks.map((a) => a.status)).toEqual(['active']);
    expect(shown.lastAttestation).toMatchObject({ verdict: 'attested', serial: cert.serialNumber.toLowerCase() });
    expect(shown.certificates.find((c) => c.serial === cert.serialNumber.toLowerCase())).toMatchObject({ profile: 'tpm', tpmAttested: true });
  });

  it('enroll again at the handles of a working enrollment: refused, naming them and --force; the TPM and --out unchanged', async () => {
    const secret = await addDevice('agent-3');
    const out = tmp.file('out-3');
    const before = rm.tpm2('tpm2_getcap', ['handles-persistent']).toString();
    const r = await agent(enrollArgs('agent-3', secret, out));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('the TPM already holds objects at 0x81018000, 0x81018001 (an earlier enrollment');
    expect(r.stderr).toContain('--force');
    expect(rm.tpm2('tpm2_getcap', ['handles-persistent']).toString()).toBe(before);
    expect(fs.existsSync(out)).toBe(false);
  });

  it('renew: a new TPM key, a new certificate over TLS with the old key; the old certificate stays valid', async () => {
    const out = tmp.file('out-1');
    const old = new X509Certificate(fs.readFileSync(`${out}/cert.pem`));
    const r = await agent(['renew', '--trust', svc.chainPem, '--out', out]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const renewed = new X509Certificate(fs.readFileSync(`${out}/cert.pem`));
    expect(renewed.serialNumber).not.toBe(old.serialNumber);
    expect(await verifies(`${out}/cert.pem`)).toBe(`${out}/cert.pem: OK\n`);
    const state = JSON.parse(fs.readFileSync(`${out}/agent.json`, 'utf8')) as { keyHandle: string };
    expect(state.keyHandle).toBe('0x81018002');
    expect(renewed.publicKey.export({ type: 'spki', format: 'pem' })).toBe(spkiAt('0x81018002'));
    expect(renewed.publicKey.export({ type: 'spki', format: 'pem' })).not.toBe(old.publicKey.export({ type: 'spki', format: 'pem' }));
    // the old key is evicted; the old certificate is not revoked (it runs to its expiry)
    expect(rm.tpm2('tpm2_getcap', ['handles-persistent']).toString()).not.toContain('0x81018001');
    const shown = await showDevice('agent-1');
    const bySerial = new Map(shown.certificates.map((c) => [c.serial, c]));
    expect(bySerial.get(old.serialNumber.toLowerCase())).toMatchObject({ status: 'valid' });
    expect(bySerial.get(renewed.serialNumber.toLowerCase())).toMatchObject({ status: 'valid', tpmAttested: true });
  });

  it('a TPM that cannot be reached: the TCTI is named, nothing is written', async () => {
    const tcti = `swtpm:host=127.0.0.1,port=${await freePort()}`;
    const out = tmp.file('out-x');
    const r = await agent(enrollArgs('agent-0', 'x', out), tcti);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`TPM unreachable through TCTI "${tcti}"`);
    expect(fs.existsSync(out)).toBe(false);
  });

  it('a trust file without certificates is refused before anything runs; one of another CA fails the TLS check', async () => {
    const bad = tmp.write('not-a-chain.pem', 'hello\n');
    const r = await agent(['renew', '--trust', bad, '--out', tmp.file('out-1')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`--trust ${bad}: no PEM certificate in it`);
    // a certificate, but not the CA the server's TLS certificate chains to
    const out = tmp.file('out-wrong-trust');
    const other = await agent([
      ...enrollArgs('agent-0', 'x', out).map((a) => (a === svc.chainPem ? tmp.file('tpm-roots/swtpm-root.pem') : a)),
      '--ak-handle',
      '0x81018020',
      '--key-handles',
      '0x81018021,0x81018022',
    ]);
    expect(other.code).toBe(1);
    expect(other.stderr).toContain("the server's TLS certificate does not chain to --trust or does not name the host");
    expect(fs.existsSync(out)).toBe(false);
  });

  it('a TPM without its EK certificate in NV: the error names --ek-cert, and with --ek-cert the device enrolls', async () => {
    const ekDer = rm.tpm2('sh', ['-c', 'tpm2_nvread 0x01c00002 -C o -o ek-saved.der >/dev/null && cat ek-saved.der']);
    rm.tpm2('tpm2_nvundefine', ['-C', 'p', '0x01c00002']);
    const secret = await addDevice('agent-2');
    const out = tmp.file('out-2');
    const args = [...enrollArgs('agent-2', secret, out), '--ak-handle', '0x81018010', '--key-handles', '0x81018011,0x81018012'];
    const missing = await agent(args);
    expect(missing.code).toBe(4);
    expect(missing.stderr).toContain('the TPM has no EK certificate in NV index 0x01c00002: pass it with --ek-cert');
    expect(fs.existsSync(out)).toBe(false);
    const ekFile = tmp.write('ek.der', ekDer);
    const r = await agent([...args, '--ek-cert', ekFile]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(await verifies(`${out}/cert.pem`)).toBe(`${out}/cert.pem: OK\n`);
    expect((await showDevice('agent-2')).lastAttestation).toMatchObject({ verdict: 'attested' });
  });

  it('a renewal the server refuses (device suspended): non-zero exit with the reason, cert.pem and agent.json untouched, no new key left in the TPM', async () => {
    const out = tmp.file('out-2');
    const before = { cert: fs.readFileSync(`${out}/cert.pem`), state: fs.readFileSync(`${out}/agent.json`) };
    expect((await svc.cli(['devices', 'suspend', 'agent-2'])).code).toBe(0);
    const r = await agent(['renew', '--trust', svc.chainPem, '--out', out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^device-ca: EST server refused (tpm\/nonce|simplereenroll) \(HTTP 403\): \S.*\n$/);
    expect(fs.readFileSync(`${out}/cert.pem`)).toEqual(before.cert);
    expect(fs.readFileSync(`${out}/agent.json`)).toEqual(before.state);
    expect(fs.readdirSync(out).sort()).toEqual(['agent.json', 'ak.pem', 'cert.pem', 'chain.pem']);
    const held = rm.tpm2('tpm2_getcap', ['handles-persistent']).toString();
    expect(held).toContain('0x81018011');
    expect(held).not.toContain('0x81018012');
  });

  it('a TPM in dictionary-attack lockout: the agent says so and how to clear it; after tpm2_dictionarylockout the renewal passes', async () => {
    // three wrong passwords on a DA-protected key (swtpm: TPM2_PT_MAX_AUTH_FAIL 3) put the TPM in lockout
    rm.tpm2('tpm2_createprimary', ['-C', 'o', '-g', 'sha256', '-G', 'ecc', '-c', 'da-srk.ctx']);
    rm.tpm2('tpm2_create', ['-C', 'da-srk.ctx', '-G', 'ecc256:ecdsa-sha256', '-p', 'right', '-u', 'da.pub', '-r', 'da.priv']);
    rm.tpm2('tpm2_load', ['-C', 'da-srk.ctx', '-u', 'da.pub', '-r', 'da.priv', '-c', 'da.ctx']);
    tpm.dir.write('da.msg', Buffer.from('x'));
    for (let i = 0; i < 4; i++) expect(() => rm.tpm2('tpm2_sign', ['-c', 'da.ctx', '-p', 'wrong', '-g', 'sha256', '-o', 'da.sig', 'da.msg'])).toThrow();
    expect(rm.tpm2('tpm2_getcap', ['properties-variable']).toString()).toMatch(/inLockout: +1/);
    const out = tmp.file('out-1');
    const before = fs.readFileSync(`${out}/cert.pem`);
    const locked = await agent(['renew', '--trust', svc.chainPem, '--out', out]);
    expect(locked.code).toBe(1);
    expect(locked.stderr).toMatch(/^device-ca: the TPM is in dictionary-attack lockout \(TPM_RC_LOCKOUT from tpm2_\w+\): .*tpm2_dictionarylockout --clear-lockout/);
    expect(fs.readFileSync(`${out}/cert.pem`)).toEqual(before);
    // the advice works (swtpm's lockout authorization is empty)
    rm.tpm2('tpm2_dictionarylockout', ['--clear-lockout']);
    const r = await agent(['renew', '--trust', svc.chainPem, '--out', out]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(fs.readFileSync(`${out}/cert.pem`)).not.toEqual(before);
  });
});
