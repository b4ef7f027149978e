import * as fs from 'node:fs';
import { Config } from '../config/schema';
import { caExists } from '../ca/ca-hierarchy';
import { createStore } from '../store/create-store';

/**
 * needsRootKey: whether `device-ca serve` may make the CA on this start, and so must open the root key's
 * token (keys.roles.root) before anything is written. SQLite: the store file does not exist yet (a first
 * start). Redis: the shared store holds no CA; opening a Redis store writes nothing, so it can be asked
 * first. Looking at store.path for Redis (an SQLite file no Redis node ever has) made every node open the
 * root token on every start, so a node joining a CA another node made failed while the root token stayed
 * offline, as it should.
 */
export async function needsRootKey(cfg: Config): Promise<boolean> {
  if (cfg.store.type !== 'redis') return !fs.existsSync(cfg.store.path);
  const store = createStore(cfg);
  try {
    return !(await caExists(cfg, store));
  } finally {
    await store.close();
  }
}
