import express from 'express';
import * as fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadConfig } from '../src/config/load-config';
import { Config } from '../src/config/schema';
import { ensureCa, openKeyBackend, openRegistrationAuthority } from '../src/main';
import { consoleRouter } from '../src/protocols/console/console-router';
import { AuditBrowser } from '../src/ra/audit-browser';
import { ConsoleOverview } from '../src/ra/console-overview';
import { ConsoleSessions } from '../src/ra/console-sessions';
import { Redis } from 'ioredis';
import { createStore } from '../src/store/create-store';
import { KEY_PREFIX } from '../src/store/redis/redis-store';
import { hasRedisServer, startRedisServer } from '../test/helpers/redis-server';
import { BenchRow } from './bench-table';
import { populateStore } from './scale-populate';

/**
 * benchConsoleDevices: the console's devices page API, GET /console/api/v1/devices (the admin router behind
 * the session cookie, as main.ts mounts it), on a SQLite store of BENCH_CONSOLE_DEVICES_N devices
 * (1,000,000; written by scale-populate: 1,000 owners, a label 1 in 1,000 devices have) beside the same
 * call on an empty store (the CA only). The calls: the first page, a search by id prefix (10,000 devices
 * match at 1,000,000), by owner (1,000 devices), by label (1,000 devices), by a state no device is in
 * (all are active) and by owner and state together, each a page of 50. Server
 * time: from the request's arrival in express to the last byte of the reply handed to the socket (the
 * session check in the store included), median of 31 after 5 warm-ups, over loopback HTTP with keep-alive.
 * The target: under 100 ms at 1,000,000 devices.
 * Run: npx tsc -p tsconfig.bench.json && node dist-bench/bench/run.js console-devices
 * (BENCH_CONSOLE_DEVICES_N=100000 for a quicker run; populating 1,000,000 takes a few minutes and ~1.5 GB).
 * benchConsoleDevicesRedis (module console-devices-redis): the same calls on a Redis store, see there.
 */

const TARGET_MS = 100;
const log = (l: string): void => void process.stderr.write(`bench/console-devices: ${l}\n`);

/** Side: one data directory with its CA, served in-process by the console router. */
interface Side {
  cfg: Config;
  issuer: string;
  issuingDer: Buffer;
}

/** prepare: a CA in `dir`, its store SQLite in `dir` or, with storeUrl, that Redis database. */
async function prepare(dir: string, storeUrl?: string): Promise<Side> {
  const cfg = loadConfig({ env: { DEVICE_CA_DATA: dir, ...(storeUrl ? { DEVICE_CA_STORE: storeUrl } : {}) } });
  const keys = openKeyBackend(cfg);
  const store = createStore(cfg);
  try {
    const { ca } = await ensureCa(cfg, keys, store);
    return { cfg, issuer: ca.issuing.name, issuingDer: ca.issuing.der };
  } finally {
    await store.close();
    await keys.close();
  }
}

/** Query: one devices page call, with the answer the full store must give (the empty one gives none). */
interface Query {
  name: string;
  query: string;
  check: (items: { id: string; owner: string | null; label: string | null }[]) => boolean;
}

/** queries: the devices page's calls on a store of n devices (the id prefix picks 10,000 devices from the middle). */
function queries(n: number): Query[] {
  const prefix = `fleet-${String(Math.floor(n / 2))
    .padStart(8, '0')
    .slice(0, 4)}`;
  const k = (x: number) => x.toLocaleString('en');
  return [
    { name: 'first page', query: 'limit=50', check: (i) => i.length === 50 },
    { name: `search by id prefix (${k(10_000)} match)`, query: `idPrefix=${prefix}&limit=50`, check: (i) => i.length === 50 && i.every((d) => d.id.startsWith(prefix)) },
    { name: `search by owner (${k(n / 1000)} match)`, query: 'owner=owner-7&limit=50', check: (i) => i.length === 50 && i.every((d) => d.owner === 'owner-7') },
    { name: `search by label (${k(Math.floor(n / 1000))} match)`, query: 'label=rare&limit=50', check: (i) => i.length === 50 && i.every((d) => d.label === 'rare') },
    { name: 'search by state (none match: no device is suspended)', query: 'state=suspended&limit=50', check: (i) => i.length === 0 },
    {
      name: `search by owner and state (${k(n / 1000)} match)`,
      query: 'owner=owner-7&state=active&limit=50',
      check: (i) => i.length === 50 && i.every((d) => d.owner === 'owner-7'),
    },
  ];
}

/** measure: median server time of each query on one side, in ms. */
async function measure(side: Side, full: boolean, qs: Query[]): Promise<number[]> {
  const h = await openRegistrationAuthority(side.cfg);
  const times: number[] = [];
  const app = express();
  app.use((_req, res, next) => {
    const t0 = process.hrtime.bigint();
    res.on('finish', () => times.push(Number(process.hrtime.bigint() - t0) / 1e6));
    next();
  });
  const sessions = new ConsoleSessions(h.store, h.access, { idleSeconds: 900, maxAgeSeconds: 3600 });
  app.use(
    '/console',
    consoleRouter({
      sessions,
      overview: new ConsoleOverview({
        store: h.store,
        lifecycle: h.lifecycle,
        ra: h.ra,
        issuer: side.issuer,
        crlShards: side.cfg.crl.shards,
        ocspResponderCertificate: () => null,
        storeHealth: async () => undefined,
        keyHealth: async () => undefined,
      }),
      admin: { access: h.access, lifecycle: h.lifecycle, ra: h.ra, audit: new AuditBrowser(h.store), bodyLimit: side.cfg.https.bodyLimit },
      maxAgeSeconds: 3600,
    }),
  );
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  try {
    const { token } = await h.access.createToken('operator', 'bench', 'bench');
    const session = await sessions.signIn(token);
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/console/api/v1/devices`;
    const out: number[] = [];
    for (const q of qs) {
      times.length = 0;
      for (let i = 0; i < 36; i++) {
        const r = await fetch(`${base}?${q.query}`, { headers: { cookie: `dca_console=${session.sessionId}` } });
        const body = (await r.json()) as { items: { id: string; owner: string | null; label: string | null }[] };
        if (r.status !== 200) throw new Error(`${q.name}: HTTP ${r.status} ${JSON.stringify(body)}`);
        if (full ? !q.check(body.items) : body.items.length !== 0) throw new Error(`${q.name}: wrong answer (${body.items.length} devices)`);
      }
      const t = times.slice(5).sort((a, b) => a - b);
      out.push(t[Math.floor(t.length / 2)]);
    }
    return out;
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await h.close();
  }
}

export async function benchConsoleDevices(): Promise<BenchRow[]> {
  const n = Math.max(100_000, Math.round(Number(process.env.BENCH_CONSOLE_DEVICES_N) || 1_000_000));
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-bench-console-devices-'));
  try {
    const empty = await prepare(path.join(root, 'empty'));
    const full = await prepare(path.join(root, 'full'));
    const p = populateStore({
      file: full.cfg.store.path,
      issuer: full.issuer,
      shards: full.cfg.crl.shards,
      devices: n,
      revokedEvery: 10,
      der: full.issuingDer,
      idPrefix: 'fleet',
      label: (i) => (i % 1000 === 999 ? 'rare' : i % 3 === 0 ? 'gateway' : i % 3 === 1 ? 'sensor' : null),
      progress: (d) => d % 200_000 === 0 && log(`populated ${d}`),
    });
    log(`populated ${n} devices in ${p.seconds.toFixed(1)} s`);
    const qs = queries(n);
    const e = await measure(empty, false, qs);
    const f = await measure(full, true, qs);
    return qs.map((q, i) => ({
      name: `console devices page API: ${q.name}, page of 50, ${n.toLocaleString('en')} devices (SQLite, server time; ratio: empty / full)`,
      figure: `${f[i].toFixed(2)} ms`,
      baseline: `${e[i].toFixed(2)} ms on an empty store`,
      ratio: e[i] / f[i],
      note: `${f[i] < TARGET_MS ? 'meets' : 'MISSES'} target < ${TARGET_MS} ms`,
    }));
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

/**
 * populateRedis writes n devices into the Redis database at `url` with pipelined writes (10,000 devices a
 * round trip), in the Redis store's key layout: the device record (state active, 1,000 owners, labels as
 * the SQLite run), `devs`, the search sets (`devs-owner:<owner>`, `devs-state:active`,
 * `devs-label:<label>`), the counts and the flags saying they are complete. What it leaves out: each
 * device's secret, certificate and audit records, which no devices page call reads.
 */
async function populateRedis(url: string, n: number, label: (i: number) => string | null): Promise<number> {
  const t0 = process.hrtime.bigint();
  const r = new Redis(url);
  const k = (...parts: string[]) => [KEY_PREFIX, ...parts].join(':');
  try {
    const owners = new Map<string, number>();
    const at = Date.now();
    for (let i = 0; i < n; i += 10_000) {
      const p = r.pipeline();
      const ids: (string | number)[] = [];
      const byOwner = new Map<string, (string | number)[]>();
      const byLabel = new Map<string, (string | number)[]>();
      const add = (m: Map<string, (string | number)[]>, key: string, id: string) => (m.get(key) ?? m.set(key, []).get(key)!).push(0, id);
      for (let j = i; j < Math.min(n, i + 10_000); j++) {
        const id = `fleet-${String(j).padStart(8, '0')}`;
        const owner = `owner-${j % 1000}`;
        const l = label(j);
        p.set(k('dev', id), JSON.stringify({ id, owner, label: l, state: 'active', pendingOwner: null, createdAt: at, updatedAt: at }));
        ids.push(0, id);
        add(byOwner, k('devs-owner', owner), id);
        if (l !== null) add(byLabel, k('devs-label', l), id);
        owners.set(owner, (owners.get(owner) ?? 0) + 1);
      }
      p.zadd(k('devs'), ...ids);
      p.zadd(k('devs-state', 'active'), ...ids);
      for (const [key, members] of [...byOwner, ...byLabel]) p.zadd(key, ...members);
      for (const [err] of (await p.exec()) ?? []) if (err) throw err;
      if ((i + 10_000) % 200_000 === 0) log(`Redis: populated ${i + 10_000}`);
    }
    const counts: Record<string, number> = { 'active|*': n };
    for (const [owner, c] of owners) counts[`active|+${owner}`] = c;
    await r.hset(k('dev-counts'), counts);
    await r.zadd(k('dev-owners'), ...[...owners].flatMap(([owner, c]) => [c, `+${owner}`]));
    await r.mset(k('dev-counts-ready'), '1', k('dev-labels-ready'), '1', k('dev-index-ready'), '1');
    // the AOF rewrite that a million writes set off would run during the measurement: run it now, to its end
    const rewriting = async () => /aof_rewrite_(in_progress|scheduled):1/.test(await r.info('persistence'));
    while (await rewriting()) await new Promise((res) => setTimeout(res, 200));
    await r.bgrewriteaof();
    do await new Promise((res) => setTimeout(res, 200));
    while (await rewriting());
    return Number(process.hrtime.bigint() - t0) / 1e9;
  } finally {
    r.disconnect();
  }
}

/**
 * benchConsoleDevicesRedis: the calls of benchConsoleDevices through the same router, on a Redis store
 * (one redis-server the bench starts, with AOF as the tests start it) of BENCH_CONSOLE_DEVICES_N devices
 * (1,000,000) written by populateRedis, beside the same calls on an empty Redis database of the same
 * server. An owner or state search reads its own sorted set (`devs-owner:<owner>`, `devs-state:<state>`);
 * before them it walked every device. Without redis-server: no rows.
 * Run: npx tsc -p tsconfig.bench.json && node dist-bench/bench/run.js console-devices-redis
 */
export async function benchConsoleDevicesRedis(): Promise<BenchRow[]> {
  if (!hasRedisServer()) return [];
  const n = Math.max(100_000, Math.round(Number(process.env.BENCH_CONSOLE_DEVICES_N) || 1_000_000));
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-bench-console-devices-redis-'));
  const server = await startRedisServer();
  try {
    const empty = await prepare(path.join(root, 'empty'), `${server.url.replace(/\/\d*$/, '')}/0`);
    const fullUrl = `${server.url.replace(/\/\d*$/, '')}/1`;
    const full = await prepare(path.join(root, 'full'), fullUrl);
    const seconds = await populateRedis(fullUrl, n, (i) => (i % 1000 === 999 ? 'rare' : i % 3 === 0 ? 'gateway' : i % 3 === 1 ? 'sensor' : null));
    log(`Redis: populated ${n} devices in ${seconds.toFixed(1)} s`);
    const qs = queries(n);
    const e = await measure(empty, false, qs);
    const f = await measure(full, true, qs);
    return qs.map((q, i) => ({
      name: `console devices page API: ${q.name}, page of 50, ${n.toLocaleString('en')} devices (Redis, server time; ratio: empty / full)`,
      figure: `${f[i].toFixed(2)} ms`,
      baseline: `${e[i].toFixed(2)} ms on an empty store`,
      ratio: e[i] / f[i],
      note: `${f[i] < TARGET_MS ? 'meets' : 'MISSES'} target < ${TARGET_MS} ms`,
    }));
  } finally {
    await server.stop();
    fs.rmSync(root, { recursive: true, force: true });
  }
}
