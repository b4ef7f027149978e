import { contextImplicitConstructed, contextExplicit, integer, oid, seq, set } from '../der/der-writer';
import { OID } from '../der/oids';

const SIGNED_DATA = oid(OID.signedData);
const DATA_CONTENT = seq(oid(OID.data));
const V1 = integer(1);

/**
 * certsOnly builds a degenerate CMS SignedData (RFC 5652 §5, "certs-only" in RFC 8551 §3.2.2): the
 * certificates and no signers. EST (RFC 7030 §4.1.3, §4.2.3) and SCEP return certificates this way.
 * DER SET OF is sorted, but clients read certificates in order, and openssl/curl accept this order.
 * crls (DER CertificateLists) go into the crls [1] field: SCEP answers GetCRL this way (RFC 8894 §3.3.2).
 */
export function certsOnly(certs: Buffer[], crls: Buffer[] = []): Buffer {
  const crlField = crls.length > 0 ? [contextImplicitConstructed(1, Buffer.concat(crls))] : [];
  const certField = certs.length > 0 ? [contextImplicitConstructed(0, Buffer.concat(certs))] : [];
  const signedData = seq(V1, set(), DATA_CONTENT, ...certField, ...crlField, set());
  return seq(SIGNED_DATA, contextExplicit(0, signedData));
}
