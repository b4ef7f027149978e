import { AsnConvert } from '@peculiar/asn1-schema';
import {
  AuthorityInfoAccessSyntax,
  AuthorityKeyIdentifier,
  BasicConstraints,
  CRLDistributionPoints,
  Certificate,
  CertificateList,
  ExtendedKeyUsage,
  Extension,
  IssuingDistributionPoint,
  KeyUsage,
  KeyUsageFlags,
  Name,
  SubjectKeyIdentifier,
} from '@peculiar/asn1-x509';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CaHierarchy, loadCa } from '../../../src/ca/ca-hierarchy';
import { CertificateAuthority } from '../../../src/ca/certificate-authority';
import { CrlPublisher } from '../../../src/ca/crl-publisher';
import { readRootCrl } from '../../../src/ca/root-crl';
import { RootRolloverResult, rolloverRoot } from '../../../src/ca/ca-lifecycle';
import { ensureOcspResponder, ensureScepRa, ensureTlsServerCertificate } from '../../../src/ca/service-certificates';
import { children, readOne } from '../../../src/der/der-reader';
import { KeyAlgorithm } from '../../../src/keys/key-backend';
import { SoftwareKeyBackend, generateKeyPair } from '../../../src/keys/software-key-backend';
import { RaHarness, makeRaHarness, secretProof } from '../ra/ra-harness';

/**
 * Every certificate profile device-ca signs, and its CRLs, against the RFC 5280 rules linters (x509lint,
 * zlint) check: key usage consistent with EKU (§4.2.1.12), criticality (§4.2.1.9 basicConstraints on CAs,
 * §4.2.1.3 keyUsage, §5.2.5 IDP), key identifiers (§4.2.1.1, §4.2.1.2, §5.2.1), CRL DP and IDP naming the
 * same URI (§4.2.1.13, §5.2.5), AIA (§4.2.2.1), validity nested in the issuer's, serial positive and at
 * most 20 octets (§4.1.2.2, §5.2.3). Parsed with @peculiar/asn1-x509, not with device-ca's own encoder.
 */

const BASE = 'http://ca.example.test:8080';
const OID = {
  bc: '2.5.29.19',
  ku: '2.5.29.15',
  eku: '2.5.29.37',
  ski: '2.5.29.14',
  aki: '2.5.29.35',
  san: '2.5.29.17',
  cdp: '2.5.29.31',
  aia: '1.3.6.1.5.5.7.1.1',
  crlNumber: '2.5.29.20',
  idp: '2.5.29.28',
  ocspNoCheck: '1.3.6.1.5.5.7.48.1.5',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  ocspSigning: '1.3.6.1.5.5.7.3.9',
  adOcsp: '1.3.6.1.5.5.7.48.1',
  adCaIssuers: '1.3.6.1.5.5.7.48.2',
};

type Ku = keyof typeof KeyUsageFlags;
/**
 * KU_CONSISTENT_WITH is RFC 5280 §4.2.1.12's table: the key usage bits consistent with each key purpose.
 * (The CA profiles carry no EKU; key purposes not listed here are never issued.)
 */
const KU_CONSISTENT_WITH: Record<string, Ku[]> = {
  [OID.serverAuth]: ['digitalSignature', 'keyEncipherment', 'keyAgreement'],
  [OID.clientAuth]: ['digitalSignature', 'keyAgreement'],
  [OID.ocspSigning]: ['digitalSignature', 'nonRepudiation'],
};
/** SIGNATURE_HASH: the digest of each signature algorithm the CA keys use (ecdsa-with-SHA256/384, sha256/384WithRSAEncryption). */
const SIGNATURE_HASH: Record<string, string> = {
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
};
/** CRITICAL_KNOWN: the extensions a relying party must understand; any other critical one would be rejected (§4.2). */
const CRITICAL_KNOWN = new Set([OID.bc, OID.ku, OID.eku, OID.san, OID.idp]);

const buf = (a: ArrayBuffer): Buffer => Buffer.from(a);
const nameDer = (n: Name): Buffer => buf(AsnConvert.serialize(n));

interface Parsed {
  der: Buffer;
  cert: Certificate;
  ext: Map<string, Extension>;
  duplicates: string[];
}

function parse(der: Buffer): Parsed {
  const cert = AsnConvert.parse(der, Certificate);
  const ext = new Map<string, Extension>();
  const duplicates: string[] = [];
  for (const e of cert.tbsCertificate.extensions ?? []) {
    if (ext.has(e.extnID)) duplicates.push(e.extnID);
    ext.set(e.extnID, e);
  }
  return { der, cert, ext, duplicates };
}

function extValue<T>(p: { ext: Map<string, Extension> }, oid: string, type: new () => T): T | undefined {
  const e = p.ext.get(oid);
  return e ? AsnConvert.parse(e.extnValue.buffer, type) : undefined;
}

function kuNames(ku: KeyUsage | undefined): Ku[] {
  if (!ku) return [];
  const flags = ku.toNumber();
  return (Object.keys(KeyUsageFlags).filter((k) => Number.isNaN(Number(k))) as Ku[]).filter((k) => flags & KeyUsageFlags[k]);
}

const uris = (names: { uniformResourceIdentifier?: string }[] | undefined): string[] => (names ?? []).map((n) => n.uniformResourceIdentifier ?? '?');

/** serialViolations: RFC 5280 §4.1.2.2 (certificates) and §5.2.3 (CRL numbers): a positive INTEGER of at most 20 octets. */
function serialViolations(what: string, raw: Buffer): string[] {
  const out: string[] = [];
  if (raw.length > 20) out.push(`${what}: ${raw.length} octets, more than 20`);
  if (raw.length === 0 || raw[0] & 0x80) out.push(`${what}: negative`);
  if (raw.every((b) => b === 0)) out.push(`${what}: zero`);
  return out;
}

/** Expectation: what a profile's certificate must carry besides the rules every certificate obeys. */
interface Expectation {
  ca: boolean;
  pathLen?: number;
  keyUsage: Ku[];
  /** eku: the key purposes, in order; null: no EKU extension */
  eku: string[] | null;
  /** crlDp: the one CRL distribution point URI; a RegExp for a shard; null: none */
  crlDp: string | RegExp | null;
  /** aia: OCSP and caIssuers URIs; null: no AIA */
  aia: { ocsp: string[]; caIssuers: string[] } | null;
  ocspNoCheck?: boolean;
}

/**
 * certificateViolations lists every RFC 5280 rule (and profile expectation) the certificate breaks; an
 * empty list is a clean certificate. issuer is the certificate itself for the self-signed root.
 */
function certificateViolations(c: Parsed, issuer: Parsed, want: Expectation): string[] {
  const v: string[] = [];
  const tbs = c.cert.tbsCertificate;
  const itbs = issuer.cert.tbsCertificate;
  const rule = (ok: boolean, msg: string) => {
    if (!ok) v.push(msg);
  };
  rule(tbs.version === 2, 'version is not v3');
  v.push(...serialViolations('serial', buf(tbs.serialNumber)));
  rule(c.duplicates.length === 0, `duplicate extensions ${c.duplicates.join(', ')}`);
  // the signature and the name chain
  rule(nameDer(tbs.issuer).equals(nameDer(itbs.subject)), 'issuer name is not the issuer certificate subject');
  rule(new crypto.X509Certificate(c.der).verify(new crypto.X509Certificate(issuer.der).publicKey), 'signature does not verify with the issuer key');
  // validity nested in the issuer's
  const nb = tbs.validity.notBefore.getTime().getTime();
  const na = tbs.validity.notAfter.getTime().getTime();
  rule(nb < na, 'notBefore is not before notAfter');
  rule(nb >= itbs.validity.notBefore.getTime().getTime(), 'notBefore precedes the issuer notBefore');
  rule(na <= itbs.validity.notAfter.getTime().getTime(), 'notAfter outlives the issuer');
  // §4.2: no critical extension a relying party may not know
  for (const [oid, e] of c.ext) rule(!e.critical || CRITICAL_KNOWN.has(oid), `unknown critical extension ${oid}`);
  // §4.2.1.9: basicConstraints, critical in CA certificates
  const bc = extValue(c, OID.bc, BasicConstraints);
  rule(bc !== undefined, 'no basicConstraints');
  rule(bc?.cA === want.ca, `basicConstraints cA is ${bc?.cA}, want ${want.ca}`);
  if (want.ca) rule(c.ext.get(OID.bc)?.critical === true, 'basicConstraints of a CA is not critical');
  rule(bc?.pathLenConstraint === want.pathLen, `pathLenConstraint ${bc?.pathLenConstraint}, want ${want.pathLen}`);
  // §4.2.1.3: keyUsage present and critical; keyCertSign only with cA
  const ku = kuNames(extValue(c, OID.ku, KeyUsage));
  rule(c.ext.get(OID.ku)?.critical === true, 'keyUsage is missing or not critical');
  rule(JSON.stringify(ku) === JSON.stringify(want.keyUsage), `keyUsage ${ku.join(',')}, want ${want.keyUsage.join(',')}`);
  rule(ku.includes('keyCertSign') === (bc?.cA === true), 'keyCertSign and cA disagree');
  const keyType = new crypto.X509Certificate(c.der).publicKey.asymmetricKeyType;
  if (ku.includes('keyEncipherment')) rule(keyType === 'rsa', 'keyEncipherment on a key that cannot encrypt');
  if (ku.includes('keyAgreement')) rule(keyType === 'ec', 'keyAgreement on a key that cannot agree');
  // §4.2.1.12: every key usage bit serves some key purpose, and every key purpose has a consistent bit
  const eku = extValue(c, OID.eku, ExtendedKeyUsage);
  rule(JSON.stringify(eku ? [...eku] : null) === JSON.stringify(want.eku), `EKU ${eku ? [...eku].join(',') : 'none'}, want ${want.eku?.join(',') ?? 'none'}`);
  if (eku) {
    rule(c.ext.get(OID.eku)?.critical === false, 'EKU is critical');
    for (const purpose of eku) {
      const ok = KU_CONSISTENT_WITH[purpose] ?? [];
      rule(
        ku.some((k) => ok.includes(k)),
        `key purpose ${purpose} has no consistent key usage (RFC 5280 §4.2.1.12)`,
      );
    }
    for (const k of ku)
      rule(
        [...eku].some((p) => (KU_CONSISTENT_WITH[p] ?? []).includes(k)),
        `key usage ${k} is consistent with none of the key purposes (RFC 5280 §4.2.1.12)`,
      );
  }
  // §4.2.1.2: SKI, non-critical, method 1 (SHA-1 of the subjectPublicKey bits); §4.2.1.1: AKI = the issuer's SKI
  const ski = extValue(c, OID.ski, SubjectKeyIdentifier);
  const keyBits = buf(tbs.subjectPublicKeyInfo.subjectPublicKey);
  rule(ski !== undefined && buf(ski.buffer).equals(crypto.createHash('sha1').update(keyBits).digest()), 'SKI is missing or not the SHA-1 of the public key');
  rule(c.ext.get(OID.ski)?.critical === false, 'SKI is critical');
  const issuerSki = extValue(issuer, OID.ski, SubjectKeyIdentifier);
  const aki = extValue(c, OID.aki, AuthorityKeyIdentifier);
  if (c === issuer) rule(aki === undefined || buf(aki.keyIdentifier!.buffer).equals(buf(ski!.buffer)), 'self-signed AKI is not its SKI');
  else {
    rule(aki?.keyIdentifier !== undefined && issuerSki !== undefined && buf(aki.keyIdentifier.buffer).equals(buf(issuerSki.buffer)), 'AKI keyIdentifier is not the issuer SKI');
    rule(c.ext.get(OID.aki)?.critical === false, 'AKI is critical');
  }
  // §4.2.1.13: CRL DP (non-critical), one fullName URI
  const cdp = extValue(c, OID.cdp, CRLDistributionPoints);
  const cdpUris = cdp ? [...cdp].flatMap((d) => uris(d.distributionPoint?.fullName)) : [];
  if (want.crlDp === null) rule(cdp === undefined, 'unexpected CRL DP');
  else {
    rule(c.ext.get(OID.cdp)?.critical === false, 'CRL DP is missing or critical');
    rule(cdpUris.length === 1 && (typeof want.crlDp === 'string' ? cdpUris[0] === want.crlDp : want.crlDp.test(cdpUris[0])), `CRL DP ${cdpUris.join(',')}, want ${String(want.crlDp)}`);
    rule(cdp !== undefined && [...cdp].every((d) => !d.reasons && !d.cRLIssuer), 'CRL DP with reasons or cRLIssuer (the CRLs cover every reason and are direct)');
  }
  // §4.2.2.1: AIA, MUST be non-critical
  const aia = extValue(c, OID.aia, AuthorityInfoAccessSyntax);
  const aiaOf = (method: string) => (aia ? [...aia].filter((a) => a.accessMethod === method).map((a) => a.accessLocation.uniformResourceIdentifier ?? '?') : []);
  if (want.aia === null) rule(aia === undefined, 'unexpected AIA');
  else {
    rule(c.ext.get(OID.aia)?.critical === false, 'AIA is missing or critical');
    rule(JSON.stringify({ ocsp: aiaOf(OID.adOcsp), caIssuers: aiaOf(OID.adCaIssuers) }) === JSON.stringify(want.aia), `AIA ocsp ${aiaOf(OID.adOcsp)} caIssuers ${aiaOf(OID.adCaIssuers)}`);
  }
  // RFC 6960 §4.2.2.2.1: a delegated responder carries id-pkix-ocsp-nocheck
  rule(c.ext.has(OID.ocspNoCheck) === (want.ocspNoCheck ?? false), `ocsp-nocheck ${c.ext.has(OID.ocspNoCheck)}`);
  // §4.1.2.6: an empty subject needs a critical SAN
  if (tbs.subject.length === 0) rule(c.ext.get(OID.san)?.critical === true, 'empty subject without a critical SAN');
  return v;
}

/** crlViolations: the RFC 5280 §5 rules for a CRL signed by issuer; idp is the URI its IDP must name (null: no IDP). */
function crlViolations(der: Buffer, issuer: Parsed, idp: string | null): string[] {
  const v: string[] = [];
  const rule = (ok: boolean, msg: string) => {
    if (!ok) v.push(msg);
  };
  const crl = AsnConvert.parse(der, CertificateList);
  const tbs = crl.tbsCertList;
  const ext = new Map((tbs.crlExtensions ?? []).map((e) => [e.extnID, e]));
  rule(tbs.version === 1, 'version is not v2 (§5.1.2.1: v2 when extensions are present)');
  rule(nameDer(tbs.issuer).equals(nameDer(issuer.cert.tbsCertificate.subject)), 'issuer name is not the CA subject');
  const tbsDer = children(readOne(der))[0].full; // the signed bytes as they came, not re-encoded
  const alg = SIGNATURE_HASH[tbs.signature.algorithm];
  rule(crypto.verify(alg, tbsDer, new crypto.X509Certificate(issuer.der).publicKey, buf(crl.signature)), 'signature does not verify with the CA key');
  // §5.1.2.5: nextUpdate present and after thisUpdate; both within the CA's life
  const thisUpdate = tbs.thisUpdate.getTime().getTime();
  const nextUpdate = tbs.nextUpdate?.getTime().getTime();
  rule(nextUpdate !== undefined && nextUpdate > thisUpdate, 'nextUpdate missing or not after thisUpdate');
  rule(thisUpdate >= issuer.cert.tbsCertificate.validity.notBefore.getTime().getTime(), 'thisUpdate before the CA existed');
  // §5.2.1: AKI = the CA's SKI; §5.2.3: CRL number, non-critical, positive, at most 20 octets
  const aki = ext.get(OID.aki) ? AsnConvert.parse(ext.get(OID.aki)!.extnValue.buffer, AuthorityKeyIdentifier) : undefined;
  const ski = extValue(issuer, OID.ski, SubjectKeyIdentifier)!;
  rule(aki?.keyIdentifier !== undefined && buf(aki.keyIdentifier.buffer).equals(buf(ski.buffer)), 'AKI is missing or not the CA SKI');
  const num = ext.get(OID.crlNumber);
  rule(num?.critical === false, 'CRL number missing or critical');
  if (num) v.push(...serialViolations('CRL number', buf(num.extnValue.buffer).subarray(2)));
  // §5.2.5: IDP critical, naming the URI the certificates' CRL DP names
  const idpExt = ext.get(OID.idp);
  if (idp === null) rule(idpExt === undefined, 'unexpected IDP');
  else {
    rule(idpExt?.critical === true, 'IDP missing or not critical');
    const p = idpExt ? AsnConvert.parse(idpExt.extnValue.buffer, IssuingDistributionPoint) : undefined;
    rule(JSON.stringify(uris(p?.distributionPoint?.fullName)) === JSON.stringify([idp]), `IDP ${uris(p?.distributionPoint?.fullName)}, want ${idp}`);
    rule(p?.onlyContainsCACerts !== true && !p?.indirectCRL, 'IDP claims CA certificates or an indirect CRL');
  }
  for (const e of tbs.revokedCertificates ?? []) v.push(...serialViolations('revoked serial', buf(e.userCertificate)));
  for (const [oid, e] of ext) rule(!e.critical || oid === OID.idp, `unknown critical CRL extension ${oid}`);
  return v;
}

const spkiOf = (alg: KeyAlgorithm): Buffer => crypto.createPublicKey(generateKeyPair(alg).privateKey).export({ type: 'spki', format: 'der' });
const firstPem = (pem: string): Buffer => Buffer.from(/-----BEGIN CERTIFICATE-----([^-]+)-----END CERTIFICATE-----/.exec(pem)![1].replace(/\s+/g, ''), 'base64');
const shardUrl = (issuing: string) => new RegExp(`^${BASE.replace(/\./g, '\\.')}/crl/${issuing}/\\d+\\.crl$`);

const LEAF = {
  ca: false,
  keyUsage: ['digitalSignature'] as Ku[],
  eku: [OID.clientAuth],
  crlDp: shardUrl('device-ca-issuing'),
  aia: { ocsp: [`${BASE}/ocsp`], caIssuers: [`${BASE}/ca/device-ca-issuing.crt`] },
};

describe.each<{ caAlg: KeyAlgorithm }>([{ caAlg: 'ecdsa-p256' }, { caAlg: 'rsa-2048' }])('certificate profiles of a $caAlg hierarchy', ({ caAlg }) => {
  let h: RaHarness;
  let hierarchy: CaHierarchy;
  let ca: CertificateAuthority;
  let keys: SoftwareKeyBackend;
  let root: Parsed;
  let issuing: Parsed;
  let crls: CrlPublisher;
  /** issued: every certificate the table checked, for the CRL DP / IDP pairing */
  const checked: Parsed[] = [];

  beforeAll(async () => {
    h = await makeRaHarness({
      overrides: { 'ca.algorithm': caAlg, 'ca.organization': 'Acme Devices', profiles: { default: {}, server: { serverAuth: true }, 'rsa-transport': { serverAuth: true, keyEncipherment: true } } },
    });
    keys = new SoftwareKeyBackend(path.join(h.dir, 'keys'));
    hierarchy = await loadCa(h.cfg, keys, h.store);
    ca = h.ca;
    root = parse(hierarchy.root.der);
    issuing = parse(hierarchy.issuing.der);
    crls = new CrlPublisher(hierarchy.issuing, h.store, h.cfg.crl, BASE);
  });
  afterAll(() => h?.close());

  // the root rollover's link certificates: made last (rows at the end of the table), the rows above use the hierarchy as loaded
  let rolled: Promise<RootRolloverResult> | undefined;
  const rollover = () => (rolled ??= rolloverRoot(h.cfg, keys, h.store, { actor: 'test' }));
  let newRoot: Parsed;
  const LINK = { ca: true, keyUsage: ['digitalSignature', 'keyCertSign', 'cRLSign'] as Ku[], eku: null };

  const leaf = (profile: string, alg: KeyAlgorithm) => async () =>
    (await ca.issue({ profile, subject: [{ type: 'CN', value: `dev-${alg}` }], spki: spkiOf(alg), keyType: alg.startsWith('rsa') ? 'rsa' : 'ec', sans: [{ type: 'dns', value: 'dev.example.net' }] }))
      .der;

  const table: { name: string; der: () => Promise<Buffer>; issuer: () => Parsed; want: Expectation }[] = [
    { name: 'root', der: async () => hierarchy.root.der, issuer: () => root, want: { ca: true, keyUsage: ['digitalSignature', 'keyCertSign', 'cRLSign'], eku: null, crlDp: null, aia: null } },
    {
      name: 'issuing CA',
      der: async () => hierarchy.issuing.der,
      issuer: () => root,
      want: {
        ca: true,
        pathLen: 0,
        keyUsage: ['digitalSignature', 'keyCertSign', 'cRLSign'],
        eku: null,
        crlDp: `${BASE}/crl/device-ca-root.crl`,
        aia: { ocsp: [], caIssuers: [`${BASE}/ca/device-ca-root.crt`] },
      },
    },
    ...(['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'rsa-3072'] as const).map((alg) => ({ name: `device leaf ${alg}`, der: leaf('default', alg), issuer: () => issuing, want: LEAF })),
    { name: 'serverAuth profile, ecdsa-p256', der: leaf('server', 'ecdsa-p256'), issuer: () => issuing, want: { ...LEAF, eku: [OID.clientAuth, OID.serverAuth] } },
    {
      name: 'serverAuth profile asking for keyEncipherment, rsa-2048',
      der: leaf('rsa-transport', 'rsa-2048'),
      issuer: () => issuing,
      want: { ...LEAF, keyUsage: ['digitalSignature', 'keyEncipherment'], eku: [OID.clientAuth, OID.serverAuth] },
    },
    {
      name: 'serverkeygen output (rsa-2048, through the RA)',
      der: async () => {
        const secret = await h.register('keygen-1');
        const out = await h.issued('default', 'server-keygen', h.csr('keygen-1', { alg: 'rsa-2048' }).der, secretProof('keygen-1', secret));
        expect(new crypto.X509Certificate(out.certificate).publicKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
        return out.certificate;
      },
      issuer: () => issuing,
      want: LEAF,
    },
    {
      name: 'OCSP responder',
      der: async () => (await ensureOcspResponder(h.cfg, keys, ca, h.store)).cert,
      issuer: () => issuing,
      want: { ca: false, keyUsage: ['digitalSignature'], eku: [OID.ocspSigning], crlDp: null, aia: null, ocspNoCheck: true },
    },
    {
      name: 'TLS server',
      der: async () => firstPem((await ensureTlsServerCertificate(h.cfg, ca, hierarchy, h.store)).certPem),
      issuer: () => issuing,
      want: { ...LEAF, eku: [OID.clientAuth, OID.serverAuth] },
    },
    {
      name: 'SCEP RA (issueScepRa)',
      der: async () => (await ensureScepRa(h.cfg, keys, ca, h.store)).cert,
      issuer: () => issuing,
      // RFC 8894 §3.5.1: clients encrypt to it, so keyEncipherment; no EKU, so §4.2.1.12 does not apply
      want: { ca: false, keyUsage: ['digitalSignature', 'keyEncipherment'], eku: null, crlDp: null, aia: null },
    },
    {
      name: 'root rollover: new root',
      der: async () => {
        newRoot = parse((await rollover()).der);
        return newRoot.der;
      },
      issuer: () => newRoot,
      want: { ca: true, keyUsage: ['digitalSignature', 'keyCertSign', 'cRLSign'], eku: null, crlDp: null, aia: null },
    },
    {
      name: 'root rollover: OldWithNew (signed by the old root)',
      der: async () => (await rollover()).oldWithNew,
      issuer: () => root,
      want: { ...LINK, crlDp: `${BASE}/crl/device-ca-root.crl`, aia: { ocsp: [], caIssuers: [`${BASE}/ca/device-ca-root.crt`] } },
    },
    {
      name: 'root rollover: NewWithOld (signed by the new root)',
      der: async () => (await rollover()).newWithOld,
      issuer: () => newRoot,
      want: { ...LINK, crlDp: `${BASE}/crl/device-ca-root-2.crl`, aia: { ocsp: [], caIssuers: [`${BASE}/ca/device-ca-root-2.crt`] } },
    },
  ];

  it.each(table)('$name: clean against RFC 5280', async ({ der, issuer, want }) => {
    const c = parse(await der());
    // a root (the first, or the one a root rollover made) is its own issuer
    const self = c.der.equals(root.der) || (newRoot !== undefined && c.der.equals(newRoot.der));
    expect(certificateViolations(c, self ? c : issuer(), want)).toEqual([]);
    checked.push(c);
  });

  it('every name the CA made itself carries the configured organization', () => {
    const x = [hierarchy.root.der, hierarchy.issuing.der].map((d) => new crypto.X509Certificate(d).subject);
    for (const s of x) expect(s).toMatch(/^O=Acme Devices\n/);
    const own = checked.filter((c) => /OCSP responder|SCEP RA/.test(new crypto.X509Certificate(c.der).subject));
    expect(own).toHaveLength(2);
    for (const c of own) expect(new crypto.X509Certificate(c.der).subject).toMatch(/^O=Acme Devices\n/);
  });

  it('issuing shard CRL (with a revoked device): clean, IDP = the CRL DP of every certificate in that shard', async () => {
    const leaves = checked.filter((c) => c.ext.has(OID.cdp) && !extValue(c, OID.bc, BasicConstraints)?.cA);
    expect(leaves.length).toBeGreaterThanOrEqual(8);
    // the serverkeygen certificate went through the RA, so the store knows it
    const serialOf = (c: Parsed) => new crypto.X509Certificate(c.der).serialNumber.toLowerCase();
    const stored = await Promise.all(leaves.map(async (c) => (await h.store.getCertificate(serialOf(c))) !== null));
    const victim = leaves[stored.indexOf(true)];
    const revoked = serialOf(victim);
    await h.store.revokeCertificate(revoked, 'keyCompromise', new Date(), null, { type: 'test', actor: 'test', subject: revoked, data: {} });
    for (const c of leaves) {
      const url = [...extValue(c, OID.cdp, CRLDistributionPoints)!].flatMap((d) => uris(d.distributionPoint?.fullName))[0];
      const shard = Number(/\/(\d+)\.crl$/.exec(url)![1]);
      const crl = await crls.current(shard);
      expect(crlViolations(crl.der, issuing, url)).toEqual([]);
    }
    const shardOfRevoked = Number(/\/(\d+)\.crl$/.exec(uris([...extValue(victim, OID.cdp, CRLDistributionPoints)!][0].distributionPoint?.fullName)[0])![1]);
    const entries = AsnConvert.parse((await crls.current(shardOfRevoked)).der, CertificateList).tbsCertList.revokedCertificates ?? [];
    expect(entries.map((e) => buf(e.userCertificate).toString('hex'))).toContain(revoked);
  });

  it('root CRL: clean, signed by the root, no IDP (full scope: it covers the issuing CA its CRL DP names)', async () => {
    const info = (await readRootCrl(h.store, hierarchy.root.der))!;
    expect(crlViolations(info.der, root, null)).toEqual([]);
  });
});

describe('the rules are not vacuous', () => {
  let h: RaHarness;
  let issuing: Parsed;
  beforeAll(async () => {
    h = await makeRaHarness({ overrides: { profiles: { default: {} } } });
    issuing = parse(h.ca.issuer.der);
  });
  afterAll(() => h?.close());

  it('an RSA clientAuth-only leaf with keyEncipherment (a CA profile config refuses to make) breaks RFC 5280 §4.2.1.12', async () => {
    const ca = new CertificateAuthority({
      issuing: h.ca.issuer,
      publicUrl: BASE,
      crlShards: 1,
      backdateSeconds: 0,
      profiles: new Map([['client-transport', { validitySeconds: 3600, serverAuth: false, keyEncipherment: true }]]),
    });
    const der = (await ca.issue({ profile: 'client-transport', subject: [{ type: 'CN', value: 'd' }], spki: spkiOf('rsa-2048'), keyType: 'rsa', sans: [] })).der;
    expect(certificateViolations(parse(der), issuing, { ...LEAF, keyUsage: ['digitalSignature', 'keyEncipherment'] })).toEqual([
      'key usage keyEncipherment is consistent with none of the key purposes (RFC 5280 §4.2.1.12)',
    ]);
  });

  it('a certificate checked against the wrong issuer, and a CRL against the wrong IDP, are flagged', async () => {
    const der = (await h.ca.issue({ profile: 'default', subject: [{ type: 'CN', value: 'd' }], spki: spkiOf('ecdsa-p256'), keyType: 'ec', sans: [] })).der;
    const other = parse(fs.readFileSync(path.join(h.dir, 'ca', 'device-ca-root.crt')));
    const v = certificateViolations(parse(der), other, LEAF);
    expect(v).toEqual(expect.arrayContaining(['issuer name is not the issuer certificate subject', 'signature does not verify with the issuer key', 'AKI keyIdentifier is not the issuer SKI']));
    const crl = await new CrlPublisher(h.ca.issuer, h.store, h.cfg.crl, BASE).current(0);
    expect(crlViolations(crl.der, issuing, `${BASE}/crl/device-ca-issuing/1.crl`)).toEqual([`IDP ${BASE}/crl/device-ca-issuing/0.crl, want ${BASE}/crl/device-ca-issuing/1.crl`]);
    expect(crlViolations(crl.der, issuing, null)).toEqual(['unexpected IDP']);
  });
});
