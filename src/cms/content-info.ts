import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { DeviceCaError } from '../errors/device-ca-error';

/**
 * unwrapContentInfo parses a BER ContentInfo (RFC 5652 §3) of the expected content type and returns its
 * content. BER, not only DER: clients may send indefinite lengths and constructed OCTET STRINGs.
 */
export function unwrapContentInfo(ber: Buffer, contentType: string, what: string): asn1js.AsnType {
  // asn1js throws (rather than reporting offset -1) on some malformed primitives, e.g. a GeneralizedTime it cannot convert
  const asn = parsed(what, () => asn1js.fromBER(new Uint8Array(ber.buffer, ber.byteOffset, ber.byteLength)));
  if (asn.offset === -1 || asn.offset !== ber.length) throw new DeviceCaError('bad-request', `${what} is not valid BER`);
  let ci: pkijs.ContentInfo;
  try {
    ci = new pkijs.ContentInfo({ schema: asn.result });
  } catch (e) {
    throw new DeviceCaError('bad-request', `${what} is not a CMS ContentInfo`, { cause: e });
  }
  if (ci.contentType !== contentType) throw new DeviceCaError('bad-request', `${what} has content type ${ci.contentType}`);
  return ci.content as asn1js.AsnType;
}

/** octets returns an OCTET STRING's bytes, joining the segments of a constructed (BER) one. */
export function octets(s: asn1js.OctetString): Buffer {
  if (!s.idBlock.isConstructed) return Buffer.from(s.valueBlock.valueHexView);
  const parts: Buffer[] = [];
  for (const p of s.valueBlock.value) {
    if (!(p instanceof asn1js.OctetString)) throw new DeviceCaError('bad-request', 'constructed OCTET STRING holds another type');
    parts.push(octets(p));
  }
  return Buffer.concat(parts);
}

/** toBuffer views an ArrayBuffer or typed array as a Buffer without copying. */
export function toBuffer(b: ArrayBuffer | ArrayBufferView): Buffer {
  return b instanceof ArrayBuffer ? Buffer.from(b) : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/** parsed runs a pkijs parse step and turns its exceptions into 'bad-request' (ARCHITECTURE rule 11). */
export function parsed<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof DeviceCaError) throw e;
    throw new DeviceCaError('bad-request', `${what} cannot be parsed`, { cause: e, detail: e instanceof Error ? e.message : String(e) });
  }
}
