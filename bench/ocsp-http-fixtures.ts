import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { certificateParts } from '../src/ca/certificate-parts';
import { certIdHashes, encodeCertId } from '../src/ca/ocsp-codec';
import { contextExplicit, octetString, oid, seq } from '../src/der/der-writer';
import { OID } from '../src/der/oids';
import type { ClientRequestSpec } from './ocsp-http-client';

/**
 * ocsp-http-fixtures prepares, before any clock starts, what bench/ocsp-http needs: a data directory with
 * a CA, `devices` devices enrolled through the built service's RegistrationAuthority (dist/, the code the
 * spawned server runs, against the same data directory), every fourth certificate revoked, the delegated
 * OCSP responder that `serve` would make, and for openssl's responder the same material in its own
 * terms: index.txt (openssl ca format, V/R lines with the same revocation times and reasons), the
 * responder certificate in PEM, its key, and the issuing CA certificate.
 *
 * The OCSP requests are built in Node (CertID via ocsp-codec's certIdHashes/encodeCertId) in the shape
 * `openssl ocsp -reqout` writes, and one of each kind is compared byte for byte with openssl's own.
 */

/** DistApi is the part of the built service (dist/main.js, dist/config/load-config.js) the fixtures call. */
interface DistApi {
  loadConfig(opts: { env: NodeJS.ProcessEnv }): { dataDir: string };
  openKeyBackend(cfg: unknown): { close(): Promise<void> };
  openStore(cfg: unknown): { close(): Promise<void> };
  ensureCa(cfg: unknown, keys: unknown, store: unknown): Promise<{ ca: unknown }>;
  buildCertificateAuthority(cfg: unknown, hierarchy: unknown): unknown;
  ensureOcspResponder(cfg: unknown, keys: unknown, ca: unknown, store: unknown): Promise<{ cert: Buffer; key: { ref: string } }>;
  openRegistrationAuthority(cfg: unknown): Promise<{
    ra: {
      registerDevice(a: { id: string; owner?: string; actor: string }): Promise<{ secret: string }>;
      enroll(input: unknown): Promise<{ status: string; certificate?: Buffer }>;
    };
    lifecycle: { revoke(serial: string, reason: string, scope: { kind: 'operator' }, actor: string): Promise<{ changed: boolean }> };
    store: { certificateStatus(serial: string): Promise<{ status: string; revokedAt: Date | null; revocationReason: string | null } | null> };
    close(): Promise<void>;
  }>;
}

/** repoRoot finds the device-ca checkout above this file (wherever it was compiled to), else above the working directory. */
export function repoRoot(): string {
  for (const from of [__dirname, process.cwd()]) {
    for (let dir = from; ; dir = path.dirname(dir)) {
      const pkg = path.join(dir, 'package.json');
      if (fs.existsSync(pkg) && (JSON.parse(fs.readFileSync(pkg, 'utf8')) as { name?: string }).name === 'device-ca') return dir;
      if (path.dirname(dir) === dir) break;
    }
  }
  throw new Error(`bench/ocsp-http: no device-ca package.json above ${__dirname} or ${process.cwd()}`);
}

function loadDistApi(root: string): DistApi {
  const main = path.join(root, 'dist', 'main.js');
  if (!fs.existsSync(main) || !fs.existsSync(path.join(root, 'dist', 'cli', 'main.js'))) throw new Error(`bench/ocsp-http: ${main} missing; build first: npx tsc -p tsconfig.build.json`);
  /* eslint-disable @typescript-eslint/no-require-imports */
  const m = require(main) as Omit<DistApi, 'loadConfig'>;
  const c = require(path.join(root, 'dist', 'config', 'load-config.js')) as Pick<DistApi, 'loadConfig'>;
  /* eslint-enable @typescript-eslint/no-require-imports */
  return { ...m, loadConfig: c.loadConfig } as DistApi;
}

// ------------------------------------------------------------------------------------------- CSRs

function der(tag: number, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  const n = body.length;
  const len = n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), len, body]);
}

/** csrFor: a P-256 PKCS#10 request (RFC 2986) with subject O=owner, CN=id. */
function csrFor(key: crypto.KeyObject, id: string, owner: string): Buffer {
  const rdn = (o: string, v: string) => der(0x31, der(0x30, Buffer.from(o, 'hex'), der(0x0c, Buffer.from(v, 'utf8'))));
  const spki = crypto.createPublicKey(key).export({ type: 'spki', format: 'der' });
  const info = der(0x30, Buffer.from('020100', 'hex'), der(0x30, rdn('060355040a', owner), rdn('0603550403', id)), spki, Buffer.from('a000', 'hex'));
  const sig = crypto.sign('sha256', info, { key, dsaEncoding: 'der' });
  return der(0x30, info, der(0x30, Buffer.from('06082a8648ce3d040302', 'hex')), der(0x03, Buffer.from([0]), sig));
}

// ------------------------------------------------------------------------------------------- requests

/** ocspRequest: OCSPRequest { TBSRequest { requestList { Request { CertID } }, [2] { nonce } } }, as openssl writes it. */
export function ocspRequest(certId: Buffer, nonce: Buffer | null): Buffer {
  const parts = [seq(seq(certId))];
  // openssl: the nonce extnValue is an OCTET STRING holding 16 random octets (RFC 8954 §2.1)
  if (nonce) parts.push(contextExplicit(2, seq(seq(oid(OID.ocspNonce), octetString(octetString(nonce))))));
  return seq(seq(...parts));
}

/** toUtcTime: an openssl index time, YYMMDDHHMMSSZ. */
function indexTime(d: Date): string {
  return d.toISOString().replace(/^\d\d(\d\d)-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d).*$/, '$1$2$3$4$5$6Z');
}

/** REASONS: those openssl's index understands without more fields (certificateHold would need a hold instruction). */
const REASONS = ['keyCompromise', 'superseded', 'affiliationChanged', 'cessationOfOperation'];

export interface BenchCert {
  id: string;
  /** serial: as the store keeps it (lowercase hex, no leading zeros) */
  serial: string;
  der: Buffer;
  status: 'good' | 'revoked';
  certId: Buffer;
}

export interface OcspRig {
  root: string;
  dir: string;
  dataDir: string;
  /** opensslDir: index.txt, issuing.pem, ocsp.pem, ocsp.key for `openssl ocsp` */
  opensslDir: string;
  /** responderSpkiPem: the delegated responder's public key, which must have signed every answer */
  responderSpkiPem: string;
  certs: BenchCert[];
  cachedPost: ClientRequestSpec[];
  cachedGet: ClientRequestSpec[];
  noncePost: ClientRequestSpec[];
  /** requestCheck: how the Node-built requests compared with openssl -reqout */
  requestCheck: string;
  cleanup(): void;
}

/** makeOcspRig builds everything above in a new temp directory. */
export async function makeOcspRig(opts: { devices: number; log: (s: string) => void }): Promise<OcspRig> {
  const root = repoRoot();
  const dist = loadDistApi(root);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-bench-ocsp-'));
  const dataDir = path.join(dir, 'data');
  const opensslDir = path.join(dir, 'openssl');
  fs.mkdirSync(dataDir, { recursive: true });
  fs.mkdirSync(opensslDir);
  // a cheap scrypt cost for the one-time secrets the setup itself uses; OCSP never checks secrets
  const env: NodeJS.ProcessEnv = { DEVICE_CA_DATA: dataDir, DEVICE_CA_ENROLLMENT_SECRET_HASH_COST: '10' };

  // the CA hierarchy and the delegated OCSP responder, as `serve` makes them on first start
  const cfg = dist.loadConfig({ env });
  let responderDer: Buffer;
  let responderKeyFile: string;
  {
    const keys = dist.openKeyBackend(cfg);
    const store = dist.openStore(cfg);
    try {
      const { ca } = await dist.ensureCa(cfg, keys, store);
      const r = await dist.ensureOcspResponder(cfg, keys, dist.buildCertificateAuthority(cfg, ca), store);
      responderDer = r.cert;
      responderKeyFile = r.key.ref; // a software key file: the bench runs without a token
    } finally {
      await store.close();
      await keys.close();
    }
  }
  const issuingPem = fs.readFileSync(path.join(dataDir, 'ca', 'device-ca-issuing.pem'), 'utf8');
  const issuing = new crypto.X509Certificate(issuingPem);
  const responder = new crypto.X509Certificate(responderDer);
  if (!responder.checkIssued(issuing)) throw new Error('bench/ocsp-http: the responder certificate is not issued by the issuing CA');

  // enroll the devices and revoke every fourth certificate
  const t0 = Date.now();
  const h = await dist.openRegistrationAuthority(dist.loadConfig({ env }));
  const enrolled: { id: string; der: Buffer; serial: string }[] = [];
  try {
    const key = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    for (let i = 0; i < opts.devices; i++) {
      const id = `ocsp-bench-${String(i).padStart(4, '0')}`;
      const { secret } = await h.ra.registerDevice({ id, owner: 'bench', actor: 'bench' });
      const out = await h.ra.enroll({ profile: 'default', operation: 'enroll', csr: csrFor(key, id, 'bench'), proofs: { secret: { deviceId: id, secret } } });
      if (out.status !== 'issued' || !out.certificate) throw new Error(`bench/ocsp-http: enrollment of ${id} did not issue (${out.status})`);
      const serial = certificateParts(out.certificate).serial;
      enrolled.push({ id, der: out.certificate, serial });
    }
    for (let i = 3; i < enrolled.length; i += 4) {
      const r = await h.lifecycle.revoke(enrolled[i].serial, REASONS[(i >> 2) % REASONS.length], { kind: 'operator' }, 'bench');
      if (!r.changed) throw new Error(`bench/ocsp-http: revoking ${enrolled[i].serial} changed nothing`);
    }
    // index.txt from the store's own view: the same status, time and reason device-ca answers with
    const lines: string[] = [];
    for (const e of enrolled) {
      const row = await h.store.certificateStatus(e.serial);
      if (!row) throw new Error(`bench/ocsp-http: ${e.serial} not in the store`);
      const x = new crypto.X509Certificate(e.der);
      const expiry = indexTime(new Date(x.validTo));
      // openssl's index keys serials as BN_bn2hex does: uppercase, whole octets, no leading zero octets
      const hex = (e.serial.length % 2 ? '0' + e.serial : e.serial).toUpperCase();
      if (row.status === 'revoked')
        lines.push(
          ['R', expiry, `${indexTime(row.revokedAt!)}${row.revocationReason && row.revocationReason !== 'unspecified' ? ',' + row.revocationReason : ''}`, hex, 'unknown', `/O=bench/CN=${e.id}`].join(
            '\t',
          ),
        );
      else lines.push(['V', expiry, '', hex, 'unknown', `/O=bench/CN=${e.id}`].join('\t'));
    }
    fs.writeFileSync(path.join(opensslDir, 'index.txt'), lines.join('\n') + '\n');
    fs.writeFileSync(path.join(opensslDir, 'index.txt.attr'), 'unique_subject = no\n');
  } finally {
    await h.close();
  }
  opts.log(`enrolled ${enrolled.length} devices (${Math.floor(enrolled.length / 4)} revoked) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  fs.writeFileSync(path.join(opensslDir, 'issuing.pem'), issuingPem);
  fs.writeFileSync(path.join(opensslDir, 'ocsp.pem'), responder.toString());
  fs.copyFileSync(responderKeyFile, path.join(opensslDir, 'ocsp.key'));
  fs.chmodSync(path.join(opensslDir, 'ocsp.key'), 0o600);

  // requests: CertID (SHA-1, as openssl and RFC 5019 clients send) for each certificate
  const issuerParts = certificateParts(issuing.raw);
  const { issuerNameHash, issuerKeyHash } = certIdHashes(issuerParts.subject, issuerParts.spki, 'sha1');
  const certs: BenchCert[] = enrolled.map((e, i) => ({
    id: e.id,
    serial: e.serial,
    der: e.der,
    status: i % 4 === 3 ? 'revoked' : 'good',
    certId: encodeCertId({ hash: 'sha1', issuerNameHash, issuerKeyHash, serialNumber: e.serial }),
  }));
  const requestCheck = compareWithOpenssl(dir, opensslDir, certs[3]);

  const b64 = (b: Buffer) => b.toString('base64');
  const cachedPost = certs.map((c): ClientRequestSpec => ({ method: 'POST', path: '/ocsp', body: b64(ocspRequest(c.certId, null)), certId: b64(c.certId), expect: c.status }));
  // RFC 6960 Appendix A.1: GET {url}/{url-encoding of base-64 encoding of the DER encoding of the OCSPRequest}
  const cachedGet = certs.map((c): ClientRequestSpec => ({ method: 'GET', path: `/ocsp/${encodeURIComponent(b64(ocspRequest(c.certId, null)))}`, certId: b64(c.certId), expect: c.status }));
  const noncePost = certs.map((c): ClientRequestSpec => {
    const body = ocspRequest(c.certId, Buffer.alloc(16));
    return { method: 'POST', path: '/ocsp', body: b64(body), certId: b64(c.certId), expect: c.status, nonceOffset: body.length - 16 };
  });
  return {
    root,
    dir,
    dataDir,
    opensslDir,
    responderSpkiPem: responder.publicKey.export({ type: 'spki', format: 'pem' }) as string,
    certs,
    cachedPost,
    cachedGet,
    noncePost,
    requestCheck,
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

/**
 * compareWithOpenssl asks `openssl ocsp -reqout` for the same two requests (without and with a nonce)
 * and checks that the Node-built ones are the same bytes (the nonce octets aside).
 */
function compareWithOpenssl(dir: string, opensslDir: string, cert: BenchCert): string {
  const certFile = path.join(dir, 'sample-cert.pem');
  fs.writeFileSync(certFile, new crypto.X509Certificate(cert.der).toString());
  const plain = path.join(dir, 'sample-req.der');
  const withNonce = path.join(dir, 'sample-req-nonce.der');
  const run = (args: string[]) =>
    execFileSync('openssl', ['ocsp', '-issuer', path.join(opensslDir, 'issuing.pem'), '-cert', certFile, ...args], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
  run(['-no_nonce', '-reqout', plain]);
  run(['-reqout', withNonce]);
  const a = fs.readFileSync(plain);
  if (!a.equals(ocspRequest(cert.certId, null))) throw new Error(`bench/ocsp-http: the Node-built request differs from openssl's: ${a.toString('hex')}`);
  const b = fs.readFileSync(withNonce);
  const mine = ocspRequest(cert.certId, b.subarray(b.length - 16));
  if (!b.equals(mine)) throw new Error(`bench/ocsp-http: the Node-built nonce request differs from openssl's: ${b.toString('hex')} vs ${mine.toString('hex')}`);
  return `requests identical to openssl ocsp -reqout (${a.length} B; ${b.length} B with nonce)`;
}
