import * as crypto from 'node:crypto';
import { bufferSource } from '../../../../src/cms/byte-source';
import { AdminApp, startAdminApp } from './admin-app';

/**
 * Every admin API body and query string is checked (zod, admin-input.ts) before the RA sees it: a value out
 * of range, of the wrong type, or a field the route does not know is a 400 `bad-request` whose message names
 * the field, never a 500 (a `secretTtl` of 1e300 was "Invalid time value"), and it changes nothing.
 */

let app: AdminApp;
let active: { id: string; serial: string | null };
let transferring: { id: string; serial: string | null };
beforeAll(async () => {
  app = await startAdminApp();
  active = await app.device('active');
  transferring = await app.device('transferring');
}, 60_000);
afterAll(() => app?.close());

type Case = [string, 'GET' | 'POST', () => string, unknown, RegExp];
const huge = 1e300;

const CASES: Case[] = [
  ['register: secretTtl 1e300', 'POST', () => '/devices', { id: 'v-1', secretTtl: huge }, /^secretTtl: must be at most 365d$/],
  ['register: secretTtl "99999999y"', 'POST', () => '/devices', { id: 'v-1', secretTtl: '99999999y' }, /^secretTtl: must be at most 365d$/],
  ['register: secretTtl 0', 'POST', () => '/devices', { id: 'v-1', secretTtl: 0 }, /^secretTtl: must be at least 1s$/],
  ['register: secretTtl -5', 'POST', () => '/devices', { id: 'v-1', secretTtl: -5 }, /^secretTtl: bad duration -5$/],
  ['register: secretTtl 1.5', 'POST', () => '/devices', { id: 'v-1', secretTtl: 1.5 }, /^secretTtl: must be a whole number of seconds$/],
  ['register: secretTtl true', 'POST', () => '/devices', { id: 'v-1', secretTtl: true }, /^secretTtl: must be a duration/],
  ['register: an unknown field', 'POST', () => '/devices', { id: 'v-1', force: true }, /^body: unknown field "force"$/],
  ['register: no id', 'POST', () => '/devices', { owner: 'acme' }, /^id: is required$/],
  ['register: a numeric id', 'POST', () => '/devices', { id: 7 }, /^id: must be a string$/],
  ['register: an id of 129 characters', 'POST', () => '/devices', { id: 'a'.repeat(129) }, /^id: must be at most 128 characters$/],
  ['register: an owner with a newline', 'POST', () => '/devices', { id: 'v-1', owner: 'a\nb' }, /^owner: must be 1-128 printable characters$/],
  ['register: a label object', 'POST', () => '/devices', { id: 'v-1', label: {} }, /^label: must be a string$/],
  ['register: a query string', 'POST', () => '/devices?owner=acme', { id: 'v-1' }, /^query: unknown field "owner"$/],
  ['transfer: secretTtl 1e300', 'POST', () => `/devices/${active.id}/transfer`, { to: 'globex', secretTtl: huge }, /^secretTtl: must be at most 365d$/],
  ['transfer: no new owner', 'POST', () => `/devices/${active.id}/transfer`, {}, /^to: is required$/],
  ['release: an unknown field', 'POST', () => `/devices/${active.id}/release`, { to: 'bravo', secretTtl: '1d' }, /^body: unknown field "secretTtl"$/],
  ['release: to a number', 'POST', () => `/devices/${active.id}/release`, { to: 42 }, /^to: must be a string$/],
  ['claim: secretTtl 1e300', 'POST', () => `/devices/${transferring.id}/claim`, { secretTtl: huge }, /^secretTtl: must be at most 365d$/],
  ['cancel-release: secretTtl 1e300', 'POST', () => `/devices/${transferring.id}/cancel-release`, { secretTtl: huge }, /^secretTtl: must be at most 365d$/],
  ['suspend: a body field', 'POST', () => `/devices/${active.id}/suspend`, { now: true }, /^body: unknown field "now"$/],
  ['retire: a body field', 'POST', () => `/devices/${active.id}/retire`, { reason: 'keyCompromise' }, /^body: unknown field "reason"$/],
  ['revoke: an unknown reason', 'POST', () => `/certificates/${active.serial}/revoke`, { reason: 'stolen' }, /^reason: must be one of unspecified, keyCompromise/],
  ['revoke: an unknown field', 'POST', () => `/certificates/${active.serial}/revoke`, { reason: 'superseded', invalidity: 'yesterday' }, /^body: unknown field "invalidity"$/],
  ['approve: a body field', 'POST', () => '/requests/x/approve', { note: 'ok' }, /^body: unknown field "note"$/],
  ['devices: limit 0', 'GET', () => '/devices?limit=0', undefined, /^limit: must be at least 1$/],
  ['devices: idPrefix with a space', 'GET', () => '/devices?idPrefix=a%20b', undefined, /^idPrefix: must be 1-128 characters of letters, digits, \. _ @ -$/],
  ['devices: idPrefix empty', 'GET', () => '/devices?idPrefix=', undefined, /^idPrefix: must be 1-128 characters/],
  ['devices: limit 5000', 'GET', () => '/devices?limit=5000', undefined, /^limit: must be at most 1000$/],
  ['devices: limit 1e300', 'GET', () => '/devices?limit=1e300', undefined, /^limit: must be a whole number$/],
  ['devices: limit twice', 'GET', () => '/devices?limit=1&limit=2', undefined, /^limit: must be a string$/],
  ['devices: an unknown state', 'GET', () => '/devices?state=sleeping', undefined, /^state: must be one of registered, active, suspended, transferring, retired$/],
  ['devices: an empty label', 'GET', () => '/devices?label=', undefined, /^label: must not be empty$/],
  ['devices: a label of 65 characters', 'GET', () => `/devices?label=${'a'.repeat(65)}`, undefined, /^label: must be at most 64 characters$/],
  ['devices: an unknown parameter', 'GET', () => '/devices?sort=id', undefined, /^query: unknown field "sort"$/],
  ['certificates: an unknown status', 'GET', () => '/certificates?status=expired', undefined, /^status: must be one of valid, revoked$/],
  ['certificates: limit -1', 'GET', () => '/certificates?limit=-1', undefined, /^limit: must be a whole number$/],
  ['requests: an unknown status', 'GET', () => '/requests?status=lost', undefined, /^status: must be one of pending, approved, rejected, issued$/],
  ['audit: a time without a zone', 'GET', () => '/audit?from=2026-01-01T00:00', undefined, /^from: must be an ISO 8601 time with a zone/],
  ['audit: month 13', 'GET', () => '/audit?to=2026-13-01T00:00Z', undefined, /^to: is not a valid time$/],
  ['audit: to before from', 'GET', () => '/audit?from=2026-02-01T00:00Z&to=2026-01-01T00:00Z', undefined, /^to: must be after from$/],
  ['audit: a type with a space', 'GET', () => '/audit?type=device%20x', undefined, /^type: must be 1-64 characters/],
  ['audit: a cursor of another list', 'GET', () => '/audit?after=abc', undefined, /^after: not a cursor of this list$/],
  ['audit verify: a short hash', 'GET', () => `/audit/verify?after=1&hash=${'0'.repeat(63)}`, undefined, /^hash: must be 64 lower-case hex digits$/],
  ['audit verify: after without hash', 'GET', () => '/audit/verify?after=1', undefined, /^hash: is required after the first chunk/],
  ['audit verify: a position past the end', 'GET', () => `/audit/verify?after=999999999&hash=${'0'.repeat(64)}`, undefined, /^after: the audit log has no record 999999999$/],
  ['audit verify: limit 10001', 'GET', () => '/audit/verify?limit=10001', undefined, /^limit: must be at most 10000$/],
  ['firmware status: limit 0', 'GET', () => '/firmware/fw/status?limit=0', undefined, /^limit: must be at least 1$/],
  ['firmware status: limit 5000', 'GET', () => '/firmware/fw/status?limit=5000', undefined, /^limit: must be at most 1000$/],
  ['firmware status: limit twice', 'GET', () => '/firmware/fw/status?limit=1&limit=2', undefined, /^limit: must be a string$/],
  ['firmware status: a cursor of 257 characters', 'GET', () => `/firmware/fw/status?after=${'a'.repeat(257)}`, undefined, /^after: must be at most 256 characters$/],
  ['firmware status: an unknown parameter', 'GET', () => '/firmware/fw/status?device=d-1', undefined, /^query: unknown field "device"$/],
  ['device: a query string', 'GET', () => `/devices/${active.id}?verbose=1`, undefined, /^query: unknown field "verbose"$/],
];

it.each(CASES)('%s: 400 naming the field, nothing changes', async (_what, method, path, json, message) => {
  const before = { audit: await app.auditRecords(), active: await app.store.getDevice(active.id), transferring: await app.store.getDevice(transferring.id) };
  const r = await app.call(method, path(), { token: app.tokens.operator, json });
  expect({ status: r.status, code: r.json?.error?.code }).toEqual({ status: 400, code: 'bad-request' });
  expect(r.json.error.message).toMatch(message);
  expect({ audit: await app.auditRecords(), active: await app.store.getDevice(active.id), transferring: await app.store.getDevice(transferring.id) }).toEqual(before);
});

it('values inside the bounds are taken: secretTtl 365d and 1s, limit 1 and 1000', async () => {
  const year = await app.call('POST', '/devices', { token: app.tokens.operator, json: { id: 'v-year', secretTtl: '365d' } });
  expect(year.status).toBe(201);
  expect(new Date(year.json.secretExpiresAt).getTime() - Date.now()).toBeGreaterThan(364 * 86400_000);
  expect((await app.call('POST', '/devices', { token: app.tokens.operator, json: { id: 'v-second', secretTtl: 1 } })).status).toBe(201);
  const one = await app.call('GET', '/devices?limit=1', { token: app.tokens.operator });
  expect([one.status, one.json.items.length]).toEqual([200, 1]);
  const many = await app.call('GET', '/devices?limit=1000&state=active', { token: app.tokens.operator });
  expect(many.status).toBe(200);
  expect(many.json.items.map((d: { id: string }) => d.id)).toContain(active.id);
});

it('fuzz: firmware status with any cursor and limit answers 200 with a page (or 400 naming the field), never a 500', async () => {
  await app.store.saveFirmwareRelease({ name: 'fuzz-fw', version: 1, sha256: '00'.repeat(32), signers: [], recipients: null, releasedAt: new Date() }, bufferSource(Buffer.from('r')), {
    type: 'firmware.released',
    actor: 'test',
    subject: 'firmware:fuzz-fw',
    data: {},
  });
  const cursors = ['', '__proto__', '%00', '%FF', '%F0%9F%92%A9', "'%20OR%201=1--", 'zzz', '..%2F..', 'a'.repeat(256), crypto.randomBytes(40).toString('base64url')];
  for (const after of cursors)
    for (const limit of ['1', '1000', '', '-0', '1.0']) {
      const r = await app.call('GET', `/firmware/fuzz-fw/status?after=${after}&limit=${limit}`, { token: app.tokens.operator });
      expect([after, limit, r.status === 200 || r.status === 400]).toEqual([after, limit, true]);
      if (r.status === 200) expect([Array.isArray(r.json.devices), r.json.summary.devices, r.json.next]).toEqual([true, 0, null]);
      else expect([r.json.error.code, r.json.error.message]).toEqual(['bad-request', expect.stringMatching(/^(limit|after): /)]);
    }
});
