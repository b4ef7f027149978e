import 'reflect-metadata';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as http from 'node:http';
import * as https from 'node:https';
import pino, { Logger } from 'pino';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { CaHierarchy, caExists, initCa, loadCa } from './ca/ca-hierarchy';
import { certificateParts } from './ca/certificate-parts';
import { CertificateAuthority } from './ca/certificate-authority';
import { pemBlocks, toPem } from './ca/pem';
import { publicBaseUrl } from './config/load-config';
import { Config } from './config/schema';
import { DeviceCaError } from './errors/device-ca-error';
import { createHttpListener, createHttpsListener } from './http/listeners';
import { KeyBackend } from './keys/key-backend';
import { SoftwareKeyBackend, generateKeyPair } from './keys/software-key-backend';
import { caCertsRouter } from './protocols/ca-certs/ca-certs-router';
import { estRouter } from './protocols/est/est-router';
import { opsRouter } from './protocols/ops/ops-router';
import { BootstrapPolicy } from './ra/bootstrap-identity';
import { RegistrationAuthority } from './ra/registration-authority';
import { Store } from './store/store';
import { CrlPublisher } from './ca/crl-publisher';
import { OcspResponder } from './ca/ocsp-codec';
import { OcspService } from './ca/ocsp-service';
import { crlRouter } from './protocols/crl/crl-router';
import { ocspHandler } from './protocols/ocsp/ocsp-handler';
import { adminRouter } from './protocols/admin/admin-router';
import { AdminAccess, fingerprintOfPem } from './ra/admin-access';
import { DeviceLifecycle } from './ra/device-lifecycle';
import { KeyRole, SigningKey } from './keys/key-backend';
import { KeyRouter } from './keys/key-router';
import { groupedSigning } from './keys/grouped-signing-key';
import { Pkcs11KeyBackend } from './keys/pkcs11/pkcs11-key-backend';
import { parsePkcs11Uri } from './keys/pkcs11/pkcs11-uri';
import { SqliteStore } from './store/sqlite/sqlite-store';

/**
 * main: the one place that wires concrete classes together (constructor injection, no singletons).
 * The CLI and the tests build everything through these functions.
 */

export function createLogger(cfg: Config, dest?: pino.DestinationStream): Logger {
  return pino(
    {
      level: cfg.log.level,
      base: { pid: process.pid },
      // log lines are built from named fields only (never headers or bodies); these catch a mistake cheaply
      // (wildcard paths cost about 9 µs per line on the OCSP path)
      redact: { paths: ['password', 'secret', 'authorization', 'privateKey', 'pin'], censor: '[redacted]' },
    },
    dest ?? pino.destination({ fd: 2, sync: false }),
  );
}

export function openStore(cfg: Config): Store {
  return new SqliteStore(cfg.store.path);
}

/** keysBackendKind resolves keys.backend 'auto': a configured PKCS#11 module or token means the HSM. */
export function keysBackendKind(cfg: Config): 'software' | 'pkcs11' {
  if (cfg.keys.backend !== 'auto') return cfg.keys.backend;
  // a token named without a module is a mistake to report, not a reason to fall back to key files
  const p = cfg.keys.pkcs11;
  return p.module || p.token || p.serial ? 'pkcs11' : 'software';
}

/** readPin takes a token's PIN from the named environment variable or file; never from the config file. */
function readPin(t: { pinEnv?: string; pinFile?: string }, what: string): string {
  if (t.pinFile) {
    try {
      return fs.readFileSync(t.pinFile, 'utf8').split(/\r?\n/)[0];
    } catch {
      throw new DeviceCaError('config', `${what}.pinFile: cannot read ${t.pinFile}`);
    }
  }
  const name = t.pinEnv ?? 'DEVICE_CA_PKCS11_PIN';
  const pin = process.env[name];
  if (pin === undefined || pin === '') throw new DeviceCaError('config', `${what}: no PIN: set ${name} (or ${what}.pinFile)`);
  return pin;
}

/**
 * openKeyBackend builds the KeyBackend for this process: software files, or PKCS#11 tokens (one backend
 * per token, shared by the roles on it; each process has its own PKCS#11 state and session pool).
 */
export function openKeyBackend(cfg: Config): KeyBackend {
  const pass = process.env[cfg.keys.passphraseEnv];
  const software = new SoftwareKeyBackend(path.join(cfg.dataDir, 'keys'), pass && pass.length ? pass : undefined);
  if (keysBackendKind(cfg) === 'software') return software;
  const p = cfg.keys.pkcs11;
  if (!p.module) throw new DeviceCaError('config', 'keys.pkcs11.module: the PKCS#11 module path is required (DEVICE_CA_PKCS11_MODULE)');
  if (!p.token && !p.serial) throw new DeviceCaError('config', 'keys.pkcs11.token: name the token by label (DEVICE_CA_PKCS11_TOKEN) or serial');
  const tokens = new Map<string, Promise<KeyBackend>>();
  const tokenBackend = (t: { token?: string; serial?: string; pinEnv?: string; pinFile?: string }, what: string): Promise<KeyBackend> => {
    const key = `${t.token ?? ''}|${t.serial ?? ''}`;
    let b = tokens.get(key);
    if (!b) {
      const settings =
        what === 'keys.pkcs11'
          ? `keys.pkcs11.module (DEVICE_CA_PKCS11_MODULE), keys.pkcs11.token (DEVICE_CA_PKCS11_TOKEN), PIN from ${t.pinFile ? 'keys.pkcs11.pinFile' : (t.pinEnv ?? 'DEVICE_CA_PKCS11_PIN')}`
          : `keys.pkcs11.module, ${what}.token, PIN from ${t.pinFile ? `${what}.pinFile` : (t.pinEnv ?? 'DEVICE_CA_PKCS11_PIN')}`;
      const opened = Promise.resolve()
        .then(() => new Pkcs11KeyBackend({ module: p.module!, token: t.token, serial: t.serial, pin: readPin(t, what), sessionPoolSize: p.sessionPoolSize }).open())
        .catch((e: unknown) => {
          // name the settings to check; the backend's message already says what went wrong
          if (e instanceof DeviceCaError && !e.message.includes('DEVICE_CA_PKCS11_PIN')) throw new DeviceCaError(e.code, `${e.message} [check ${settings}]`, { cause: e });
          throw e;
        });
      tokens.set(key, opened);
      b = opened;
    }
    return b;
  };
  const roleToken = (role: KeyRole) => {
    const r = cfg.keys.roles[role];
    return r.token || r.serial ? { token: r.token, serial: r.serial, pinEnv: r.pinEnv ?? p.pinEnv, pinFile: r.pinFile ?? p.pinFile } : p;
  };
  return new KeyRouter(
    (role) => tokenBackend(roleToken(role), cfg.keys.roles[role].token || cfg.keys.roles[role].serial ? `keys.roles.${role}` : 'keys.pkcs11'),
    async (ref) => {
      if (!ref.startsWith('pkcs11:')) return software;
      const u = parsePkcs11Uri(ref);
      // the PIN of a token comes from the role (or default) configuration that names it
      const named = (['root', 'issuing', 'ocsp', 'ra'] as KeyRole[]).map(roleToken).find((t) => (u.token && t.token === u.token) || (u.serial && t.serial === u.serial));
      return tokenBackend(named ?? { token: u.token, serial: u.serial, pinEnv: p.pinEnv, pinFile: p.pinFile }, 'keys.pkcs11');
    },
    (role) => cfg.keys.roles[role].key,
  );
}

/** ensureCa creates the CA hierarchy on first start; later starts load it. */
export async function ensureCa(cfg: Config, keys: KeyBackend): Promise<{ ca: CaHierarchy; created: boolean }> {
  if (caExists(cfg)) return { ca: await loadCa(cfg, keys), created: false };
  try {
    return { ca: await initCa(cfg, keys), created: true };
  } catch (e) {
    if (e instanceof DeviceCaError && e.code === 'conflict' && caExists(cfg)) return { ca: await loadCa(cfg, keys), created: false };
    throw e;
  }
}

export function buildCertificateAuthority(cfg: Config, hierarchy: CaHierarchy): CertificateAuthority {
  return new CertificateAuthority({ issuing: hierarchy.issuing, publicUrl: publicBaseUrl(cfg), crlShards: cfg.crl.shards, backdateSeconds: cfg.ca.backdate });
}

/** loadBootstrapPolicy reads the configured manufacturer trust anchors (PEM files or directories of them). */
export function loadBootstrapPolicy(cfg: Config): BootstrapPolicy {
  const anchors: crypto.X509Certificate[] = [];
  for (const p of cfg.bootstrap.trustAnchors) {
    let files: string[];
    try {
      files = fs.statSync(p).isDirectory() ? fs.readdirSync(p).filter((f) => /\.(pem|crt)$/.test(f)).map((f) => path.join(p, f)) : [p];
    } catch {
      throw new DeviceCaError('config', `bootstrap.trustAnchors: cannot read ${p}`);
    }
    for (const f of files) {
      const text = fs.readFileSync(f, 'utf8');
      const ders = pemBlocks(text);
      if (!ders.length) throw new DeviceCaError('config', `bootstrap.trustAnchors: no PEM certificate in ${f}`);
      anchors.push(...ders.map((d) => new crypto.X509Certificate(d)));
    }
  }
  let pattern: RegExp | undefined;
  if (cfg.bootstrap.deviceIdPattern) {
    try {
      pattern = new RegExp(cfg.bootstrap.deviceIdPattern);
    } catch {
      throw new DeviceCaError('config', 'bootstrap.deviceIdPattern: not a valid regular expression');
    }
  }
  return { anchors, deviceIdFrom: cfg.bootstrap.deviceIdFrom, deviceIdPattern: pattern };
}

const TLS_RENEW_BEFORE_MS = 30 * 86400_000;
const RESPONDER_CHECK_MS = 6 * 3600_000;

/**
 * ensureTlsServerCertificate returns the HTTPS listener's certificate chain and key: the configured
 * external files, or one issued by the issuing CA for localhost, 127.0.0.1, ::1 and https.names,
 * renewed 30 days before it expires or when the names change.
 */
export async function ensureTlsServerCertificate(cfg: Config, ca: CertificateAuthority, hierarchy: CaHierarchy, store: Store): Promise<{ certPem: string; keyPem: string }> {
  if (cfg.https.certFile || cfg.https.keyFile) {
    if (!cfg.https.certFile || !cfg.https.keyFile) throw new DeviceCaError('config', 'https.certFile and https.keyFile go together');
    try {
      return { certPem: fs.readFileSync(cfg.https.certFile, 'utf8'), keyPem: fs.readFileSync(cfg.https.keyFile, 'utf8') };
    } catch (e) {
      throw new DeviceCaError('config', `https.certFile/keyFile: ${(e as Error).message}`);
    }
  }
  const dir = path.join(cfg.dataDir, 'tls');
  const certFile = path.join(dir, 'server.pem');
  const keyFile = path.join(dir, 'server.key');
  const names = ['localhost', '127.0.0.1', '::1', ...cfg.https.names];
  try {
    const certPem = fs.readFileSync(certFile, 'utf8');
    const x = new crypto.X509Certificate(certPem);
    const have = (x.subjectAltName ?? '').split(', ').map((s) => s.replace(/^(DNS|IP Address):/, '').toLowerCase());
    const fresh = new Date(x.validTo).getTime() - Date.now() > TLS_RENEW_BEFORE_MS;
    const sameNames = names.every((n) => have.includes(n.toLowerCase()) || (n === '::1' && have.includes('0:0:0:0:0:0:0:1')));
    if (fresh && sameNames && x.checkIssued(new crypto.X509Certificate(hierarchy.issuing.der))) return { certPem, keyPem: fs.readFileSync(keyFile, 'utf8') };
  } catch {
    // missing or unreadable: issue a new one
  }
  const kp = generateKeyPair('ecdsa-p256');
  const spki = kp.publicKey.export({ type: 'spki', format: 'der' });
  const sans = names.map((n) => (/^[\d.]+$/.test(n) || n.includes(':') ? { type: 'ip' as const, value: n } : { type: 'dns' as const, value: n }));
  const issued = await ca.issue({ profile: { name: 'tls-server', validitySeconds: 397 * 86400, serverAuth: true }, subject: [{ type: 'CN', value: 'localhost' }], spki, keyType: 'ec', sans });
  await store.recordIssuance({
    cert: { serial: issued.serial, deviceId: null, issuer: issued.issuer, subject: 'CN=localhost', profile: 'tls-server', notBefore: issued.notBefore, notAfter: issued.notAfter, shard: issued.shard, spkiSha256: crypto.createHash('sha256').update(spki).digest('hex'), der: issued.der },
    audit: { type: 'certificate.issued', actor: 'device-ca', subject: 'tls-server', data: { serial: issued.serial, names } },
  });
  const certPem = toPem(issued.der, 'CERTIFICATE') + toPem(hierarchy.issuing.der, 'CERTIFICATE');
  const keyPem = kp.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.writeFileSync(keyFile + '.tmp', keyPem, { mode: 0o600 });
  fs.writeFileSync(certFile + '.tmp', certPem);
  fs.renameSync(keyFile + '.tmp', keyFile);
  fs.renameSync(certFile + '.tmp', certFile);
  return { certPem, keyPem };
}

/** keyAssignments: which key serves which role (for `device-ca keys list`), from the CA state files. */
export function keyAssignments(cfg: Config): { role: string; ca: string; ref: string; certificate: string; spkiSha256: string }[] {
  if (!caExists(cfg)) throw new DeviceCaError('config', `no CA in ${path.join(cfg.dataDir, 'ca')}; run \`device-ca init\` first`);
  const state = JSON.parse(fs.readFileSync(path.join(cfg.dataDir, 'ca', 'state.json'), 'utf8')) as CaHierarchy['state'];
  const rows = [
    { role: 'root', ca: state.root.name, ref: state.root.keyRef, certificate: state.root.certFile },
    { role: 'issuing', ca: state.issuing.name, ref: state.issuing.keyRef, certificate: state.issuing.certFile },
  ];
  try {
    const o = JSON.parse(fs.readFileSync(path.join(cfg.dataDir, 'ca', 'ocsp-responder.json'), 'utf8')) as OcspResponderState;
    rows.push({ role: 'ocsp', ca: state.issuing.name, ref: o.keyRef, certificate: o.certFile });
  } catch {
    // no responder yet: made at the first `serve`
  }
  return rows.map((r) => {
    let spkiSha256 = '';
    try {
      spkiSha256 = crypto.createHash('sha256').update(certificateParts(fs.readFileSync(r.certificate)).spki).digest('hex');
    } catch {
      spkiSha256 = '(certificate unreadable)';
    }
    return { ...r, spkiSha256 };
  });
}

/** OcspResponderState is <dataDir>/ca/ocsp-responder.json: the responder key (kept across renewals) and certificate. */
interface OcspResponderState {
  keyRef: string;
  certFile: string;
}

/**
 * ensureOcspResponder returns the delegated OCSP responder key and certificate, issuing the certificate
 * when it is missing or has less than a third of its lifetime left. The key is made once.
 */
export async function ensureOcspResponder(cfg: Config, keys: KeyBackend, ca: CertificateAuthority, store: Store): Promise<{ key: SigningKey; cert: Buffer }> {
  const stateFile = path.join(cfg.dataDir, 'ca', 'ocsp-responder.json');
  let state: OcspResponderState | null = null;
  try {
    state = JSON.parse(fs.readFileSync(stateFile, 'utf8')) as OcspResponderState;
  } catch {
    state = null;
  }
  let key: SigningKey;
  if (state) key = await keys.load(state.keyRef);
  else key = await keys.generate('ocsp', cfg.ca.algorithm as SigningKey['algorithm'], `${cfg.ca.issuing.name}-ocsp-${crypto.randomBytes(3).toString('hex')}`);
  if (state) {
    try {
      const der = fs.readFileSync(state.certFile);
      const x = new crypto.X509Certificate(der);
      const left = new Date(x.validTo).getTime() - Date.now();
      if (left > (cfg.ocsp.responderValidity * 1000) / 3 && x.checkIssued(new crypto.X509Certificate(ca.issuer.der)) && der.includes(key.spki)) return { key, cert: der };
    } catch {
      // missing or unreadable: issue a new one
    }
  }
  const issued = await ca.issueOcspResponder(key.spki, cfg.ocsp.responderValidity);
  await store.recordIssuance({
    cert: { serial: issued.serial, deviceId: null, issuer: issued.issuer, subject: `CN=${cfg.ca.issuing.name} OCSP responder`, profile: 'ocsp-responder', notBefore: issued.notBefore, notAfter: issued.notAfter, shard: issued.shard, spkiSha256: crypto.createHash('sha256').update(key.spki).digest('hex'), der: issued.der },
    audit: { type: 'certificate.issued', actor: 'device-ca', subject: 'ocsp-responder', data: { serial: issued.serial } },
  });
  const certFile = path.join(cfg.dataDir, 'ca', `${cfg.ca.issuing.name}-ocsp-${issued.serial.slice(0, 8)}.crt`);
  fs.writeFileSync(certFile + '.tmp', issued.der);
  fs.renameSync(certFile + '.tmp', certFile);
  fs.writeFileSync(stateFile + '.tmp', JSON.stringify({ keyRef: key.ref, certFile }, null, 2) + '\n');
  fs.renameSync(stateFile + '.tmp', stateFile);
  return { key, cert: issued.der };
}

/** operatorFingerprints reads admin.clientCerts. */
function operatorFingerprints(cfg: Config): string[] {
  return cfg.admin.clientCerts.map((f) => {
    try {
      return fingerprintOfPem(fs.readFileSync(f, 'utf8'));
    } catch {
      throw new DeviceCaError('config', `admin.clientCerts: cannot read a PEM certificate from ${f}`);
    }
  });
}

export interface Service {
  https: https.Server;
  http: http.Server;
  ra: RegistrationAuthority;
  lifecycle: DeviceLifecycle;
  crl: CrlPublisher;
  store: Store;
  registry: Registry;
  close(): Promise<void>;
}

export interface ServiceOptions {
  log: Logger;
  /** metricsText lets a cluster worker serve metrics aggregated by the primary */
  metricsText?: () => Promise<string>;
  /** publishCrls: this process runs the CRL publication timer (one worker per node does) */
  publishCrls?: boolean;
}

/** buildService wires one worker's listeners (not yet listening), RA, CA, store and keys. */
export async function buildService(cfg: Config, opts: ServiceOptions): Promise<Service> {
  const store = openStore(cfg);
  const keys = openKeyBackend(cfg);
  const hierarchy = await loadCa(cfg, keys);
  const ca = buildCertificateAuthority(cfg, hierarchy);
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'device_ca_' });
  const bootstrap = loadBootstrapPolicy(cfg);
  const ra = new RegistrationAuthority({ config: cfg, store, ca, bootstrap, metrics: registry });
  const crl = new CrlPublisher(hierarchy.issuing, store, cfg.crl, publicBaseUrl(cfg));
  const lifecycle = new DeviceLifecycle(cfg, store, (changes) => {
    // re-issue the touched shards now; OCSP reads status from the store on every request
    for (const shard of new Set(changes.map((c) => c.shard))) crl.publish(shard).catch((e) => opts.log.error({ err: { message: (e as Error).message } }, 'CRL publication failed'));
  });
  const access = new AdminAccess(store, operatorFingerprints(cfg));
  const responder = await ensureOcspResponder(cfg, keys, ca, store);
  const ocsp = new OcspService([hierarchy.issuing], new OcspResponder(groupedSigning(responder.key), responder.cert), store, cfg.ocsp);
  const tlsCert = await ensureTlsServerCertificate(cfg, ca, hierarchy, store);
  const trustPems = [toPem(hierarchy.issuing.der, 'CERTIFICATE'), toPem(hierarchy.root.der, 'CERTIFICATE'), ...bootstrap.anchors.map((a) => a.toString())];
  const httpsServer = createHttpsListener({
    tls: {
      cert: tlsCert.certPem,
      key: tlsCert.keyPem,
      ca: trustPems,
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
      ciphers: cfg.https.ciphers,
      handshakeTimeout: cfg.https.handshakeTimeout * 1000,
    },
    mounts: [
      { path: '/.well-known/est', router: estRouter({ ra, caCerts: [hierarchy.issuing.der, hierarchy.root.der], bodyLimit: cfg.https.bodyLimit, replyBase64: Object.fromEntries(Object.entries(cfg.est.labels).map(([name, l]) => [name, l.replyBase64])) }) },
      { path: '/api/v1', router: adminRouter({ access, lifecycle, ra, bodyLimit: cfg.https.bodyLimit }) },
    ],
    registry,
    log: opts.log,
  });
  const metricsRegistry = opts.metricsText ? ({ contentType: registry.contentType, metrics: opts.metricsText } as unknown as Registry) : registry;
  const httpServer = createHttpListener({
    mounts: [
      { path: '/ca', router: caCertsRouter(new Map([[hierarchy.root.name, hierarchy.root.der], [hierarchy.issuing.name, hierarchy.issuing.der]])) },
      { path: '/crl', router: crlRouter([crl], 60) },
      { path: '/', router: opsRouter({ registry: metricsRegistry, health: async () => void (await store.getDevice('')) }) },
    ],
    fast: [{ prefix: '/ocsp', route: 'ocsp', handler: ocspHandler(ocsp, { maxRequestBytes: cfg.ocsp.maxRequestBytes, maxAgeSeconds: cfg.ocsp.maxAge, registry }) }],
    registry,
    log: opts.log,
  });
  if (opts.publishCrls !== false) crl.start((e) => opts.log.error({ err: { message: (e as Error).message } }, 'CRL refresh failed'));
  // the responder certificate is renewed while the service runs (a third of its life before expiry)
  let responderCert = responder.cert;
  const renewal = setInterval(() => {
    ensureOcspResponder(cfg, keys, ca, store)
      .then((r) => {
        if (!r.cert.equals(responderCert)) {
          responderCert = r.cert;
          ocsp.useResponder(new OcspResponder(groupedSigning(r.key), r.cert));
          opts.log.info('OCSP responder certificate renewed');
        }
      })
      .catch((e) => opts.log.error({ err: { message: (e as Error).message } }, 'OCSP responder renewal failed'));
  }, RESPONDER_CHECK_MS);
  renewal.unref();
  return {
    https: httpsServer,
    http: httpServer,
    ra,
    lifecycle,
    crl,
    store,
    registry,
    async close() {
      crl.stop();
      clearInterval(renewal);
      await store.close();
      await keys.close();
    },
  };
}

/** openRegistrationAuthority: what the CLI needs to register devices, change their lifecycle and decide requests. */
export async function openRegistrationAuthority(cfg: Config): Promise<{ ra: RegistrationAuthority; lifecycle: DeviceLifecycle; access: AdminAccess; crl: CrlPublisher; caCerts: Buffer[]; store: Store; close(): Promise<void> }> {
  const store = openStore(cfg);
  const keys = openKeyBackend(cfg);
  try {
    // lazy: `devices add`, `tokens create` and the like never sign, so they never open a token
    const hierarchy = await loadCa(cfg, keys, { lazyKeys: true });
    const ra = new RegistrationAuthority({ config: cfg, store, ca: buildCertificateAuthority(cfg, hierarchy), bootstrap: loadBootstrapPolicy(cfg) });
    const crl = new CrlPublisher(hierarchy.issuing, store, cfg.crl, publicBaseUrl(cfg));
    // a CLI change reaches running services through the store (shard revisions, OCSP status reads)
    const lifecycle = new DeviceLifecycle(cfg, store);
    return { ra, lifecycle, access: new AdminAccess(store), crl, caCerts: [hierarchy.issuing.der, hierarchy.root.der], store, close: async () => (await store.close(), await keys.close()) };
  } catch (e) {
    await store.close();
    await keys.close();
    throw e;
  }
}
