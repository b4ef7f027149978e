import * as crypto from 'node:crypto';
import { NULL, contextExplicit, derHeaderSize, enumerated, octetString, oid, seq, tlv, writeGeneralizedTime, writeHeader } from '../der/der-writer';
import { Tlv, children, decodeOid, expectTag, readOne } from '../der/der-reader';
import { OID } from '../der/oids';
import { DeviceCaError } from '../errors/device-ca-error';
import { SigningKey } from '../keys/key-backend';
import { extKeyUsage, extension, keyIdentifier } from './certificate-encoder';
import { CrlReason, crlReasonCode } from './crl-encoder';

/**
 * ocsp-codec: the OCSP wire format (RFC 6960, profiled by RFC 5019) as pure functions, for the protocols/ocsp
 * adapter. Requests are parsed with the bounds-checked der-reader (untrusted input, ARCHITECTURE rule 11);
 * responses are built by direct DER concatenation from parts an OcspResponder pre-encodes once, so a
 * response costs little more than its signature (bench/ocsp-codec.ts). test/unit/ca/ocsp-codec.test.ts
 * compares the bytes with pkijs and has `openssl ocsp` verify them.
 */

export type OcspHashName = 'sha1' | 'sha256' | 'sha384' | 'sha512';

/** OcspCertId is one CertID of a request (RFC 6960 §4.1.1). Buffers are views into the request. */
export interface OcspCertId {
  /** hashAlgorithm: dotted OID of the CertID hash. */
  hashAlgorithm: string;
  hash: OcspHashName;
  issuerNameHash: Buffer;
  issuerKeyHash: Buffer;
  /** serialNumber: lowercase hex without leading zeros (as certificate-parts writes it). */
  serialNumber: string;
  /** der: the CertID exactly as received; the response echoes it so the client's comparison cannot fail. */
  der: Buffer;
}

export interface OcspRequest {
  certIds: OcspCertId[];
  /**
   * nonce: the extnValue octets of id-pkix-ocsp-nonce, to be echoed unchanged (RFC 6960 §4.4.1; openssl
   * sends an OCTET STRING of 16 random octets inside). Absent when the client sent none.
   */
  nonce?: Buffer;
  /** signed: the request carried an optionalSignature. It is not verified: device-ca does not require signed requests. */
  signed: boolean;
}

export interface OcspRequestLimits {
  /** maxBytes: larger input is rejected before parsing; default 8192 (a signed request with a cert fits). */
  maxBytes?: number;
  /** maxCertIds: RFC 5019 clients send one; default 16. */
  maxCertIds?: number;
}

const HASHES: Record<string, { name: OcspHashName; len: number }> = {
  [OID.sha1]: { name: 'sha1', len: 20 },
  [OID.sha256]: { name: 'sha256', len: 32 },
  [OID.sha384]: { name: 'sha384', len: 48 },
  [OID.sha512]: { name: 'sha512', len: 64 },
};
const HASH_ALG_IDS: Record<OcspHashName, Buffer> = {
  // RFC 5019 §2.1.1 / openssl: SHA-1 with NULL parameters; the same shape for the SHA-2 family
  sha1: seq(oid(OID.sha1), NULL),
  sha256: seq(oid(OID.sha256), NULL),
  sha384: seq(oid(OID.sha384), NULL),
  sha512: seq(oid(OID.sha512), NULL),
};
/** MAX_NONCE: RFC 8954 §2.1, a responder MUST reject a nonce longer than 64 octets with malformedRequest. */
const MAX_NONCE = 64;

function bad(what: string): never {
  throw new DeviceCaError('bad-request', `malformed OCSP request: ${what}`);
}

/**
 * parseOcspRequest decodes a DER OCSPRequest (RFC 6960 §4.1.1). Any malformation, an oversized body,
 * an unknown CertID hash or a nonce over 64 octets throws DeviceCaError('bad-request'), which the OCSP
 * adapter answers with malformedRequest. The optional signature and requestorName are accepted and ignored.
 */
export function parseOcspRequest(der: Buffer, limits: OcspRequestLimits = {}): OcspRequest {
  const maxBytes = limits.maxBytes ?? 8192;
  const maxCertIds = limits.maxCertIds ?? 16;
  if (!Buffer.isBuffer(der) || der.length === 0) bad('empty');
  if (der.length > maxBytes) bad(`larger than ${maxBytes} bytes`);
  // OCSPRequest ::= SEQUENCE { tbsRequest, optionalSignature [0] EXPLICIT Signature OPTIONAL }
  const top = children(readOne(der, 0x30), 2);
  if (top.length === 0) bad('empty OCSPRequest');
  const tbs = children(expectTag(top[0], 0x30, 'TBSRequest'), 4);
  if (top.length === 2) expectTag(top[1], 0xa0, 'optionalSignature');
  let i = 0;
  // TBSRequest ::= SEQUENCE { version [0] EXPLICIT DEFAULT v1, requestorName [1] EXPLICIT OPTIONAL, requestList, requestExtensions [2] EXPLICIT OPTIONAL }
  if (tbs[i]?.tag === 0xa0) {
    const v = readOne(tbs[i].value, 0x02);
    if (v.value.length !== 1 || v.value[0] !== 0) bad('unsupported version');
    i++;
  }
  if (tbs[i]?.tag === 0xa1) i++;
  if (!tbs[i]) bad('no requestList');
  const list = children(expectTag(tbs[i++], 0x30, 'requestList'), maxCertIds);
  if (list.length === 0) bad('empty requestList');
  let nonce: Buffer | undefined;
  if (tbs[i]?.tag === 0xa2) {
    const exts = parseExtensions(tbs[i++]);
    const n = exts.get(OID.ocspNonce);
    if (n) nonce = checkNonce(n);
  }
  if (i !== tbs.length) bad('unexpected field in TBSRequest');
  return { certIds: list.map(parseRequest), nonce, signed: top.length === 2 };
}

/** parseRequest: Request ::= SEQUENCE { reqCert CertID, singleRequestExtensions [0] EXPLICIT OPTIONAL } */
function parseRequest(r: Tlv): OcspCertId {
  const f = children(expectTag(r, 0x30, 'Request'), 2);
  if (f.length === 0) bad('empty Request');
  if (f.length === 2) expectTag(f[1], 0xa0, 'singleRequestExtensions');
  return parseCertId(f[0]);
}

/** parseCertId: CertID ::= SEQUENCE { hashAlgorithm, issuerNameHash OCTET STRING, issuerKeyHash OCTET STRING, serialNumber INTEGER } */
function parseCertId(t: Tlv): OcspCertId {
  const f = children(expectTag(t, 0x30, 'CertID'), 4);
  if (f.length !== 4) bad('CertID needs 4 fields');
  const alg = children(expectTag(f[0], 0x30, 'hashAlgorithm'), 2);
  if (alg.length === 0) bad('empty AlgorithmIdentifier');
  const hashOid = decodeOid(alg[0]);
  // parameters: absent or NULL (RFC 5754 §2 allows both for SHA-2; SHA-1 is sent with NULL)
  if (alg.length === 2 && (alg[1].tag !== 0x05 || alg[1].value.length !== 0)) bad('hash parameters');
  const h = Object.prototype.hasOwnProperty.call(HASHES, hashOid) ? HASHES[hashOid] : undefined;
  if (!h) bad(`unsupported CertID hash ${hashOid}`);
  const nameHash = expectTag(f[1], 0x04, 'issuerNameHash').value;
  const keyHash = expectTag(f[2], 0x04, 'issuerKeyHash').value;
  if (nameHash.length !== h.len || keyHash.length !== h.len) bad('CertID hash length');
  return {
    hashAlgorithm: hashOid,
    hash: h.name,
    issuerNameHash: nameHash,
    issuerKeyHash: keyHash,
    serialNumber: serialHex(expectTag(f[3], 0x02, 'serialNumber').value),
    der: t.full,
  };
}

/** serialHex normalizes an INTEGER's content to the store's form; RFC 5280 §4.1.2.2: positive, at most 20 octets. */
function serialHex(v: Buffer): string {
  if (v.length === 0) bad('empty serialNumber');
  if (v[0] & 0x80) bad('negative serialNumber');
  let s = 0;
  while (s < v.length - 1 && v[s] === 0) s++;
  if (v.length - s > 20) bad('serialNumber longer than 20 octets');
  return v.subarray(s).toString('hex');
}

/** parseExtensions: [n] EXPLICIT Extensions; RFC 5280 §4.2: an extension appears at most once. */
function parseExtensions(wrapper: Tlv): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const e of children(readOne(wrapper.value, 0x30), 32)) {
    const f = children(expectTag(e, 0x30, 'Extension'), 3);
    if (f.length < 2) bad('Extension fields');
    const id = decodeOid(f[0]);
    if (f.length === 3) expectTag(f[1], 0x01, 'critical');
    const value = expectTag(f[f.length - 1], 0x04, 'extnValue').value;
    if (out.has(id)) bad(`duplicate extension ${id}`);
    out.set(id, value);
  }
  return out;
}

/**
 * checkNonce bounds the nonce (RFC 8954 §2.1: over 64 octets is malformed). The length counted is the
 * inner OCTET STRING's when the extnValue is one, else the raw extnValue's (pre-RFC 8954 clients).
 */
function checkNonce(extnValue: Buffer): Buffer {
  if (extnValue.length === 0) bad('empty nonce');
  let len = extnValue.length;
  if (extnValue[0] === 0x04) {
    try {
      len = readOne(extnValue, 0x04).value.length;
    } catch {
      // not a DER OCTET STRING: raw nonce octets
    }
  }
  if (len > MAX_NONCE) bad('nonce longer than 64 octets');
  return extnValue;
}

/** certIdHashes computes a CertID's issuerNameHash and issuerKeyHash (RFC 6960 §4.1.1) for an issuer. */
export function certIdHashes(issuerName: Buffer, issuerSpki: Buffer, hash: OcspHashName = 'sha1'): { issuerNameHash: Buffer; issuerKeyHash: Buffer } {
  const keyBits = spkiKeyBits(issuerSpki);
  return {
    issuerNameHash: crypto.createHash(hash).update(issuerName).digest(),
    issuerKeyHash: crypto.createHash(hash).update(keyBits).digest(),
  };
}

/** certIdMatchesIssuer: does this CertID name this issuer (its Name DER and SPKI)? Constant work, no secrets involved. */
export function certIdMatchesIssuer(id: OcspCertId, issuerName: Buffer, issuerSpki: Buffer): boolean {
  const h = certIdHashes(issuerName, issuerSpki, id.hash);
  return h.issuerNameHash.equals(id.issuerNameHash) && h.issuerKeyHash.equals(id.issuerKeyHash);
}

/** encodeCertId builds a CertID for a serial when there is no request to echo (pre-signed RFC 5019 responses). */
export function encodeCertId(f: { hash: OcspHashName; issuerNameHash: Buffer; issuerKeyHash: Buffer; serialNumber: string }): Buffer {
  const hex = f.serialNumber.length % 2 ? '0' + f.serialNumber : f.serialNumber;
  let mag = Buffer.from(hex, 'hex');
  if (mag.length * 2 !== hex.length || mag.length === 0) throw new DeviceCaError('internal', 'encodeCertId: serialNumber must be hex');
  if (mag[0] & 0x80) mag = Buffer.concat([Buffer.from([0]), mag]);
  return seq(HASH_ALG_IDS[f.hash], octetString(f.issuerNameHash), octetString(f.issuerKeyHash), tlv(0x02, mag));
}

function spkiKeyBits(spki: Buffer): Buffer {
  // SPKI ::= SEQUENCE { algorithm, subjectPublicKey BIT STRING }; the key is the BIT STRING after its unused-bits octet
  const f = children(readOne(spki, 0x30), 2);
  return expectTag(f[1], 0x03, 'subjectPublicKey').value.subarray(1);
}

// ---------------------------------------------------------------------------------------------- responses

/** OcspStatus: good, revoked (with time and optional reason) or unknown (RFC 6960 §2.2). */
export type OcspStatus = { status: 'good' } | { status: 'unknown' } | { status: 'revoked'; revokedAt: Date; reason?: CrlReason };

/** OcspSingleResponse: the answer for one CertID (a parsed one is echoed as received; a Buffer is a DER CertID). */
export type OcspSingleResponse = OcspStatus & {
  certId: OcspCertId | Buffer;
  thisUpdate: Date;
  /** nextUpdate: RFC 5019 §2.2.4 wants it so clients and caches know how long the answer holds. */
  nextUpdate?: Date;
};

export interface OcspResponseOptions {
  /** nonce: the request's nonce extnValue, echoed in responseExtensions (RFC 6960 §4.4.1). */
  nonce?: Buffer;
  /** producedAt: default now. */
  producedAt?: Date;
}

/** OcspErrorStatus: the OCSPResponseStatus values that carry no responseBytes (RFC 6960 §4.2.1). */
export type OcspErrorStatus = 'malformedRequest' | 'internalError' | 'tryLater' | 'sigRequired' | 'unauthorized';
export const OCSP_RESPONSE_STATUS = { successful: 0, malformedRequest: 1, internalError: 2, tryLater: 3, sigRequired: 5, unauthorized: 6 } as const;

const ERROR_RESPONSES: Record<OcspErrorStatus, Buffer> = {
  malformedRequest: seq(enumerated(1)),
  internalError: seq(enumerated(2)),
  tryLater: seq(enumerated(3)),
  sigRequired: seq(enumerated(5)),
  unauthorized: seq(enumerated(6)),
};

/** encodeOcspError returns an OCSPResponse with an error status and no responseBytes (five bytes). */
export function encodeOcspError(status: OcspErrorStatus): Buffer {
  const r = Object.prototype.hasOwnProperty.call(ERROR_RESPONSES, status) ? ERROR_RESPONSES[status] : undefined;
  if (!r) throw new DeviceCaError('internal', `unknown OCSP error status ${String(status)}`);
  return Buffer.from(r);
}

/**
 * ocspResponderExtensions are the two extensions a delegated OCSP responder certificate needs: EKU
 * id-kp-OCSPSigning (RFC 6960 §4.2.2.2) and id-pkix-ocsp-nocheck with a NULL value (§4.2.2.2.1), so
 * clients do not ask for the responder's own revocation status. The CA adds them when it issues one.
 */
export function ocspResponderExtensions(): Buffer[] {
  return [extKeyUsage([OID.ocspSigning]), extension(oid(OID.ocspNoCheck), NULL)];
}

const SUCCESSFUL = enumerated(0);
const OID_BASIC = oid(OID.ocspBasic);
const OID_NONCE = oid(OID.ocspNonce);

/**
 * OcspResponder signs BasicOCSPResponses for one responder key and certificate (the CA itself, or a
 * delegated responder with ocspResponderExtensions). ResponderID (byKey), signatureAlgorithm and the
 * certs field are encoded once here; a response adds producedAt, the SingleResponses, the nonce and the
 * signature.
 */
export class OcspResponder {
  /** keyHash: SHA-1 of the responder's subjectPublicKey bits (RFC 6960 §4.2.1 ResponderID byKey). */
  readonly keyHash: Buffer;
  private readonly responderId: Buffer;
  private readonly certs: Buffer;

  /**
   * @param key the responder's signing key
   * @param certificate the responder's DER certificate; sent in `certs` unless includeCertificate is false
   *        (a CA answering for itself may leave it out: the client has it)
   */
  constructor(
    readonly key: SigningKey,
    readonly certificate: Buffer,
    opts: { includeCertificate?: boolean } = {},
  ) {
    if (!certificate.includes(key.spki)) throw new DeviceCaError('config', 'OCSP responder certificate does not hold the responder key');
    this.keyHash = keyIdentifier(key.spki);
    this.responderId = contextExplicit(2, octetString(this.keyHash)); // byKey [2] KeyHash
    this.certs = opts.includeCertificate === false ? Buffer.alloc(0) : contextExplicit(0, seq(certificate));
  }

  /**
   * respond builds, signs and wraps a successful OCSPResponse (responseType id-pkix-ocsp-basic). Lengths
   * are computed first and each layer is written once into an exact-size buffer: the TBS, then the response.
   */
  async respond(responses: readonly OcspSingleResponse[], opts: OcspResponseOptions = {}): Promise<Buffer> {
    if (responses.length === 0) throw new DeviceCaError('internal', 'OCSP response needs at least one SingleResponse');
    const producedAt = checkTime(opts.producedAt ?? new Date());
    const singles = responses.map(singleResponse);
    let singlesLen = 0;
    for (const s of singles) singlesLen += s.length;
    // responseExtensions [1] EXPLICIT Extensions { Extension { nonce, extnValue echoed verbatim } }
    const nonce = opts.nonce;
    const extContent = nonce ? OID_NONCE.length + derHeaderSize(nonce.length) + nonce.length : 0;
    const extLen = nonce ? derHeaderSize(extContent) + extContent : 0;
    const extsLen = nonce ? derHeaderSize(extLen) + extLen : 0;
    const wrapLen = nonce ? derHeaderSize(extsLen) + extsLen : 0;
    // ResponseData { responderID, producedAt, responses, responseExtensions }
    const tbsContent = this.responderId.length + GENERALIZED_TIME_LEN + derHeaderSize(singlesLen) + singlesLen + wrapLen;
    const tbs = Buffer.allocUnsafe(derHeaderSize(tbsContent) + tbsContent);
    let p = writeHeader(tbs, 0, 0x30, tbsContent);
    p += this.responderId.copy(tbs, p);
    p = writeGeneralizedTime(tbs, p, producedAt);
    p = writeHeader(tbs, p, 0x30, singlesLen);
    for (const s of singles) p += s.copy(tbs, p);
    if (nonce) {
      p = writeHeader(tbs, p, 0xa1, extsLen);
      p = writeHeader(tbs, p, 0x30, extLen);
      p = writeHeader(tbs, p, 0x30, extContent);
      p += OID_NONCE.copy(tbs, p);
      p = writeHeader(tbs, p, 0x04, nonce.length);
      nonce.copy(tbs, p);
    }

    const sig = await this.key.sign(tbs);
    const sigAlg = this.key.signatureAlgorithm;
    // OCSPResponse { successful, [0] EXPLICIT ResponseBytes { id-pkix-ocsp-basic, OCTET STRING { BasicOCSPResponse } } }
    const basicContent = tbs.length + sigAlg.length + derHeaderSize(sig.length + 1) + sig.length + 1 + this.certs.length;
    const basicLen = derHeaderSize(basicContent) + basicContent;
    const rbContent = OID_BASIC.length + derHeaderSize(basicLen) + basicLen;
    const rbLen = derHeaderSize(rbContent) + rbContent;
    const topContent = SUCCESSFUL.length + derHeaderSize(rbLen) + rbLen;
    const out = Buffer.allocUnsafe(derHeaderSize(topContent) + topContent);
    p = writeHeader(out, 0, 0x30, topContent);
    p += SUCCESSFUL.copy(out, p);
    p = writeHeader(out, p, 0xa0, rbLen);
    p = writeHeader(out, p, 0x30, rbContent);
    p += OID_BASIC.copy(out, p);
    p = writeHeader(out, p, 0x04, basicLen);
    p = writeHeader(out, p, 0x30, basicContent);
    p += tbs.copy(out, p);
    p += sigAlg.copy(out, p);
    p = writeHeader(out, p, 0x03, sig.length + 1);
    out[p++] = 0; // no unused bits
    p += sig.copy(out, p);
    this.certs.copy(out, p);
    return out;
  }
}

/** encodeBasicOcspResponse is OcspResponder.respond for one-off use; servers keep an OcspResponder. */
export function encodeBasicOcspResponse(key: SigningKey, responderCertificate: Buffer, responses: readonly OcspSingleResponse[], opts: OcspResponseOptions = {}): Promise<Buffer> {
  return new OcspResponder(key, responderCertificate).respond(responses, opts);
}

const GENERALIZED_TIME_LEN = 17;

/** checkTime: GeneralizedTime needs a valid date in years 0..9999 (no fractional seconds are written: RFC 6960 §4.2.2.1 via RFC 5280 §4.1.2.5.2). */
function checkTime(d: Date): Date {
  const y = d instanceof Date ? d.getUTCFullYear() : NaN;
  if (!(y >= 0 && y <= 9999)) throw new DeviceCaError('internal', 'OCSP response: invalid date');
  return d;
}

/** singleResponse: SingleResponse ::= SEQUENCE { certID, certStatus, thisUpdate, nextUpdate [0] EXPLICIT OPTIONAL }, written in one buffer. */
function singleResponse(r: OcspSingleResponse): Buffer {
  const certId = Buffer.isBuffer(r.certId) ? r.certId : r.certId.der;
  let code: number | undefined;
  let statusLen: number;
  switch (r.status) {
    case 'good': // good [0] IMPLICIT NULL
    case 'unknown': // unknown [2] IMPLICIT UnknownInfo (NULL)
      statusLen = 2;
      break;
    case 'revoked':
      // revoked [1] IMPLICIT RevokedInfo { revocationTime, revocationReason [0] EXPLICIT CRLReason OPTIONAL };
      // 'unspecified' is left out as in the CRL (RFC 5280 §5.3.1)
      checkTime(r.revokedAt);
      if (r.reason !== undefined && r.reason !== 'unspecified') {
        code = crlReasonCode(r.reason);
        if (code === undefined) throw new DeviceCaError('internal', `unknown revocation reason ${JSON.stringify(r.reason)}`);
      }
      statusLen = 2 + GENERALIZED_TIME_LEN + (code === undefined ? 0 : 5);
      break;
    default:
      throw new DeviceCaError('internal', `unknown OCSP status ${JSON.stringify((r as { status: unknown }).status)}`);
  }
  checkTime(r.thisUpdate);
  if (r.nextUpdate) checkTime(r.nextUpdate);
  const content = certId.length + statusLen + GENERALIZED_TIME_LEN + (r.nextUpdate ? 2 + GENERALIZED_TIME_LEN : 0);
  const out = Buffer.allocUnsafe(derHeaderSize(content) + content);
  let p = writeHeader(out, 0, 0x30, content);
  p += certId.copy(out, p);
  if (r.status === 'revoked') {
    out[p++] = 0xa1;
    out[p++] = statusLen - 2;
    p = writeGeneralizedTime(out, p, r.revokedAt);
    if (code !== undefined) {
      out[p++] = 0xa0;
      out[p++] = 3;
      out[p++] = 0x0a;
      out[p++] = 1;
      out[p++] = code;
    }
  } else {
    out[p++] = r.status === 'good' ? 0x80 : 0x82;
    out[p++] = 0;
  }
  p = writeGeneralizedTime(out, p, r.thisUpdate);
  if (r.nextUpdate) {
    out[p++] = 0xa0;
    out[p++] = GENERALIZED_TIME_LEN;
    writeGeneralizedTime(out, p, r.nextUpdate);
  }
  return out;
}
