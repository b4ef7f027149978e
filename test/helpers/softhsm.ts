import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vm from 'node:vm';

/**
 * softhsm: a throw-away SoftHSM2 token store per test run, so PKCS#11 tests never touch
 * /var/lib/softhsm and run in parallel on one machine. Needs the Debian packages softhsm2 (the module
 * and softhsm2-util) and opensc (pkcs11-tool); scripts/install-test-deps.sh installs both.
 *
 * SoftHSM reads SOFTHSM2_CONF once, in C_Initialize, so createSoftHsm must run before the first
 * backend opens, and every backend of the previous test file must be closed (the last close
 * finalizes the module; the next C_Initialize reads the new file).
 */

const MODULE_CANDIDATES = ['/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so', '/usr/lib/softhsm/libsofthsm2.so', '/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so'];

/** softHsmModule is the path of libsofthsm2.so (SOFTHSM2_MODULE overrides the Debian locations). */
export function softHsmModule(): string {
  const candidates = process.env.SOFTHSM2_MODULE ? [process.env.SOFTHSM2_MODULE] : MODULE_CANDIDATES;
  const found = candidates.find((p) => fs.existsSync(p));
  if (!found) throw new Error(`libsofthsm2.so not found (tried ${candidates.join(', ')}); install softhsm2 (scripts/install-test-deps.sh)`);
  return found;
}

export interface SoftHsm {
  dir: string;
  conf: string;
  module: string;
  /** tokens maps each initialized token label to its serial. */
  tokens: Record<string, string>;
  pin: string;
  soPin: string;
  /** env is what a child process (softhsm2-util, pkcs11-tool, a second node) needs to see the same tokens. */
  env: NodeJS.ProcessEnv;
  /** pkcs11Tool runs opensc's pkcs11-tool against this token store and returns stdout. */
  pkcs11Tool(args: string[]): string;
  cleanup(): void;
}

/**
 * createSoftHsm makes `<tmp>/tokens`, a conf with `objectstore.backend = file`, initializes one token
 * per label (`--free` slot, user PIN 1234, SO PIN 5678) and points SOFTHSM2_CONF at the conf.
 */
export function createSoftHsm(opts: { labels?: string[]; pin?: string; soPin?: string } = {}): SoftHsm {
  const labels = opts.labels ?? ['ca'];
  const pin = opts.pin ?? '1234';
  const soPin = opts.soPin ?? '5678';
  const module = softHsmModule();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-softhsm-'));
  const tokenDir = path.join(dir, 'tokens');
  fs.mkdirSync(tokenDir, { mode: 0o700 });
  const conf = path.join(dir, 'softhsm2.conf');
  fs.writeFileSync(conf, `directories.tokendir = ${tokenDir}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`);
  const env = { ...process.env, SOFTHSM2_CONF: conf };
  const tokens: Record<string, string> = {};
  for (const label of labels) {
    execFileSync('softhsm2-util', ['--init-token', '--free', '--label', label, '--pin', pin, '--so-pin', soPin], { env, stdio: 'pipe' });
  }
  const listing = execFileSync('softhsm2-util', ['--show-slots'], { env }).toString();
  for (const block of listing.split(/\n(?=Slot )/)) {
    const label = /Label:\s*(.*)/.exec(block)?.[1]?.trim();
    const serial = /Serial number:\s*(\S+)/.exec(block)?.[1];
    if (label && serial && labels.includes(label)) tokens[label] = serial;
  }
  setRealEnv('SOFTHSM2_CONF', conf);
  return {
    dir,
    conf,
    module,
    tokens,
    pin,
    soPin,
    env,
    pkcs11Tool: (args) => execFileSync('pkcs11-tool', ['--module', module, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] }).toString(),
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

/**
 * setRealEnv sets a variable in the real process environment. Under jest, `process` is a sandbox copy
 * whose env never reaches libc, and SoftHSM reads SOFTHSM2_CONF with getenv(); the main context's
 * `process` (reached through vm.runInThisContext) is the real one. Outside jest both are the same.
 */
function setRealEnv(name: string, value: string): void {
  process.env[name] = value;
  const real = vm.runInThisContext('process') as NodeJS.Process;
  real.env[name] = value;
}
