import { z } from 'zod';
import { parseDuration } from '../../config/duration';
import { DeviceCaError } from '../../errors/device-ca-error';
import { DEVICE_STATES, REVOCATION_REASONS } from '../../store/store';

/**
 * admin-input: the shape of every admin API body and query string, in zod (the library the config uses).
 * Objects are strict (an unknown field is a 400 naming it, not silently ignored) and every number and
 * string is bounded, so no value reaches the RA that it cannot represent (a `secretTtl` of 1e300 was an
 * "Invalid time value" 500). These are syntax checks only; every decision stays in ra/.
 */

/** MAX_SECRET_TTL_SECONDS: a one-time secret lives at most a year (the "1y" of parseDuration). */
export const MAX_SECRET_TTL_SECONDS = 31_536_000;

/** text: a string field; a missing required one says so rather than "expected string, received undefined" */
const text = () => z.string({ error: (iss) => (iss.input === undefined ? 'is required' : 'must be a string') });
const owner = text().regex(/^[^\u0000-\u001f]{1,128}$/, 'must be 1-128 printable characters');
const deviceId = text().min(1, 'must not be empty').max(128, 'must be at most 128 characters');
const cursor = text().max(256, 'must be at most 256 characters');

const secretTtl = z
  .union([z.string().max(32, 'must be at most 32 characters'), z.number()], { error: 'must be a duration such as "7d" or a number of seconds' })
  .transform((v, ctx) => {
    try {
      return parseDuration(v);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: (e as Error).message });
      return z.NEVER;
    }
  })
  .pipe(z.number().min(1, 'must be at least 1s').max(MAX_SECRET_TTL_SECONDS, 'must be at most 365d').int('must be a whole number of seconds'));

/** isoTime: an ISO 8601 date-time with a zone (Z or ±hh:mm), as Date; a bare local time would mean the server's zone */
const isoTime = () =>
  text()
    .regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})$/, 'must be an ISO 8601 time with a zone, such as 2026-01-31T12:00Z')
    .transform((v, ctx) => {
      const d = new Date(v);
      if (Number.isNaN(d.getTime())) {
        ctx.addIssue({ code: 'custom', message: 'is not a valid time' });
        return z.NEVER;
      }
      return d;
    });

/** limit: query strings are text; a page is 1-1000 items, and a value outside that is refused, not clamped */
const limit = text()
  .regex(/^\d{1,7}$/, 'must be a whole number')
  .transform(Number)
  .pipe(z.number().min(1, 'must be at least 1').max(1000, 'must be at most 1000'));

export const BODY = {
  register: z.strictObject({ id: deviceId, owner: owner.optional(), label: text().min(1, 'must not be empty').max(64, 'must be at most 64 characters').optional(), secretTtl: secretTtl.optional() }),
  none: z.strictObject({}),
  transfer: z.strictObject({ to: owner, secretTtl: secretTtl.optional() }),
  release: z.strictObject({ to: owner }),
  command: z.strictObject({ command: z.enum(['retire', 'transfer']) }),
  newSecret: z.strictObject({ secretTtl: secretTtl.optional() }),
  revoke: z.strictObject({ reason: z.enum(REVOCATION_REASONS as [string, ...string[]]).optional() }),
};

export const QUERY = {
  none: z.strictObject({}),
  /** page: a list with nothing but paging (the console's device history) */
  page: z.strictObject({ limit: limit.optional(), after: cursor.optional() }),
  devices: z.strictObject({
    idPrefix: text()
      .regex(/^[A-Za-z0-9._@-]{1,128}$/, 'must be 1-128 characters of letters, digits, . _ @ -')
      .optional(),
    owner: owner.optional(),
    state: z.enum(DEVICE_STATES as [string, ...string[]]).optional(),
    label: text().min(1, 'must not be empty').max(64, 'must be at most 64 characters').optional(),
    limit: limit.optional(),
    after: cursor.optional(),
  }),
  certificates: z.strictObject({ device: deviceId.optional(), status: z.enum(['valid', 'revoked']).optional(), limit: limit.optional(), after: cursor.optional() }),
  /** audit: filters of the audit listing; times are ISO 8601 with a zone (what the console's date fields send) */
  audit: z.strictObject({
    device: deviceId.optional(),
    type: text()
      .regex(/^[a-z0-9._-]{1,64}$/, 'must be 1-64 characters of a-z, 0-9, . _ -')
      .optional(),
    from: isoTime().optional(),
    to: isoTime().optional(),
    limit: limit.optional(),
    after: cursor.optional(),
  }),
  /** auditVerify: a chunk of the chain: after a seq whose record had `hash` (the previous chunk's position) */
  auditVerify: z.strictObject({
    after: text()
      .regex(/^\d{1,15}$/, 'must be a record number')
      .transform(Number)
      .optional(),
    hash: text()
      .regex(/^[0-9a-f]{64}$/, 'must be 64 lower-case hex digits')
      .optional(),
    limit: text()
      .regex(/^\d{1,7}$/, 'must be a whole number')
      .transform(Number)
      .pipe(z.number().min(1, 'must be at least 1').max(10_000, 'must be at most 10000'))
      .optional(),
  }),
  requests: z.strictObject({ status: z.enum(['pending', 'approved', 'rejected', 'issued']).optional(), limit: limit.optional(), after: cursor.optional() }),
};

/**
 * parseInput checks a body or query string against its schema; a failure is 'bad-request' naming the
 * field ("secretTtl: must be at most 365d", "unknown field \"force\"") and never echoing its value.
 */
export function parseInput<S extends z.ZodType>(schema: S, value: unknown, where: 'body' | 'query'): z.output<S> {
  const r = schema.safeParse(value ?? {});
  if (r.success) return r.data;
  const i = r.error.issues[0];
  if (i.code === 'unrecognized_keys') throw new DeviceCaError('bad-request', `${where}: unknown field${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => JSON.stringify(k.slice(0, 64))).join(', ')}`);
  const field = i.path.length ? i.path.map(String).join('.') : where;
  const message = i.code === 'invalid_value' ? `must be one of ${i.values.map(String).join(', ')}` : i.message;
  throw new DeviceCaError('bad-request', `${field}: ${message}`);
}
