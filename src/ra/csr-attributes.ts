import { oid, seq, set } from '../der/der-writer';
import { OID } from '../der/oids';
import { ProfileConfig } from '../config/schema';

/**
 * csrAttributes builds the RFC 7030 §4.5.2 CsrAttrs for a profile: challengePassword when proof of
 * possession is required (§3.5), then the preferred key type and signature algorithm. RFC 8951 §3.2
 * keeps the Attribute form { ecPublicKey, { curve } } for naming a curve.
 */
export function csrAttributes(label: ProfileConfig): Buffer {
  const items: Buffer[] = [];
  if (label.proofOfPossession) items.push(oid(OID.challengePassword));
  const first = label.keyAlgorithms[0];
  if (first === 'ecdsa-p256' || first === 'ecdsa-p384') {
    items.push(seq(oid(OID.ecPublicKey), set(oid(first === 'ecdsa-p256' ? OID.secp256r1 : OID.secp384r1))));
    items.push(oid(first === 'ecdsa-p256' ? OID.ecdsaWithSHA256 : OID.ecdsaWithSHA384));
  } else {
    items.push(oid(OID.rsaEncryption), oid(OID.sha256WithRSAEncryption));
  }
  return seq(...items);
}
