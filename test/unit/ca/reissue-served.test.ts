import * as https from 'node:https';
import { AddressInfo } from 'node:net';
import pino from 'pino';
import { reissueIssuing } from '../../../src/ca/ca-lifecycle';
import { buildService, Service } from '../../../src/main';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { openssl } from '../cms/cms-fixture';
import { makeTestCa, TestCa } from '../../fixtures/test-ca';
import { toPem } from '../../../src/ca/pem';

/**
 * `ca reissue-issuing` run beside a running service: from the service's next CA duties round on, every
 * place clients fetch the chain (EST /cacerts, SCEP GetCACert, /ca/<name>.crt) holds the new issuing CA
 * certificate and no longer the superseded one, without a restart.
 */
let t: TestCa;
let svc: Service;
let httpBase: string;
let httpsPort: number;

beforeAll(async () => {
  t = await makeTestCa({ 'scep.enabled': true });
  svc = await buildService(t.cfg, { log: pino({ level: 'silent' }) });
  await new Promise<void>((r) => svc.http.listen(0, '127.0.0.1', () => r()));
  await new Promise<void>((r) => svc.https.listen(0, '127.0.0.1', () => r()));
  httpBase = `http://127.0.0.1:${(svc.http.address() as AddressInfo).port}`;
  httpsPort = (svc.https.address() as AddressInfo).port;
}, 60_000);
afterAll(async () => {
  await new Promise<void>((r) => svc.http.close(() => r()));
  await new Promise<void>((r) => svc.https.close(() => r()));
  await svc.close();
  t.cleanup();
});

const bytes = async (url: string): Promise<Buffer> => Buffer.from(await (await fetch(url)).arrayBuffer());
const estCacerts = (): Promise<Buffer> =>
  new Promise((resolve, reject) =>
    https
      .get({ host: '127.0.0.1', port: httpsPort, path: '/.well-known/est/cacerts', rejectUnauthorized: false }, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => resolve(Buffer.from(Buffer.concat(parts).toString('latin1'), 'base64')));
      })
      .on('error', reject),
  );
const certsOf = (p7: Buffer): string => openssl(['pkcs7', '-inform', 'DER', '-print_certs'], p7).toString();

it('after reissue-issuing, /cacerts, GetCACert and /ca/<name>.crt hold the new certificate, not the superseded one', async () => {
  const old = toPem(t.hierarchy.issuing.der, 'CERTIFICATE');
  expect(certsOf(await estCacerts())).toContain(old);
  const store = new SqliteStore(t.cfg.store.path);
  const { der } = await reissueIssuing(t.cfg, t.keys, store, 'test');
  await store.close();
  await svc.duties.tick(); // the reload every process runs each round
  const fresh = toPem(der, 'CERTIFICATE');
  for (const listed of [certsOf(await estCacerts()), certsOf(await bytes(`${httpBase}/scep?operation=GetCACert`))]) {
    expect(listed).toContain(fresh);
    expect(listed).not.toContain(old);
  }
  expect((await bytes(`${httpBase}/ca/device-ca-issuing.crt`)).equals(der)).toBe(true);
});
