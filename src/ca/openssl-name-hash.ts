import * as crypto from 'node:crypto';
import { children, decodeOid, decodeString, readOne } from '../der/der-reader';
import { oid, seq, set, utf8String } from '../der/der-writer';

/**
 * opensslNameHash computes OpenSSL's X509_NAME_hash (the `<hash>` of a hashed certificate directory):
 * SHA-1 over the canonical encoding of the Name (each string value as a UTF8String, lower-cased,
 * white space trimmed and collapsed; the RDN SETs concatenated without the outer SEQUENCE), first four
 * octets read little-endian, as 8 hex digits.
 */
export function opensslNameHash(nameDer: Buffer): string {
  const rdns = children(readOne(nameDer, 0x30), 64);
  const canon = rdns.map((rdn) =>
    set(
      ...children(rdn, 16).map((atv) => {
        const [t, v] = children(atv, 2);
        let value: Buffer;
        try {
          const s = decodeString(v)
            .replace(/[\t\n\v\f\r ]+/g, ' ')
            .trim()
            .replace(/[A-Z]/g, (c) => c.toLowerCase());
          value = utf8String(s);
        } catch {
          value = v.full; // not a string type: kept as it is, as OpenSSL does
        }
        return seq(oid(decodeOid(t)), value);
      }),
    ),
  );
  const digest = crypto.createHash('sha1').update(Buffer.concat(canon)).digest();
  return digest.readUInt32LE(0).toString(16).padStart(8, '0');
}
