import { oid, printableString, seq, set, utf8String } from '../der/der-writer';
import { OID } from '../der/oids';

/** NameAttribute is one RDN attribute; device-ca writes single-valued RDNs only. */
export interface NameAttribute {
  type: 'CN' | 'O' | 'OU' | 'serialNumber';
  value: string;
}

const TYPE_OIDS = { CN: oid(OID.commonName), O: oid(OID.organizationName), OU: oid(OID.organizationalUnitName), serialNumber: oid(OID.serialNumber) };

/** encodeName builds an RDNSequence; RFC 5280 §4.1.2.6: UTF8String, except serialNumber (PrintableString). */
export function encodeName(attrs: NameAttribute[]): Buffer {
  return seq(...attrs.map((a) => set(seq(TYPE_OIDS[a.type], a.type === 'serialNumber' ? printableString(a.value) : utf8String(a.value)))));
}

/** nameToString renders a Name for logs and listings, RFC 4514 order reversed for readability. */
export function nameToString(attrs: NameAttribute[]): string {
  return attrs.map((a) => `${a.type}=${a.value.replace(/([,+"\\<>;=])/g, '\\$1')}`).join(', ');
}
