import { CaseGenerator, FuzzCase, Generated, Protocol, describeCase, verdict } from './fuzz-case';
import { KNOWN_DEFECTS, knownDefectOf } from './known-defects';
import { Endpoint, RawReply, TransportFailure, sendRaw } from '../helpers/raw-http';
import { LogWatch, WORKER_EXITED } from './service-watch';
import { SeededRandom, deriveSeed } from './seeded-random';

/**
 * fuzz-campaign runs one protocol's cases against the running service: the fixed corpus first, then
 * random cases until the count or the time budget is spent, a few in flight at once. It collects
 * every failure (5xx, transport failure, worker restart, a broken after-hook) instead of stopping at
 * the first, so that one run reports everything it found.
 */

export interface CampaignSettings {
  seed: number;
  /** casesPerProtocol: random cases per protocol (the fixed corpus comes on top) */
  casesPerProtocol: number;
  /** secondsPerProtocol: time budget for the random cases of one protocol */
  secondsPerProtocol: number;
  concurrency: number;
  /** only: "protocol:index" keys to run alone (FUZZ_ONLY), or undefined for the whole campaign */
  only?: Set<string>;
}

/** campaignSettings reads FUZZ_SEED, FUZZ_SECONDS, FUZZ_CASES, FUZZ_ONLY and FUZZ_CONCURRENCY. */
export function campaignSettings(env: NodeJS.ProcessEnv, protocols: number): CampaignSettings {
  const num = (name: string, dflt: number): number => {
    const v = env[name];
    if (v === undefined || v === '') return dflt;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`${name}=${v}: expected a non-negative number`);
    return n;
  };
  const seconds = num('FUZZ_SECONDS', 0);
  const only = env.FUZZ_ONLY ? new Set(env.FUZZ_ONLY.split(',').map((s) => s.trim())) : undefined;
  return {
    seed: num('FUZZ_SEED', 20240808) >>> 0,
    // the short run in `npm test`: a few hundred cases per protocol, capped in time on a slow machine;
    // the long run (`npm run fuzz`, FUZZ_SECONDS=60): as many as the time allows
    casesPerProtocol: num('FUZZ_CASES', seconds > 0 ? Number.MAX_SAFE_INTEGER : 300),
    secondsPerProtocol: seconds > 0 ? seconds / protocols : 10,
    concurrency: Math.max(1, num('FUZZ_CONCURRENCY', 4)),
    only,
  };
}

export interface ProtocolResult {
  protocol: Protocol;
  sent: number;
  fixed: number;
  /** statuses: replies by HTTP status */
  statuses: Map<number, number>;
  /** fiveXx: 5xx replies the verdict refuses (defects, known or not) */
  fiveXx: number;
  /** allowed5xx: 5xx replies the verdict allows (503 with Retry-After under load, 501 from /fullcmc), counted apart so they are not read as defects */
  allowed5xx: number;
  failures: string[];
  /** known: known-defect id -> 5xx replies it excused */
  known: Map<string, number>;
  /** knownMatched: known-defect id -> cases sent that it matches */
  knownMatched: Map<string, number>;
  workerRestarts: number;
}

export async function runProtocol(protocol: Protocol, ep: Endpoint, corpus: Generated[], generate: CaseGenerator, s: CampaignSettings, watch: LogWatch): Promise<ProtocolResult> {
  const res: ProtocolResult = { protocol, sent: 0, fixed: 0, statuses: new Map(), fiveXx: 0, allowed5xx: 0, failures: [], known: new Map(), knownMatched: new Map(), workerRestarts: 0 };
  const total = corpus.length + s.casesPerProtocol;
  const deadline = Date.now() + s.secondsPerProtocol * 1000;
  let nextIndex = 0;
  const inFlight = new Set<FuzzCase>();

  const makeCase = (index: number): FuzzCase => {
    const seed = deriveSeed(s.seed, protocol, index);
    const fixed = index < corpus.length;
    const g = fixed ? corpus[index] : generate(new SeededRandom(seed), index);
    return { ...g, protocol, index, seed, fixed };
  };
  const onlyIndexes = s.only
    ? [...s.only]
        .filter((k) => k.startsWith(`${protocol}:`))
        .map((k) => Number(k.slice(protocol.length + 1)))
        .sort((a, b) => a - b)
    : undefined;
  const take = (): number | undefined => {
    if (onlyIndexes) return onlyIndexes.shift();
    const i = nextIndex++;
    if (i >= total) return undefined;
    if (i >= corpus.length && Date.now() > deadline) return undefined; // the corpus is always sent whole
    return i;
  };

  const checkLog = () => {
    const text = watch.fresh();
    if (!WORKER_EXITED.test(text)) return;
    res.workerRestarts++;
    const cases = [...inFlight].map((c) => `[${c.protocol}:${c.index}] ${c.how}`).join('\n      ');
    res.failures.push(`a worker exited while these cases were in flight (replay each with FUZZ_SEED=${s.seed} FUZZ_ONLY=<protocol:index>):\n      ${cases}\n    log: ${text.slice(-1500)}`);
  };

  const runOne = async (c: FuzzCase): Promise<void> => {
    inFlight.add(c);
    let reply: RawReply | TransportFailure;
    try {
      reply = await sendRaw(ep, c.request);
    } catch (e) {
      reply = { kind: 'transport', error: `client: ${(e as Error).message}`, received: Buffer.alloc(0) };
    }
    res.sent++;
    if (c.fixed) res.fixed++;
    if (reply.kind === 'reply') {
      res.statuses.set(reply.status, (res.statuses.get(reply.status) ?? 0) + 1);
    }
    const known = knownDefectOf(c);
    if (known) res.knownMatched.set(known.id, (res.knownMatched.get(known.id) ?? 0) + 1);
    const v = verdict(c, reply);
    if (reply.kind === 'reply' && reply.status >= 500) {
      if (v.ok) res.allowed5xx++;
      else res.fiveXx++;
    }
    if (!v.ok) {
      if (known && reply.kind === 'reply') res.known.set(known.id, (res.known.get(known.id) ?? 0) + 1);
      else res.failures.push(describeCase(c, s.seed, reply, v.why));
    }
    try {
      await c.after?.(reply);
    } catch (e) {
      res.failures.push(describeCase(c, s.seed, reply, `after the reply: ${(e as Error).message}`));
    }
    inFlight.delete(c);
    checkLog();
  };

  const lane = async (): Promise<void> => {
    for (let i = take(); i !== undefined; i = take()) await runOne(makeCase(i));
  };
  await Promise.all(Array.from({ length: s.concurrency }, lane));
  await new Promise((r) => setTimeout(r, 300)); // a worker that died on the last case is logged a moment later
  checkLog();
  return res;
}

/** summarize: one protocol's figures as printed after its run. */
export function summarize(r: ProtocolResult): string {
  const statuses = [...r.statuses]
    .sort(([a], [b]) => a - b)
    .map(([k, v]) => `${k}:${v}`)
    .join(' ');
  const known = [...r.knownMatched].map(([id, n]) => `${id} (${n} sent, ${r.known.get(id) ?? 0} answered 5xx)`).join('; ');
  const fixedNow = [...r.knownMatched].filter(([id]) => !r.known.has(id)).map(([id]) => id);
  return [
    `fuzz ${r.protocol}: ${r.sent} cases (${r.fixed} corpus), ${r.fiveXx} 5xx refused, ${r.allowed5xx} 5xx allowed, ${r.failures.length} failures, ${r.workerRestarts} worker restarts; statuses ${statuses}`,
    known ? `  known defects: ${known}` : '',
    fixedNow.length ? `  no longer reproduced (remove from KNOWN_DEFECTS): ${fixedNow.join(', ')}` : '',
  ]
    .filter(Boolean)
    .join('\n');
}

export { KNOWN_DEFECTS };
