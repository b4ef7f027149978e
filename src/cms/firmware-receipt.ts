import { children, decodeOid, readOne, Tlv } from '../der/der-reader';
import { enumerated, integer, octetString, oid, seq, tlv, time } from '../der/der-writer';
import { DeviceCaError } from '../errors/device-ca-error';
import { SigningKey } from '../keys/key-backend';
import { CMS_OID } from './cms-algorithms';
import { packageIdentifier, readPackageIdentifier } from './firmware-attributes';
import { buildSignedData } from './signed-data';
import { parseSignedDataParts } from './signed-data-parts';
import { verifySignerInfo } from './signer-info';

/**
 * firmware-receipt: RFC 4108 §3 firmware package load receipts and §4 load error reports, signed by the
 * device (a SignedData whose eContentType is id-ct-firmwareLoadReceipt or id-ct-firmwareLoadError, one
 * SignerInfo). This module proves which key signed a receipt and what it says; whether that key is the
 * device's, and whether the device may have the package, is decided in ra/firmware-receipts.ts.
 *
 *   FirmwarePackageLoadReceipt ::= SEQUENCE {
 *     version FWReceiptVersion DEFAULT v1, hwType OBJECT IDENTIFIER, hwSerialNum OCTET STRING,
 *     fwPkgName PreferredOrLegacyPackageIdentifier, trustAnchorKeyID OCTET STRING OPTIONAL,
 *     decryptKeyID [1] OCTET STRING OPTIONAL }
 *   FirmwarePackageLoadError ::= SEQUENCE {
 *     version FWErrorVersion DEFAULT v1, hwType OBJECT IDENTIFIER, hwSerialNum OCTET STRING,
 *     errorCode FirmwarePackageLoadErrorCode (ENUMERATED), vendorErrorCode INTEGER OPTIONAL,
 *     fwPkgName PreferredOrLegacyPackageIdentifier OPTIONAL, config [1] SEQUENCE OF CurrentFWConfig OPTIONAL }
 */

/** FirmwareReceipt: what a receipt or an error report says. */
export interface FirmwareReceipt {
  /** kind: 'loaded' (id-ct-firmwareLoadReceipt) or 'error' (id-ct-firmwareLoadError) */
  kind: 'loaded' | 'error';
  /** hwType: the hardware module type (OID) */
  hwType: string;
  /** hwSerial: the hardware module serial number (hwSerialNum), read as UTF-8; device-ca uses the device id */
  hwSerial: string;
  /** package: fwPkgName; always present in a receipt, optional in an error report */
  package: { name: string; version: number } | null;
  /** errorCode: RFC 4108 §4 FirmwarePackageLoadErrorCode (error reports only) */
  errorCode?: number;
  /** vendorErrorCode: the vendor's own code, when the report carries one */
  vendorErrorCode?: number;
  trustAnchorKeyId?: Buffer;
  decryptKeyId?: Buffer;
}

/** SignedFirmwareReceipt: a receipt whose signature verified, and the certificate of the key that made it. */
export interface SignedFirmwareReceipt {
  receipt: FirmwareReceipt;
  /** signerCertificate: DER of the certificate whose key signed (the caller decides whose it is) */
  signerCertificate: Buffer;
  signingTime: Date | null;
}

const OID_RE = /^[0-2](\.(0|[1-9][0-9]*))+$/;
/** MAX_ERROR_CODE: RFC 4108 §4 lists codes 1-36 and otherError(99); anything up to 127 (one-byte ENUMERATED) is kept as a number */
const MAX_ERROR_CODE = 127;

/** encodeFirmwareReceipt: the DER of a FirmwarePackageLoadReceipt or FirmwarePackageLoadError (version v1, DEFAULT, so omitted). */
export function encodeFirmwareReceipt(r: FirmwareReceipt): Buffer {
  if (!OID_RE.test(r.hwType)) throw new DeviceCaError('bad-request', `hardware module type ${JSON.stringify(r.hwType)} is not an OID`);
  const serial = octetString(Buffer.from(r.hwSerial, 'utf8'));
  const name = r.package ? packageIdentifier(r.package.name, r.package.version) : null;
  if (r.kind === 'loaded') {
    if (!name) throw new DeviceCaError('bad-request', 'a load receipt names the package (RFC 4108 §3)');
    return seq(oid(r.hwType), serial, name, ...(r.trustAnchorKeyId ? [octetString(r.trustAnchorKeyId)] : []), ...(r.decryptKeyId ? [tlv(0x81, r.decryptKeyId)] : []));
  }
  const code = r.errorCode ?? 99;
  if (!Number.isInteger(code) || code < 1 || code > MAX_ERROR_CODE) throw new DeviceCaError('bad-request', `error code must be 1-${MAX_ERROR_CODE} (RFC 4108 §4)`);
  const vendor = r.vendorErrorCode;
  if (vendor !== undefined && (!Number.isInteger(vendor) || vendor < 0 || vendor > 0x7fffffff)) throw new DeviceCaError('bad-request', 'a vendor error code must be 0-2147483647');
  return seq(oid(r.hwType), serial, enumerated(code), ...(vendor !== undefined ? [integer(vendor)] : []), ...(name ? [name] : []));
}

/** decodeFirmwareReceipt reads the eContent of a receipt ('loaded') or an error report ('error'); 'bad-request' when malformed. */
export function decodeFirmwareReceipt(kind: 'loaded' | 'error', der: Buffer): FirmwareReceipt {
  const f = children(readOne(der, 0x30), 8);
  let i = 0;
  if (f[i]?.tag === 0x02) {
    const v = smallInt(f[i++], 'version');
    if (v !== 1 && v !== 2) throw new DeviceCaError('bad-request', `receipt version ${v} is not v1 or v2 (RFC 4108)`);
  }
  const hwT = f[i++];
  const serialT = f[i++];
  if (hwT?.tag !== 0x06 || serialT?.tag !== 0x04) throw new DeviceCaError('bad-request', 'the receipt has no hwType and hwSerialNum (RFC 4108 §3)');
  const base = { hwType: decodeOid(hwT), hwSerial: utf8(serialT.value) };
  if (kind === 'loaded') {
    const pkg = readPackageIdentifier(f[i++]);
    const out: FirmwareReceipt = { kind, ...base, package: pkg };
    if (f[i]?.tag === 0x04) out.trustAnchorKeyId = Buffer.from(f[i++].value);
    if (f[i]?.tag === 0x81) out.decryptKeyId = Buffer.from(f[i++].value);
    if (i !== f.length) throw new DeviceCaError('bad-request', 'the receipt has fields RFC 4108 §3 does not define');
    return out;
  }
  const codeT = f[i++];
  if (codeT?.tag !== 0x0a) throw new DeviceCaError('bad-request', 'the error report has no errorCode (RFC 4108 §4)');
  const errorCode = smallInt(codeT, 'errorCode');
  if (errorCode < 1 || errorCode > MAX_ERROR_CODE) throw new DeviceCaError('bad-request', `error code ${errorCode} is not one of RFC 4108 §4`);
  const out: FirmwareReceipt = { kind, ...base, package: null, errorCode };
  if (f[i]?.tag === 0x02) out.vendorErrorCode = smallInt(f[i++], 'vendorErrorCode', true);
  if (f[i]?.tag === 0x30 || f[i]?.tag === 0x04) out.package = readPackageIdentifier(f[i++]);
  if (f[i]?.tag === 0xa1) i++; // config: the module's current firmware, not recorded
  if (i !== f.length) throw new DeviceCaError('bad-request', 'the error report has fields RFC 4108 §4 does not define');
  return out;
}

/**
 * buildFirmwareReceipt signs a receipt or error report with the device key: a SignedData v3 (RFC 4108
 * §3/§4: eContentType id-ct-firmwareLoadReceipt / -LoadError, one SignerInfo, signed attributes
 * contentType, messageDigest and signingTime), carrying the device certificate.
 */
export async function buildFirmwareReceipt(r: FirmwareReceipt, signer: { certificate: Buffer; key: SigningKey }, now: Date): Promise<Buffer> {
  return buildSignedData({
    content: encodeFirmwareReceipt(r),
    contentType: r.kind === 'loaded' ? CMS_OID.firmwareLoadReceipt : CMS_OID.firmwareLoadError,
    signer,
    attributes: [{ type: CMS_OID.signingTime, values: [time(now)] }],
    certificates: [signer.certificate],
  });
}

/**
 * readFirmwareReceipt verifies a signed receipt or error report (DER ContentInfo / SignedData with one
 * SignerInfo) and decodes it. The signer's certificate is looked up among `candidates` first (the device
 * certificate the transport proved: RFC 4108 lets a memory-constrained module leave its certificate out
 * and name it by issuer and serial or key identifier), then among those the message carries.
 * Errors: 'bad-request' (malformed, not a receipt), 'bad-algorithm', 'bad-signature'.
 */
export function readFirmwareReceipt(der: Buffer, candidates: Buffer[]): SignedFirmwareReceipt {
  const p = parseSignedDataParts(der);
  const kind = p.eContentType === CMS_OID.firmwareLoadReceipt ? 'loaded' : p.eContentType === CMS_OID.firmwareLoadError ? 'error' : null;
  if (!kind) throw new DeviceCaError('bad-request', `the content type ${p.eContentType} is not a firmware load receipt or error report (RFC 4108 §3, §4)`);
  if (!p.eContent) throw new DeviceCaError('bad-request', 'the receipt has no content');
  if (p.signerInfos.length !== 1) throw new DeviceCaError('bad-request', 'a receipt has exactly one signer (RFC 4108 §3)');
  const certificates = [...candidates, ...p.certificates.filter((c) => c[0] === 0x30)];
  const v = verifySignerInfo(p.signerInfos[0], p.eContentType, p.eContent, certificates);
  return { receipt: decodeFirmwareReceipt(kind, p.eContent), signerCertificate: v.certificate, signingTime: v.signingTime };
}

function smallInt(t: Tlv, what: string, signed = false): number {
  if (t.value.length === 0 || t.value.length > 4) throw new DeviceCaError('bad-request', `receipt ${what} cannot be read`);
  if (!signed && (t.value[0] & 0x80) !== 0) throw new DeviceCaError('bad-request', `receipt ${what} is negative`);
  return t.value.readIntBE(0, t.value.length);
}

function utf8(b: Buffer): string {
  const s = new TextDecoder('utf-8', { fatal: false }).decode(b);
  if (s.length === 0 || s.length > 128) throw new DeviceCaError('bad-request', 'hwSerialNum must be 1-128 characters');
  return s;
}
