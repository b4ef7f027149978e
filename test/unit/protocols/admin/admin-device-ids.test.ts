import { AdminApp, startAdminApp } from './admin-app';

/**
 * Device ids are one namespace across owners (they are the CN and the EST user name), so registering a taken
 * id must fail. The rule: the refusal is one and the same 409 "device id <id> is not available" whoever holds
 * the id (the caller itself, another owner, nobody: a retired tombstone) and in whatever state, so it says
 * "taken" and never whose; every other call still answers 404 for a device outside the caller's scope.
 */

let app: AdminApp;
beforeAll(async () => {
  app = await startAdminApp();
}, 60_000);
afterAll(() => app?.close());

const register = (token: string, id: string) => app.call('POST', '/devices', { token, json: { id } });
/** shape: the reply with the id blanked, for comparing refusals of different ids */
const shape = (r: { status: number; text: string }, id: string) => ({ status: r.status, text: r.text.split(id).join('X') });

it("acme registering globex's id and globex registering its own get the same reply, which names no owner; acme still gets 404 for the device", async () => {
  const theirs = await app.device('active', 'globex');
  const mine = await app.device('active', 'globex');
  const before = await app.auditRecords();
  const fromAcme = await register(app.tokens.acme, theirs.id);
  const fromGlobex = await register(app.tokens.globex, mine.id);
  expect(shape(fromAcme, theirs.id)).toEqual(shape(fromGlobex, mine.id));
  expect(fromAcme.status).toBe(409);
  expect(fromAcme.json.error).toEqual({ code: 'conflict', message: `device id ${theirs.id} is not available` });
  expect(fromAcme.text).not.toMatch(/globex|active|exists/);
  expect(await app.auditRecords()).toBe(before);
  expect(await app.store.getDevice(theirs.id)).toMatchObject({ owner: 'globex', state: 'active' });
  expect((await app.call('GET', `/devices/${theirs.id}`, { token: app.tokens.acme })).status).toBe(404);
});

it('the same reply for a retired, a transferring, a suspended and a registered id, to owners and to the operator', async () => {
  const ids = await Promise.all((['retired', 'transferring', 'suspended', 'registered'] as const).map((s) => app.device(s, 'globex')));
  const replies = [];
  for (const token of [app.tokens.acme, app.tokens.bravo, app.tokens.globex, app.tokens.operator]) for (const d of ids) replies.push(shape(await register(token, d.id), d.id));
  expect(new Set(replies.map((r) => JSON.stringify(r))).size).toBe(1);
  expect(replies[0]).toEqual({ status: 409, text: JSON.stringify({ error: { code: 'conflict', message: 'device id X is not available' } }) });
});
