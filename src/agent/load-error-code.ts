import { DeviceCaError } from '../errors/device-ca-error';

/**
 * LOAD_ERROR: the RFC 4108 §4 FirmwarePackageLoadErrorCode values the agent reports when it refuses a
 * release (the ones a refusal can mean; the ASN.1 module lists the rest).
 */
export const LOAD_ERROR = {
  decodeFailure: 1,
  notAuthorized: 11,
  badSignatureAlgorithm: 13,
  signatureFailure: 15,
  noDecryptKey: 22,
  wrongHardware: 27,
  stalePackage: 28,
  otherError: 99,
} as const;

export type LoadErrorName = keyof typeof LOAD_ERROR;

/**
 * loadErrorOf: the RFC 4108 §4 error code that says why the agent refused a release, from the refusal
 * (cms/firmware-release-verify.ts and agent-update.ts name the failed check in the error code and message):
 * a signature that does not verify is signatureFailure; a key that cannot decrypt noDecryptKey; a package
 * for other hardware wrongHardware (§2.2.4, §2.2.5); a version not above the installed one stalePackage
 * (anti-rollback); a missing approval, role or signer certificate notAuthorized; bytes that cannot be read
 * decodeFailure; anything else otherError.
 */
export function loadErrorOf(e: DeviceCaError): LoadErrorName {
  switch (e.code) {
    case 'bad-signature':
      return 'signatureFailure';
    case 'bad-algorithm':
      return /decrypt/i.test(e.message) ? 'noDecryptKey' : 'badSignatureAlgorithm';
    case 'forbidden':
      if (/other hardware/.test(e.message)) return 'wrongHardware';
      if (/anti-rollback/.test(e.message)) return 'stalePackage';
      if (/sent a release of/.test(e.message)) return 'otherError';
      return 'notAuthorized';
    case 'bad-request':
      return 'decodeFailure';
    default:
      return 'otherError';
  }
}
