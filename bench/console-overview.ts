import Database from 'better-sqlite3';
import { Redis } from 'ioredis';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { everyItem } from '../src/store/paging';
import { RedisStore } from '../src/store/redis/redis-store';
import { SqliteStore } from '../src/store/sqlite/sqlite-store';
import { hasRedisServer, startRedisServer } from '../test/helpers/redis-server';
import { BenchRow } from './bench-table';

/** LABELS: the devices' labels, round-robin; 'rare' is one device in 1,000 (a label search that a walk would read the whole store for) */
const LABELS = ['gateway', 'sensor', ...Array.from({ length: 997 }, () => null), 'rare'] as (string | null)[];

/**
 * benchConsoleOverview: the console overview's device counts (by state, top 20 owners) on a SQLite store of
 * BENCH_CONSOLE_N devices (100 000; 50 owners), from the counts the store keeps (Store.countDevices) beside
 * walking every device page by page (what the overview did before). Median of 21 counts, of 3 walks. And the
 * devices page's label search (first page of 50 devices with a label 1 in 1,000 devices have, through the
 * (label, id) index) beside the unfiltered first page.
 * Run: npx tsc -p tsconfig.bench.json && node dist-bench/bench/run.js console-overview.
 */
export async function benchConsoleOverview(): Promise<BenchRow[]> {
  const n = Math.max(1000, Math.round(Number(process.env.BENCH_CONSOLE_N) || 100_000));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-bench-overview-'));
  const store = new SqliteStore(path.join(dir, 'device-ca.sqlite'));
  try {
    const expiresAt = new Date(Date.now() + 86400_000);
    for (let i = 0; i < n; i += 1000) {
      const items = [];
      for (let j = i; j < Math.min(n, i + 1000); j++) {
        const id = `dev-${String(j).padStart(7, '0')}`;
        items.push({
          device: { id, owner: `owner-${j % 50}`, label: LABELS[j % LABELS.length], state: 'registered' as const },
          secret: { hash: 'h', expiresAt },
          audit: { type: 'device.registered', actor: 'bench', subject: id, data: {} },
        });
      }
      await store.createDevices(items, { skipExisting: false });
    }
    const median = async (rounds: number, f: () => Promise<unknown>): Promise<number> => {
      const t: number[] = [];
      for (let i = 0; i < rounds; i++) {
        const s = process.hrtime.bigint();
        await f();
        t.push(Number(process.hrtime.bigint() - s) / 1e6);
      }
      return t.sort((a, b) => a - b)[Math.floor(rounds / 2)];
    };
    const walk = await median(3, async () => {
      const states = new Map<string, number>();
      let total = 0;
      for await (const d of everyItem((after) => store.listDevices({ after, limit: 1000 }))) {
        states.set(d.state, (states.get(d.state) ?? 0) + 1);
        total++;
      }
      if (total !== n) throw new Error(`walked ${total} devices, expected ${n}`);
    });
    const count = await median(21, async () => {
      const c = await store.countDevices({ topOwners: 20 });
      if (c.total !== n) throw new Error(`counted ${c.total} devices, expected ${n}`);
    });
    const firstPage = await median(21, async () => {
      if ((await store.listDevices({ limit: 50 })).items.length !== 50) throw new Error('first page is short');
    });
    const rare = await median(21, async () => {
      const p = await store.listDevices({ label: 'rare', limit: 50 });
      if (p.items.length !== Math.min(50, Math.floor(n / LABELS.length)) || p.items.some((d) => d.label !== 'rare')) throw new Error('label search answered wrong');
    });
    return [
      {
        name: `devices page: label search, first page of 50 (a label 1 in 1,000 devices have), ${n.toLocaleString('en')} devices (SQLite; ratio: unfiltered / search)`,
        figure: `${rare.toFixed(2)} ms`,
        baseline: `${firstPage.toFixed(2)} ms for the unfiltered first page`,
        ratio: firstPage / rare,
      },
      {
        name: `console overview device counts, ${n.toLocaleString('en')} devices (SQLite; ratio: speed-up)`,
        figure: `${count.toFixed(2)} ms`,
        baseline: `${walk.toFixed(0)} ms walking every device`,
        ratio: walk / count,
      },
    ];
  } finally {
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * benchConsoleCharts: the overview charts' two store calls (Store.countIssuedPerHour over 168 hours,
 * Store.countExpiringPerDay over 90 days) on a SQLite store of BENCH_CHART_N device certificates
 * (1,000,000), recorded over the last 7 days and expiring over the next BENCH_CHART_SPREAD_DAYS days (365:
 * a quarter of them inside the 90 days the chart reads), beside the same calls on an empty store. The
 * certificates are written by SQL in large transactions (the triggers count them as an issuance does);
 * median of 21 calls. With redis-server installed, the same on Redis (redisCharts).
 * Run: npx tsc -p tsconfig.bench.json && node dist-bench/bench/run.js console-charts.
 */
export async function benchConsoleCharts(): Promise<BenchRow[]> {
  const n = Math.max(1000, Math.round(Number(process.env.BENCH_CHART_N) || 1_000_000));
  const spreadDays = Math.max(1, Number(process.env.BENCH_CHART_SPREAD_DAYS) || 365);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-bench-charts-'));
  const full = new SqliteStore(path.join(dir, 'full.sqlite'));
  const empty = new SqliteStore(path.join(dir, 'empty.sqlite'));
  try {
    const now = Date.now();
    const db = new Database(path.join(dir, 'full.sqlite'));
    db.pragma('synchronous = OFF');
    const ins = db.prepare(
      `INSERT INTO certificates (serial, device_id, issuer, subject, profile, not_before, not_after, shard, spki_sha256, der, status, created_at)
         VALUES (?, ?, 'device-ca-issuing', ?, 'default', ?, ?, 0, 'x', x'00', ?, ?)`,
    );
    const hourStart = new Date((Math.floor(now / 3_600_000) - 167) * 3_600_000);
    let inRange = 0;
    const write = db.transaction((from: number, to: number) => {
      for (let i = from; i < to; i++) {
        const id = `dev-${String(i).padStart(7, '0')}`;
        const created = hourStart.getTime() + Math.floor((i / n) * (now - hourStart.getTime()));
        const notAfter = now + Math.floor((((i * 7919) % n) / n) * spreadDays * 86_400_000) + 1;
        const valid = i % 100 !== 99;
        if (valid && notAfter < (Math.floor(now / 86_400_000) + 90) * 86_400_000) inRange++;
        ins.run(i.toString(16).padStart(16, '0'), id, `CN=${id}`, created, notAfter, valid ? 'valid' : 'revoked', created);
      }
    });
    for (let i = 0; i < n; i += 50_000) write(i, Math.min(n, i + 50_000));
    db.close();

    const median = async (f: () => Promise<unknown>): Promise<number> => {
      const t: number[] = [];
      for (let i = 0; i < 21; i++) {
        const s = process.hrtime.bigint();
        await f();
        t.push(Number(process.hrtime.bigint() - s) / 1e6);
      }
      return t.sort((a, b) => a - b)[10];
    };
    const hours = async (s: SqliteStore, want: number) => {
      const c = await s.countIssuedPerHour({ from: hourStart, hours: 168 });
      if (c.reduce((a, b) => a + b, 0) !== want) throw new Error(`counted ${c.reduce((a, b) => a + b, 0)} issuances, expected ${want}`);
    };
    const days = async (s: SqliteStore, want: number) => {
      const c = await s.countExpiringPerDay({ from: new Date(now), days: 90 });
      const got = c.reduce((a, b) => a + b, 0);
      if (got !== want) throw new Error(`counted ${got} expiring certificates, expected ${want}`);
    };
    const hourFull = await median(() => hours(full, n));
    const hourEmpty = await median(() => hours(empty, 0));
    const dayFull = await median(() => days(full, inRange));
    const dayEmpty = await median(() => days(empty, 0));
    const label = `${n.toLocaleString('en')} device certificates`;
    const rows: BenchRow[] = [
      {
        name: `console chart: enrollments per hour (168 hours), ${label} (SQLite; ratio: full / empty)`,
        figure: `${hourFull.toFixed(2)} ms`,
        baseline: `${hourEmpty.toFixed(2)} ms on an empty store`,
        ratio: hourFull / hourEmpty,
      },
      {
        name: `console chart: certificates expiring per day (90 days), ${label}, ${inRange.toLocaleString('en')} of them in the 90 days (SQLite; ratio: full / empty)`,
        figure: `${dayFull.toFixed(2)} ms`,
        baseline: `${dayEmpty.toFixed(2)} ms on an empty store`,
        ratio: dayFull / dayEmpty,
      },
    ];
    if (hasRedisServer()) rows.push(...(await redisCharts(n, now, hourStart, spreadDays, median)));
    return rows;
  } finally {
    await full.close();
    await empty.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * redisCharts: the same two calls on a Redis store whose chart keys hold n certificates, written as
 * recordIssuance writes them (HINCRBY cert-hours <hour>, ZADD certs-expiry <notAfter> <serial>; the
 * certificates' own keys are not read by either call, so they are left out), beside a store with none.
 */
async function redisCharts(n: number, now: number, hourStart: Date, spreadDays: number, median: (f: () => Promise<unknown>) => Promise<number>): Promise<BenchRow[]> {
  const server = await startRedisServer();
  const full = new RedisStore({ url: server.url, prefix: '{full}' });
  const empty = new RedisStore({ url: server.url, prefix: '{empty}' });
  const admin = new Redis(server.url);
  try {
    const hours = new Map<number, number>();
    for (let i = 0; i < n; i += 10_000) {
      const members: (string | number)[] = [];
      for (let j = i; j < Math.min(n, i + 10_000); j++) {
        const h = Math.floor((hourStart.getTime() + Math.floor((j / n) * (now - hourStart.getTime()))) / 3_600_000);
        hours.set(h, (hours.get(h) ?? 0) + 1);
        if (j % 100 !== 99) members.push(now + Math.floor((((j * 7919) % n) / n) * spreadDays * 86_400_000) + 1, j.toString(16).padStart(16, '0'));
      }
      await admin.zadd('{full}:certs-expiry', ...members);
    }
    await admin.hset('{full}:cert-hours', Object.fromEntries([...hours].map(([h, c]) => [String(h), c])));
    await admin.set('{full}:cert-charts-ready', '1');
    await admin.set('{empty}:cert-charts-ready', '1');
    const sum = (c: number[]) => c.reduce((a, b) => a + b, 0);
    const check = async (p: Promise<number[]>, want: number | null) => {
      const got = sum(await p);
      if (want !== null && got !== want) throw new Error(`Redis chart counted ${got}, expected ${want}`);
    };
    const hourFull = await median(() => check(full.countIssuedPerHour({ from: hourStart, hours: 168 }), n));
    const hourEmpty = await median(() => check(empty.countIssuedPerHour({ from: hourStart, hours: 168 }), 0));
    const dayFull = await median(() => check(full.countExpiringPerDay({ from: new Date(now), days: 90 }), null));
    const dayEmpty = await median(() => check(empty.countExpiringPerDay({ from: new Date(now), days: 90 }), 0));
    const label = `${n.toLocaleString('en')} device certificates`;
    return [
      {
        name: `console chart: enrollments per hour (168 hours), ${label} (Redis; ratio: full / empty)`,
        figure: `${hourFull.toFixed(2)} ms`,
        baseline: `${hourEmpty.toFixed(2)} ms on an empty store`,
        ratio: hourFull / hourEmpty,
      },
      {
        name: `console chart: certificates expiring per day (90 days, one ZCOUNT each), ${label} (Redis; ratio: full / empty)`,
        figure: `${dayFull.toFixed(2)} ms`,
        baseline: `${dayEmpty.toFixed(2)} ms on an empty store`,
        ratio: dayFull / dayEmpty,
      },
    ];
  } finally {
    admin.disconnect();
    await full.close();
    await empty.close();
    await server.stop();
  }
}
