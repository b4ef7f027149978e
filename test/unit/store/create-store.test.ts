import * as fs from 'node:fs';
import { loadConfig } from '../../../src/config/load-config';
import { Config } from '../../../src/config/schema';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { createStore } from '../../../src/store/create-store';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { makeTmpDir } from '../../helpers/tmp';

/** createStore: store.type chooses the backend; an unknown type fails with a config error naming the key. */

it("'sqlite' (the default) opens the SQLite file under dataDir, and what it stores is there on reopen", async () => {
  const dir = makeTmpDir('device-ca-create-store-');
  try {
    const cfg = loadConfig({ env: { DEVICE_CA_DATA: dir.path } });
    expect(cfg.store.type).toBe('sqlite');
    const store = createStore(cfg);
    expect(store).toBeInstanceOf(SqliteStore);
    await store.appendAudit({ type: 'x', actor: 'test', subject: 's', data: {} });
    await store.close();
    expect(fs.existsSync(cfg.store.path)).toBe(true);
    const again = createStore(cfg);
    expect((await again.listAudit({})).items.map((r) => r.type)).toEqual(['x']);
    await again.close();
  } finally {
    dir.cleanup();
  }
});

it('an unknown store.type is a config error naming the key', () => {
  const cfg = { store: { type: 'etcd', path: '/nonexistent' } } as unknown as Pick<Config, 'store'>;
  let err: unknown;
  try {
    createStore(cfg);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(DeviceCaError);
  expect((err as DeviceCaError).code).toBe('config');
  expect((err as DeviceCaError).message).toMatch(/^store\.type/);
});
