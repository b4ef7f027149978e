import { Redis } from 'ioredis';
import { AUDITED_WRITE_LUA, AuditedWriteBatch } from '../../../src/store/redis/audited-write-script';
import { RedisServer, hasRedisServer, startRedisServer } from '../../helpers/redis-server';

/**
 * The script behind the Redis store's batched audited writes (issuances and audit appends), against a
 * real redis-server: it writes only when every value Node read is unchanged and the audit head is the
 * one Node chained to; when only the head moved it answers the new head so Node re-chains without
 * reading again, and it writes nothing in either refusal.
 */
let server: RedisServer;
let redis: Redis;
const HEAD = '{t}:audit:head';
beforeAll(async () => {
  if (!hasRedisServer()) throw new Error('redis-server is not installed: run scripts/install-test-deps.sh (Debian package redis-server)');
  server = await startRedisServer();
  redis = new Redis(server.url);
});
afterAll(async () => {
  redis?.disconnect();
  await server?.stop();
});
beforeEach(async () => {
  await redis.flushdb();
});

const run = (b: AuditedWriteBatch, head: string, newHead: string): Promise<string[]> =>
  redis.eval(AUDITED_WRITE_LUA, ...(b.args(head, newHead) as [number, ...(string | Buffer)[]])) as Promise<string[]>;

/** issuanceLike: the shape of a recorded issuance: a device checked as read, a serial that must be new, binary DER, an audit record */
function issuanceLike(device: string | null): AuditedWriteBatch {
  const b = new AuditedWriteBatch(HEAD);
  b.expect('{t}:dev:d1', device);
  b.expect('{t}:cert:01', null);
  b.set('{t}:cert:01', '{"serial":"01"}');
  b.set('{t}:cert-der:01', Buffer.from([0x30, 0x00, 0xff, 0x80]));
  b.zadd('{t}:certs', 0, '01');
  b.hincrby('{t}:dev-counts', 'active|*', 1);
  b.zincrby('{t}:dev-owners', 1, '-');
  b.hset('{t}:audit:rec', '8', '{"seq":8}');
  return b;
}

const snapshot = async (): Promise<Record<string, unknown>> => ({
  keys: (await redis.keys('*')).sort(),
  head: await redis.get(HEAD),
  dev: await redis.get('{t}:dev:d1'),
});

it('writes everything, binary values intact, and moves the head when the checks and the head hold', async () => {
  await redis.set(HEAD, '7:aa');
  await redis.set('{t}:dev:d1', '{"state":"registered"}');
  expect(await run(issuanceLike('{"state":"registered"}'), '7:aa', '8:bb')).toEqual(['ok']);
  expect(await redis.get(HEAD)).toBe('8:bb');
  expect(await redis.getBuffer('{t}:cert-der:01')).toEqual(Buffer.from([0x30, 0x00, 0xff, 0x80]));
  expect(await redis.zrange('{t}:certs', 0, -1)).toEqual(['01']);
  expect(await redis.hgetall('{t}:dev-counts')).toEqual({ 'active|*': '1' });
  expect(await redis.zscore('{t}:dev-owners', '-')).toBe('1');
  expect(await redis.hget('{t}:audit:rec', '8')).toBe('{"seq":8}');
});

it('the first record of an empty chain: head "" means no head yet', async () => {
  const b = new AuditedWriteBatch(HEAD);
  b.hset('{t}:audit:rec', '1', '{"seq":1}');
  expect(await run(b, '', '1:aa')).toEqual(['ok']);
  expect(await redis.get(HEAD)).toBe('1:aa');
  expect(await run(b, '', '1:bb')).toEqual(['head', '1:aa']);
});

it('a checked value that changed (or a key that must not exist but does): stale, nothing written', async () => {
  await redis.set(HEAD, '7:aa');
  await redis.set('{t}:dev:d1', '{"state":"retired"}');
  const before = await snapshot();
  expect(await run(issuanceLike('{"state":"registered"}'), '7:aa', '8:bb')).toEqual(['stale', '{t}:dev:d1']);
  expect(await snapshot()).toEqual(before);

  await redis.set('{t}:dev:d1', '{"state":"registered"}');
  await redis.set('{t}:cert:01', 'taken');
  const before2 = await snapshot();
  expect(await run(issuanceLike('{"state":"registered"}'), '7:aa', '8:bb')).toEqual(['stale', '{t}:cert:01']);
  expect(await snapshot()).toEqual(before2);
});

it('only the head moved (another node appended first): answers the head, nothing written; the same batch chained to it commits', async () => {
  await redis.set(HEAD, '9:cc');
  await redis.set('{t}:dev:d1', '{"state":"registered"}');
  const before = await snapshot();
  expect(await run(issuanceLike('{"state":"registered"}'), '7:aa', '8:bb')).toEqual(['head', '9:cc']);
  expect(await snapshot()).toEqual(before);
  expect(await run(issuanceLike('{"state":"registered"}'), '9:cc', '10:dd')).toEqual(['ok']);
  expect(await redis.get(HEAD)).toBe('10:dd');
});

it('ZREM: a device leaving its state set in the batch that activates it (the search sets move with the device)', async () => {
  await redis.zadd('{t}:devs-state:registered', 0, 'd1', 0, 'd2');
  const b = new AuditedWriteBatch(HEAD);
  b.zrem('{t}:devs-state:registered', 'd1');
  b.zadd('{t}:devs-state:active', 0, 'd1');
  b.hset('{t}:audit:rec', '1', '{"seq":1}');
  expect(await run(b, '', '1:aa')).toEqual(['ok']);
  expect(await redis.zrange('{t}:devs-state:registered', 0, -1)).toEqual(['d2']);
  expect(await redis.zrange('{t}:devs-state:active', 0, -1)).toEqual(['d1']);
});

it('refuses a command outside its list (the script writes, it does not run what it is given)', async () => {
  const b = new AuditedWriteBatch(HEAD);
  (b as unknown as { write: (op: string, key: string, args: string[]) => void }).write('DEL', '{t}:x', []);
  await expect(run(b, '', '1:aa')).rejects.toThrow(/not allowed/);
});
