import { DeviceCaError } from '../errors/device-ca-error';

/**
 * firmware-policy: the M-of-N rule over signer roles (issue 13), one function for the release decision
 * (ra/firmware-release.ts) and for the device's own check (cms/firmware-release-verify.ts), so that both
 * refuse the same packages. It lives beside the device's verifier because the device has no ra/.
 */

/** RolePolicy: `require` distinct roles out of `roles` must have signed (all of them when require = roles.length). */
export interface RolePolicy {
  roles: string[];
  require: number;
}

/** rolePolicy checks and builds a policy; `require` defaults to every role. 'bad-request' for an empty list or a count out of 1..roles. */
export function rolePolicy(roles: readonly string[], require?: number): RolePolicy {
  const unique = [...new Set(roles)];
  if (unique.length === 0) throw new DeviceCaError('bad-request', 'a policy names at least one role');
  const m = require ?? unique.length;
  if (!Number.isInteger(m) || m < 1 || m > unique.length) throw new DeviceCaError('bad-request', `--require must be between 1 and the number of roles (${unique.length})`);
  return { roles: unique, require: m };
}

/** policyShortfall: null when the roles that signed meet the policy, else how many more are needed and which roles could give them. */
export function policyShortfall(p: RolePolicy, signed: ReadonlySet<string>): { more: number; missing: string[] } | null {
  const missing = p.roles.filter((r) => !signed.has(r));
  const more = p.require - (p.roles.length - missing.length);
  return more > 0 ? { more, missing } : null;
}

/** describeShortfall: "role a, b" when every role is required, else "1 more of role a, b (2 of a, b, c)". */
export function describeShortfall(p: RolePolicy, s: { more: number; missing: string[] }): string {
  if (p.require === p.roles.length) return `role ${s.missing.join(', ')}`;
  return `${s.more} more of role ${s.missing.join(', ')} (${p.require} of ${p.roles.join(', ')})`;
}
