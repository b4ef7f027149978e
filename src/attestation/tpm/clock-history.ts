import { AttestationVerdict, fail } from './attestation-verdict';
import { TpmClockInfo } from './tpms-attest';

/** ClockCounters: the clockInfo counters compared between statements (TpmClockInfo without `safe`). */
export type ClockCounters = Pick<TpmClockInfo, 'clock' | 'resetCount' | 'restartCount'>;

/**
 * checkClockSafe: the TPM must vouch that no clock value it reported was ever higher than this one
 * (clockInfo.safe, TPM 2.0 Part 2 §10.11.1). A TPM clears it after an unorderly shutdown lost clock
 * updates; a clock that may have gone backwards cannot be compared with the history.
 */
export function checkClockSafe(c: TpmClockInfo, what: string): AttestationVerdict<null> {
  return c.safe ? { ok: true, value: null } : fail('clock-unsafe', `${what}: clockInfo.safe is not set`);
}

/**
 * checkClockHistory: a statement must not come from before the last one accepted from the same AK. On a
 * genuine TPM resetCount only grows (TPM Reset), restartCount only grows until the next Reset sets it back
 * to 0 (Part 1 §36.6), and clock, with `safe` set, never goes back. A smaller value means an old
 * statement or a TPM whose state was rolled back (a copied or restored virtual TPM). Equal values pass: two
 * statements signed in the same millisecond.
 */
export function checkClockHistory(last: ClockCounters | null, next: ClockCounters, what: string): AttestationVerdict<null> {
  if (!last) return { ok: true, value: null };
  if (next.resetCount < last.resetCount) return fail('clock-backwards', `${what}: resetCount ${next.resetCount} is below the last accepted ${last.resetCount}`);
  if (next.resetCount === last.resetCount && next.restartCount < last.restartCount) {
    return fail('clock-backwards', `${what}: restartCount ${next.restartCount} is below the last accepted ${last.restartCount}`);
  }
  if (next.clock < last.clock) return fail('clock-backwards', `${what}: clock ${next.clock} is below the last accepted ${last.clock}`);
  return { ok: true, value: null };
}

/** newestClock: the later of two accepted statements' counters (resetCount, then restartCount, then clock). */
export function newestClock(a: ClockCounters, b: ClockCounters): ClockCounters {
  if (a.resetCount !== b.resetCount) return a.resetCount > b.resetCount ? a : b;
  if (a.restartCount !== b.restartCount) return a.restartCount > b.restartCount ? a : b;
  return a.clock >= b.clock ? a : b;
}
