import { Config } from '../config/schema';
import { DeviceCaError } from '../errors/device-ca-error';
import { SqliteStore } from './sqlite/sqlite-store';
import { sqliteFailure, toStoreError } from './sqlite/sqlite-errors';
import { withStoreErrors } from './store-errors';
import { Store } from './store';

/**
 * createStore is the one place that chooses a store from `store.type` (as step-ca's `switch db.Type`):
 * everything else sees only the Store interface. Each new backend (the shared Redis store) is one more case.
 * The store's own failures (full disk, I/O error, corrupt file) leave it as 'store-unavailable'.
 */
export function createStore(cfg: Pick<Config, 'store'>): Store {
  const type: string = cfg.store.type;
  switch (type) {
    case 'sqlite': {
      let store: SqliteStore;
      try {
        store = new SqliteStore(cfg.store.path);
      } catch (e) {
        // at start-up: the operator reads this, so it names the file and SQLite's reason
        const f = sqliteFailure(e);
        if (f) throw new DeviceCaError('store-unavailable', `cannot open the store ${cfg.store.path}: ${f.reason} (${f.detail})`, { retryAfterSeconds: f.retryAfterSeconds, cause: e });
        throw e;
      }
      return withStoreErrors(store, toStoreError);
    }
    default:
      throw new DeviceCaError('config', `store.type: unknown store ${JSON.stringify(type)}`);
  }
}
