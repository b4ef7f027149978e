import { children, readOne } from '../der/der-reader';
import { seq } from '../der/der-writer';

/**
 * issuerAndSerialNumber returns the DER IssuerAndSerialNumber (RFC 5652 §10.2.4) of a DER certificate,
 * with the issuer Name copied byte for byte: CMS recipients and signers are matched on these bytes.
 */
export function issuerAndSerialNumber(certDer: Buffer): Buffer {
  const tbs = children(readOne(certDer, 0x30))[0];
  const f = children(tbs);
  const i = f[0].tag === 0xa0 ? 1 : 0; // [0] EXPLICIT version is optional (v1 certificates)
  return seq(f[i + 2].full, f[i].full);
}
