import { z } from 'zod';
import { DeviceCaError } from '../../errors/device-ca-error';

/** b64: standard base64 of at most `max` decoded bytes, as a Buffer. */
const b64 = (max: number) =>
  z
    .string()
    .max(Math.ceil(max / 3) * 4 + 4)
    .regex(/^[A-Za-z0-9+/]*={0,2}$/, 'not base64')
    .transform((s) => Buffer.from(s, 'base64'));

/** TPM_AK_BODY: POST <label>/tpm/ak: EK certificate (DER) and chain, EK and AK TPM2B_PUBLIC (tpm2_createek/createak -u). */
export const TPM_AK_BODY = z.strictObject({
  ekCertificate: b64(8192),
  ekChain: z.array(b64(8192)).max(4).default([]),
  ekPublic: b64(1024),
  akPublic: b64(1024),
});

/** TPM_ACTIVATE_BODY: POST <label>/tpm/ak/activate: the AK's name (hex) and the secret TPM2_ActivateCredential returned. */
export const TPM_ACTIVATE_BODY = z.strictObject({
  akName: z
    .string()
    .regex(/^[0-9a-fA-F]{4,132}$/, 'not a hex TPM name')
    .transform((s) => Buffer.from(s, 'hex')),
  secret: b64(64),
});

/** tpmRequest decodes a JSON body of the TPM routes; anything malformed is 'bad-request' naming the field. */
export function tpmRequest<T extends z.ZodType>(schema: T, body: Buffer): z.infer<T> {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    throw new DeviceCaError('bad-request', 'body is not JSON');
  }
  const r = schema.safeParse(json);
  if (!r.success) throw new DeviceCaError('bad-request', `bad field ${r.error.issues[0]?.path.join('.') || '(body)'}: ${r.error.issues[0]?.message ?? 'invalid'}`);
  return r.data;
}
