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

const body = (c: FuzzCase): string => c.request.body?.toString('latin1') ?? '';
const PROTO = '(__proto__|constructor|toString|hasOwnProperty|prototype|valueOf|__defineGetter__|isPrototypeOf)';

export const KNOWN_DEFECTS: KnownDefect[] = [
  {
    id: 'est-label-prototype-name',
    description: 'EST with a label named like an Object.prototype member (/.well-known/est/constructor/csrattrs) answers 500: the label table is a plain object (RA rewrite)',
    matches: (c) => c.protocol === 'est' && new RegExp(`^/\\.well-known/est/${PROTO}/`).test(c.request.path),
  },
  {
    id: 'admin-label-prototype-name',
    description: 'POST /api/v1/devices with {"label":"constructor"} (any Object.prototype name) answers 500: label looked up in a plain object (admin API validation)',
    matches: (c) => c.protocol === 'admin' && c.request.method === 'POST' && /\/api\/v1\/devices\/?$/.test(c.request.path) && new RegExp(`"label":\\s*"${PROTO}"`).test(body(c)),
  },
  {
    id: 'admin-secret-ttl-huge',
    description: 'secretTtl: 1e300 (or any TTL past the Date range) in POST /api/v1/devices or /devices/{id}/transfer answers 500: an Invalid Date reaches the store (admin API validation, zod bodies)',
    matches: (c) => c.protocol === 'admin' && c.request.method === 'POST' && /"secretTtl":/.test(body(c)),
  },
];

/** knownDefectOf: the known defect a case matches, if any. */
export function knownDefectOf(c: FuzzCase): KnownDefect | undefined {
  return KNOWN_DEFECTS.find((d) => d.matches(c));
}
