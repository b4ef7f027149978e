import { randomBytes } from 'node:crypto';
import { DeviceCaError } from '../errors/device-ca-error';
import {
  activateCredentialCommand,
  createPrimaryCommand,
  EkTemplateName,
  ekTemplate,
  flushContextCommand,
  parseResponse,
  policySecretCommand,
  readTpm2b,
  startPolicySessionCommand,
  TPM_RH_ENDORSEMENT,
  TpmResponse,
} from './tpm-commands';
import { TpmTransport } from './tpm-transport';
import { TPM_ALG } from '../attestation/tpm/tpm-constants';

/**
 * RESUBMIT: response codes that mean "the command did not run, send it again" (TPM 2.0 Part 2 §6.6.3:
 * TPM_RC_RETRY, TPM_RC_TESTING, TPM_RC_YIELDED); ESYS resubmits on them too (swtpm answers the first
 * RSA decryption after start-up with TPM_RC_RETRY). MAX_SUBMISSIONS bounds it.
 */
const RESUBMIT = new Set([0x922, 0x90a, 0x908]);
const MAX_SUBMISSIONS = 5;

/** call sends a command, resubmitting it while the TPM answers RESUBMIT codes; parses the response. */
export async function call(t: TpmTransport, name: string, cmd: Buffer, handleCount: number): Promise<TpmResponse> {
  for (let i = 1; ; i++) {
    const rsp = await t.send(cmd);
    const rc = rsp.length >= 10 ? rsp.readUInt32BE(6) : 0;
    if (!RESUBMIT.has(rc) || i >= MAX_SUBMISSIONS) return parseResponse(name, rsp, handleCount);
  }
}

/** CredentialChallenge: what the CA's AK registration answered, TPM2B-encoded as the TPM takes them. */
export interface CredentialChallenge {
  credentialBlob: Buffer;
  secret: Buffer;
}

/**
 * activateCredentialOnce answers the CA's credential challenge over ONE TPM connection: the EK re-derived
 * from its TCG template (CreatePrimary; checked to be the EK whose public area `ekPublic` was registered),
 * a policy session satisfied with PolicySecret(endorsement), and TPM2_ActivateCredential of the AK at
 * `akHandle` with that session for the EK (an H-3 EK has userWithAuth: its empty password instead). Under /dev/tpmrm0 the resource manager would flush the
 * session between tpm2-tools runs; here it lives until ActivateCredential consumes it. The EK and the
 * session are flushed before returning, also on failure. Returns the recovered secret (certInfo).
 */
export async function activateCredentialOnce(t: TpmTransport, o: { akHandle: number; ekPublic: Buffer; challenge: CredentialChallenge }): Promise<Buffer> {
  const template = templateOf(o.ekPublic);
  const loaded: number[] = [];
  try {
    const created = await call(t, 'TPM2_CreatePrimary', createPrimaryCommand(TPM_RH_ENDORSEMENT, ekTemplate(template)), 1);
    const ek = created.handles[0];
    loaded.push(ek);
    const outPublic = readTpm2b('TPM2_CreatePrimary', 'outPublic', created.params, 0, true);
    if (!outPublic.equals(o.ekPublic)) {
      throw new DeviceCaError('key-backend', 'the EK this TPM derives from the TCG default template is not the EK that was registered (a TPM with a non-default EK template?)');
    }
    if (template === 'ecc384') {
      const activate = activateCredentialCommand(o.akHandle, ek, 'password', o.challenge.credentialBlob, o.challenge.secret);
      return readTpm2b('TPM2_ActivateCredential', 'certInfo', (await call(t, 'TPM2_ActivateCredential', activate, 0)).params, 0);
    }
    const started = await call(t, 'TPM2_StartAuthSession', startPolicySessionCommand(randomBytes(32)), 1);
    const session = started.handles[0];
    loaded.push(session);
    await call(t, 'TPM2_PolicySecret', policySecretCommand(TPM_RH_ENDORSEMENT, session), 0);
    const activate = activateCredentialCommand(o.akHandle, ek, { handle: session, nonceCaller: randomBytes(32) }, o.challenge.credentialBlob, o.challenge.secret);
    const activated = await call(t, 'TPM2_ActivateCredential', activate, 0);
    loaded.pop(); // the session: continueSession was clear, the TPM flushed it with the command
    return readTpm2b('TPM2_ActivateCredential', 'certInfo', activated.params, 0);
  } finally {
    for (const h of loaded.reverse()) {
      try {
        await t.send(flushContextCommand(h));
      } catch {
        // best effort: a connection that failed is closed by the caller, and the resource manager or a TPM restart frees it
      }
    }
  }
}

/** templateOf: which TCG default template made the registered EK (TPM2B_PUBLIC: type at 2, nameAlg at 4), or a typed error. */
export function templateOf(ekPublic: Buffer): EkTemplateName {
  const type = ekPublic.length >= 6 ? ekPublic.readUInt16BE(2) : -1;
  const nameAlg = ekPublic.length >= 6 ? ekPublic.readUInt16BE(4) : -1;
  if (type === TPM_ALG.RSA && nameAlg === TPM_ALG.SHA256) return 'rsa';
  if (type === TPM_ALG.ECC && nameAlg === TPM_ALG.SHA256) return 'ecc';
  if (type === TPM_ALG.ECC && nameAlg === TPM_ALG.SHA384) return 'ecc384';
  throw new DeviceCaError('bad-request', 'the EK public area is not one of the TCG default EK templates L-1 (RSA 2048), L-2 (ECC P-256) or H-3 (ECC P-384)');
}
