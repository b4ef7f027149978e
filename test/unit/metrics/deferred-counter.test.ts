import { Counter, Registry } from 'prom-client';
import { deferredCounter } from '../../../src/metrics/deferred-counter';

/**
 * deferredCounter: increments held in plain numbers reach the prom-client counter whenever the registry is
 * read (the /metrics text, the JSON the cluster aggregation reads, get()), exactly once each; two users of one
 * name share the counter; a counter made elsewhere without the hook is counted at once.
 */

const value = async (r: Registry, name: string, labels: Record<string, string>) =>
  (await r.getSingleMetric(name)!.get()).values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))?.value ?? 0;

it('every increment made before a read is in that read, once', async () => {
  const r = new Registry();
  const child = deferredCounter(r, { name: 't_total', help: 't', labelNames: ['a'] });
  const x = child({ a: 'x' });
  const y = child({ a: 'y' });
  for (let i = 0; i < 5; i++) x.inc();
  y.inc();
  expect(await r.metrics()).toMatch(/^t_total\{a="x"\} 5$/m);
  expect(await r.metrics()).toMatch(/^t_total\{a="y"\} 1$/m);
  x.inc();
  expect(await value(r, 't_total', { a: 'x' })).toBe(6);
  expect(await value(r, 't_total', { a: 'x' })).toBe(6); // read again: nothing added twice
  x.inc();
  const json = await r.getMetricsAsJSON(); // what a worker sends to the cluster's aggregation
  expect((json.find((m) => m.name === 't_total')!.values as { labels: Record<string, string>; value: number }[]).find((v) => v.labels.a === 'x')?.value).toBe(7);
});

it('two users of one name share one counter, and both are counted', async () => {
  const r = new Registry();
  const first = deferredCounter(r, { name: 's_total', help: 's', labelNames: ['l'] });
  const second = deferredCounter(r, { name: 's_total', help: 's', labelNames: ['l'] });
  first({ l: 'https' }).inc();
  second({ l: 'https' }).inc();
  second({ l: 'http' }).inc();
  expect(await value(r, 's_total', { l: 'https' })).toBe(2);
  expect(await value(r, 's_total', { l: 'http' })).toBe(1);
});

it('a counter another module made without the hook gets plain children, counted at once', async () => {
  const r = new Registry();
  const made = new Counter({ name: 'p_total', help: 'p', labelNames: ['k'], registers: [r] });
  const child = deferredCounter(r, { name: 'p_total', help: 'p', labelNames: ['k'] })({ k: 'v' });
  child.inc();
  expect((await made.get()).values[0].value).toBe(1);
});
