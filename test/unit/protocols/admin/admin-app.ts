import express from 'express';
import * as crypto from 'node:crypto';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { verifyAuditChain } from '../../../../src/audit/audit-verify';
import { adminRouter } from '../../../../src/protocols/admin/admin-router';
import { consoleRouter } from '../../../../src/protocols/console/console-router';
import { AdminAccess } from '../../../../src/ra/admin-access';
import { AuditBrowser } from '../../../../src/ra/audit-browser';
import { ConsoleOverview } from '../../../../src/ra/console-overview';
import { ConsoleSessions } from '../../../../src/ra/console-sessions';
import { DeviceLifecycle, OPERATOR } from '../../../../src/ra/device-lifecycle';
import { FirmwareReceipts } from '../../../../src/ra/firmware-receipts';
import { DeviceCommands } from '../../../../src/ra/device-commands';
import { RegistrationAuthority } from '../../../../src/ra/registration-authority';
import { SqliteStore } from '../../../../src/store/sqlite/sqlite-store';
import { TestCa, makeTestCa } from '../../../fixtures/test-ca';

/**
 * AdminApp: the admin router mounted in-process, over HTTP on loopback, with the real RA, lifecycle,
 * token check and SQLite store the service wires (main.ts), so a test sees exactly the statuses and
 * bodies a client would. Fixtures are made through the same RA and store, as an operator.
 */
export interface AdminApp {
  ca: TestCa;
  store: SqliteStore;
  lifecycle: DeviceLifecycle;
  access: AdminAccess;
  ra: RegistrationAuthority;
  router: express.Router;
  /** tokens: one bearer token per kind of caller; `revoked` was valid and then revoked, `bad` never existed */
  tokens: { operator: string; acme: string; bravo: string; globex: string; revoked: string; bad: string };
  call(method: string, p: string, o?: { token?: string; json?: unknown; raw?: string; contentType?: string }): Promise<ApiReply>;
  /** sessions: the console's sessions over the same store and tokens (the console is mounted at /console) */
  sessions: ConsoleSessions;
  consoleRouter: express.Router;
  /** consoleBase: http://127.0.0.1:<port>/console/api */
  consoleBase: string;
  /** consoleCall: a request to /console/api + p with a session cookie and, when given, the X-CSRF-Token header */
  consoleCall(method: string, p: string, o?: { session?: string; csrf?: string; json?: unknown; headers?: Record<string, string> }): Promise<ApiReply>;
  /** device registers an acme device and brings it to a state (as an operator); returns id and certificate serial */
  device(state: 'registered' | 'active' | 'suspended' | 'transferring' | 'retired', owner?: string): Promise<{ id: string; serial: string | null }>;
  /** pendingRequest queues a manual-approval request for a new device of acme */
  pendingRequest(): Promise<string>;
  auditRecords(): Promise<number>;
  close(): Promise<void>;
}

export interface ApiReply {
  status: number;
  headers: Headers;
  text: string;
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

let seq = 0;

export async function startAdminApp(): Promise<AdminApp> {
  const ca = await makeTestCa({ 'enrollment.secretHashCost': 10 }, 'device-ca-admin-app-');
  const store = new SqliteStore(path.join(ca.dir, 'device-ca.sqlite'));
  const ra = new RegistrationAuthority({ config: ca.cfg, store, ca: ca.ca, bootstrap: { anchors: [], deviceIdFrom: ca.cfg.bootstrap.deviceIdFrom } });
  const lifecycle = new DeviceLifecycle(ca.cfg, store);
  const access = new AdminAccess(store);
  const audit = new AuditBrowser(store);
  const firmware = new FirmwareReceipts(store);
  const commands = new DeviceCommands(ca.cfg, store, ca.keys);
  const router = adminRouter({ access, lifecycle, ra, audit, bodyLimit: ca.cfg.https.bodyLimit, firmware, commands });
  const sessions = new ConsoleSessions(store, access, { idleSeconds: 900, maxAgeSeconds: 3600 });
  const consoleRoutes = consoleRouter({
    sessions,
    overview: new ConsoleOverview({
      store,
      lifecycle,
      ra,
      issuer: 'device-ca-issuing',
      crlShards: 2,
      ocspResponderCertificate: () => null,
      storeHealth: async () => undefined,
      keyHealth: async () => undefined,
    }),
    admin: { access, lifecycle, ra, audit, bodyLimit: ca.cfg.https.bodyLimit, firmware, commands },
    maxAgeSeconds: 3600,
    assetsDir: path.join(ca.dir, 'no-console-assets'),
  });
  const app = express();
  app.use('/api/v1', router);
  app.use('/console', consoleRoutes);
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1`;
  const consoleBase = `http://127.0.0.1:${(server.address() as AddressInfo).port}/console/api`;

  const make = async (scope: string) => (await access.createToken(scope, null, 'test')).token;
  const revoked = await access.createToken('operator', 'revoked', 'test');
  await access.revokeToken(revoked.record.id, 'test');
  const tokens = {
    operator: await make('operator'),
    acme: await make('owner:acme'),
    bravo: await make('owner:bravo'),
    globex: await make('owner:globex'),
    revoked: revoked.token,
    bad: 'dca_' + crypto.randomBytes(32).toString('base64url'),
  };

  async function call(method: string, p: string, o: { token?: string; json?: unknown; raw?: string; contentType?: string } = {}): Promise<ApiReply> {
    const headers: Record<string, string> = {};
    if (o.token) headers.authorization = `Bearer ${o.token}`;
    const body = o.raw ?? (o.json === undefined ? undefined : JSON.stringify(o.json));
    if (body !== undefined) headers['content-type'] = o.contentType ?? 'application/json';
    const r = await fetch(base + p, { method, headers, body });
    const text = await r.text();
    return { status: r.status, headers: r.headers, text, json: /^application\/json/.test(r.headers.get('content-type') ?? '') ? JSON.parse(text) : undefined };
  }

  async function consoleCall(method: string, p: string, o: { session?: string; csrf?: string; json?: unknown; headers?: Record<string, string> } = {}): Promise<ApiReply> {
    const headers: Record<string, string> = { ...o.headers };
    if (o.session) headers.cookie = `dca_console=${o.session}`;
    if (o.csrf) headers['x-csrf-token'] = o.csrf;
    const body = o.json === undefined ? undefined : JSON.stringify(o.json);
    if (body !== undefined) headers['content-type'] = 'application/json';
    const r = await fetch(consoleBase + p, { method, headers, body, redirect: 'manual' });
    const text = await r.text();
    return { status: r.status, headers: r.headers, text, json: /^application\/json/.test(r.headers.get('content-type') ?? '') ? JSON.parse(text) : undefined };
  }

  async function issue(deviceId: string): Promise<string> {
    const serial = '4' + crypto.randomBytes(15).toString('hex');
    await store.recordIssuance({
      cert: {
        serial,
        deviceId,
        issuer: 'device-ca-issuing',
        subject: `O=acme, CN=${deviceId}`,
        profile: 'default',
        notBefore: new Date(Date.now() - 60_000),
        notAfter: new Date(Date.now() + 86400_000),
        shard: 0,
        spkiSha256: 'ab'.repeat(32),
        der: Buffer.from(`not a certificate ${serial}`),
      },
      audit: { type: 'certificate.issued', actor: 'test', subject: deviceId, data: { serial } },
    });
    return serial;
  }

  async function device(state: 'registered' | 'active' | 'suspended' | 'transferring' | 'retired', owner = 'acme'): Promise<{ id: string; serial: string | null }> {
    const id = `m-${++seq}`;
    await ra.registerDevice({ id, owner, actor: 'test' });
    if (state === 'registered') return { id, serial: null };
    const serial = await issue(id);
    if (state === 'suspended') await lifecycle.suspend(id, OPERATOR, 'test');
    if (state === 'transferring') await lifecycle.release(id, 'bravo', OPERATOR, 'test');
    if (state === 'retired') await lifecycle.retire(id, OPERATOR, 'test');
    return { id, serial };
  }

  async function pendingRequest(): Promise<string> {
    const { id: deviceId } = await device('registered');
    const id = crypto.randomUUID();
    const csr = crypto.randomBytes(32);
    await store.createRequest(
      { id, deviceId, label: 'default', operation: 'enroll', csrSha256: crypto.createHash('sha256').update(csr).digest('hex'), csr },
      { type: 'request.created', actor: 'test', subject: id, data: {} },
    );
    return id;
  }

  return {
    ca,
    store,
    lifecycle,
    access,
    ra,
    router,
    tokens,
    call,
    sessions,
    consoleRouter: consoleRoutes,
    consoleBase,
    consoleCall,
    device,
    pendingRequest,
    auditRecords: async () => (await verifyAuditChain(store)).records,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await store.close();
      ca.cleanup();
    },
  };
}
