import * as fs from 'node:fs';
import * as path from 'node:path';
import { Config } from '../config/schema';
import { DeviceCaError } from '../errors/device-ca-error';
import { KeyBackend, KeyRole } from './key-backend';
import { KeyRouter } from './key-router';
import { Pkcs11KeyBackend } from './pkcs11/pkcs11-key-backend';
import { parsePkcs11Uri } from './pkcs11/pkcs11-uri';
import { SoftwareKeyBackend } from './software-key-backend';

/** keysBackendKind resolves keys.backend 'auto': a configured PKCS#11 module or token means the HSM. */
export function keysBackendKind(cfg: Config): 'software' | 'pkcs11' {
  if (cfg.keys.backend !== 'auto') return cfg.keys.backend;
  // a token named without a module is a mistake to report, not a reason to fall back to key files
  const p = cfg.keys.pkcs11;
  return p.module || p.token || p.serial ? 'pkcs11' : 'software';
}

/** readPin takes a token's PIN from the named environment variable or file; never from the config file. */
function readPin(t: { pinEnv?: string; pinFile?: string }, what: string): string {
  if (t.pinFile) {
    try {
      return fs.readFileSync(t.pinFile, 'utf8').split(/\r?\n/)[0];
    } catch {
      throw new DeviceCaError('config', `${what}.pinFile: cannot read ${t.pinFile}`);
    }
  }
  const name = t.pinEnv ?? 'DEVICE_CA_PKCS11_PIN';
  const pin = process.env[name];
  if (pin === undefined || pin === '') throw new DeviceCaError('config', `${what}: no PIN: set ${name} (or ${what}.pinFile)`);
  return pin;
}

/**
 * openKeyBackend builds the KeyBackend for this process: software files, or PKCS#11 tokens (one backend
 * per token, shared by the roles on it; each process has its own PKCS#11 state and session pool).
 */
export function openKeyBackend(cfg: Config): KeyBackend {
  const pass = process.env[cfg.keys.passphraseEnv];
  const software = new SoftwareKeyBackend(path.join(cfg.dataDir, 'keys'), pass && pass.length ? pass : undefined);
  if (keysBackendKind(cfg) === 'software') return software;
  const p = cfg.keys.pkcs11;
  if (!p.module) throw new DeviceCaError('config', 'keys.pkcs11.module: the PKCS#11 module path is required (DEVICE_CA_PKCS11_MODULE)');
  if (!p.token && !p.serial) throw new DeviceCaError('config', 'keys.pkcs11.token: name the token by label (DEVICE_CA_PKCS11_TOKEN) or serial');
  const tokens = new Map<string, Promise<KeyBackend>>();
  const tokenBackend = (t: { token?: string; serial?: string; pinEnv?: string; pinFile?: string }, what: string): Promise<KeyBackend> => {
    const key = `${t.token ?? ''}|${t.serial ?? ''}`;
    let b = tokens.get(key);
    if (!b) {
      const settings =
        what === 'keys.pkcs11'
          ? `keys.pkcs11.module (DEVICE_CA_PKCS11_MODULE), keys.pkcs11.token (DEVICE_CA_PKCS11_TOKEN), PIN from ${t.pinFile ? 'keys.pkcs11.pinFile' : (t.pinEnv ?? 'DEVICE_CA_PKCS11_PIN')}`
          : `keys.pkcs11.module, ${what}.token, PIN from ${t.pinFile ? `${what}.pinFile` : (t.pinEnv ?? 'DEVICE_CA_PKCS11_PIN')}`;
      const opened = Promise.resolve()
        .then(() => new Pkcs11KeyBackend({ module: p.module!, token: t.token, serial: t.serial, pin: readPin(t, what), sessionPoolSize: p.sessionPoolSize, signerThreads: p.signerThreads }).open())
        .catch((e: unknown) => {
          // name the settings to check; the backend's message already says what went wrong
          if (e instanceof DeviceCaError && !e.message.includes('DEVICE_CA_PKCS11_PIN')) throw new DeviceCaError(e.code, `${e.message} [check ${settings}]`, { cause: e });
          throw e;
        });
      tokens.set(key, opened);
      b = opened;
    }
    return b;
  };
  const roleToken = (role: KeyRole) => {
    const r = cfg.keys.roles[role];
    return r.token || r.serial ? { token: r.token, serial: r.serial, pinEnv: r.pinEnv ?? p.pinEnv, pinFile: r.pinFile ?? p.pinFile } : p;
  };
  return new KeyRouter(
    (role) => tokenBackend(roleToken(role), cfg.keys.roles[role].token || cfg.keys.roles[role].serial ? `keys.roles.${role}` : 'keys.pkcs11'),
    async (ref) => {
      if (!ref.startsWith('pkcs11:')) return software;
      const u = parsePkcs11Uri(ref);
      // the PIN of a token comes from the role (or default) configuration that names it
      const named = (['root', 'issuing', 'ocsp', 'ra', 'signer'] as KeyRole[]).map(roleToken).find((t) => (u.token && t.token === u.token) || (u.serial && t.serial === u.serial));
      return tokenBackend(named ?? { token: u.token, serial: u.serial, pinEnv: p.pinEnv, pinFile: p.pinFile }, 'keys.pkcs11');
    },
    (role) => cfg.keys.roles[role].key,
  );
}
