import { OcspErrorStatus } from '../../ca/ocsp-codec';
import { ErrorCode } from '../../errors/device-ca-error';

/**
 * OCSP_ERROR_STATUS maps every DeviceCaError code to the OCSPResponseStatus an OCSP client receives
 * (RFC 6960 §2.3, §4.2.1): an OCSP error is an OCSPResponse without responseBytes inside an HTTP 200, never
 * an HTTP error status. Input the responder cannot read is malformedRequest. A CertID of a CA this
 * responder does not serve is unauthorized, as RFC 5019 §2.2.3 asks of a responder without the answer.
 * tryLater ("temporarily unable to respond") is for a key store, a store that cannot be read, or a limit that will clear by itself, so a
 * relying party retries instead of treating the certificate as failed. Every other failure is internalError.
 */
export const OCSP_ERROR_STATUS: Record<ErrorCode, Exclude<OcspErrorStatus, 'sigRequired'>> = {
  'bad-request': 'malformedRequest',
  'bad-csr': 'malformedRequest',
  'bad-key': 'malformedRequest',
  'bad-algorithm': 'malformedRequest',
  'bad-signature': 'malformedRequest',
  'too-large': 'malformedRequest',
  'not-implemented': 'malformedRequest',
  unauthenticated: 'unauthorized',
  forbidden: 'unauthorized',
  'not-found': 'unauthorized',
  'rate-limited': 'tryLater',
  'key-backend': 'tryLater',
  'store-unavailable': 'tryLater',
  'ca-unavailable': 'tryLater',
  conflict: 'internalError',
  config: 'internalError',
  internal: 'internalError',
};

/** OCSP_ERROR_OUTCOME: the metrics label of each error status (device_ca_ocsp_responses_total{outcome}) */
export const OCSP_ERROR_OUTCOME: Record<Exclude<OcspErrorStatus, 'sigRequired'>, string> = {
  malformedRequest: 'malformed',
  unauthorized: 'unauthorized',
  tryLater: 'try-later',
  internalError: 'error',
};
