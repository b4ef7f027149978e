import { ProfileConfig } from '../../config/schema';
import { Proofs } from '../enrollment-request';
import { Principal } from '../principal';

/** AuthMethod is the name a profile lists in `auth` to accept an authenticator. */
export type AuthMethod = ProfileConfig['auth'][number];

/**
 * Authenticator checks one kind of proof. It returns null when the request carries no proof of its kind
 * (so the next accepted authenticator may try) and throws a DeviceCaError when the proof is there but
 * does not hold: 'unauthenticated' (wrong or unknown), 'forbidden' (known but not allowed),
 * 'rate-limited' (too many failures).
 */
export interface Authenticator {
  readonly method: AuthMethod;
  authenticate(proofs: Proofs): Promise<Principal | null>;
}
