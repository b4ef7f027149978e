import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { freePort } from './ports';
import { makeTmpDir, TmpDir } from './tmp';

/**
 * swtpm: a real (software) TPM 2.0 per test, with an EK certificate from a local CA of its own. Needs the
 * Debian packages swtpm, swtpm-tools and tpm2-tools (scripts/install-test-deps.sh).
 * Provisioning (scripts/swtpm-provision.sh) takes about 1 s, so it runs once per test file and each TPM
 * starts from a copy of that state (INTEROP.md, TPM section).
 */
export interface SwTpm {
  dir: TmpDir;
  /** port: the TPM command port (raw TPM 2.0 command bytes; the control port is port + 1) */
  port: number;
  /** env for tpm2-tools: TPM2TOOLS_TCTI points at this TPM's command port */
  env: NodeJS.ProcessEnv;
  /** ekRoots: the PEM chain of the local CA that issued this TPM's EK certificate (issuer, then root) */
  ekIssuerPem: string;
  ekRootPem: string;
  /** tpm2 runs one tpm2-tools command in `dir` and returns its stdout; transient objects are flushed after, whether it failed or not */
  tpm2(tool: string, args: string[]): Buffer;
  stop(): Promise<void>;
}

const REPO = path.resolve(__dirname, '../..');

/** provisionSwTpm makes one provisioned TPM state (EK certificate included) to be started many times. */
export function provisionSwTpm(): TmpDir {
  const d = makeTmpDir('device-ca-swtpm-prov-');
  execFileSync(path.join(REPO, 'scripts/swtpm-provision.sh'), [d.path], { stdio: 'pipe' });
  return d;
}

async function waitForPort(port: number, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`swtpm exited with ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ port, host: '127.0.0.1' }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('swtpm did not listen');
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host: '127.0.0.1', exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/** consecutivePorts finds P with P+1 free too: the swtpm TCTI always takes the control port as P+1. */
async function consecutivePorts(): Promise<[number, number]> {
  for (let i = 0; i < 50; i++) {
    const p = await freePort();
    if (p < 65535 && (await canListen(p + 1))) return [p, p + 1];
  }
  throw new Error('no two consecutive free ports');
}

/** startSwTpm copies a provisioned state and serves it on two free loopback ports. */
export async function startSwTpm(provisioned: TmpDir): Promise<SwTpm> {
  const dir = makeTmpDir('device-ca-swtpm-');
  fs.cpSync(path.join(provisioned.path, 'state'), dir.file('state'), { recursive: true });
  const [port, ctrl] = await consecutivePorts();
  const child = spawn(
    'swtpm',
    [
      'socket',
      '--tpm2',
      '--tpmstate',
      `dir=${dir.file('state')}`,
      '--server',
      `type=tcp,port=${port},bindaddr=127.0.0.1`,
      '--ctrl',
      `type=tcp,port=${ctrl},bindaddr=127.0.0.1`,
      '--flags',
      'not-need-init,startup-clear',
    ],
    { stdio: 'ignore' },
  );
  await waitForPort(port, child);
  const env = { ...process.env, TPM2TOOLS_TCTI: `swtpm:host=127.0.0.1,port=${port}` };
  const run = (tool: string, args: string[]): Buffer => execFileSync(tool, args, { cwd: dir.path, env, stdio: ['ignore', 'pipe', 'pipe'] });
  return {
    dir,
    port,
    env,
    ekIssuerPem: fs.readFileSync(path.join(provisioned.path, 'localca/issuercert.pem'), 'utf8'),
    ekRootPem: fs.readFileSync(path.join(provisioned.path, 'localca/swtpm-localca-rootca-cert.pem'), 'utf8'),
    tpm2(tool, args) {
      try {
        return run(tool, args);
      } finally {
        // no resource manager between the tools and swtpm: free the object and session slots (INTEROP.md),
        // also after a command that failed (it leaves what it loaded, and the next load runs out of slots)
        run('tpm2_flushcontext', ['-t']);
        run('tpm2_flushcontext', ['-s']);
      }
    },
    async stop() {
      // a shutdown through the control channel, not a kill: a kill counts toward dictionary-attack lockout
      try {
        execFileSync('swtpm_ioctl', ['--tcp', `127.0.0.1:${ctrl}`, '-s'], { stdio: 'ignore' });
      } catch {
        child.kill();
      }
      if (child.exitCode === null) await new Promise((r) => child.once('exit', r));
      dir.cleanup();
    },
  };
}
