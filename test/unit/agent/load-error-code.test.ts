import { LOAD_ERROR, loadErrorOf } from '../../../src/agent/load-error-code';
import { DeviceCaError, ErrorCode } from '../../../src/errors/device-ca-error';

/**
 * Which RFC 4108 §4 error code the agent reports for each refusal of a release (agent/load-error-code.ts),
 * with the messages cms/firmware-release-verify.ts and agent-update.ts refuse with, and the numbers of the
 * RFC's ASN.1 module.
 */
const cases: [ErrorCode, string, string, number][] = [
  ['bad-signature', 'sensor-fw: refused: the release is not counter-signed by the firmware signer CA', 'signatureFailure', 15],
  ['bad-algorithm', 'sensor-fw: refused: the release is encrypted by ECDH to this device, and its TPM key at 0x81018011 is sign-only (no decrypt attribute)', 'noDecryptKey', 22],
  ['bad-algorithm', 'sensor-fw: refused: signature algorithm 1.2.3 is not accepted', 'badSignatureAlgorithm', 13],
  ['forbidden', 'sensor-fw: refused: the package is for other hardware (1.3.6.1.4.1.99999.1.1)', 'wrongHardware', 27],
  ['forbidden', 'sensor-fw: refused: version 1 is below the installed version 2 (anti-rollback, RFC 4108)', 'stalePackage', 28],
  ['forbidden', 'sensor-fw: refused: version 2 is not above the installed version 2 (anti-rollback)', 'stalePackage', 28],
  ['forbidden', 'sensor-fw: refused: the release lacks approvals of administrator', 'notAuthorized', 11],
  ['forbidden', 'sensor-fw: refused: an approval is signed by CN=x, not a certificate of the firmware signer CA', 'notAuthorized', 11],
  ['forbidden', 'sensor-fw: refused: the server sent a release of "other-fw"', 'otherError', 99],
  ['bad-request', 'sensor-fw: refused: the release cannot be read (truncated)', 'decodeFailure', 1],
  ['internal', 'sensor-fw: refused: something else', 'otherError', 99],
];

it.each(cases)('%s "%s" -> %s (%d)', (code, message, name, number) => {
  const got = loadErrorOf(new DeviceCaError(code, message));
  expect([got, LOAD_ERROR[got]]).toEqual([name, number]);
});
