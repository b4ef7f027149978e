import * as fs from 'node:fs';
import * as graphene from 'graphene-pk11';
import { DeviceCaError } from '../../errors/device-ca-error';
import { ckrOf } from './pkcs11-errors';

/**
 * pkcs11-module: C_Initialize and C_Finalize are process-wide in PKCS#11 (one library state per
 * process), so two backends on the same module must share one initialized handle, and the last one to
 * close finalizes. node-webcrypto-p11 gets this wrong: its close() finalizes under everyone else.
 */

/** CKF_OS_LOCKING_OK: without it (pkcs11js' default flags = 0) SoftHSM turns its locks off and concurrent signs crash. */
export const CKF_OS_LOCKING_OK = 2;

interface SharedModule {
  module: graphene.Module;
  refs: number;
}

const modules = new Map<string, SharedModule>();

/**
 * acquireModule loads and initializes the module at `path` once per process and counts users. The
 * path is resolved through symlinks so two spellings of one library share one state.
 */
export function acquireModule(path: string): graphene.Module {
  let real: string;
  try {
    real = fs.realpathSync(path);
    if (!fs.statSync(real).isFile()) throw new Error('not a file');
  } catch (e) {
    throw new DeviceCaError('config', `PKCS#11 module ${path} not found or not a file`, { cause: e });
  }
  const shared = modules.get(real);
  if (shared) {
    shared.refs++;
    return shared.module;
  }
  let mod: graphene.Module;
  try {
    mod = graphene.Module.load(real);
  } catch (e) {
    throw new DeviceCaError('config', `cannot load PKCS#11 module ${path}: not a PKCS#11 library?`, { cause: e, detail: String(e) });
  }
  try {
    // graphene ignores CKR_CRYPTOKI_ALREADY_INITIALIZED (someone else in this process initialized it,
    // in which case their flags apply).
    mod.initialize({ flags: CKF_OS_LOCKING_OK });
  } catch (e) {
    try {
      mod.close();
    } catch {
      /* already failing */
    }
    throw new DeviceCaError('key-backend', `C_Initialize of PKCS#11 module ${path} failed (${ckrOf(e) ?? String(e)})`, { cause: e });
  }
  modules.set(real, { module: mod, refs: 1 });
  return mod;
}

/** reinitializeModule answers CKR_CRYPTOKI_NOT_INITIALIZED (someone finalized under us): initialize again in place. */
export function reinitializeModule(mod: graphene.Module): void {
  mod.initialize({ flags: CKF_OS_LOCKING_OK });
}

/** releaseModule drops one user; the last one finalizes and unloads the library. */
export function releaseModule(mod: graphene.Module): void {
  for (const [key, shared] of modules) {
    if (shared.module !== mod) continue;
    if (--shared.refs > 0) return;
    modules.delete(key);
    try {
      mod.finalize();
    } catch {
      /* CKR_CRYPTOKI_NOT_INITIALIZED: nothing left to finalize */
    }
    mod.close();
    return;
  }
}

/** moduleUsers reports how many backends share the module at `path` (0 when not loaded); for tests and health output. */
export function moduleUsers(path: string): number {
  try {
    return modules.get(fs.realpathSync(path))?.refs ?? 0;
  } catch {
    return 0;
  }
}
