import * as crypto from 'node:crypto';
import { TPM_AK_PROFILE } from '../ca/certificate-authority';
import { SIGNER_PROFILE } from '../ca/signer-ca';
import { DeviceCaError } from '../errors/device-ca-error';
import { CertificateRecord, RevocationReason, Store } from '../store/store';

/** NOT_DEVICE_PROFILES: certificates of a device that do not authenticate it (a TPM AK signs evidence; a signer signs firmware). */
export const NOT_DEVICE_PROFILES: readonly string[] = [TPM_AK_PROFILE, SIGNER_PROFILE];

/** DeviceCertificateRule: what a caller accepts beyond the identity checks, and how its refusals name the certificate. */
export interface DeviceCertificateRule {
  /** name: the certificate as the refusals call it ("the client certificate", "the certificate") */
  name: string;
  /**
   * acceptRevoked: revocation reasons that still identify the device (device commands: the lifecycle steps
   * they carry out); default none, only a valid certificate. A refusal of a revoked certificate names its
   * reason when some reasons are accepted, so the device's operator learns why this one is not.
   */
  acceptRevoked?: readonly RevocationReason[];
}

/**
 * deviceCertificateRecord: the store's record of a certificate this CA issued to a device, which is what
 * identifies a device presenting it (firmware downloads and receipts, device commands): the record under
 * its serial (32 hex digits, as the CA records it) holds the same bytes (the transport or a CMS signature
 * proved the key; byte equality proves this CA issued it, no signature check needed), names a device, and
 * is not an AK or signer certificate (NOT_DEVICE_PROFILES); it is valid or revoked for a reason the rule
 * accepts; `now` is within its validity. Anything else is 'forbidden', saying why, in that order: a device
 * that presents a certificate expects to be known, and must learn why it is not.
 */
export async function deviceCertificateRecord(
  store: Pick<Store, 'getCertificate'>,
  certificate: crypto.X509Certificate | Buffer,
  now: Date,
  rule: DeviceCertificateRule,
): Promise<CertificateRecord & { deviceId: string }> {
  const notDevice = () => new DeviceCaError('forbidden', `${rule.name} is not a device certificate of this CA`);
  let x: crypto.X509Certificate;
  try {
    x = Buffer.isBuffer(certificate) ? new crypto.X509Certificate(certificate) : certificate;
  } catch {
    throw notDevice();
  }
  const rec = await store.getCertificate(x.serialNumber.toLowerCase().padStart(32, '0'));
  if (!rec || !rec.der.equals(x.raw) || !rec.deviceId || NOT_DEVICE_PROFILES.includes(rec.profile)) throw notDevice();
  if (rec.status !== 'valid') {
    const accepted = rule.acceptRevoked ?? [];
    if (!accepted.includes(rec.revocationReason as RevocationReason))
      throw new DeviceCaError('forbidden', accepted.length > 0 ? `${rule.name} is revoked (${rec.revocationReason ?? 'unspecified'})` : `${rule.name} is revoked`);
  }
  if (now < rec.notBefore || now > rec.notAfter) throw new DeviceCaError('forbidden', `${rule.name} is not within its validity`);
  return { ...rec, deviceId: rec.deviceId };
}
