import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { SwTpm } from './swtpm';

/**
 * TpmAbrmd: tpm2-abrmd, the TPM2 access broker and resource manager, in front of a test's swtpm on a
 * private D-Bus session bus, as a device has /dev/tpmrm0 in front of its TPM. Needed where a client keeps
 * more objects loaded than the TPM has slots (openssl's tpm2 provider during a TLS handshake), which
 * fails on swtpm directly. While it runs, swtpm (one connection at a time) is reachable only through it:
 * use `env` / `tpm2` here, not the SwTpm's own. Debian packages tpm2-abrmd, libtss2-tcti-tabrmd0, dbus-daemon.
 */
export interface TpmAbrmd {
  /** tcti: the TPM2TOOLS_TCTI / TPM2OPENSSL_TCTI value that reaches the TPM through the broker */
  tcti: string;
  /** env: this process's environment with the TCTI variables and the private bus address */
  env: NodeJS.ProcessEnv;
  tpm2(tool: string, args: string[]): Buffer;
  stop(): Promise<void>;
}

function firstLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (c: Buffer) => {
      buf += c.toString();
      const i = buf.indexOf('\n');
      if (i >= 0) resolve(buf.slice(0, i).trim());
    });
    child.once('exit', (code) => reject(new Error(`dbus-daemon exited with ${code}`)));
  });
}

const stopChild = async (child: ChildProcess): Promise<void> => {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
};

/** startAbrmd starts a session bus and tpm2-abrmd on it, connected to `tpm`'s command port. */
export async function startAbrmd(tpm: SwTpm): Promise<TpmAbrmd> {
  const dbus = spawn('dbus-daemon', ['--session', '--print-address=1', '--nofork', '--nopidfile'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const address = await firstLine(dbus);
  const busName = `com.intel.tss2.Tabrmd.t${randomBytes(4).toString('hex')}`;
  const env = { ...process.env, DBUS_SESSION_BUS_ADDRESS: address };
  const abrmd = spawn('tpm2-abrmd', ['--session', `--dbus-name=${busName}`, `--tcti=swtpm:host=127.0.0.1,port=${tpm.port}`, '--allow-root'], { env, stdio: 'ignore' });
  const tcti = `tabrmd:bus_name=${busName},bus_type=session`;
  const full = { ...env, TPM2TOOLS_TCTI: tcti, TPM2OPENSSL_TCTI: tcti };
  const run = (tool: string, args: string[]): Buffer => execFileSync(tool, args, { cwd: tpm.dir.path, env: full, stdio: ['ignore', 'pipe', 'pipe'] });
  // the broker takes its bus name after it connected to the TPM: wait until a command goes through
  for (let i = 0; ; i++) {
    try {
      run('tpm2_getcap', ['handles-persistent']);
      break;
    } catch (e) {
      if (i >= 100 || abrmd.exitCode !== null) {
        await stopChild(abrmd);
        await stopChild(dbus);
        throw new Error(`tpm2-abrmd did not come up: ${(e as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    tcti,
    env: full,
    tpm2: run,
    async stop() {
      await stopChild(abrmd);
      await stopChild(dbus);
    },
  };
}
