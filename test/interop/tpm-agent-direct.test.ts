import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import { parseTpm2bPublic, tpmPublicKey } from '../../src/attestation/tpm/tpm-public';
import { createPrimaryCommand, ekTemplate, flushContextCommand, readTpm2b, TPM_RH_ENDORSEMENT } from '../../src/agent/tpm-commands';
import { call } from '../../src/agent/tpm-credential-session';
import { openTpmTransport } from '../../src/agent/tpm-transport';
import { freePort } from '../helpers/ports';
import { opensslAny } from '../helpers/pki-client';
import { assertBuilt, ProcessResult, RunningService, runProcess, CLI_JS } from '../helpers/service-process';
import { SwTpm } from '../helpers/swtpm';
import { startTpmAgentSetup, TpmAgentSetup } from '../helpers/tpm-agent-setup';
import { TmpDir } from '../helpers/tmp';

/**
 * `device-ca agent enroll` straight against swtpm, no resource manager (issue 9): the EK policy session
 * of the credential activation lives only inside the agent's own TPM connection
 * (src/agent/tpm-credential-session.ts), as it must under /dev/tpmrm0 in the field. Through the swtpm
 * TCTI with the RSA EK (template L-1, policy session) and the ECC P-384 EK (H-3, swtpm's ECC EK
 * certificate), and through `device:<pty>` (socat joins a raw pseudo-terminal to swtpm's command port);
 * cert.pem verifies with openssl. swtpm also answers the mssim framing (TPM_SEND_COMMAND) on its command
 * port, so the mssim transport is checked against it too (tpm2-tools' own mssim TCTI fails to connect to
 * swtpm, so no whole enrollment over mssim here). Renewal needs a resource manager (the tpm2 openssl
 * provider keeps more objects loaded than swtpm has slots): the agent says so.
 */
let setup: TpmAgentSetup;
let tpm: SwTpm;
let tmp: TmpDir;
let svc: RunningService;

const agent = (args: string[], tcti: string): Promise<ProcessResult> =>
  runProcess(process.execPath, [CLI_JS, 'agent', ...args], { env: { ...tpm.env, TPM2TOOLS_TCTI: tcti, TPM2OPENSSL_TCTI: tcti }, timeoutMs: 60_000 });
const enrollArgs = (device: string, secret: string, out: string, handles: [string, string, string]): string[] => [
  'enroll',
  ...['--est', `${svc.est}/tpm`, '--device', device, '--secret', secret, '--trust', svc.chainPem, '--out', out],
  ...['--ek-chain', tmp.file('ek-issuer.pem'), '--ak-handle', handles[0], '--key-handles', `${handles[1]},${handles[2]}`],
];

async function addDevice(id: string): Promise<string> {
  const r = await svc.cli(['devices', 'add', id, '--owner', 'acme', '--label', 'tpm']);
  expect(r.code).toBe(0);
  return r.stdout.trim();
}

async function showDevice(id: string): Promise<{ aks: { status: string }[]; lastAttestation: { verdict: string; serial: string }; ek?: { hash?: string } }> {
  const r = await svc.cli(['devices', 'show', id, '--json']);
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout);
}

const spkiAt = (handle: string): string => {
  tpm.tpm2('tpm2_readpublic', ['-c', handle, '-o', `pub-${handle}.bin`]);
  return tpmPublicKey(parseTpm2bPublic(tpm.dir.read(`pub-${handle}.bin`))).export({ type: 'spki', format: 'pem' }) as string;
};

beforeAll(async () => {
  assertBuilt();
  setup = await startTpmAgentSetup({ tmpPrefix: 'device-ca-tpm-direct-', abrmd: false });
  ({ tmp, tpm, svc } = setup);
}, 60_000);

afterAll(async () => {
  await setup?.stop();
});

describe('device-ca agent on swtpm without a resource manager', () => {
  it.each([
    ['swtpm', 'rsa', ['0x81018000', '0x81018001', '0x81018002']],
    ['swtpm', 'ecc384', ['0x81018010', '0x81018011', '0x81018012']],
  ] as const)('enroll through the %s TCTI with the %s EK: cert.pem verifies with openssl, its key is at the TPM handle', async (kind, ekAlg, handles) => {
    const device = `direct-${ekAlg}`;
    const secret = await addDevice(device);
    const out = tmp.file(`out-${ekAlg}`);
    const r = await agent([...enrollArgs(device, secret, out, [...handles]), '--ek-alg', ekAlg], `${kind}:host=127.0.0.1,port=${tpm.port}`);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect((await opensslAny('verify', '-CAfile', svc.chainPem, `${out}/cert.pem`)).out).toBe(`${out}/cert.pem: OK\n`);
    const cert = new X509Certificate(fs.readFileSync(`${out}/cert.pem`));
    expect(cert.publicKey.export({ type: 'spki', format: 'pem' })).toBe(spkiAt(handles[1]));
    const shown = await showDevice(device);
    expect(shown.aks.map((a) => a.status)).toEqual(['active']);
    expect(shown.lastAttestation).toMatchObject({ verdict: 'attested', serial: cert.serialNumber.toLowerCase() });
    // the agent flushed what it loaded: no transient object or session is left in the TPM
    expect(tpm.tpm2('tpm2_getcap', ['handles-transient']).toString().trim()).toBe('');
    expect(tpm.tpm2('tpm2_getcap', ['handles-saved-session']).toString().trim()).toBe('');
  });

  it('renew without a resource manager: refused with the reason, cert.pem unchanged', async () => {
    const out = tmp.file('out-rsa');
    const before = fs.readFileSync(`${out}/cert.pem`);
    const r = await agent(['renew', '--trust', svc.chainPem, '--out', out], `swtpm:host=127.0.0.1,port=${tpm.port}`);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('TLS with the TPM key ran out of TPM object slots: the tpm2 provider needs a resource manager');
    expect(fs.readFileSync(`${out}/cert.pem`)).toEqual(before);
  });

  it('enroll --force at the handles of an earlier enrollment: the held AK and key are replaced in-process, the new AK is what the CA bound', async () => {
    const handles: [string, string, string] = ['0x81018010', '0x81018011', '0x81018012'];
    const oldAk = spkiAt(handles[0]);
    const secret = await addDevice('direct-force');
    const out = tmp.file('out-force');
    const r = await agent([...enrollArgs('direct-force', secret, out, handles), '--force'], `swtpm:host=127.0.0.1,port=${tpm.port}`);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect((await opensslAny('verify', '-CAfile', svc.chainPem, `${out}/cert.pem`)).out).toBe(`${out}/cert.pem: OK\n`);
    expect(spkiAt(handles[0])).not.toBe(oldAk);
    // ak.pem, the AK certificate the CA issued at activation, is for the AK now at the handle
    expect(new X509Certificate(fs.readFileSync(`${out}/ak.pem`)).publicKey.export({ type: 'spki', format: 'pem' })).toBe(spkiAt(handles[0]));
    expect((await showDevice('direct-force')).aks.map((a) => a.status)).toEqual(['active']);
    expect(tpm.tpm2('tpm2_getcap', ['handles-transient']).toString().trim()).toBe('');
  });

  it.each(['swtpm', 'mssim'] as const)('the %s framing on the command port: each EK template re-derived in-process gives the EK tpm2_createek makes; a closed port is "unreachable"', async (kind) => {
    for (const alg of ['rsa', 'ecc', 'ecc384'] as const) {
      tpm.tpm2('tpm2_createek', ['-c', `ek-${alg}.ctx`, '-G', alg, '-u', `ek-${alg}.pub`]);
      const t = await openTpmTransport({ kind, host: '127.0.0.1', port: tpm.port }, kind);
      try {
        const r = await call(t, 'TPM2_CreatePrimary', createPrimaryCommand(TPM_RH_ENDORSEMENT, ekTemplate(alg)), 1);
        expect(readTpm2b('TPM2_CreatePrimary', 'outPublic', r.params, 0, true).toString('hex')).toBe(tpm.dir.read(`ek-${alg}.pub`).toString('hex'));
        expect((await call(t, 'TPM2_FlushContext', flushContextCommand(r.handles[0]), 0)).params.length).toBe(0);
      } finally {
        await t.close();
      }
    }
    expect(tpm.tpm2('tpm2_getcap', ['handles-transient']).toString().trim()).toBe('');
    const port = await freePort();
    await expect(openTpmTransport({ kind, host: '127.0.0.1', port }, `${kind}:port=${port}`)).rejects.toThrow(
      `TPM unreachable through TCTI "${kind}:port=${port}" (set TPM2TOOLS_TCTI, e.g. device:/dev/tpmrm0): cannot connect to 127.0.0.1:${port}: ECONNREFUSED`,
    );
  });

  it('enroll through device:<character device>: the agent writes and reads the device file (a pseudo-terminal socat joins to swtpm)', async () => {
    // no TPM character device in CI (no /dev/tpm*, no vtpm proxy): socat makes a raw pty whose bytes go to
    // swtpm's command port, the path the agent opens as it would /dev/tpmrm0. socat holds swtpm's one
    // connection while it runs, so it is stopped (by pid) before the other tests.
    const link = tmp.file('tpmdev');
    const socat = spawn('socat', [`pty,raw,echo=0,link=${link}`, `TCP:127.0.0.1:${tpm.port}`], { stdio: 'ignore' });
    try {
      for (const end = Date.now() + 10_000; !fs.existsSync(link) && Date.now() < end;) await new Promise((r) => setTimeout(r, 50));
      expect(fs.existsSync(link)).toBe(true);
      const secret = await addDevice('direct-device');
      const out = tmp.file('out-device');
      const r = await agent(enrollArgs('direct-device', secret, out, ['0x81018030', '0x81018031', '0x81018032']), `device:${link}`);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect((await opensslAny('verify', '-CAfile', svc.chainPem, `${out}/cert.pem`)).out).toBe(`${out}/cert.pem: OK\n`);
      expect((await showDevice('direct-device')).lastAttestation).toMatchObject({ verdict: 'attested' });
    } finally {
      const exited = new Promise((r) => socat.once('exit', r));
      socat.kill('SIGTERM');
      await exited;
    }
  });

  it('a TCTI conf the agent cannot read is refused before the TPM is touched', async () => {
    const r = await agent(enrollArgs('nobody', 'x', tmp.file('out-bad'), ['0x81018020', '0x81018021', '0x81018022']), `swtpm:port=${tpm.port},speed=fast`);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`TCTI "swtpm:port=${tpm.port},speed=fast": "speed=fast" is not host=<name> or port=<1..65535>`);
    expect(fs.existsSync(tmp.file('out-bad'))).toBe(false);
  });
});
