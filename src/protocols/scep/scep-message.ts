import * as crypto from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { parsed, toBuffer, unwrapContentInfo } from '../../cms/content-info';
import { CMS_OID } from '../../cms/cms-algorithms';
import { octetString, printableString, utf8String } from '../../der/der-writer';
import { DeviceCaError } from '../../errors/device-ca-error';

/** SCEP_OID: the signed attributes of a SCEP pkiMessage (RFC 8894 §3.2.1.2: id-attributes, and §3.2.1.4.5 id-scep-failInfoText). */
export const SCEP_OID = {
  messageType: '2.16.840.1.113733.1.9.2',
  pkiStatus: '2.16.840.1.113733.1.9.3',
  failInfo: '2.16.840.1.113733.1.9.4',
  senderNonce: '2.16.840.1.113733.1.9.5',
  recipientNonce: '2.16.840.1.113733.1.9.6',
  transactionID: '2.16.840.1.113733.1.9.7',
  failInfoText: '1.3.6.1.5.5.7.24.1',
} as const;

/** MESSAGE_TYPE: RFC 8894 §3.2.1.2 messageType values (decimal PrintableStrings). */
export const MESSAGE_TYPE = { CertRep: '3', RenewalReq: '17', PKCSReq: '19', CertPoll: '20', GetCert: '21', GetCRL: '22' } as const;

/** PKI_STATUS: RFC 8894 §3.2.1.3 pkiStatus values. */
export const PKI_STATUS = { SUCCESS: '0', FAILURE: '2', PENDING: '3' } as const;

/**
 * ScepHeader: the attributes a CertRep echoes, as the DER of the value the requester sent, so they go back
 * byte for byte (RFC 8894 §3.3.2: the same transactionID; recipientNonce = the request's senderNonce).
 */
export interface ScepHeader {
  messageType: string;
  transactionId: Buffer;
  senderNonce: Buffer;
}

/**
 * scepHeader reads messageType, transactionID and senderNonce from the signed attributes. Called on a
 * verified message, or (peekScepHeader) on one whose signature did not verify, to address the signed
 * FAILURE reply; 'bad-request' when they are missing or malformed.
 */
export function scepHeader(attributes: ReadonlyMap<string, Buffer[]>): ScepHeader {
  const one = (type: string): Buffer => {
    const v = attributes.get(type);
    if (!v || v.length !== 1) throw new DeviceCaError('bad-request', 'a SCEP attribute (messageType, transactionID or senderNonce) is missing');
    return v[0];
  };
  const mt = asn1js.fromBER(one(SCEP_OID.messageType)).result;
  if (!(mt instanceof asn1js.PrintableString)) throw new DeviceCaError('bad-request', 'messageType is not a PrintableString');
  const transactionId = one(SCEP_OID.transactionID);
  if (transactionId[0] !== 0x13 || transactionId.length > 256) throw new DeviceCaError('bad-request', 'transactionID is not a PrintableString of at most 256 bytes');
  const senderNonce = one(SCEP_OID.senderNonce);
  if (senderNonce[0] !== 0x04 || senderNonce.length > 66) throw new DeviceCaError('bad-request', 'senderNonce is not an OCTET STRING of at most 64 bytes');
  return { messageType: mt.valueBlock.value, transactionId, senderNonce };
}

/**
 * peekScepHeader reads the header of a SignedData WITHOUT verifying it: only to address the FAILURE reply
 * to a message that failed verification (RFC 8894 §3.3.2.2, badMessageCheck). Nothing read here is
 * trusted; 'bad-request' when there is nothing to answer (the caller then replies HTTP 400).
 */
export function peekScepHeader(ber: Buffer): ScepHeader {
  const content = unwrapContentInfo(ber, CMS_OID.signedData, 'SignedData');
  const sd = parsed('SignedData', () => new pkijs.SignedData({ schema: content }));
  const attrs = sd.signerInfos.length === 1 ? sd.signerInfos[0].signedAttrs?.attributes : undefined;
  if (!attrs) throw new DeviceCaError('bad-request', 'SignedData has no signer with signed attributes');
  // re-encoding a value pkijs accepted can still throw on hostile input (a RangeError from a DataView): bad-request
  const values = parsed('SignedData attributes', () => attrs.map((a): [string, Buffer[]] => [a.type, a.values.map((v: asn1js.AsnType) => toBuffer(v.toBER()))]));
  return scepHeader(new Map(values));
}

/** CertRepStatus: what a CertRep says, and for FAILURE why (failInfo number and text). */
export type CertRepStatus = { status: 'SUCCESS' } | { status: 'PENDING' } | { status: 'FAILURE'; failInfo: number; text: string };

/** certRepAttributes: the signed attributes of a CertRep (RFC 8894 §3.3.2), a fresh senderNonce included. */
export function certRepAttributes(request: ScepHeader, rep: CertRepStatus): { type: string; values: Buffer[] }[] {
  const attrs: { type: string; values: Buffer[] }[] = [
    { type: SCEP_OID.transactionID, values: [request.transactionId] },
    { type: SCEP_OID.messageType, values: [printableString(MESSAGE_TYPE.CertRep)] },
    { type: SCEP_OID.pkiStatus, values: [printableString(PKI_STATUS[rep.status])] },
    { type: SCEP_OID.senderNonce, values: [octetString(crypto.randomBytes(16))] },
    { type: SCEP_OID.recipientNonce, values: [request.senderNonce] },
  ];
  if (rep.status === 'FAILURE') {
    attrs.push({ type: SCEP_OID.failInfo, values: [printableString(String(rep.failInfo))] });
    attrs.push({ type: SCEP_OID.failInfoText, values: [utf8String(rep.text)] });
  }
  return attrs;
}
