import * as crypto from 'node:crypto';
import { Config } from '../config/schema';
import { toStoredRef } from '../data-dir/data-dir-ref';
import { DeviceCaError } from '../errors/device-ca-error';
import { AuditStore, CaStateStore } from '../store/store';
import { KeyAlgorithm, KeyBackend } from '../keys/key-backend';
import { HIERARCHY_RECORD, StoredCa, allRoots, exportCaFiles, promoteDue, rootUrlsOf, signCaCert } from './ca-hierarchy';
import { LifecycleStore, caRecord, openRootKey, refreshRootOcsp, storedCaRecord } from './ca-lifecycle';
import { keyIdentifier } from './certificate-encoder';
import { certificateParts } from './certificate-parts';
import { encodeName } from './name';

/** RolloverResult: the issuing CA `ca rollover` made and when it takes over new issuance. */
export interface RolloverResult {
  name: string;
  der: Buffer;
  keyRef: string;
  activatesAt: Date;
  /** replaces: the issuing CA it takes over from (retired at activatesAt, served until its certificates expire) */
  replaces: string;
}

/**
 * rolloverIssuing makes a new issuing CA under the root in force (after `ca rollover-root`, the new root): a new key (keys.roles.issuing decides where:
 * the PKCS#11 token when configured, a key file otherwise) and a root-signed certificate with the CRL
 * distribution point and caIssuers of this version. It is recorded in the store as the next issuing CA
 * with its activation time, in one versioned write: every process reads it from there, serves it at once
 * (its certificate in /cacerts and /ca/<name>.crt, its CRLs, OCSP) and issues from it from activatesAt on.
 * The issuing CA it replaces keeps its CRLs and OCSP until its own certificate expires (no certificate it
 * signed outlives it). Names: `<ca.issuing.name>-<n>` and CN `<issuing CN> <n>`, n counting generations,
 * so URLs, CRL files and openssl's chain building never confuse the two. One pending rollover at a time.
 */
export async function rolloverIssuing(cfg: Config, keys: KeyBackend, store: LifecycleStore, o: { at?: Date; actor: string; now?: Date }): Promise<RolloverResult> {
  const now = o.now ?? new Date();
  const activatesAt = new Date(Math.max((o.at ?? now).getTime(), now.getTime()));
  const { rec, version } = await caRecord(cfg, store, now);
  if (rec.next) throw new DeviceCaError('conflict', `issuing CA ${rec.next.name} already takes over at ${rec.next.activatesAt}; one rollover at a time`);
  const rootDer = Buffer.from(rec.root.der, 'base64');
  const rootX = new crypto.X509Certificate(rootDer);
  if (activatesAt >= new Date(rootX.validTo)) throw new DeviceCaError('bad-request', `--at ${activatesAt.toISOString()} is after the root CA expires (${rootX.validTo})`);
  const rootKey = await openRootKey(cfg, keys, rec);
  const taken = new Set([rec.issuing.name, ...(rec.retired ?? []).map((r) => r.name), ...allRoots(rec).map((r) => r.name)]);
  let n = (rec.retired?.length ?? 0) + 2;
  while (taken.has(`${cfg.ca.issuing.name}-${n}`)) n++;
  const name = `${cfg.ca.issuing.name}-${n}`;
  const algorithm = (cfg.ca.issuing.algorithm ?? cfg.ca.algorithm) as KeyAlgorithm;
  const key = await keys.generate('issuing', algorithm, `${name}-${now.toISOString().slice(0, 10).replace(/-/g, '')}-${crypto.randomBytes(3).toString('hex')}`);
  const root = certificateParts(rootDer);
  const der = await signCaCert({
    issuerKey: rootKey,
    issuerName: root.subject,
    issuerKeyId: keyIdentifier(root.spki),
    subjectName: encodeName([
      { type: 'O', value: cfg.ca.organization },
      { type: 'CN', value: `${cfg.ca.issuing.commonName ?? `${cfg.ca.organization} Issuing CA`} ${n}` },
    ]),
    spki: key.spki,
    // never past the root (RFC 5280 §6.1.3: a chain is valid only while every certificate in it is)
    validitySeconds: Math.min(cfg.ca.issuing.validity, Math.floor((new Date(rootX.validTo).getTime() - now.getTime()) / 1000) - 3600),
    pathLen: 0,
    now,
    rootUrls: rootUrlsOf(cfg, rec.root.name),
  });
  const keyRef = toStoredRef(cfg.dataDir, key.ref);
  const next: StoredCa = { ...rec, next: { name, keyRef, der: der.toString('base64'), activatesAt: activatesAt.toISOString() } };
  await store.saveCaState(HIERARCHY_RECORD, next, version, {
    type: 'ca.rollover-scheduled',
    actor: o.actor,
    subject: name,
    data: { replaces: rec.issuing.name, activatesAt: activatesAt.toISOString(), serial: certificateParts(der).serial, key: keyRef },
  });
  // the root vouches for the new CA over OCSP too
  await refreshRootOcsp(cfg, store, rootKey, now);
  // <name>.crt/.pem for operators now; chain.pem follows at the first `serve` start after activatesAt
  exportCaFiles(cfg, rootDer, der, name, { chain: false, rootName: rec.root.name });
  return { name, der, keyRef, activatesAt, replaces: rec.issuing.name };
}

/**
 * activateDueRollover is where a scheduled switch is committed: run by the CA duties holder each round
 * (and by `ca rollover`, which promotes a due CA before scheduling the next). Once the next issuing CA's
 * activation time has come, the store record makes it the issuing CA and retires the one it replaced, in
 * one versioned write audited as `ca.rollover-activated` (the files in <dataDir>/ca stay as they are until
 * the next `serve` start, as before: relying parties may read chain.pem meanwhile). Every process already
 * issues from the new CA from activatesAt on (a clock comparison, issuing-ca-set.ts), so this write
 * changes no process's behaviour; it records the switch where writers of the record find it. Returns the
 * name of the CA activated, or null when nothing was due (or another process committed it first).
 */
export async function activateDueRollover(cfg: Config, store: CaStateStore & AuditStore, o: { actor: string; now?: Date }): Promise<string | null> {
  const now = o.now ?? new Date();
  const { rec, version } = await storedCaRecord(cfg, store);
  if (!rec.next || new Date(rec.next.activatesAt) > now) return null;
  const promoted = promoteDue(rec, now);
  try {
    await store.saveCaState(HIERARCHY_RECORD, promoted, version, {
      type: 'ca.rollover-activated',
      actor: o.actor,
      subject: promoted.issuing.name,
      data: { replaces: rec.issuing.name, activatesAt: rec.next.activatesAt },
    });
  } catch (e) {
    if (e instanceof DeviceCaError && e.code === 'conflict') return null; // written meanwhile: the next round looks again
    throw e;
  }
  return promoted.issuing.name;
}
