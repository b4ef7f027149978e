import { isDeepStrictEqual } from 'node:util';
import type { LabelConfig, ProfileConfig } from './schema';
import * as schema from './schema';

/**
 * EnrollmentProfiles is the one normaliser of profile and label names: the configured profiles plus the
 * profiles that older configs wrote inline on an EST label, and which profile each label serves. Both
 * are Maps, so a name a client sends ("constructor", "__proto__") never reaches Object.prototype.
 */
export interface EnrollmentProfiles {
  profiles: ReadonlyMap<string, ProfileConfig>;
  /** labels: EST label -> profile name */
  labels: ReadonlyMap<string, string>;
}

/** ProfileProblem is a config error found while resolving, with the path of the key to fix. */
export interface ProfileProblem {
  path: string[];
  message: string;
}

/** ProfilesInput is the part of the parsed config the resolver reads (structural, so schema.ts can call it). */
export interface ProfilesInput {
  profiles: Record<string, ProfileConfig>;
  est: { labels: Record<string, LabelConfig> };
}

/**
 * resolveProfiles applies the label rules:
 * - `profile: P` maps the label onto profile P, which must exist, and the label carries no policy keys;
 * - without `profile`, the label serves the profile of its own name; a bare label ({}) with no such
 *   profile gets the default policy (as before profiles existed);
 * - policy keys written inline on a label (the older form) keep their meaning: they make the profile of
 *   the label's name, defaults filling the rest. Writing them inline AND configuring `profiles.<label>`
 *   is an error naming the fix, since one of the two would silently lose.
 * Profile names 'tls-server', 'ocsp-responder' and 'scep-ra' belong to the CA's own certificates.
 */
export function resolveProfiles(cfg: ProfilesInput): EnrollmentProfiles & { problems: ProfileProblem[] } {
  const defaults = schema.profileSchema.parse({});
  const problems: ProfileProblem[] = [];
  const profiles = new Map<string, ProfileConfig>(Object.entries(cfg.profiles));
  const labels = new Map<string, string>();
  for (const name of profiles.keys()) {
    if (schema.RESERVED_PROFILES.includes(name)) problems.push({ path: ['profiles', name], message: `"${name}" is the name of a built-in CA profile; choose another` });
  }
  const entries = Object.entries(cfg.est.labels);
  // first the labels that make or take the profile of their own name, then those naming another profile
  for (const [label, l] of entries) {
    if (l.profile !== undefined) continue;
    const at = ['est', 'labels', label];
    const inline = schema.POLICY_KEYS.filter((k) => l[k] !== undefined);
    labels.set(label, label);
    if (schema.RESERVED_PROFILES.includes(label)) {
      problems.push({ path: at, message: `"${label}" is the name of a built-in CA profile: give this label a profile of another name (profile: <name>)` });
      continue;
    }
    const existing = profiles.get(label);
    if (inline.length === 0) {
      if (!existing) profiles.set(label, defaults);
      continue;
    }
    if (existing && !isDeepStrictEqual(existing, defaults)) {
      problems.push({ path: [...at, inline[0]], message: `policy set both inline and in profiles.${label}: move ${inline.join(', ')} into profiles.${label}` });
      continue;
    }
    profiles.set(label, schema.profileSchema.parse(Object.fromEntries(inline.map((k) => [k, l[k]]))));
  }
  for (const [label, l] of entries) {
    if (l.profile === undefined) continue;
    const at = ['est', 'labels', label];
    const inline = schema.POLICY_KEYS.filter((k) => l[k] !== undefined);
    if (inline.length) problems.push({ path: [...at, inline[0]], message: `a label that names a profile carries no policy: move ${inline.join(', ')} to profiles.${l.profile}` });
    else if (!profiles.has(l.profile)) problems.push({ path: [...at, 'profile'], message: `no profile "${l.profile}" under profiles` });
    labels.set(label, l.profile);
  }
  // RFC 5280 §4.2.1.12: keyEncipherment (TLS 1.2 RSA key transport) is a server's key usage; with clientAuth alone it is inconsistent
  for (const [name, p] of profiles) {
    if (!p.keyEncipherment || p.serverAuth) continue;
    const at = Object.hasOwn(cfg.profiles, name) ? ['profiles', name, 'keyEncipherment'] : ['est', 'labels', name, 'keyEncipherment'];
    problems.push({ path: at, message: 'keyEncipherment is for TLS servers doing RSA key transport: set serverAuth: true too, or drop keyEncipherment (RFC 5280 §4.2.1.12)' });
  }
  // a PCR policy is checked with the key's evidence: on a profile that ignores evidence it would do nothing
  // so is a TPM allow-list
  for (const [name, p] of profiles) {
    if (p.attestation !== 'off') continue;
    for (const key of ['pcrPolicy', 'allowedTpms', 'tpmKeyDecrypt'] as const) {
      if (!p[key]) continue;
      const at = Object.hasOwn(cfg.profiles, name) ? ['profiles', name, key] : ['est', 'labels', name, key];
      problems.push({ path: at, message: `${key} is checked with TPM evidence: set attestation: required (or optional)` });
    }
  }
  return { profiles, labels, problems };
}

/**
 * scepPathProblems checks what a SCEP path may serve: an existing profile that accepts the one-time secret
 * ('basic'), since SCEP carries it in the CSR challengePassword (RFC 8894 §2.2), and without
 * proofOfPossession, whose RFC 7030 §3.5 check needs that same challengePassword to hold the TLS channel
 * binding (and SCEP runs over plain HTTP, with no TLS channel to bind to).
 */
export function scepPathProblems(paths: Record<string, { profile: string }>, profiles: ReadonlyMap<string, ProfileConfig>): ProfileProblem[] {
  const problems: ProfileProblem[] = [];
  for (const [name, p] of Object.entries(paths)) {
    const at = ['scep', 'paths', name, 'profile'];
    const profile = profiles.get(p.profile);
    if (!profile) problems.push({ path: at, message: `no profile "${p.profile}" under profiles` });
    else if (profile.proofOfPossession)
      problems.push({ path: at, message: `profile "${p.profile}" requires proofOfPossession, which SCEP cannot give (challengePassword carries the enrollment secret)` });
    else if (!profile.auth.includes('basic'))
      problems.push({ path: at, message: `profile "${p.profile}" does not accept the one-time secret (auth: basic), the only credential of a SCEP enrollment` });
  }
  return problems;
}
