import { ErrorCode } from '../../errors/device-ca-error';

/** FailInfo: the SCEP failure reasons (RFC 8894 §3.2.1.4.5); sent as the decimal PrintableString of FAIL_INFO_NUMBER. */
export type FailInfo = 'badAlg' | 'badMessageCheck' | 'badRequest' | 'badTime' | 'badCertId';

export const FAIL_INFO_NUMBER: Record<FailInfo, number> = { badAlg: 0, badMessageCheck: 1, badRequest: 2, badTime: 3, badCertId: 4 };

/**
 * SCEP_FAIL_INFO maps every DeviceCaError code to the failInfo of a signed CertRep FAILURE (RFC 8894
 * §3.3.2). null: a failure of ours (store, key backend, bug), answered with an HTTP 5xx so the client
 * retries, not with a FAILURE that tells it to give up. A message whose signature or digest does not
 * verify is badMessageCheck; an algorithm we do not take is badAlg; every refused enrollment (wrong or
 * spent secret, another device's CSR, a key the profile refuses) is badRequest, as RFC 8894 §3.3.2.2 gives
 * no finer reason and the failInfoText carries the RA's short message. A certificate or CRL that GetCert or
 * GetCRL cannot name ('not-found') is badCertId (§3.2.1.4.5: no certificate matches the criteria).
 */
export const SCEP_FAIL_INFO: Record<ErrorCode, FailInfo | null> = {
  'bad-request': 'badRequest',
  'bad-csr': 'badRequest',
  'bad-key': 'badRequest',
  'bad-algorithm': 'badAlg',
  'bad-signature': 'badMessageCheck',
  'too-large': 'badRequest',
  unauthenticated: 'badRequest',
  forbidden: 'badRequest',
  'rate-limited': 'badRequest',
  'not-found': 'badCertId',
  conflict: 'badRequest',
  'not-implemented': 'badRequest',
  config: null,
  'key-backend': null,
  'store-unavailable': null,
  'ca-unavailable': null,
  internal: null,
};
