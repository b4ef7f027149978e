import * as crypto from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';
import * as os from 'node:os';
import pino, { Logger } from 'pino';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { CaDuties, CA_DUTIES_INTERVAL_MS, CA_DUTIES_LEASE_TTL_MS } from './ca/ca-duties';
import { CaHierarchy, issuingCas, loadCa, rootOf } from './ca/ca-hierarchy';
import { StoreMarkRecorder, verifyStoreIdentity } from './ca/ca-identity';
import { CaMaterial, CertificateAuthority } from './ca/certificate-authority';
import { IssuingCaSet } from './ca/issuing-ca-set';
import { activateDueRollover } from './ca/issuing-rollover';
import { CrlPublisher } from './ca/crl-publisher';
import { OcspResponder } from './ca/ocsp-codec';
import { OcspService } from './ca/ocsp-service';
import { toPem } from './ca/pem';
import { publicUrlWarning } from './ca/public-url-warning';
import { RootCrlInfo, readRootCrl } from './ca/root-crl';
import { RootCrlWatch } from './ca/root-crl-watch';
import { RootOcspSource } from './ca/root-ocsp';
import { scepRaKeyTransport } from './ca/scep-ra-key-transport';
import { ScepRaMaterial, ServiceCertificates } from './ca/service-certificates';
import { resolveProfiles } from './config/enrollment-profiles';
import { publicBaseUrl } from './config/load-config';
import { BUILT_IN_TPM_PROFILE, Config, profileSchema } from './config/schema';
import { createHttpListener, createHttpsListener } from './http/listeners';
import { groupedSigning } from './keys/grouped-signing-key';
import { KeyHealth } from './keys/key-health';
import { openKeyBackend } from './keys/open-key-backend';
import { adminRouter } from './protocols/admin/admin-router';
import { caCertsRouter } from './protocols/ca-certs/ca-certs-router';
import { crlRouter } from './protocols/crl/crl-router';
import { estRouter } from './protocols/est/est-router';
import { firmwareRouter } from './protocols/firmware/firmware-router';
import { deviceCommandRouter } from './protocols/device-command/device-command-router';
import { consoleRouter } from './protocols/console/console-router';
import { ocspRoute } from './protocols/ocsp/ocsp-handler';
import { opsRouter } from './protocols/ops/ops-router';
import { ScepRa, scepRouter } from './protocols/scep/scep-router';
import { AdminAccess } from './ra/admin-access';
import { AuditBrowser } from './ra/audit-browser';
import { loadBootstrapPolicy } from './ra/bootstrap-policy-loader';
import { ConsoleOverview } from './ra/console-overview';
import { ConsoleSessions } from './ra/console-sessions';
import { DeviceLifecycle } from './ra/device-lifecycle';
import { FirmwareDistribution } from './ra/firmware-distribution';
import { FirmwareGroupKeys, firmwareGroupKeks } from './ra/firmware-group-keys';
import { FirmwareReceipts } from './ra/firmware-receipts';
import { DeviceCommands } from './ra/device-commands';
import { CsrVerifyPool, csrVerifyThreads } from './ra/csr-verify-pool';
import { serverSecretKey } from './ra/enrollment-secret';
import { operatorFingerprints } from './ra/operator-fingerprints';
import { RegistrationAuthority } from './ra/registration-authority';
import { TpmAttestation } from './ra/tpm-attestation';
import { loadTpmRoots } from './ra/tpm-roots-loader';
import { DeviceCaError } from './errors/device-ca-error';
import { createStore } from './store/create-store';
import { StoreHealth } from './store/store-health';
import { isAttestationStore, Store } from './store/store';
import { isRevocationFeed } from './store/revocation-feed';
import { withStoreMetrics } from './store/store-metrics';

// moved out of main.ts (which only wires); re-exported for the CLI, tests and benches that import them here
export { ensureCa } from './ca/ca-hierarchy';
export { keyAssignments } from './ca/key-assignments';
export { ensureOcspResponder, ensureTlsServerCertificate } from './ca/service-certificates';
export { keysBackendKind, openKeyBackend } from './keys/open-key-backend';
export { loadBootstrapPolicy } from './ra/bootstrap-policy-loader';

/**
 * main: the one place that wires concrete classes together (constructor injection, no singletons).
 * The CLI and the tests build everything through these functions; what they wire lives in ca/, ra/,
 * keys/ and store/.
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
  return createStore(cfg);
}

/** buildCertificateAuthority: the CA knows every enrollment profile's validity, EKU and RSA key usage by name. */
export function buildCertificateAuthority(cfg: Config, hierarchy: CaHierarchy, issuers: IssuingCaSet = new IssuingCaSet(hierarchy)): CertificateAuthority {
  const profiles = new Map([...resolveProfiles(cfg).profiles].map(([name, p]) => [name, { validitySeconds: p.validity, serverAuth: p.serverAuth, keyEncipherment: p.keyEncipherment }]));
  return new CertificateAuthority({
    issuing: hierarchy.issuing,
    issuers,
    publicUrl: publicBaseUrl(cfg),
    crlShards: cfg.crl.shards,
    backdateSeconds: cfg.ca.backdate,
    profiles,
    ocspResponderValidity: cfg.ocsp.responderValidity,
    organization: cfg.ca.organization,
  });
}

/**
 * buildTpmAttestation: the RA's TPM decisions, when the store keeps attestation state. A profile with
 * attestation on and a store without it is a config error at start, not a 501 later;
 * except the built-in `tpm` profile left as it is, which such a store serves with 501 on its routes (so
 * the default config starts on every store).
 */
export function buildTpmAttestation(cfg: Config, store: Store): TpmAttestation | undefined {
  if (!isAttestationStore(store)) {
    const builtIn = JSON.stringify(profileSchema.parse(BUILT_IN_TPM_PROFILE));
    const on = [...resolveProfiles(cfg).profiles].find(([name, p]) => p.attestation !== 'off' && !(name === 'tpm' && JSON.stringify(p) === builtIn));
    if (on) throw new DeviceCaError('config', `profiles.${on[0]}.attestation: the ${cfg.store.type} store keeps no TPM attestation state; use sqlite or set attestation: off`);
    return undefined;
  }
  return new TpmAttestation(store, { ekRoots: loadTpmRoots(cfg), nonceTtlSeconds: cfg.attestation.nonceTtl, challengeTtlSeconds: cfg.attestation.challengeTtl });
}

export interface Service {
  https: https.Server;
  http: http.Server;
  ra: RegistrationAuthority;
  lifecycle: DeviceLifecycle;
  crl: CrlPublisher;
  /** crls: one CRL publisher per issuing CA served (during a rollover, old and new) */
  crls: CrlPublisher[];
  store: Store;
  registry: Registry;
  /** duties: CRL publication and service certificate renewal, run while this process holds the lease */
  duties: CaDuties;
  close(): Promise<void>;
}

export interface ServiceOptions {
  log: Logger;
  /** metricsText lets a cluster worker serve metrics aggregated by the primary */
  metricsText?: () => Promise<string>;
  /** dutiesIntervalMs, dutiesLeaseTtlMs: the CA duties lease timing (tests shorten it) */
  dutiesIntervalMs?: number;
  dutiesLeaseTtlMs?: number;
}

/** buildService wires one worker's listeners (not yet listening), RA, CA, store and keys. */
export async function buildService(cfg: Config, opts: ServiceOptions): Promise<Service> {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'device_ca_' });
  // store latency and errors per operation in /metrics
  const store = withStoreMetrics(openStore(cfg), registry, cfg.store.type);
  const keys = openKeyBackend(cfg);
  const hierarchy = await loadCa(cfg, keys, store);
  // the issuing CAs served; a rollover written by another process reaches this one in the duties reload
  const cas = new IssuingCaSet(hierarchy, { store, load: (now) => loadCa(cfg, keys, store, { now }) });
  const ca = buildCertificateAuthority(cfg, hierarchy, cas);
  const bootstrap = loadBootstrapPolicy(cfg);
  // read (or, for a data directory of an earlier version, created) at start: a bad key file stops the start, not an enrollment
  const secretKey = serverSecretKey(cfg);
  secretKey();
  // CSR key import and signature checks on worker threads, the cores shared among the worker processes:
  // this thread encodes, signs and records
  const csrs = new CsrVerifyPool({ threads: csrVerifyThreads(cfg.workers) });
  const crls = issuingCas(hierarchy).map((c) => new CrlPublisher(c, store, cfg.crl, publicBaseUrl(cfg)));
  const crl = crls[0];
  const ra = new RegistrationAuthority({ config: cfg, store, ca, bootstrap, attestation: buildTpmAttestation(cfg, store), metrics: registry, crls, secretKey, csrs });
  const logError = (what: string) => (e: unknown) => opts.log.error({ err: { message: (e as Error).message } }, what);
  // the store's high-water mark in the data directory moves after each CRL publication (ca-identity.ts)
  const marks = new StoreMarkRecorder(cfg, store);
  const recordMark = () => void marks.record().catch(logError('recording the store mark failed'));
  const auditBrowser = new AuditBrowser(store);
  const lifecycle = new DeviceLifecycle(cfg, store, (changes) => {
    // re-issue the touched shards now; OCSP reads status from the store on every request
    // (on the CRL of the CA that issued each certificate: an old CA's after a rollover)
    for (const key of new Set(changes.map((c) => `${c.issuer}/${c.shard}`))) {
      const [issuer, shard] = [key.slice(0, key.lastIndexOf('/')), Number(key.slice(key.lastIndexOf('/') + 1))];
      crls
        .find((p) => p.caName === issuer)
        ?.publish(shard)
        .then(recordMark, logError('CRL publication failed'));
    }
  });
  const access = new AdminAccess(store, operatorFingerprints(cfg));
  const certs = new ServiceCertificates({ cfg, keys, ca, hierarchy, store, issuers: () => cas.trusted(), links: () => cas.hierarchy.links });
  let holding = false;
  const duties = new CaDuties({
    store,
    holder: `${os.hostname()}:${process.pid}:${crypto.randomBytes(4).toString('hex')}`,
    leaseTtlMs: opts.dutiesLeaseTtlMs ?? CA_DUTIES_LEASE_TTL_MS,
    intervalMs: opts.dutiesIntervalMs ?? CA_DUTIES_INTERVAL_MS,
    onAcquire: () => {
      holding = true;
      for (const p of crls) p.start(logError('CRL refresh failed'), recordMark);
    },
    onLose: () => {
      holding = false;
      for (const p of crls) p.stop();
    },
    renew: async () => {
      // a scheduled issuing CA switch whose time has come is committed here, once, by the duties holder
      await activateDueRollover(cfg, store, { actor: 'ca-duties' }).then(
        (name) => name && opts.log.info({ ca: name }, 'issuing CA rollover activated'),
        logError('activating the issuing CA rollover failed'),
      );
      await certs.renew();
    },
    reload: async () => {
      // the CAs first: an HTTPS certificate another node issued from a new CA needs that CA for its chain
      await cas.refresh();
      await certs.reload();
    },
    onError: (what, e) => logError(`CA duties: ${what} failed`)(e),
  });
  const initial = await certs.current(() => duties.tick());
  // with a shared store's revocation feed, statuses are kept in memory until a change through any node
  const ocsp = new OcspService(
    cas.all(),
    new OcspResponder(groupedSigning(initial.ocsp.key), initial.ocsp.cert),
    store,
    cfg.ocsp,
    undefined,
    // every published root answers for the CA certificates it signed (two after `ca rollover-root`)
    new RootOcspSource(() => cas.hierarchy.roots.map((r) => ({ der: r.der, record: r.ocspRecord })), store),
    isRevocationFeed(store) ? store : undefined,
  );
  const trustPems = [toPem(hierarchy.issuing.der, 'CERTIFICATE'), ...hierarchy.roots.map((r) => toPem(r.der, 'CERTIFICATE')), ...bootstrap.anchors.map((a) => a.toString())];
  // the secure context a renewal swaps in keeps the same trust, versions and ciphers
  const tlsContext = { ca: trustPems, minVersion: 'TLSv1.2' as const, ciphers: cfg.https.ciphers };
  const health = new StoreHealth(store);
  // the signing key of the issuing CA in force (followed across rollovers), probed without signing
  const keyHealth = new KeyHealth({ backend: keys, refs: () => [cas.active().key.ref] });
  // firmware receipts and status (issue 13): the admin API, the console and the HTTPS firmware routes share one
  const receipts = new FirmwareReceipts(store);
  // signed device commands (issue 13): made by the admin API, fetched and reported by devices over mTLS
  const commands = new DeviceCommands(cfg, store, keys, undefined, { rootKey: false });
  // the operator console (issue 14): the admin API behind a session cookie, and its overview
  let ocspCert: Buffer = initial.ocsp.cert;
  const consoleMounts = cfg.console.enabled
    ? [
        {
          path: '/console',
          router: consoleRouter({
            sessions: new ConsoleSessions(store, access, { idleSeconds: cfg.console.idleTimeout, maxAgeSeconds: cfg.console.maxAge }),
            overview: new ConsoleOverview({
              store,
              lifecycle,
              ra,
              issuer: hierarchy.issuing.name,
              crlShards: cfg.crl.shards,
              ocspResponderCertificate: () => ocspCert,
              storeHealth: () => health.check(),
              keyHealth: () => keyHealth.check(),
            }),
            admin: { access, lifecycle, ra, audit: auditBrowser, bodyLimit: cfg.https.bodyLimit, firmware: receipts, commands },
            maxAgeSeconds: cfg.console.maxAge,
          }),
        },
      ]
    : [];
  // firmware releases (issue 13): plain ones on both listeners, encrypted ones per device over mTLS
  const distribution = new FirmwareDistribution(store);
  const firmware = firmwareRouter({ distribution });
  // receipts (RFC 4108 §3/§4) only where devices authenticate with their certificate
  // group keys (GET /firmware/keys/<id>) likewise: the key is wrapped to the device's TLS certificate
  const groupKeys = new FirmwareGroupKeys(store, firmwareGroupKeks(cfg, keys, store));
  const firmwareTls = firmwareRouter({ distribution, receipts: { decide: receipts, bodyLimit: cfg.https.bodyLimit }, groupKeys });
  const httpsServer = createHttpsListener({
    tls: { ...tlsContext, cert: initial.tls.certPem, key: initial.tls.keyPem, requestCert: true, rejectUnauthorized: false, handshakeTimeout: cfg.https.handshakeTimeout * 1000 },
    mounts: [
      {
        path: '/.well-known/est',
        router: estRouter({
          ra,
          caCerts: () => cas.chain(),
          bodyLimit: cfg.https.bodyLimit,
          replyBase64: new Map(Object.entries(cfg.est.labels).map(([name, l]) => [name, l.replyBase64])),
        }),
      },
      { path: '/api/v1', router: adminRouter({ access, lifecycle, ra, audit: auditBrowser, bodyLimit: cfg.https.bodyLimit, firmware: receipts, commands }) },
      { path: '/firmware', router: firmwareTls },
      { path: '/device-command', router: deviceCommandRouter({ commands, bodyLimit: cfg.https.bodyLimit }) },
      ...consoleMounts,
    ],
    registry,
    log: opts.log,
  });
  const publicUrlProblem = publicUrlWarning(cfg, hierarchy.issuing.name);
  // each published root's CRL (two during a root rollover), from the hierarchy as the last refresh read it
  const rootCrl = new RootCrlWatch(
    () => cas.hierarchy.roots.map((r) => ({ name: r.name, der: r.der, record: r.crlRecord })),
    store,
    registry,
    (w) => opts.log.warn(w),
  );
  rootCrl.start(logError('reading the root CRL failed'));
  const warnings = (): string[] => [publicUrlProblem, rootCrl.warning].filter((w): w is string => w !== null);
  // the SCEP RA in use; a renewal saved by the CA duties holder replaces it (certs.onChange below)
  const toScepRa = (m: ScepRaMaterial): ScepRa => ({ certificate: m.cert, key: m.key, transport: scepRaKeyTransport(cfg, keys, m.key.ref) });
  let scepRa: ScepRa | null = initial.scep ? toScepRa(initial.scep) : null;
  const scepMounts = scepRa
    ? [
        {
          path: '/',
          router: scepRouter({
            ra,
            scepRa: () => scepRa!,
            caCerts: () => cas.chain(),
            nextCaCerts: () => {
              const next = cas.pending();
              return next ? [next.ca.der, rootOf(cas.hierarchy, next.ca.der).der, ...cas.hierarchy.links] : null;
            },
            paths: new Map(Object.entries(cfg.scep.paths).map(([name, p]) => [name, p.profile])),
            bodyLimit: cfg.http.bodyLimit,
          }),
        },
      ]
    : [];
  const metricsRegistry = opts.metricsText ? ({ contentType: registry.contentType, metrics: opts.metricsText } as unknown as Registry) : registry;
  const httpServer = createHttpListener({
    mounts: [
      {
        path: '/ca',
        router: caCertsRouter((name) => cas.rootDer(name) ?? cas.all().find((c) => c.name === name)?.der),
      },
      { path: '/crl', router: crlRouter(crls, 60, rootCrl) },
      { path: '/firmware', router: firmware },
      ...scepMounts,
      { path: '/', router: opsRouter({ registry: metricsRegistry, health: () => health.check(), keyHealth: () => keyHealth.check(), warnings }) },
    ],
    fast: [ocspRoute(ocsp, { maxRequestBytes: cfg.ocsp.maxRequestBytes, maxAgeSeconds: cfg.ocsp.maxAge, registry })],
    registry,
    log: opts.log,
  });
  // an issuing CA made by `ca rollover` (in another process) is served here from the next reload on
  cas.onAdded((added: CaMaterial) => {
    const p = new CrlPublisher(added, store, cfg.crl, publicBaseUrl(cfg));
    crls.push(p);
    if (holding) p.start(logError('CRL refresh failed'), recordMark);
    ocsp.addIssuer(added);
    opts.log.info({ ca: added.name }, 'issuing CA added (rollover)');
  });
  // a retired issuing CA whose certificate expired is dropped at the duties reload: no CRL shards, no OCSP
  cas.onRemoved((gone: CaMaterial) => {
    const i = crls.findIndex((p) => p.caName === gone.name);
    if (i >= 0) crls.splice(i, 1)[0].stop();
    ocsp.removeIssuer(gone.name);
    opts.log.info({ ca: gone.name }, 'retired issuing CA expired: no longer served');
  });
  // renewed certificates reach this worker from the store, whoever issued them
  certs.onChange({
    ocsp: (m) => {
      ocsp.useResponder(new OcspResponder(groupedSigning(m.key), m.cert));
      ocspCert = m.cert;
      opts.log.info('OCSP responder certificate renewed');
    },
    tls: (m) => {
      httpsServer.setSecureContext({ ...tlsContext, cert: m.certPem, key: m.keyPem });
      opts.log.info('HTTPS server certificate renewed');
    },
    scep: (m) => {
      scepRa = toScepRa(m);
      opts.log.info('SCEP RA certificate renewed');
    },
  });
  duties.start();
  return {
    https: httpsServer,
    http: httpServer,
    ra,
    lifecycle,
    crl,
    crls,
    store,
    registry,
    duties,
    async close() {
      rootCrl.stop();
      await distribution.close();
      await duties.stop();
      for (const p of crls) p.stop();
      await marks.record().catch(logError('recording the store mark failed'));
      ocsp.close();
      await csrs.close();
      await store.close();
      await keys.close();
    },
  };
}

/** openRegistrationAuthority: what the CLI needs to register devices, change their lifecycle and decide requests. */
export async function openRegistrationAuthority(cfg: Config): Promise<{
  ra: RegistrationAuthority;
  lifecycle: DeviceLifecycle;
  access: AdminAccess;
  crl: CrlPublisher;
  caCerts: Buffer[];
  /** otherIssuers: the other issuing CAs served during a rollover (next or retired), each with its CRL publisher and the root that signed it */
  otherIssuers: { der: Buffer; root: Buffer; crl: CrlPublisher }[];
  /** rootCrl: the CRL of the root that signed the issuing CA in force (caCerts[last]) */
  rootCrl: () => Promise<RootCrlInfo | null>;
  /** otherRoots: the other published roots after `ca rollover-root`, each with its CRL */
  otherRoots: { der: Buffer; crl: () => Promise<RootCrlInfo | null> }[];
  store: Store;
  close(): Promise<void>;
}> {
  const store = openStore(cfg);
  const keys = openKeyBackend(cfg);
  try {
    // a store that is not this data directory's CA's is refused before anything reads or writes it
    await verifyStoreIdentity(cfg, store);
    // lazy: `devices add`, `tokens create` and the like never sign, so they never open a token
    const hierarchy = await loadCa(cfg, keys, store, { lazyKeys: true });
    const ra = new RegistrationAuthority({ config: cfg, store, ca: buildCertificateAuthority(cfg, hierarchy), bootstrap: loadBootstrapPolicy(cfg) });
    const crl = new CrlPublisher(hierarchy.issuing, store, cfg.crl, publicBaseUrl(cfg));
    // the root that signed the issuing CA in force (after `ca rollover-root`, not always the root in force)
    const issuingRoot = hierarchy.roots.find((r) => r.der.equals(rootOf(hierarchy, hierarchy.issuing.der).der)) ?? hierarchy.roots[0];
    // a CLI change reaches running services through the store (shard revisions, OCSP status reads)
    const lifecycle = new DeviceLifecycle(cfg, store);
    return {
      ra,
      lifecycle,
      access: new AdminAccess(store),
      crl,
      caCerts: [hierarchy.issuing.der, issuingRoot.der],
      otherIssuers: issuingCas(hierarchy)
        .slice(1)
        .map((c) => ({ der: c.der, root: rootOf(hierarchy, c.der).der, crl: new CrlPublisher(c, store, cfg.crl, publicBaseUrl(cfg)) })),
      rootCrl: () => readRootCrl(store, issuingRoot.der, issuingRoot.crlRecord),
      otherRoots: hierarchy.roots.filter((r) => r !== issuingRoot).map((r) => ({ der: r.der, crl: () => readRootCrl(store, r.der, r.crlRecord) })),
      store,
      close: async () => (await store.close(), await keys.close()),
    };
  } catch (e) {
    await store.close();
    await keys.close();
    throw e;
  }
}
