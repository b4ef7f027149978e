import { RawReply, RawRequest, TransportFailure, encodeRequest } from '../helpers/raw-http';
import { SeededRandom } from './seeded-random';

/**
 * fuzz-case: what one case of the campaign is (a request made from a seed), what the campaign asks of
 * every reply (the verdict), and how a failing case is printed so that it can be replayed.
 */

export type Protocol = 'est' | 'ocsp' | 'admin' | 'console' | 'crl-ca-http' | 'tpm' | 'scep' | 'firmware';

/** Generated: a request and what was done to make it; after runs once the reply is in (state upkeep). */
export interface Generated {
  how: string;
  request: RawRequest;
  after?: (reply: RawReply | TransportFailure) => Promise<void>;
}

/** FuzzCase: a generated request with its coordinates: FUZZ_SEED=<campaign seed> FUZZ_ONLY=<protocol>:<index> replays it. */
export interface FuzzCase extends Generated {
  protocol: Protocol;
  index: number;
  /** seed: this case's own seed, derived from the campaign seed, the protocol and the index */
  seed: number;
  /** fixed: a corpus case (sent on every run) rather than a random one */
  fixed: boolean;
}

/** CaseGenerator makes case `index` of a protocol from its own PRNG. */
export type CaseGenerator = (rng: SeededRandom, index: number) => Generated;

export type Verdict = { ok: true } | { ok: false; why: string };

/**
 * verdict: the campaign's rule for a reply. A transport failure (reset, close without a reply, timeout)
 * fails, and so does any 5xx, except 503 with Retry-After (overload is an answer) and 501 from EST
 * /fullcmc (documented as not implemented, RFC 7030 §4.3 is optional).
 */
export function verdict(c: FuzzCase, reply: RawReply | TransportFailure): Verdict {
  if (reply.kind === 'transport') return { ok: false, why: `transport: ${reply.error}` };
  if (reply.status < 500) return { ok: true };
  if (reply.status === 503 && reply.headers.has('retry-after')) return { ok: true };
  if (reply.status === 501 && /\/fullcmc(\/|\?|#|$)/.test(c.request.path)) return { ok: true };
  return { ok: false, why: `HTTP ${reply.status}` };
}

const printable = (b: Buffer, max: number): string => {
  const s = b
    .subarray(0, max)
    .toString('latin1')
    .replace(/[^\x20-\x7e\r\n]/g, (ch) => `\\x${ch.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return b.length > max ? `${s}... (${b.length} bytes)` : s;
};

/** describeCase: the case as a report line block: coordinates, mutation, the request as sent (cut), the reply. */
export function describeCase(c: FuzzCase, campaignSeed: number, reply: RawReply | TransportFailure, why: string): string {
  const sent = encodeRequest(c.request, 'localhost');
  const got =
    reply.kind === 'reply'
      ? `HTTP ${reply.status} ${[...reply.headers].map(([k, v]) => `${k}: ${v.slice(0, 80)}`).join('; ')}\n    body: ${printable(reply.body, 300)}`
      : `${reply.error}; received: ${printable(reply.received, 200)}`;
  return [
    `[${c.protocol}:${c.index}] ${why} (case seed ${c.seed}; replay: FUZZ_SEED=${campaignSeed} FUZZ_ONLY=${c.protocol}:${c.index})`,
    `    mutation: ${c.how}`,
    `    request (${c.request.listener}${c.request.clientCert ? ', client certificate' : ''}): ${printable(sent, 600).replace(/\r\n/g, '\\r\\n')}`,
    `    reply: ${got}`,
  ].join('\n');
}
