import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Config } from '../config/schema';
import { writeFileAtomic } from '../data-dir/atomic-file';
import { fromStoredRef, importLegacyPath, toStoredRef } from '../data-dir/data-dir-ref';
import { DeviceCaError } from '../errors/device-ca-error';
import { KeyAlgorithm, KeyBackend, SigningKey } from '../keys/key-backend';
import { signatureAlgorithmFor } from '../keys/signature-algorithm';
import { algorithmOfKey } from '../keys/software-key-backend';
import { CaMaterial } from './certificate-authority';
import {
  KU,
  assembleCertificate,
  authorityInfoAccess,
  authorityKeyIdentifier,
  basicConstraints,
  crlDistributionPoints,
  encodeTbs,
  keyIdentifier,
  keyUsage,
  newSerial,
  subjectKeyIdentifier,
} from './certificate-encoder';
import { certificateParts } from './certificate-parts';
import { encodeName } from './name';
import { toPem } from './pem';
import { AuditStore, CaStateStore } from '../store/store';
import { publicBaseUrl } from '../config/load-config';
import { ROOT_CRL_RECORD, rootCrlUrl, saveRootCrl, signRootCrl } from './root-crl';
import { ROOT_OCSP_RECORD, saveRootOcsp, signRootOcsp } from './root-ocsp';

/**
 * CaState says which key and certificate serve each CA role. keyRef is what a KeyBackend opens (a key
 * file path resolved under the data directory, or a PKCS#11 URI); certFile is the operator export in
 * <dataDir>/ca. The state itself lives in the store (record HIERARCHY_RECORD), so the workers and
 * nodes sharing a store share one CA.
 */
export interface CaState {
  version: 2;
  root: { name: string; keyRef: string; certFile: string };
  issuing: { name: string; keyRef: string; certFile: string };
}

/** CaCertificate: a CA as relying parties see it, without its key (the root's key stays offline). */
export type CaCertificate = Omit<CaMaterial, 'key'>;

/**
 * PublishedRoot: a root CA whose certificate and CRL are published: the root in force and, after
 * `ca rollover-root`, the roots it replaced until they expire. crlRecord/ocspRecord name the store
 * records of its CRL and of its OCSP answer for the CA certificates it signed.
 */
export type PublishedRoot = CaCertificate & { crlRecord: string; ocspRecord: string };

export interface CaHierarchy {
  /** root: the root in force (the one `ca rollover` puts new issuing CAs under) */
  root: CaCertificate;
  /** roots: every published root, the one in force first, then those `ca rollover-root` replaced (not expired) */
  roots: PublishedRoot[];
  /** links: the root key update certificates (OldWithNew, NewWithOld; RFC 4210 §4.4) served beside the roots */
  links: Buffer[];
  /** issuing: the issuing CA in force when the hierarchy was loaded */
  issuing: CaMaterial;
  /** next: the issuing CA `ca rollover` made, taking over new issuance at activatesAt */
  next?: { ca: CaMaterial; activatesAt: Date };
  /** retired: earlier issuing CAs whose certificates may still be in use: they keep their CRLs and OCSP */
  retired: CaMaterial[];
  /** revoked: names of issuing CAs listed on the root CRL (their certificates no longer authenticate a device) */
  revoked?: string[];
  state: CaState;
}

/** HIERARCHY_RECORD names the store record of the CA hierarchy. */
export const HIERARCHY_RECORD = 'hierarchy';

/**
 * StoredCa is the store record: key refs relative to the data directory (issue 8 point 9), certificates
 * as base64 DER. issuing.replaced: serials (hex) of earlier certificates of the same issuing key
 * (`ca reissue-issuing`), which `ca revoke-issuing` lists on the root CRL too.
 */
export interface StoredCa {
  version: 2;
  /** root: the root in force; issuing CAs made from now on are signed by it */
  root: StoredRoot;
  /** previousRoots: roots `ca rollover-root` replaced, newest first: published (certificate, CRL) while the CAs they signed are in use */
  previousRoots?: StoredRoot[];
  /** links: the link certificates each root rollover made (base64 DER) */
  links?: StoredRootLink[];
  /** droppedRoots: previous roots `ca drop-root` stopped publishing before they expired (with their links); kept for the record and their names */
  droppedRoots?: (StoredRoot & { droppedAt: string; links: StoredRootLink[] })[];
  issuing: StoredIssuing;
  /** next: a rolled-over issuing CA (`ca rollover`) that takes over new issuance at activatesAt (ISO time) */
  next?: StoredIssuing & { activatesAt: string };
  /** retired: earlier issuing CAs, served (CRLs, OCSP, /ca/<name>.crt) until their certificates expire */
  retired?: StoredIssuing[];
}

/**
 * StoredRoot: one root CA in the store record. records: where its CRL and OCSP answer are kept; absent for
 * the root `init` made (ROOT_CRL_RECORD, ROOT_OCSP_RECORD, as before root rollover existed).
 */
export interface StoredRoot {
  name: string;
  keyRef: string;
  der: string;
  records?: { crl: string; ocsp: string };
}

/** StoredRootLink: the link certificates between two roots (RFC 4210 §4.4, RFC 7030 §4.1.3), base64 DER. */
export interface StoredRootLink {
  from: string;
  to: string;
  /** oldWithNew: the new root's key certified by the old root key (clients trusting the old root reach the new hierarchy) */
  oldWithNew: string;
  /** newWithOld: the old root's key certified by the new root key (clients trusting the new root reach the old hierarchy) */
  newWithOld: string;
}

/** rootCrlRecordOf / rootOcspRecordOf: the store records of a root's CRL and OCSP answer. */
export const rootCrlRecordOf = (r: StoredRoot): string => r.records?.crl ?? ROOT_CRL_RECORD;
export const rootOcspRecordOf = (r: StoredRoot): string => r.records?.ocsp ?? ROOT_OCSP_RECORD;

/** allRoots: every root the record names, the one in force first. */
export const allRoots = (rec: StoredCa): StoredRoot[] => [rec.root, ...(rec.previousRoots ?? [])];

/** issuerRootOf: the root (in force or previous) that signed this CA certificate (its issuer is the root's subject); null when none did. */
export function issuerRootOf(rec: StoredCa, der: Buffer): StoredRoot | null {
  const issuer = certificateParts(der).issuer;
  return allRoots(rec).find((r) => certificateParts(Buffer.from(r.der, 'base64')).subject.equals(issuer)) ?? null;
}

/** StoredIssuing: one issuing CA in the store record. */
export interface StoredIssuing {
  name: string;
  keyRef: string;
  der: string;
  replaced?: string[];
  /** revoked: listed on the root CRL (`ca revoke-issuing`, or an imported root CRL naming it) */
  revoked?: boolean;
}

/**
 * promoteDue is the store record as of `now`: a next issuing CA whose activation time has come is the
 * issuing CA, and the one it replaced is retired. Every process computes the same view from the same
 * record, so new issuance switches at the chosen time on every node without anyone rewriting the store.
 */
export function promoteDue(rec: StoredCa, now: Date): StoredCa {
  if (!rec.next || new Date(rec.next.activatesAt) > now) return rec;
  const { activatesAt: _at, ...next } = rec.next;
  const { next: _next, ...rest } = rec;
  return { ...rest, issuing: next, retired: [...(rec.retired ?? []), rec.issuing] };
}

/** LegacyCaState is ca/state.json of device-ca before the CA state moved into the store (absolute paths). */
interface LegacyCaState {
  version: 1;
  root: { name: string; keyRef: string; certFile: string };
  issuing: { name: string; keyRef: string; certFile: string };
}

export const caDir = (cfg: Config): string => path.join(cfg.dataDir, 'ca');
const legacyStateFile = (cfg: Config): string => path.join(caDir(cfg), 'state.json');

/** hasLegacyState: the data directory holds a CA from an older device-ca (ca/state.json, imported on load). */
export function hasLegacyState(cfg: Config): boolean {
  return fs.existsSync(legacyStateFile(cfg));
}

/** caExists: the store holds a CA, or the data directory holds one from an older device-ca (imported on load). */
export async function caExists(cfg: Config, store: CaStateStore): Promise<boolean> {
  return (await store.getCaState(HIERARCHY_RECORD)) !== null || hasLegacyState(cfg);
}

/** storedIssuingCa: the issuing CA's name and certificate as the store holds them; null when the store holds no CA. */
export async function storedIssuingCa(store: CaStateStore): Promise<{ name: string; der: Buffer } | null> {
  const entry = await store.getCaState(HIERARCHY_RECORD);
  if (!entry) return null;
  const rec = promoteDue(entry.value as StoredCa, new Date());
  return { name: rec.issuing.name, der: Buffer.from(rec.issuing.der, 'base64') };
}

/**
 * knownIssuingKeyIds: the key ids (hex) of every issuing CA the store record names (in force, next, retired):
 * a data directory recorded under any of them belongs to this CA (a rollover changes the one in force).
 */
export async function knownIssuingKeyIds(store: CaStateStore): Promise<Set<string>> {
  const entry = await store.getCaState(HIERARCHY_RECORD);
  if (!entry) return new Set();
  const rec = entry.value as StoredCa;
  const all = [rec.issuing, ...(rec.next ? [rec.next] : []), ...(rec.retired ?? [])];
  return new Set(all.map((i) => keyIdentifier(certificateParts(Buffer.from(i.der, 'base64')).spki).toString('hex')));
}

/**
 * readCaRecord returns the CA's store record, importing ca/state.json (and the certificate files it
 * names) from an older data directory on first use; null when there is no CA. The import is a
 * create-only write, so two processes importing at once agree on one record.
 */
export async function readCaRecord(cfg: Config, store: CaStateStore & Partial<AuditStore>): Promise<StoredCa | null> {
  const entry = await store.getCaState(HIERARCHY_RECORD);
  if (entry) return entry.value as StoredCa;
  let legacy: LegacyCaState;
  try {
    legacy = JSON.parse(fs.readFileSync(legacyStateFile(cfg), 'utf8')) as LegacyCaState;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new DeviceCaError('config', `cannot read ${legacyStateFile(cfg)}: ${(e as Error).message}`);
  }
  const role = (r: LegacyCaState['root']): StoredCa['root'] => {
    const certFile = fromStoredRef(cfg.dataDir, importLegacyPath(cfg.dataDir, r.certFile, 'ca'));
    let der: Buffer;
    try {
      der = fs.readFileSync(certFile);
    } catch {
      throw new DeviceCaError('config', `cannot import the CA from ${legacyStateFile(cfg)}: ${r.certFile} is unreadable`);
    }
    return { name: r.name, keyRef: importLegacyPath(cfg.dataDir, r.keyRef, 'keys'), der: der.toString('base64') };
  };
  const rec: StoredCa = { version: 2, root: role(legacy.root), issuing: role(legacy.issuing) };
  try {
    await store.saveCaState(HIERARCHY_RECORD, rec, 0, {
      type: 'ca.imported',
      actor: 'device-ca',
      subject: rec.issuing.name,
      data: { from: 'ca/state.json', root: rec.root.name, issuing: rec.issuing.name },
    });
  } catch (e) {
    if (e instanceof DeviceCaError && e.code === 'conflict') return (await store.getCaState(HIERARCHY_RECORD))!.value as StoredCa;
    throw e;
  }
  return rec;
}

/**
 * signCaCert signs a CA certificate. A CA certificate signed by the root (rootUrls) names the root CRL as
 * its CRL distribution point and the root certificate as AIA caIssuers, so relying parties that check
 * every CRL in the chain find the one that can revoke it (RFC 5280 §4.2.1.13, §4.2.2.1).
 */
export async function signCaCert(args: {
  issuerKey: SigningKey;
  issuerName: Buffer;
  issuerKeyId?: Buffer;
  subjectName: Buffer;
  spki: Buffer;
  validitySeconds: number;
  pathLen?: number;
  now: Date;
  /** window: keep this notBefore/notAfter (a reissued certificate) instead of now - 1 h + validity */
  window?: { notBefore: Date; notAfter: Date };
  rootUrls?: { crl: string; caIssuers: string };
}): Promise<Buffer> {
  const ski = keyIdentifier(args.spki);
  const extensions = [basicConstraints(true, args.pathLen), keyUsage([KU.digitalSignature, KU.keyCertSign, KU.cRLSign]), subjectKeyIdentifier(ski)];
  if (args.issuerKeyId) extensions.push(authorityKeyIdentifier(args.issuerKeyId));
  if (args.rootUrls) extensions.push(crlDistributionPoints(args.rootUrls.crl), authorityInfoAccess(undefined, args.rootUrls.caIssuers));
  const nb = args.window?.notBefore ?? new Date(Math.floor(args.now.getTime() / 1000) * 1000 - 3600_000);
  const tbs = encodeTbs({
    serial: newSerial(),
    signatureAlgorithm: args.issuerKey.signatureAlgorithm,
    issuer: args.issuerName,
    notBefore: nb,
    notAfter: args.window?.notAfter ?? new Date(nb.getTime() + args.validitySeconds * 1000),
    subject: args.subjectName,
    spki: args.spki,
    extensions,
  });
  return assembleCertificate(tbs, args.issuerKey.signatureAlgorithm, await args.issuerKey.sign(tbs));
}

/**
 * initCa creates the root and issuing CA keys and certificates and writes them into the store in one
 * create-only write, so a crash half-way leaves no CA that looks complete (at worst, unused keys). It
 * refuses to run when a CA exists. The files in <dataDir>/ca are exports for operators, written after.
 */
export async function initCa(cfg: Config, keys: KeyBackend, store: CaStateStore & AuditStore, now = new Date()): Promise<CaHierarchy & { root: CaMaterial }> {
  if (await caExists(cfg, store)) throw new DeviceCaError('conflict', `a CA already exists in ${cfg.store.path}; refusing to overwrite`);
  const stamp = now.toISOString().slice(0, 10).replace(/-/g, '') + '-' + crypto.randomBytes(3).toString('hex');
  const rootAlg = (cfg.ca.root.algorithm ?? cfg.ca.algorithm) as KeyAlgorithm;
  const issAlg = (cfg.ca.issuing.algorithm ?? cfg.ca.algorithm) as KeyAlgorithm;
  const rootKey = await keys.generate('root', rootAlg, `${cfg.ca.root.name}-${stamp}`);
  const rootName = encodeName([
    { type: 'O', value: cfg.ca.organization },
    { type: 'CN', value: cfg.ca.root.commonName ?? `${cfg.ca.organization} Root CA` },
  ]);
  const rootDer = await signCaCert({ issuerKey: rootKey, issuerName: rootName, subjectName: rootName, spki: rootKey.spki, validitySeconds: cfg.ca.root.validity, now });
  const issKey = await keys.generate('issuing', issAlg, `${cfg.ca.issuing.name}-${stamp}`);
  const issName = encodeName([
    { type: 'O', value: cfg.ca.organization },
    { type: 'CN', value: cfg.ca.issuing.commonName ?? `${cfg.ca.organization} Issuing CA` },
  ]);
  const issDer = await signCaCert({
    issuerKey: rootKey,
    issuerName: rootName,
    issuerKeyId: keyIdentifier(rootKey.spki),
    subjectName: issName,
    spki: issKey.spki,
    validitySeconds: Math.min(cfg.ca.issuing.validity, cfg.ca.root.validity - 7200),
    pathLen: 0,
    now,
    rootUrls: rootUrlsOf(cfg, cfg.ca.root.name),
  });
  const rec: StoredCa = {
    version: 2,
    root: { name: cfg.ca.root.name, keyRef: toStoredRef(cfg.dataDir, rootKey.ref), der: rootDer.toString('base64') },
    issuing: { name: cfg.ca.issuing.name, keyRef: toStoredRef(cfg.dataDir, issKey.ref), der: issDer.toString('base64') },
  };
  // the commit point: one create-only write (a concurrent init loses with 'conflict')
  await store.saveCaState(HIERARCHY_RECORD, rec, 0, {
    type: 'ca.created',
    actor: 'device-ca',
    subject: rec.issuing.name,
    data: { root: rec.root.name, issuing: rec.issuing.name, rootKey: rec.root.keyRef, issuingKey: rec.issuing.keyRef },
  });
  // the root key is at hand only now (it may go offline after): the first root CRL, empty
  const crl = await saveRootCrl(store, rootDer, await signRootCrl({ rootKey, rootDer, validitySeconds: cfg.ca.root.crlValidity, entries: [], now }), 'device-ca', 'signed');
  // and the root's OCSP answer for the issuing CA certificate (good), which lapses with that CRL
  await saveRootOcsp(store, await signRootOcsp({ rootKey, rec, entries: [], thisUpdate: crl.thisUpdate, nextUpdate: crl.nextUpdate }));
  exportCaFiles(cfg, rootDer, issDer);
  const state = stateOf(cfg, rec);
  const root = material(state.root.name, rootDer, rootKey);
  const { key: _k, ...published } = root;
  return { root, roots: [{ ...published, crlRecord: ROOT_CRL_RECORD, ocspRecord: ROOT_OCSP_RECORD }], links: [], issuing: material(state.issuing.name, issDer, issKey), retired: [], state };
}

/** rootUrlsOf: the root CRL and root certificate URLs an issuing CA certificate names. */
export function rootUrlsOf(cfg: Config, rootName: string): { crl: string; caIssuers: string } {
  const base = publicBaseUrl(cfg);
  return { crl: rootCrlUrl(base, rootName), caIssuers: `${base}/ca/${rootName}.crt` };
}

/**
 * exportCaFiles writes the CA certificates for operators and relying parties: <name>.crt (DER),
 * <name>.pem and chain.pem (issuing then root; the README's trust anchor for clients). A file whose
 * bytes are already right is left alone, so a restart does not touch them. chain: false for a CA that is
 * not in force yet (a pending rollover). rootName: the root that signed issDer (after `ca rollover-root`,
 * `<ca.root.name>-<n>` for the new hierarchy).
 */
export function exportCaFiles(cfg: Config, rootDer: Buffer, issDer: Buffer, issName = cfg.ca.issuing.name, o: { chain?: boolean; rootName?: string } = {}): void {
  const rootName = o.rootName ?? cfg.ca.root.name;
  // issName: after a rollover the issuing CA in force is `<ca.issuing.name>-<n>`; each CA keeps its own files
  const files: [string, Buffer | string][] = [
    [`${rootName}.crt`, rootDer],
    [`${issName}.crt`, issDer],
    [`${rootName}.pem`, toPem(rootDer, 'CERTIFICATE')],
    [`${issName}.pem`, toPem(issDer, 'CERTIFICATE')],
  ];
  if (o.chain !== false) files.push(['chain.pem', toPem(issDer, 'CERTIFICATE') + toPem(rootDer, 'CERTIFICATE')]);
  writeCaFiles(cfg, files);
}

/** writeCaFiles writes operator exports into <dataDir>/ca, leaving alone a file whose bytes are already right. */
export function writeCaFiles(cfg: Config, files: [string, Buffer | string][]): void {
  const dir = caDir(cfg);
  for (const [name, data] of files) {
    const f = path.join(dir, name);
    try {
      if (fs.readFileSync(f).equals(Buffer.from(data))) continue;
    } catch {
      // missing: write it
    }
    writeFileAtomic(f, data);
  }
}

/** stateOf is the runtime view of a store record: key refs resolved under this data directory. */
function stateOf(cfg: Config, rec: StoredCa): CaState {
  const role = (r: StoredCa['root']) => ({ name: r.name, keyRef: fromStoredRef(cfg.dataDir, r.keyRef), certFile: path.join(caDir(cfg), `${r.name}.crt`) });
  return { version: 2, root: role(rec.root), issuing: role(rec.issuing) };
}

/**
 * loadCa opens the CA in the store (importing an older data directory's ca/state.json on first use):
 * certificates from the store, keys from the backend.
 */
export async function loadCa(cfg: Config, keys: KeyBackend, store: CaStateStore & AuditStore, opts: { lazyKeys?: boolean; now?: Date } = {}): Promise<CaHierarchy> {
  const stored = await readCaRecord(cfg, store);
  if (!stored) throw new DeviceCaError('config', `no CA in ${cfg.store.path}; run \`device-ca init\` first`);
  const now = opts.now ?? new Date();
  const rec = promoteDue(stored, now);
  const state = stateOf(cfg, rec);
  const rootDer = Buffer.from(rec.root.der, 'base64');
  // the root key is not opened: serving never signs with it, and it may live on an offline token.
  // lazyKeys: issuing keys are opened on their first signature (CLI commands that only touch the store
  // then never log in to a token)
  const open = (r: StoredIssuing) => openIssuing(cfg, keys, r, opts.lazyKeys ?? false);
  const issuing = await open(rec.issuing);
  const next = rec.next ? { ca: await open(rec.next), activatesAt: new Date(rec.next.activatesAt) } : undefined;
  const retired: CaMaterial[] = [];
  // a retired CA is served while a certificate it signed can be valid: none outlives its CA certificate
  for (const r of rec.retired ?? []) if (new Date(new crypto.X509Certificate(Buffer.from(r.der, 'base64')).validTo) > now) retired.push(await open(r));
  const { key: _none, ...root } = material(state.root.name, rootDer, issuing.key);
  // a previous root is published while it has not expired (the CAs it signed cannot outlive it)
  const roots: PublishedRoot[] = [];
  for (const r of allRoots(rec)) {
    const der = Buffer.from(r.der, 'base64');
    const { key: _k, ...pub } = material(r.name, der, issuing.key);
    if (r === rec.root || pub.notAfter > now) roots.push({ ...pub, crlRecord: rootCrlRecordOf(r), ocspRecord: rootOcspRecordOf(r) });
  }
  const links = (rec.links ?? []).flatMap((l) => [Buffer.from(l.oldWithNew, 'base64'), Buffer.from(l.newWithOld, 'base64')]).filter((d) => new Date(new crypto.X509Certificate(d).validTo) > now);
  const revoked = [rec.issuing, ...(rec.next ? [rec.next] : []), ...(rec.retired ?? [])].filter((r) => r.revoked).map((r) => r.name);
  return { root, roots, links, issuing, next, retired, revoked, state };
}

/** rootOf: the published root that signed a CA certificate (the root in force when none matches). */
export function rootOf(h: Pick<CaHierarchy, 'root' | 'roots'>, der: Buffer): CaCertificate {
  const issuer = certificateParts(der).issuer;
  return h.roots.find((r) => r.subject.equals(issuer)) ?? h.root;
}

/** openIssuing: one issuing CA's certificate from the store and its key from the backend, checked to match. */
async function openIssuing(cfg: Config, keys: KeyBackend, r: StoredIssuing, lazy: boolean): Promise<CaMaterial> {
  const der = Buffer.from(r.der, 'base64');
  const spki = certificateParts(der).spki;
  const keyRef = fromStoredRef(cfg.dataDir, r.keyRef);
  const check = (k: SigningKey): SigningKey => {
    if (!spki.equals(k.spki)) throw new DeviceCaError('config', `issuing CA key ${keyRef} does not match the issuing CA certificate ${r.name}`);
    return k;
  };
  const key = lazy ? lazySigningKey(keyRef, spki, async () => check(await keys.load(keyRef))) : check(await keys.load(keyRef));
  return material(r.name, der, key);
}

/** issuingCas: every issuing CA a hierarchy serves: the one in force, the pending next one, the retired ones. */
export function issuingCas(h: CaHierarchy): CaMaterial[] {
  return [h.issuing, ...(h.next ? [h.next.ca] : []), ...h.retired];
}

/** lazySigningKey: a SigningKey described by its certificate's public key, loaded when it first signs. */
function lazySigningKey(ref: string, spki: Buffer, load: () => Promise<SigningKey>): SigningKey {
  const algorithm = algorithmOfKey(crypto.createPublicKey({ key: spki, format: 'der', type: 'spki' }));
  let loaded: Promise<SigningKey> | undefined;
  return {
    algorithm,
    ref,
    spki,
    signatureAlgorithm: signatureAlgorithmFor(algorithm),
    sign: async (data: Buffer) => {
      loaded ??= load();
      return (await loaded).sign(data);
    },
  };
}

export function material(name: string, der: Buffer, key: SigningKey): CaMaterial {
  const parts = certificateParts(der);
  const x = new crypto.X509Certificate(der);
  return { name, der, subject: parts.subject, keyId: keyIdentifier(parts.spki), notAfter: new Date(x.validTo), key };
}

/**
 * ensureCa creates the CA hierarchy on first start; later starts load it (importing an older data
 * directory's files) and restore any missing export in <dataDir>/ca. Two processes starting at once
 * on an empty store agree on one CA: the loser of the create-only write loads the winner's.
 */
export async function ensureCa(cfg: Config, keys: KeyBackend, store: CaStateStore & AuditStore): Promise<{ ca: CaHierarchy; created: boolean }> {
  const load = async () => {
    const ca = await loadCa(cfg, keys, store);
    const root = rootOf(ca, ca.issuing.der);
    exportCaFiles(cfg, root.der, ca.issuing.der, ca.issuing.name, { rootName: root.name });
    return { ca, created: false };
  };
  if (await caExists(cfg, store)) return load();
  try {
    return { ca: await initCa(cfg, keys, store), created: true };
  } catch (e) {
    if (e instanceof DeviceCaError && e.code === 'conflict' && (await caExists(cfg, store))) return load();
    throw e;
  }
}
