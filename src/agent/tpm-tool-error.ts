import { DeviceCaError } from '../errors/device-ca-error';

/** TPM_RC_LOCKOUT: TPM 2.0 Part 2 §6.6.3, RC_WARN + 0x021: the TPM refuses DA-protected authorizations. */
export const TPM_RC_LOCKOUT = 0x921;

/**
 * tpmToolError turns a failed tpm2-tools run (its stderr) into a message a device operator can act on:
 * a TPM that cannot be reached names the TCTI it tried (TPM2TOOLS_TCTI), a TPM in dictionary-attack
 * lockout says how to clear it, anything else keeps the tool's last "ERROR:" lines. The tools print
 * TPM response codes as "(0x...)" after the ESYS call that failed (tpm2-tools 5.4).
 */
export function tpmToolError(tool: string, stderr: string, tcti: string): DeviceCaError {
  if (/Could not load tcti|Failed to instantiate TCTI/.test(stderr)) {
    return new DeviceCaError('key-backend', `TPM unreachable through TCTI "${tcti}" (set TPM2TOOLS_TCTI, e.g. device:/dev/tpmrm0): ${tool} could not connect`, { detail: stderr });
  }
  if (responseCodes(stderr).includes(TPM_RC_LOCKOUT) || /DA lockout mode/.test(stderr)) {
    return new DeviceCaError(
      'key-backend',
      `the TPM is in dictionary-attack lockout (TPM_RC_LOCKOUT from ${tool}): wait for its recovery time (tpm2_getcap properties-variable: TPM2_PT_LOCKOUT_RECOVERY) or clear it with the lockout authorization: tpm2_dictionarylockout --clear-lockout -p <lockout auth>`,
      { detail: stderr },
    );
  }
  const errors = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('ERROR: '))
    .map((l) => l.slice('ERROR: '.length));
  const why = errors.length ? errors.join('; ') : stderr.trim().split('\n').pop() || 'no message';
  return new DeviceCaError('key-backend', `${tool} failed: ${why}`, { detail: stderr });
}

/** responseCodes: every "ErrorCode (0x...)" or "(0x...)" TPM response code a tool printed. */
function responseCodes(stderr: string): number[] {
  return [...stderr.matchAll(/\(0x([0-9a-fA-F]{1,8})\)/g)].map((m) => parseInt(m[1], 16));
}

/** tpmResponseError: a TPM response code from a command the agent marshalled itself (tpm2_send), as a message. */
export function tpmResponseError(command: string, rc: number): DeviceCaError {
  if (rc === TPM_RC_LOCKOUT) return tpmToolError(command, `(0x${rc.toString(16)})`, '');
  return new DeviceCaError('key-backend', `${command} failed: TPM response code 0x${rc.toString(16)}`);
}
