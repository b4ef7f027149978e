import * as fs from 'node:fs';
import { opensslAny, pkiClient } from '../helpers/pki-client';
import { ProcessResult, RunningService, runProcess, startService } from '../helpers/service-process';
import { TmpDir, makeTmpDir } from '../helpers/tmp';

/**
 * SCEP (RFC 8894) with certmonger (Debian 12 certmonger 0.79) as the client: the daemon on a private
 * D-Bus session (`dbus-run-session -- certmonger -s -n -B -c steps.sh`), its state in the test's own
 * directory (CERTMONGER_CONFIG_DIR, _REQUESTS_DIR, _CAS_DIR, _TMPDIR), `getcert add-scep-ca` pointed at
 * the built service and `getcert request -L <secret>`. certmonger sends GET PKIOperation with AES-256 and
 * the challengePassword as PrintableString, and renews (`getcert resubmit`) with a PKCSReq signed by the
 * certificate it holds, under the transactionID it derived from the key. Each test checks what an
 * operator would: the certificate certmonger saved verifies with openssl against the CA chain, names the
 * device, and the store lists it.
 */

let svc: RunningService;
let tmp: TmpDir;
const { next, cliOk, register, teardown } = pkiClient({ svc: () => svc, tmp: () => tmp });

beforeAll(async () => {
  tmp = makeTmpDir('device-ca-scep-certmonger-');
  svc = await startService({
    configYaml: [
      'scep:',
      '  enabled: true',
      '  paths:',
      '    default: { profile: default }',
      '    manual: { profile: manual }',
      'profiles:',
      '  default: {}',
      '  manual: { manualApproval: true }',
      '',
    ].join('\n'),
  });
}, 60_000);
afterAll(teardown);

/**
 * certmonger runs steps (shell lines) under a fresh certmonger daemon on its own D-Bus session, with the
 * state directory dir (kept across runs, so a later run sees the requests of an earlier one).
 */
async function certmonger(dir: string, steps: string[]): Promise<ProcessResult> {
  for (const d of ['req', 'cas', 'tmp', 'home']) fs.mkdirSync(`${dir}/${d}`, { recursive: true });
  const script = tmp.write(`steps-${next()}.sh`, `#!/bin/sh\n${steps.join('\n')}\n`);
  fs.chmodSync(script, 0o700);
  const env = {
    PATH: process.env.PATH,
    HOME: `${dir}/home`,
    CERTMONGER_CONFIG_DIR: dir,
    CERTMONGER_REQUESTS_DIR: `${dir}/req`,
    CERTMONGER_CAS_DIR: `${dir}/cas`,
    CERTMONGER_TMPDIR: `${dir}/tmp`,
  };
  return runProcess('dbus-run-session', ['--', 'certmonger', '-s', '-n', '-B', '-c', script], { env, cwd: dir, timeoutMs: 90_000 });
}

const scepUrl = (): string => `http://127.0.0.1:${svc.httpPort}/scep`;

async function serialOf(crt: string): Promise<string> {
  return (await opensslAny('x509', '-in', crt, '-noout', '-serial')).out
    .trim()
    .replace(/^serial=/, '')
    .toLowerCase()
    .replace(/^0+/, '');
}

async function expectVerifies(crt: string): Promise<void> {
  const v = await opensslAny('verify', '-CAfile', svc.chainPem, crt);
  expect(v.out.trim()).toBe(`${crt}: OK`);
}

async function storedCerts(id: string): Promise<{ serial: string; status: string }[]> {
  return (JSON.parse(await cliOk('devices', 'show', id, '--json')) as { certificates: { serial: string; status: string }[] }).certificates;
}

describe('certmonger getcert request / resubmit against /scep', () => {
  const id = 'cm-dev-1';
  let dir: string;
  let crt: string;
  let firstSerial: string;

  it('enrolls with the one-time secret as challengePassword: the certificate verifies, names the device, and is in the store', async () => {
    // `devices add` prints the secret alone on stdout, and with SCEP on how to give it to a SCEP client on stderr
    const add = await svc.cli(['devices', 'add', id, '--owner', 'acme']);
    expect(add.code).toBe(0);
    const secret = add.stdout.trim();
    // a device without a label may use every SCEP path (this service also serves /scep/manual)
    expect(add.stderr).toContain(`SCEP: give the secret as challengePassword in a CSR with CN=${id}, to http://localhost:${svc.httpPort}/scep or http://localhost:${svc.httpPort}/scep/manual\n`);
    dir = tmp.file('cm-1/state');
    crt = tmp.file('cm-1/dev.crt');
    const key = tmp.file('cm-1/dev.key');
    const r = await certmonger(dir, [
      `getcert add-scep-ca -s -c TestSCEP -u ${scepUrl()}`,
      `getcert request -s -c TestSCEP -f ${crt} -k ${key} -N CN=${id},O=acme -L ${secret} -G RSA -g 2048 -w -v`,
      'getcert list -s',
    ]);
    expect(r.stdout).toContain('status: MONITORING');
    await expectVerifies(crt);
    expect((await opensslAny('x509', '-in', crt, '-noout', '-subject', '-nameopt', 'RFC2253')).out.trim()).toBe(`subject=CN=${id},O=acme`);
    firstSerial = await serialOf(crt);
    expect(await storedCerts(id)).toEqual([expect.objectContaining({ serial: firstSerial, status: 'valid' })]);
  }, 120_000);

  it('renews (getcert resubmit): a new certificate for the same key that verifies; both are in the store', async () => {
    const r = await certmonger(dir, [`getcert resubmit -s -f ${crt} -w -v`, 'getcert list -s']);
    expect(r.stdout).toContain('status: MONITORING');
    const serial = await serialOf(crt);
    expect(serial).not.toBe(firstSerial);
    await expectVerifies(crt);
    const certs = await storedCerts(id);
    expect(certs.map((c) => c.serial).sort()).toEqual([firstSerial, serial].sort());
  }, 120_000);
});

describe('certmonger with a wrong secret', () => {
  it('is rejected with a signed FAILURE certmonger understands: no certificate saved, the device still unenrolled', async () => {
    const id = 'cm-dev-2';
    await register(id, 'acme', 'cli');
    const crt = tmp.file('cm-2/dev.crt');
    const r = await certmonger(tmp.file('cm-2/state'), [
      `getcert add-scep-ca -s -c TestSCEP -u ${scepUrl()}`,
      `getcert request -s -c TestSCEP -f ${crt} -k ${tmp.file('cm-2/dev.key')} -N CN=${id},O=acme -L not-the-secret -G RSA -g 2048 -w -v`,
      'getcert list -s',
    ]);
    expect(r.stdout).toMatch(/status: CA_REJECTED/);
    expect(fs.existsSync(crt)).toBe(false);
    expect(await storedCerts(id)).toEqual([]);
  }, 120_000);
});

/**
 * Manual approval with certmonger 0.79: on PENDING it keeps the request in CA_WORKING and, when it polls,
 * sends its stored PKCSReq again (its scep-submit poll mode reads the PKCSReq message, not a
 * GetCertInitial one), so this exercises the held transaction through the PKCSReq path; the CertPoll
 * message itself is tested in process (test/unit/protocols/scep, test/unit/ra/scep-enroll.test.ts).
 */
describe('certmonger on a manual-approval profile (/scep/manual)', () => {
  it('waits (CA_WORKING) while the request is pending; after `requests approve` its next poll gets the certificate', async () => {
    const id = 'cm-dev-3';
    const secret = await register(id, 'acme', 'cli');
    const dir = tmp.file('cm-3/state');
    const crt = tmp.file('cm-3/dev.crt');
    const url = `${scepUrl()}/manual`;
    // no -w: certmonger keeps the request and polls; the daemon ends with the script, its state stays in dir
    const first = await certmonger(dir, [
      `getcert add-scep-ca -s -c TestSCEP -u ${url}`,
      `getcert request -s -c TestSCEP -f ${crt} -k ${tmp.file('cm-3/dev.key')} -N CN=${id},O=acme -L ${secret} -G RSA -g 2048 -v`,
      'for i in $(seq 1 60); do getcert list -s | grep -q "status: CA_WORKING" && break; sleep 0.5; done',
      'getcert list -s',
    ]);
    expect(first.stdout).toContain('status: CA_WORKING');
    expect(fs.existsSync(crt)).toBe(false);
    const pending = JSON.parse(await cliOk('requests', 'list', '--json')) as { id: string; deviceId: string }[];
    const mine = pending.filter((r) => r.deviceId === id);
    expect(mine).toHaveLength(1);
    expect(await storedCerts(id)).toEqual([]);

    await cliOk('requests', 'approve', mine[0].id);
    // the daemon restarted with the request in CA_WORKING polls again on its own
    const second = await certmonger(dir, ['for i in $(seq 1 120); do getcert list -s | grep -q "status: MONITORING" && break; sleep 0.5; done', 'getcert list -s']);
    expect(second.stdout).toContain('status: MONITORING');
    await expectVerifies(crt);
    const serial = await serialOf(crt);
    expect(await storedCerts(id)).toEqual([expect.objectContaining({ serial, status: 'valid' })]);
    const issued = JSON.parse(await cliOk('requests', 'list', '--status', 'issued', '--json')) as { id: string; deviceId: string }[];
    expect(issued.filter((r) => r.deviceId === id).map((r) => r.id)).toEqual([mine[0].id]);
  }, 240_000);
});
