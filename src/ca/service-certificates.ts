import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Config } from '../config/schema';
import { writeFileAtomic } from '../data-dir/atomic-file';
import { fromStoredRef, importLegacyPath, toStoredRef } from '../data-dir/data-dir-ref';
import { DeviceCaError } from '../errors/device-ca-error';
import { KeyBackend, SigningKey } from '../keys/key-backend';
import { generateKeyPair } from '../keys/software-key-backend';
import { AuditStore, CaStateStore, CertificateStore } from '../store/store';
import { CaHierarchy, issuingCas } from './ca-hierarchy';
import { CaMaterial, CertificateAuthority, SCEP_RA_PROFILE, TLS_SERVER_PROFILE } from './certificate-authority';
import { issueAndRecord, signAndRecord } from './issuance';
import { pemBlocks, toPem } from './pem';
import { certificateParts } from './certificate-parts';

/**
 * service-certificates: the certificates device-ca issues to itself, the delegated OCSP responder
 * certificate, the SCEP RA certificate and the HTTPS server certificate. Their current version lives in the store (records
 * OCSP_RESPONDER_RECORD and TLS_SERVER_RECORD), so one process (the holder of the CA duties lease)
 * issues a renewal and every worker and node picks it up from there.
 */

export const OCSP_RESPONDER_RECORD = 'ocsp-responder';
export const TLS_SERVER_RECORD = 'tls-server';
export const SCEP_RA_RECORD = 'scep-ra';

/** TLS_RENEW_BEFORE_MS: the HTTPS certificate (397 days) is renewed 30 days before it expires. */
export const TLS_RENEW_BEFORE_MS = 30 * 86400_000;

export type ServiceCertificateStore = CaStateStore & AuditStore & Pick<CertificateStore, 'recordIssuance'>;

/** StoredOcspResponder: the responder key (made once, kept across renewals) and its current certificate. */
interface StoredOcspResponder {
  keyRef: string;
  der: string;
}

/** StoredTlsServer: the HTTPS certificate and its software key file, relative to the data directory (0600). */
interface StoredTlsServer {
  keyRef: string;
  der: string;
}

export interface OcspResponderMaterial {
  key: SigningKey;
  cert: Buffer;
  /** version of the store record, to tell a renewal from what a worker already uses */
  version: number;
}

export interface TlsServerMaterial {
  certPem: string;
  keyPem: string;
  version: number;
}

async function getRecord<T>(store: CaStateStore, name: string): Promise<{ value: T; version: number } | null> {
  const e = await store.getCaState(name);
  return e ? { value: e.value as T, version: e.version } : null;
}

/** saveOrReread writes a record (compare-and-set); when another process saved first, its record wins. */
async function saveOrReread<T>(store: ServiceCertificateStore, name: string, value: T, ifVersion: number): Promise<{ value: T; version: number; mine: boolean }> {
  try {
    return { value, version: await store.saveCaState(name, value, ifVersion), mine: true };
  } catch (e) {
    if (!(e instanceof DeviceCaError && e.code === 'conflict')) throw e;
    const now = await getRecord<T>(store, name);
    if (!now) throw e;
    return { ...now, mine: false };
  }
}

// ---------- OCSP responder ----------

/**
 * importLegacyOcspResponder reads <dataDir>/ca/ocsp-responder.json of an older device-ca (absolute
 * paths) into the store, once.
 */
async function importLegacyOcspResponder(cfg: Config, store: ServiceCertificateStore): Promise<{ value: StoredOcspResponder; version: number } | null> {
  const file = path.join(cfg.dataDir, 'ca', 'ocsp-responder.json');
  let legacy: { keyRef: string; certFile: string };
  try {
    legacy = JSON.parse(fs.readFileSync(file, 'utf8')) as { keyRef: string; certFile: string };
  } catch {
    return null;
  }
  let der: Buffer;
  try {
    der = fs.readFileSync(fromStoredRef(cfg.dataDir, importLegacyPath(cfg.dataDir, legacy.certFile, 'ca')));
  } catch {
    return null; // the certificate is gone: a new one is issued for the same key below
  }
  const value: StoredOcspResponder = { keyRef: importLegacyPath(cfg.dataDir, legacy.keyRef, 'keys'), der: der.toString('base64') };
  return saveOrReread(store, OCSP_RESPONDER_RECORD, value, 0);
}

async function currentOcspRecord(cfg: Config, store: ServiceCertificateStore): Promise<{ value: StoredOcspResponder; version: number } | null> {
  return (await getRecord<StoredOcspResponder>(store, OCSP_RESPONDER_RECORD)) ?? (await importLegacyOcspResponder(cfg, store));
}

/** readOcspResponder returns the responder in the store without issuing; null when none was issued yet. */
export async function readOcspResponder(cfg: Config, keys: KeyBackend, store: ServiceCertificateStore): Promise<OcspResponderMaterial | null> {
  const rec = await currentOcspRecord(cfg, store);
  if (!rec) return null;
  return { key: await keys.load(fromStoredRef(cfg.dataDir, rec.value.keyRef)), cert: Buffer.from(rec.value.der, 'base64'), version: rec.version };
}

/**
 * stillServes: a stored service certificate is kept while it was issued by the current issuing CA, holds
 * the key, and has more than minLeftMs (a number, or one computed from the certificate) of its life left;
 * an unparsable one is replaced.
 */
function stillServes(der: Buffer, key: SigningKey, ca: CertificateAuthority, now: Date, minLeftMs: number | ((x: crypto.X509Certificate) => number)): boolean {
  try {
    const x = new crypto.X509Certificate(der);
    const left = new Date(x.validTo).getTime() - now.getTime();
    const min = typeof minLeftMs === 'number' ? minLeftMs : minLeftMs(x);
    return left > min && x.checkIssued(new crypto.X509Certificate(ca.issuer.der)) && der.includes(key.spki);
  } catch {
    return false;
  }
}

/**
 * ensureOcspResponder returns the delegated OCSP responder key and certificate, issuing the certificate
 * when it is missing or has less than a third of its lifetime left. The key is made once. Run it in one
 * process at a time (the CA duties lease holder, or `serve` before it starts workers); should another
 * process save first anyway, its certificate is returned and this one stays only in the certificate table.
 */
export async function ensureOcspResponder(cfg: Config, keys: KeyBackend, ca: CertificateAuthority, store: ServiceCertificateStore, now = new Date()): Promise<OcspResponderMaterial> {
  const rec = await currentOcspRecord(cfg, store);
  let key: SigningKey;
  if (rec) {
    key = await keys.load(fromStoredRef(cfg.dataDir, rec.value.keyRef));
    const der = Buffer.from(rec.value.der, 'base64');
    if (stillServes(der, key, ca, now, (cfg.ocsp.responderValidity * 1000) / 3)) return { key, cert: der, version: rec.version };
  } else {
    key = await keys.generate('ocsp', cfg.ca.algorithm as SigningKey['algorithm'], `${cfg.ca.issuing.name}-ocsp-${crypto.randomBytes(3).toString('hex')}`);
  }
  const issued = await signAndRecord(store, { spki: key.spki, profile: 'ocsp-responder' }, () => ca.issueOcspResponder(key.spki, now), {
    deviceId: null,
    subject: `O=${cfg.ca.organization}, CN=${cfg.ca.issuing.name} OCSP responder`,
    audit: { actor: 'device-ca', subject: 'ocsp-responder', data: { renewal: rec !== null } },
  });
  const saved = await saveOrReread(store, OCSP_RESPONDER_RECORD, { keyRef: toStoredRef(cfg.dataDir, key.ref), der: issued.der.toString('base64') }, rec?.version ?? 0);
  if (!saved.mine) return (await readOcspResponder(cfg, keys, store))!;
  return { key, cert: issued.der, version: saved.version };
}

// ---------- SCEP RA ----------

/** StoredScepRa: the RA key ref (made once) and its current certificate, as the OCSP responder's. */
type StoredScepRa = StoredOcspResponder;

/** ScepRaMaterial: the SCEP RA key (RSA, software or token role 'ra') and its current certificate. */
export interface ScepRaMaterial {
  key: SigningKey;
  cert: Buffer;
  version: number;
}

/** readScepRa returns the RA key and certificate in the store without issuing; null when none was issued yet. */
export async function readScepRa(cfg: Config, keys: KeyBackend, store: ServiceCertificateStore): Promise<ScepRaMaterial | null> {
  const rec = await getRecord<StoredScepRa>(store, SCEP_RA_RECORD);
  if (!rec) return null;
  return { key: await keys.load(fromStoredRef(cfg.dataDir, rec.value.keyRef)), cert: Buffer.from(rec.value.der, 'base64'), version: rec.version };
}

/**
 * ensureScepRa returns the SCEP RA key and certificate, issuing the certificate (through the one issuance
 * path: recorded and audited) when missing, not issued by the current issuing CA, or with less than a third
 * of its lifetime left. The key is RSA 2048 whatever ca.algorithm says, as SCEP key transport is RSA
 * (RFC 8894 §3.5.1); it is made once by the backend of role 'ra' and kept across renewals, so clients that
 * cached the RA certificate can still encrypt to it. The same one-process rule as ensureOcspResponder.
 */
export async function ensureScepRa(cfg: Config, keys: KeyBackend, ca: CertificateAuthority, store: ServiceCertificateStore, now = new Date()): Promise<ScepRaMaterial> {
  const rec = await getRecord<StoredScepRa>(store, SCEP_RA_RECORD);
  let key: SigningKey;
  if (rec) {
    key = await keys.load(fromStoredRef(cfg.dataDir, rec.value.keyRef));
    const der = Buffer.from(rec.value.der, 'base64');
    if (stillServes(der, key, ca, now, (x) => (new Date(x.validTo).getTime() - new Date(x.validFrom).getTime()) / 3)) return { key, cert: der, version: rec.version };
  } else {
    key = await keys.generate('ra', 'rsa-2048', `${cfg.ca.issuing.name}-scep-ra-${crypto.randomBytes(3).toString('hex')}`);
  }
  const issued = await signAndRecord(store, { spki: key.spki, profile: SCEP_RA_PROFILE }, () => ca.issueScepRa(key.spki, now), {
    deviceId: null,
    subject: `O=${cfg.ca.organization}, CN=${cfg.ca.issuing.name} SCEP RA`,
    audit: { actor: 'device-ca', subject: SCEP_RA_PROFILE, data: { renewal: rec !== null } },
  });
  const saved = await saveOrReread(store, SCEP_RA_RECORD, { keyRef: toStoredRef(cfg.dataDir, key.ref), der: issued.der.toString('base64') }, rec?.version ?? 0);
  if (!saved.mine) return (await readScepRa(cfg, keys, store))!;
  return { key, cert: issued.der, version: saved.version };
}

// ---------- HTTPS server certificate ----------

/** tlsNames: the HTTPS certificate always names localhost, 127.0.0.1 and ::1, then https.names. */
function tlsNames(cfg: Config): string[] {
  return ['localhost', '127.0.0.1', '::1', ...cfg.https.names];
}

/** externalTls: the operator's own certificate and key files (https.certFile, https.keyFile). */
function externalTls(cfg: Config): TlsServerMaterial | null {
  if (!cfg.https.certFile && !cfg.https.keyFile) return null;
  if (!cfg.https.certFile || !cfg.https.keyFile) throw new DeviceCaError('config', 'https.certFile and https.keyFile go together');
  try {
    return { certPem: fs.readFileSync(cfg.https.certFile, 'utf8'), keyPem: fs.readFileSync(cfg.https.keyFile, 'utf8'), version: 0 };
  } catch (e) {
    throw new DeviceCaError('config', `https.certFile/keyFile: ${(e as Error).message}`);
  }
}

/** importLegacyTls reads <dataDir>/tls/server.pem and server.key of an older device-ca into the store, once. */
async function importLegacyTls(cfg: Config, store: ServiceCertificateStore): Promise<{ value: StoredTlsServer; version: number } | null> {
  const dir = path.join(cfg.dataDir, 'tls');
  let der: Buffer | undefined;
  try {
    der = pemBlocks(fs.readFileSync(path.join(dir, 'server.pem'), 'utf8'))[0];
  } catch {
    return null;
  }
  if (!der || !fs.existsSync(path.join(dir, 'server.key'))) return null;
  return saveOrReread(store, TLS_SERVER_RECORD, { keyRef: 'tls/server.key', der: der.toString('base64') }, 0);
}

async function currentTlsRecord(cfg: Config, store: ServiceCertificateStore): Promise<{ value: StoredTlsServer; version: number } | null> {
  return (await getRecord<StoredTlsServer>(store, TLS_SERVER_RECORD)) ?? (await importLegacyTls(cfg, store));
}

/** signedBy: the certificate names this CA as its issuer and its signature verifies with the CA's key. */
function signedBy(x: crypto.X509Certificate, ca: CaMaterial): boolean {
  const c = new crypto.X509Certificate(ca.der);
  return x.checkIssued(c) && x.verify(c.publicKey);
}

/**
 * tlsMaterial: the HTTPS leaf followed by the issuing CA that actually signed it, found among `issuers`
 * (every issuing CA served). After a rollover another node may have issued the leaf from the new CA while
 * this process started under the old one: appending the start-time CA would send a chain that does not
 * link (RFC 8446 §4.4.2: each certificate certifies the one before it). Falls back to the first CA.
 * After `ca rollover-root`, the link certificate that certifies the issuing CA's root under the other
 * root follows (OldWithNew behind a CA of the new hierarchy, NewWithOld behind one of the old), so a
 * client that trusts either root can verify the listener (and fetch /cacerts to learn the other root).
 */
function tlsMaterial(cfg: Config, issuers: readonly CaMaterial[], rec: { value: StoredTlsServer; version: number }, links: readonly Buffer[] = []): TlsServerMaterial {
  const der = Buffer.from(rec.value.der, 'base64');
  const leaf = new crypto.X509Certificate(der);
  const issuer = issuers.find((c) => signedBy(leaf, c)) ?? issuers[0];
  const rootName = certificateParts(issuer.der).issuer;
  const link = links.filter((l) => certificateParts(l).subject.equals(rootName));
  return {
    certPem: [der, issuer.der, ...link].map((d) => toPem(d, 'CERTIFICATE')).join(''),
    keyPem: readTlsKey(fromStoredRef(cfg.dataDir, rec.value.keyRef)),
    version: rec.version,
  };
}

/**
 * readTlsKey reads the HTTPS key file the store names. Missing, it is a set-up error, not an internal
 * one: the usual cause is a second node whose data directory does not share the first node's `tls/`
 * (the store names one key file for every node; README "Several nodes, one CA").
 */
function readTlsKey(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    throw new DeviceCaError(
      'config',
      `the HTTPS key ${file} named by the store is not there: nodes that share a store must share the data directory's tls/ and keys/ (a shared file system or symbolic links), or set https.certFile and https.keyFile on each node`,
      { cause: e },
    );
  }
}

/**
 * readTlsServerCertificate returns the HTTPS chain and key without issuing: the external files when
 * configured, else the certificate in the store; null when none was issued yet.
 */
export async function readTlsServerCertificate(cfg: Config, hierarchy: CaHierarchy, store: ServiceCertificateStore): Promise<TlsServerMaterial | null> {
  const ext = externalTls(cfg);
  if (ext) return ext;
  const rec = await currentTlsRecord(cfg, store);
  return rec ? tlsMaterial(cfg, issuingCas(hierarchy), rec, hierarchy.links) : null;
}

/**
 * ensureTlsServerCertificate returns the HTTPS listener's certificate chain and key: the configured
 * external files, or one issued by the issuing CA for localhost, 127.0.0.1, ::1 and https.names,
 * renewed 30 days before it expires or when the names change. Its key is a software key in a 0600 file
 * under <dataDir>/tls, named after the certificate, so a renewal never overwrites the key in use.
 */
export async function ensureTlsServerCertificate(
  cfg: Config,
  ca: CertificateAuthority,
  hierarchy: CaHierarchy,
  store: ServiceCertificateStore,
  now = new Date(),
  issuers: readonly CaMaterial[] = issuingCas(hierarchy),
): Promise<TlsServerMaterial> {
  const ext = externalTls(cfg);
  if (ext) return ext;
  const names = tlsNames(cfg);
  const rec = await currentTlsRecord(cfg, store);
  if (rec) {
    try {
      const x = new crypto.X509Certificate(Buffer.from(rec.value.der, 'base64'));
      const have = (x.subjectAltName ?? '').split(', ').map((s) => s.replace(/^(DNS|IP Address):/, '').toLowerCase());
      const fresh = new Date(x.validTo).getTime() - now.getTime() > TLS_RENEW_BEFORE_MS;
      const sameNames = names.every((n) => have.includes(n.toLowerCase()) || (n === '::1' && have.includes('0:0:0:0:0:0:0:1')));
      // kept while an issuing CA served (not revoked) signed it: after a rollover, nodes started before and
      // after it agree on the certificate another node issued instead of replacing it every round
      if (fresh && sameNames && issuers.some((c) => signedBy(x, c))) return tlsMaterial(cfg, issuers, rec, hierarchy.links);
    } catch {
      // unparsable certificate or unreadable key: issue a new one
    }
  }
  const kp = generateKeyPair('ecdsa-p256');
  const spki = kp.publicKey.export({ type: 'spki', format: 'der' });
  const sans = names.map((n) => (/^[\d.]+$/.test(n) || n.includes(':') ? { type: 'ip' as const, value: n } : { type: 'dns' as const, value: n }));
  const issued = await issueAndRecord(
    ca,
    store,
    { profile: TLS_SERVER_PROFILE, subject: [{ type: 'CN', value: 'localhost' }], spki, keyType: 'ec', sans },
    { deviceId: null, subject: 'CN=localhost', audit: { actor: 'device-ca', subject: 'tls-server', data: { names, renewal: rec !== null } } },
    now,
  );
  // the key file first: a record in the store always names a key that exists
  const keyRef = path.join('tls', `server-${issued.serial.slice(0, 16)}.key`);
  writeFileAtomic(fromStoredRef(cfg.dataDir, keyRef), kp.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
  const saved = await saveOrReread(store, TLS_SERVER_RECORD, { keyRef, der: issued.der.toString('base64') }, rec?.version ?? 0);
  return tlsMaterial(cfg, issuers, saved, hierarchy.links);
}

// ---------- every worker: follow the store ----------

export interface ServiceCertificatesOptions {
  cfg: Config;
  keys: KeyBackend;
  ca: CertificateAuthority;
  hierarchy: CaHierarchy;
  store: ServiceCertificateStore;
  /** issuers: the issuing CAs served now and not revoked (IssuingCaSet.trusted, which follows rollovers); default: the hierarchy's */
  issuers?: () => readonly CaMaterial[];
  /** links: the root link certificates served now (CaHierarchy.links, which follows `ca rollover-root`); default: the hierarchy's */
  links?: () => readonly Buffer[];
  now?: () => Date;
}

/**
 * ServiceCertificates is one worker's view of its service certificates: renew() (the CA duties lease
 * holder only) issues what is due into the store; reload() (every worker) picks up a newer version from
 * the store and hands it to the listeners through the change handlers.
 */
export class ServiceCertificates {
  private ocsp?: OcspResponderMaterial;
  private tls?: TlsServerMaterial;
  private scep?: ScepRaMaterial;
  private ocspChanged: (m: OcspResponderMaterial) => void = () => undefined;
  private tlsChanged: (m: TlsServerMaterial) => void = () => undefined;
  private scepChanged: (m: ScepRaMaterial) => void = () => undefined;

  constructor(private readonly o: ServiceCertificatesOptions) {}

  /** onChange sets what a worker does with a renewed certificate (OCSP: useResponder; HTTPS: setSecureContext; SCEP: the RA the router uses). */
  onChange(h: { ocsp?: (m: OcspResponderMaterial) => void; tls?: (m: TlsServerMaterial) => void; scep?: (m: ScepRaMaterial) => void }): void {
    if (h.ocsp) this.ocspChanged = h.ocsp;
    if (h.tls) this.tlsChanged = h.tls;
    if (h.scep) this.scepChanged = h.scep;
  }

  /** renew issues the OCSP responder, HTTPS and (scep.enabled) SCEP RA certificates when due (run by the lease holder only). */
  async renew(): Promise<void> {
    const now = this.now();
    await ensureOcspResponder(this.o.cfg, this.o.keys, this.o.ca, this.o.store, now);
    await ensureTlsServerCertificate(this.o.cfg, this.o.ca, this.o.hierarchy, this.o.store, now, this.o.issuers?.() ?? issuingCas(this.o.hierarchy));
    if (this.o.cfg.scep.enabled) await ensureScepRa(this.o.cfg, this.o.keys, this.o.ca, this.o.store, now);
  }

  /** reload reads the store's versions; returns true when it found (and handed on) a newer one. */
  async reload(): Promise<boolean> {
    let changed = false;
    const ocsp = await getRecord<StoredOcspResponder>(this.o.store, OCSP_RESPONDER_RECORD);
    if (ocsp && ocsp.version !== this.ocsp?.version) {
      this.ocsp = (await readOcspResponder(this.o.cfg, this.o.keys, this.o.store))!;
      this.ocspChanged(this.ocsp);
      changed = true;
    }
    if (!externalTls(this.o.cfg)) {
      const tls = await getRecord<StoredTlsServer>(this.o.store, TLS_SERVER_RECORD);
      // a new record, or the same one with another chain (a root rollover added a link certificate)
      const m = tls ? tlsMaterial(this.o.cfg, this.o.issuers?.() ?? issuingCas(this.o.hierarchy), tls, this.links()) : null;
      if (m && (m.version !== this.tls?.version || m.certPem !== this.tls.certPem)) {
        this.tls = m;
        this.tlsChanged(this.tls);
        changed = true;
      }
    } else this.tls ??= externalTls(this.o.cfg)!;
    if (this.o.cfg.scep.enabled) {
      const scep = await getRecord<StoredScepRa>(this.o.store, SCEP_RA_RECORD);
      if (scep && scep.version !== this.scep?.version) {
        this.scep = (await readScepRa(this.o.cfg, this.o.keys, this.o.store))!;
        this.scepChanged(this.scep);
        changed = true;
      }
    }
    return changed;
  }

  /**
   * current returns the certificates a worker starts with, reading (or importing) them from the store.
   * Until the lease holder has issued them (a first start on a shared store), it runs tryRenew (one
   * CA duties round) and polls, for up to waitMs.
   */
  async current(tryRenew: () => Promise<void>, waitMs = 60_000): Promise<{ ocsp: OcspResponderMaterial; tls: TlsServerMaterial; scep: ScepRaMaterial | null }> {
    const deadline = Date.now() + waitMs;
    const scepWanted = this.o.cfg.scep.enabled;
    const read = async () => ({
      // the importing reads first: an older data directory's files become store records here
      ocsp: await readOcspResponder(this.o.cfg, this.o.keys, this.o.store),
      tls: await this.readTls(),
      scep: scepWanted ? await readScepRa(this.o.cfg, this.o.keys, this.o.store) : null,
    });
    const complete = (m: Awaited<ReturnType<typeof read>>) => m.ocsp !== null && m.tls !== null && (!scepWanted || m.scep !== null);
    for (;;) {
      const m = await read();
      if (complete(m)) {
        this.ocsp = m.ocsp!;
        this.tls = m.tls!;
        this.scep = m.scep ?? undefined;
        return { ocsp: m.ocsp!, tls: m.tls!, scep: m.scep };
      }
      if (Date.now() > deadline)
        throw new DeviceCaError('internal', 'the OCSP responder, HTTPS and SCEP RA certificates were not issued in time (is another device-ca process holding the CA duties lease stuck?)');
      await tryRenew();
      if (!complete(await read())) await new Promise((r) => setTimeout(r, 500));
    }
  }

  /** readTls: the HTTPS chain from the store, its issuer looked up among the issuing CAs served now. */
  private async readTls(): Promise<TlsServerMaterial | null> {
    const ext = externalTls(this.o.cfg);
    if (ext) return ext;
    const rec = await currentTlsRecord(this.o.cfg, this.o.store);
    return rec ? tlsMaterial(this.o.cfg, this.o.issuers?.() ?? issuingCas(this.o.hierarchy), rec, this.links()) : null;
  }

  private links(): readonly Buffer[] {
    return this.o.links?.() ?? this.o.hierarchy.links;
  }

  private now(): Date {
    return (this.o.now ?? (() => new Date()))();
  }
}
