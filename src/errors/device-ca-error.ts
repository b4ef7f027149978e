/**
 * DeviceCaError is the one error class of device-ca. Its `code` is a stable union that every protocol
 * maps to its own reply in one file (HTTP: protocols/http-error-status.ts, OCSP:
 * protocols/ocsp/ocsp-error-map.ts). `message` is short, safe to show a client, and never contains key
 * material or internal detail; `detail` may, and is only logged.
 */
export type ErrorCode =
  | 'bad-request' // malformed input: bad base64, bad DER, wrong content type
  | 'bad-csr' // CSR parses but is unacceptable (bad signature, missing fields)
  | 'bad-key' // key algorithm or size not allowed by policy
  | 'bad-algorithm' // a signed or encrypted message (CMS) uses an algorithm device-ca does not accept
  | 'bad-signature' // a signed message (CMS) whose signature or message digest does not verify
  | 'too-large' // body or field over its size limit
  | 'unauthenticated' // no or wrong credentials
  | 'forbidden' // authenticated, but not allowed (another device's cert, revoked, retired)
  | 'rate-limited' // too many failed authentications
  | 'not-found' // unknown label, device, serial
  | 'conflict' // already exists, illegal state transition
  | 'not-implemented'
  | 'config' // bad configuration, detected at start-up
  | 'key-backend' // key store unavailable or failing
  | 'store-unavailable' // the store cannot be read or written (disk full, I/O error, corrupt file, locked too long)
  | 'ca-unavailable' // the CA cannot issue until an operator acts (its issuing CA is revoked or expired: `ca rollover`)
  | 'internal';

export class DeviceCaError extends Error {
  /** retryAfterSeconds: when to come back, for 'rate-limited', 'key-backend', 'store-unavailable' and 'ca-unavailable'; adapters send it as Retry-After. */
  readonly retryAfterSeconds?: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    opts: { detail?: string; retryAfterSeconds?: number; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'DeviceCaError';
    this.detail = opts.detail;
    this.retryAfterSeconds = opts.retryAfterSeconds;
  }
  readonly detail?: string;
}

/** isDeviceCaError narrows unknown throwables at protocol boundaries. */
export function isDeviceCaError(e: unknown): e is DeviceCaError {
  return e instanceof DeviceCaError;
}

/** toDeviceCaError wraps anything else as 'internal' so nothing unexpected leaks to a client. */
export function toDeviceCaError(e: unknown): DeviceCaError {
  if (isDeviceCaError(e)) return e;
  return new DeviceCaError('internal', 'internal error', { detail: e instanceof Error ? e.message : String(e), cause: e });
}
