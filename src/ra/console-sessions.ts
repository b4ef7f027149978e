import * as crypto from 'node:crypto';
import { DeviceCaError } from '../errors/device-ca-error';
import { Store } from '../store/store';
import { AdminAccess, fingerprintOfDer } from './admin-access';
import { Scope } from './device-lifecycle';

const SESSION_ID = /^dcs_[A-Za-z0-9_-]{43}$/;
/** CERT_CREDENTIAL: a session's tokenHash for a certificate sign-in: `cert:` + the fingerprint (a token hash is bare hex, so they never meet) */
const CERT_CREDENTIAL = 'cert:';
const sha256 = (s: string): string => crypto.createHash('sha256').update(s).digest('hex');

/** ConsoleCaller: who a console request acts as (the same shape the admin API authenticates to), and its session's CSRF token. */
export interface ConsoleCaller {
  scope: Scope;
  actor: string;
  csrf: string;
  idleExpiresAt: Date;
}

/** NewSession: what a sign-in hands the adapter: the cookie value, its CSRF token, the scope and the two expiries. */
export interface NewSession {
  sessionId: string;
  csrf: string;
  scope: Scope;
  expiresAt: Date;
  idleExpiresAt: Date;
}

export interface ConsoleSessionSettings {
  /** idleSeconds: a session unused this long ends */
  idleSeconds: number;
  /** maxAgeSeconds: a session ends this long after sign-in */
  maxAgeSeconds: number;
}

/**
 * ConsoleSessions decides who is using the operator console. An admin token, or a pinned operator client
 * certificate, is exchanged once for a session (256 random bits, kept in the store only as SHA-256, so every node knows it and a sign-out ends
 * it everywhere). A session is worth exactly its token: the token's scope is read again on every request,
 * and revoking the token ends the session. A state-changing request must also carry the session's CSRF
 * token, derived from the session id (which only the HttpOnly cookie holds): a cross-site page can make the
 * browser send the cookie but cannot read the CSRF token (OWASP "synchronizer token", here stateless).
 */
export class ConsoleSessions {
  constructor(
    private readonly store: Store,
    private readonly access: AdminAccess,
    private readonly settings: ConsoleSessionSettings,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  /** signIn exchanges an admin token for a new session; the token itself is not kept. */
  async signIn(token: unknown): Promise<NewSession> {
    if (typeof token !== 'string') throw new DeviceCaError('bad-request', 'token: expected a string');
    const caller = await this.access.tokenCaller(token.trim());
    return this.open(caller.tokenHash, caller.scope);
  }

  /**
   * signInWithCertificate exchanges the TLS client certificate for a session when its SHA-256 fingerprint is
   * pinned for an operator (admin.clientCerts, the admin API's rule: AdminAccess.pinnedCaller), with that
   * operator's scope. The TLS handshake proved the key (CertificateVerify, RFC 8446 §4.4.3); the pin says
   * whose it is. No certificate is 401; a device certificate of this CA or any other certificate not pinned
   * is 403, saying which. The session keeps the fingerprint and asks the pin again on every request.
   */
  async signInWithCertificate(clientCert: Buffer | undefined): Promise<NewSession> {
    if (!clientCert) {
      throw new DeviceCaError('unauthenticated', 'no client certificate: the browser sent none (choose the operator certificate when it asks, or sign in with a token)');
    }
    const fp = fingerprintOfDer(clientCert);
    const caller = this.access.pinnedCaller(fp);
    if (caller) return this.open(CERT_CREDENTIAL + fp, caller.scope);
    const serial = new crypto.X509Certificate(clientCert).serialNumber.toLowerCase().padStart(32, '0'); // as the CA records it
    const issued = await this.store.getCertificate(serial);
    if (issued && issued.der.equals(clientCert)) {
      throw new DeviceCaError(
        'forbidden',
        `this is a device certificate${issued.deviceId ? ` (device ${issued.deviceId})` : ''}: only operator certificates pinned in admin.clientCerts sign in to the console`,
      );
    }
    throw new DeviceCaError('forbidden', `client certificate SHA-256 ${fp} is not pinned for an operator (admin.clientCerts)`);
  }

  private async open(credential: string, scope: Scope): Promise<NewSession> {
    const sessionId = 'dcs_' + crypto.randomBytes(32).toString('base64url');
    const now = this.clock();
    const expiresAt = new Date(now.getTime() + this.settings.maxAgeSeconds * 1000);
    const idleExpiresAt = new Date(Math.min(now.getTime() + this.settings.idleSeconds * 1000, expiresAt.getTime()));
    await this.store.createSession({ idHash: sha256(sessionId), tokenHash: credential, createdAt: now, idleExpiresAt, expiresAt }, now);
    return { sessionId, csrf: csrfOf(sessionId), scope, expiresAt, idleExpiresAt };
  }

  /**
   * authenticate: the caller behind a session cookie. stateChanging requests must carry the session's CSRF
   * token (403 without it, before anything else is read or written); an unknown, expired or signed-out
   * session, or one whose token was revoked, is 401.
   */
  async authenticate(sessionId: string | undefined, csrf: string | undefined, stateChanging: boolean): Promise<ConsoleCaller> {
    if (!sessionId || !SESSION_ID.test(sessionId)) throw new DeviceCaError('unauthenticated', 'not signed in to the console');
    const expected = csrfOf(sessionId);
    if (stateChanging && !sameToken(csrf, expected)) throw new DeviceCaError('forbidden', 'missing or wrong X-CSRF-Token header');
    const s = await this.store.touchSession(sha256(sessionId), this.clock(), this.settings.idleSeconds * 1000);
    if (!s) throw new DeviceCaError('unauthenticated', 'the console session has ended; sign in again');
    if (s.tokenHash.startsWith(CERT_CREDENTIAL)) {
      const c = this.access.pinnedCaller(s.tokenHash.slice(CERT_CREDENTIAL.length));
      if (c) return { scope: c.scope, actor: c.actor, csrf: expected, idleExpiresAt: s.idleExpiresAt };
      await this.store.deleteSession(s.idHash);
      throw new DeviceCaError('unauthenticated', 'the certificate behind this console session is no longer pinned; sign in again');
    }
    try {
      const c = await this.access.tokenHashCaller(s.tokenHash);
      return { scope: c.scope, actor: c.actor, csrf: expected, idleExpiresAt: s.idleExpiresAt };
    } catch (e) {
      await this.store.deleteSession(s.idHash);
      throw new DeviceCaError('unauthenticated', 'the token behind this console session was revoked; sign in again', { cause: e });
    }
  }

  /** signOut ends the session (it must be a live one, with its CSRF token: a cross-site page cannot sign anyone out). */
  async signOut(sessionId: string | undefined, csrf: string | undefined): Promise<void> {
    await this.authenticate(sessionId, csrf, true);
    await this.store.deleteSession(sha256(sessionId!));
  }
}

/** sameToken: constant-time comparison of the bytes (a header of as many characters can have more bytes). */
function sameToken(given: string | undefined, expected: string): boolean {
  if (typeof given !== 'string') return false;
  const a = Buffer.from(given, 'utf8');
  const b = Buffer.from(expected, 'utf8');
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

/** csrfOf: the session's CSRF token, a one-way function of its id (so nothing more is stored). */
export function csrfOf(sessionId: string): string {
  return crypto.createHash('sha256').update('device-ca console csrf\0').update(sessionId).digest('base64url');
}
