import * as fs from 'node:fs';
import { HIERARCHY_RECORD } from '../../../src/ca/ca-hierarchy';
import { needsRootKey } from '../../../src/cli/needs-root-key';
import { loadConfig } from '../../../src/config/load-config';
import { createStore } from '../../../src/store/create-store';
import { hasRedisServer, startRedisServer } from '../../helpers/redis-server';
import { makeTmpDir } from '../../helpers/tmp';

/** `serve` opens the root key's token only when this start may make the CA (src/cli/needs-root-key.ts). */
describe('needsRootKey', () => {
  const tmp = makeTmpDir('device-ca-root-key-');
  afterAll(() => tmp.cleanup());

  it('SQLite: only while the store file does not exist', async () => {
    const cfg = loadConfig({ env: { DEVICE_CA_DATA: tmp.file('sqlite') } });
    expect(await needsRootKey(cfg)).toBe(true);
    fs.mkdirSync(tmp.file('sqlite'), { recursive: true });
    fs.writeFileSync(cfg.store.path, '');
    expect(await needsRootKey(cfg)).toBe(false);
  });

  it('Redis: only while the shared store holds no CA, whatever the SQLite path', async () => {
    if (!hasRedisServer()) throw new Error('redis-server is not installed: run scripts/install-test-deps.sh (Debian package redis-server)');
    const redis = await startRedisServer();
    try {
      const cfg = loadConfig({ env: { DEVICE_CA_DATA: tmp.file('redis'), DEVICE_CA_STORE: redis.url } });
      expect(fs.existsSync(cfg.store.path)).toBe(false);
      expect(await needsRootKey(cfg)).toBe(true);
      const store = createStore(cfg);
      try {
        await store.saveCaState(HIERARCHY_RECORD, { root: {}, issuing: {} }, 0);
      } finally {
        await store.close();
      }
      // a node joining the CA another node made: its root token may stay offline
      expect(await needsRootKey(cfg)).toBe(false);
    } finally {
      await redis.stop();
    }
  });
});
