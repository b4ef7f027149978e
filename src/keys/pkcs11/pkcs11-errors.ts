import { DeviceCaError, isDeviceCaError } from '../../errors/device-ca-error';

/**
 * pkcs11-errors: what a CKR_* return value means for device-ca. pkcs11js raises `Pkcs11Error` whose
 * message is the CKR name (`CKR_PIN_INCORRECT`) and whose `code` is the number; async callbacks get the
 * same class. Everything here works on the name, which is stable across pkcs11js versions.
 */

/** ckrOf extracts the CKR_* name from anything pkcs11js or graphene threw, or undefined. */
export function ckrOf(e: unknown): string | undefined {
  if (isDeviceCaError(e)) return undefined;
  const m = e instanceof Error ? /\b(CKR_[A-Z0-9_]+)/.exec(e.message) : undefined;
  return m?.[1];
}

/**
 * RECOVERABLE lists the returns after which reopening the sessions (and logging in again) can make
 * the same call succeed: the session or login went away under us (token logout by another application,
 * C_CloseAllSessions, a token re-inserted, a restarted HSM daemon), or object handles became stale (a
 * C_Logout hides private objects and SoftHSM hands out new handles after the next login, so a cached
 * key handle then fails with CKR_OBJECT_HANDLE_INVALID). CKR_OPERATION_ACTIVE should never happen with
 * the pool; if it does, a fresh session clears it.
 */
const RECOVERABLE = new Set([
  'CKR_SESSION_HANDLE_INVALID',
  'CKR_SESSION_CLOSED',
  'CKR_USER_NOT_LOGGED_IN',
  'CKR_DEVICE_REMOVED',
  'CKR_DEVICE_ERROR',
  'CKR_TOKEN_NOT_PRESENT',
  'CKR_OBJECT_HANDLE_INVALID',
  'CKR_KEY_HANDLE_INVALID',
  'CKR_CRYPTOKI_NOT_INITIALIZED',
  'CKR_OPERATION_ACTIVE',
  'CKR_OPERATION_NOT_INITIALIZED',
]);

export function isRecoverable(e: unknown): boolean {
  const ckr = ckrOf(e);
  return ckr !== undefined && RECOVERABLE.has(ckr);
}

/**
 * loginError turns a C_Login failure into the error an operator can act on. None of these is ever
 * retried: every wrong PIN counts toward the token's lockout.
 */
export function loginError(e: unknown, token: string): DeviceCaError {
  const ckr = ckrOf(e);
  const where = `PKCS#11 login to token "${token}"`;
  switch (ckr) {
    case 'CKR_PIN_INCORRECT':
      return new DeviceCaError('config', `${where} failed: wrong PIN (CKR_PIN_INCORRECT); not retried, since repeated failures lock the token`, { cause: e });
    case 'CKR_PIN_LOCKED':
      return new DeviceCaError('config', `${where} failed: the user PIN is locked (CKR_PIN_LOCKED); the security officer must unlock it`, { cause: e });
    case 'CKR_PIN_EXPIRED':
      return new DeviceCaError('config', `${where} failed: the user PIN has expired (CKR_PIN_EXPIRED)`, { cause: e });
    case 'CKR_PIN_INVALID':
    case 'CKR_PIN_LEN_RANGE':
      return new DeviceCaError('config', `${where} failed: the PIN has characters or a length the token does not accept (${ckr})`, { cause: e });
    case 'CKR_USER_PIN_NOT_INITIALIZED':
      return new DeviceCaError('config', `${where} failed: the user PIN was never set (CKR_USER_PIN_NOT_INITIALIZED)`, { cause: e });
    case 'CKR_TOKEN_NOT_RECOGNIZED':
      return uninitializedTokenError(token, e);
    default:
      return new DeviceCaError('key-backend', `${where} failed (${ckr ?? 'unknown error'})`, { cause: e, detail: errorText(e) });
  }
}

const LOGIN_FAILURES = new Set(['CKR_PIN_INCORRECT', 'CKR_PIN_INVALID', 'CKR_PIN_LOCKED', 'CKR_PIN_EXPIRED', 'CKR_PIN_LEN_RANGE', 'CKR_USER_PIN_NOT_INITIALIZED']);

/** isLoginFailure says a loginError came from the PIN itself: the session pool then never logs in again. */
export function isLoginFailure(e: unknown): boolean {
  if (!isDeviceCaError(e)) return false;
  const ckr = ckrOf(e.cause);
  return ckr !== undefined && LOGIN_FAILURES.has(ckr);
}

export function uninitializedTokenError(token: string, cause?: unknown): DeviceCaError {
  return new DeviceCaError('config', `PKCS#11 token ${token} is not initialized (CKR_TOKEN_NOT_RECOGNIZED); initialize it first, e.g. softhsm2-util --init-token`, { cause });
}

/** keyBackendError wraps any other PKCS#11 failure; the CKR name goes in the message, which holds no secret. */
export function keyBackendError(e: unknown, what: string): DeviceCaError {
  if (isDeviceCaError(e)) return e;
  const ckr = ckrOf(e);
  return new DeviceCaError('key-backend', `PKCS#11 ${what} failed (${ckr ?? 'unknown error'})`, { cause: e, detail: errorText(e) });
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
