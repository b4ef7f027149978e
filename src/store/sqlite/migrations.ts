/**
 * migrations: versioned schema changes for the SQLite store, applied in order inside a transaction.
 * Never edit a released migration; append a new one.
 */
export const MIGRATIONS: string[] = [
  `CREATE TABLE devices (
     id TEXT PRIMARY KEY,
     owner TEXT,
     label TEXT,
     state TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL
   );
   CREATE INDEX devices_owner ON devices(owner);
   CREATE TABLE secrets (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     device_id TEXT NOT NULL REFERENCES devices(id),
     hash TEXT NOT NULL,
     expires_at INTEGER NOT NULL,
     used_at INTEGER
   );
   CREATE INDEX secrets_device ON secrets(device_id);
   CREATE TABLE certificates (
     serial TEXT PRIMARY KEY,
     device_id TEXT,
     issuer TEXT NOT NULL,
     subject TEXT NOT NULL,
     profile TEXT NOT NULL,
     not_before INTEGER NOT NULL,
     not_after INTEGER NOT NULL,
     shard INTEGER NOT NULL,
     spki_sha256 TEXT NOT NULL,
     der BLOB NOT NULL,
     status TEXT NOT NULL,
     revoked_at INTEGER,
     revocation_reason TEXT,
     created_at INTEGER NOT NULL
   );
   CREATE INDEX certificates_device ON certificates(device_id);
   CREATE INDEX certificates_shard ON certificates(issuer, shard, status);
   CREATE TABLE auth_failures (
     key TEXT NOT NULL,
     at INTEGER NOT NULL
   );
   CREATE INDEX auth_failures_key ON auth_failures(key, at);
   CREATE TABLE requests (
     id TEXT PRIMARY KEY,
     device_id TEXT NOT NULL,
     label TEXT NOT NULL,
     operation TEXT NOT NULL,
     csr_sha256 TEXT NOT NULL,
     csr BLOB NOT NULL,
     status TEXT NOT NULL,
     cert_serial TEXT,
     created_at INTEGER NOT NULL,
     decided_at INTEGER,
     decided_by TEXT
   );
   CREATE INDEX requests_lookup ON requests(device_id, csr_sha256);
   CREATE INDEX requests_status ON requests(status, created_at);
   CREATE TABLE audit (
     seq INTEGER PRIMARY KEY,
     at INTEGER NOT NULL,
     type TEXT NOT NULL,
     actor TEXT NOT NULL,
     subject TEXT NOT NULL,
     data TEXT NOT NULL,
     prev_hash TEXT NOT NULL,
     hash TEXT NOT NULL
   );
   CREATE INDEX audit_subject ON audit(subject);`,
];

// 2: revocation, lifecycle, tokens, CRL series
MIGRATIONS.push(
  `ALTER TABLE certificates ADD COLUMN invalidity_date INTEGER;
   CREATE INDEX certificates_revoked ON certificates(issuer, shard, status, not_after);
   CREATE TABLE crl_shards (
     issuer TEXT NOT NULL,
     shard INTEGER NOT NULL,
     revision INTEGER NOT NULL DEFAULT 0,
     PRIMARY KEY (issuer, shard)
   );
   CREATE TABLE crl_numbers (
     issuer TEXT PRIMARY KEY,
     next_number INTEGER NOT NULL
   );
   CREATE TABLE crls (
     issuer TEXT NOT NULL,
     shard INTEGER NOT NULL,
     number INTEGER NOT NULL,
     revision INTEGER NOT NULL,
     this_update INTEGER NOT NULL,
     next_update INTEGER NOT NULL,
     entries INTEGER NOT NULL,
     der BLOB NOT NULL,
     PRIMARY KEY (issuer, shard)
   );
   CREATE TABLE tokens (
     id TEXT PRIMARY KEY,
     hash TEXT NOT NULL UNIQUE,
     scope TEXT NOT NULL,
     description TEXT,
     created_at INTEGER NOT NULL,
     revoked_at INTEGER
   );`,
);

// 3: one index serves CRL paging (revokedInShard walks it in serial order); the two it replaces cost
// every issuance an extra index write
MIGRATIONS.push(
  `DROP INDEX certificates_shard;
   DROP INDEX certificates_revoked;
   CREATE INDEX certificates_crl ON certificates(issuer, shard, status, serial);`,
);

// 4: protocol-neutral operation names in the approval queue; a spent secret remembers the certificate it
// bought, so a device that lost the reply can fetch the same certificate again (enrollment.retryWindow)
MIGRATIONS.push(
  `UPDATE requests SET operation = CASE operation
     WHEN 'simpleenroll' THEN 'enroll'
     WHEN 'simplereenroll' THEN 'renew'
     WHEN 'serverkeygen' THEN 'server-keygen'
     ELSE operation END;
   ALTER TABLE secrets ADD COLUMN cert_serial TEXT;
   CREATE INDEX secrets_spent ON secrets(device_id, used_at);`,
);

// 5: two-sided ownership transfer: the new owner a `transferring` device was released to
MIGRATIONS.push(`ALTER TABLE devices ADD COLUMN pending_owner TEXT;`);

// 6: CA state (certificates, key refs, service certificates) and leases for the periodic duties, so
// the workers and nodes sharing a store share one CA and elect one publisher
MIGRATIONS.push(
  `CREATE TABLE ca_state (
     name TEXT PRIMARY KEY,
     value TEXT NOT NULL,
     version INTEGER NOT NULL,
     updated_at INTEGER NOT NULL
   );
   CREATE TABLE leases (
     name TEXT PRIMARY KEY,
     holder TEXT NOT NULL,
     fence INTEGER NOT NULL,
     expires_at INTEGER NOT NULL
   );`,
);

// 7: authentication attempts are reserved before the credential is checked (so parallel guesses cannot
// overtake the limit) and the table is bounded: an id that is never reused names an attempt to forgive,
// and attempts on names that are not devices are evictable, oldest first (id order), beyond a cap.
// Failures stored by the previous release are kept, as evictable.
MIGRATIONS.push(
  `CREATE TABLE auth_attempts (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     key TEXT NOT NULL,
     at INTEGER NOT NULL,
     evictable INTEGER NOT NULL
   );
   INSERT INTO auth_attempts (key, at, evictable) SELECT key, at, 1 FROM auth_failures ORDER BY at;
   DROP TABLE auth_failures;
   CREATE INDEX auth_attempts_key ON auth_attempts(key, at);
   CREATE INDEX auth_attempts_evictable ON auth_attempts(evictable, id);`,
);

// 8: one row the health probe (/healthz) rewrites, so a store that cannot write shows as unhealthy
MIGRATIONS.push(
  `CREATE TABLE store_probe (
     id INTEGER PRIMARY KEY,
     at INTEGER NOT NULL
   );`,
);

// 9: TPM attestation: single-use nonces (by hash), AK bindings to a device and its EK, EKs of retired devices
MIGRATIONS.push(
  `CREATE TABLE tpm_nonces (
     device_id TEXT NOT NULL,
     nonce_sha256 TEXT NOT NULL,
     expires_at INTEGER NOT NULL,
     created_at INTEGER NOT NULL,
     PRIMARY KEY (device_id, nonce_sha256)
   );
   CREATE TABLE tpm_aks (
     ak_name TEXT PRIMARY KEY,
     device_id TEXT NOT NULL,
     ak_public BLOB NOT NULL,
     ek_cert_sha256 TEXT NOT NULL,
     ek_manufacturer TEXT,
     ek_model TEXT,
     status TEXT NOT NULL,
     challenge_sha256 TEXT,
     challenge_expires_at INTEGER NOT NULL,
     created_at INTEGER NOT NULL,
     activated_at INTEGER
   );
   CREATE INDEX tpm_aks_device ON tpm_aks(device_id, created_at);
   CREATE TABLE tpm_blocked_eks (
     ek_cert_sha256 TEXT PRIMARY KEY,
     device_id TEXT NOT NULL,
     blocked_at INTEGER NOT NULL
   );`,
);

// 10: SCEP transactions (RFC 8894 §3.2.1.1): the request a transactionID was first used for, and its final answer
MIGRATIONS.push(
  `CREATE TABLE scep_transactions (
     key TEXT PRIMARY KEY,
     request_sha256 TEXT NOT NULL,
     outcome TEXT,
     expires_at INTEGER NOT NULL
   );
   CREATE INDEX scep_transactions_expiry ON scep_transactions(expires_at);`,
);

// 11: operator console sessions (issue 14), by the SHA-256 of the session id; expired rows go on the next sign-in
MIGRATIONS.push(
  `CREATE TABLE console_sessions (
     id_hash TEXT PRIMARY KEY,
     token_hash TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     idle_expires_at INTEGER NOT NULL,
     expires_at INTEGER NOT NULL
   );
   CREATE INDEX console_sessions_idle ON console_sessions(idle_expires_at);`,
);

// 12: the CRL index holds only revoked certificates and covers what a CRL entry needs, so an issuance
// writes one index fewer (most certificates are never revoked) and re-issuing a shard reads its
// entries from the index alone, without a lookup into the certificates table per entry: both stay
// flat as the table grows (bench/scale)
MIGRATIONS.push(
  `DROP INDEX certificates_crl;
   CREATE INDEX certificates_crl_revoked ON certificates(issuer, shard, serial, not_after, revoked_at, revocation_reason, invalidity_date)
     WHERE status = 'revoked';`,
);

// 13: firmware releases (issue 13), one row per name and version instead of one growing ca_state record;
// sort_key (firmwareReleaseKey) orders names, then each name's newest version first, and is the page cursor
MIGRATIONS.push(
  `CREATE TABLE firmware_releases (
     sort_key TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     version INTEGER NOT NULL,
     sha256 TEXT NOT NULL,
     signers TEXT NOT NULL,
     recipients TEXT,
     released_at INTEGER NOT NULL,
     der BLOB NOT NULL,
     UNIQUE (name, version)
   );`,
);

// 14: device counts by owner and state (issue 14, the console's overview at fleet scale), kept by triggers
// in the transaction of every device write, so counting does not walk the devices. owner_key is '-' for
// no owner and '+' followed by the owner (NULLs would not meet in a primary key). Filled from the devices there are.
MIGRATIONS.push(
  `CREATE TABLE device_counts (
     owner_key TEXT NOT NULL,
     state TEXT NOT NULL,
     n INTEGER NOT NULL,
     PRIMARY KEY (owner_key, state)
   ) WITHOUT ROWID;
   INSERT INTO device_counts (owner_key, state, n)
     SELECT CASE WHEN owner IS NULL THEN '-' ELSE '+' || owner END, state, COUNT(*) FROM devices GROUP BY 1, 2;
   CREATE TRIGGER device_counts_insert AFTER INSERT ON devices BEGIN
     INSERT INTO device_counts (owner_key, state, n) VALUES (CASE WHEN NEW.owner IS NULL THEN '-' ELSE '+' || NEW.owner END, NEW.state, 1)
       ON CONFLICT (owner_key, state) DO UPDATE SET n = n + 1;
   END;
   CREATE TRIGGER device_counts_delete AFTER DELETE ON devices BEGIN
     UPDATE device_counts SET n = n - 1 WHERE owner_key = CASE WHEN OLD.owner IS NULL THEN '-' ELSE '+' || OLD.owner END AND state = OLD.state;
   END;
   CREATE TRIGGER device_counts_update AFTER UPDATE OF owner, state ON devices
     WHEN OLD.owner IS NOT NEW.owner OR OLD.state IS NOT NEW.state BEGIN
     UPDATE device_counts SET n = n - 1 WHERE owner_key = CASE WHEN OLD.owner IS NULL THEN '-' ELSE '+' || OLD.owner END AND state = OLD.state;
     INSERT INTO device_counts (owner_key, state, n) VALUES (CASE WHEN NEW.owner IS NULL THEN '-' ELSE '+' || NEW.owner END, NEW.state, 1)
       ON CONFLICT (owner_key, state) DO UPDATE SET n = n + 1;
   END;`,
);

// 15: a SCEP transaction held for manual approval keeps what its CertPoll needs (RFC 8894 §3.3.3): JSON ScepPending
MIGRATIONS.push(`ALTER TABLE scep_transactions ADD COLUMN pending TEXT;`);

// 16: devices by label (issue 14, the console's device search): the (label, id) index answers a label
// search in id order from the index, without walking the devices
MIGRATIONS.push(`CREATE INDEX devices_label ON devices(label, id);`);

// 17: the clockInfo of the newest accepted TPM statement per AK binding (issue 9: clock, resetCount and
// restartCount must not go backwards); clock as decimal text (a UINT64)
MIGRATIONS.push(
  `ALTER TABLE tpm_aks ADD COLUMN last_clock TEXT;
   ALTER TABLE tpm_aks ADD COLUMN last_reset_count INTEGER;
   ALTER TABLE tpm_aks ADD COLUMN last_restart_count INTEGER;`,
);

// 18: the AK certificate of a binding and the claim of whoever issues it (issue 9: two activations at once
// issued two AK certificates); cert_claim_until in ms, NULL when nobody holds the claim
MIGRATIONS.push(
  `ALTER TABLE tpm_aks ADD COLUMN cert_serial TEXT;
   ALTER TABLE tpm_aks ADD COLUMN cert_claim_until INTEGER;`,
);

// 19: firmware receipts (issue 13, RFC 4108 §3/§4): per firmware name and device, the version it reported
// loading and its last load error above that version (`firmware status`); the receipt's SHA-256 makes a
// repeated post recognisable. Keyed by name first: a status reads one name's devices in order.
MIGRATIONS.push(
  `CREATE TABLE firmware_receipts (
     name TEXT NOT NULL,
     device_id TEXT NOT NULL,
     hw_type TEXT NOT NULL,
     running_version INTEGER,
     running_at INTEGER,
     error_version INTEGER,
     error_code INTEGER,
     error_vendor_code INTEGER,
     error_at INTEGER,
     receipt_sha256 TEXT NOT NULL,
     updated_at INTEGER NOT NULL,
     PRIMARY KEY (name, device_id)
   ) WITHOUT ROWID;`,
);

// 20: the console's overview charts (issue 14). cert_issued_hours counts device certificates by the UTC
// hour the store recorded them (created_at / 3600000); cert_expiry_days counts valid device certificates
// by the UTC day of not_after. Triggers keep both in the transaction of every insert and status change
// (so no write path can forget them), and both are filled here from the certificates there are.
// certificates_valid_expiry indexes valid device certificates by not_after for the first day of the
// expiry chart, which counts from "now" on, inside a day
MIGRATIONS.push(
  `CREATE TABLE cert_issued_hours (
     hour INTEGER PRIMARY KEY,
     n INTEGER NOT NULL
   );
   INSERT INTO cert_issued_hours (hour, n)
     SELECT created_at / 3600000, COUNT(*) FROM certificates WHERE device_id IS NOT NULL GROUP BY 1;
   CREATE TRIGGER cert_issued_hours_insert AFTER INSERT ON certificates WHEN NEW.device_id IS NOT NULL BEGIN
     INSERT INTO cert_issued_hours (hour, n) VALUES (NEW.created_at / 3600000, 1)
       ON CONFLICT (hour) DO UPDATE SET n = n + 1;
   END;
   CREATE TABLE cert_expiry_days (
     day INTEGER PRIMARY KEY,
     n INTEGER NOT NULL
   );
   INSERT INTO cert_expiry_days (day, n)
     SELECT not_after / 86400000, COUNT(*) FROM certificates WHERE device_id IS NOT NULL AND status = 'valid' GROUP BY 1;
   CREATE TRIGGER cert_expiry_days_insert AFTER INSERT ON certificates WHEN NEW.device_id IS NOT NULL AND NEW.status = 'valid' BEGIN
     INSERT INTO cert_expiry_days (day, n) VALUES (NEW.not_after / 86400000, 1)
       ON CONFLICT (day) DO UPDATE SET n = n + 1;
   END;
   CREATE TRIGGER cert_expiry_days_status AFTER UPDATE OF status ON certificates
     WHEN NEW.device_id IS NOT NULL AND (OLD.status = 'valid') <> (NEW.status = 'valid') BEGIN
     UPDATE cert_expiry_days SET n = n - 1 WHERE OLD.status = 'valid' AND day = OLD.not_after / 86400000;
     INSERT INTO cert_expiry_days (day, n) SELECT NEW.not_after / 86400000, 1 WHERE NEW.status = 'valid'
       ON CONFLICT (day) DO UPDATE SET n = n + 1;
   END;
   CREATE TRIGGER cert_expiry_days_delete AFTER DELETE ON certificates WHEN OLD.device_id IS NOT NULL AND OLD.status = 'valid' BEGIN
     UPDATE cert_expiry_days SET n = n - 1 WHERE day = OLD.not_after / 86400000;
   END;
   CREATE INDEX certificates_valid_expiry ON certificates(not_after) WHERE status = 'valid' AND device_id IS NOT NULL;`,
);

// 21: devices by owner and by state in id order (issue 14, the console's device search at 1,000,000
// devices): (owner, id) replaces (owner), with which SQLite sorted all of an owner's devices for every
// page; (state, id) answers a state search without reading every device
MIGRATIONS.push(`CREATE INDEX devices_owner_id ON devices(owner, id); DROP INDEX devices_owner; CREATE INDEX devices_state_id ON devices(state, id);`);

// 22: a firmware release's RFC 4108 target hardware (issue 13: `latest` skips a release for other
// hardware): JSON [{type, serial?}]; NULL for the releases recorded before, which are for any hardware.
// firmware_receipts_device finds a device's newest receipt of any name (firmwareHardwareOf) from the index
MIGRATIONS.push(
  `ALTER TABLE firmware_releases ADD COLUMN hardware TEXT;
   CREATE INDEX firmware_receipts_device ON firmware_receipts(device_id, updated_at, name);`,
);

// 23: firmware status summary (issue 13): devices per running version and per load error code of one
// firmware name, counted on these indexes (covering: SQLite reads index entries, not the receipt rows)
MIGRATIONS.push(
  `CREATE INDEX firmware_receipts_running ON firmware_receipts(name, running_version);
   CREATE INDEX firmware_receipts_error ON firmware_receipts(name, error_code);`,
);

// 24: firmware group key members, one row per (key id, device id) (issue 13, docs/firmware.md "Group
// key"): a key fetch is one primary-key lookup, a release adds only the newcomers. The members that the
// previous version kept inside each `firmware-group-key:<id>` CA state record (`members`, a JSON array)
// move here, and the records lose the array (their version moves on, as any write of them would)
MIGRATIONS.push(
  `CREATE TABLE firmware_group_key_members (
     key_id TEXT NOT NULL,
     device_id TEXT NOT NULL,
     PRIMARY KEY (key_id, device_id)
   ) WITHOUT ROWID;
   INSERT OR IGNORE INTO firmware_group_key_members (key_id, device_id)
     SELECT substr(s.name, length('firmware-group-key:') + 1), m.value
     FROM ca_state s, json_each(s.value, '$.members') m
     WHERE substr(s.name, 1, length('firmware-group-key:')) = 'firmware-group-key:' AND json_type(s.value, '$.members') = 'array';
   UPDATE ca_state SET value = json_remove(value, '$.members'), version = version + 1
     WHERE substr(name, 1, length('firmware-group-key:')) = 'firmware-group-key:' AND json_type(value, '$.members') = 'array';`,
);

// 25: firmware release bytes in chunks (issue 13: a 64 MiB release is neither held in memory whole nor
// written in one transaction). A save writes its chunks under a pending set id first, each chunk in a
// short transaction of its own (firmware_release_pending names the writing process: pid and host, so a
// set whose writer is gone is recognisable); the final transaction deletes the pending row and points the
// release at the set (chunk_set, length, chunk_count). A release row of an earlier version keeps its
// bytes in `der` (chunk_set NULL); a chunked one has an empty `der` (the column is NOT NULL)
MIGRATIONS.push(
  `CREATE TABLE firmware_release_chunks (
     set_id TEXT NOT NULL,
     seq INTEGER NOT NULL,
     bytes BLOB NOT NULL,
     PRIMARY KEY (set_id, seq)
   );
   CREATE TABLE firmware_release_pending (
     set_id TEXT PRIMARY KEY,
     pid INTEGER NOT NULL,
     host TEXT NOT NULL,
     started_at INTEGER NOT NULL
   );
   ALTER TABLE firmware_releases ADD COLUMN chunk_set TEXT;
   ALTER TABLE firmware_releases ADD COLUMN length INTEGER;
   ALTER TABLE firmware_releases ADD COLUMN chunk_count INTEGER;`,
);

// 26: the status generation (issue 12, OCSP flat at 1,000,000 certificates): one counter that every
// change of a stored certificate's status fields (update of status, revocation time or reason, issuer,
// notAfter; a delete) moves in the same transaction, by trigger, so no write path can skip it.
// SqliteStore.statusVersion reads it only when the wal-index header moved: a commit that changed no
// status (an issuance, a lease renewal, a CRL, an audit record) no longer makes every OCSP worker read
// its kept statuses again from the certificates table.
MIGRATIONS.push(
  `CREATE TABLE status_generation (id INTEGER PRIMARY KEY CHECK (id = 1), gen INTEGER NOT NULL);
   INSERT INTO status_generation (id, gen) VALUES (1, 0);
   CREATE TRIGGER status_generation_update AFTER UPDATE OF status, revoked_at, revocation_reason, issuer, not_after ON certificates BEGIN
     UPDATE status_generation SET gen = gen + 1 WHERE id = 1;
   END;
   CREATE TRIGGER status_generation_delete AFTER DELETE ON certificates BEGIN
     UPDATE status_generation SET gen = gen + 1 WHERE id = 1;
   END;`,
);

// 27: the status generation (migration 26) becomes a random value instead of a count. A backup restored into
// the live file (sqlite3's .restore, the backup API) brings back an earlier count, and as many status
// changes after it as the live file had counted since the backup gave the very value a process last read:
// its kept OCSP statuses (a "good" among them) outlived a revocation. A fresh random value per change (a
// safe integer, compared as a JS number) cannot land on a value read before but by chance (2^-53).
MIGRATIONS.push(
  `DROP TRIGGER status_generation_update;
   DROP TRIGGER status_generation_delete;
   CREATE TRIGGER status_generation_update AFTER UPDATE OF status, revoked_at, revocation_reason, issuer, not_after ON certificates BEGIN
     UPDATE status_generation SET gen = random() % 9007199254740992 WHERE id = 1;
   END;
   CREATE TRIGGER status_generation_delete AFTER DELETE ON certificates BEGIN
     UPDATE status_generation SET gen = random() % 9007199254740992 WHERE id = 1;
   END;
   UPDATE status_generation SET gen = random() % 9007199254740992 WHERE id = 1;`,
);

// 28: the pending chunk sets (migration 25) name the writer's process table too: its pid namespace
// (readlink /proc/self/ns/pid, e.g. "pid:[4026531836]") and the kernel's boot id
// (/proc/sys/kernel/random/boot_id). A writer in another pid namespace under the same host name
// (containers with --network host, pods sharing the volume) no longer looks gone because its pid does
// not run here. NULL where the writer could not tell them (not Linux), and in the rows of earlier
// versions, which are judged as before (host and pid).
MIGRATIONS.push(
  `ALTER TABLE firmware_release_pending ADD COLUMN pid_ns TEXT;
   ALTER TABLE firmware_release_pending ADD COLUMN boot_id TEXT;`,
);
