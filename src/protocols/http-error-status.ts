import { ErrorCode } from '../errors/device-ca-error';

/**
 * HTTP_ERROR_STATUS maps every DeviceCaError code to an HTTP status, for the protocols that answer in HTTP
 * statuses (EST, RFC 7030 §4.2.3, the admin API, CRLs); sendHttpError (http-error-reply.ts) writes the reply.
 * A manual-approval wait is not an error: the RA returns it as an outcome and EST answers 202 + Retry-After.
 * SCEP and OCSP carry errors inside their own messages (failInfo, OCSPResponseStatus) and have their own maps.
 */
export const HTTP_ERROR_STATUS: Record<ErrorCode, number> = {
  'bad-request': 400,
  'bad-csr': 400,
  'bad-key': 400,
  'bad-algorithm': 400,
  'bad-signature': 400,
  'too-large': 413,
  unauthenticated: 401,
  forbidden: 403,
  'rate-limited': 429,
  'not-found': 404,
  conflict: 409,
  'not-implemented': 501,
  config: 500,
  'key-backend': 503,
  'store-unavailable': 503,
  'ca-unavailable': 503,
  internal: 500,
};
