import { fork } from 'node:child_process';
import { Redis } from 'ioredis';
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
const per = (n: number, of: number): string => (n / Math.max(of, 1)).toFixed(2);

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
      const cn = req.subject[0].value;
      // the service's path (ca/issuance.ts): the audited intent, signing, then the record with its result
      await store.appendAudit({ type: 'certificate.issue.intent', actor: 'bench', subject: cn, data: { profile: req.profile } });
      const c = await rig.ca.issue(req);
      await store.recordIssuance({ cert: rig.certRecord(csr, cn, c), audit: rig.auditOf(cn, c) });
      done++;
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
  return done;
}

/**
 * profileRun runs `run` (it returns the issuances it completed in this process) and gives what the write
 * path cost: Redis commands and script calls of all clients (INFO commandstats, to be divided by the
 * issuances of all processes), and this process's writes refused because another client wrote first
 * (RedisStore.writeStats.conflicts, each one retried).
 */
async function profileRun(url: string, store: RedisStore, run: () => Promise<number>): Promise<{ done: number; conflicts: number; commands: number; scripts: number }> {
  const admin = new Redis(url);
  const stats = async () => {
    const text = await admin.info('commandstats');
    let commands = 0;
    let scripts = 0;
    for (const m of text.matchAll(/^cmdstat_([a-z|]+):calls=(\d+)/gm)) {
      if (m[1] === 'info') continue;
      commands += Number(m[2]);
      if (m[1].startsWith('eval')) scripts += Number(m[2]);
    }
    return { commands, scripts };
  };
  try {
    const c0 = store.writeStats.conflicts;
    const before = await stats();
    const done = await run();
    const after = await stats();
    return { done, conflicts: store.writeStats.conflicts - c0, commands: after.commands - before.commands, scripts: after.scripts - before.scripts };
  } finally {
    admin.disconnect();
  }
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
      process.send!({ done: n, conflicts: store.writeStats.conflicts });
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
    const s1 = await profileRun(server.url, redis, () => runFor(rig, redis, SECONDS));
    const one = s1.done / SECONDS;

    const child = fork(__filename, [], { env: { ...process.env, REDIS_BENCH_NODE_URL: server.url }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const childDone = new Promise<{ done: number; conflicts: number }>((resolve, reject) => {
      child.on('message', (m: { ready?: boolean; done?: number; conflicts?: number }) => {
        if (m.ready) child.send({ seconds: SECONDS });
        if (m.done !== undefined) resolve({ done: m.done, conflicts: m.conflicts ?? 0 });
      });
      child.once('exit', (code) => (code === 0 ? undefined : reject(new Error(`second node exited with ${code}`))));
    });
    // start together: the child begins on its message; the parent starts its own run at once
    await new Promise<void>((resolve) => child.once('message', () => resolve()));
    let theirs = { done: 0, conflicts: 0 };
    const s2 = await profileRun(server.url, redis, async () => {
      const [mine, t] = await Promise.all([runFor(rig, redis, SECONDS), childDone]);
      theirs = t;
      return mine;
    });
    const mine = s2.done;
    const two = (mine + theirs.done) / SECONDS;
    const both = mine + theirs.done;
    await redis.close();
    return [
      {
        name: `issuance core on Redis vs SQLite (1 process, ${IN_FLIGHT} in flight)`,
        figure: fmtRate(one, ' cert'),
        baseline: fmtRate(sqlite, ' cert') + ' SQLite',
        ratio: one / sqlite,
        note: `target >= 0.8 (issue 11); per issuance: ${per(s1.commands, s1.done)} Redis commands (${per(s1.scripts, s1.done)} script calls), ${per(s1.conflicts, s1.done)} retried writes`,
      },
      {
        name: `issuance core, 2 nodes (processes) vs 1 on one Redis`,
        figure: fmtRate(two, ' cert'),
        baseline: fmtRate(one, ' cert') + ' 1 node',
        ratio: two / one,
        note: `target >= 1.6 (issue 11); nodes: ${fmtRate(mine / SECONDS)} + ${fmtRate(theirs.done / SECONDS)}; per issuance: ${per(s2.conflicts + theirs.conflicts, both)} retried writes, ${per(s2.commands, both)} Redis commands (${per(s2.scripts, both)} script calls); 2 cores shared with redis-server`,
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
