import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * est-profile summarises V8 .cpuprofile files (node --cpu-prof) of the server's processes: self time
 * by function, and inclusive time of the functions named in INCLUSIVE (the enrollment path's parts).
 * Native work not under any JS frame (the TLS handshake's OpenSSL calls from libuv callbacks) shows
 * as "(program)"; work on the libuv thread pool (scrypt) is not in a main-thread profile at all.
 */

interface CpuNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  startTime: number;
  nodes: CpuNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileLine {
  name: string;
  ms: number;
  share: number;
}

export interface ProfileSummary {
  files: number;
  totalMs: number;
  busyMs: number;
  self: ProfileLine[];
  inclusive: ProfileLine[];
  byArea: ProfileLine[];
}

/** INCLUSIVE: functions whose total (self + callees) time says where an enrollment's time goes. */
const INCLUSIVE = [
  'enroll',
  'enrollInner',
  'classifyClientCert',
  'authenticateSecret',
  'checkIdentity',
  'parseCsr',
  'intent',
  'appendAudit',
  'recordIssuance',
  'getCertificate',
  'getDevice',
  'issue',
  'sign',
  'certsOnly',
  'credentials',
  'getPeerCertificate',
  'X509Certificate',
  'channelBinding',
  'middleware',
  'write',
  'onhandshakedone',
  'onnewsession',
  'emitKeylog',
];

function shortUrl(url: string): string {
  const i = url.indexOf('/dist/');
  if (i >= 0) return url.slice(i + 1);
  const n = url.indexOf('node_modules/');
  if (n >= 0) return url.slice(n);
  return url.replace(/^file:\/\//, '');
}

/** area groups a frame's file into a part of the stack: device-ca layer, library, node internals. */
function area(url: string, fn: string): string {
  if (!url) return fn.startsWith('(') ? fn : '(native/builtin)';
  const u = shortUrl(url);
  const m = /^dist\/([^/]+)/.exec(u);
  if (m) return `device-ca ${m[1]}/`;
  const nm = /^node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(u);
  if (nm) return nm[1];
  const nd = /^node:internal\/([^/]+(?:\/[^/]+)?)/.exec(u) ?? /^node:([^/]+)/.exec(u);
  if (nd) return `node:${nd[1].replace(/\.js$/, '')}`;
  return u;
}

/**
 * summariseProfiles merges every .cpuprofile in dir (the cluster workers) and returns the top costs of
 * the samples taken within `window` (microseconds of process.hrtime, the clock V8 stamps samples with),
 * so start-up and shutdown are left out.
 */
export function summariseProfiles(dir: string, window?: { startUs: number; endUs: number }, top = 20): ProfileSummary {
  const selfMs = new Map<string, number>();
  const inclMs = new Map<string, number>();
  const areaMs = new Map<string, number>();
  let totalMs = 0;
  let files = 0;
  for (const f of fs.readdirSync(dir).filter((x) => x.endsWith('.cpuprofile'))) {
    const p = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as CpuProfile;
    files++;
    const byId = new Map(p.nodes.map((n) => [n.id, n]));
    const parent = new Map<number, number>();
    for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    const key = (n: CpuNode) => {
      const c = n.callFrame;
      return c.url ? `${c.functionName || '(anonymous)'} ${shortUrl(c.url)}:${c.lineNumber + 1}` : c.functionName || '(anonymous)';
    };
    let t = p.startTime;
    for (let i = 0; i < p.samples.length; i++) {
      t += p.timeDeltas[i] ?? 0;
      if (window && (t < window.startUs || t > window.endUs)) continue;
      const ms = (p.timeDeltas[i] ?? 0) / 1000;
      const leaf = byId.get(p.samples[i]);
      if (!leaf) continue;
      totalMs += ms;
      selfMs.set(key(leaf), (selfMs.get(key(leaf)) ?? 0) + ms);
      const a = area(leaf.callFrame.url, leaf.callFrame.functionName);
      areaMs.set(a, (areaMs.get(a) ?? 0) + ms);
      const seen = new Set<string>();
      for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) {
        const fn = byId.get(id)!.callFrame.functionName;
        if (INCLUSIVE.includes(fn) && !seen.has(fn)) {
          seen.add(fn);
          inclMs.set(fn, (inclMs.get(fn) ?? 0) + ms);
        }
      }
    }
  }
  const idle = selfMs.get('(idle)') ?? 0;
  const busyMs = totalMs - idle;
  const lines = (m: Map<string, number>, skipIdle: boolean) =>
    [...m.entries()]
      .filter(([k]) => !(skipIdle && k === '(idle)'))
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, ms]) => ({ name, ms: Math.round(ms), share: Math.round((1000 * ms) / Math.max(busyMs, 1)) / 10 }));
  return { files, totalMs: Math.round(totalMs), busyMs: Math.round(busyMs), self: lines(selfMs, true), inclusive: lines(inclMs, false), byArea: lines(areaMs, true) };
}
