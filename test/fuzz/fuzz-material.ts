import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { X509Certificates } from '@peculiar/x509';
import { buildFirmwareReceipt } from '../../src/cms/firmware-receipt';
import { algorithmOfKey, softwareSigningKey } from '../../src/keys/software-key-backend';
import { buildCsr } from '../fixtures/build-csr';
import { openssl } from '../helpers/pki-client';
import { RunningService } from '../helpers/service-process';
import { TmpDir } from '../helpers/tmp';
import { Endpoint, RawReply, sendRaw } from '../helpers/raw-http';
import { TPM_LABEL } from './tpm-cases';
import { scepMessages } from './scep-cases';

/**
 * fuzz-material: the VALID requests the campaign mutates, made against the running service the way a
 * device and an operator make them: an operator token, registered devices with their one-time secrets
 * and CSRs, an enrolled device (certificate and key) for re-enrollment, OCSP requests made by openssl,
 * the admin routes read from /api/v1/openapi.json.
 */

/** EstSlot: a registered device whose secret is still unused, and a CSR for it. */
export interface EstSlot {
  id: string;
  secret: string;
  csr: Buffer;
}

export interface EnrolledDevice {
  id: string;
  certPem: string;
  keyPem: string;
  serial: string;
  /** csr: a re-enrollment CSR (same subject, same key) */
  csr: Buffer;
}

export interface AdminRoute {
  method: 'GET' | 'POST';
  /** template: /devices/{id} */
  template: string;
  query: string[];
  /** body: a valid body for the route ({} when it takes none) */
  body: Record<string, unknown>;
}

export interface FuzzMaterial {
  ep: Endpoint;
  token: string;
  estSlots: EstSlot[];
  /** tpmDevice: a registered device on the TPM label (its secret authenticates the TPM routes; it is never enrolled) */
  tpmDevice: EstSlot;
  reenroll: EnrolledDevice;
  /** adminDevices: ids the admin campaign may suspend, transfer and retire (never the EST ones) */
  adminDevices: string[];
  adminSerials: string[];
  adminRoutes: AdminRoute[];
  ocspRequests: Buffer[];
  caNames: string[];
  /** scepMessages: valid SCEP pkiMessages (PKCSReq for registered devices, GetCert, GetCRL, CertPoll) */
  scepMessages: Buffer[];
  /** firmware: a plain release (name, version) and valid RFC 4108 receipts for it signed by `reenroll` (a load receipt, an error report) */
  firmware: { name: string; version: number; receipts: Buffer[] };
  /** consoleSession: an operator console session (the cookie's value) and its CSRF token */
  consoleSession: { id: string; csrf: string };
  /** replaceSlot: register a fresh device in slot i (its secret was used by a successful enrollment) */
  replaceSlot(i: number): Promise<void>;
}

/** bodyJson: a reply body as JSON (the admin API never chunks its replies). */
const bodyJson = (r: RawReply): Record<string, unknown> => JSON.parse(r.body.toString('utf8')) as Record<string, unknown>;

/** certFromEstReply: the certificate inside an EST certs-only reply (base64 PKCS#7). */
export function certFromEstReply(r: RawReply): Buffer {
  const p7 = Buffer.from(r.body.toString('latin1'), 'base64');
  const certs = new X509Certificates();
  certs.import(p7);
  return Buffer.from(certs[0].rawData);
}

/** newEcKey: a P-256 key pair as KeyObject and PEM. */
function newEcKey(): { key: crypto.KeyObject; pem: string } {
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { key: privateKey, pem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

export async function prepareMaterial(svc: RunningService, tmp: TmpDir, token: string): Promise<FuzzMaterial> {
  const ep: Endpoint = { host: '127.0.0.1', httpsPort: svc.httpsPort, httpPort: svc.httpPort, ca: fs.readFileSync(svc.chainPem, 'utf8') };
  const auth: [string, string] = ['Authorization', `Bearer ${token}`];
  let serial = 0;

  const admin = async (method: string, p: string, body?: unknown): Promise<RawReply> => {
    const r = await sendRaw(ep, {
      listener: 'https',
      method,
      path: `/api/v1${p}`,
      headers: [auth, ['Content-Type', 'application/json']],
      body: body === undefined ? undefined : Buffer.from(JSON.stringify(body)),
    });
    if (r.kind !== 'reply' || r.status >= 300) throw new Error(`admin ${method} ${p}: ${r.kind === 'reply' ? `HTTP ${r.status} ${r.body.toString()}` : r.error}`);
    return r;
  };
  const register = async (prefix: string, label?: string): Promise<EstSlot> => {
    const id = `${prefix}-${++serial}`;
    const r = await admin('POST', '/devices', { id, owner: 'fuzz', ...(label ? { label } : {}) });
    return { id, secret: bodyJson(r).secret as string, csr: buildCsr({ privateKey: newEcKey().key, subject: [{ type: 'CN', value: id }] }) };
  };
  const enroll = async (prefix: string): Promise<EnrolledDevice> => {
    const id = `${prefix}-${++serial}`;
    const secret = bodyJson(await admin('POST', '/devices', { id, owner: 'fuzz' })).secret as string;
    const k = newEcKey();
    const csr = buildCsr({ privateKey: k.key, subject: [{ type: 'CN', value: id }] });
    const r = await sendRaw(ep, {
      listener: 'https',
      method: 'POST',
      path: '/.well-known/est/simpleenroll',
      headers: [
        ['Authorization', `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`],
        ['Content-Type', 'application/pkcs10'],
      ],
      body: Buffer.from(csr.toString('base64')),
    });
    if (r.kind !== 'reply' || r.status !== 200) throw new Error(`enroll ${id}: ${r.kind === 'reply' ? `HTTP ${r.status} ${r.body.toString()}` : r.error}`);
    const der = certFromEstReply(r);
    const x = new crypto.X509Certificate(der);
    // the re-enrollment CSR carries the certificate's subject (O=owner, CN=id) as the RA requires
    const subject = x.subject.split('\n').map((l) => {
      const i = l.indexOf('=');
      return { type: l.slice(0, i), value: l.slice(i + 1) };
    });
    return { id, certPem: x.toString(), keyPem: k.pem, serial: x.serialNumber.toLowerCase(), csr: buildCsr({ privateKey: k.key, subject: subject as never }) };
  };

  const estSlots = await Promise.all(Array.from({ length: 6 }, () => register('fz-est')));
  const tpmDevice = await register('fz-tpm', TPM_LABEL);
  const reenroll = await enroll('fz-reenroll');
  const adminEnrolled = await Promise.all(Array.from({ length: 3 }, () => enroll('fz-admin')));
  const adminDevices = [...adminEnrolled.map((d) => d.id), ...(await Promise.all([register('fz-admin'), register('fz-admin')])).map((s) => s.id)];

  // OCSP requests as openssl makes them, with and without a nonce, for a real certificate
  const issuing = path.join(svc.dataDir, 'ca', 'device-ca-issuing.pem');
  const certFile = tmp.write('fuzz/reenroll.crt', reenroll.certPem);
  const ocspRequests: Buffer[] = [];
  for (const [pre, post] of [
    [[], []],
    [[], ['-no_nonce']],
    [['-sha256'], []],
  ]) {
    const out = tmp.file(`fuzz/ocsp-${ocspRequests.length}.der`);
    await openssl('ocsp', '-issuer', issuing, ...pre, '-cert', certFile, '-reqout', out, ...post);
    ocspRequests.push(fs.readFileSync(out));
  }
  // and one for the issuing CA certificate itself, answered from the root-signed response (root-ocsp.ts)
  const rootOcsp = tmp.file('fuzz/ocsp-root.der');
  await openssl('ocsp', '-issuer', path.join(svc.dataDir, 'ca', 'device-ca-root.pem'), '-cert', issuing, '-reqout', rootOcsp, '-no_nonce');
  ocspRequests.push(fs.readFileSync(rootOcsp));

  // every admin route the service documents, with a valid body for each POST
  const spec = bodyJson((await sendRaw(ep, { listener: 'https', method: 'GET', path: '/api/v1/openapi.json', headers: [] })) as RawReply) as {
    paths: Record<string, Record<string, { parameters?: { name: string; in: string }[] }>>;
  };
  const validBody: Record<string, Record<string, unknown>> = {
    '/devices': { id: 'fz-new', owner: 'fuzz', label: 'default', secretTtl: '1d' },
    '/devices/{id}/transfer': { to: 'fuzz-2', secretTtl: '1h' },
    '/devices/{id}/secret': { secretTtl: '2h' },
    '/certificates/{serial}/revoke': { reason: 'superseded' },
  };
  const adminRoutes: AdminRoute[] = [];
  for (const [template, ops] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      adminRoutes.push({
        method: method.toUpperCase() as 'GET' | 'POST',
        template,
        query: (op.parameters ?? []).filter((p) => p.in === 'query').map((p) => p.name),
        body: method === 'post' ? (validBody[template] ?? {}) : {},
      });
    }
  }

  const scep = await scepMessages(ep, tmp, await Promise.all([register('fz-scep'), register('fz-scep')]));
  const signIn = await sendRaw(ep, { listener: 'https', method: 'POST', path: '/console/api/session', headers: [['Content-Type', 'application/json']], body: Buffer.from(JSON.stringify({ token })) });
  if (signIn.kind !== 'reply' || signIn.status !== 201) throw new Error(`console sign-in: ${signIn.kind === 'reply' ? `HTTP ${signIn.status}` : signIn.error}`);
  const consoleSession = { id: /dca_console=([^;]+)/.exec(signIn.headers.get('set-cookie') ?? '')![1], csrf: bodyJson(signIn).csrf as string };

  const firmware = await firmwareRelease(svc, tmp, reenroll);

  const m: FuzzMaterial = {
    ep,
    token,
    estSlots,
    tpmDevice,
    reenroll,
    adminDevices,
    adminSerials: adminEnrolled.map((d) => d.serial),
    adminRoutes,
    ocspRequests,
    caNames: ['device-ca-issuing', 'device-ca-root'],
    scepMessages: scep,
    consoleSession,
    firmware,
    async replaceSlot(i) {
      m.estSlots[i] = await register('fz-est');
    },
  };
  return m;
}

/**
 * firmwareRelease: one plain firmware release (a one-role policy, one signer made with openssl) so that
 * receipts reach the receipt parser instead of stopping at "no such release", and two valid receipts for
 * it, signed by the enrolled device.
 */
async function firmwareRelease(svc: RunningService, tmp: TmpDir, device: EnrolledDevice): Promise<FuzzMaterial['firmware']> {
  const cli = async (...args: string[]): Promise<string> => {
    const r = await svc.cli(args);
    if (r.code !== 0) throw new Error(`device-ca ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const name = 'fz-fw';
  const key = tmp.file('fuzz/fw-signer.key');
  const csr = tmp.file('fuzz/fw-signer.csr');
  await openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key);
  await openssl('req', '-new', '-key', key, '-subj', '/CN=fz-signer', '-out', csr);
  const crt = tmp.write('fuzz/fw-signer.crt', await cli('signers', 'add', 'fz-signer', '--role', 'fuzz', '--csr', csr));
  await cli('firmware', 'policy', 'set', '--roles', 'fuzz');
  const pkg = tmp.file('fuzz/fw-0.der');
  await cli('firmware', 'create', '--image', tmp.write('fuzz/fw.bin', crypto.randomBytes(512)), '--name', name, '--version', '1', '--out', pkg);
  await cli('firmware', 'sign', '--in', pkg, '--cert', crt, '--key', key, '--out', tmp.file('fuzz/fw-1.der'));
  await cli('firmware', 'release', '--in', tmp.file('fuzz/fw-1.der'), '--out', tmp.file('fuzz/fw-rel.der'));
  const k = crypto.createPrivateKey(device.keyPem);
  const signer = { certificate: Buffer.from(new crypto.X509Certificate(device.certPem).raw), key: softwareSigningKey(k, algorithmOfKey(k), 'fuzz') };
  const base = { hwType: '1.3.6.1.4.1.99999.1', hwSerial: device.id, package: { name, version: 1 } };
  const receipts = [
    await buildFirmwareReceipt({ kind: 'loaded', ...base }, signer, new Date()),
    await buildFirmwareReceipt({ kind: 'error', ...base, errorCode: 23, vendorErrorCode: 1 }, signer, new Date()),
  ];
  return { name, version: 1, receipts };
}
