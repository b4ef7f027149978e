import { ErrorCode } from '../../errors/device-ca-error';

/** EST_STATUS maps every DeviceCaError code to the HTTP status an EST client gets (RFC 7030 §4.2.3). */
export const EST_STATUS: Record<ErrorCode, number> = {
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
