import { DeviceCaError } from '../errors/device-ca-error';
import { call } from './tpm-credential-session';
import { tpmResponseError } from './tpm-tool-error';
import { TpmTransport } from './tpm-transport';

/** TPM_CC_Certify, TPM_ST_SESSIONS, TPM_RS_PW, TPM_ALG_NULL: TPM 2.0 Part 2 §6.5, §6.9, §7.6, §6.3. */
const TPM_CC_CERTIFY = 0x148;
const TPM_ST_SESSIONS = 0x8002;
const TPM_RS_PW = 0x40000009;
const TPM_ALG_NULL = 0x0010;

/**
 * certifyCommand marshals TPM2_Certify (TPM 2.0 Part 3 §18.2) of `keyHandle` by `akHandle` with
 * qualifyingData = `nonce`. The agent sends these bytes itself (certifyOnce, or tpm2_send under tabrmd) because tpm2-tools 5.4
 * `tpm2_certify` has no option for qualifyingData, and the CA's nonce must ride there. Both objects are
 * persistent handles with an empty authValue: two password sessions (Part 1 §19.6.8). inScheme NULL
 * lets the AK's own scheme sign.
 */
export function certifyCommand(keyHandle: number, akHandle: number, nonce: Buffer): Buffer {
  if (nonce.length > 64) throw new DeviceCaError('bad-request', 'nonce longer than 64 bytes');
  const pw = Buffer.alloc(9);
  pw.writeUInt32BE(TPM_RS_PW, 0); // empty nonce (u16 0), attributes 0, empty hmac (u16 0)
  const auth = Buffer.concat([u32(pw.length * 2), pw, pw]);
  const params = Buffer.concat([u16(nonce.length), nonce, u16(TPM_ALG_NULL)]);
  const body = Buffer.concat([u32(keyHandle), u32(akHandle), auth, params]);
  const header = Buffer.alloc(10);
  header.writeUInt16BE(TPM_ST_SESSIONS, 0);
  header.writeUInt32BE(10 + body.length, 2);
  header.writeUInt32BE(TPM_CC_CERTIFY, 6);
  return Buffer.concat([header, body]);
}

/** CertifyResponse: TPMS_ATTEST (the TPM2B's content) and the TPMT_SIGNATURE over it, as the evidence statement carries them. */
export interface CertifyResponse {
  attest: Buffer;
  signature: Buffer;
}

/**
 * certifyOnce sends TPM2_Certify over the agent's own TPM connection (device, swtpm, mssim TCTIs),
 * resubmitting it on TPM_RC_RETRY, TPM_RC_TESTING and TPM_RC_YIELDED as the credential session does
 * (TPM 2.0 Part 2 §6.6.3); tpm2_send hands such an answer back as a failure instead.
 */
export async function certifyOnce(t: TpmTransport, keyHandle: number, akHandle: number, nonce: Buffer): Promise<CertifyResponse> {
  return certifyParams((await call(t, 'TPM2_Certify', certifyCommand(keyHandle, akHandle, nonce), 0)).params);
}

/** parseCertifyResponse reads a TPM2_Certify response; a non-zero response code is an error naming it (lockout said so). */
export function parseCertifyResponse(rsp: Buffer): CertifyResponse {
  if (rsp.length < 10) throw new DeviceCaError('key-backend', 'TPM2_Certify: short response from the TPM');
  const rc = rsp.readUInt32BE(6);
  if (rc !== 0) throw tpmResponseError('TPM2_Certify', rc);
  if (rsp.length < 16) throw new DeviceCaError('key-backend', 'TPM2_Certify: short response from the TPM');
  const paramSize = rsp.readUInt32BE(10);
  const params = rsp.subarray(14, 14 + paramSize);
  if (params.length !== paramSize) throw new DeviceCaError('key-backend', 'TPM2_Certify: truncated response');
  return certifyParams(params);
}

/** certifyParams splits TPM2_Certify's response parameters: TPM2B_ATTEST certifyInfo, then TPMT_SIGNATURE (Part 3 §18.2.2). */
function certifyParams(params: Buffer): CertifyResponse {
  if (params.length < 2) throw new DeviceCaError('key-backend', 'TPM2_Certify: truncated response');
  const n = params.readUInt16BE(0);
  if (2 + n > params.length) throw new DeviceCaError('key-backend', 'TPM2_Certify: truncated TPM2B_ATTEST');
  return { attest: Buffer.from(params.subarray(2, 2 + n)), signature: Buffer.from(params.subarray(2 + n)) };
}

const u16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n, 0);
  return b;
};
const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
};
