import { ErrorCode } from '../../errors/device-ca-error';

/** ADMIN_STATUS maps DeviceCaError codes to admin API HTTP statuses. */
export const ADMIN_STATUS: Record<ErrorCode, number> = {
  'bad-request': 400,
  'bad-csr': 400,
  'bad-key': 400,
  'too-large': 413,
  unauthenticated: 401,
  forbidden: 403,
  'rate-limited': 429,
  'not-found': 404,
  conflict: 409,
  pending: 202,
  'not-implemented': 501,
  config: 500,
  'key-backend': 503,
  internal: 500,
};
