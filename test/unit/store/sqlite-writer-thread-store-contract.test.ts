import Database from 'better-sqlite3';
import * as path from 'node:path';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { makeTmpDir } from '../../helpers/tmp';
import { describeStoreContract } from '../../store-contract/store-contract';

/**
 * The store contract on the embedded SQLite store with issuance records and audit appends written by its
 * writer thread (store.writerThread): a fresh file per test; `another` is a second worker's store.
 */
describeStoreContract(
  'sqlite (writer thread)',
  async () => {
    const dir = makeTmpDir('device-ca-store-contract-');
    const file = path.join(dir.path, 'device-ca.sqlite');
    const store = new SqliteStore(file, { writerThread: true });
    return {
      store,
      another: async () => new SqliteStore(file, { writerThread: true }),
      tamperAudit: async (seq, data) => {
        const db = new Database(file);
        try {
          db.prepare('UPDATE audit SET data = ? WHERE seq = ?').run(JSON.stringify(data), seq);
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
