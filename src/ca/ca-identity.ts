import * as fs from 'node:fs';
import * as path from 'node:path';
import { Config } from '../config/schema';
import { writeFileAtomic } from '../data-dir/atomic-file';
import { DeviceCaError } from '../errors/device-ca-error';
import { AuditStore, CaStateStore, IntegrityStore, StoreHead } from '../store/store';
import { caDir, hasLegacyState, knownIssuingKeyIds, storedIssuingCa } from './ca-hierarchy';
import { keyIdentifier } from './certificate-encoder';
import { certificateParts } from './certificate-parts';

/**
 * ca-identity: the data directory remembers which CA it belongs to and how far that CA's store had got
 * (issue 8 points 2 and 5). The CA's state lives in the store, so a store that is missing, emptied,
 * restored from an older backup or taken from another deployment would otherwise be served as if it were
 * the right one: revocations vanish (a keyCompromise certificate answers "unknown" over OCSP), CRL numbers
 * go back, tokens stop working, and an empty store would even get a brand-new CA beside the old keys.
 *
 * The record is IDENTITY_FILE in the data directory (0600, replaced atomically): the issuing CA's key id
 * and a high-water mark of the store (audit chain head, last CRL number). It is written at start, after
 * each CRL publication and at shutdown, not on every issuance: a store restored from a copy taken after
 * the last mark is not noticed (README, "The data directory").
 */

/** IDENTITY_FILE: the data directory's record of its CA and of the store's high-water mark. */
export const IDENTITY_FILE = 'ca-identity.json';

/** StoreMark: how far the store had got when it was recorded; a store behind it was rolled back. */
export interface StoreMark {
  auditSeq: number;
  auditHash: string | null;
  /** decimal: CRL numbers are up to 20 octets (RFC 5280 §5.2.3) */
  crlNumber: string;
  recordedAt: string;
}

/** DataDirIdentity is the content of IDENTITY_FILE. */
export interface DataDirIdentity {
  version: 1;
  issuing: { name: string; keyId: string };
  mark: StoreMark;
}

export type IdentityStore = CaStateStore & AuditStore & IntegrityStore;

export const identityFile = (cfg: Config): string => path.join(cfg.dataDir, IDENTITY_FILE);

/** issuingKeyId: the issuing CA's key identifier (hex), what tells one CA from another. */
function issuingKeyId(der: Buffer): string {
  return keyIdentifier(certificateParts(der).spki).toString('hex');
}

/** readIdentity reads IDENTITY_FILE; null when there is none. A damaged file is a 'config' error naming it. */
export function readIdentity(cfg: Config): DataDirIdentity | null {
  const file = identityFile(cfg);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new DeviceCaError('config', `cannot read ${file}: ${(e as Error).message}`);
  }
  let v: DataDirIdentity;
  try {
    v = JSON.parse(text) as DataDirIdentity;
  } catch {
    v = {} as DataDirIdentity;
  }
  const m = v.mark;
  if (v.version !== 1 || typeof v.issuing?.keyId !== 'string' || typeof v.issuing.name !== 'string' || !m || !Number.isInteger(m.auditSeq) || !/^\d+$/.test(String(m.crlNumber)))
    throw new DeviceCaError('config', `${file} is damaged; restore it from a backup of the data directory (it names the CA this data directory belongs to)`);
  return v;
}

/**
 * caEvidence lists what in the data directory shows that a CA was made here: the identity file, the CA
 * certificate exports in <dataDir>/ca, software CA key files in <dataDir>/keys. Empty for a fresh data
 * directory.
 */
export function caEvidence(cfg: Config): string[] {
  const found: string[] = [];
  if (fs.existsSync(identityFile(cfg))) found.push(identityFile(cfg));
  const list = (dir: string, match: (f: string) => boolean): void => {
    try {
      for (const f of fs.readdirSync(dir).sort()) if (match(f)) found.push(path.join(dir, f));
    } catch {
      // no such directory
    }
  };
  list(caDir(cfg), (f) => f.endsWith('.crt') || f === 'chain.pem');
  list(path.join(cfg.dataDir, 'keys'), (f) => f.endsWith('.key.pem'));
  return found;
}

/** rollbackProblem: why a store whose CA matches is behind the mark (rolled back or replaced), or null. */
async function rollbackProblem(store: IdentityStore, issuer: string, mark: StoreMark): Promise<{ problem: string; head: StoreHead } | null> {
  const head = await store.head(issuer);
  if (head.auditSeq < mark.auditSeq) return { head, problem: `store rolled back: audit head ${head.auditSeq} < ${mark.auditSeq} recorded at ${mark.recordedAt}` };
  if (head.crlNumber < BigInt(mark.crlNumber)) return { head, problem: `store rolled back: CRL number ${head.crlNumber} < ${mark.crlNumber} recorded at ${mark.recordedAt}` };
  if (mark.auditSeq > 0) {
    // the store went on from the marked record, not from another history of the same length
    const rec = (await store.listAudit({ after: String(mark.auditSeq - 1), limit: 1 })).items[0];
    if (!rec || rec.seq !== mark.auditSeq || rec.hash !== mark.auditHash)
      return { head, problem: `store rolled back: audit record ${mark.auditSeq} is not the one recorded at ${mark.recordedAt} (an older copy of the store that was written to since)` };
  }
  return null;
}

/**
 * verifyStoreIdentity refuses (a 'config' error, exit code 3) a store that is not the one this data
 * directory's CA was using:
 * - the store holds no CA while the data directory shows one exists (identity file, CA exports, key
 *   files): the store file was deleted, emptied or replaced. An old-layout data directory (ca/state.json)
 *   without an identity file is the exception: its CA is imported into the store on load.
 * - the store holds another CA than the identity file names (another deployment's store): always refused.
 * - the store is behind the recorded high-water mark (restored from an older backup): refused unless
 *   acceptRollback, which appends `store.rollback-accepted` to the audit log; the caller then re-records
 *   the mark (recordStoreMark with force).
 * A data directory without an identity file but with a CA in the store (made by an earlier version) passes.
 */
export async function verifyStoreIdentity(cfg: Config, store: IdentityStore, opts: { acceptRollback?: boolean } = {}): Promise<{ rollbackAccepted: string | null }> {
  const id = readIdentity(cfg);
  const issuing = await storedIssuingCa(store);
  const restore = `restore the store from a backup or fix store.path; device-ca will not start a new CA beside the old one`;
  if (!issuing) {
    if (id)
      throw new DeviceCaError(
        'config',
        `the store ${cfg.store.path} holds no CA, but the data directory ${cfg.dataDir} belongs to CA ${id.issuing.name} (issuing key id ${id.issuing.keyId}, ${identityFile(cfg)}): the store file is missing, empty or not this CA's; ${restore}`,
      );
    if (hasLegacyState(cfg)) return { rollbackAccepted: null }; // an older device-ca's data directory: imported on load
    const found = caEvidence(cfg);
    if (found.length)
      throw new DeviceCaError(
        'config',
        `the store ${cfg.store.path} holds no CA, but the data directory ${cfg.dataDir} shows one exists (${found.slice(0, 3).join(', ')}): the store file is missing, empty or not this CA's; ${restore}`,
      );
    return { rollbackAccepted: null };
  }
  if (!id) return { rollbackAccepted: null }; // made before the identity file existed: recorded on this start
  const keyId = issuingKeyId(issuing.der);
  // after a rollover the data directory may still name the issuing CA it replaced: the same CA
  if (keyId !== id.issuing.keyId && !(await knownIssuingKeyIds(store)).has(id.issuing.keyId))
    throw new DeviceCaError(
      'config',
      `the store ${cfg.store.path} holds a different CA (${issuing.name}, issuing key id ${keyId}) than the data directory ${cfg.dataDir} (${id.issuing.name}, issuing key id ${id.issuing.keyId}, ${identityFile(cfg)}): another deployment's store? Fix store.path or the data directory`,
    );
  // the mark's CRL number is that of the issuing CA it was recorded under
  const behind = await rollbackProblem(store, id.issuing.name, id.mark);
  if (!behind) return { rollbackAccepted: null };
  if (!opts.acceptRollback)
    throw new DeviceCaError(
      'config',
      `${behind.problem}; restore the newest backup of the store, or start \`device-ca serve --accept-store-rollback\` to serve this one (what was recorded after it is lost)`,
    );
  await store.appendAudit({
    type: 'store.rollback-accepted',
    actor: 'device-ca',
    subject: issuing.name,
    data: { problem: behind.problem, recorded: id.mark, head: { auditSeq: behind.head.auditSeq, auditHash: behind.head.auditHash, crlNumber: behind.head.crlNumber.toString() } },
  });
  return { rollbackAccepted: behind.problem };
}

/**
 * recordStoreMark writes IDENTITY_FILE with the store's current head. The mark never moves back (two
 * workers may record at once; the higher mark stays) unless force, after an accepted rollback. A mark is
 * read from the store before it is written, so it never claims more than the store had committed.
 */
export async function recordStoreMark(cfg: Config, store: IdentityStore, opts: { force?: boolean; now?: Date } = {}): Promise<DataDirIdentity | null> {
  const issuing = await storedIssuingCa(store);
  if (!issuing) return null;
  const keyId = issuingKeyId(issuing.der);
  const head = await store.head(issuing.name);
  const old = readIdentity(cfg);
  const rolledOver = old !== null && old.issuing.keyId !== keyId;
  if (rolledOver && !(await knownIssuingKeyIds(store)).has(old.issuing.keyId))
    throw new DeviceCaError('config', `${identityFile(cfg)} names another CA (issuing key id ${old.issuing.keyId}) than the store (${keyId}); not overwriting it`);
  // a rollover moves the record to the new issuing CA (its own CRL numbers); otherwise the mark never moves back
  if (old && !rolledOver && !opts.force && (old.mark.auditSeq > head.auditSeq || (old.mark.auditSeq === head.auditSeq && BigInt(old.mark.crlNumber) >= head.crlNumber))) return old;
  const next: DataDirIdentity = {
    version: 1,
    issuing: { name: issuing.name, keyId },
    mark: { auditSeq: head.auditSeq, auditHash: head.auditHash, crlNumber: head.crlNumber.toString(), recordedAt: (opts.now ?? new Date()).toISOString() },
  };
  writeFileAtomic(identityFile(cfg), JSON.stringify(next, null, 2) + '\n');
  return next;
}

/**
 * StoreMarkRecorder records the mark from a running service (after each CRL publication, at shutdown):
 * calls that come while one runs are folded into one more run after it, so a burst of publications
 * costs two small file writes, not one per CRL.
 */
export class StoreMarkRecorder {
  private running?: Promise<void>;
  private again = false;

  constructor(
    private readonly cfg: Config,
    private readonly store: IdentityStore,
  ) {}

  record(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await recordStoreMark(this.cfg, this.store);
        } while (this.again);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }
}
