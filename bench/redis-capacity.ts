/**
 * redis-capacity: the capacity a setup of device-ca nodes and one Redis would have on a machine where
 * each has cores of its own, DERIVED from the CPU each request cost in a run on a shared machine (the
 * bench machine has two cores for the nodes, redis-server and the load generator together, so measured
 * throughput ratios say how the cores were shared, not how the setup scales).
 *
 * The model: each node is one worker process given one core (its CPU per request is the node's whole
 * process tree, primary and CSR threads included); redis-server executes commands on one core; the
 * load generator runs elsewhere. A setup of n nodes then completes at most n x 1000 / (node CPU ms per
 * request) requests per second, and at most 1000 / (Redis CPU ms per request): the smaller bound holds.
 */

/** CpuPerRequest: what one request cost in a run (node CPU summed over every node of the setup). */
export interface CpuPerRequest {
  nodes: number;
  nodeMs: number;
  /** redisMs: redis-server CPU per request; undefined for a node on SQLite (the store's work is in nodeMs) */
  redisMs?: number;
}

/** DerivedCapacity: requests per second under the model, and which bound holds. */
export interface DerivedCapacity {
  rate: number;
  bound: 'nodes' | 'redis';
  /** redisFeeds: how many such nodes one Redis core keeps busy (node CPU / Redis CPU per request) */
  redisFeeds?: number;
}

/** derivedCapacity applies the model to one setup's CPU per request. */
export function derivedCapacity(c: CpuPerRequest): DerivedCapacity {
  if (!(c.nodes > 0 && c.nodeMs > 0)) throw new Error(`bench/redis-capacity: no node CPU measured (${JSON.stringify(c)})`);
  const byNodes = (c.nodes * 1000) / c.nodeMs;
  if (c.redisMs === undefined) return { rate: byNodes, bound: 'nodes' };
  if (!(c.redisMs > 0)) throw new Error(`bench/redis-capacity: no Redis CPU measured (${JSON.stringify(c)})`);
  const byRedis = 1000 / c.redisMs;
  const redisFeeds = c.nodeMs / c.nodes / c.redisMs;
  return byRedis < byNodes ? { rate: byRedis, bound: 'redis', redisFeeds } : { rate: byNodes, bound: 'nodes', redisFeeds };
}
