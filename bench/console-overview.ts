import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { everyItem } from '../src/store/paging';
import { SqliteStore } from '../src/store/sqlite/sqlite-store';
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
