import { AsnConvert } from '@peculiar/asn1-schema';
import * as asn1X509 from '@peculiar/asn1-x509';
import * as x509 from '@peculiar/x509';
import * as asn1js from 'asn1js';
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import {
  KU,
  assembleCertificate,
  authorityKeyIdentifier,
  basicConstraints,
  crlDistributionPoints,
  encodeTbs,
  keyIdentifier,
  keyUsage,
  newSerial,
  subjectKeyIdentifier,
} from '../../../src/ca/certificate-encoder';
import {
  CRL_REASON_CODES,
  CrlParams,
  CrlReason,
  IssuingDistributionPoint,
  RevokedEntry,
  crlPemChunks,
  crlToPem,
  encodeCrl,
  encodeCrlStream,
  writeCrl,
  writeCrlFile,
} from '../../../src/ca/crl-encoder';
import { encodeName } from '../../../src/ca/name';
import { toPem } from '../../../src/ca/pem';
import { children, readOne } from '../../../src/der/der-reader';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { KeyAlgorithm, SigningKey } from '../../../src/keys/key-backend';
import { generateKeyPair, softwareSigningKey } from '../../../src/keys/software-key-backend';

/**
 * crl-encoder: the direct streaming encoder must produce exactly what @peculiar/x509's X509CrlGenerator
 * produces for the same fields (whole CRL with an RSA key, whose PKCS#1 v1.5 signature is deterministic;
 * TBS with ECDSA), and openssl must verify the signature, print the fields, and find revoked leaves
 * revoked (error 23) and good ones OK.
 */

const OPENSSL = '/usr/bin/openssl';
x509.cryptoProvider.set(crypto.webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

function openssl(args: string[], cwd: string): { status: number | null; out: string } {
  const r = spawnSync(OPENSSL, args, { cwd, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

const sec = (ms: number): Date => new Date(Math.floor(ms / 1000) * 1000);
const NOW = sec(Date.now() - 60_000);
const DAY = 86_400_000;
const tbsOf = (der: Buffer): Buffer => children(readOne(der, 0x30))[0].full;

interface TestKey {
  key: SigningKey;
  privateKey: crypto.KeyObject;
  alg: KeyAlgorithm;
}
function makeKey(alg: KeyAlgorithm): TestKey {
  const { privateKey } = generateKeyPair(alg);
  return { key: softwareSigningKey(privateKey, alg, 'memory'), privateKey, alg };
}

// ------------------------------------------------------------------ reference: @peculiar/x509 + asn1js

async function referenceCrl(k: TestKey, p: CrlParams, entries: RevokedEntry[]): Promise<Buffer> {
  const rsa = k.alg.startsWith('rsa');
  const signingKey = await crypto.webcrypto.subtle.importKey(
    'pkcs8',
    k.privateKey.export({ type: 'pkcs8', format: 'der' }),
    rsa ? { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } : { name: 'ECDSA', namedCurve: 'P-256' },
    false,
    ['sign'],
  );
  const extensions: x509.Extension[] = [
    new x509.AuthorityKeyIdentifierExtension(p.authorityKeyId.toString('hex')),
    new x509.Extension('2.5.29.20', false, asn1js.Integer.fromBigInt(p.crlNumber).toBER()),
  ];
  if (p.issuingDistributionPoint !== undefined) {
    const idp: IssuingDistributionPoint = typeof p.issuingDistributionPoint === 'string' ? { url: p.issuingDistributionPoint } : p.issuingDistributionPoint;
    const uri = new asn1js.Primitive({ idBlock: { tagClass: 3, tagNumber: 6 }, valueHex: Buffer.from(idp.url, 'ascii') });
    const fields: asn1js.AsnType[] = [new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber: 0 }, value: [new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber: 0 }, value: [uri] })] })];
    if (idp.onlyContainsUserCerts) fields.push(new asn1js.Primitive({ idBlock: { tagClass: 3, tagNumber: 1 }, valueHex: new Uint8Array([0xff]) }));
    if (idp.onlyContainsCACerts) fields.push(new asn1js.Primitive({ idBlock: { tagClass: 3, tagNumber: 2 }, valueHex: new Uint8Array([0xff]) }));
    extensions.push(new x509.Extension('2.5.29.28', true, new asn1js.Sequence({ value: fields }).toBER()));
  }
  const crl = await x509.X509CrlGenerator.create({
    issuer: new x509.Name(p.issuer),
    thisUpdate: p.thisUpdate,
    nextUpdate: p.nextUpdate,
    extensions,
    entries: entries.map((e) => ({
      serialNumber: integerContentHex(e.serial),
      revocationDate: e.revokedAt,
      reason: e.reason === undefined ? undefined : (CRL_REASON_CODES[e.reason] as x509.X509CrlReason),
      invalidity: e.invalidityDate,
    })),
    signingKey: signingKey as unknown as x509.X509CrlCreateParams['signingKey'],
    signingAlgorithm: rsa ? { name: 'RSASSA-PKCS1-v1_5' } : ({ name: 'ECDSA', hash: 'SHA-256' } as x509.X509CrlCreateParams['signingAlgorithm']),
  });
  // X509CrlGenerator writes an empty crlEntryExtensions (30 00) for an entry without extensions, which
  // RFC 5280 (Extensions ::= SEQUENCE SIZE (1..MAX)) forbids and openssl never writes. Drop those through
  // the library's own schema (its parser maps an empty one to undefined), re-serialize and re-sign;
  // everything else stays the library's encoding.
  const list = AsnConvert.parse(crl.rawData, asn1X509.CertificateList);
  for (const r of list.tbsCertList.revokedCertificates ?? []) if (!r.crlEntryExtensions?.length) r.crlEntryExtensions = undefined;
  const tbs = Buffer.from(AsnConvert.serialize(list.tbsCertList));
  const sig = rsa ? crypto.sign('sha256', tbs, k.privateKey) : crypto.sign('sha256', tbs, { key: k.privateKey, dsaEncoding: 'der' });
  list.signature = new Uint8Array(sig).buffer as ArrayBuffer;
  return Buffer.from(AsnConvert.serialize(list));
}

/** integerContentHex: what X509CrlGenerator wants, the INTEGER content octets (minimal, 00 before a high bit). */
function integerContentHex(serial: Buffer | string): string {
  let b = typeof serial === 'string' ? Buffer.from(serial.length % 2 ? '0' + serial : serial, 'hex') : serial;
  while (b.length > 1 && b[0] === 0) b = b.subarray(1);
  return (b[0] & 0x80 ? '00' : '') + b.toString('hex');
}

// ------------------------------------------------------------------ a small PKI for openssl

interface Pki {
  dir: string;
  ca: TestKey;
  caName: Buffer;
  caSki: Buffer;
  crlUrl: string;
  leaves: Record<'revoked' | 'good' | 'revokedNoCdp', { serial: Buffer; file: string }>;
}

async function makePki(): Promise<Pki> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-crl-'));
  const ca = makeKey('ecdsa-p256');
  const caName = encodeName([
    { type: 'O', value: 'device-ca tests' },
    { type: 'CN', value: 'CRL Test CA' },
  ]);
  const caSki = keyIdentifier(ca.key.spki);
  const crlUrl = 'http://ca.example.test/crl/issuing/0.crl';
  const sign = async (subject: Buffer, spki: Buffer, extensions: Buffer[], serial = newSerial()): Promise<Buffer> => {
    const tbs = encodeTbs({
      serial,
      signatureAlgorithm: ca.key.signatureAlgorithm,
      issuer: caName,
      notBefore: new Date(NOW.getTime() - DAY),
      notAfter: new Date(NOW.getTime() + 30 * DAY),
      subject,
      spki,
      extensions,
    });
    return assembleCertificate(tbs, ca.key.signatureAlgorithm, await ca.key.sign(tbs));
  };
  const caDer = await sign(caName, ca.key.spki, [basicConstraints(true), keyUsage([KU.keyCertSign, KU.cRLSign]), subjectKeyIdentifier(caSki)]);
  fs.writeFileSync(path.join(dir, 'ca.pem'), toPem(caDer, 'CERTIFICATE'));
  const leaf = async (name: string, cdp: boolean) => {
    const serial = newSerial();
    const spki = makeKey('ecdsa-p256').key.spki;
    const exts = [basicConstraints(false), keyUsage([KU.digitalSignature]), subjectKeyIdentifier(keyIdentifier(spki)), authorityKeyIdentifier(caSki)];
    if (cdp) exts.push(crlDistributionPoints(crlUrl));
    const der = await sign(encodeName([{ type: 'CN', value: name }]), spki, exts, serial);
    const file = `${name}.pem`;
    fs.writeFileSync(path.join(dir, file), toPem(der, 'CERTIFICATE'));
    return { serial, file };
  };
  return {
    dir,
    ca,
    caName,
    caSki,
    crlUrl,
    leaves: { revoked: await leaf('dev-revoked', true), good: await leaf('dev-good', true), revokedNoCdp: await leaf('dev-nocdp', false) },
  };
}

// ------------------------------------------------------------------ tables

const ALL_REASONS = Object.keys(CRL_REASON_CODES) as CrlReason[];

const ENTRY_SETS: { label: string; entries: RevokedEntry[] }[] = [
  { label: 'no entries (revokedCertificates absent)', entries: [] },
  {
    label: 'every reason, unspecified and none omitted',
    entries: [...ALL_REASONS.map((reason, i) => ({ serial: newSerial(), revokedAt: sec(NOW.getTime() - i * 3_600_000), reason })), { serial: newSerial(), revokedAt: NOW }],
  },
  {
    label: 'invalidity dates, a revocation date past 2049 (GeneralizedTime)',
    entries: [
      { serial: newSerial(), revokedAt: NOW, reason: 'keyCompromise', invalidityDate: new Date(NOW.getTime() - 7 * DAY) },
      { serial: newSerial(), revokedAt: NOW, invalidityDate: new Date(NOW.getTime() - DAY) },
      { serial: newSerial(), revokedAt: new Date('2051-06-30T12:34:56Z'), reason: 'superseded' },
      { serial: newSerial(), revokedAt: new Date('2049-12-31T23:59:59Z') },
    ],
  },
  {
    label: 'serials: hex strings of any case and length, high bit, leading zeros, 20 octets',
    entries: [
      { serial: '1', revokedAt: NOW },
      { serial: 'ABCDEF', revokedAt: NOW },
      { serial: '0000ff01', revokedAt: NOW, reason: 'cessationOfOperation' },
      { serial: Buffer.from('80', 'hex'), revokedAt: NOW },
      { serial: Buffer.from('00007f', 'hex'), revokedAt: NOW },
      { serial: 'ff'.repeat(20), revokedAt: NOW, reason: 'affiliationChanged' },
      { serial: '7f' + '00'.repeat(19), revokedAt: NOW },
    ],
  },
];

const PARAM_SETS: { label: string; crlNumber: bigint; idp?: string | IssuingDistributionPoint }[] = [
  { label: 'crlNumber 0, no IDP', crlNumber: 0n },
  { label: 'crlNumber 42, IDP url', crlNumber: 42n, idp: 'http://ca.example.test/crl/issuing/3.crl' },
  { label: 'crlNumber 2^64+1, IDP onlyContainsUserCerts', crlNumber: 2n ** 64n + 1n, idp: { url: 'http://ca.example.test/crl/issuing/0.crl', onlyContainsUserCerts: true } },
  { label: 'crlNumber 2^159-1, IDP onlyContainsCACerts', crlNumber: 2n ** 159n - 1n, idp: { url: 'http://ca.example.test/crl/root.crl', onlyContainsCACerts: true } },
];

function params(k: TestKey, p: (typeof PARAM_SETS)[number], issuer: Buffer, aki: Buffer): CrlParams {
  return {
    issuer,
    authorityKeyId: aki,
    crlNumber: p.crlNumber,
    thisUpdate: NOW,
    nextUpdate: new Date(NOW.getTime() + 7 * DAY),
    issuingDistributionPoint: p.idp,
    signingKey: k.key,
  };
}

// ------------------------------------------------------------------ tests

describe('encodeCrl: byte equality with @peculiar/x509 X509CrlGenerator', () => {
  const rsa = makeKey('rsa-2048');
  const ec = makeKey('ecdsa-p256');
  const issuer = encodeName([
    { type: 'O', value: 'device-ca' },
    { type: 'CN', value: 'Issuing CA 1' },
  ]);
  const aki = crypto.randomBytes(20);

  describe.each(PARAM_SETS)('$label', (ps) => {
    test.each(ENTRY_SETS)('RSA-2048, whole CRL: $label', async ({ entries }) => {
      const p = params(rsa, ps, issuer, aki);
      const ours = await encodeCrl(p, entries);
      const ref = await referenceCrl(rsa, p, entries);
      expect(ours.toString('hex')).toBe(ref.toString('hex'));
    });
    test.each(ENTRY_SETS)('P-256, TBSCertList: $label', async ({ entries }) => {
      const p = params(ec, ps, issuer, aki);
      const ours = await encodeCrl(p, entries);
      const ref = await referenceCrl(ec, p, entries);
      expect(tbsOf(ours).toString('hex')).toBe(tbsOf(ref).toString('hex'));
      // and the ECDSA signature verifies over our TBS
      const f = children(readOne(ours, 0x30));
      expect(crypto.verify('sha256', f[0].full, crypto.createPublicKey(ec.privateKey), f[2].value.subarray(1))).toBe(true);
    });
  });

  test('streaming from an async iterable of pages gives the same bytes as an array', async () => {
    const entries: RevokedEntry[] = Array.from({ length: 2500 }, (_, i) => ({
      serial: newSerial().toString('hex'),
      revokedAt: sec(NOW.getTime() - i * 1000),
      reason: ALL_REASONS[i % ALL_REASONS.length],
      invalidityDate: i % 7 === 0 ? sec(NOW.getTime() - DAY - i) : undefined,
    }));
    async function* pages() {
      for (let i = 0; i < entries.length; i += 300) yield entries.slice(i, i + 300);
    }
    async function* single() {
      yield* entries;
    }
    const p = params(rsa, PARAM_SETS[2], issuer, aki);
    const fromArray = await encodeCrl(p, entries);
    const fromPages = await encodeCrlStream(p, pages());
    const fromSingle = await encodeCrlStream({ ...p, expectedEntries: 10 }, single());
    expect(fromPages.entries).toBe(2500);
    expect(fromPages.der.equals(fromArray)).toBe(true);
    expect(fromSingle.der.equals(fromArray)).toBe(true);
    expect(tbsOf(fromArray).equals(fromPages.tbs)).toBe(true);
  });

  test.each<[string, RevokedEntry]>([
    ['a non-hex serial', { serial: 'xyz', revokedAt: NOW }],
    ['a serial over 20 octets', { serial: 'ff'.repeat(21), revokedAt: NOW }],
    ['an empty serial', { serial: Buffer.alloc(0), revokedAt: NOW }],
    ['an unknown reason', { serial: '01', revokedAt: NOW, reason: 'stolen' as CrlReason }],
    ['an invalid revokedAt', { serial: '01', revokedAt: new Date(NaN) }],
    ['an invalid invalidityDate', { serial: '01', revokedAt: NOW, invalidityDate: new Date(NaN) }],
  ])('rejects %s with DeviceCaError(internal)', async (_label, entry) => {
    const p = params(ec, PARAM_SETS[0], issuer, aki);
    await expect(encodeCrl(p, [{ serial: '02', revokedAt: NOW }, entry])).rejects.toMatchObject({ name: 'DeviceCaError', code: 'internal' });
  });

  test('rejects nextUpdate not after thisUpdate, and a crlNumber over 20 octets', async () => {
    const p = params(ec, PARAM_SETS[0], issuer, aki);
    await expect(encodeCrl({ ...p, nextUpdate: p.thisUpdate }, [])).rejects.toBeInstanceOf(DeviceCaError);
    await expect(encodeCrl({ ...p, crlNumber: 2n ** 159n }, [])).rejects.toBeInstanceOf(DeviceCaError);
    await expect(encodeCrl({ ...p, crlNumber: -1n }, [])).rejects.toBeInstanceOf(DeviceCaError);
  });
});

describe('encodeCrl: openssl as the relying party', () => {
  let pki: Pki;
  beforeAll(async () => {
    pki = await makePki();
  });
  afterAll(() => fs.rmSync(pki.dir, { recursive: true, force: true }));

  const crlFor = async (idp: string | IssuingDistributionPoint | undefined, extra: RevokedEntry[] = []): Promise<Buffer> =>
    encodeCrl(
      {
        issuer: pki.caName,
        authorityKeyId: pki.caSki,
        crlNumber: 7n,
        thisUpdate: NOW,
        nextUpdate: new Date(NOW.getTime() + DAY),
        issuingDistributionPoint: idp,
        signingKey: pki.ca.key,
      },
      [
        { serial: pki.leaves.revoked.serial, revokedAt: NOW, reason: 'keyCompromise', invalidityDate: new Date(NOW.getTime() - DAY) },
        { serial: pki.leaves.revokedNoCdp.serial.toString('hex'), revokedAt: NOW, reason: 'cessationOfOperation' },
        ...extra,
      ],
    );

  test('openssl crl verifies the signature (DER) and prints reasons, crlNumber and IDP', async () => {
    const der = await crlFor({ url: pki.crlUrl, onlyContainsUserCerts: true }, [{ serial: '0a', revokedAt: NOW, reason: 'certificateHold' }]);
    fs.writeFileSync(path.join(pki.dir, 'x.crl'), der);
    const v = openssl(['crl', '-inform', 'DER', '-in', 'x.crl', '-CAfile', 'ca.pem', '-noout'], pki.dir);
    expect(v.out).toContain('verify OK');
    expect(v.status).toBe(0);
    const t = openssl(['crl', '-inform', 'DER', '-in', 'x.crl', '-noout', '-text'], pki.dir).out;
    expect(t).toMatch(/X509v3 CRL Number: *\n *7\n/);
    expect(t).toMatch(/Issuing Distribution Point: critical\n *Full Name:\n *URI:http:\/\/ca\.example\.test\/crl\/issuing\/0\.crl/);
    expect(t).toContain('Only User Certificates');
    expect(t).toContain(`Serial Number: ${pki.leaves.revoked.serial.toString('hex').toUpperCase()}`);
    expect(t).toMatch(/CRL Reason Code: *\n *Key Compromise/);
    expect(t).toMatch(/CRL Reason Code: *\n *Cessation Of Operation/);
    expect(t).toMatch(/CRL Reason Code: *\n *Certificate Hold/);
    expect(t).toContain('Invalidity Date:');
    expect(t).toMatch(/Authority Key Identifier: *\n *([0-9A-F]{2}:){19}[0-9A-F]{2}/);
  });

  test('a tampered CRL fails openssl verification', async () => {
    const der = Buffer.from(await crlFor(undefined));
    der[der.indexOf(pki.leaves.revoked.serial) + 15] ^= 1; // another serial revoked: the TBS no longer matches the signature
    fs.writeFileSync(path.join(pki.dir, 'bad.crl'), der);
    const v = openssl(['crl', '-inform', 'DER', '-in', 'bad.crl', '-CAfile', 'ca.pem', '-noout'], pki.dir);
    expect(v.out).toContain('verify failure');
  });

  test.each([
    { label: 'no IDP', idp: undefined, leaf: 'revoked', status: 2, expect: 'error 23 at 0 depth lookup: certificate revoked' },
    { label: 'no IDP', idp: undefined, leaf: 'good', status: 0, expect: 'dev-good.pem: OK' },
    { label: 'no IDP', idp: undefined, leaf: 'revokedNoCdp', status: 2, expect: 'error 23 at 0 depth lookup: certificate revoked' },
    { label: 'IDP = CDP', idp: 'cdp', leaf: 'revoked', status: 2, expect: 'error 23 at 0 depth lookup: certificate revoked' },
    { label: 'IDP = CDP', idp: 'cdp', leaf: 'good', status: 0, expect: 'dev-good.pem: OK' },
    // INTEROP.md: a CRL with an IDP only covers certificates whose CRL DP matches it; openssl says so
    { label: 'IDP = CDP', idp: 'cdp', leaf: 'revokedNoCdp', status: 2, expect: 'error 44 at 0 depth lookup: different CRL scope' },
  ] as const)('openssl verify -crl_check ($label, PEM): $leaf -> $expect', async (c) => {
    const der = await crlFor(c.idp === 'cdp' ? { url: pki.crlUrl, onlyContainsUserCerts: true } : undefined);
    const crlFile = `crl-${c.label.replace(/\W/g, '')}-${c.leaf}.pem`;
    await writeCrlFile(path.join(pki.dir, crlFile), der, 'pem');
    const r = openssl(['verify', '-crl_check', '-CRLfile', crlFile, '-CAfile', 'ca.pem', pki.leaves[c.leaf].file], pki.dir);
    expect(r.out).toContain(c.expect);
    expect(r.status).toBe(c.status);
  });

  test('20 000 entries streamed from an async source: openssl verifies it and counts every entry', async () => {
    async function* source() {
      for (let page = 0; page < 20; page++) {
        yield Array.from({ length: 1000 }, (_, i) => ({
          serial: newSerial().toString('hex'),
          revokedAt: sec(NOW.getTime() - (page * 1000 + i) * 1000),
          reason: (['keyCompromise', 'superseded', undefined] as const)[i % 3],
        }));
      }
    }
    const crl = await encodeCrlStream({ issuer: pki.caName, authorityKeyId: pki.caSki, crlNumber: 99n, thisUpdate: NOW, nextUpdate: new Date(NOW.getTime() + DAY), signingKey: pki.ca.key }, source());
    expect(crl.entries).toBe(20_000);
    await writeCrlFile(path.join(pki.dir, 'big.crl'), crl.der);
    expect(openssl(['crl', '-inform', 'DER', '-in', 'big.crl', '-CAfile', 'ca.pem', '-noout'], pki.dir).out).toContain('verify OK');
    const text = openssl(['crl', '-inform', 'DER', '-in', 'big.crl', '-noout', '-text'], pki.dir).out;
    expect(text.match(/Serial Number: /g)?.length).toBe(20_000);
    expect(text.match(/Key Compromise/g)?.length).toBe(20 * Math.ceil(1000 / 3));
  });
});

describe('CRL output: PEM with the X509 CRL label, files and streams', () => {
  test('crlToPem and crlPemChunks equal pem.ts toPem(der, "X509 CRL") for sizes around the chunk boundary', () => {
    for (const n of [0, 1, 47, 48, 49, 48 * 1024 - 1, 48 * 1024, 48 * 1024 + 1, 300_001]) {
      const der = crypto.randomBytes(n);
      const expected = toPem(der, 'X509 CRL');
      expect(crlToPem(der)).toBe(n === 0 ? '-----BEGIN X509 CRL-----\n-----END X509 CRL-----\n' : expected);
      expect([...crlPemChunks(der)].join('')).toBe(crlToPem(der));
    }
  });

  test('writeCrl writes DER unchanged and PEM in pieces to a stream', async () => {
    const der = crypto.randomBytes(200_000);
    for (const format of ['der', 'pem'] as const) {
      const out = new PassThrough({ highWaterMark: 1024 });
      const got: Buffer[] = [];
      out.on('data', (c: Buffer) => got.push(c));
      await writeCrl(out, der, format);
      out.end();
      await new Promise((r) => out.on('end', r));
      const all = Buffer.concat(got);
      expect(format === 'der' ? all.equals(der) : all.toString('ascii') === toPem(der, 'X509 CRL')).toBe(true);
    }
  });

  test('writeCrlFile replaces the file atomically and leaves no temp file', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-crlfile-'));
    try {
      const file = path.join(dir, '0.crl');
      fs.writeFileSync(file, 'old');
      const der = crypto.randomBytes(1000);
      await writeCrlFile(file, der);
      expect(fs.readFileSync(file).equals(der)).toBe(true);
      expect(fs.readdirSync(dir)).toEqual(['0.crl']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
