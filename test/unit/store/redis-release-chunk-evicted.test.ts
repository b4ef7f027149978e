import { Redis } from 'ioredis';
import * as crypto from 'node:crypto';
import { bufferSource } from '../../../src/cms/byte-source';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { RedisStore } from '../../../src/store/redis/redis-store';
import { readReleaseBytes } from '../../../src/store/release-chunks';
import { RELEASE_CHUNK_BYTES } from '../../../src/store/store';
import { RedisServer, hasRedisServer, startRedisServer } from '../../helpers/redis-server';

/**
 * Redis release chunks (issue 13, review): a save's chunks carry a time to live until its final
 * transaction PERSISTs them, so until then Redis may drop one (it expires, or maxmemory evicts it:
 * volatile-* policies pick keys with a time to live first). One dropped after the save's last check and
 * before EXEC must not leave a release row naming a missing chunk (a release no device can ever
 * download): the save is refused, nothing is recorded, the earlier release stays whole.
 */
let server: RedisServer;
beforeAll(async () => {
  if (!hasRedisServer()) throw new Error('redis-server is not installed: run scripts/install-test-deps.sh (Debian package redis-server)');
  server = await startRedisServer({ persistence: 'none' });
});
afterAll(async () => {
  await server?.stop();
});

const info = (version: number) => ({ name: 'fw', version, sha256: '00'.repeat(32), signers: [], recipients: null, releasedAt: new Date(1000) });
const audit = (version: number) => ({ type: 'firmware.released', actor: 'test', subject: 'firmware:fw', data: { version } });

it('a pending chunk dropped just before the final transaction: the save is refused and records nothing', async () => {
  const admin = new Redis(server.url);
  const store = new RedisStore({ url: server.url });
  try {
    const first = crypto.randomBytes(RELEASE_CHUNK_BYTES + 10);
    await store.saveFirmwareRelease(info(1), bufferSource(first), audit(1));
    // the final transaction's first read on the writer connection: drop one pending chunk (those with a time to live) then
    const w = (store as unknown as { w: { zrangebylex: (...a: unknown[]) => Promise<string[]> } }).w;
    const zrangebylex = w.zrangebylex.bind(w);
    let dropped = '';
    w.zrangebylex = async (...a: unknown[]) => {
      if (!dropped) {
        for (const k of await admin.keys('{dca}:fw-rel-chunk:*'))
          if (!dropped && (await admin.pttl(k)) > 0) {
            dropped = k;
            await admin.del(k);
          }
      }
      return zrangebylex(...a);
    };
    let refused: unknown = null;
    await store.saveFirmwareRelease(info(1), bufferSource(crypto.randomBytes(RELEASE_CHUNK_BYTES + 20)), audit(1)).catch((e: unknown) => (refused = e));
    expect(dropped).not.toBe('');
    expect(refused).toBeInstanceOf(DeviceCaError);
    expect((refused as DeviceCaError).code).toBe('store-unavailable');
    const kept = await store.openFirmwareRelease('fw', 1);
    expect(kept?.length).toBe(first.length);
    expect((await readReleaseBytes(kept!)).equals(first)).toBe(true);
    expect((await store.listAudit({ subject: 'firmware:fw' })).items).toHaveLength(1);
    expect(await admin.keys('{dca}:fw-rel-chunk:*')).toHaveLength(2); // the first release's, nothing of the refused save
  } finally {
    await store.close();
    admin.disconnect();
  }
});
