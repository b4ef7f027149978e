import * as crypto from 'node:crypto';
import { Config } from '../config/schema';
import { fromStoredRef } from '../data-dir/data-dir-ref';
import { DeviceCaError } from '../errors/device-ca-error';
import { KeyAlgorithm, KeyBackend, SigningKey } from '../keys/key-backend';
import { toStoredRef } from '../data-dir/data-dir-ref';
import { AuditStore, CaStateStore } from '../store/store';
import {
  HIERARCHY_RECORD,
  StoredCa,
  StoredIssuing,
  StoredRoot,
  allRoots,
  exportCaFiles,
  writeCaFiles,
  issuerRootOf,
  promoteDue,
  readCaRecord,
  rootCrlRecordOf,
  rootOcspRecordOf,
  rootUrlsOf,
  signCaCert,
} from './ca-hierarchy';
import { keyIdentifier } from './certificate-encoder';
import { certificateParts } from './certificate-parts';
import { CrlReason, RevokedEntry } from './crl-encoder';
import { encodeName } from './name';
import { toPem } from './pem';
import { signRootLinks } from './root-links';
import { RootCrlInfo, parseRootCrl, readRootCrl, saveRootCrl, signRootCrl } from './root-crl';
import { ParsedRootOcsp, StoredRootOcsp, parseRootOcsp, saveRootOcsp, signRootOcsp } from './root-ocsp';
import { signerCaCertificate } from './signer-ca';

/**
 * ca-lifecycle: what only the root key can do to the CA itself: sign the root CRL, give the issuing key a
 * new certificate, revoke the issuing CA. Each opens the root key (which `serve` never does) and is run
 * by an operator, on the server when the root key is there, or on the offline machine holding it (a copy
 * of the data directory and store), writing a root CRL file to import on the server.
 */

export type LifecycleStore = CaStateStore & AuditStore;

/**
 * caRecord: the CA's store record as of now (a rollover whose time has come is promoted: promoteDue) and
 * the version to write it back at.
 */
export async function caRecord(cfg: Config, store: LifecycleStore, now = new Date()): Promise<{ rec: StoredCa; version: number }> {
  await readCaRecord(cfg, store); // imports an older data directory first
  const e = await store.getCaState(HIERARCHY_RECORD);
  if (!e) throw new DeviceCaError('config', `no CA in ${cfg.store.path}; run \`device-ca init\` first`);
  return { rec: promoteDue(e.value as StoredCa, now), version: e.version };
}

/**
 * storedCaRecord: the CA's store record exactly as written (a due rollover NOT promoted) and its version.
 * Every write that is not the activation itself (issuing-rollover.ts activateDueRollover, `ca rollover`)
 * changes this record, so a revocation, a reissue or a root rollover never commits a scheduled switch as
 * a side effect: the switch stays the activation path's, audited there, at its time.
 */
export async function storedCaRecord(cfg: Config, store: LifecycleStore): Promise<{ rec: StoredCa; version: number }> {
  await readCaRecord(cfg, store); // imports an older data directory first
  const e = await store.getCaState(HIERARCHY_RECORD);
  if (!e) throw new DeviceCaError('config', `no CA in ${cfg.store.path}; run \`device-ca init\` first`);
  return { rec: e.value as StoredCa, version: e.version };
}

/** openRootKey loads the root key named in the store (root: a previous root; default the one in force) and checks it against its certificate. */
export async function openRootKey(cfg: Config, keys: KeyBackend, rec: StoredCa, root: StoredRoot = rec.root): Promise<SigningKey> {
  const key = await keys.load(fromStoredRef(cfg.dataDir, root.keyRef));
  if (!key.spki.equals(certificateParts(Buffer.from(root.der, 'base64')).spki)) throw new DeviceCaError('config', `root key ${root.keyRef} does not match the root CA certificate ${root.name}`);
  return key;
}

/** findRoot: the root of this name (default the one in force); 'not-found' naming the CA's roots otherwise. */
export function findRoot(rec: StoredCa, name?: string): StoredRoot {
  if (name === undefined) return rec.root;
  const r = allRoots(rec).find((x) => x.name === name);
  if (!r)
    throw new DeviceCaError(
      'not-found',
      `no root CA named ${name} (this CA's: ${allRoots(rec)
        .map((x) => x.name)
        .join(', ')})`,
    );
  return r;
}

/** rootSigning: the root that signed an issuing CA certificate; a record whose issuing CA matches no root is damaged. */
function rootSigning(rec: StoredCa, der: Buffer): StoredRoot {
  const r = issuerRootOf(rec, der);
  if (!r) throw new DeviceCaError('config', 'the issuing CA certificate was signed by none of the roots in the store');
  return r;
}

/**
 * makeRootCrl signs a new root CRL carrying the current one's entries plus `add`; with `out` the caller
 * writes the bytes to a file (offline machine) and the store is left alone, otherwise it is stored. Offline
 * (store: false) it also signs the root's OCSP answer for the issuing CA certificates from that CRL (ocsp:
 * DER OCSPResponse), which the server imports beside it, since the server cannot sign one.
 */
export async function makeRootCrl(
  cfg: Config,
  keys: KeyBackend,
  store: LifecycleStore,
  o: { add?: RevokedEntry[]; store: boolean; actor: string; now?: Date; root?: string },
): Promise<RootCrlInfo & { ocsp?: Buffer }> {
  const { rec } = await caRecord(cfg, store);
  const root = findRoot(rec, o.root);
  const rootDer = Buffer.from(root.der, 'base64');
  const rootKey = await openRootKey(cfg, keys, rec, root);
  const current = await readRootCrl(store, rootDer, rootCrlRecordOf(root));
  const entries = [...(current?.entries ?? [])];
  for (const e of o.add ?? []) if (!entries.some((x) => String(x.serial) === String(e.serial))) entries.push(e);
  const der = await signRootCrl({ rootKey, rootDer, validitySeconds: cfg.ca.root.crlValidity, entries, now: o.now, after: current?.number });
  if (!o.store) {
    const info = parseRootCrl(der, rootDer);
    const signed = await signRootOcsp({ rootKey, rec, root, entries, thisUpdate: info.thisUpdate, nextUpdate: info.nextUpdate });
    return { ...info, ocsp: Buffer.from(signed.der, 'base64') };
  }
  const info = await saveRootCrl(store, rootDer, der, o.actor, 'signed', rootCrlRecordOf(root));
  await markRevoked(cfg, store, info);
  await refreshRootOcsp(cfg, store, rootKey, o.now, root.name);
  return info;
}

/**
 * refreshRootOcsp signs and stores the root's OCSP answer for the issuing CA certificates (root-ocsp.ts)
 * from the CA record and root CRL as they are now; it lapses with the root CRL. Run wherever the root
 * key is open with the store beside it.
 */
export async function refreshRootOcsp(cfg: Config, store: LifecycleStore, rootKey: SigningKey, now = new Date(), rootName?: string): Promise<void> {
  const { rec } = await caRecord(cfg, store, now);
  const root = findRoot(rec, rootName);
  const rootDer = Buffer.from(root.der, 'base64');
  const crl = await readRootCrl(store, rootDer, rootCrlRecordOf(root));
  const thisUpdate = new Date(Math.floor(now.getTime() / 1000) * 1000);
  const nextUpdate = crl?.nextUpdate ?? new Date(Math.min(thisUpdate.getTime() + cfg.ca.root.crlValidity * 1000, new Date(new crypto.X509Certificate(rootDer).validTo).getTime()));
  await saveRootOcsp(store, await signRootOcsp({ rootKey, rec, root, entries: crl?.entries ?? [], thisUpdate, nextUpdate }), rootOcspRecordOf(root));
}

/**
 * markRevoked flags, in the CA record, every issuing CA whose certificate the root CRL lists, so every
 * process stops accepting its device certificates as proof (issuing-ca-set.ts trusted) at its next
 * reload. The root CRL stays the record of revocation; this is its reading, kept where the RA looks.
 */
async function markRevoked(cfg: Config, store: LifecycleStore, crl: RootCrlInfo): Promise<void> {
  for (;;) {
    // the record as stored: marking a CA revoked must not promote a rollover that is due (storedCaRecord)
    const { rec, version } = await storedCaRecord(cfg, store);
    const hex = (s: string) => s.toLowerCase().replace(/^0+(?=.)/, '');
    const listed = new Set(crl.entries.map((e) => hex(String(e.serial))));
    let changed = false;
    const mark = (r: StoredIssuing): StoredIssuing => {
      const serials = [certificateParts(Buffer.from(r.der, 'base64')).serial, ...(r.replaced ?? [])];
      if (r.revoked || !serials.some((s) => listed.has(hex(s)))) return r;
      changed = true;
      return { ...r, revoked: true };
    };
    const next: StoredCa = { ...rec, issuing: mark(rec.issuing), ...(rec.next ? { next: { ...mark(rec.next), activatesAt: rec.next.activatesAt } } : {}), retired: (rec.retired ?? []).map(mark) };
    if (!changed) return;
    try {
      await store.saveCaState(HIERARCHY_RECORD, next, version);
      return;
    } catch (e) {
      if (!(e instanceof DeviceCaError && e.code === 'conflict')) throw e; // written meanwhile: read again
    }
  }
}

/** RootOcspImport: what an import did to the root's OCSP answer (see importRootCrl). */
export type RootOcspImport = 'imported' | 'kept' | 'withdrawn';

/**
 * importRootCrl stores a root CRL signed elsewhere (the offline root machine); it must verify with the key
 * of one of the CA's roots (the one whose name is its issuer) and be newer than that root's CRL. The root's
 * OCSP answer for the issuing CA certificates (root-ocsp.ts) must then say what the CRL says, and the
 * server cannot sign one: with `ocsp` (the answer the offline machine signed beside the CRL, checked to be
 * the root's and to agree with this CRL before anything is written) it is stored ('imported'); without
 * it the stored answer stays when it agrees ('kept') and is withdrawn otherwise ('withdrawn': OCSP then
 * answers unauthorized for the issuing CA, never `good` for a CA the CRL revokes).
 */
export async function importRootCrl(cfg: Config, store: LifecycleStore, der: Buffer, actor: string, ocsp?: Buffer): Promise<RootCrlInfo & { ocsp: RootOcspImport }> {
  const { rec } = await caRecord(cfg, store);
  const roots = allRoots(rec);
  // the root whose CRL this is: its signature decides (parseRootCrl); the last root's refusal is the one reported
  const root = roots.find((r, i) => {
    if (i === roots.length - 1) return true;
    try {
      parseRootCrl(der, Buffer.from(r.der, 'base64'));
      return true;
    } catch {
      return false;
    }
  })!;
  const rootDer = Buffer.from(root.der, 'base64');
  const listed = new Set(parseRootCrl(der, rootDer).entries.map((e) => hexSerial(String(e.serial))));
  const agrees = (o: ParsedRootOcsp) => o.serials.every((s) => listed.has(s) === o.revoked.includes(s));
  let imported: StoredRootOcsp | null = null;
  if (ocsp) {
    const o = parseRootOcsp(ocsp, rootDer);
    if (!agrees(o)) throw new DeviceCaError('bad-request', 'the root OCSP answer does not agree with this root CRL (sign both in one `ca root-crl --out` run)');
    imported = { der: ocsp.toString('base64'), serials: o.serials, nextUpdate: o.nextUpdate.toISOString() };
  }
  const info = await saveRootCrl(store, rootDer, der, actor, 'imported', rootCrlRecordOf(root));
  await markRevoked(cfg, store, info);
  const record = rootOcspRecordOf(root);
  let outcome: RootOcspImport = 'kept';
  if (imported) {
    await saveRootOcsp(store, imported, record);
    outcome = 'imported';
  } else {
    const cur = (await store.getCaState(record))?.value as StoredRootOcsp | undefined;
    let ok = false;
    try {
      ok = cur !== undefined && agrees(parseRootOcsp(Buffer.from(cur.der, 'base64'), rootDer));
    } catch {
      ok = false; // withdrawn before, or unreadable: nothing to keep
    }
    if (!ok) {
      await saveRootOcsp(store, { der: '', serials: [], nextUpdate: new Date(0).toISOString() }, record);
      outcome = 'withdrawn';
    }
  }
  if (outcome !== 'kept') await store.appendAudit({ type: `root-ocsp.${outcome}`, actor, subject: record, data: { crlNumber: info.number.toString() } });
  return { ...info, ocsp: outcome };
}

/** hexSerial: a serial as lower-case hex without leading zeros, the form CRL entries and OCSP answers are compared in. */
const hexSerial = (s: string): string => s.toLowerCase().replace(/^0+(?=.)/, '');

/**
 * reissueIssuing gives the current issuing key a new certificate signed by the root, with the same subject,
 * key and validity window but the extensions of this version (CRL distribution point = root CRL, AIA
 * caIssuers = root certificate). Certificates already issued chain to it unchanged (same name and key).
 * Running services serve it in place of the old one from their next CA duties round (issuing-ca-set.ts).
 */
export async function reissueIssuing(cfg: Config, keys: KeyBackend, store: LifecycleStore, actor: string, now = new Date()): Promise<{ der: Buffer; replaced: string }> {
  // the issuing CA in force at `now` (a due rollover's), written back where the stored record keeps it
  const { rec: stored, version } = await storedCaRecord(cfg, store);
  const rec = promoteDue(stored, now);
  const oldDer = Buffer.from(rec.issuing.der, 'base64');
  // the root that signed it (after `ca rollover-root` the issuing CA in force may be under the previous root)
  const signer = rootSigning(rec, oldDer);
  const rootDer = Buffer.from(signer.der, 'base64');
  const rootKey = await openRootKey(cfg, keys, rec, signer);
  const root = certificateParts(rootDer);
  const old = certificateParts(oldDer);
  const x = new crypto.X509Certificate(oldDer);
  const der = await signCaCert({
    issuerKey: rootKey,
    issuerName: root.subject,
    issuerKeyId: keyIdentifier(root.spki),
    subjectName: old.subject,
    spki: old.spki,
    validitySeconds: 0,
    pathLen: 0,
    now,
    window: { notBefore: new Date(x.validFrom), notAfter: new Date(x.validTo) },
    rootUrls: rootUrlsOf(cfg, signer.name),
  });
  const reissued = { ...rec.issuing, der: der.toString('base64'), replaced: [...(rec.issuing.replaced ?? []), old.serial] };
  const next: StoredCa = stored.next?.name === reissued.name ? { ...stored, next: { ...reissued, activatesAt: stored.next.activatesAt } } : { ...stored, issuing: reissued };
  await store.saveCaState(HIERARCHY_RECORD, next, version, {
    type: 'ca.issuing-reissued',
    actor,
    subject: rec.issuing.name,
    data: { replaced: old.serial, serial: certificateParts(der).serial },
  });
  exportCaFiles(cfg, rootDer, der, rec.issuing.name, { rootName: signer.name });
  await refreshRootOcsp(cfg, store, rootKey, now, signer.name);
  return { der, replaced: old.serial };
}

/**
 * revokeIssuing lists every certificate of the named issuing CA (the current one and those reissue-issuing
 * replaced) on a new root CRL at once. Devices then fail `openssl verify -crl_check_all` and FreeRADIUS
 * `check_all_crl`; the recovery is a new issuing CA (rollover) and re-enrollment (README runbook).
 */
export async function revokeIssuing(
  cfg: Config,
  keys: KeyBackend,
  store: LifecycleStore,
  name: string,
  reason: CrlReason,
  o: { store: boolean; actor: string; now?: Date },
): Promise<{ crl: RootCrlInfo & { ocsp?: Buffer }; serials: string[] }> {
  const { rec } = await caRecord(cfg, store);
  const all = [rec.issuing, ...(rec.next ? [rec.next] : []), ...(rec.retired ?? [])];
  const target = all.find((i) => i.name === name);
  if (!target) throw new DeviceCaError('not-found', `no issuing CA named ${name} (this CA's: ${all.map((i) => i.name).join(', ')})`);
  const now = o.now ?? new Date();
  const serials = [certificateParts(Buffer.from(target.der, 'base64')).serial, ...(target.replaced ?? [])];
  const add = serials.map((serial) => ({ serial, revokedAt: new Date(Math.floor(now.getTime() / 1000) * 1000), reason }));
  // listed on the CRL of the root that signed it
  const root = rootSigning(rec, Buffer.from(target.der, 'base64')).name;
  const crl = await makeRootCrl(cfg, keys, store, { add, store: o.store, actor: o.actor, now, root });
  if (o.store) await store.appendAudit({ type: 'ca.issuing-revoked', actor: o.actor, subject: name, data: { serials, reason } });
  return { crl, serials };
}

/** RootRolloverResult: the root `ca rollover-root` made and its link certificates. */
export interface RootRolloverResult {
  name: string;
  der: Buffer;
  keyRef: string;
  /** replaces: the root it takes over from (retired but published: certificate, CRL, OCSP for its CAs) */
  replaces: string;
  oldWithNew: Buffer;
  newWithOld: Buffer;
  /** resumed: an earlier run had committed the root but was stopped before its first CRL; this run finished it */
  resumed: boolean;
}

/**
 * rolloverRoot makes a new root CA (new key: on the PKCS#11 token when keys.roles.root says so, a key file
 * otherwise) and the two link certificates (root-links.ts), with the old root key. The new root becomes
 * the root in force: the next `ca rollover` puts its issuing CA under it. The old root is retired but
 * published (certificate, CRL at /crl/<old>.crl, OCSP for the issuing CAs it signed) while it has not
 * expired, so the issuing CA in force stays valid under it until devices have re-enrolled.
 *
 * When: one root rollover at a time. A second one is refused until an issuing CA has been put under the
 * new root (`ca rollover`): before that, the new root signs nothing devices use, and a third root would
 * only lengthen the chains relying parties must follow.
 *
 * Crash safety: the key and certificates are made first, then the store record is written in one
 * versioned write (the commit point, audited), then the new root's first CRL and the export files. A
 * kill before the commit leaves at most an unused key (a rerun makes another); a kill after it leaves a
 * root without a CRL, which a rerun notices and finishes (resumed), never a second new root.
 */
export async function rolloverRoot(cfg: Config, keys: KeyBackend, store: LifecycleStore, o: { actor: string; now?: Date }): Promise<RootRolloverResult> {
  const now = o.now ?? new Date();
  // the record as stored (storedCaRecord): a root rollover does not commit a due issuing CA rollover
  const { rec, version } = await storedCaRecord(cfg, store);
  const last = (rec.links ?? []).find((l) => l.to === rec.root.name);
  if (last) {
    const newKey = await openRootKey(cfg, keys, rec);
    const result = (resumed: boolean): RootRolloverResult => ({
      name: rec.root.name,
      der: Buffer.from(rec.root.der, 'base64'),
      keyRef: rec.root.keyRef,
      replaces: last.from,
      oldWithNew: Buffer.from(last.oldWithNew, 'base64'),
      newWithOld: Buffer.from(last.newWithOld, 'base64'),
      resumed,
    });
    // committed, but stopped before its first CRL: finish what the earlier run began
    if (!(await readRootCrl(store, Buffer.from(rec.root.der, 'base64'), rootCrlRecordOf(rec.root)))) {
      await publishNewRoot(cfg, store, newKey, o.actor, now);
      return result(true);
    }
    const under = [rec.issuing, ...(rec.next ? [rec.next] : [])].some((i) => issuerRootOf(rec, Buffer.from(i.der, 'base64'))?.name === rec.root.name);
    if (!under)
      throw new DeviceCaError(
        'conflict',
        `root ${rec.root.name} (the last root rollover, from ${last.from}) has no issuing CA under it yet; run \`device-ca ca rollover\` to put one there before rolling the root over again`,
      );
  }
  const oldRoot = rec.root;
  const oldDer = Buffer.from(oldRoot.der, 'base64');
  const oldKey = await openRootKey(cfg, keys, rec);
  const taken = new Set([
    ...allRoots(rec).map((r) => r.name),
    ...(rec.droppedRoots ?? []).map((r) => r.name),
    rec.issuing.name,
    ...(rec.next ? [rec.next.name] : []),
    ...(rec.retired ?? []).map((r) => r.name),
  ]);
  let n = (rec.previousRoots?.length ?? 0) + 2;
  while (taken.has(`${cfg.ca.root.name}-${n}`)) n++;
  const name = `${cfg.ca.root.name}-${n}`;
  const algorithm = (cfg.ca.root.algorithm ?? cfg.ca.algorithm) as KeyAlgorithm;
  const key = await keys.generate('root', algorithm, `${name}-${now.toISOString().slice(0, 10).replace(/-/g, '')}-${crypto.randomBytes(3).toString('hex')}`);
  const subject = encodeName([
    { type: 'O', value: cfg.ca.organization },
    { type: 'CN', value: `${cfg.ca.root.commonName ?? `${cfg.ca.organization} Root CA`} ${n}` },
  ]);
  const der = await signCaCert({ issuerKey: key, issuerName: subject, subjectName: subject, spki: key.spki, validitySeconds: cfg.ca.root.validity, now });
  const links = await signRootLinks({
    old: { der: oldDer, key: oldKey, urls: rootUrlsOf(cfg, oldRoot.name) },
    new: { der, key, urls: rootUrlsOf(cfg, name) },
    now,
  });
  const keyRef = toStoredRef(cfg.dataDir, key.ref);
  const next: StoredCa = {
    ...rec,
    root: { name, keyRef, der: der.toString('base64'), records: { crl: `root-crl:${name}`, ocsp: `root-ocsp:${name}` } },
    previousRoots: [oldRoot, ...(rec.previousRoots ?? [])],
    links: [...(rec.links ?? []), { from: oldRoot.name, to: name, oldWithNew: links.oldWithNew.toString('base64'), newWithOld: links.newWithOld.toString('base64') }],
  };
  // the commit point: one versioned write (a concurrent rollover or rewrite loses with 'conflict')
  await store.saveCaState(HIERARCHY_RECORD, next, version, {
    type: 'ca.root-rolled-over',
    actor: o.actor,
    subject: name,
    data: {
      replaces: oldRoot.name,
      serial: certificateParts(der).serial,
      key: keyRef,
      oldWithNew: certificateParts(links.oldWithNew).serial,
      newWithOld: certificateParts(links.newWithOld).serial,
    },
  });
  await publishNewRoot(cfg, store, key, o.actor, now);
  return { name, der, keyRef, replaces: oldRoot.name, ...links, resumed: false };
}

/**
 * publishNewRoot: what follows the commit of a root rollover, each step safe to repeat: the new root's
 * first CRL (empty), and the operator exports <name>.crt/.pem and root-links.pem (every link certificate).
 */
async function publishNewRoot(cfg: Config, store: LifecycleStore, key: SigningKey, actor: string, now: Date): Promise<void> {
  const { rec } = await caRecord(cfg, store, now);
  const der = Buffer.from(rec.root.der, 'base64');
  if (!(await readRootCrl(store, der, rootCrlRecordOf(rec.root))))
    await saveRootCrl(store, der, await signRootCrl({ rootKey: key, rootDer: der, validitySeconds: cfg.ca.root.crlValidity, entries: [], now }), actor, 'signed', rootCrlRecordOf(rec.root));
  const linkPems = (rec.links ?? []).map((l) => toPem(Buffer.from(l.oldWithNew, 'base64'), 'CERTIFICATE') + toPem(Buffer.from(l.newWithOld, 'base64'), 'CERTIFICATE')).join('');
  writeCaFiles(cfg, [
    [`${rec.root.name}.crt`, der],
    [`${rec.root.name}.pem`, toPem(der, 'CERTIFICATE')],
    ['root-links.pem', linkPems],
  ]);
}

/**
 * dropRoot stops publishing a previous root (`ca rollover-root` replaced it) before it expires: its
 * certificate (`/ca/<name>.crt`, `/cacerts`, `crl export`), its CRL, its OCSP answers and the link
 * certificates to and from it leave every running service at its next CA duties round. Refused for the
 * root in force, and while an issuing CA it signed may still have valid certificates: one in force or
 * pending, or a retired one whose own certificate has not expired (no certificate it signed outlives it)
 * and that the root CRL does not list. One versioned write, audited `ca.root-dropped`; the record keeps the
 * root and its links under droppedRoots. Needs no root key.
 */
export async function dropRoot(cfg: Config, store: LifecycleStore, name: string, o: { actor: string; now?: Date }): Promise<{ name: string; linkCertificates: number }> {
  const now = o.now ?? new Date();
  const { rec, version } = await storedCaRecord(cfg, store);
  if (name === rec.root.name) throw new DeviceCaError('conflict', `${name} is the root in force; only a root \`ca rollover-root\` replaced can be dropped`);
  const root = (rec.previousRoots ?? []).find((r) => r.name === name);
  if (!root) throw new DeviceCaError('not-found', `no previous root named ${name} (this CA's: ${(rec.previousRoots ?? []).map((r) => r.name).join(', ') || 'none'})`);
  const rootSubject = certificateParts(Buffer.from(root.der, 'base64')).subject;
  const under = (i: StoredIssuing) => certificateParts(Buffer.from(i.der, 'base64')).issuer.equals(rootSubject);
  const expires = (i: StoredIssuing) => new Date(new crypto.X509Certificate(Buffer.from(i.der, 'base64')).validTo);
  // decided on the CAs as of now (a due rollover promoted), written on the record as stored
  const view = promoteDue(rec, now);
  const inUse = [
    ...[view.issuing, ...(view.next ? [view.next] : [])].filter(under).map((i) => `${i.name} (${i === view.issuing ? 'in force' : 'pending'})`),
    ...(view.retired ?? []).filter((i) => under(i) && !i.revoked && expires(i) > now).map((i) => `${i.name} (retired, its certificates may be valid until ${expires(i).toISOString()})`),
  ];
  // the firmware signer CA is made once and stays under the root it was made under: its releases and
  // signed device commands chain to that root (signer-ca.ts signerCaAnchors) until it expires
  const signerCa = await signerCaCertificate(store);
  if (signerCa && certificateParts(signerCa).issuer.equals(rootSubject) && new Date(new crypto.X509Certificate(signerCa).validTo) > now)
    inUse.push(`the firmware signer CA (releases and device commands chain to it until ${new Date(new crypto.X509Certificate(signerCa).validTo).toISOString()})`);
  if (inUse.length)
    throw new DeviceCaError(
      'conflict',
      `root ${name} still vouches for certificates in use: ${inUse.join(', ')}; wait until they expire, or \`ca revoke-issuing <name> --reason superseded\` once every device has re-enrolled`,
    );
  const links = (rec.links ?? []).filter((l) => l.from === name || l.to === name);
  const next: StoredCa = {
    ...rec,
    previousRoots: (rec.previousRoots ?? []).filter((r) => r.name !== name),
    links: (rec.links ?? []).filter((l) => !links.includes(l)),
    droppedRoots: [...(rec.droppedRoots ?? []), { ...root, droppedAt: now.toISOString(), links }],
  };
  await store.saveCaState(HIERARCHY_RECORD, next, version, { type: 'ca.root-dropped', actor: o.actor, subject: name, data: { linkCertificates: links.length * 2 } });
  // each link record holds two certificates: OldWithNew and NewWithOld
  return { name, linkCertificates: links.length * 2 };
}
