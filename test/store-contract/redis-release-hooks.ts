import { Cluster, Redis } from 'ioredis';
import { FirmwareReleaseInfo, firmwareReleaseKey } from '../../src/store/store';
import { StoreUnderTest } from './store-contract';

/**
 * redisReleaseHooks: the contract's firmware release hooks for a Redis store under `prefix`, speaking to
 * the server(s) directly: a release written the way device-ca did before chunks (fw-rel-der), and the
 * count of chunk keys no release row names.
 */
export function redisReleaseHooks(admin: Redis | Cluster, prefix = '{dca}'): Pick<StoreUnderTest, 'writeOldRelease' | 'strayReleaseChunks'> {
  const scan = async (match: string): Promise<string[]> => {
    const found: string[] = [];
    for (const server of admin instanceof Cluster ? admin.nodes('master') : [admin]) {
      let cursor = '0';
      do {
        const [next, keys] = await server.scan(cursor, 'MATCH', match, 'COUNT', 1000);
        cursor = next;
        found.push(...keys);
      } while (cursor !== '0');
    }
    return found;
  };
  return {
    writeOldRelease: async (r: FirmwareReleaseInfo, der: Buffer) => {
      const key = firmwareReleaseKey(r.name, r.version);
      await admin.set(`${prefix}:fw-rel:${key}`, JSON.stringify({ ...r, releasedAt: r.releasedAt.getTime() }));
      await admin.set(`${prefix}:fw-rel-der:${key}`, der);
      await admin.zadd(`${prefix}:fw-rels`, 0, key);
    },
    strayReleaseChunks: async () => {
      const named = new Set<string>();
      for (const k of await scan(`${prefix}:fw-rel:*`)) {
        const row = JSON.parse((await admin.get(k)) ?? '{}') as { chunkSet?: string };
        if (row.chunkSet) named.add(row.chunkSet);
      }
      const chunks = await scan(`${prefix}:fw-rel-chunk:*`);
      return chunks.filter((k) => !named.has(k.slice(`${prefix}:fw-rel-chunk:`.length).split(':')[0])).length;
    },
  };
}
