import { children, readOne } from '../der/der-reader';

/** CertificateParts are the DER pieces of a certificate that issuance and verification reuse as bytes. */
export interface CertificateParts {
  tbs: Buffer;
  serial: string; // lowercase hex of the INTEGER content without a leading zero
  issuer: Buffer;
  subject: Buffer;
  spki: Buffer;
}

/** certificateParts splits a DER certificate without decoding more than it returns. */
export function certificateParts(der: Buffer): CertificateParts {
  const cert = children(readOne(der, 0x30));
  const tbs = cert[0];
  const f = children(tbs);
  const o = f[0].tag === 0xa0 ? 1 : 0; // version is optional (v1)
  let serial = f[o].value;
  while (serial.length > 1 && serial[0] === 0) serial = serial.subarray(1);
  return { tbs: tbs.full, serial: serial.toString('hex'), issuer: f[o + 2].full, subject: f[o + 4].full, spki: f[o + 5].full };
}
