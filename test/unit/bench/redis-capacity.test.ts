import { derivedCapacity } from '../../../bench/redis-capacity';
import { parseRedisInfo, redisCost, topCommands } from '../../../bench/redis-meter';

/**
 * The figures bench/redis-http derives instead of trusting throughput on a shared machine: the capacity
 * model (one core per node, one for Redis) and the reading of redis-server's own counters.
 */
describe('derivedCapacity', () => {
  it('is bound by the nodes while Redis has headroom: 2 nodes give twice one node', () => {
    const one = derivedCapacity({ nodes: 1, nodeMs: 4, redisMs: 0.2 });
    const two = derivedCapacity({ nodes: 2, nodeMs: 8, redisMs: 0.2 });
    expect(one).toEqual({ rate: 250, bound: 'nodes', redisFeeds: 20 });
    expect(two).toEqual({ rate: 250, bound: 'nodes', redisFeeds: 20 });
    expect(derivedCapacity({ nodes: 2, nodeMs: 4, redisMs: 0.2 })).toEqual({ rate: 500, bound: 'nodes', redisFeeds: 10 });
  });

  it('is bound by Redis when one Redis core cannot feed the nodes', () => {
    expect(derivedCapacity({ nodes: 2, nodeMs: 2, redisMs: 2 })).toEqual({ rate: 500, bound: 'redis', redisFeeds: 0.5 });
  });

  it('a SQLite node (no Redis) is bound by its own core', () => {
    expect(derivedCapacity({ nodes: 1, nodeMs: 5 })).toEqual({ rate: 200, bound: 'nodes' });
  });

  it('refuses a run where nothing was measured instead of dividing by zero', () => {
    expect(() => derivedCapacity({ nodes: 1, nodeMs: 0 })).toThrow(/no node CPU/);
    expect(() => derivedCapacity({ nodes: 1, nodeMs: 3, redisMs: 0 })).toThrow(/no Redis CPU/);
  });
});

describe('redis-meter', () => {
  // abridged from redis-server 7.0 `INFO cpu commandstats`
  const info = (sys: string, user: string, evalsha: number, get: number, info: number) =>
    [
      '# CPU',
      `used_cpu_sys:${sys}`,
      `used_cpu_user:${user}`,
      'used_cpu_sys_children:0.001',
      'used_cpu_user_children:0.002',
      '',
      '# Commandstats',
      `cmdstat_evalsha:calls=${evalsha},usec=900,usec_per_call=3.00,rejected_calls=0,failed_calls=0`,
      ...(get ? [`cmdstat_get:calls=${get},usec=10,usec_per_call=1.00,rejected_calls=0,failed_calls=0`] : []),
      `cmdstat_info:calls=${info},usec=50,usec_per_call=25.00,rejected_calls=0,failed_calls=0`,
      'cmdstat_client|setname:calls=2,usec=1,usec_per_call=0.50,rejected_calls=0,failed_calls=0',
      '',
    ].join('\r\n');

  it('reads the server CPU (children left out) and the calls per command without INFO', () => {
    const s = parseRedisInfo(info('1.250000', '2.500000', 10, 0, 7));
    expect(s.cpuMs).toBeCloseTo(3750, 6);
    expect([...s.calls]).toEqual([
      ['evalsha', 10],
      ['client|setname', 2],
    ]);
  });

  it('gives the difference between two samples, most called first, and per request', () => {
    const cost = redisCost(parseRedisInfo(info('1.000000', '1.000000', 10, 0, 7)), parseRedisInfo(info('1.100000', '1.200000', 30, 50, 9)));
    expect(cost.cpuMs).toBeCloseTo(300, 6);
    expect(cost).toEqual({
      cpuMs: cost.cpuMs,
      commands: 70,
      byCommand: [
        ['get', 50],
        ['evalsha', 20],
      ],
    });
    expect(topCommands(cost, 20)).toBe('get 2.50, evalsha 1.00');
  });

  it('refuses a text without CPU fields', () => {
    expect(() => parseRedisInfo('# Commandstats\r\n')).toThrow(/INFO cpu/);
  });
});
