import * as crypto from 'node:crypto';
import { BOOLEAN_TRUE, bitString, contextExplicit, contextImplicitConstructed, contextImplicitPrimitive, integer, integerFromUnsigned, octetString, oid, seq, time, tlv } from '../der/der-writer';
import { OID } from '../der/oids';

/**
 * certificate-encoder: a direct DER encoder for X.509 v3 certificates (RFC 5280 §4.1). The issuance
 * hot path builds a TBSCertificate from pre-encoded parts in microseconds; @peculiar/x509 takes
 * milliseconds. test/unit/ca/certificate-encoder.test.ts proves it byte-equal to @peculiar/x509.
 */

export type SanEntry = { type: 'dns'; value: string } | { type: 'ip'; value: string } | { type: 'uri'; value: string };

export interface CertificateFields {
  serial: Buffer; // positive magnitude
  signatureAlgorithm: Buffer; // DER AlgorithmIdentifier
  issuer: Buffer; // DER Name
  notBefore: Date;
  notAfter: Date;
  subject: Buffer; // DER Name
  spki: Buffer; // DER SubjectPublicKeyInfo
  extensions: Buffer[]; // DER Extension each
}

const OIDS = {
  bc: oid(OID.basicConstraints),
  ku: oid(OID.keyUsage),
  eku: oid(OID.extKeyUsage),
  ski: oid(OID.subjectKeyIdentifier),
  aki: oid(OID.authorityKeyIdentifier),
  san: oid(OID.subjectAltName),
  cdp: oid(OID.crlDistributionPoints),
  aia: oid(OID.authorityInfoAccess),
  ocsp: oid(OID.ocsp),
  caIssuers: oid(OID.caIssuers),
};
const V3 = contextExplicit(0, integer(2));

/** extension encodes an Extension; critical FALSE is omitted (DER default). */
export function extension(extnId: Buffer, value: Buffer, critical = false): Buffer {
  return critical ? seq(extnId, BOOLEAN_TRUE, octetString(value)) : seq(extnId, octetString(value));
}

export function basicConstraints(ca: boolean, pathLen?: number): Buffer {
  const body = ca ? (pathLen === undefined ? seq(BOOLEAN_TRUE) : seq(BOOLEAN_TRUE, integer(pathLen))) : seq();
  return extension(OIDS.bc, body, true);
}

/** KeyUsage bit positions, RFC 5280 §4.2.1.3 */
export const KU = { digitalSignature: 0, nonRepudiation: 1, keyEncipherment: 2, dataEncipherment: 3, keyAgreement: 4, keyCertSign: 5, cRLSign: 6 } as const;

/** keyUsage encodes the named bits as a DER BIT STRING with the unused trailing bits counted. */
export function keyUsage(bits: number[]): Buffer {
  let v = 0;
  for (const b of bits) v |= 0x80 >> b; // all defined bits fit in the first octet except decipherOnly
  let unused = 0;
  while (unused < 8 && !(v & (1 << unused))) unused++;
  const content = v === 0 ? Buffer.from([0]) : Buffer.from([unused, v]);
  return extension(OIDS.ku, tlv(0x03, content), true);
}

export function extKeyUsage(oids: string[]): Buffer {
  return extension(OIDS.eku, seq(...oids.map((o) => oid(o))));
}

/** certificatePolicies encodes PolicyInformation entries without qualifiers (RFC 5280 §4.2.1.4), not critical. */
export function certificatePolicies(oids: string[]): Buffer {
  return extension(oid(OID.certificatePolicies), seq(...oids.map((o) => seq(oid(o)))));
}

/** keyIdentifier: RFC 5280 §4.2.1.2 method (1), SHA-1 of the subjectPublicKey BIT STRING value. */
export function keyIdentifier(spki: Buffer): Buffer {
  // SPKI = SEQ { AlgorithmIdentifier, BIT STRING }; the key bits are the last TLV's value minus the unused-bits octet
  const bits = lastTlvValue(spki).subarray(1);
  return crypto.createHash('sha1').update(bits).digest();
}

function lastTlvValue(der: Buffer): Buffer {
  // walk the outer SEQUENCE's children to the last one
  let p = headerLen(der, 0);
  let last = { start: 0, hdr: 0, len: 0 };
  while (p < der.length) {
    const h = headerLen(der, p);
    const len = contentLen(der, p);
    last = { start: p, hdr: h - p, len };
    p = h + len;
  }
  return der.subarray(last.start + last.hdr, last.start + last.hdr + last.len);
}
function headerLen(b: Buffer, p: number): number {
  const l = b[p + 1];
  return p + 2 + (l & 0x80 ? l & 0x7f : 0);
}
function contentLen(b: Buffer, p: number): number {
  const l = b[p + 1];
  if (!(l & 0x80)) return l;
  let n = 0;
  for (let i = 0; i < (l & 0x7f); i++) n = n * 256 + b[p + 2 + i];
  return n;
}

export function subjectKeyIdentifier(keyId: Buffer): Buffer {
  return extension(OIDS.ski, octetString(keyId));
}

export function authorityKeyIdentifier(keyId: Buffer): Buffer {
  return extension(OIDS.aki, seq(contextImplicitPrimitive(0, keyId)));
}

function generalName(s: SanEntry): Buffer {
  switch (s.type) {
    case 'dns':
      return contextImplicitPrimitive(2, Buffer.from(s.value, 'ascii'));
    case 'uri':
      return contextImplicitPrimitive(6, Buffer.from(s.value, 'ascii'));
    case 'ip':
      return contextImplicitPrimitive(7, ipBytes(s.value));
  }
}

export function ipBytes(ip: string): Buffer {
  if (ip.includes(':')) {
    // an embedded IPv4 tail (::ffff:192.0.2.7, RFC 4291 §2.2) becomes two 16-bit groups
    const v4 = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(ip);
    if (v4) {
      const b = v4[2].split('.').map(Number);
      ip = `${v4[1]}${((b[0] << 8) | b[1]).toString(16)}:${((b[2] << 8) | b[3]).toString(16)}`;
    }
    const [head, tail] = ip.split('::');
    const h = head ? head.split(':') : [];
    const t = tail !== undefined ? (tail ? tail.split(':') : []) : [];
    const groups = tail !== undefined ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
    const out = Buffer.alloc(16);
    groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
    return out;
  }
  return Buffer.from(ip.split('.').map((x) => Number(x)));
}

export function subjectAltName(entries: SanEntry[]): Buffer {
  return extension(OIDS.san, seq(...entries.map(generalName)));
}

/** crlDistributionPoints: one DistributionPoint with a fullName URI. */
export function crlDistributionPoints(url: string): Buffer {
  const fullName = contextImplicitConstructed(0, contextImplicitPrimitive(6, Buffer.from(url, 'ascii')));
  return extension(OIDS.cdp, seq(seq(contextImplicitConstructed(0, fullName))));
}

export function authorityInfoAccess(ocspUrl: string | undefined, caIssuersUrl: string | undefined): Buffer {
  const ads: Buffer[] = [];
  if (ocspUrl) ads.push(seq(OIDS.ocsp, contextImplicitPrimitive(6, Buffer.from(ocspUrl, 'ascii'))));
  if (caIssuersUrl) ads.push(seq(OIDS.caIssuers, contextImplicitPrimitive(6, Buffer.from(caIssuersUrl, 'ascii'))));
  return extension(OIDS.aia, seq(...ads));
}

export function encodeTbs(f: CertificateFields): Buffer {
  return seq(V3, integerFromUnsigned(f.serial), f.signatureAlgorithm, f.issuer, seq(time(f.notBefore), time(f.notAfter)), f.subject, f.spki, contextExplicit(3, seq(...f.extensions)));
}

/** assembleCertificate wraps a signed TBS: Certificate ::= SEQUENCE { tbs, signatureAlgorithm, signature }. */
export function assembleCertificate(tbs: Buffer, signatureAlgorithm: Buffer, signature: Buffer): Buffer {
  return seq(tbs, signatureAlgorithm, bitString(signature));
}

/** newSerial: 16 random octets, top bit clear and next bit set so the INTEGER is always 16 octets, positive. */
export function newSerial(): Buffer {
  const b = crypto.randomBytes(16);
  b[0] = (b[0] & 0x7f) | 0x40;
  return b;
}
