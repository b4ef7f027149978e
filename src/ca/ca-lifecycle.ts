import * as crypto from 'node:crypto';
import { Config } from '../config/schema';
import { fromStoredRef } from '../data-dir/data-dir-ref';
import { DeviceCaError } from '../errors/device-ca-error';
import { KeyBackend, SigningKey } from '../keys/key-backend';
import { AuditStore, CaStateStore } from '../store/store';
import { HIERARCHY_RECORD, StoredCa, StoredIssuing, exportCaFiles, promoteDue, readCaRecord, rootUrlsOf, signCaCert } from './ca-hierarchy';
import { keyIdentifier } from './certificate-encoder';
import { certificateParts } from './certificate-parts';
import { CrlReason, RevokedEntry } from './crl-encoder';
import { RootCrlInfo, parseRootCrl, readRootCrl, saveRootCrl, signRootCrl } from './root-crl';
import { saveRootOcsp, signRootOcsp } from './root-ocsp';

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

/** openRootKey loads the root key named in the store and checks it against the root certificate. */
export async function openRootKey(cfg: Config, keys: KeyBackend, rec: StoredCa): Promise<SigningKey> {
  const key = await keys.load(fromStoredRef(cfg.dataDir, rec.root.keyRef));
  if (!key.spki.equals(certificateParts(Buffer.from(rec.root.der, 'base64')).spki)) throw new DeviceCaError('config', `root key ${rec.root.keyRef} does not match the root CA certificate`);
  return key;
}

/**
 * makeRootCrl signs a new root CRL carrying the current one's entries plus `add`; with `out` the caller
 * writes the bytes to a file (offline machine) and the store is left alone, otherwise it is stored.
 */
export async function makeRootCrl(cfg: Config, keys: KeyBackend, store: LifecycleStore, o: { add?: RevokedEntry[]; store: boolean; actor: string; now?: Date }): Promise<RootCrlInfo> {
  const { rec } = await caRecord(cfg, store);
  const rootDer = Buffer.from(rec.root.der, 'base64');
  const rootKey = await openRootKey(cfg, keys, rec);
  const current = await readRootCrl(store, rootDer);
  const entries = [...(current?.entries ?? [])];
  for (const e of o.add ?? []) if (!entries.some((x) => String(x.serial) === String(e.serial))) entries.push(e);
  const der = await signRootCrl({ rootKey, rootDer, validitySeconds: cfg.ca.root.crlValidity, entries, now: o.now, after: current?.number });
  if (!o.store) return parseRootCrl(der, rootDer);
  const info = await saveRootCrl(store, rootDer, der, o.actor, 'signed');
  await markRevoked(cfg, store, info);
  await refreshRootOcsp(cfg, store, rootKey, o.now);
  return info;
}

/**
 * refreshRootOcsp signs and stores the root's OCSP answer for the issuing CA certificates (root-ocsp.ts)
 * from the CA record and root CRL as they are now; it lapses with the root CRL. Run wherever the root
 * key is open with the store beside it.
 */
export async function refreshRootOcsp(cfg: Config, store: LifecycleStore, rootKey: SigningKey, now = new Date()): Promise<void> {
  const { rec } = await caRecord(cfg, store, now);
  const rootDer = Buffer.from(rec.root.der, 'base64');
  const crl = await readRootCrl(store, rootDer);
  const thisUpdate = new Date(Math.floor(now.getTime() / 1000) * 1000);
  const nextUpdate = crl?.nextUpdate ?? new Date(Math.min(thisUpdate.getTime() + cfg.ca.root.crlValidity * 1000, new Date(new crypto.X509Certificate(rootDer).validTo).getTime()));
  await saveRootOcsp(store, await signRootOcsp({ rootKey, rec, entries: crl?.entries ?? [], thisUpdate, nextUpdate }));
}

/**
 * markRevoked flags, in the CA record, every issuing CA whose certificate the root CRL lists, so every
 * process stops accepting its device certificates as proof (issuing-ca-set.ts trusted) at its next
 * reload. The root CRL stays the record of revocation; this is its reading, kept where the RA looks.
 */
async function markRevoked(cfg: Config, store: LifecycleStore, crl: RootCrlInfo): Promise<void> {
  for (;;) {
    const { rec, version } = await caRecord(cfg, store);
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

/** importRootCrl stores a root CRL signed elsewhere (the offline root machine); it must verify with the root key and be newer. */
export async function importRootCrl(cfg: Config, store: LifecycleStore, der: Buffer, actor: string): Promise<RootCrlInfo> {
  const { rec } = await caRecord(cfg, store);
  const info = await saveRootCrl(store, Buffer.from(rec.root.der, 'base64'), der, actor, 'imported');
  await markRevoked(cfg, store, info);
  return info;
}

/**
 * reissueIssuing gives the current issuing key a new certificate signed by the root, with the same subject,
 * key and validity window but the extensions of this version (CRL distribution point = root CRL, AIA
 * caIssuers = root certificate). Certificates already issued chain to it unchanged (same name and key).
 * Running services serve it in place of the old one from their next CA duties round (issuing-ca-set.ts).
 */
export async function reissueIssuing(cfg: Config, keys: KeyBackend, store: LifecycleStore, actor: string, now = new Date()): Promise<{ der: Buffer; replaced: string }> {
  const { rec, version } = await caRecord(cfg, store);
  const rootDer = Buffer.from(rec.root.der, 'base64');
  const oldDer = Buffer.from(rec.issuing.der, 'base64');
  const rootKey = await openRootKey(cfg, keys, rec);
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
    rootUrls: rootUrlsOf(cfg, rec.root.name),
  });
  const next: StoredCa = { ...rec, issuing: { ...rec.issuing, der: der.toString('base64'), replaced: [...(rec.issuing.replaced ?? []), old.serial] } };
  await store.saveCaState(HIERARCHY_RECORD, next, version, {
    type: 'ca.issuing-reissued',
    actor,
    subject: rec.issuing.name,
    data: { replaced: old.serial, serial: certificateParts(der).serial },
  });
  exportCaFiles(cfg, rootDer, der, rec.issuing.name);
  await refreshRootOcsp(cfg, store, rootKey, now);
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
): Promise<{ crl: RootCrlInfo; serials: string[] }> {
  const { rec } = await caRecord(cfg, store);
  const all = [rec.issuing, ...(rec.next ? [rec.next] : []), ...(rec.retired ?? [])];
  const target = all.find((i) => i.name === name);
  if (!target) throw new DeviceCaError('not-found', `no issuing CA named ${name} (this CA's: ${all.map((i) => i.name).join(', ')})`);
  const now = o.now ?? new Date();
  const serials = [certificateParts(Buffer.from(target.der, 'base64')).serial, ...(target.replaced ?? [])];
  const add = serials.map((serial) => ({ serial, revokedAt: new Date(Math.floor(now.getTime() / 1000) * 1000), reason }));
  const crl = await makeRootCrl(cfg, keys, store, { add, store: o.store, actor: o.actor, now });
  if (o.store) await store.appendAudit({ type: 'ca.issuing-revoked', actor: o.actor, subject: name, data: { serials, reason } });
  return { crl, serials };
}
