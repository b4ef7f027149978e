import * as x509 from '@peculiar/x509';
import * as asn1js from 'asn1js';
import { spawn, spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as pkijs from 'pkijs';
import {
  KU,
  assembleCertificate,
  authorityInfoAccess,
  authorityKeyIdentifier,
  basicConstraints,
  encodeTbs,
  keyIdentifier,
  keyUsage,
  newSerial,
  subjectKeyIdentifier,
} from '../../../src/ca/certificate-encoder';
import {
  OcspCertId,
  OcspResponder,
  OcspSingleResponse,
  certIdHashes,
  certIdMatchesIssuer,
  encodeBasicOcspResponse,
  encodeCertId,
  encodeOcspError,
  ocspResponderExtensions,
  parseOcspRequest,
} from '../../../src/ca/ocsp-codec';
import { encodeName } from '../../../src/ca/name';
import { toPem } from '../../../src/ca/pem';
import { children, readOne } from '../../../src/der/der-reader';
import { NULL, contextExplicit, integer, octetString, oid, seq, tlv } from '../../../src/der/der-writer';
import { OID } from '../../../src/der/oids';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { SigningKey } from '../../../src/keys/key-backend';
import { generateKeyPair, softwareSigningKey } from '../../../src/keys/software-key-backend';

/**
 * ocsp-codec: requests that openssl builds parse to the CertIDs and nonce openssl prints and pkijs computes;
 * malformed, truncated, oversized and randomly corrupted requests are DeviceCaError('bad-request') and
 * nothing else; responses equal pkijs' encoding byte for byte, and `openssl ocsp` verifies them (from a
 * file, and over HTTP with a live nonce round trip).
 */

const OPENSSL = '/usr/bin/openssl';
pkijs.setEngine('node-webcrypto', new pkijs.CryptoEngine({ name: 'node-webcrypto', crypto: crypto.webcrypto as unknown as ConstructorParameters<typeof pkijs.CryptoEngine>[0]['crypto'] }));

const sec = (ms: number): Date => new Date(Math.floor(ms / 1000) * 1000);
const NOW = sec(Date.now() - 60_000);
const HOUR = 3_600_000;

function openssl(args: string[], cwd: string): { status: number | null; out: string } {
  const r = spawnSync(OPENSSL, args, { cwd, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** opensslAsync: for the HTTP test, where the responder runs in this process and must not be blocked. */
function opensslAsync(args: string[], cwd: string): Promise<{ status: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(OPENSSL, args, { cwd });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('error', reject);
    p.on('close', (status) => resolve({ status, out }));
  });
}

// ------------------------------------------------------------------ a small PKI

interface Party {
  key: SigningKey;
  privateKey: crypto.KeyObject;
  der: Buffer;
  serial: Buffer;
  file: string;
}
interface Pki {
  dir: string;
  caName: Buffer;
  ca: Party;
  responder: Party;
  good: Party;
  revoked: Party;
  unknown: Party;
}

async function makePki(): Promise<Pki> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-ocsp-'));
  const caName = encodeName([
    { type: 'O', value: 'device-ca tests' },
    { type: 'CN', value: 'OCSP Test CA' },
  ]);
  const { privateKey: caPriv } = generateKeyPair('ecdsa-p256');
  const caKey = softwareSigningKey(caPriv, 'ecdsa-p256', 'memory');
  const caSki = keyIdentifier(caKey.spki);
  const issue = async (file: string, cn: string | null, extensions: (spki: Buffer) => Buffer[], self?: { priv: crypto.KeyObject; key: SigningKey }): Promise<Party> => {
    const priv = self?.priv ?? generateKeyPair('ecdsa-p256').privateKey;
    const key = self?.key ?? softwareSigningKey(priv, 'ecdsa-p256', 'memory');
    const serial = newSerial();
    const tbs = encodeTbs({
      serial,
      signatureAlgorithm: caKey.signatureAlgorithm,
      issuer: caName,
      notBefore: new Date(NOW.getTime() - 24 * HOUR),
      notAfter: new Date(NOW.getTime() + 30 * 24 * HOUR),
      subject: cn === null ? caName : encodeName([{ type: 'CN', value: cn }]),
      spki: key.spki,
      extensions: extensions(key.spki),
    });
    const der = assembleCertificate(tbs, caKey.signatureAlgorithm, await caKey.sign(tbs));
    fs.writeFileSync(path.join(dir, file), toPem(der, 'CERTIFICATE'));
    fs.writeFileSync(path.join(dir, file.replace('.pem', '.key')), priv.export({ type: 'pkcs8', format: 'pem' }) as string);
    return { key, privateKey: priv, der, serial, file };
  };
  const leafExt = (spki: Buffer) => [
    basicConstraints(false),
    keyUsage([KU.digitalSignature]),
    subjectKeyIdentifier(keyIdentifier(spki)),
    authorityKeyIdentifier(caSki),
    authorityInfoAccess('http://127.0.0.1/ocsp', undefined),
  ];
  const ca = await issue('ca.pem', null, (spki) => [basicConstraints(true), keyUsage([KU.digitalSignature, KU.keyCertSign, KU.cRLSign]), subjectKeyIdentifier(keyIdentifier(spki))], {
    priv: caPriv,
    key: caKey,
  });
  const responder = await issue('responder.pem', 'OCSP responder', (spki) => [
    basicConstraints(false),
    keyUsage([KU.digitalSignature]),
    subjectKeyIdentifier(keyIdentifier(spki)),
    authorityKeyIdentifier(caSki),
    ...ocspResponderExtensions(),
  ]);
  return {
    dir,
    caName,
    ca,
    responder,
    good: await issue('good.pem', 'dev-good', leafExt),
    revoked: await issue('revoked.pem', 'dev-revoked', leafExt),
    unknown: await issue('unknown.pem', 'dev-unknown', leafExt),
  };
}

/** opensslRequest has openssl build a request and print it; returns the DER and the printed text. */
function opensslRequest(pki: Pki, args: string[]): { der: Buffer; text: string } {
  const r = openssl(['ocsp', '-issuer', 'ca.pem', ...args, '-reqout', 'req.der', '-req_text'], pki.dir);
  expect(r.status).toBe(0);
  return { der: fs.readFileSync(path.join(pki.dir, 'req.der')), text: r.out };
}

/** printed pulls "Label: HEX" values out of openssl's -req_text output. */
function printed(text: string, label: string): string[] {
  return [...text.matchAll(new RegExp(`${label}: ([0-9A-F]+)`, 'g'))].map((m) => m[1]);
}

// ------------------------------------------------------------------ a request builder for malformed cases

interface ReqSpec {
  version?: Buffer;
  certIds?: Buffer[];
  extensions?: Buffer[];
  tail?: Buffer[];
}
const sha1Alg = seq(oid(OID.sha1), NULL);
const certId = (alg = sha1Alg, nameHash = Buffer.alloc(20, 1), keyHash = Buffer.alloc(20, 2), serial = tlv(0x02, Buffer.from('0123', 'hex'))): Buffer =>
  seq(alg, octetString(nameHash), octetString(keyHash), serial);
const nonceExt = (value: Buffer): Buffer => seq(oid(OID.ocspNonce), octetString(value));
function buildRequest(s: ReqSpec): Buffer {
  const tbs: Buffer[] = [];
  if (s.version) tbs.push(s.version);
  tbs.push(seq(...(s.certIds ?? [certId()]).map((c) => seq(c))));
  if (s.extensions) tbs.push(contextExplicit(2, seq(...s.extensions)));
  return seq(seq(...tbs), ...(s.tail ?? []));
}

// ------------------------------------------------------------------ tests

let pki: Pki;
beforeAll(async () => {
  pki = await makePki();
});
afterAll(() => fs.rmSync(pki.dir, { recursive: true, force: true }));

describe('parseOcspRequest: requests openssl builds', () => {
  test.each([
    { label: 'SHA-1 CertID with a nonce (openssl default)', args: ['-cert', 'good.pem'], hash: 'sha1', certs: 1, nonce: true },
    { label: 'SHA-1 CertID, -no_nonce (RFC 5019 style)', args: ['-no_nonce', '-cert', 'good.pem'], hash: 'sha1', certs: 1, nonce: false },
    { label: 'SHA-256 CertID with a nonce', args: ['-sha256', '-cert', 'good.pem'], hash: 'sha256', certs: 1, nonce: true },
    { label: 'two certificates in one request', args: ['-cert', 'good.pem', '-cert', 'revoked.pem'], hash: 'sha1', certs: 2, nonce: true },
    {
      label: 'a signed request (optionalSignature accepted, not required)',
      args: ['-signer', 'responder.pem', '-signkey', 'responder.key', '-cert', 'good.pem'],
      hash: 'sha1',
      certs: 1,
      nonce: true,
    },
  ] as const)('$label', async (c) => {
    const { der, text } = opensslRequest(pki, [...c.args]);
    const req = parseOcspRequest(der);
    expect(req.certIds).toHaveLength(c.certs);
    expect(req.signed).toBe((c.args as readonly string[]).includes('-signer'));
    expect(req.certIds.map((id) => id.issuerNameHash.toString('hex').toUpperCase())).toEqual(printed(text, 'Issuer Name Hash'));
    expect(req.certIds.map((id) => id.issuerKeyHash.toString('hex').toUpperCase())).toEqual(printed(text, 'Issuer Key Hash'));
    expect(req.certIds.map((id) => id.serialNumber.toUpperCase())).toEqual(printed(text, 'Serial Number'));
    expect(req.certIds[0].serialNumber).toBe(pki.good.serial.toString('hex'));
    if (c.certs === 2) expect(req.certIds[1].serialNumber).toBe(pki.revoked.serial.toString('hex'));
    expect(req.certIds[0].hash).toBe(c.hash);
    expect(req.certIds[0].hashAlgorithm).toBe(c.hash === 'sha1' ? OID.sha1 : OID.sha256);
    // openssl prints the nonce extnValue (OCTET STRING of 16 octets): we hand back exactly those bytes
    if (c.nonce) {
      expect(req.nonce?.toString('hex').toUpperCase()).toBe(text.match(/OCSP Nonce: *\n\s*([0-9A-F]+)/)?.[1]);
      expect(req.nonce?.subarray(0, 2).toString('hex')).toBe('0410');
    } else expect(req.nonce).toBeUndefined();
    // the same hashes computed independently by pkijs from the two certificates
    const ref = new pkijs.CertID();
    await ref.createForCertificate(pkijs.Certificate.fromBER(pki.good.der), {
      hashAlgorithm: c.hash === 'sha1' ? 'SHA-1' : 'SHA-256',
      issuerCertificate: pkijs.Certificate.fromBER(pki.ca.der),
    });
    expect(req.certIds[0].issuerNameHash.equals(Buffer.from(ref.issuerNameHash.valueBlock.valueHexView))).toBe(true);
    expect(req.certIds[0].issuerKeyHash.equals(Buffer.from(ref.issuerKeyHash.valueBlock.valueHexView))).toBe(true);
    expect(certIdMatchesIssuer(req.certIds[0], pki.caName, pki.ca.key.spki)).toBe(true);
    expect(certIdMatchesIssuer(req.certIds[0], pki.caName, pki.responder.key.spki)).toBe(false);
    const ours = certIdHashes(pki.caName, pki.ca.key.spki, c.hash);
    expect(ours.issuerKeyHash.equals(req.certIds[0].issuerKeyHash)).toBe(true);
    // a CertID we encode for that serial is the one openssl sent
    expect(encodeCertId({ hash: c.hash, ...ours, serialNumber: req.certIds[0].serialNumber }).equals(req.certIds[0].der)).toBe(true);
  });
});

describe('parseOcspRequest: malformed input is DeviceCaError(bad-request)', () => {
  let valid: Buffer<ArrayBufferLike> = Buffer.alloc(0);
  beforeAll(() => {
    valid = opensslRequest(pki, ['-cert', 'good.pem']).der;
    expect(parseOcspRequest(valid).certIds).toHaveLength(1);
    expect(valid.length).toBeGreaterThan(100); // 120 bytes: one CertID, a 16-octet nonce
  });

  const expectBad = (f: () => unknown): void => {
    let err: unknown;
    try {
      f();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DeviceCaError);
    expect((err as DeviceCaError).code).toBe('bad-request');
  };

  // object rows: a callback with more parameters than a row has values makes jest pass `done` and wait
  const MALFORMED: { label: string; make: () => Buffer; limits?: { maxBytes?: number; maxCertIds?: number } }[] = [
    { label: 'empty input', make: () => Buffer.alloc(0) },
    { label: 'random garbage', make: () => crypto.randomBytes(200) },
    { label: 'text', make: () => Buffer.from('GET /ocsp HTTP/1.1\r\n\r\n') },
    { label: 'a bare SEQUENCE', make: () => Buffer.from('3000', 'hex') },
    { label: 'trailing bytes after the request', make: () => Buffer.concat([valid, Buffer.from([0])]) },
    { label: 'over maxBytes (a 120-byte request, limit 100)', make: () => valid, limits: { maxBytes: 100 } },
    { label: 'over the default 8 KiB', make: () => buildRequest({ certIds: [certId()], tail: [contextExplicit(0, octetString(Buffer.alloc(9000)))] }) },
    { label: 'more CertIDs than maxCertIds', make: () => buildRequest({ certIds: [certId(), certId()] }), limits: { maxCertIds: 1 } },
    { label: 'indefinite length', make: () => Buffer.from('3080' + valid.subarray(2).toString('hex') + '0000', 'hex') },
    { label: 'version v2', make: () => buildRequest({ version: contextExplicit(0, integer(1)) }) },
    { label: 'an empty requestList', make: () => buildRequest({ certIds: [] }) },
    { label: 'an MD5 CertID', make: () => buildRequest({ certIds: [certId(seq(oid('1.2.840.113549.2.5'), NULL), Buffer.alloc(16), Buffer.alloc(16))] }) },
    { label: 'a SHA-1 CertID with 32-octet hashes', make: () => buildRequest({ certIds: [certId(sha1Alg, Buffer.alloc(32), Buffer.alloc(32))] }) },
    { label: 'hash parameters other than NULL', make: () => buildRequest({ certIds: [certId(seq(oid(OID.sha1), integer(0)))] }) },
    { label: 'a negative serial', make: () => buildRequest({ certIds: [certId(sha1Alg, undefined, undefined, tlv(0x02, Buffer.from('ff01', 'hex')))] }) },
    { label: 'a serial over 20 octets', make: () => buildRequest({ certIds: [certId(sha1Alg, undefined, undefined, tlv(0x02, Buffer.alloc(21, 0x11)))] }) },
    { label: 'a serial that is not an INTEGER', make: () => buildRequest({ certIds: [certId(sha1Alg, undefined, undefined, octetString(Buffer.from('01', 'hex')))] }) },
    { label: 'a CertID with three fields', make: () => buildRequest({ certIds: [seq(sha1Alg, octetString(Buffer.alloc(20)), octetString(Buffer.alloc(20)))] }) },
    { label: 'a nonce of 65 octets (RFC 8954 §2.1)', make: () => buildRequest({ extensions: [nonceExt(octetString(Buffer.alloc(65, 7)))] }) },
    { label: 'an empty nonce', make: () => buildRequest({ extensions: [nonceExt(Buffer.alloc(0))] }) },
    { label: 'two nonce extensions', make: () => buildRequest({ extensions: [nonceExt(octetString(Buffer.alloc(16))), nonceExt(octetString(Buffer.alloc(16)))] }) },
    { label: 'an extension without extnValue', make: () => buildRequest({ extensions: [seq(oid(OID.ocspNonce))] }) },
    { label: 'a third top-level field', make: () => buildRequest({ tail: [contextExplicit(0, seq()), contextExplicit(1, seq())] }) },
  ];
  test.each(MALFORMED)('$label', ({ make, limits }) => {
    expectBad(() => parseOcspRequest(make(), limits));
  });

  test('a 64-octet nonce and a raw (not OCTET STRING wrapped) nonce are accepted and returned as sent', () => {
    const n64 = octetString(crypto.randomBytes(64));
    expect(parseOcspRequest(buildRequest({ extensions: [nonceExt(n64)] })).nonce?.equals(n64)).toBe(true);
    const raw = crypto.randomBytes(20);
    raw[0] = 0x01;
    expect(parseOcspRequest(buildRequest({ extensions: [nonceExt(raw)] })).nonce?.equals(raw)).toBe(true);
  });

  test('every truncation of a real request is rejected', () => {
    for (let n = 0; n < valid.length; n++) expectBad(() => parseOcspRequest(valid.subarray(0, n)));
  });

  test('5000 random corruptions either parse or throw bad-request, never anything else', () => {
    let parsed = 0;
    let rejected = 0;
    for (let i = 0; i < 5000; i++) {
      const b = Buffer.from(valid);
      const flips = 1 + (i % 3);
      for (let j = 0; j < flips; j++) b[crypto.randomInt(b.length)] = crypto.randomInt(256);
      try {
        parseOcspRequest(b);
        parsed++;
      } catch (e) {
        expect(e).toBeInstanceOf(DeviceCaError);
        expect((e as DeviceCaError).code).toBe('bad-request');
        rejected++;
      }
    }
    expect(parsed + rejected).toBe(5000);
    expect(rejected).toBeGreaterThan(1000);
  });
});

// ------------------------------------------------------------------ responses

/** referenceResponse rebuilds an OCSPResponse with pkijs from the same fields and our signature value. */
function referenceResponse(f: { responderCert: Buffer | null; producedAt: Date; nonce?: Buffer; singles: OcspSingleResponse[] }, signature: Buffer): Buffer {
  const responderCert = pkijs.Certificate.fromBER(f.responderCert ?? pki.ca.der);
  const keyHash = crypto.createHash('sha1').update(responderCert.subjectPublicKeyInfo.subjectPublicKey.valueBlock.valueHexView).digest();
  const rd = new pkijs.ResponseData({
    responderID: new asn1js.OctetString({ valueHex: keyHash }),
    producedAt: f.producedAt,
    responses: f.singles.map((s) => {
      const id = Buffer.isBuffer(s.certId) ? s.certId : s.certId.der;
      let certStatus: asn1js.AsnType;
      if (s.status === 'good') certStatus = new asn1js.Primitive({ idBlock: { tagClass: 3, tagNumber: 0 } });
      else if (s.status === 'unknown') certStatus = new asn1js.Primitive({ idBlock: { tagClass: 3, tagNumber: 2 } });
      else {
        const v: asn1js.AsnType[] = [new asn1js.GeneralizedTime({ valueDate: s.revokedAt })];
        const code = { keyCompromise: 1, superseded: 4, cessationOfOperation: 5 }[s.reason as string];
        if (code !== undefined) v.push(new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber: 0 }, value: [new asn1js.Enumerated({ value: code })] }));
        certStatus = new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber: 1 }, value: v });
      }
      return new pkijs.SingleResponse({
        certID: pkijs.CertID.fromBER(id),
        certStatus,
        thisUpdate: s.thisUpdate,
        ...(s.nextUpdate ? { nextUpdate: s.nextUpdate } : {}),
      });
    }),
    ...(f.nonce ? { responseExtensions: [new pkijs.Extension({ extnID: OID.ocspNonce, extnValue: new Uint8Array(f.nonce).buffer })] } : {}),
  });
  rd.tbsView = new Uint8Array(rd.toSchema(true).toBER());
  const basic = new pkijs.BasicOCSPResponse({
    tbsResponseData: rd,
    signatureAlgorithm: new pkijs.AlgorithmIdentifier({ algorithmId: OID.ecdsaWithSHA256 }),
    signature: new asn1js.BitString({ valueHex: new Uint8Array(signature).buffer }),
    ...(f.responderCert ? { certs: [responderCert] } : {}),
  });
  const resp = new pkijs.OCSPResponse({
    responseStatus: new asn1js.Enumerated({ value: 0 }),
    responseBytes: new pkijs.ResponseBytes({
      responseType: OID.ocspBasic,
      response: new asn1js.OctetString({ valueHex: basic.toSchema().toBER() }),
    }),
  });
  return Buffer.from(resp.toSchema().toBER());
}

/** basicOf unwraps OCSPResponse -> BasicOCSPResponse fields [tbs, sigAlg, signature, certs?]. */
function basicOf(resp: Buffer): ReturnType<typeof children> {
  const top = children(readOne(resp, 0x30));
  const rb = children(readOne(top[1].value, 0x30));
  return children(readOne(rb[1].value, 0x30));
}

describe('OcspResponder: byte equality with pkijs', () => {
  const cid = (p: Party, hash: 'sha1' | 'sha256' = 'sha1') => encodeCertId({ hash, ...certIdHashes(pki.caName, pki.ca.key.spki, hash), serialNumber: p.serial.toString('hex') });
  const cases: { label: string; delegated: boolean; nonce: boolean; singles: () => OcspSingleResponse[] }[] = [
    {
      label: 'good, delegated responder, nonce',
      delegated: true,
      nonce: true,
      singles: () => [{ certId: cid(pki.good), status: 'good', thisUpdate: NOW, nextUpdate: new Date(NOW.getTime() + HOUR) }],
    },
    {
      label: 'revoked with reason, CA as responder, no nonce',
      delegated: false,
      nonce: false,
      singles: () => [{ certId: cid(pki.revoked), status: 'revoked', revokedAt: new Date(NOW.getTime() - HOUR), reason: 'keyCompromise', thisUpdate: NOW, nextUpdate: new Date(NOW.getTime() + HOUR) }],
    },
    {
      label: 'revoked without reason (unspecified omitted), unknown, no nextUpdate, SHA-256 CertIDs',
      delegated: true,
      nonce: true,
      singles: () => [
        { certId: cid(pki.revoked, 'sha256'), status: 'revoked', revokedAt: new Date(NOW.getTime() - HOUR), reason: 'unspecified', thisUpdate: NOW },
        { certId: cid(pki.unknown, 'sha256'), status: 'unknown', thisUpdate: NOW },
        { certId: cid(pki.good, 'sha256'), status: 'revoked', revokedAt: new Date('2051-01-01T00:00:00Z'), reason: 'superseded', thisUpdate: NOW },
      ],
    },
  ];
  test.each(cases)('$label', async (c) => {
    const nonce = c.nonce ? octetString(crypto.randomBytes(16)) : undefined;
    const responder = c.delegated ? new OcspResponder(pki.responder.key, pki.responder.der) : new OcspResponder(pki.ca.key, pki.ca.der, { includeCertificate: false });
    const singles = c.singles();
    const ours = await responder.respond(singles, { nonce, producedAt: NOW });
    const b = basicOf(ours);
    const sig = b[2].value.subarray(1);
    const ref = referenceResponse({ responderCert: c.delegated ? pki.responder.der : null, producedAt: NOW, nonce, singles }, sig);
    expect(ours.toString('hex')).toBe(ref.toString('hex'));
    const signer = c.delegated ? pki.responder.privateKey : pki.ca.privateKey;
    expect(crypto.verify('sha256', b[0].full, crypto.createPublicKey(signer), sig)).toBe(true);
  });

  test('encodeBasicOcspResponse (one-off) equals OcspResponder.respond apart from the ECDSA signature', async () => {
    const singles: OcspSingleResponse[] = [{ certId: cid(pki.good), status: 'good', thisUpdate: NOW }];
    const a = basicOf(await encodeBasicOcspResponse(pki.responder.key, pki.responder.der, singles, { producedAt: NOW }));
    const b = basicOf(await new OcspResponder(pki.responder.key, pki.responder.der).respond(singles, { producedAt: NOW }));
    expect(a[0].full.equals(b[0].full)).toBe(true);
    expect(a[3].full.equals(b[3].full)).toBe(true);
  });

  test('a responder certificate that does not hold the key is a config error', () => {
    expect(() => new OcspResponder(pki.responder.key, pki.ca.der)).toThrow(expect.objectContaining({ code: 'config' }));
  });

  test.each([
    ['malformedRequest', '3003' + '0a0101'],
    ['internalError', '3003' + '0a0102'],
    ['tryLater', '3003' + '0a0103'],
    ['sigRequired', '3003' + '0a0105'],
    ['unauthorized', '3003' + '0a0106'],
  ] as const)('encodeOcspError(%s) is %s and openssl reads it', (status, hex) => {
    const der = encodeOcspError(status);
    expect(der.toString('hex')).toBe(hex);
    const ref = new pkijs.OCSPResponse({ responseStatus: new asn1js.Enumerated({ value: parseInt(hex.slice(-2), 16) }) });
    expect(Buffer.from(ref.toSchema().toBER()).equals(der)).toBe(true);
    fs.writeFileSync(path.join(pki.dir, 'err.der'), der);
    const r = openssl(['ocsp', '-respin', 'err.der', '-resp_text', '-noverify'], pki.dir);
    expect(r.out).toContain(`Responder Error: ${status.toLowerCase()} (${parseInt(hex.slice(-2), 16)})`);
  });

  test('ocspResponderExtensions equal @peculiar/x509 EKU OCSPSigning and a NULL ocsp-nocheck; openssl names them', () => {
    const [eku, nocheck] = ocspResponderExtensions();
    expect(eku.equals(Buffer.from(new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.ocspSigning]).rawData))).toBe(true);
    expect(nocheck.equals(Buffer.from(new x509.Extension(OID.ocspNoCheck, false, new asn1js.Null().toBER()).rawData))).toBe(true);
    const text = openssl(['x509', '-in', 'responder.pem', '-noout', '-text'], pki.dir).out;
    expect(text).toMatch(/X509v3 Extended Key Usage: *\n *OCSP Signing/);
    expect(text).toContain('OCSP No Check');
  });
});

describe('OcspResponder: openssl ocsp verifies the responses', () => {
  const hashes = () => certIdHashes(pki.caName, pki.ca.key.spki, 'sha1');
  const single = (p: Party, s: Partial<OcspSingleResponse> & Pick<OcspSingleResponse, 'status'>): OcspSingleResponse =>
    ({
      certId: encodeCertId({ hash: 'sha1', ...hashes(), serialNumber: p.serial.toString('hex') }),
      thisUpdate: NOW,
      nextUpdate: new Date(NOW.getTime() + HOUR),
      ...s,
    }) as OcspSingleResponse;

  test.each([
    { label: 'good, delegated responder', leaf: 'good', delegated: true, status: 'good', expect: [/good\.pem: good/] },
    {
      label: 'revoked (keyCompromise), delegated responder',
      leaf: 'revoked',
      delegated: true,
      status: 'revoked',
      expect: [/revoked\.pem: revoked/, /Reason: keyCompromise/, /Revocation Time: /],
    },
    { label: 'unknown, CA as responder', leaf: 'unknown', delegated: false, status: 'unknown', expect: [/unknown\.pem: unknown/] },
    { label: 'good, CA as responder', leaf: 'good', delegated: false, status: 'good', expect: [/good\.pem: good/] },
  ] as const)('-respin: $label', async (c) => {
    const responder = c.delegated ? new OcspResponder(pki.responder.key, pki.responder.der) : new OcspResponder(pki.ca.key, pki.ca.der, { includeCertificate: false });
    const s = c.status === 'revoked' ? single(pki[c.leaf], { status: 'revoked', revokedAt: new Date(NOW.getTime() - HOUR), reason: 'keyCompromise' }) : single(pki[c.leaf], { status: c.status });
    fs.writeFileSync(path.join(pki.dir, 'resp.der'), await responder.respond([s]));
    const r = openssl(['ocsp', '-respin', 'resp.der', '-issuer', 'ca.pem', '-cert', `${c.leaf}.pem`, '-CAfile', 'ca.pem', '-no_nonce', '-resp_text'], pki.dir);
    expect(r.out).toContain('Response verify OK');
    for (const re of c.expect) expect(r.out).toMatch(re);
    // ResponderID byKey: SHA-1 of the signer's public key bits, as openssl prints it
    expect(r.out).toContain(`Responder Id: ${responder.keyHash.toString('hex').toUpperCase()}`);
    expect(responder.keyHash.equals(keyIdentifier((c.delegated ? pki.responder : pki.ca).key.spki))).toBe(true);
    expect(r.status).toBe(0);
  });

  test('-respin: a response signed by a key the CA did not certify fails verification', async () => {
    const { privateKey } = generateKeyPair('ecdsa-p256');
    const rogue = softwareSigningKey(privateKey, 'ecdsa-p256', 'memory');
    // the delegated certificate, but a different key signs: openssl must refuse the signature
    const forged = await new OcspResponder({ ...pki.responder.key, sign: (d: Buffer) => rogue.sign(d) }, pki.responder.der).respond([single(pki.good, { status: 'good' })]);
    fs.writeFileSync(path.join(pki.dir, 'forged.der'), forged);
    const r = openssl(['ocsp', '-respin', 'forged.der', '-issuer', 'ca.pem', '-cert', 'good.pem', '-CAfile', 'ca.pem', '-no_nonce'], pki.dir);
    expect(r.out).toContain('Response Verify Failure');
  });

  describe('over HTTP: openssl ocsp -url against an in-process responder built from these functions', () => {
    let server: http.Server;
    let url: string;
    let mode: 'echo' | 'drop-nonce' | 'wrong-nonce' = 'echo';
    const seen: { nonce?: string; serials: string[] }[] = [];
    beforeAll(async () => {
      const responder = new OcspResponder(pki.responder.key, pki.responder.der);
      const status: Record<string, Pick<OcspSingleResponse, 'status'> & { revokedAt?: Date; reason?: 'superseded' }> = {
        [pki.good.serial.toString('hex')]: { status: 'good' },
        [pki.revoked.serial.toString('hex')]: { status: 'revoked', revokedAt: new Date(NOW.getTime() - HOUR), reason: 'superseded' },
      };
      server = http.createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', async () => {
          let body: Buffer;
          try {
            const r = parseOcspRequest(Buffer.concat(chunks));
            seen.push({ nonce: r.nonce?.toString('hex'), serials: r.certIds.map((i) => i.serialNumber) });
            const nonce = mode === 'echo' ? r.nonce : mode === 'wrong-nonce' ? octetString(crypto.randomBytes(16)) : undefined;
            body = await responder.respond(
              r.certIds.map(
                (id: OcspCertId) => ({ certId: id, thisUpdate: NOW, nextUpdate: new Date(NOW.getTime() + HOUR), ...(status[id.serialNumber] ?? { status: 'unknown' }) }) as OcspSingleResponse,
              ),
              { nonce },
            );
          } catch {
            body = encodeOcspError('malformedRequest');
          }
          res.writeHead(200, { 'Content-Type': 'application/ocsp-response', 'Content-Length': body.length });
          res.end(body);
        });
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/ocsp`;
    });
    afterAll(() => new Promise<void>((r) => server.close(() => r())));

    const ask = (...certs: string[]) => opensslAsync(['ocsp', '-issuer', 'ca.pem', ...certs.flatMap((c) => ['-cert', c]), '-url', url, '-CAfile', 'ca.pem', '-resp_text'], pki.dir);

    test('nonce echoed: openssl verifies response and nonce, good and revoked in one request', async () => {
      mode = 'echo';
      const r = await ask('good.pem', 'revoked.pem');
      expect(r.out).toContain('Response verify OK');
      expect(r.out).toMatch(/good\.pem: good/);
      expect(r.out).toMatch(/revoked\.pem: revoked/);
      expect(r.out).toMatch(/Reason: superseded/);
      expect(r.out).not.toMatch(/WARNING: no nonce|Nonce Verify error/);
      const last = seen[seen.length - 1];
      expect(last.nonce).toMatch(/^0410[0-9a-f]{32}$/);
      expect(last.serials).toEqual([pki.good.serial.toString('hex'), pki.revoked.serial.toString('hex')]);
      expect(r.out).toContain(`OCSP Nonce: \n            ${last.nonce!.toUpperCase()}`);
    });

    test('negative controls: openssl notices a dropped nonce and a wrong nonce', async () => {
      mode = 'drop-nonce';
      expect((await ask('good.pem')).out).toContain('WARNING: no nonce in response');
      mode = 'wrong-nonce';
      expect((await ask('good.pem')).out).toContain('Nonce Verify error');
      mode = 'echo';
    });
  });
});
