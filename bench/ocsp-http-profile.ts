import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * ocsp-http-profile summarises the V8 .cpuprofile files (node --cpu-prof) a profiled `device-ca serve`
 * leaves: per process busy time, then self time by area (device-ca layer, library, node internals),
 * inclusive time by area (a sample counts for every area on its stack: "how much would go if this went"),
 * the top functions by self time and the device-ca functions by inclusive time. Work outside any JS frame
 * (syscalls from libuv callbacks, GC) shows as "(program)" / "(garbage collector)".
 */

interface CpuNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: CpuNode[];
  samples: number[];
  timeDeltas: number[];
}

function shortUrl(url: string): string {
  const i = url.indexOf('/dist/');
  if (i >= 0) return url.slice(i + 1);
  const n = url.lastIndexOf('node_modules/');
  if (n >= 0) return url.slice(n);
  return url.replace(/^file:\/\//, '');
}

function area(url: string, fn: string): string {
  if (!url) return fn.startsWith('(') ? fn : '(native/builtin)';
  const u = shortUrl(url);
  const m = /^dist\/(.+)\.js$/.exec(u);
  if (m) return `device-ca ${m[1]}`;
  const nm = /^node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(u);
  if (nm) return nm[1];
  const nd = /^node:internal\/(.+)$/.exec(u) ?? /^node:(.+)$/.exec(u);
  if (nd) return `node:${nd[1]}`;
  return u;
}

export function summariseOcspProfiles(dir: string, opts: { top?: number; responses?: number } = {}): string {
  const top = opts.top ?? 18;
  const per = (ms: number) => (opts.responses ? `${((ms * 1000) / opts.responses).toFixed(1).padStart(6)} µs/resp  ` : '');
  const self = new Map<string, number>();
  const areaSelf = new Map<string, number>();
  const areaIncl = new Map<string, number>();
  const fnIncl = new Map<string, number>();
  const out: string[] = [];
  let busyAll = 0;
  for (const f of fs.readdirSync(dir).filter((x) => x.endsWith('.cpuprofile'))) {
    const p = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as CpuProfile;
    const byId = new Map(p.nodes.map((n) => [n.id, n]));
    const parent = new Map<number, number>();
    for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    let total = 0;
    let idle = 0;
    for (let i = 0; i < p.samples.length; i++) {
      const ms = (p.timeDeltas[i] ?? 0) / 1000;
      const leaf = byId.get(p.samples[i]);
      if (!leaf) continue;
      total += ms;
      if (leaf.callFrame.functionName === '(idle)') {
        idle += ms;
        continue;
      }
      const c = leaf.callFrame;
      const key = c.url ? `${c.functionName || '(anonymous)'} ${shortUrl(c.url)}:${c.lineNumber + 1}` : c.functionName || '(anonymous)';
      self.set(key, (self.get(key) ?? 0) + ms);
      const a = area(c.url, c.functionName);
      areaSelf.set(a, (areaSelf.get(a) ?? 0) + ms);
      const areas = new Set<string>();
      const fns = new Set<string>();
      for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) {
        const cf = byId.get(id)!.callFrame;
        areas.add(area(cf.url, cf.functionName));
        if (cf.url.includes('/dist/')) fns.add(`${cf.functionName || '(anonymous)'} ${shortUrl(cf.url)}:${cf.lineNumber + 1}`);
      }
      for (const a2 of areas) areaIncl.set(a2, (areaIncl.get(a2) ?? 0) + ms);
      for (const f2 of fns) fnIncl.set(f2, (fnIncl.get(f2) ?? 0) + ms);
    }
    busyAll += total - idle;
    out.push(`  ${f}: ${Math.round(total)} ms sampled, ${Math.round(total - idle)} ms busy`);
  }
  const table = (title: string, m: Map<string, number>) => {
    out.push(`  ${title}`);
    for (const [k, v] of [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, top))
      out.push(`    ${((100 * v) / Math.max(busyAll, 1)).toFixed(1).padStart(5)}%  ${Math.round(v).toString().padStart(6)} ms  ${per(v)}${k}`);
  };
  out.unshift(
    `cpu profiles in ${dir}: ${Math.round(busyAll)} ms of non-idle wall-clock samples${opts.responses ? ` for ${opts.responses} responses (${per(busyAll).trim()} incl. start-up and preemption, under the profiler)` : ''}; shares are of that`,
  );
  table('self time by area:', areaSelf);
  table('inclusive time by area (on the stack):', areaIncl);
  table('self time by function:', self);
  table('inclusive time of device-ca functions:', fnIncl);
  return out.join('\n');
}
