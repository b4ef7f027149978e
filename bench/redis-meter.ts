import { Redis } from 'ioredis';

/**
 * redis-meter: what redis-server itself spent over a bench run, read from the server (INFO cpu and INFO
 * commandstats in one call): its CPU time (used_cpu_sys + used_cpu_user, every thread of the server
 * process) and the commands it executed, per command name (commands inside MULTI and those a Lua script
 * calls are counted one by one, as Redis counts them). The meter's own INFO calls are left out. With the
 * requests a run completed, these give Redis CPU and commands per request, which the shared machine does
 * not distort the way it distorts throughput.
 */

/** RedisSample: the server's counters at one moment. */
export interface RedisSample {
  cpuMs: number;
  calls: Map<string, number>;
}

/** RedisCost: what the server did between two samples. */
export interface RedisCost {
  cpuMs: number;
  commands: number;
  /** byCommand: commands by name, most called first */
  byCommand: [string, number][];
}

/** parseRedisInfo reads a RedisSample from the text of `INFO cpu commandstats`. */
export function parseRedisInfo(text: string): RedisSample {
  const field = (name: string): number => Number(new RegExp(`^${name}:([0-9.]+)`, 'm').exec(text)?.[1] ?? NaN);
  const cpuMs = (field('used_cpu_sys') + field('used_cpu_user')) * 1000;
  if (!Number.isFinite(cpuMs)) throw new Error('bench/redis-meter: INFO cpu has no used_cpu_sys/used_cpu_user');
  const calls = new Map<string, number>();
  for (const m of text.matchAll(/^cmdstat_([a-z|_-]+):calls=(\d+)/gm)) if (m[1] !== 'info') calls.set(m[1], Number(m[2]));
  return { cpuMs, calls };
}

/** redisCost: the difference between two samples of the same server. */
export function redisCost(before: RedisSample, after: RedisSample): RedisCost {
  const byCommand: [string, number][] = [];
  for (const [name, n] of after.calls) {
    const d = n - (before.calls.get(name) ?? 0);
    if (d > 0) byCommand.push([name, d]);
  }
  byCommand.sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  return { cpuMs: after.cpuMs - before.cpuMs, commands: byCommand.reduce((a, [, n]) => a + n, 0), byCommand };
}

/** RedisMeter samples one redis-server over its own connection. */
export class RedisMeter {
  private readonly c: Redis;

  constructor(url: string) {
    this.c = new Redis(url, { enableAutoPipelining: false });
  }

  async sample(): Promise<RedisSample> {
    return parseRedisInfo(String(await this.c.call('INFO', 'cpu', 'commandstats')));
  }

  /** measure runs `run` between two samples and gives its result with the server's cost. */
  async measure<T>(run: () => Promise<T>): Promise<{ result: T; cost: RedisCost }> {
    const before = await this.sample();
    const result = await run();
    return { result, cost: redisCost(before, await this.sample()) };
  }

  async close(): Promise<void> {
    await this.c.quit();
  }
}

/** topCommands: the most called commands of a cost, per request, as "evalsha 1.00, get 0.50". */
export function topCommands(cost: RedisCost, requests: number, n = 6): string {
  return cost.byCommand
    .slice(0, n)
    .map(([name, calls]) => `${name} ${(calls / Math.max(requests, 1)).toFixed(2)}`)
    .join(', ');
}
