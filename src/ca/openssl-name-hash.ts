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
      // OpenSSL orders the values of a multi-valued RDN by their canonical encoding
      ...children(rdn, 16)
        .map((atv) => {
          const [t, v] = children(atv, 2);
          let value: Buffer;
          try {
            const s = (v.tag === 0x1c ? universalString(v.value) : decodeString(v))
              .replace(/[\t\n\v\f\r ]+/g, ' ')
              .trim()
              .replace(/[A-Z]/g, (c) => c.toLowerCase());
            value = utf8String(s);
          } catch {
            value = v.full; // not a string type: kept as it is, as OpenSSL does
          }
          return seq(oid(decodeOid(t)), value);
        })
        .sort(Buffer.compare),
    ),
  );
  const digest = crypto.createHash('sha1').update(Buffer.concat(canon)).digest();
  return digest.readUInt32LE(0).toString(16).padStart(8, '0');
}

/** universalString decodes UCS-4 (4-octet big-endian code points), which decodeString does not read. */
function universalString(b: Buffer): string {
  if (b.length % 4) throw new Error('UniversalString of odd length');
  let out = '';
  for (let i = 0; i < b.length; i += 4) out += String.fromCodePoint(b.readUInt32BE(i));
  return out;
}
