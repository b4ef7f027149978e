import * as x509 from '@peculiar/x509';
import * as crypto from 'node:crypto';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { AdminAccess, fingerprintOfDer } from '../../../src/ra/admin-access';
import { ConsoleSessions, csrfOf } from '../../../src/ra/console-sessions';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { TmpDir, makeTmpDir } from '../../helpers/tmp';

/**
 * ConsoleSessions: a session is worth exactly its token, for at most idleSeconds without use and
 * maxAgeSeconds in all; a state-changing call needs the session's CSRF token. The clock is the test's.
 */

let tmp: TmpDir;
let store: SqliteStore;
let access: AdminAccess;
let now: Date;
let sessions: ConsoleSessions;

const codeOf = async (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'resolved',
    (e: unknown) => (e instanceof DeviceCaError ? `${e.code}: ${e.message}` : String(e)),
  );
const later = (seconds: number) => (now = new Date(now.getTime() + seconds * 1000));

beforeEach(() => {
  tmp = makeTmpDir('device-ca-console-sessions-');
  store = new SqliteStore(tmp.file('store.sqlite'));
  access = new AdminAccess(store);
  // the store's own clock decides nothing here: every call is given the test's time
  now = new Date(Date.now());
  sessions = new ConsoleSessions(store, access, { idleSeconds: 600, maxAgeSeconds: 3600 }, () => now);
});
afterEach(async () => {
  await store.close();
  tmp.cleanup();
});

it('a token signs in once; the session carries its scope and actor, and its CSRF token', async () => {
  const { token, record } = await access.createToken('owner:acme', null, 'test');
  const s = await sessions.signIn(token);
  expect(s.sessionId).toMatch(/^dcs_[A-Za-z0-9_-]{43}$/);
  expect(s.csrf).toBe(csrfOf(s.sessionId));
  expect(s.scope).toEqual({ kind: 'owner', owner: 'acme' });
  const c = await sessions.authenticate(s.sessionId, s.csrf, true);
  expect({ scope: c.scope, actor: c.actor }).toEqual({ scope: { kind: 'owner', owner: 'acme' }, actor: `token:${record.id}` });
});

it('a wrong, revoked or malformed token is 401; a token that is not a string is 400', async () => {
  expect(await codeOf(sessions.signIn('dca_' + 'A'.repeat(43)))).toBe('unauthenticated: invalid or revoked token');
  expect(await codeOf(sessions.signIn('not a token'))).toBe('unauthenticated: invalid or revoked token');
  expect(await codeOf(sessions.signIn(42))).toBe('bad-request: token: expected a string');
  const { token, record } = await access.createToken('operator', null, 'test');
  await access.revokeToken(record.id, 'test');
  expect(await codeOf(sessions.signIn(token))).toBe('unauthenticated: invalid or revoked token');
});

it('a state-changing call without the right CSRF token is 403, whatever the session; a read needs none', async () => {
  const { token } = await access.createToken('operator', null, 'test');
  const s = await sessions.signIn(token);
  expect(await codeOf(sessions.authenticate(s.sessionId, undefined, true))).toBe('forbidden: missing or wrong X-CSRF-Token header');
  expect(await codeOf(sessions.authenticate(s.sessionId, csrfOf('dcs_' + 'B'.repeat(43)), true))).toBe('forbidden: missing or wrong X-CSRF-Token header');
  expect(await codeOf(sessions.authenticate(s.sessionId, s.csrf.slice(1), true))).toBe('forbidden: missing or wrong X-CSRF-Token header');
  // as many characters as the token but more bytes (a header read as latin1): refused, not a crash (found by the fuzz campaign)
  expect(await codeOf(sessions.authenticate(s.sessionId, '\u00ff'.repeat(s.csrf.length), true))).toBe('forbidden: missing or wrong X-CSRF-Token header');
  expect(await codeOf(sessions.authenticate(s.sessionId, undefined, false))).toBe('resolved');
});

it('a session unused for idleSeconds ends; each use moves the idle limit; maxAgeSeconds ends it whatever the use', async () => {
  const { token } = await access.createToken('operator', null, 'test');
  const s = await sessions.signIn(token);
  later(599);
  expect(await codeOf(sessions.authenticate(s.sessionId, undefined, false))).toBe('resolved');
  later(599);
  expect(await codeOf(sessions.authenticate(s.sessionId, undefined, false))).toBe('resolved');
  later(601);
  expect(await codeOf(sessions.authenticate(s.sessionId, undefined, false))).toBe('unauthenticated: the console session has ended; sign in again');

  const t = await sessions.signIn(token);
  for (let i = 0; i < 7; i++) {
    later(500);
    expect(await codeOf(sessions.authenticate(t.sessionId, undefined, false))).toBe('resolved');
  }
  later(500); // 4000 s after sign-in, though used every 500 s
  expect(await codeOf(sessions.authenticate(t.sessionId, undefined, false))).toBe('unauthenticated: the console session has ended; sign in again');
});

it('revoking the token ends every session made from it, at the next request', async () => {
  const { token, record } = await access.createToken('operator', null, 'test');
  const a = await sessions.signIn(token);
  const b = await sessions.signIn(token);
  await access.revokeToken(record.id, 'test');
  for (const s of [a, b]) expect(await codeOf(sessions.authenticate(s.sessionId, s.csrf, true))).toBe('unauthenticated: the token behind this console session was revoked; sign in again');
  expect(await codeOf(sessions.authenticate(a.sessionId, undefined, false))).toBe('unauthenticated: the console session has ended; sign in again');
});

it('sign-out needs the CSRF token and ends only that session', async () => {
  const { token } = await access.createToken('operator', null, 'test');
  const a = await sessions.signIn(token);
  const b = await sessions.signIn(token);
  expect(await codeOf(sessions.signOut(a.sessionId, undefined))).toBe('forbidden: missing or wrong X-CSRF-Token header');
  expect(await codeOf(sessions.authenticate(a.sessionId, undefined, false))).toBe('resolved');
  await sessions.signOut(a.sessionId, a.csrf);
  expect(await codeOf(sessions.authenticate(a.sessionId, undefined, false))).toBe('unauthenticated: the console session has ended; sign in again');
  expect(await codeOf(sessions.authenticate(b.sessionId, undefined, false))).toBe('resolved');
  expect(await codeOf(sessions.authenticate(undefined, undefined, false))).toBe('unauthenticated: not signed in to the console');
  expect(await codeOf(sessions.authenticate('dcs_short', undefined, false))).toBe('unauthenticated: not signed in to the console');
});

/** certificate: a self-signed P-256 certificate with the given serial (hex), as DER. */
async function certificate(cn: string, serial: string): Promise<Buffer> {
  const keys = (await crypto.webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as crypto.webcrypto.CryptoKeyPair;
  const c = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial,
    name: `CN=${cn}`,
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86400_000),
  });
  return Buffer.from(c.rawData);
}

describe('sign-in with a pinned operator client certificate', () => {
  let operatorCert: Buffer;
  let pinned: ConsoleSessions;
  let pinnedAccess: AdminAccess;
  beforeEach(async () => {
    operatorCert = await certificate('operator-alice', '11');
    pinnedAccess = new AdminAccess(store, [fingerprintOfDer(operatorCert)]);
    pinned = new ConsoleSessions(store, pinnedAccess, { idleSeconds: 600, maxAgeSeconds: 3600 }, () => now);
  });

  it("a pinned certificate signs in with the operator's scope; the session keeps the fingerprint, not a token, and follows the same CSRF and expiry rules", async () => {
    const s = await pinned.signInWithCertificate(operatorCert);
    expect(s.sessionId).toMatch(/^dcs_[A-Za-z0-9_-]{43}$/);
    expect(s.scope).toEqual({ kind: 'operator' });
    const fp = fingerprintOfDer(operatorCert);
    const c = await pinned.authenticate(s.sessionId, s.csrf, true);
    expect({ scope: c.scope, actor: c.actor }).toEqual({ scope: { kind: 'operator' }, actor: `cert:${fp.slice(0, 16)}` });
    // the admin API's pin says the same caller
    expect(await pinnedAccess.authenticate(undefined, operatorCert)).toEqual({ scope: c.scope, actor: c.actor });
    expect(await codeOf(pinned.authenticate(s.sessionId, undefined, true))).toBe('forbidden: missing or wrong X-CSRF-Token header');
    later(601);
    expect(await codeOf(pinned.authenticate(s.sessionId, undefined, false))).toBe('unauthenticated: the console session has ended; sign in again');
    const t = await pinned.signInWithCertificate(operatorCert);
    await pinned.signOut(t.sessionId, t.csrf);
    expect(await codeOf(pinned.authenticate(t.sessionId, undefined, false))).toBe('unauthenticated: the console session has ended; sign in again');
  });

  it('no certificate is 401; an unpinned one and a device certificate of this CA are 403 with the reason', async () => {
    expect(await codeOf(pinned.signInWithCertificate(undefined))).toBe(
      'unauthenticated: no client certificate: the browser sent none (choose the operator certificate when it asks, or sign in with a token)',
    );
    const stranger = await certificate('someone', '22');
    expect(await codeOf(pinned.signInWithCertificate(stranger))).toBe(`forbidden: client certificate SHA-256 ${fingerprintOfDer(stranger)} is not pinned for an operator (admin.clientCerts)`);
    // a device certificate as the CA records it: 32 hex digits, leading zeros kept
    const deviceCert = await certificate('dev-7', '00ab' + '12'.repeat(14));
    await store.createDevice(
      { id: 'dev-7', owner: 'acme', label: null, state: 'registered' },
      { hash: 'unused', expiresAt: new Date(now.getTime() + 3600_000) },
      { type: 'device.registered', actor: 'test', subject: 'dev-7', data: {} },
    );
    await store.recordIssuance({
      cert: {
        serial: '00ab' + '12'.repeat(14),
        deviceId: 'dev-7',
        issuer: 'device-ca-issuing',
        subject: 'CN=dev-7',
        profile: 'default',
        notBefore: new Date(now.getTime() - 60_000),
        notAfter: new Date(now.getTime() + 86400_000),
        shard: 0,
        spkiSha256: 'ab'.repeat(32),
        der: deviceCert,
      },
      audit: { type: 'certificate.issued', actor: 'test', subject: 'dev-7', data: {} },
    });
    expect(await codeOf(pinned.signInWithCertificate(deviceCert))).toBe(
      'forbidden: this is a device certificate (device dev-7): only operator certificates pinned in admin.clientCerts sign in to the console',
    );
    expect(await codeOf(pinned.signInWithCertificate(Buffer.from('not a certificate')))).toBe('bad-request: the client certificate cannot be parsed');
    // a token session is not a certificate session: the token path is untouched
    const { token } = await pinnedAccess.createToken('owner:acme', null, 'test');
    expect((await pinned.signIn(token)).scope).toEqual({ kind: 'owner', owner: 'acme' });
  });

  it('a certificate no longer pinned (admin.clientCerts changed, service restarted) ends its sessions at the next request', async () => {
    const s = await pinned.signInWithCertificate(operatorCert);
    const unpinned = new ConsoleSessions(store, new AdminAccess(store, []), { idleSeconds: 600, maxAgeSeconds: 3600 }, () => now);
    expect(await codeOf(unpinned.authenticate(s.sessionId, s.csrf, true))).toBe('unauthenticated: the certificate behind this console session is no longer pinned; sign in again');
    // and the session is gone, even for a process that still pins it
    expect(await codeOf(pinned.authenticate(s.sessionId, undefined, false))).toBe('unauthenticated: the console session has ended; sign in again');
  });
});
