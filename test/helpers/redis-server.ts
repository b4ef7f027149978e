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
}

/** hasRedisServer: whether the Debian package redis-server is installed (scripts/install-test-deps.sh installs it). */
export function hasRedisServer(): boolean {
  return spawnSync('redis-server', ['--version']).status === 0;
}

/**
 * startRedisServer runs `redis-server` on 127.0.0.1 with AOF on and RDB snapshots off (what a CA should
 * run: every acknowledged write is in the append-only file), or with `persistence: 'none'` neither.
 */
export async function startRedisServer(opts: { persistence?: 'aof' | 'none' } = {}): Promise<RedisServer> {
  const tmp: TmpDir = makeTmpDir('device-ca-redis-');
  const port = await freePort();
  let child: ChildProcess;
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', opts.persistence === 'none' ? 'no' : 'yes', '--dir', tmp.path, '--daemonize', 'no'];
  const launch = async () => {
    child = spawn('redis-server', args, { stdio: 'ignore' });
    const deadline = Date.now() + 10_000;
    for (;;) {
      const c = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      c.on('error', () => undefined);
      try {
        await c.connect();
        if ((await c.ping()) === 'PONG') return;
      } catch {
        if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not start`);
        await new Promise((r) => setTimeout(r, 50));
      } finally {
        c.disconnect();
      }
    }
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
  };
}
