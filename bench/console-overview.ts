import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { everyItem } from '../src/store/paging';
import { SqliteStore } from '../src/store/sqlite/sqlite-store';
import { BenchRow } from './bench-table';

/**
 * benchConsoleOverview: the console overview's device counts (by state, top 20 owners) on a SQLite store of
 * BENCH_CONSOLE_N devices (100 000; 50 owners), from the counts the store keeps (Store.countDevices) beside
 * walking every device page by page (what the overview did before). Median of 21 counts, of 3 walks.
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
          device: { id, owner: `owner-${j % 50}`, label: null, state: 'registered' as const },
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
    return [
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
