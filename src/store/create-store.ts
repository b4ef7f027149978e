import { Config } from '../config/schema';
import { DeviceCaError } from '../errors/device-ca-error';
import { RedisStore } from './redis/redis-store';
import { toRedisStoreError } from './redis/redis-errors';
import { SqliteStore } from './sqlite/sqlite-store';
import { sqliteFailure, toStoreError } from './sqlite/sqlite-errors';
import { withStoreErrors } from './store-errors';
import { Store } from './store';

/**
 * createStore is the one place that chooses a store from `store.type` (as step-ca's `switch db.Type`):
 * everything else sees only the Store interface. Each new backend (the shared Redis store) is one more case.
 * The store's own failures (full disk, I/O error, corrupt file) leave it as 'store-unavailable'.
 */
/** StoreConfig: the store section; the Redis keys are optional, so an SQLite-only caller names type and path alone. */
type StoreConfig = { store: Pick<Config['store'], 'type' | 'path'> & Partial<Config['store']> };

export function createStore(cfg: StoreConfig): Store {
  const type: string = cfg.store.type;
  switch (type) {
    case 'sqlite': {
      let store: SqliteStore;
      try {
        // WAL checkpoints on a thread of their own unless store.checkpointThread is off; a full disk is seen
        // by the store's disk space guard, not by a write that may land in WAL space a checkpoint freed
        store = new SqliteStore(cfg.store.path, { backgroundCheckpoint: cfg.store.checkpointThread ?? true });
      } catch (e) {
        // at start-up: the operator reads this, so it names the file and SQLite's reason
        const f = sqliteFailure(e);
        if (f) throw new DeviceCaError('store-unavailable', `cannot open the store ${cfg.store.path}: ${f.reason} (${f.detail})`, { retryAfterSeconds: f.retryAfterSeconds, cause: e });
        throw e;
      }
      return withStoreErrors(store, toStoreError);
    }
    case 'redis':
      // connects in the background: a Redis that cannot be reached fails each call with 'store-unavailable'
      if (!cfg.store.url && !cfg.store.redis?.cluster) throw new DeviceCaError('config', 'store.type redis needs store.url or store.redis.cluster');
      return withStoreErrors(
        new RedisStore({ url: cfg.store.url ?? 'redis://localhost:6379/0', sentinel: cfg.store.redis?.sentinel, cluster: cfg.store.redis?.cluster, waitReplicas: cfg.store.redis?.waitReplicas }),
        toRedisStoreError,
      );
    default:
      throw new DeviceCaError('config', `store.type: unknown store ${JSON.stringify(type)}`);
  }
}

/**
 * checkStoreDurable refuses, at start-up, a store that would lose acknowledged writes on its own restart:
 * a Redis without AOF or RDB persistence, unless `store.allowNoPersistence` says the operator accepts it.
 * The SQLite store always persists.
 */
export async function checkStoreDurable(cfg: StoreConfig, store: Store): Promise<void> {
  if (cfg.store.type !== 'redis' || cfg.store.allowNoPersistence) return;
  const check = (store as Partial<Pick<RedisStore, 'checkPersistence'>>).checkPersistence;
  if (check) await check.call(store);
}
