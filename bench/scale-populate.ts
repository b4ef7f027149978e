import Database from 'better-sqlite3';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { nextAuditRecord } from '../src/audit/audit-chain';
import { newSerial } from '../src/ca/certificate-encoder';
import { AuditInput } from '../src/store/store';

/**
 * scale-populate: the bench fixture that fills a SQLite store with a fleet (bench/scale). It writes, with
 * prepared statements in large transactions, the rows the real code writes for a device that was
 * imported, enrolled once and (one in ten) revoked: the device (state active), its spent secret
 * (pointing at the certificate it bought), the certificate row (serial from newSerial, shard chosen as
 * CertificateAuthority.sign chooses it: serial octets 12..15 mod shards), the shard's revision (one step
 * per revocation, as revokeCertificate bumps it) and the audit chain (device.create, certificate.issued,
 * certificate.revoked, chained with nextAuditRecord from the store's head, so `audit verify` holds).
 *
 * What differs from real rows: every certificate row carries the SAME DER (a real leaf of this CA, given
 * by the caller), and every secret the same hash string. Nothing on the measured paths reads either back
 * for a populated serial or device (OCSP and CRLs read status columns; issuance and re-enrollment touch
 * only the bench's own devices), so the store has the real size and shape without signing a million
 * certificates.
 */

export interface PopulateOptions {
  /** file: the store (SQLite), already initialised (CA present) and not written by anyone meanwhile */
  file: string;
  /** issuer: the issuing CA's name as the store keys it */
  issuer: string;
  shards: number;
  /** devices: how many devices, each with one certificate */
  devices: number;
  /** revokedEvery: device i's certificate is revoked when i % revokedEvery === revokedEvery - 1 */
  revokedEvery: number;
  /** onlyShard: write only certificates that fall in this shard (serials are drawn until one does) */
  onlyShard?: number;
  /** der: a real leaf certificate of this CA, stored for every row */
  der: Buffer;
  idPrefix: string;
  /** label: device i's label (default none); the devices page's label search reads it through devices(label, id) */
  label?: (i: number) => string | null;
  /** batch: rows per transaction */
  batch?: number;
  progress?: (done: number) => void;
}

export interface PopulateResult {
  devices: number;
  certificates: number;
  revoked: number;
  /** revokedPerShard[s]: revoked certificates written in shard s */
  revokedPerShard: number[];
  /** sample: some serials with their status, spread over the run (for OCSP requests) */
  sample: { serial: string; status: 'good' | 'revoked'; shard: number }[];
  seconds: number;
}

const REASONS = ['keyCompromise', 'superseded', 'cessationOfOperation', 'affiliationChanged'];
const YEAR_MS = 365 * 86_400_000;

/** populateStore: see the file comment. */
export function populateStore(o: PopulateOptions): PopulateResult {
  const t0 = process.hrtime.bigint();
  const db = new Database(o.file);
  db.pragma('journal_mode = WAL');
  // a fixture: the run is thrown away on a crash, so no fsync per transaction
  db.pragma('synchronous = OFF');
  db.pragma('cache_size = -262144');
  const insDevice = db.prepare('INSERT INTO devices (id, owner, label, state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)');
  const insSecret = db.prepare('INSERT INTO secrets (device_id, hash, expires_at, used_at, cert_serial) VALUES (?, ?, ?, ?, ?)');
  const insCert = db.prepare(
    `INSERT INTO certificates (serial, device_id, issuer, subject, profile, not_before, not_after, shard, spki_sha256, der, status, revoked_at, revocation_reason, created_at)
     VALUES (?, ?, ?, ?, 'default', ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const bumpShard = db.prepare('INSERT INTO crl_shards (issuer, shard, revision) VALUES (?, ?, ?) ON CONFLICT(issuer, shard) DO UPDATE SET revision = revision + excluded.revision');
  const insAudit = db.prepare('INSERT INTO audit (seq, at, type, actor, subject, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
  const last = db.prepare('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1').get() as { seq: number; hash: string } | undefined;
  let head = last ? { seq: Number(last.seq), hash: String(last.hash) } : null;
  const audit = (e: AuditInput, at: Date): void => {
    const r = nextAuditRecord(head, e, at);
    insAudit.run(r.seq, at.getTime(), r.type, r.actor, r.subject, JSON.stringify(r.data), r.prevHash, r.hash);
    head = r;
  };

  const hash = `scrypt$12$8$1$${crypto.randomBytes(16).toString('base64')}$${crypto.randomBytes(32).toString('base64')}`;
  const revokedPerShard = new Array<number>(o.shards).fill(0);
  const sample: PopulateResult['sample'] = [];
  const sampleEvery = Math.max(1, Math.floor(o.devices / 1024));
  const batch = o.batch ?? 20_000;
  let revoked = 0;
  const base = Date.now() - 30 * 86_400_000;

  const write = db.transaction((from: number, to: number) => {
    for (let i = from; i < to; i++) {
      const id = `${o.idPrefix}-${String(i).padStart(8, '0')}`;
      const owner = `owner-${i % 1000}`;
      const at = new Date(base + i);
      const label = o.label ? o.label(i) : null;
      insDevice.run(id, owner, label, 'active', at.getTime(), at.getTime());
      audit({ type: 'device.create', actor: 'operator:bench', subject: id, data: { owner, label } }, at);
      let s = newSerial();
      while (o.onlyShard !== undefined && s.readUInt32BE(12) % o.shards !== o.onlyShard) s = newSerial();
      const serial = s.toString('hex');
      const shard = s.readUInt32BE(12) % o.shards;
      const isRevoked = i % o.revokedEvery === o.revokedEvery - 1;
      const reason = REASONS[i % REASONS.length];
      insSecret.run(id, hash, at.getTime() + 7 * 86_400_000, at.getTime(), serial);
      insCert.run(
        serial,
        id,
        o.issuer,
        `CN=${id}`,
        at.getTime() - 60_000,
        at.getTime() + YEAR_MS,
        shard,
        crypto.createHash('sha256').update(id).digest('hex'),
        o.der,
        isRevoked ? 'revoked' : 'valid',
        isRevoked ? at.getTime() + 1000 : null,
        isRevoked ? reason : null,
        at.getTime(),
      );
      audit({ type: 'certificate.issued', actor: `device:${id}`, subject: serial, data: { deviceId: id, profile: 'default', serial, shard, issuer: o.issuer } }, at);
      if (isRevoked) {
        revoked++;
        revokedPerShard[shard]++;
        bumpShard.run(o.issuer, shard, 1);
        audit({ type: 'certificate.revoked', actor: 'operator:bench', subject: serial, data: { reason } }, new Date(at.getTime() + 1000));
      }
      if (i % sampleEvery === 0 || (isRevoked && i % sampleEvery === o.revokedEvery - 1)) sample.push({ serial, status: isRevoked ? 'revoked' : 'good', shard });
    }
  });
  try {
    for (let i = 0; i < o.devices; i += batch) {
      write(i, Math.min(o.devices, i + batch));
      o.progress?.(Math.min(o.devices, i + batch));
    }
    // no ANALYZE: a deployed store never runs it, so the planner must choose well without statistics
    db.pragma('wal_checkpoint(TRUNCATE)');
  } finally {
    db.close();
  }
  return { devices: o.devices, certificates: o.devices, revoked, revokedPerShard, sample, seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
}

/** storeBytes: the store's size on disk (database, WAL and shared-memory files). */
export function storeBytes(file: string): number {
  let n = 0;
  for (const f of [file, `${file}-wal`, `${file}-shm`]) if (fs.existsSync(f)) n += fs.statSync(f).size;
  return n;
}
