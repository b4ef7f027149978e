import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { Redis } from 'ioredis';
import { freePort } from './ports';
import { TmpDir, makeTmpDir } from './tmp';

/** RedisServer is a redis-server the tests started on a free loopback port, with its data in a temporary directory. */
export interface RedisServer {
  port: number;
  url: string;
  dir: string;
  /** stop ends the server (SIGTERM to its pid) and waits for it; keep keeps the data directory for a restart */
  stop(opts?: { keep?: boolean }): Promise<void>;
  /** restart starts it again on the same port and directory (AOF replays what was acknowledged) */
  restart(): Promise<void>;
  /** kill sends SIGKILL to its pid (a crash: no shutdown save) and waits for the exit; the data directory stays for restart() */
  kill(): Promise<void>;
  /** pause stops the server (SIGSTOP to its pid): connections stay open and nothing is answered, as a hung host; resume (SIGCONT) lets it go on */
  pause(): void;
  resume(): void;
}

/**
 * waitForRedis waits until a redis-server (or a Sentinel) on the loopback port answers PING, polling
 * with a fresh connection every 50 ms; after 10 s it throws.
 */
export async function waitForRedis(port: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const c = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    c.on('error', () => undefined);
    try {
      await c.connect();
      if ((await c.ping()) === 'PONG') return;
    } catch {
      // not listening yet, or still loading its data: try again
    } finally {
      // a refused connection has ended already: disconnect() would arm ioredis' 2 s destroy timer for a socket already closed
      if (c.status !== 'end') c.disconnect();
    }
    if (Date.now() > deadline) throw new Error(`redis on port ${port} did not answer PING within 10 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** hasRedisServer: whether the Debian package redis-server is installed (scripts/install-test-deps.sh installs it). */
export function hasRedisServer(): boolean {
  return spawnSync('redis-server', ['--version']).status === 0;
}

/**
 * startRedisServer runs `redis-server` on 127.0.0.1 with AOF on and RDB snapshots off (what a CA should
 * run: every acknowledged write is in the append-only file), or with `persistence: 'none'` neither.
 */
export async function startRedisServer(opts: { persistence?: 'aof' | 'none'; appendfsync?: 'always' | 'everysec' } = {}): Promise<RedisServer> {
  const tmp: TmpDir = makeTmpDir('device-ca-redis-');
  const port = await freePort();
  let child: ChildProcess;
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', opts.persistence === 'none' ? 'no' : 'yes', '--dir', tmp.path, '--daemonize', 'no'];
  // appendfsync always: Redis fsyncs the AOF before it replies, so an acknowledged write survives a crash of the machine too
  if (opts.appendfsync) args.push('--appendfsync', opts.appendfsync);
  const launch = async () => {
    child = spawn('redis-server', args, { stdio: 'ignore' });
    await waitForRedis(port);
  };
  const halt = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  };
  await launch();
  return {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    dir: tmp.path,
    async stop(o = {}) {
      await halt();
      if (!o.keep) tmp.cleanup();
    },
    async restart() {
      await halt();
      await launch();
    },
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      process.kill(child.pid!, 'SIGKILL');
      await exited;
    },
    pause() {
      process.kill(child.pid!, 'SIGSTOP');
    },
    resume() {
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGCONT');
    },
  };
}

/** RedisCluster is a Redis Cluster of masters the tests started on free loopback ports (no replicas). */
export interface RedisCluster {
  /** nodes: host:port of every master */
  nodes: string[];
  stop(): Promise<void>;
}

/**
 * startRedisCluster starts `masters` redis-servers with --cluster-enabled yes and AOF on, and joins them
 * with `redis-cli --cluster create ... --cluster-yes` (the slots split between them); it waits until
 * CLUSTER INFO says the cluster is ok.
 */
export async function startRedisCluster(masters = 3): Promise<RedisCluster> {
  const servers: RedisServer[] = [];
  const tmps: TmpDir[] = [];
  try {
    for (let i = 0; i < masters; i++) {
      const tmp = makeTmpDir('device-ca-redis-cluster-');
      tmps.push(tmp);
      const port = await freePort();
      const child = spawn(
        'redis-server',
        ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--dir', tmp.path, '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--daemonize', 'no'],
        { stdio: 'ignore' },
      );
      await waitForRedis(port);
      servers.push({
        port,
        url: `redis://127.0.0.1:${port}`,
        dir: tmp.path,
        async stop() {
          if (child.exitCode !== null || child.signalCode !== null) return;
          const exited = new Promise((r) => child.once('exit', r));
          child.kill('SIGTERM');
          await exited;
        },
        async restart() {
          throw new Error('not supported for cluster nodes');
        },
        async kill() {
          throw new Error('not supported for cluster nodes');
        },
        pause() {
          process.kill(child.pid!, 'SIGSTOP');
        },
        resume() {
          if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGCONT');
        },
      });
    }
    const nodes = servers.map((s) => `127.0.0.1:${s.port}`);
    const made = spawnSync('redis-cli', ['--cluster', 'create', ...nodes, '--cluster-yes'], { encoding: 'utf8', timeout: 30_000 });
    if (made.status !== 0) throw new Error(`redis-cli --cluster create failed: ${made.stdout}${made.stderr}`);
    const deadline = Date.now() + 20_000;
    for (const s of servers) {
      for (;;) {
        const c = new Redis({ port: s.port, host: '127.0.0.1' });
        const info = String(await c.cluster('INFO'));
        c.disconnect();
        if (/cluster_state:ok/.test(info)) break;
        if (Date.now() > deadline) throw new Error(`Redis Cluster not ok on ${s.port}: ${info}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    return {
      nodes,
      async stop() {
        await Promise.all(servers.map((s) => s.stop()));
        for (const t of tmps) t.cleanup();
      },
    };
  } catch (e) {
    await Promise.all(servers.map((s) => s.stop()));
    for (const t of tmps) t.cleanup();
    throw e;
  }
}
