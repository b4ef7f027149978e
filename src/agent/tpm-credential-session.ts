import { randomBytes } from 'node:crypto';
import { DeviceCaError } from '../errors/device-ca-error';
import {
  activateCredentialCommand,
  akTemplate,
  createCommand,
  createPrimaryCommand,
  EkAuth,
  EkTemplateName,
  evictControlCommand,
  loadCommand,
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
 * then EkSession.activateCredential. For a caller that did not keep the EK it derived (under tabrmd
 * tpm2-tools made it); agent enroll holds one EkSession from AK creation to activation instead.
 * The EK and the session are flushed before returning, also on failure. Returns the recovered secret (certInfo).
 */
export async function activateCredentialOnce(t: TpmTransport, o: { akHandle: number; ekPublic: Buffer; challenge: CredentialChallenge }): Promise<Buffer> {
  const ek = await EkSession.start(t, templateOf(o.ekPublic));
  try {
    if (!ek.ekPublic.equals(o.ekPublic)) {
      throw new DeviceCaError('key-backend', 'the EK this TPM derives from the TCG default template is not the EK that was registered (a TPM with a non-default EK template?)');
    }
    return await ek.activateCredential(o.akHandle, o.challenge);
  } finally {
    await ek.flush();
  }
}

/**
 * EkSession: the EK derived ONCE from its TCG default template (TPM2_CreatePrimary, the slow step: an RSA
 * EK is a prime search on a real TPM) and kept loaded on one TPM connection for everything that needs it:
 * the AK made under it (createAk) and the credential activation (activateCredential). Under /dev/tpmrm0 the
 * resource manager keeps it while the connection is open and flushes it when it closes; without one,
 * flush() (or close()) frees it. Each use of the EK's USER role gets a fresh PolicySecret(endorsement)
 * policy session (TCG EK Credential Profile 2.0 §B.3.2), consumed by the command (continueSession clear),
 * flushed if the command failed; an H-3 EK (userWithAuth) uses its empty password instead.
 */
export class EkSession {
  private loaded = true;
  private constructor(
    private readonly t: TpmTransport,
    /** ek: the EK's transient handle */
    readonly ek: number,
    /** ekPublic: the EK's TPM2B_PUBLIC as CreatePrimary returned it (what AK registration sends) */
    readonly ekPublic: Buffer,
    private readonly template: EkTemplateName,
  ) {}

  /** start derives the EK of `template` on `t`; the transport stays the caller's until close(). */
  static async start(t: TpmTransport, template: EkTemplateName): Promise<EkSession> {
    const created = await call(t, 'TPM2_CreatePrimary', createPrimaryCommand(TPM_RH_ENDORSEMENT, ekTemplate(template)), 1);
    const ek = created.handles[0];
    let ekPublic: Buffer;
    try {
      ekPublic = readTpm2b('TPM2_CreatePrimary', 'outPublic', created.params, 0, true);
    } catch (e) {
      await flushQuietly(t, ek);
      throw e;
    }
    return new EkSession(t, ek, ekPublic, template);
  }

  /**
   * createAk makes the agent's AK (akTemplate: what tpm2_createak -G rsa -g sha256 -s rsassa makes) under
   * the EK (TPM2_Create, TPM2_Load) and makes it persistent at `handle` (TPM2_EvictControl; the handle must
   * be free); the transient copy is flushed. Returns the AK's TPM2B_PUBLIC for the registration.
   */
  async createAk(handle: number): Promise<Buffer> {
    const created = await this.withEkAuth((auth) => call(this.t, 'TPM2_Create', createCommand(this.ek, auth, akTemplate()), 0));
    const outPrivate = readTpm2b('TPM2_Create', 'outPrivate', created.params, 0, true);
    const outPublic = readTpm2b('TPM2_Create', 'outPublic', created.params, outPrivate.length, true);
    const ak = (await this.withEkAuth((auth) => call(this.t, 'TPM2_Load', loadCommand(this.ek, auth, outPrivate, outPublic), 1))).handles[0];
    try {
      await call(this.t, 'TPM2_EvictControl', evictControlCommand(ak, handle), 0);
    } finally {
      await flushQuietly(this.t, ak);
    }
    return outPublic;
  }

  /** activateCredential: TPM2_ActivateCredential of the CA's challenge with the AK at `akHandle` and this EK; the recovered secret (certInfo). */
  async activateCredential(akHandle: number, challenge: CredentialChallenge): Promise<Buffer> {
    const activated = await this.withEkAuth((auth) => call(this.t, 'TPM2_ActivateCredential', activateCredentialCommand(akHandle, this.ek, auth, challenge.credentialBlob, challenge.secret), 0));
    return readTpm2b('TPM2_ActivateCredential', 'certInfo', activated.params, 0);
  }

  /** flush frees the EK (best effort, once). */
  async flush(): Promise<void> {
    if (!this.loaded) return;
    this.loaded = false;
    await flushQuietly(this.t, this.ek);
  }

  /** close frees the EK and closes the connection. */
  async close(): Promise<void> {
    try {
      await this.flush();
    } finally {
      await this.t.close();
    }
  }

  /** withEkAuth runs one command that uses the EK's USER role, with a fresh satisfied policy session (H-3: the password). */
  private async withEkAuth<T>(use: (auth: EkAuth) => Promise<T>): Promise<T> {
    if (this.template === 'ecc384') return use('password');
    const session = (await call(this.t, 'TPM2_StartAuthSession', startPolicySessionCommand(randomBytes(32)), 1)).handles[0];
    try {
      await call(this.t, 'TPM2_PolicySecret', policySecretCommand(TPM_RH_ENDORSEMENT, session), 0);
      // continueSession is clear: the TPM flushes the session with a command that succeeds
      return await use({ handle: session, nonceCaller: randomBytes(32) });
    } catch (e) {
      await flushQuietly(this.t, session);
      throw e;
    }
  }
}

/** flushQuietly: TPM2_FlushContext, best effort: a connection that failed is closed by the caller, and the resource manager or a TPM restart frees it. */
async function flushQuietly(t: TpmTransport, handle: number): Promise<void> {
  try {
    await t.send(flushContextCommand(handle));
  } catch {
    // best effort (see above)
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
