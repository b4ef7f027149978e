import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { toPem } from '../../../src/ca/pem';
import { ensureScepRa, readScepRa } from '../../../src/ca/service-certificates';
import { buildEnvelopedData, openEnvelopedData } from '../../../src/cms/enveloped-data';
import { softwareKeyTransport } from '../../../src/cms/rsa-key-transport';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { makeTestCa, TestCa } from '../../fixtures/test-ca';

let t: TestCa;
let store: SqliteStore;
beforeAll(async () => {
  t = await makeTestCa({ 'ca.algorithm': 'ecdsa-p256' }, 'device-ca-scep-ra-');
  store = new SqliteStore(t.cfg.store.path);
});
afterAll(async () => {
  await store.close();
  t.cleanup();
});

/** opensslText: what openssl says of a certificate, and whether it verifies against the CA chain. */
function opensslVerdict(der: Buffer): { verify: string; text: string } {
  const f = path.join(t.dir, `ra-${crypto.randomBytes(4).toString('hex')}.pem`);
  const chain = path.join(t.dir, 'chain.pem');
  fs.writeFileSync(f, toPem(der, 'CERTIFICATE'));
  fs.writeFileSync(chain, toPem(t.hierarchy.issuing.der, 'CERTIFICATE') + toPem(t.hierarchy.root.der, 'CERTIFICATE'));
  const verify = spawnSync('openssl', ['verify', '-CAfile', chain, f], { encoding: 'utf8' });
  const text = spawnSync('openssl', ['x509', '-in', f, '-noout', '-text'], { encoding: 'utf8' });
  return { verify: verify.stdout.trim() + verify.stderr.trim(), text: text.stdout };
}

describe('ensureScepRa', () => {
  it('issues an RSA 2048 RA certificate for key transport (an ECDSA CA too), recorded in the store; openssl verifies the chain', async () => {
    expect(await readScepRa(t.cfg, t.keys, store)).toBeNull();
    const ra = await ensureScepRa(t.cfg, t.keys, t.ca, store);
    const v = opensslVerdict(ra.cert);
    expect(v.verify).toMatch(/: OK$/);
    expect(v.text).toContain('Public-Key: (2048 bit)');
    expect(v.text).toMatch(/Key Usage: critical\s+Digital Signature, Key Encipherment/);
    expect(v.text).toContain('SCEP RA');
    const serial = new crypto.X509Certificate(ra.cert).serialNumber.toLowerCase().replace(/^0+/, '');
    expect((await store.getCertificate(serial))?.profile).toBe('scep-ra');
  });

  it('returns the same certificate while it has more than a third of its life left, and renews it with the same key after', async () => {
    const first = (await readScepRa(t.cfg, t.keys, store))!;
    const again = await ensureScepRa(t.cfg, t.keys, t.ca, store);
    expect(again.cert.equals(first.cert)).toBe(true);
    expect(again.version).toBe(first.version);
    const later = new Date(Date.now() + 250 * 86400_000);
    const renewed = await ensureScepRa(t.cfg, t.keys, t.ca, store, later);
    expect(renewed.cert.equals(first.cert)).toBe(false);
    expect(renewed.version).toBeGreaterThan(first.version);
    expect(renewed.key.spki.equals(first.key.spki)).toBe(true);
    expect(new Date(new crypto.X509Certificate(renewed.cert).validTo).getTime()).toBeGreaterThan(later.getTime() + 300 * 86400_000);
  });

  it('its software key unwraps what a client encrypts to the RA certificate', async () => {
    const ra = (await readScepRa(t.cfg, t.keys, store))!;
    const key = crypto.createPrivateKey(fs.readFileSync(ra.key.ref));
    const env = buildEnvelopedData(Buffer.from('pkcs10'), ra.cert, 'aes-128-cbc');
    expect((await openEnvelopedData(env, { certificate: ra.cert, key: softwareKeyTransport(key) })).content.toString()).toBe('pkcs10');
  });
});
