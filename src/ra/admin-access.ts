import * as crypto from 'node:crypto';
import { AuditLog } from '../audit/audit-log';
import { DeviceCaError } from '../errors/device-ca-error';
import { Page, PageRequest, Store, TokenRecord } from '../store/store';
import { Scope } from './device-lifecycle';

const TOKEN = /^dca_[A-Za-z0-9_-]{43}$/;
const sha256 = (s: string | Buffer): string => crypto.createHash('sha256').update(s).digest('hex');

/**
 * AdminAccess decides who is calling the admin API: a bearer token (stored as SHA-256; tokens are 256
 * random bits, so a slow hash adds nothing) with scope operator or owner:<name>, or a pinned operator
 * client certificate.
 */
export class AdminAccess {
  private readonly pinned: Set<string>;

  constructor(
    private readonly store: Store,
    operatorCertFingerprints: string[] = [],
  ) {
    this.pinned = new Set(operatorCertFingerprints.map((f) => f.toUpperCase()));
  }

  async createToken(scope: string, description: string | null, actor: string): Promise<{ token: string; record: TokenRecord }> {
    parseScope(scope);
    const token = 'dca_' + crypto.randomBytes(32).toString('base64url');
    const id = crypto.randomBytes(8).toString('hex');
    const record = await this.store.createToken({ id, hash: sha256(token), scope, description }, AuditLog.input('token.created', actor, id, { scope }));
    return { token, record };
  }

  revokeToken(id: string, actor: string): Promise<TokenRecord> {
    return this.store.revokeToken(id, AuditLog.input('token.revoked', actor, id, {}));
  }

  listTokens(page: PageRequest = {}): Promise<Page<TokenRecord>> {
    return this.store.listTokens(page);
  }

  /** tokenCaller: the caller a bearer token stands for, and the token's hash (what a console session keeps). */
  async tokenCaller(token: string): Promise<{ scope: Scope; actor: string; tokenHash: string }> {
    return this.tokenHashCaller(TOKEN.test(token) ? sha256(token) : null);
  }

  /**
   * tokenHashCaller: the caller behind a stored token hash, read again on each use so that revoking the
   * token ends every console session made from it.
   */
  async tokenHashCaller(tokenHash: string | null): Promise<{ scope: Scope; actor: string; tokenHash: string }> {
    const rec = tokenHash ? await this.store.findToken(tokenHash) : null;
    if (!rec || rec.revokedAt) throw new DeviceCaError('unauthenticated', 'invalid or revoked token');
    return { scope: parseScope(rec.scope), actor: `token:${rec.id}`, tokenHash: rec.hash };
  }

  /** authenticate returns the caller's scope and a name for the audit log. */
  async authenticate(authorization: string | undefined, clientCert: Buffer | undefined): Promise<{ scope: Scope; actor: string }> {
    if (authorization && /^bearer /i.test(authorization)) return this.tokenCaller(authorization.slice(7).trim());
    if (clientCert) {
      const c = this.pinnedCaller(fingerprintOfDer(clientCert));
      if (c) return c;
    }
    throw new DeviceCaError('unauthenticated', 'bearer token or operator client certificate required');
  }

  /**
   * pinnedCaller: the operator a pinned client certificate stands for (by its SHA-256 fingerprint, hex without
   * colons), or null when the fingerprint is not in admin.clientCerts. One rule for the admin API and the
   * console's certificate sign-in, which asks again on every request so that unpinning ends its sessions.
   */
  pinnedCaller(fingerprint: string): { scope: Scope; actor: string } | null {
    const fp = fingerprint.toUpperCase();
    return this.pinned.has(fp) ? { scope: { kind: 'operator' }, actor: `cert:${fp.slice(0, 16)}` } : null;
  }
}

export function parseScope(s: string): Scope {
  if (s === 'operator') return { kind: 'operator' };
  const m = /^owner:(.{1,128})$/.exec(s);
  if (m) return { kind: 'owner', owner: m[1] };
  throw new DeviceCaError('bad-request', 'scope must be "operator" or "owner:<name>"');
}

/** fingerprintOfDer: SHA-256 fingerprint (hex, upper case, no colons) of a DER certificate; a malformed one is bad-request. */
export function fingerprintOfDer(der: Buffer): string {
  try {
    return new crypto.X509Certificate(der).fingerprint256.replace(/:/g, '');
  } catch (e) {
    throw new DeviceCaError('bad-request', 'the client certificate cannot be parsed', { cause: e });
  }
}

/** fingerprintOfPem: SHA-256 fingerprint (hex, no colons) of a PEM certificate, for admin.clientCerts. */
export function fingerprintOfPem(pem: string): string {
  return new crypto.X509Certificate(pem).fingerprint256.replace(/:/g, '');
}
