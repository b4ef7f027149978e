import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { children, decodeOid, readOne, Tlv } from '../der/der-reader';
import { DeviceCaError } from '../errors/device-ca-error';
import { CMS_OID } from './cms-algorithms';
import { octets, parsed, toBuffer, unwrapContentInfo } from './content-info';
import { parseSignedDataParts } from './signed-data-parts';

/**
 * SignedMessageParts: what verifySignedData checks in a SignedData with one SignerInfo (RFC 5652 §5), as
 * bytes: however the message was parsed, the same checks run on the same values.
 */
export interface SignedMessageParts {
  eContentType: string;
  /** eContent: the encapsulated content's octets, or null when absent */
  eContent: Buffer | null;
  /** certificates: DER of every certificate the message carries */
  certificates: Buffer[];
  /** sid: DER of the IssuerAndSerialNumber naming the signer, or null for a subjectKeyIdentifier (matches nothing here) */
  sid: Buffer | null;
  digestAlgorithm: string;
  signatureAlgorithm: string;
  /** signedAttrs: the signed attributes as received, retagged as the SET OF the signature covers (§5.4); null when absent */
  signedAttrs: Buffer | null;
  /** attributes: each signed attribute's type and the DER of its values, in message order */
  attributes: { type: string; values: Buffer[] }[];
  signature: Buffer;
}

/**
 * signedMessageParts reads a SignedData. DER as clients send it (certmonger, openssl, ours) is split
 * with the bounds-checked DER walker (readDerParts, over signed-data-parts.ts); anything else (BER indefinite lengths, constructed
 * OCTET STRINGs, several signers, other certificate choices) goes through pkijs, which is much slower:
 * building pkijs's SignedData schema and matching against it cost most of a SCEP request's CPU (profiled:
 * about 5 ms of 8 ms per verifySignedData, another 1.3 ms re-encoding the certificates it parsed).
 */
export function signedMessageParts(ber: Buffer): SignedMessageParts {
  return readDerParts(ber) ?? readPkijsParts(ber);
}

/** readDerParts: the parts of a DER SignedData of the usual shape, or null to leave the message to pkijs. */
export function readDerParts(ber: Buffer): SignedMessageParts | null {
  try {
    const p = parseSignedDataParts(ber);
    // other CertificateChoices (attribute certificates) and several signers: pkijs decides
    if (p.signerInfos.length !== 1 || p.certificates.some((c) => c[0] !== 0x30)) return null;
    const { eContent, certificates } = p;
    const si = children(readOne(p.signerInfos[0], 0x30), 8);
    let j = 0;
    const take = (tag: number): Tlv | null => (si[j]?.tag === tag ? si[j++] : null);
    if (!take(0x02)) return null;
    const sidT = si[j++];
    if (!sidT || (sidT.tag !== 0x30 && sidT.tag !== 0x80)) return null;
    const digestAlg = take(0x30);
    const attrsT = take(0xa0);
    const sigAlg = take(0x30);
    const signature = take(0x04);
    take(0xa1); // unsigned attributes: not used
    if (!digestAlg || !sigAlg || !signature || j !== si.length) return null;

    const attributes: { type: string; values: Buffer[] }[] = [];
    if (attrsT)
      for (const a of children(attrsT)) {
        const [type, values, extra] = children(readOne(a.full, 0x30), 3);
        if (!type || !values || extra || values.tag !== 0x31) return null;
        attributes.push({ type: decodeOid(type), values: children(values).map((v) => v.full) });
      }
    return {
      eContentType: p.eContentType,
      eContent,
      certificates,
      sid: sidT.tag === 0x30 ? sidT.full : null,
      digestAlgorithm: algorithmOid(digestAlg),
      signatureAlgorithm: algorithmOid(sigAlg),
      signedAttrs: attrsT ? Buffer.concat([Buffer.from([0x31]), attrsT.full.subarray(1)]) : null,
      attributes,
      signature: signature.value,
    };
  } catch (e) {
    if (e instanceof DeviceCaError) return null;
    throw e;
  }
}

/** algorithmOid: the OID of an AlgorithmIdentifier (RFC 5280 §4.1.1.2). */
function algorithmOid(t: Tlv): string {
  const [o] = children(t, 2);
  if (!o) throw new DeviceCaError('bad-request', 'empty AlgorithmIdentifier');
  return decodeOid(o);
}

/** readPkijsParts: the parts of any BER SignedData pkijs reads; 'bad-request' when it cannot. */
export function readPkijsParts(ber: Buffer): SignedMessageParts {
  const content = unwrapContentInfo(ber, CMS_OID.signedData, 'SignedData');
  const sd = parsed('SignedData', () => new pkijs.SignedData({ schema: content }));
  if (sd.signerInfos.length !== 1) throw new DeviceCaError('bad-request', 'SignedData must have exactly one signer');
  const si = sd.signerInfos[0];
  const eContent = sd.encapContentInfo.eContent;
  return {
    eContentType: sd.encapContentInfo.eContentType,
    eContent: eContent ? octets(eContent) : null,
    certificates: (sd.certificates ?? []).filter((c): c is pkijs.Certificate => c instanceof pkijs.Certificate).map((c) => toBuffer(c.toSchema().toBER())),
    sid: si.sid instanceof pkijs.IssuerAndSerialNumber ? toBuffer(si.sid.toSchema().toBER()) : null,
    digestAlgorithm: si.digestAlgorithm.algorithmId,
    signatureAlgorithm: si.signatureAlgorithm.algorithmId,
    // pkijs keeps the attributes' bytes as received, retagged as SET OF, in encodedValue
    signedAttrs: si.signedAttrs ? toBuffer(si.signedAttrs.encodedValue) : null,
    attributes: (si.signedAttrs?.attributes ?? []).map((a) => ({ type: a.type, values: a.values.map((v: asn1js.AsnType) => toBuffer(v.toBER())) })),
    signature: toBuffer(si.signature.valueBlock.valueHexView),
  };
}
