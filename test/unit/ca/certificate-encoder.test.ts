import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SanEntry, ipBytes, keyIdentifier } from '../../../src/ca/certificate-encoder';
import { certificateParts } from '../../../src/ca/certificate-parts';
import { NameAttribute, encodeName } from '../../../src/ca/name';
import { children, readOne } from '../../../src/der/der-reader';
import { KeyAlgorithm } from '../../../src/keys/key-backend';
import { generateKeyPair } from '../../../src/keys/software-key-backend';
import { WebSigner, referenceCa, referenceLeaf, webSigner } from '../../fixtures/peculiar-reference';
import { TestCa, makeTestCa } from '../../fixtures/test-ca';

/**
 * certificate-encoder byte equality: every certificate device-ca issues (leaves through CertificateAuthority.issue,
 * CA certificates through initCa) is rebuilt with @peculiar/x509's X509CertificateGenerator from the same
 * serial, dates, names, SPKI and extension list, and the TBSCertificate bytes must be equal. With an RSA
 * issuer (PKCS#1 v1.5 is deterministic) the whole certificate must be equal.
 */

const sigAlgOf = (der: Buffer): Buffer => children(readOne(der, 0x30))[1].full;
const tbsOf = (der: Buffer): Buffer => certificateParts(der).tbs;

interface Hierarchy {
  label: string;
  algorithm: KeyAlgorithm;
  overrides: Record<string, unknown>;
  leafValidity: number;
  expectGeneralizedTime: boolean;
}

const HIERARCHIES: Hierarchy[] = [
  { label: 'P-256 CA', algorithm: 'ecdsa-p256', overrides: {}, leafValidity: 365 * 86400, expectGeneralizedTime: false },
  { label: 'P-384 CA', algorithm: 'ecdsa-p384', overrides: { 'ca.algorithm': 'ecdsa-p384' }, leafValidity: 365 * 86400, expectGeneralizedTime: false },
  { label: 'RSA-2048 CA', algorithm: 'rsa-2048', overrides: { 'ca.algorithm': 'rsa-2048', 'crl.shards': 7 }, leafValidity: 825 * 86400, expectGeneralizedTime: false },
  {
    // validity past 2049: notAfter must switch to GeneralizedTime (RFC 5280 §4.1.2.5)
    label: 'P-256 CA valid past 2050',
    algorithm: 'ecdsa-p256',
    overrides: { 'ca.root.validity': '60y', 'ca.issuing.validity': '50y' },
    leafValidity: 40 * 365 * 86400,
    expectGeneralizedTime: true,
  },
];

const LEAF_KEYS: { label: string; alg: KeyAlgorithm; keyType: 'ec' | 'rsa' }[] = [
  { label: 'EC P-256 leaf', alg: 'ecdsa-p256', keyType: 'ec' },
  { label: 'EC P-384 leaf', alg: 'ecdsa-p384', keyType: 'ec' },
  { label: 'RSA-2048 leaf', alg: 'rsa-2048', keyType: 'rsa' },
];

const SAN_SETS: { label: string; sans: SanEntry[] }[] = [
  { label: 'no SAN', sans: [] },
  { label: 'dns', sans: [{ type: 'dns', value: 'dev-1.example.net' }] },
  {
    label: 'dns+ipv4+ipv6+uri',
    sans: [
      { type: 'dns', value: 'dev-1.example.net' },
      { type: 'ip', value: '192.0.2.7' },
      { type: 'ip', value: '2001:db8::17' },
      { type: 'ip', value: '::1' },
      { type: 'ip', value: 'fe80::' },
      { type: 'uri', value: 'urn:dev:1' },
    ],
  },
];

const SUBJECTS: NameAttribute[][] = [
  [{ type: 'CN', value: 'dev-1' }],
  [
    { type: 'serialNumber', value: 'SN 0042' },
    { type: 'CN', value: 'Gerät-7' },
    { type: 'O', value: 'Example Devices' },
  ],
];

const leafKeys = new Map<KeyAlgorithm, Buffer>();
beforeAll(() => {
  for (const k of LEAF_KEYS) leafKeys.set(k.alg, crypto.createPublicKey(generateKeyPair(k.alg).privateKey).export({ type: 'spki', format: 'der' }));
});

describe.each(HIERARCHIES)('$label', (h) => {
  let t: TestCa;
  let rootSigner: WebSigner;
  let issuingSigner: WebSigner;
  const rsaIssuer = h.algorithm.startsWith('rsa');

  beforeAll(async () => {
    t = await makeTestCa(h.overrides, 'device-ca-enc-');
    rootSigner = await webSigner(t.hierarchy.root.key.ref, h.algorithm);
    issuingSigner = await webSigner(t.hierarchy.issuing.key.ref, h.algorithm);
  });
  afterAll(() => t?.cleanup());

  it('root CA certificate equals @peculiar/x509 output', async () => {
    const der = t.hierarchy.root.der;
    const p = certificateParts(der);
    const x = new crypto.X509Certificate(der);
    const ref = await referenceCa({
      serialHex: p.serial,
      notBefore: new Date(x.validFrom),
      notAfter: new Date(x.validTo),
      issuerName: p.issuer,
      subjectName: p.subject,
      spki: t.hierarchy.root.key.spki,
      signer: rootSigner,
    });
    expect(tbsOf(der).toString('hex')).toBe(tbsOf(ref).toString('hex'));
    expect(sigAlgOf(der).toString('hex')).toBe(sigAlgOf(ref).toString('hex'));
    if (rsaIssuer) expect(der.toString('hex')).toBe(ref.toString('hex'));
    expect(x.verify(x.publicKey)).toBe(true);
  });

  it('issuing CA certificate equals @peculiar/x509 output', async () => {
    const der = t.hierarchy.issuing.der;
    const p = certificateParts(der);
    const x = new crypto.X509Certificate(der);
    const ref = await referenceCa({
      serialHex: p.serial,
      notBefore: new Date(x.validFrom),
      notAfter: new Date(x.validTo),
      issuerName: t.hierarchy.root.subject,
      subjectName: p.subject,
      spki: t.hierarchy.issuing.key.spki,
      issuerSpki: t.hierarchy.root.key.spki,
      pathLen: 0,
      rootUrls: { crl: 'http://ca.example.test:8080/crl/device-ca-root.crl', caIssuers: 'http://ca.example.test:8080/ca/device-ca-root.crt' },
      signer: rootSigner,
    });
    expect(tbsOf(der).toString('hex')).toBe(tbsOf(ref).toString('hex'));
    if (rsaIssuer) expect(der.toString('hex')).toBe(ref.toString('hex'));
    expect(x.verify(new crypto.X509Certificate(t.hierarchy.root.der).publicKey)).toBe(true);
  });

  const cases = LEAF_KEYS.flatMap((k) => SAN_SETS.flatMap((s) => [false, true].map((serverAuth) => ({ ...k, sanLabel: s.label, sans: s.sans, serverAuth }))));
  it.each(cases)('$label, $sanLabel, serverAuth $serverAuth: TBS equals @peculiar/x509 output', async (c) => {
    const subject = SUBJECTS[(c.sans.length + (c.serverAuth ? 1 : 0)) % SUBJECTS.length];
    const spki = leafKeys.get(c.alg)!;
    const issued = await t.caWith({ device: { validitySeconds: h.leafValidity, serverAuth: c.serverAuth } }).issue({ profile: 'device', subject, spki, keyType: c.keyType, sans: c.sans });
    const ref = await referenceLeaf({
      serialHex: issued.serial,
      notBefore: issued.notBefore,
      notAfter: issued.notAfter,
      issuerName: t.hierarchy.issuing.subject,
      subjectName: encodeName(subject),
      spki,
      keyType: c.keyType,
      serverAuth: c.serverAuth,
      sans: c.sans,
      issuerSpki: t.hierarchy.issuing.key.spki,
      publicUrl: 'http://ca.example.test:8080',
      caName: t.cfg.ca.issuing.name,
      crlShards: t.cfg.crl.shards,
      signer: issuingSigner,
    });
    expect(tbsOf(issued.der).toString('hex')).toBe(tbsOf(ref).toString('hex'));
    expect(sigAlgOf(issued.der).toString('hex')).toBe(sigAlgOf(ref).toString('hex'));
    if (rsaIssuer) expect(issued.der.toString('hex')).toBe(ref.toString('hex'));
    // the signature is valid under the issuing CA key (for ECDSA the only part that may differ)
    expect(new crypto.X509Certificate(issued.der).verify(crypto.createPublicKey({ key: t.hierarchy.issuing.key.spki, format: 'der', type: 'spki' }))).toBe(true);
    // notAfter's ASN.1 type follows the year
    const validity = children(children(readOne(tbsOf(issued.der)))[4]);
    expect(validity[1].tag).toBe(h.expectGeneralizedTime ? 0x18 : 0x17);
  });
});

describe('encoder pieces against independent references', () => {
  it('keyIdentifier is SHA-1 of the subjectPublicKey bits (RFC 5280 §4.2.1.2 method 1), as openssl computes the SKI', () => {
    const { privateKey } = generateKeyPair('ecdsa-p256');
    const spki = crypto.createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
    const raw = crypto.createPublicKey(privateKey).export({ format: 'jwk' });
    const point = Buffer.concat([Buffer.from([4]), Buffer.from(raw.x!, 'base64url'), Buffer.from(raw.y!, 'base64url')]);
    expect(keyIdentifier(spki).toString('hex')).toBe(crypto.createHash('sha1').update(point).digest('hex'));
  });

  it('encodeName matches the subject openssl writes with string_mask utf8only (test/fixtures/csr/ec-p256-plain.der)', () => {
    const csr = fs.readFileSync(path.join(__dirname, '../../fixtures/csr/ec-p256-plain.der'));
    const subject = children(children(readOne(csr))[0])[1].full;
    expect(
      encodeName([
        { type: 'CN', value: 'Gerät-1' },
        { type: 'O', value: 'Example Devices' },
      ]).toString('hex'),
    ).toBe(subject.toString('hex'));
  });

  it.each([
    ['192.0.2.7', 'c0000207'],
    ['0.0.0.0', '00000000'],
    ['::', '00000000000000000000000000000000'],
    ['::1', '00000000000000000000000000000001'],
    ['fe80::', 'fe800000000000000000000000000000'],
    ['2001:db8::17', '20010db8000000000000000000000017'],
    ['2001:db8:0:0:0:0:0:17', '20010db8000000000000000000000017'],
    ['2001:db8:1:2:3:4:5:6', '20010db8000100020003000400050006'],
  ])('ipBytes(%s) -> %s', (ip, expected) => {
    expect(ipBytes(ip).toString('hex')).toBe(expected);
  });

  // BUG (src/ca/certificate-encoder.ts ipBytes): dotted-quad tails of IPv6 (RFC 4291 §2.2 form 3) are not
  // parsed: '::ffff:192.0.2.7' becomes 0::ffff:00c0. Flip to it() once fixed (or reject with a typed error).
  it('ipBytes of an IPv4-mapped IPv6 address', () => {
    expect(ipBytes('::ffff:192.0.2.7').toString('hex')).toBe('00000000000000000000ffffc0000207');
  });
});
