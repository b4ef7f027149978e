import * as asn1js from 'asn1js';
import * as crypto from 'node:crypto';
import * as pkijs from 'pkijs';
import { KU, assembleCertificate, basicConstraints, encodeTbs, keyIdentifier, keyUsage, newSerial, subjectKeyIdentifier } from '../src/ca/certificate-encoder';
import { encodeName } from '../src/ca/name';
import { OcspResponder, OcspSingleResponse, certIdHashes, encodeCertId, ocspResponderExtensions, parseOcspRequest } from '../src/ca/ocsp-codec';
import { children, readOne } from '../src/der/der-reader';
import { contextExplicit, octetString, oid, seq } from '../src/der/der-writer';
import { OID } from '../src/der/oids';
import { SigningKey } from '../src/keys/key-backend';
import { generateKeyPair, softwareSigningKey } from '../src/keys/software-key-backend';
import { BenchRow, bestOfRounds, fmtMicros, fmtRate } from './bench-table';

/**
 * bench/ocsp-codec: the per-request work of the OCSP responder without HTTP. One op parses an
 * openssl-shaped request (one SHA-1 CertID, a 16-octet nonce), builds the BasicOCSPResponse (good,
 * thisUpdate/nextUpdate, nonce echoed, responder certificate) and signs it with a P-256 key. The baseline
 * is the raw `crypto.sign` rate of the same key over a TBS of the same size: the ratio says how close
 * the codec comes to the signature's own cost. Two more rows put the request parser and the unsigned
 * response encoder beside pkijs doing the same work.
 *
 *   npx tsc -p tsconfig.json --rootDir . --outDir /tmp/benchbuild && NODE_PATH=$PWD/node_modules node /tmp/benchbuild/bench/ocsp-codec.js
 */

interface Fixture {
  request: Buffer;
  responder: OcspResponder;
  unsignedResponder: OcspResponder;
  privateKey: crypto.KeyObject;
  responderDer: Buffer;
  /** fixedSig: what unsignedResponder's key returns */
  fixedSig: Buffer;
  tbsSize: number;
  thisUpdate: Date;
  nextUpdate: Date;
}

async function fixture(): Promise<Fixture> {
  const { privateKey } = generateKeyPair('ecdsa-p256');
  const key = softwareSigningKey(privateKey, 'ecdsa-p256', 'memory');
  const caName = encodeName([
    { type: 'O', value: 'device-ca bench' },
    { type: 'CN', value: 'OCSP bench CA' },
  ]);
  const now = Date.now();
  // a self-issued responder certificate with the delegated-responder extensions: realistic `certs` size
  const tbs = encodeTbs({
    serial: newSerial(),
    signatureAlgorithm: key.signatureAlgorithm,
    issuer: caName,
    notBefore: new Date(now - 3_600_000),
    notAfter: new Date(now + 30 * 86_400_000),
    subject: encodeName([{ type: 'CN', value: 'OCSP responder' }]),
    spki: key.spki,
    extensions: [basicConstraints(false), keyUsage([KU.digitalSignature]), subjectKeyIdentifier(keyIdentifier(key.spki)), ...ocspResponderExtensions()],
  });
  const responderDer = assembleCertificate(tbs, key.signatureAlgorithm, await key.sign(tbs));
  // the request openssl sends: OCSPRequest { TBSRequest { requestList { Request { CertID } }, [2] { nonce } } }
  const certId = encodeCertId({ hash: 'sha1', ...certIdHashes(caName, key.spki, 'sha1'), serialNumber: newSerial().toString('hex') });
  const nonce = seq(oid(OID.ocspNonce), octetString(octetString(crypto.randomBytes(16))));
  const request = seq(seq(seq(seq(certId)), contextExplicit(2, seq(nonce))));
  // a key whose sign() returns a fixed DER signature: the encoder's cost alone
  const fixedSig = crypto.sign('sha256', Buffer.from('x'), { key: privateKey, dsaEncoding: 'der' });
  const unsignedKey: SigningKey = { ...key, sign: () => Promise.resolve(fixedSig) };
  const responder = new OcspResponder(key, responderDer);
  const thisUpdate = new Date(Math.floor(now / 1000) * 1000);
  const probe = await responder.respond([{ certId, status: 'good', thisUpdate }], { nonce: parseOcspRequest(request).nonce });
  return {
    request,
    responder,
    unsignedResponder: new OcspResponder(unsignedKey, responderDer),
    privateKey,
    responderDer,
    fixedSig,
    tbsSize: tbsLength(probe),
    thisUpdate,
    nextUpdate: new Date(thisUpdate.getTime() + 3_600_000),
  };
}

/** tbsLength: the size of ResponseData in an OCSPResponse, so the raw-sign baseline signs as many bytes. */
function tbsLength(resp: Buffer): number {
  const responseBytes = children(readOne(resp, 0x30))[1];
  const basic = children(readOne(responseBytes.value, 0x30))[1];
  return children(readOne(basic.value, 0x30))[0].full.length;
}

/** pkijsParse: the same questions answered through pkijs (CertIDs as hex, the nonce extension value). */
function pkijsParse(der: Uint8Array<ArrayBuffer>): { serials: string[]; nonce?: ArrayBuffer } {
  const req = pkijs.OCSPRequest.fromBER(der);
  const serials = req.tbsRequest.requestList.map((r) => Buffer.from(r.reqCert.serialNumber.valueBlock.valueHexView).toString('hex'));
  const n = req.tbsRequest.requestExtensions?.find((e) => e.extnID === OID.ocspNonce);
  return { serials, nonce: n?.extnValue.valueBlock.valueHexView.slice().buffer };
}

/** pkijsBuild: the same unsigned response through pkijs objects (ResponseData, BasicOCSPResponse, OCSPResponse). */
function pkijsBuild(f: Fixture, certId: pkijs.CertID, nonce: Buffer | undefined, responderCert: pkijs.Certificate, keyHash: Buffer, producedAt: Date): Buffer {
  const rd = new pkijs.ResponseData({
    responderID: new asn1js.OctetString({ valueHex: keyHash }),
    producedAt,
    responses: [
      new pkijs.SingleResponse({
        certID: certId,
        certStatus: new asn1js.Primitive({ idBlock: { tagClass: 3, tagNumber: 0 } }),
        thisUpdate: f.thisUpdate,
        nextUpdate: f.nextUpdate,
      }),
    ],
    ...(nonce ? { responseExtensions: [new pkijs.Extension({ extnID: OID.ocspNonce, extnValue: new Uint8Array(nonce).buffer })] } : {}),
  });
  rd.tbsView = new Uint8Array(rd.toSchema(true).toBER());
  const basic = new pkijs.BasicOCSPResponse({
    tbsResponseData: rd,
    signatureAlgorithm: new pkijs.AlgorithmIdentifier({ algorithmId: OID.ecdsaWithSHA256 }),
    signature: new asn1js.BitString({ valueHex: new Uint8Array(f.fixedSig).buffer }),
    certs: [responderCert],
  });
  const resp = new pkijs.OCSPResponse({
    responseStatus: new asn1js.Enumerated({ value: 0 }),
    responseBytes: new pkijs.ResponseBytes({ responseType: OID.ocspBasic, response: new asn1js.OctetString({ valueHex: basic.toSchema().toBER() }) }),
  });
  return Buffer.from(resp.toSchema().toBER());
}

/** benchOcspCodec: rows {name, figure, baseline, ratio} for the OCSP codec; see the file comment. */
export async function benchOcspCodec(): Promise<BenchRow[]> {
  const f = await fixture();
  const single = (certId: OcspSingleResponse['certId']): OcspSingleResponse[] => [{ certId, status: 'good', thisUpdate: f.thisUpdate, nextUpdate: f.nextUpdate }];
  const responderCert = pkijs.Certificate.fromBER(new Uint8Array(f.responderDer));
  const requestBytes = new Uint8Array(f.request);
  const keyHash = f.responder.keyHash;
  const parsed = parseOcspRequest(f.request);
  const pkijsCertId = pkijs.OCSPRequest.fromBER(requestBytes).tbsRequest.requestList[0].reqCert; // as pkijs' parse hands it over
  const second = (): Date => new Date(Math.floor(Date.now() / 1000) * 1000);
  const full = async (): Promise<void> => {
    const req = parseOcspRequest(f.request);
    await f.responder.respond(single(req.certIds[0]), { nonce: req.nonce });
  };
  const signData = crypto.randomBytes(f.tbsSize);
  const m = await bestOfRounds(
    {
      full: { op: full, minSeconds: 0.5, warmup: 200 },
      sign: { op: () => crypto.sign('sha256', signData, { key: f.privateKey, dsaEncoding: 'der' }), minSeconds: 0.5, warmup: 200 },
      parse: { op: () => parseOcspRequest(f.request), minSeconds: 0.3, warmup: 1000 },
      parsePkijs: { op: () => pkijsParse(requestBytes), minSeconds: 0.3, warmup: 200 },
      encode: { op: () => f.unsignedResponder.respond(single(parsed.certIds[0]), { nonce: parsed.nonce }), minSeconds: 0.3, warmup: 1000 },
      encodePkijs: { op: () => pkijsBuild(f, pkijsCertId, parsed.nonce, responderCert, keyHash, second()), minSeconds: 0.3, warmup: 200 },
    },
    3,
  );
  // the two encoders must agree byte for byte, or the speed-up means nothing
  const producedAt = second();
  const same = (await f.unsignedResponder.respond(single(parsed.certIds[0]), { nonce: parsed.nonce, producedAt })).equals(pkijsBuild(f, pkijsCertId, parsed.nonce, responderCert, keyHash, producedAt));
  return [
    {
      name: 'OCSP parse + build + sign, P-256, 1 CertID + nonce',
      figure: `${fmtRate(m.full.perSecond, 'resp')} (${fmtMicros(m.full.microsPerOp)})`,
      baseline: `crypto.sign P-256 over ${f.tbsSize} B: ${fmtRate(m.sign.perSecond, 'sig')} (${fmtMicros(m.sign.microsPerOp)})`,
      ratio: m.full.perSecond / m.sign.perSecond,
      note: 'fraction of the raw signing rate',
    },
    {
      name: 'OCSP request parse (CertIDs + nonce)',
      figure: `${fmtRate(m.parse.perSecond)} (${fmtMicros(m.parse.microsPerOp)})`,
      baseline: `pkijs OCSPRequest.fromBER ${fmtRate(m.parsePkijs.perSecond)} (${fmtMicros(m.parsePkijs.microsPerOp)})`,
      ratio: m.parse.perSecond / m.parsePkijs.perSecond,
      note: 'speed-up',
    },
    {
      name: 'OCSP response encode, signature excluded',
      figure: `${fmtRate(m.encode.perSecond)} (${fmtMicros(m.encode.microsPerOp)})`,
      baseline: `pkijs BasicOCSPResponse/OCSPResponse ${fmtRate(m.encodePkijs.perSecond)} (${fmtMicros(m.encodePkijs.microsPerOp)})`,
      ratio: m.encode.perSecond / m.encodePkijs.perSecond,
      note: `speed-up; bytes ${same ? '=' : '!='} pkijs'`,
    },
  ];
}

if (require.main === module) benchOcspCodec().then((r) => console.table(r));
