import { Config } from '../config/schema';
import { DeviceCaError } from '../errors/device-ca-error';
import { SqliteStore } from './sqlite/sqlite-store';
import { Store } from './store';

/**
 * createStore is the one place that chooses a store from `store.type` (as step-ca's `switch db.Type`):
 * everything else sees only the Store interface. Each new backend (the shared Redis store) is one more case.
 */
export function createStore(cfg: Pick<Config, 'store'>): Store {
  const type: string = cfg.store.type;
  switch (type) {
    case 'sqlite':
      return new SqliteStore(cfg.store.path);
    default:
      throw new DeviceCaError('config', `store.type: unknown store ${JSON.stringify(type)}`);
  }
}
