import { fork } from 'node:child_process';
import { parseCsr } from '../src/ra/csr';
import { RedisStore } from '../src/store/redis/redis-store';
import { Store } from '../src/store/store';
import { hasRedisServer, startRedisServer } from '../test/helpers/redis-server';
import { BenchRow, fmtRate } from './bench-table';
import { IssuanceRig, makeIssuanceRig } from './issuance';

/**
 * benchRedisStore: the issuance core (parse the CSR, sign, record the certificate with its audit record)
 * against the shared Redis store, beside the same core on SQLite in the same run; then the same core in
 * two processes at once (two "nodes", each its own Redis clients) against one Redis, beside one process.
 * Every recorded issuance is an audited write, and every audited write on Redis watches the audit
 * chain's head, so two nodes contend on it as SQLite's writers contend on its lock: the 2-node ratio
 * shows what that costs. Both processes share the machine's two cores with redis-server; HTTP, TLS and
 * authentication are not in these figures (bench/est measures them).
 *
 * Knobs: REDIS_BENCH_SECONDS (3 per run), REDIS_BENCH_IN_FLIGHT (32 issuances in flight per process).
 * Needs redis-server (scripts/install-test-deps.sh); skipped without it.
 */
const SECONDS = Number(process.env.REDIS_BENCH_SECONDS ?? 3);
const IN_FLIGHT = Number(process.env.REDIS_BENCH_IN_FLIGHT ?? 32);

/** runFor keeps IN_FLIGHT issuances going for `seconds` and returns how many completed. */
async function runFor(rig: IssuanceRig, store: Store, seconds: number): Promise<number> {
  const end = Date.now() + seconds * 1000;
  let done = 0;
  let i = 0;
  const lane = async () => {
    while (Date.now() < end) {
      const n = i++;
      const csr = parseCsr(rig.pool[n % rig.pool.length]);
      const req = rig.leafRequest(csr);
      const c = await rig.ca.issue(req);
      const cn = req.subject[0].value;
      await store.recordIssuance({ cert: rig.certRecord(csr, cn, c), audit: rig.auditOf(cn, c) });
      done++;
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
  return done;
}

async function redisFor(rig: IssuanceRig, url: string, register: boolean): Promise<RedisStore> {
  const store = new RedisStore({ url });
  if (register)
    for (const id of rig.deviceIds)
      await store.createDevice(
        { id, owner: 'bench', label: null, state: 'registered' },
        { hash: 'scrypt$12$8$1$x$y', expiresAt: new Date(Date.now() + 86400_000) },
        { type: 'device.create', actor: 'bench', subject: id, data: {} },
      );
  return store;
}

/** secondNode: this file run as a child process: its own CA rig, a Redis store on the parent's URL; runs when told. */
async function secondNode(url: string): Promise<void> {
  const rig = await makeIssuanceRig();
  const store = await redisFor(rig, url, false);
  process.send!({ ready: true });
  process.once('message', (m: { seconds: number }) => {
    void runFor(rig, store, m.seconds).then(async (n) => {
      process.send!({ done: n });
      await store.close();
      await rig.close();
      process.exit(0);
    });
  });
}

export async function benchRedisStore(): Promise<BenchRow[]> {
  if (!hasRedisServer()) throw new Error('redis-server is not installed (scripts/install-test-deps.sh)');
  const server = await startRedisServer();
  const rig = await makeIssuanceRig();
  try {
    const sqlite = (await runFor(rig, rig.store, SECONDS)) / SECONDS;
    const redis = await redisFor(rig, server.url, true);
    const one = (await runFor(rig, redis, SECONDS)) / SECONDS;

    const child = fork(__filename, [], { env: { ...process.env, REDIS_BENCH_NODE_URL: server.url }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const childDone = new Promise<number>((resolve, reject) => {
      child.on('message', (m: { ready?: boolean; done?: number }) => {
        if (m.ready) child.send({ seconds: SECONDS });
        if (m.done !== undefined) resolve(m.done);
      });
      child.once('exit', (code) => (code === 0 ? undefined : reject(new Error(`second node exited with ${code}`))));
    });
    // start together: the child begins on its message; the parent starts its own run at once
    await new Promise<void>((resolve) => child.once('message', () => resolve()));
    const [mine, theirs] = await Promise.all([runFor(rig, redis, SECONDS), childDone]);
    const two = (mine + theirs) / SECONDS;
    await redis.close();
    return [
      {
        name: `issuance core on Redis vs SQLite (1 process, ${IN_FLIGHT} in flight)`,
        figure: fmtRate(one, ' cert'),
        baseline: fmtRate(sqlite, ' cert') + ' SQLite',
        ratio: one / sqlite,
        note: 'target >= 0.8 (issue 11)',
      },
      {
        name: `issuance core, 2 nodes (processes) vs 1 on one Redis`,
        figure: fmtRate(two, ' cert'),
        baseline: fmtRate(one, ' cert') + ' 1 node',
        ratio: two / one,
        note: `target >= 1.6 (issue 11); nodes: ${fmtRate(mine / SECONDS)} + ${fmtRate(theirs / SECONDS)}; 2 cores shared with redis-server`,
      },
    ];
  } finally {
    await rig.close();
    await server.stop();
  }
}

if (require.main === module && process.env.REDIS_BENCH_NODE_URL) void secondNode(process.env.REDIS_BENCH_NODE_URL);
else if (require.main === module)
  void benchRedisStore().then((rows) => {
    for (const r of rows) process.stdout.write(`${r.name}: ${r.figure} vs ${r.baseline} = ${r.ratio.toFixed(2)}${r.note ? ` (${r.note})` : ''}\n`);
  });
