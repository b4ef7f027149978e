import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from './ports';
import { waitForRedis } from './redis-server';
import { TmpDir, makeTmpDir } from './tmp';

/** SentinelGroup: a Sentinel-managed master with replicas and Sentinels, all on free loopback ports. */
export interface SentinelGroup {
  /** name: the master's name as the Sentinels know it */
  name: string;
  /** sentinels: host:port of every Sentinel */
  sentinels: string[];
  /** masterPort: the port of the master the group started with */
  masterPort: number;
  /** killMaster sends SIGKILL to the pid of the redis-server that is master now and waits for its exit; returns its port */
  killMaster(): Promise<number>;
  /** currentMasterPort asks a Sentinel which port it gives as the master's now */
  currentMasterPort(): Promise<number>;
  stop(): Promise<void>;
}

const NAME = 'dca';

/**
 * startSentinelGroup runs a master and `replicas` replicas (redis-server, AOF on, RDB off, as
 * startRedisServer does) and three Sentinels (`redis-server <conf> --sentinel`, the same binary the
 * Debian redis-sentinel package starts), quorum 2, master declared down after 1 s. Returns once every
 * Sentinel knows the master and every replica is in sync.
 */
export async function startSentinelGroup(replicas = 2): Promise<SentinelGroup> {
  const tmp: TmpDir = makeTmpDir('device-ca-redis-sentinel-');
  const procs = new Map<number, ChildProcess>();
  const launch = (port: number, args: string[]) => {
    const child = spawn('redis-server', args, { stdio: 'ignore' });
    procs.set(port, child);
  };
  const stopAll = async () => {
    await Promise.all(
      [...procs.values()].map(async (c) => {
        if (c.exitCode !== null || c.signalCode !== null) return;
        const exited = new Promise((r) => c.once('exit', r));
        c.kill('SIGTERM');
        await exited;
      }),
    );
  };
  try {
    const serverArgs = (port: number, dir: string) => [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'yes',
      '--appendfsync',
      'always',
      '--dir',
      dir,
      '--daemonize',
      'no',
    ];
    const masterPort = await freePort();
    fs.mkdirSync(path.join(tmp.path, 'm'));
    launch(masterPort, serverArgs(masterPort, path.join(tmp.path, 'm')));
    await waitForRedis(masterPort);
    const replicaPorts: number[] = [];
    for (let i = 0; i < replicas; i++) {
      const port = await freePort();
      const dir = path.join(tmp.path, `r${i}`);
      fs.mkdirSync(dir);
      launch(port, [...serverArgs(port, dir), '--replicaof', '127.0.0.1', String(masterPort)]);
      await waitForRedis(port);
      replicaPorts.push(port);
    }
    const sentinelPorts: number[] = [];
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      const conf = tmp.write(
        `sentinel-${i}.conf`,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          `dir ${tmp.path}`,
          `sentinel monitor ${NAME} 127.0.0.1 ${masterPort} 2`,
          `sentinel down-after-milliseconds ${NAME} 1000`,
          `sentinel failover-timeout ${NAME} 10000`,
          `sentinel parallel-syncs ${NAME} 2`,
          '',
        ].join('\n'),
      );
      launch(port, [conf, '--sentinel']);
      await waitForRedis(port);
      sentinelPorts.push(port);
    }
    // ready: every replica linked, every Sentinel sees the others and the replicas
    const deadline = Date.now() + 30_000;
    for (;;) {
      const m = new Redis({ port: masterPort, host: '127.0.0.1' });
      const info = String(await m.info('replication'));
      m.disconnect();
      let sentinelsReady = true;
      for (const p of sentinelPorts) {
        const s = new Redis({ port: p, host: '127.0.0.1' });
        const master = (await s.call('SENTINEL', 'MASTER', NAME)) as string[];
        s.disconnect();
        const field = (k: string) => Number(master[master.indexOf(k) + 1]);
        if (field('num-other-sentinels') < 2 || field('num-slaves') < replicas) sentinelsReady = false;
      }
      if (sentinelsReady && (info.match(/state=online/g) ?? []).length >= replicas) break;
      if (Date.now() > deadline) throw new Error(`Sentinel group not ready:\n${info}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const currentMaster = async (): Promise<number> => {
      const s = new Redis({ port: sentinelPorts[0], host: '127.0.0.1' });
      try {
        const addr = (await s.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', NAME)) as string[];
        return Number(addr[1]);
      } finally {
        s.disconnect();
      }
    };
    return {
      name: NAME,
      sentinels: sentinelPorts.map((p) => `127.0.0.1:${p}`),
      masterPort,
      currentMasterPort: currentMaster,
      async killMaster() {
        const port = await currentMaster();
        const child = procs.get(port)!;
        const exited = new Promise((r) => child.once('exit', r));
        process.kill(child.pid!, 'SIGKILL');
        await exited;
        return port;
      },
      async stop() {
        await stopAll();
        tmp.cleanup();
      },
    };
  } catch (e) {
    await stopAll();
    tmp.cleanup();
    throw e;
  }
}
