import { FuzzCase } from './fuzz-case';

/**
 * KNOWN_DEFECTS: defects the campaign found that are being fixed on other branches (issue 8). A case that
 * matches one is still sent every run; only its 5xx verdict is reported as known instead of failing the
 * suite. After merging the fixes, empty this list: the cases then fail again if the defect comes back.
 * A transport failure or a worker restart is never excused.
 */
export interface KnownDefect {
  id: string;
  /** what goes wrong, and on which branch it is being fixed */
  description: string;
  matches: (c: FuzzCase) => boolean;
}

// The three defects the first campaign found (prototype names as EST labels and admin labels, huge
// secretTtl) are fixed; their cases stay in the corpus and fail the suite if they come back.
export const KNOWN_DEFECTS: KnownDefect[] = [];

/** knownDefectOf: the known defect a case matches, if any. */
export function knownDefectOf(c: FuzzCase): KnownDefect | undefined {
  return KNOWN_DEFECTS.find((d) => d.matches(c));
}
