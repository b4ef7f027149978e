import Database from 'better-sqlite3';
import * as path from 'node:path';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { firmwareReleaseKey } from '../../../src/store/store';
import { makeTmpDir } from '../../helpers/tmp';
import { describeStoreContract } from '../../store-contract/store-contract';

/** The store contract on the embedded SQLite store: a fresh file per test; `another` is a second worker's connection. */
describeStoreContract(
  'sqlite',
  async () => {
    const dir = makeTmpDir('device-ca-store-contract-');
    const file = path.join(dir.path, 'device-ca.sqlite');
    const store = new SqliteStore(file);
    return {
      store,
      another: async () => new SqliteStore(file),
      tamperAudit: async (seq, data) => {
        const db = new Database(file);
        try {
          db.prepare('UPDATE audit SET data = ? WHERE seq = ?').run(JSON.stringify(data), seq);
        } finally {
          db.close();
        }
      },
      writeOldRelease: async (r, der) => {
        const db = new Database(file);
        try {
          db.prepare('INSERT INTO firmware_releases (sort_key, name, version, sha256, signers, recipients, hardware, released_at, der) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)').run(
            firmwareReleaseKey(r.name, r.version),
            r.name,
            r.version,
            r.sha256,
            JSON.stringify(r.signers),
            r.recipients === null ? null : JSON.stringify(r.recipients),
            r.hardware === undefined ? null : JSON.stringify(r.hardware),
            r.releasedAt.getTime(),
            der,
          );
        } finally {
          db.close();
        }
      },
      strayReleaseChunks: async () => {
        const db = new Database(file, { readonly: true });
        try {
          const row = db.prepare('SELECT COUNT(*) AS n FROM firmware_release_chunks WHERE set_id NOT IN (SELECT chunk_set FROM firmware_releases WHERE chunk_set IS NOT NULL)').get() as { n: number };
          const pending = db.prepare('SELECT COUNT(*) AS n FROM firmware_release_pending').get() as { n: number };
          return row.n + pending.n;
        } finally {
          db.close();
        }
      },
      cleanup: async () => {
        await store.close().catch(() => undefined);
        dir.cleanup();
      },
    };
  },
  { attestation: true },
);
