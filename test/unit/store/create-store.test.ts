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

describe('store.redis: Sentinel or Cluster', () => {
  const load = (yaml: string) => {
    const dir = makeTmpDir('device-ca-create-store-');
    try {
      const file = dir.write('config.yaml', yaml);
      return loadConfig({ file, env: { DEVICE_CA_DATA: dir.path } });
    } finally {
      dir.cleanup();
    }
  };
  it('a cluster needs no url; a sentinel names the master and its Sentinels', () => {
    expect(load('store:\n  type: redis\n  redis:\n    cluster:\n      nodes: [127.0.0.1:7000, "[::1]:7001"]\n').store.redis.cluster).toEqual({ nodes: ['127.0.0.1:7000', '[::1]:7001'] });
    expect(load('store:\n  type: redis\n  url: redis://:pw@x:1/2\n  redis:\n    sentinel: { name: mymaster, sentinels: [s1:26379] }\n').store.redis.sentinel).toEqual({
      name: 'mymaster',
      sentinels: ['s1:26379'],
    });
  });
  it.each([
    [
      'both sentinel and cluster',
      'store:\n  type: redis\n  url: redis://x:1/0\n  redis:\n    sentinel: { name: m, sentinels: [s:1] }\n    cluster: { nodes: [a:1] }\n',
      /sentinel or cluster, not both/,
    ],
    ['no url and no cluster', 'store:\n  type: redis\n  redis:\n    sentinel: { name: m, sentinels: [s:1] }\n', /needs store.url/],
    ['a node that is not host:port', 'store:\n  type: redis\n  redis:\n    cluster: { nodes: ["redis://a:1"] }\n', /not host:port/],
    ['an empty node list', 'store:\n  type: redis\n  redis:\n    cluster: { nodes: [] }\n', /nodes/],
    ['an unknown key', 'store:\n  type: redis\n  url: redis://x:1/0\n  redis:\n    replicas: 2\n', /replicas/],
  ])('%s: a config error', (_what, yaml, message) => {
    expect(() => load(yaml)).toThrow(message);
  });
});
