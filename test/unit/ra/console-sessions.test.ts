import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { AdminAccess } from '../../../src/ra/admin-access';
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
