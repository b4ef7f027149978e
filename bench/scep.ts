import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { initCa } from '../src/ca/ca-hierarchy';
import { buildEnvelopedData } from '../src/cms/enveloped-data';
import { buildSignedData, verifySignedData } from '../src/cms/signed-data';
import { loadConfig } from '../src/config/load-config';
import { octetString, printableString } from '../src/der/der-writer';
import { SoftwareKeyBackend, softwareSigningKey } from '../src/keys/software-key-backend';
import { buildService, Service } from '../src/main';
import { MESSAGE_TYPE, PKI_STATUS, SCEP_OID } from '../src/protocols/scep/scep-message';
import { SqliteStore } from '../src/store/sqlite/sqlite-store';
import { BenchRow, fmtRate } from './bench-table';

/**
 * benchScep: SCEP PKCSReq enrollments per second (RFC 8894: verify the SignedData, open the EnvelopedData
 * with the RA key, check the one-time secret, issue, envelope and sign the CertRep) on keep-alive HTTP,
 * beside EST simpleenroll (HTTP Basic, keep-alive HTTPS) against the same in-process service in the same
 * run: the ratio is what SCEP's CMS adds to an enrollment. One worker (this process), scrypt cost 10 for
 * both, RSA 2048 device keys for both (SCEP key transport needs RSA), 16 requests in flight. The client
 * shares the process and its core, so the figures are lower bounds. The requests (keys, self-signed
 * certificates, CSRs, pkiMessages) are made before any timing. Knobs: SCEP_BENCH_N (devices per mode, 96),
 * SCEP_BENCH_CONCURRENCY (requests in flight, 16).
 */
const CONCURRENCY = Math.max(1, Number(process.env.SCEP_BENCH_CONCURRENCY) || 16);
export async function benchScep(): Promise<BenchRow[]> {
  const n = Math.max(16, Number(process.env.SCEP_BENCH_N) || 96);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-bench-scep-'));
  let svc: Service | undefined;
  try {
    const cfg = loadConfig({ env: { DEVICE_CA_DATA: dir }, overrides: { 'scep.enabled': true, 'enrollment.secretHashCost': 10 } });
    const store = new SqliteStore(cfg.store.path);
    await initCa(cfg, new SoftwareKeyBackend(path.join(dir, 'keys')), store);
    await store.close();
    svc = await buildService(cfg, { log: pino({ level: 'silent' }) });
    const s = svc;
    await Promise.all([new Promise<void>((r) => s.http.listen(0, '127.0.0.1', () => r())), new Promise<void>((r) => s.https.listen(0, '127.0.0.1', () => r()))]);
    const httpPort = (s.http.address() as AddressInfo).port;
    const httpsPort = (s.https.address() as AddressInfo).port;
    const ra = await raCertificate(httpPort);

    const scepReqs: Buffer[] = [];
    const estReqs: { auth: string; body: Buffer }[] = [];
    for (let i = 0; i < n; i++) {
      for (const mode of ['scep', 'est'] as const) {
        const id = `bench-${mode}-${i}`;
        const { secret } = await s.ra.registerDevice({ id, actor: 'bench' });
        const dev = device(dir, id, secret);
        if (mode === 'est') estReqs.push({ auth: `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`, body: Buffer.from(dev.csr.toString('base64')) });
        else scepReqs.push(await pkcsReq(dev, ra));
      }
    }
    const httpAgent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
    const httpsAgent = new https.Agent({ keepAlive: true, maxSockets: CONCURRENCY, rejectUnauthorized: false });
    const scep = await timed(scepReqs, async (m) => scepSuccess(await send(http, httpAgent, httpPort, '/scep?operation=PKIOperation', {}, m)));
    const est = await timed(
      estReqs,
      async (r) =>
        (await send(https, httpsAgent, httpsPort, '/.well-known/est/simpleenroll', { Authorization: r.auth, 'Content-Type': 'application/pkcs10', 'Content-Transfer-Encoding': 'base64' }, r.body))
          .status === 200,
    );
    httpAgent.destroy();
    httpsAgent.destroy();
    if (scep.ok !== n || est.ok !== n) throw new Error(`bench/scep: ${scep.ok}/${n} SCEP and ${est.ok}/${n} EST enrollments succeeded`);
    return [
      {
        name: 'SCEP PKCSReq (keep-alive HTTP) vs EST simpleenroll (keep-alive HTTPS), same service',
        figure: fmtRate(scep.rate, 'enroll'),
        baseline: fmtRate(est.rate, 'enroll'),
        ratio: scep.rate / est.rate,
        note: `${n} each, ${CONCURRENCY} in flight, one process (client included), scrypt cost 10, RSA 2048 device keys`,
      },
    ];
  } finally {
    if (svc) {
      const s = svc;
      await Promise.all([new Promise((r) => s.http.close(r)), new Promise((r) => s.https.close(r))]);
      await s.close();
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

interface Device {
  cert: Buffer;
  key: crypto.KeyObject;
  csr: Buffer;
}

function openssl(args: string[]): Buffer {
  const r = spawnSync('openssl', args);
  if (r.status !== 0) throw new Error(`openssl ${args[0]}: ${r.stderr.toString()}`);
  return r.stdout;
}

/** device: an RSA key, its self-signed certificate and a CSR with the secret as challengePassword, by openssl as a client makes them. */
function device(dir: string, id: string, secret: string): Device {
  const keyFile = path.join(dir, `${id}.key`);
  openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', keyFile]);
  const conf = path.join(dir, `${id}.cnf`);
  fs.writeFileSync(conf, `[req]\ndistinguished_name=dn\nattributes=attrs\nprompt=no\n[dn]\nCN=${id}\n[attrs]\nchallengePassword=${secret}\n`);
  const csr = openssl(['req', '-new', '-key', keyFile, '-config', conf, '-outform', 'DER']);
  const cert = Buffer.from(new crypto.X509Certificate(openssl(['req', '-x509', '-new', '-key', keyFile, '-subj', `/CN=${id}`, '-days', '1'])).raw);
  return { cert, key: crypto.createPrivateKey(fs.readFileSync(keyFile)), csr };
}

function pkcsReq(d: Device, raCert: Buffer): Promise<Buffer> {
  return buildSignedData({
    content: buildEnvelopedData(d.csr, raCert, 'aes-256-cbc'),
    signer: { certificate: d.cert, key: softwareSigningKey(d.key, 'rsa-2048', 'memory') },
    attributes: [
      { type: SCEP_OID.messageType, values: [printableString(MESSAGE_TYPE.PKCSReq)] },
      { type: SCEP_OID.transactionID, values: [printableString(crypto.randomUUID())] },
      { type: SCEP_OID.senderNonce, values: [octetString(crypto.randomBytes(16))] },
    ],
    certificates: [d.cert],
  });
}

/** raCertificate: the first certificate of GetCACert (the RA certificate clients encrypt to). */
async function raCertificate(port: number): Promise<Buffer> {
  const r = await fetch(`http://127.0.0.1:${port}/scep?operation=GetCACert`);
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(
    spawnSync('openssl', ['pkcs7', '-inform', 'DER', '-print_certs'], { input: Buffer.from(await r.arrayBuffer()) }).stdout.toString(),
  )![0];
  return Buffer.from(new crypto.X509Certificate(pem).raw);
}

function send(mod: typeof http | typeof https, agent: http.Agent, port: number, p: string, headers: Record<string, string>, body: Buffer): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = mod.request({ host: '127.0.0.1', port, path: p, method: 'POST', agent, headers: { ...headers, 'Content-Length': body.length } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (b: Buffer) => parts.push(b));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** scepSuccess: a CertRep whose pkiStatus is SUCCESS (a FAILURE is HTTP 200 too), its signature verified as a client does. */
function scepSuccess(r: { status: number; body: Buffer }): boolean {
  if (r.status !== 200) return false;
  const status = verifySignedData(r.body).signer.attributes.get(SCEP_OID.pkiStatus)?.[0];
  return status !== undefined && status.subarray(2).toString() === PKI_STATUS.SUCCESS;
}

/** timed sends every request once, CONCURRENCY in flight, and returns the rate of successful enrollments. */
async function timed<T>(reqs: T[], one: (r: T) => Promise<boolean>): Promise<{ ok: number; rate: number }> {
  let next = 0;
  let ok = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < reqs.length) if (await one(reqs[next++])) ok++;
    }),
  );
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { ok, rate: ok / seconds };
}
