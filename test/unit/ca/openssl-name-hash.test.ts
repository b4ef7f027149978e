import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { assembleCertificate, encodeTbs, newSerial } from '../../../src/ca/certificate-encoder';
import { certificateParts } from '../../../src/ca/certificate-parts';
import { opensslNameHash } from '../../../src/ca/openssl-name-hash';
import { pemBlocks, toPem } from '../../../src/ca/pem';
import { oid, seq, set, tlv, utf8String, printableString } from '../../../src/der/der-writer';
import { softwareSigningKey } from '../../../src/keys/software-key-backend';

/**
 * opensslNameHash must equal `openssl x509 -hash -noout` (X509_NAME_hash: SHA-1 of the canonical Name),
 * or FreeRADIUS and `openssl verify -CApath` do not find the CA and CRL files that `crl export` writes.
 * Certificates are made by `openssl req -x509 -subj` (the names an operator types) and, for string types
 * openssl req never writes, assembled here byte by byte; openssl computes the reference hash of each.
 */

let dir: string;
let keyFile: string;
let n = 0;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-namehash-'));
  keyFile = path.join(dir, 'k.pem');
  run(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', keyFile]);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function run(args: string[]): string {
  const r = spawnSync('openssl', args, { encoding: 'utf8', timeout: 20_000 });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

/** opensslHash: what `openssl x509 -hash -noout` prints for a certificate file */
const opensslHash = (certFile: string): string => run(['x509', '-in', certFile, '-noout', '-hash']).trim();

/** ours: opensslNameHash over the certificate's subject Name DER */
const ours = (certFile: string): string => opensslNameHash(certificateParts(pemBlocks(fs.readFileSync(certFile, 'utf8'))[0]).subject);

/** reqCert: `openssl req -x509 -utf8 -subj <subj>`, optionally with a string_mask and multi-valued RDNs */
function reqCert(subj: string, o: { stringMask?: string; multivalue?: boolean } = {}): string {
  const f = path.join(dir, `req-${++n}.pem`);
  const args = ['req', '-x509', '-key', keyFile, '-days', '1', '-utf8', '-subj', subj, '-out', f];
  if (o.stringMask) {
    const cnf = path.join(dir, `req-${n}.cnf`);
    fs.writeFileSync(cnf, `[req]\ndistinguished_name=dn\nstring_mask=${o.stringMask}\n[dn]\n`);
    args.push('-config', cnf);
  }
  if (o.multivalue) args.push('-multivalue-rdn');
  run(args);
  return f;
}

/** builtCert: a self-signed certificate whose subject (and issuer) is the given Name DER, as is */
function builtCert(name: Buffer): string {
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const key = softwareSigningKey(privateKey, 'ecdsa-p256', 'test');
  const tbs = encodeTbs({
    serial: newSerial(),
    signatureAlgorithm: key.signatureAlgorithm,
    issuer: name,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86400_000),
    subject: name,
    spki: key.spki,
    extensions: [],
  });
  const sig = crypto.sign('sha256', tbs, { key: privateKey, dsaEncoding: 'der' });
  const f = path.join(dir, `built-${++n}.pem`);
  fs.writeFileSync(f, toPem(assembleCertificate(tbs, key.signatureAlgorithm, sig), 'CERTIFICATE'));
  return f;
}

const CN = '2.5.4.3';
const O = '2.5.4.10';
const atv = (type: string, value: Buffer): Buffer => seq(oid(type), value);
const name = (...rdns: Buffer[][]): Buffer => seq(...rdns.map((r) => set(...r)));

describe('opensslNameHash equals `openssl x509 -hash`', () => {
  const typed: [string, string, { stringMask?: string; multivalue?: boolean }][] = [
    ['a plain device name', '/CN=dev-1', {}],
    ['the device-ca issuing CA name', '/O=device-ca/CN=device-ca Issuing CA', {}],
    ['mixed case and runs of spaces (collapsed, trimmed, lower-cased)', '/O=Acme  Corp/CN=  Device   ONE  ', {}],
    ['a tab inside a value', '/O=Acme\tCorp/CN=Tab\t\tDevice', {}],
    ['non-ASCII UTF-8 (not lower-cased by openssl)', '/C=DE/O=Müller GmbH/CN=Gerät ÄÖÜ straße', {}],
    ['characters outside the BMP', '/CN=Dev 😀 ONE', {}],
    ['CJK and Cyrillic', '/O=東京デバイス/CN=Устройство-7', {}],
    ['an IA5String emailAddress', '/emailAddress=Dev@Example.COM/CN=X', {}],
    ['many RDNs', '/C=US/ST=CA/L=San Jose/O=Fleet Ops/OU=Line 3/CN=gateway-0042', {}],
    ['TeletexString (string_mask nombstr)', '/O=Müller  GmbH/CN=Straße DEV', { stringMask: 'nombstr' }],
    ['BMPString (string_mask MASK:0x800)', '/O=Müller  GmbH/CN=Straße DEV', { stringMask: 'MASK:0x800' }],
    ['a multi-valued RDN whose values sort differently once lower-cased', '/O=Acme/CN=B+CN=a', { multivalue: true }],
    ['a multi-valued RDN of two types', '/CN=Dev+O=ACME', { multivalue: true }],
  ];
  it.each(typed)('%s', (_what, subj, o) => {
    const f = reqCert(subj, o);
    expect(ours(f)).toBe(opensslHash(f));
  });

  const built: [string, Buffer][] = [
    ['an empty Name', name()],
    ['UniversalString (UCS-4, canonicalized by openssl like any directory string)', name([atv(CN, tlv(0x1c, Buffer.from('\u0000\u0000\u0000D\u0000\u0000\u0000e\u0000\u0000\u0000V', 'latin1')))])],
    ['NumericString (openssl keeps it as it is)', name([atv('2.5.4.5', tlv(0x12, Buffer.from('0042 17', 'latin1')))])],
    ['PrintableString and UTF8String of the same text', name([atv(O, printableString('ACME'))], [atv(CN, utf8String('ACME'))])],
  ];
  it.each(built)('%s (assembled here)', (_what, nameDer) => {
    const f = builtCert(nameDer);
    expect(ours(f)).toBe(opensslHash(f));
  });
});
