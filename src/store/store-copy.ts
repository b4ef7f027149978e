import * as crypto from 'node:crypto';
import { AuditVerdict, verifyAuditChain } from '../audit/audit-verify';
import { DeviceCaError } from '../errors/device-ca-error';
import { collectItems, everyItem } from './paging';
import { firmwareGroupKeyRecord, MAX_PAGE_LIMIT, Store, isAttestationStore } from './store';
import { SNAPSHOT_KINDS, SnapshotKind, SnapshotSource, SnapshotTarget } from './store-snapshot';

/** COPY_BATCH: rows written per MULTI (one round trip to Redis each). */
const COPY_BATCH = 500;

/** CopyProgress is reported after each batch: the kind being copied and how many of its rows are written. */
export interface CopyProgress {
  kind: SnapshotKind;
  copied: number;
}

/** Census: what a store shows through the Store interface; a copy is verified by equal censuses. */
export interface Census {
  devices: number;
  secrets: number;
  certificates: number;
  revokedCertificates: number;
  requests: number;
  tokens: number;
  tpmAks: number;
  /** firmwareReleases: name@version:sha256 of each release */
  firmwareReleases: string[];
  /** firmwareReleaseBytes: name@version:length:SHA-256 of each release's stored bytes (read chunk by chunk) */
  firmwareReleaseBytes: string[];
  /** firmwareReceipts: name/device:sha256 of the last receipt of each device, for each released name */
  firmwareReceipts: string[];
  auditRecords: number;
  auditLastHash: string;
  crlNumbers: Record<string, string>;
  crls: Record<string, string>;
  caState: Record<string, number>;
  /** firmwareGroupKeyMembers: how many devices each firmware group key was given (by key id) */
  firmwareGroupKeyMembers: Record<string, number>;
}

export interface CopySummary {
  /** rows copied, by kind */
  rows: Record<SnapshotKind, number>;
  /** the census of the source and of the target (equal, or the copy was undone) */
  census: Census;
  /** audit: the target's audit chain, verified after the copy */
  audit: AuditVerdict;
}

/**
 * copyStore moves a CA from one store to another (`device-ca store copy`, from the single-node SQLite
 * store to the shared Redis store): every row as recorded (ids, times, audit hashes), into a target that
 * holds nothing. It then verifies the copy: the target's audit chain verifies and ends at the source's
 * last hash, and the census (counts of devices, secrets, certificates, revocations, requests, tokens, AK
 * bindings, firmware releases and the SHA-256 of their bytes, firmware group key members; CRL numbers and CA state versions) is the same on both sides. A copy that fails half-way or
 * does not verify is removed from the target, so nothing half-written is left to serve. Stop the node
 * that serves the source first: rows it writes after the snapshot began are not copied.
 */
export async function copyStore(source: Store & SnapshotSource, target: Store & SnapshotTarget, opts: { progress?: (p: CopyProgress) => void; batchSize?: number } = {}): Promise<CopySummary> {
  const held = await target.holdsData();
  if (held.length) throw new DeviceCaError('conflict', `the target store is not empty (it holds ${held.join(', ')}): a copy goes only into an empty store`);
  if (!(await source.getCaState('hierarchy'))) throw new DeviceCaError('not-found', 'the source store holds no CA: nothing to copy');

  const rows = Object.fromEntries(SNAPSHOT_KINDS.map((k) => [k, 0])) as Record<SnapshotKind, number>;
  const caStateNames: string[] = [];
  const crlKeys: { issuer: string; shard: number }[] = [];
  const issuers = new Set<string>();
  await target.beginImport();
  try {
    for await (const batch of source.exportSnapshot(opts.batchSize ?? COPY_BATCH)) {
      await target.importSnapshot(batch);
      for (const x of batch) {
        if (x.kind === 'ca-state') caStateNames.push(x.row.name);
        if (x.kind === 'crl') crlKeys.push({ issuer: x.row.issuer, shard: x.row.shard });
        if (x.kind === 'crl-number') issuers.add(x.row.issuer);
      }
      const kind = batch[0].kind;
      rows[kind] += batch.length;
      opts.progress?.({ kind, copied: rows[kind] });
    }
    await target.finishImport();
    const census = { names: caStateNames, crls: crlKeys, issuers: [...issuers] };
    const [want, got] = [await takeCensus(source, census), await takeCensus(target, census)];
    const audit = await verifyAuditChain(target);
    const differ = (Object.keys(want) as (keyof Census)[]).filter((k) => JSON.stringify(want[k]) !== JSON.stringify(got[k]));
    if (!audit.ok) throw new DeviceCaError('internal', `the copied audit chain does not verify: record ${audit.firstBad?.seq}: ${audit.firstBad?.problem}`);
    if (differ.length)
      throw new DeviceCaError('internal', `the copy differs from the source in ${differ.map((k) => `${k} (source ${JSON.stringify(want[k])}, target ${JSON.stringify(got[k])})`).join(', ')}`);
    return { rows, census: got, audit };
  } catch (e) {
    await target.abortImport();
    throw e;
  }
}

/** takeCensus reads what a node would see, through the Store interface only. */
async function takeCensus(store: Store, what: { names: string[]; crls: { issuer: string; shard: number }[]; issuers: string[] }): Promise<Census> {
  const c: Census = {
    devices: 0,
    secrets: 0,
    certificates: 0,
    revokedCertificates: 0,
    requests: 0,
    tokens: 0,
    tpmAks: 0,
    firmwareReleases: [],
    firmwareReleaseBytes: [],
    firmwareReceipts: [],
    auditRecords: 0,
    auditLastHash: '',
    crlNumbers: {},
    crls: {},
    caState: {},
    firmwareGroupKeyMembers: {},
  };
  const epoch = new Date(0);
  for await (const d of everyItem((after) => store.listDevices({ after, limit: MAX_PAGE_LIMIT }))) {
    c.devices++;
    // unused secrets (any expiry) and spent ones that bought a certificate
    c.secrets += (await store.activeSecrets(d.id, epoch)).length + (await store.spentSecrets(d.id, epoch)).length;
    if (isAttestationStore(store)) c.tpmAks += (await store.aksOfDevice(d.id)).length;
  }
  for await (const x of everyItem((after) => store.listCertificates({ after, limit: MAX_PAGE_LIMIT }))) {
    c.certificates++;
    if (x.status === 'revoked') c.revokedCertificates++;
  }
  c.requests = (await collectItems((after, limit) => store.listRequests({ after, limit }))).items.length;
  c.tokens = (await collectItems((after, limit) => store.listTokens({ after, limit }))).items.length;
  for await (const r of everyItem((after) => store.listFirmwareReleases({ after, limit: MAX_PAGE_LIMIT }))) {
    c.firmwareReleases.push(`${r.name}@${r.version}:${r.sha256}`);
    const bytes = await store.openFirmwareRelease(r.name, r.version);
    const h = crypto.createHash('sha256');
    for await (const chunk of bytes?.chunks() ?? []) h.update(chunk);
    c.firmwareReleaseBytes.push(`${r.name}@${r.version}:${bytes?.length ?? 'none'}:${h.digest('hex')}`);
  }
  for (const name of new Set(c.firmwareReleases.map((r) => r.slice(0, r.lastIndexOf('@')))))
    for await (const x of everyItem((after) => store.listFirmwareReceipts({ name, after, limit: MAX_PAGE_LIMIT }))) c.firmwareReceipts.push(`${name}/${x.deviceId}:${x.receiptSha256}`);
  const audit = await verifyAuditChain(store);
  c.auditRecords = audit.records;
  c.auditLastHash = audit.lastHash;
  for (const issuer of what.issuers) c.crlNumbers[issuer] = (await store.head(issuer)).crlNumber.toString();
  for (const { issuer, shard } of what.crls) c.crls[`${issuer}/${shard}`] = String((await store.crlInfo(issuer, shard))?.number ?? 'none');
  for (const name of what.names) c.caState[name] = (await store.getCaState(name))?.version ?? 0;
  const groupKey = firmwareGroupKeyRecord('');
  for (const keyId of what.names.filter((n) => n.startsWith(groupKey)).map((n) => n.slice(groupKey.length)))
    c.firmwareGroupKeyMembers[keyId] = (await store.firmwareGroupKeyMembership(keyId, [])).members;
  return c;
}
