import * as crypto from 'node:crypto';
import { issueAndRecord } from '../../../src/ca/issuance';
import { generateKeyPair } from '../../../src/keys/software-key-backend';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { TestCa, makeTestCa } from '../../fixtures/test-ca';

/** issueAndRecord: the one issuance path records intent, signs, then records certificate and result together. */

let t: TestCa;
let store: SqliteStore;
beforeAll(async () => {
  t = await makeTestCa({}, 'device-ca-issuance-');
  store = new SqliteStore(t.cfg.store.path);
});
afterAll(async () => {
  await store?.close();
  t?.cleanup();
});

const request = () => {
  const spki = generateKeyPair('ecdsa-p256').publicKey.export({ type: 'spki', format: 'der' });
  return { profile: 'tls-server', subject: [{ type: 'CN' as const, value: 'localhost' }], spki, keyType: 'ec' as const, sans: [] };
};

describe('issueAndRecord', () => {
  it('stores the signed bytes with the record fields, after an intent record and before returning', async () => {
    const req = request();
    const issued = await issueAndRecord(t.ca, store, req, {
      deviceId: null,
      subject: 'CN=localhost',
      audit: { actor: 'device-ca', subject: 'tls-server', intent: { why: 'test' }, data: { names: ['localhost'] } },
    });
    const rec = await store.getCertificate(issued.serial);
    expect(rec?.der.equals(issued.der)).toBe(true);
    expect(rec).toMatchObject({ deviceId: null, subject: 'CN=localhost', profile: 'tls-server', status: 'valid', spkiSha256: crypto.createHash('sha256').update(req.spki).digest('hex') });
    const audit = (await store.listAudit({ subject: 'tls-server' })).items;
    expect(audit.map((a) => [a.type, a.data])).toEqual([
      ['certificate.issue.intent', { profile: 'tls-server', why: 'test' }],
      ['certificate.issued', { serial: issued.serial, names: ['localhost'], notAfter: issued.notAfter.toISOString() }],
    ]);
  });

  it('a record the store refuses (a consumed secret) leaves the intent but no certificate, and rejects', async () => {
    const before = (await store.listAudit({ subject: 'dev-x' })).items.length;
    await expect(issueAndRecord(t.ca, store, request(), { deviceId: 'dev-x', subject: 'CN=dev-x', consumeSecretId: 999999, audit: { actor: 'test', subject: 'dev-x' } })).rejects.toMatchObject({
      code: 'unauthenticated',
    });
    const audit = (await store.listAudit({ subject: 'dev-x' })).items;
    expect(audit.slice(before).map((a) => a.type)).toEqual(['certificate.issue.intent']);
  });
});
