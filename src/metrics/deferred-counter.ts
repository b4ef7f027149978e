import { Counter, CounterConfiguration, Registry } from 'prom-client';

/** DeferredChild: one label set of a deferred counter; inc() adds 1 to a plain number. */
export interface DeferredChild {
  inc(): void;
}

/** pendingOf: the children of each counter made by deferredCounter, added to it when it is read */
const pendingOf = new WeakMap<Counter<string>, Set<PendingChild>>();

class PendingChild implements DeferredChild {
  private pending = 0;
  constructor(private readonly child: { inc(n: number): void }) {}
  inc(): void {
    this.pending++;
  }
  flush(): void {
    if (this.pending === 0) return;
    const n = this.pending;
    this.pending = 0;
    this.child.inc(n);
  }
}

/**
 * deferredCounter gets (or makes, in registry) the counter named by config and returns a function giving the
 * child of a label set whose inc() only adds to a number; the counter takes those numbers in (inc(n)) each
 * time it is read (prom-client's collect hook: /metrics, the cluster aggregation, get()), so a read sees
 * every increment made before it. Why: a prom-client child validates and hashes its labels on every inc,
 * which the OCSP front's cached answers would pay per answer (bench/ocsp-http). A counter another module
 * made without this hook gets plain children, counted at once.
 */
export function deferredCounter<L extends string>(registry: Registry, config: Omit<CounterConfiguration<L>, 'registers' | 'collect'>): (labels: Partial<Record<L, string>>) => DeferredChild {
  let counter = registry.getSingleMetric(config.name) as Counter<L> | undefined;
  if (!counter) {
    const children = new Set<PendingChild>();
    counter = new Counter<L>({
      ...config,
      registers: [registry],
      collect() {
        for (const c of children) c.flush();
      },
    });
    pendingOf.set(counter as Counter<string>, children);
  }
  const made = counter;
  const children = pendingOf.get(made as Counter<string>);
  return (labels) => {
    const child = made.labels(labels);
    if (!children) return child;
    const p = new PendingChild(child);
    children.add(p);
    return p;
  };
}
