import * as fs from 'node:fs';
import { AddressInfo } from 'node:net';
import * as path from 'node:path';
import pino from 'pino';
import { rolloverIssuing } from '../../../../src/ca/issuing-rollover';
import { toPem } from '../../../../src/ca/pem';
import { buildService, Service } from '../../../../src/main';
import { SqliteStore } from '../../../../src/store/sqlite/sqlite-store';
import { openssl } from '../../cms/cms-fixture';
import { makeTestCa, TestCa } from '../../../fixtures/test-ca';

/**
 * SCEP GetNextCACert (RFC 8894 §3.5.2, §4.6): advertised in GetCACaps only while a rollover is pending,
 * and then a certs-only SignedData with the next issuing CA and the root, signed by the RA; the running
 * service learns of the rollover from the store (CA duties round), as from another process.
 */
let t: TestCa;
let svc: Service;
let base: string;

beforeAll(async () => {
  t = await makeTestCa({ 'scep.enabled': true });
  svc = await buildService(t.cfg, { log: pino({ level: 'silent' }) });
  await new Promise<void>((r) => svc.http.listen(0, '127.0.0.1', () => r()));
  base = `http://127.0.0.1:${(svc.http.address() as AddressInfo).port}`;
}, 60_000);
afterAll(async () => {
  await new Promise<void>((r) => svc.http.close(() => r()));
  await svc.close();
  t.cleanup();
});

async function get(query: string): Promise<{ status: number; type: string | null; body: Buffer }> {
  const r = await fetch(`${base}/scep?${query}`);
  return { status: r.status, type: r.headers.get('content-type'), body: Buffer.from(await r.arrayBuffer()) };
}

it('no rollover pending: GetCACaps does not offer GetNextCACert, and asking for it is 404', async () => {
  expect((await get('operation=GetCACaps')).body.toString()).not.toContain('GetNextCACert');
  expect((await get('operation=GetNextCACert')).status).toBe(404);
});

it('rollover pending: GetCACaps offers it; GetNextCACert is the next CA and the root, signed by the RA', async () => {
  const store = new SqliteStore(t.cfg.store.path);
  const next = await rolloverIssuing(t.cfg, t.keys, store, { at: new Date(Date.now() + 86400_000), actor: 'test' });
  await store.close();
  await svc.duties.tick(); // the reload every process runs each round
  expect((await get('operation=GetCACaps')).body.toString()).toContain('GetNextCACert\n');
  const r = await get('operation=GetNextCACert');
  expect(r.status).toBe(200);
  expect(r.type).toBe('application/x-x509-next-ca-cert');
  const pems = openssl(['pkcs7', '-inform', 'DER', '-print_certs'], r.body).toString();
  expect(pems).toContain(toPem(next.der, 'CERTIFICATE'));
  expect(pems).toContain(toPem(t.hierarchy.root.der, 'CERTIFICATE'));
  // the signature verifies with the RA certificate from GetCACert (-noverify: no chain check, the RA is not in the bag)
  const ca = openssl(['pkcs7', '-inform', 'DER', '-print_certs'], (await get('operation=GetCACert')).body).toString();
  const ra = path.join(t.dir, 'ra.pem');
  fs.writeFileSync(ra, /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/.exec(ca)![0]);
  const p7 = path.join(t.dir, 'next.p7');
  fs.writeFileSync(p7, r.body);
  // degenerate: no content, so the signature is over the empty content (RFC 5652 §5.4)
  const empty = path.join(t.dir, 'empty');
  fs.writeFileSync(empty, '');
  openssl(['cms', '-verify', '-inform', 'DER', '-in', p7, '-certfile', ra, '-noverify', '-binary', '-content', empty, '-out', path.join(t.dir, 'out.bin')]);
  // GetCACert lists both issuing CAs during the overlap (the one in force first)
  expect(ca.indexOf(toPem(t.hierarchy.issuing.der, 'CERTIFICATE'))).toBeLessThan(ca.indexOf(toPem(next.der, 'CERTIFICATE')));
});
