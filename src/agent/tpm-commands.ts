import { TPM_ALG, TPM_ECC_CURVE } from '../attestation/tpm/tpm-constants';
import { DeviceCaError } from '../errors/device-ca-error';
import { tpmResponseError } from './tpm-tool-error';

/**
 * tpm-commands: the few TPM 2.0 commands the agent marshals itself, for the steps that must share one
 * connection (tpm-credential-session.ts): the EK re-derived as a primary key, a policy session, the EK's
 * policy (PolicySecret with the endorsement hierarchy) and TPM2_ActivateCredential. Byte layouts from
 * TPM 2.0 Part 3 (commands) and Part 2 (structures); sessions from Part 1 §19. Under the TCTIs the agent
 * speaks, the AK is made here too (Create, Load, EvictControl under the EK derived once, tpm-credential-session.ts).
 */

/** TPM_ST: command tags (Part 2 §6.9). */
const TPM_ST_NO_SESSIONS = 0x8001;
const TPM_ST_SESSIONS = 0x8002;
/** TPM_CC: command codes (Part 2 §6.5.2). */
export const TPM_CC = {
  EvictControl: 0x120,
  CreatePrimary: 0x131,
  ActivateCredential: 0x147,
  PolicySecret: 0x151,
  Create: 0x153,
  Load: 0x157,
  FlushContext: 0x165,
  StartAuthSession: 0x176,
} as const;
/** TPM_RH / TPM_RS: permanent handles (Part 2 §7.4): the endorsement hierarchy, "no key", the password session. */
export const TPM_RH_ENDORSEMENT = 0x4000000b;
export const TPM_RH_OWNER = 0x40000001;
const TPM_RH_NULL = 0x40000007;
const TPM_RS_PW = 0x40000009;
/** TPM_SE_POLICY: a policy session (Part 2 §6.11). */
const TPM_SE_POLICY = 0x01;

/**
 * EK_POLICY_SHA256: the authPolicy of the TCG default EK templates, PolicySecret(TPM_RH_ENDORSEMENT)
 * with SHA-256 (TCG EK Credential Profile 2.0 §B.3.2): using the EK needs the endorsement hierarchy's auth.
 */
const EK_POLICY_SHA256 = Buffer.from('837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa', 'hex');
/** EK_ATTRIBUTES: fixedTPM, fixedParent, sensitiveDataOrigin, adminWithPolicy, restricted, decrypt (0x000300b2). */
const EK_ATTRIBUTES = 0x000300b2;
/**
 * EK_POLICY_B_SHA384, EK_ATTRIBUTES_HIGH: the high-range template H-3 (same profile, §B.4.5): PolicyB
 * with SHA-384 and userWithAuth added (0x000300f2), so its empty authValue alone authorizes the USER role.
 */
const EK_POLICY_B_SHA384 = Buffer.from('b26e7d28d11a50bc53d882bcf5fd3a1a074148bb35d3b4e4cb1c0ad9bde419cacb47ba09699646150f9fc000f3f80e12', 'hex');
const EK_ATTRIBUTES_HIGH = 0x000300f2;

/** EkTemplateName: the TCG default EK templates the agent re-derives: L-1 RSA 2048, L-2 ECC P-256, H-3 ECC P-384. */
export type EkTemplateName = 'rsa' | 'ecc' | 'ecc384';

/**
 * ekTemplate: TPMT_PUBLIC of the TCG default EK template L-1 (RSA 2048) or L-2 (ECC NIST P-256)
 * (TCG EK Credential Profile 2.0 §B.3.3, §B.3.4: AES-128-CFB storage key, unique all zeros) or H-3 (ECC
 * NIST P-384, §B.4.5: AES-256-CFB, SHA-384, empty unique). It is what tpm2_createek -G rsa|ecc|ecc384
 * creates, so CreatePrimary with it re-derives the same EK from the endorsement seed.
 */
export function ekTemplate(type: EkTemplateName): Buffer {
  if (type === 'ecc384') {
    return Buffer.concat([
      ...[u16(TPM_ALG.ECC), u16(TPM_ALG.SHA384), u32(EK_ATTRIBUTES_HIGH), tpm2b(EK_POLICY_B_SHA384)],
      ...[u16(TPM_ALG.AES), u16(256), u16(TPM_ALG.CFB), u16(TPM_ALG.NULL), u16(TPM_ECC_CURVE.NIST_P384), u16(TPM_ALG.NULL), u16(0), u16(0)],
    ]);
  }
  const head = Buffer.concat([u16(type === 'rsa' ? TPM_ALG.RSA : TPM_ALG.ECC), u16(TPM_ALG.SHA256), u32(EK_ATTRIBUTES), tpm2b(EK_POLICY_SHA256)]);
  const symmetric = Buffer.concat([u16(TPM_ALG.AES), u16(128), u16(TPM_ALG.CFB)]);
  if (type === 'rsa') return Buffer.concat([head, symmetric, u16(TPM_ALG.NULL), u16(2048), u32(0), tpm2b(Buffer.alloc(256))]);
  return Buffer.concat([head, symmetric, u16(TPM_ALG.NULL), u16(TPM_ECC_CURVE.NIST_P256), u16(TPM_ALG.NULL), tpm2b(Buffer.alloc(32)), tpm2b(Buffer.alloc(32))]);
}

/**
 * AK_ATTRIBUTES: fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, restricted, sign (0x00050072):
 * what tpm2_createak sets and what the CA's AK check asks for (a restricted signing key bound to this TPM).
 */
const AK_ATTRIBUTES = 0x00050072;

/**
 * akTemplate: TPMT_PUBLIC of the agent's AK, the key tpm2_createak -G rsa -g sha256 -s rsassa makes: RSA
 * 2048, RSASSA with SHA-256, no symmetric algorithm (a signing key), empty authPolicy and unique.
 */
export function akTemplate(): Buffer {
  return Buffer.concat([...[u16(TPM_ALG.RSA), u16(TPM_ALG.SHA256), u32(AK_ATTRIBUTES), u16(0)], ...[u16(TPM_ALG.NULL), u16(TPM_ALG.RSASSA), u16(TPM_ALG.SHA256), u16(2048), u32(0), u16(0)]]);
}

/** passwordSession: a TPMS_AUTH_COMMAND for an empty authValue (Part 1 §19.8.4): TPM_RS_PW, empty nonce, attributes 0, empty hmac. */
const passwordSession = (): Buffer => Buffer.concat([u32(TPM_RS_PW), u16(0), Buffer.from([0]), u16(0)]);

/**
 * policySessionAuth: a TPMS_AUTH_COMMAND for a policy session whose policy needs no authValue (PolicySecret
 * alone): the HMAC is empty (Part 1 §19.6.14), continueSession clear so the TPM flushes it after the command.
 */
const policySessionAuth = (session: number, nonceCaller: Buffer): Buffer => Buffer.concat([u32(session), tpm2b(nonceCaller), Buffer.from([0]), u16(0)]);

/** command: header (tag, size, code), handles, the authorization area if any sessions, parameters (Part 1 §18). */
function command(cc: number, handles: number[], sessions: Buffer[] | undefined, params: Buffer): Buffer {
  const auth = sessions ? Buffer.concat([u32(sessions.reduce((n, s) => n + s.length, 0)), ...sessions]) : Buffer.alloc(0);
  const body = Buffer.concat([...handles.map(u32), auth, params]);
  return Buffer.concat([u16(sessions ? TPM_ST_SESSIONS : TPM_ST_NO_SESSIONS), u32(10 + body.length), u32(cc), body]);
}

/** createPrimaryCommand: TPM2_CreatePrimary (Part 3 §24.1) under `hierarchy` with an empty authValue and no creation PCRs. */
export function createPrimaryCommand(hierarchy: number, tpmtPublic: Buffer): Buffer {
  const inSensitive = tpm2b(Buffer.concat([u16(0), u16(0)])); // TPMS_SENSITIVE_CREATE: empty userAuth, empty data
  return command(TPM_CC.CreatePrimary, [hierarchy], [passwordSession()], Buffer.concat([inSensitive, tpm2b(tpmtPublic), u16(0), u32(0)]));
}

/** startPolicySessionCommand: TPM2_StartAuthSession (Part 3 §11.1): unbound, unsalted, SHA-256 policy session, no parameter encryption. */
export function startPolicySessionCommand(nonceCaller: Buffer): Buffer {
  const params = Buffer.concat([tpm2b(nonceCaller), u16(0), Buffer.from([TPM_SE_POLICY]), u16(TPM_ALG.NULL), u16(TPM_ALG.SHA256)]);
  return command(TPM_CC.StartAuthSession, [TPM_RH_NULL, TPM_RH_NULL], undefined, params);
}

/** policySecretCommand: TPM2_PolicySecret (Part 3 §23.4) with `authHandle`'s (empty) password: no nonce, cpHash, policyRef or expiration. */
export function policySecretCommand(authHandle: number, session: number): Buffer {
  return command(TPM_CC.PolicySecret, [authHandle, session], [passwordSession()], Buffer.concat([u16(0), u16(0), u16(0), u32(0)]));
}

/**
 * activateCredentialCommand: TPM2_ActivateCredential (Part 3 §12.5): the AK (ADMIN role: its empty
 * password, it has no adminWithPolicy) and the EK (USER role: the policy session `ekSession`, or its empty
 * password when the template has userWithAuth, H-3). `credentialBlob` and `secret` are the
 * TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET as the CA sent them (size included).
 */
export function activateCredentialCommand(akHandle: number, ekHandle: number, ekSession: EkAuth, credentialBlob: Buffer, secret: Buffer): Buffer {
  return command(TPM_CC.ActivateCredential, [akHandle, ekHandle], [passwordSession(), ekAuthArea(ekSession)], Buffer.concat([credentialBlob, secret]));
}

/** EkAuth: how a command authorizes the EK's USER role: a satisfied PolicySecret session, or (H-3, userWithAuth) its empty password. */
export type EkAuth = { handle: number; nonceCaller: Buffer } | 'password';
const ekAuthArea = (a: EkAuth): Buffer => (a === 'password' ? passwordSession() : policySessionAuth(a.handle, a.nonceCaller));

/**
 * createCommand: TPM2_Create (Part 3 §12.1) of a child of `parent` (the EK, authorized by `parentAuth`)
 * from `tpmtPublic`, with an empty authValue, no outsideInfo and no creation PCRs.
 */
export function createCommand(parent: number, parentAuth: EkAuth, tpmtPublic: Buffer): Buffer {
  const inSensitive = tpm2b(Buffer.concat([u16(0), u16(0)]));
  return command(TPM_CC.Create, [parent], [ekAuthArea(parentAuth)], Buffer.concat([inSensitive, tpm2b(tpmtPublic), u16(0), u32(0)]));
}

/** loadCommand: TPM2_Load (Part 3 §12.2) of `inPrivate` and `inPublic` (TPM2B, size included, as TPM2_Create returned them) under `parent`. */
export function loadCommand(parent: number, parentAuth: EkAuth, inPrivate: Buffer, inPublic: Buffer): Buffer {
  return command(TPM_CC.Load, [parent], [ekAuthArea(parentAuth)], Buffer.concat([inPrivate, inPublic]));
}

/** evictControlCommand: TPM2_EvictControl (Part 3 §28.5) by the owner (empty password): `object` made persistent at `persistentHandle`. */
export function evictControlCommand(object: number, persistentHandle: number): Buffer {
  return command(TPM_CC.EvictControl, [TPM_RH_OWNER, object], [passwordSession()], u32(persistentHandle));
}

/** flushContextCommand: TPM2_FlushContext (Part 3 §28.4); the handle is a parameter, not in the handle area. */
export function flushContextCommand(handle: number): Buffer {
  return command(TPM_CC.FlushContext, [], undefined, u32(handle));
}

/**
 * TpmResponse: a response checked against its header (Part 1 §18.8): the handles the command returns
 * and its parameter area (for TPM_ST_SESSIONS, without the parameterSize and the auth area after it).
 */
export interface TpmResponse {
  handles: number[];
  params: Buffer;
}

/**
 * parseResponse checks a response: a short one, a size field that disagrees with the bytes, an unknown
 * tag or a parameter size past the end is a 'key-backend' error naming the command; a non-zero response
 * code goes through tpmResponseError (lockout explained).
 */
export function parseResponse(name: string, rsp: Buffer, handleCount: number): TpmResponse {
  if (rsp.length < 10) throw new DeviceCaError('key-backend', `${name}: short response from the TPM (${rsp.length} bytes)`);
  const tag = rsp.readUInt16BE(0);
  const size = rsp.readUInt32BE(2);
  if (size !== rsp.length) throw new DeviceCaError('key-backend', `${name}: response size field ${size} but ${rsp.length} bytes`);
  if (tag !== TPM_ST_SESSIONS && tag !== TPM_ST_NO_SESSIONS) throw new DeviceCaError('key-backend', `${name}: response tag 0x${tag.toString(16)} is not a TPM 2.0 response`);
  const rc = rsp.readUInt32BE(6);
  if (rc !== 0) throw tpmResponseError(name, rc);
  let off = 10;
  if (rsp.length < off + 4 * handleCount) throw new DeviceCaError('key-backend', `${name}: truncated response (handles)`);
  const handles: number[] = [];
  for (let i = 0; i < handleCount; i++, off += 4) handles.push(rsp.readUInt32BE(off));
  if (tag === TPM_ST_NO_SESSIONS) return { handles, params: Buffer.from(rsp.subarray(off)) };
  if (rsp.length < off + 4) throw new DeviceCaError('key-backend', `${name}: truncated response (parameter size)`);
  const paramSize = rsp.readUInt32BE(off);
  if (off + 4 + paramSize > rsp.length) throw new DeviceCaError('key-backend', `${name}: truncated response (parameters)`);
  return { handles, params: Buffer.from(rsp.subarray(off + 4, off + 4 + paramSize)) };
}

/** readTpm2b: the TPM2B at `off` of a response's parameters (the size included when `withSize`), or a typed error. */
export function readTpm2b(name: string, what: string, params: Buffer, off: number, withSize = false): Buffer {
  if (params.length < off + 2) throw new DeviceCaError('key-backend', `${name}: truncated ${what}`);
  const n = params.readUInt16BE(off);
  if (params.length < off + 2 + n) throw new DeviceCaError('key-backend', `${name}: truncated ${what}`);
  return Buffer.from(params.subarray(withSize ? off : off + 2, off + 2 + n));
}

export const u16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n, 0);
  return b;
};
export const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
};
const tpm2b = (b: Buffer): Buffer => Buffer.concat([u16(b.length), b]);
