/**
 * AUDITED_WRITE_LUA commits a batch of audited writes in one script call, so a batch never waits for a
 * WATCH round trip and is never half applied. Node computes everything (the audit hashes are SHA-256,
 * which Redis' Lua lacks) from values it read earlier; the script only checks that those values are
 * still what Node read, then writes:
 *   KEYS: every key the batch checks or writes (all under one hash tag: one Cluster slot); KEYS[1] is
 *         the audit chain's head.
 *   ARGV[1]: the head Node chained the batch's records to ('' for an empty chain); ARGV[2]: the new head;
 *   ARGV[3]: the number of checks, then per check: key index, '=' and the value read, or '!' and '' for
 *            a key that must not exist;
 *   then per write: command, key index, argument count, arguments.
 * Replies: {'ok'}; {'stale', key} when a checked key changed (Node reads again); {'head', head} when only
 * the head moved (another node appended first: Node chains the same batch to that head and sends it
 * again, without reading anything). The checks come first, so 'head' means every check held.
 */
export const AUDITED_WRITE_LUA = `
local a = ARGV
local i = 4
for c = 1, tonumber(a[3]) do
  local key = KEYS[tonumber(a[i])]
  if a[i + 1] == '!' then
    if redis.call('EXISTS', key) == 1 then return {'stale', key} end
  elseif redis.call('GET', key) ~= a[i + 2] then
    return {'stale', key}
  end
  i = i + 3
end
local head = redis.call('GET', KEYS[1])
if (head or '') ~= a[1] then return {'head', head or ''} end
local allowed = {SET = true, ZADD = true, ZREM = true, HSET = true, HINCRBY = true, ZINCRBY = true}
while i <= #a do
  local op, key, n = a[i], KEYS[tonumber(a[i + 1])], tonumber(a[i + 2])
  if not allowed[op] then return redis.error_reply('audited write: command ' .. op .. ' not allowed') end
  redis.call(op, key, unpack(a, i + 3, i + 2 + n))
  i = i + 3 + n
end
redis.call('SET', KEYS[1], a[2])
return {'ok'}
`;

/** AuditedWrites: the writes a store method queues (the subset of a MULTI's commands the script runs). */
export interface AuditedWrites {
  set(key: string, value: string | Buffer): unknown;
  zadd(key: string, score: number, member: string): unknown;
  zrem(key: string, member: string): unknown;
  hset(key: string, field: string, value: string): unknown;
  hincrby(key: string, field: string, by: number): unknown;
  zincrby(key: string, by: number, member: string): unknown;
}

/**
 * AuditedWriteBatch collects one batch's checks and writes and encodes them as the script's KEYS and
 * ARGV (see AUDITED_WRITE_LUA).
 */
export class AuditedWriteBatch implements AuditedWrites {
  private readonly keys: string[];
  private readonly index = new Map<string, number>();
  private readonly checks: (string | Buffer)[] = [];
  private checkCount = 0;
  private readonly writes: (string | Buffer)[] = [];
  private readonly sets = new Map<string, string | Buffer>();

  constructor(headKey: string) {
    this.keys = [headKey];
    this.index.set(headKey, 1);
  }

  private keyIndex(key: string): string {
    let i = this.index.get(key);
    if (i === undefined) {
      this.keys.push(key);
      i = this.keys.length;
      this.index.set(key, i);
    }
    return String(i);
  }

  /** expect: the batch commits only if `key` still holds `value` (null: does not exist). */
  expect(key: string, value: string | null): void {
    this.checks.push(this.keyIndex(key), value === null ? '!' : '=', value ?? '');
    this.checkCount++;
  }

  private write(op: string, key: string, args: (string | Buffer)[]): void {
    this.writes.push(op, this.keyIndex(key), String(args.length), ...args);
  }

  set(key: string, value: string | Buffer): void {
    this.write('SET', key, [value]);
    this.sets.set(key, value);
  }

  /** lastSet: the value the batch sets `key` to so far (undefined: not set by it) */
  lastSet(key: string): string | Buffer | undefined {
    return this.sets.get(key);
  }
  zadd(key: string, score: number, member: string): void {
    this.write('ZADD', key, [String(score), member]);
  }
  zrem(key: string, member: string): void {
    this.write('ZREM', key, [member]);
  }
  hset(key: string, field: string, value: string): void {
    this.write('HSET', key, [field, value]);
  }
  hincrby(key: string, field: string, by: number): void {
    this.write('HINCRBY', key, [field, String(by)]);
  }
  zincrby(key: string, by: number, member: string): void {
    this.write('ZINCRBY', key, [String(by), member]);
  }

  /** args: numkeys, KEYS, then ARGV, for a batch chained to `head` that leaves `newHead`. */
  args(head: string, newHead: string): (string | number | Buffer)[] {
    return [this.keys.length, ...this.keys, head, newHead, String(this.checkCount), ...this.checks, ...this.writes];
  }
}
