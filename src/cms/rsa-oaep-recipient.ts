import * as crypto from 'node:crypto';
import { contextExplicit, integer, NULL, octetString, oid, seq } from '../der/der-writer';
import { CMS_OID, DIGEST_OID } from './cms-algorithms';
import { issuerAndSerialNumber } from './issuer-and-serial';

/**
 * RSAES-OAEP-params with SHA-256 and MGF1-SHA-256 (RFC 8017 A.2.1, RFC 4055 §4.1; pSourceAlgorithm left
 * at its default, the empty label). SHA-256 AlgorithmIdentifiers carry NULL, as RFC 4055 §2.1 permits and
 * openssl writes.
 */
const SHA256 = seq(oid(DIGEST_OID.sha256), NULL);
const OAEP_SHA256 = seq(oid(CMS_OID.rsaesOaep), seq(contextExplicit(0, SHA256), contextExplicit(1, seq(oid(CMS_OID.mgf1), SHA256))));

/**
 * oaepKeyTransRecipientInfo wraps `cek` to an RSA certificate with RSAES-OAEP (RFC 8017 §7.1) in a
 * KeyTransRecipientInfo version 0 naming the certificate by issuer and serial (RFC 5652 §6.2.1). OAEP,
 * not the PKCS#1 v1.5 of SCEP: a firmware recipient is a device, and devices need no v1.5 padding.
 */
export function oaepKeyTransRecipientInfo(cek: Buffer, certificate: Buffer, publicKey: crypto.KeyObject): Buffer {
  const encryptedKey = crypto.publicEncrypt({ key: publicKey, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, cek);
  return seq(integer(0), issuerAndSerialNumber(certificate), OAEP_SHA256, octetString(encryptedKey));
}
