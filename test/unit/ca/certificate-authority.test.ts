import { execFileSync, spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HIERARCHY_RECORD, caExists, initCa, loadCa } from '../../../src/ca/ca-hierarchy';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { CertificateAuthority, crlUrl } from '../../../src/ca/certificate-authority';
import { certificateParts } from '../../../src/ca/certificate-parts';
import { toPem } from '../../../src/ca/pem';
import { children, readOne } from '../../../src/der/der-reader';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { KeyAlgorithm } from '../../../src/keys/key-backend';
import { generateKeyPair } from '../../../src/keys/software-key-backend';
import { shardOf } from '../../fixtures/peculiar-reference';
import { TestCa, makeTestCa } from '../../fixtures/test-ca';

/**
 * CertificateAuthority and the CA hierarchy, judged by openssl: chains verify, and `openssl x509 -text`
 * shows the extensions relying parties (FreeRADIUS, openssl ocsp) act on.
 */

const BASE = 'http://ca.example.test:8080';
const spkiOf = (alg: KeyAlgorithm): Buffer => crypto.createPublicKey(generateKeyPair(alg).privateKey).export({ type: 'spki', format: 'der' });

function openssl(args: string[], input?: string): { status: number | null; out: string } {
  const r = spawnSync('openssl', args, { input, encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe.each<{ label: string; overrides: Record<string, unknown> }>([
  { label: 'ecdsa-p256 hierarchy', overrides: {} },
  { label: 'ecdsa-p384 hierarchy', overrides: { 'ca.algorithm': 'ecdsa-p384' } },
  { label: 'rsa-2048 hierarchy', overrides: { 'ca.algorithm': 'rsa-2048' } },
])('$label', ({ overrides }) => {
  let t: TestCa;
  let root: string;
  let issuing: string;
  beforeAll(async () => {
    t = await makeTestCa({ 'ca.organization': 'Acme Devices', ...overrides }, 'device-ca-ca-');
    root = path.join(t.dir, 'root.pem');
    issuing = path.join(t.dir, 'issuing.pem');
    fs.writeFileSync(root, toPem(t.hierarchy.root.der, 'CERTIFICATE'));
    fs.writeFileSync(issuing, toPem(t.hierarchy.issuing.der, 'CERTIFICATE'));
  });
  afterAll(() => t?.cleanup());

  it('openssl verifies the issuing CA against the root, and initCa wrote the same PEM files', () => {
    expect(openssl(['verify', '-CAfile', root, issuing]).out).toContain(`${issuing}: OK`);
    const chain = fs.readFileSync(path.join(t.dir, 'ca', 'chain.pem'), 'utf8');
    expect(chain).toBe(toPem(t.hierarchy.issuing.der, 'CERTIFICATE') + toPem(t.hierarchy.root.der, 'CERTIFICATE'));
  });

  it('openssl shows CA extensions: BC critical CA:TRUE pathlen 0, KU critical keyCertSign, SKI/AKI link', () => {
    const text = openssl(['x509', '-in', issuing, '-noout', '-text']).out;
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
    expect(text).toMatch(/X509v3 Key Usage: critical\s+Digital Signature, Certificate Sign, CRL Sign/);
    const rootText = openssl(['x509', '-in', root, '-noout', '-text']).out;
    const rootSki = /Subject Key Identifier:\s+([0-9A-F:]+)/.exec(rootText)![1];
    expect(text).toMatch(new RegExp(`Authority Key Identifier:\\s+(keyid:)?${rootSki}`));
    expect(rootText).toMatch(/X509v3 Basic Constraints: critical\s+CA:TRUE\s/);
    expect(rootText).not.toContain('pathlen');
  });

  describe.each<{ leaf: KeyAlgorithm; serverAuth: boolean; sans: boolean }>([
    { leaf: 'ecdsa-p256', serverAuth: false, sans: false },
    { leaf: 'ecdsa-p384', serverAuth: true, sans: true },
    { leaf: 'rsa-2048', serverAuth: false, sans: true },
  ])('$leaf leaf, serverAuth $serverAuth, SANs $sans', ({ leaf, serverAuth, sans }) => {
    let leafPem: string;
    let issued: Awaited<ReturnType<CertificateAuthority['issue']>>;
    beforeAll(async () => {
      issued = await t.caWith({ device: { validitySeconds: 365 * 86400, serverAuth } }).issue({
        profile: 'device',
        subject: [{ type: 'CN', value: 'dev-1' }],
        spki: spkiOf(leaf),
        keyType: leaf.startsWith('rsa') ? 'rsa' : 'ec',
        sans: sans
          ? [
              { type: 'dns', value: 'dev-1.example.net' },
              { type: 'ip', value: '192.0.2.7' },
              { type: 'ip', value: '2001:db8::17' },
              { type: 'uri', value: 'urn:dev:1' },
            ]
          : [],
      });
      leafPem = path.join(t.dir, `leaf-${leaf}.pem`);
      fs.writeFileSync(leafPem, toPem(issued.der, 'CERTIFICATE'));
    });

    it('openssl verify -CAfile root -untrusted issuing leaf: OK', () => {
      const r = openssl(['verify', '-CAfile', root, '-untrusted', issuing, '-purpose', serverAuth ? 'sslserver' : 'sslclient', leafPem]);
      expect(r.out).toContain(`${leafPem}: OK`);
      expect(r.status).toBe(0);
    });

    it('openssl refuses the leaf without the issuing CA (the verdict is not vacuous)', () => {
      expect(openssl(['verify', '-CAfile', root, leafPem]).status).not.toBe(0);
    });

    it('openssl x509 -text shows CRL DP with the shard, AIA OCSP and caIssuers, KU critical, EKU', () => {
      const text = openssl(['x509', '-in', leafPem, '-noout', '-text']).out;
      const shard = shardOf(issued.serial, t.cfg.crl.shards);
      expect(issued.shard).toBe(shard);
      expect(text).toMatch(new RegExp(`CRL Distribution Points:\\s+Full Name:\\s+URI:${BASE}/crl/device-ca-issuing/${shard}\\.crl\\s`));
      expect(crlUrl(BASE, 'device-ca-issuing', shard)).toBe(`${BASE}/crl/device-ca-issuing/${shard}.crl`);
      expect(text).toMatch(new RegExp(`Authority Information Access:\\s+OCSP - URI:${BASE}/ocsp\\s+CA Issuers - URI:${BASE}/ca/device-ca-issuing\\.crt`));
      // RFC 5280 §4.2.1.12: clientAuth goes with digitalSignature; RSA leaves get no keyEncipherment unless a profile asks
      expect(text).toMatch(/X509v3 Key Usage: critical\s+Digital Signature\n/);
      expect(text).toMatch(new RegExp(`X509v3 Extended Key Usage:\\s+${serverAuth ? 'TLS Web Client Authentication, TLS Web Server Authentication' : 'TLS Web Client Authentication'}\\n`));
      expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:FALSE/);
      expect(text).toMatch(/Subject: CN ?= ?dev-1\n/);
      if (sans) expect(text).toMatch(/X509v3 Subject Alternative Name:\s+DNS:dev-1\.example\.net, IP Address:192\.0\.2\.7, IP Address:2001:DB8:0:0:0:0:0:17, URI:urn:dev:1\n/);
      else expect(text).not.toContain('Subject Alternative Name');
      expect(text).toMatch(new RegExp(`Serial Number:\\s+${issued.serial.match(/../g)!.join(':')}\\s`));
    });

    it('openssl reports the OCSP URI and the serial the CA returned', () => {
      expect(openssl(['x509', '-in', leafPem, '-noout', '-ocsp_uri']).out.trim()).toBe(`${BASE}/ocsp`);
      expect(openssl(['x509', '-in', leafPem, '-noout', '-serial']).out.trim().toLowerCase()).toBe(`serial=${issued.serial}`);
    });
  });

  it('an RSA leaf gets keyEncipherment only under a profile that asks for it; an EC leaf never', async () => {
    const ca = t.caWith({ transport: { validitySeconds: 3600, serverAuth: false, keyEncipherment: true } });
    const ku = async (alg: KeyAlgorithm) => {
      const c = await ca.issue({ profile: 'transport', subject: [{ type: 'CN', value: 'x' }], spki: spkiOf(alg), keyType: alg.startsWith('rsa') ? 'rsa' : 'ec', sans: [] });
      return /X509v3 Key Usage: critical\s+(.*)\n/.exec(openssl(['x509', '-noout', '-text'], toPem(c.der, 'CERTIFICATE')).out)![1];
    };
    expect(await ku('rsa-2048')).toBe('Digital Signature, Key Encipherment');
    expect(await ku('ecdsa-p256')).toBe('Digital Signature');
  });

  it('the OCSP responder certificate names the configured organization', async () => {
    const c = await t.caWith({}).issueOcspResponder(spkiOf('ecdsa-p256'));
    expect(new crypto.X509Certificate(c.der).subject).toBe('O=Acme Devices\nCN=device-ca-issuing OCSP responder');
  });

  it('serial: 32 hex digits, a positive 16-octet INTEGER, first octet 01xxxxxx', async () => {
    for (let i = 0; i < 50; i++) {
      const c = await t
        .caWith({ p: { validitySeconds: 3600, serverAuth: false } })
        .issue({ profile: 'p', subject: [{ type: 'CN', value: 'x' }], spki: t.hierarchy.issuing.key.spki, keyType: 'ec', sans: [] });
      expect(c.serial).toMatch(/^[4-7][0-9a-f]{31}$/);
      const serialTlv = children(readOne(certificateParts(c.der).tbs))[1];
      expect(serialTlv.tag).toBe(0x02);
      expect(serialTlv.value.length).toBe(16);
      expect(certificateParts(c.der).serial).toBe(c.serial);
    }
  });
});

describe('validity window', () => {
  let t: TestCa;
  beforeAll(async () => {
    t = await makeTestCa({ 'ca.backdate': '5m', 'ca.root.validity': '3d', 'ca.issuing.validity': '2d' }, 'device-ca-val-');
  });
  afterAll(() => t?.cleanup());
  const req = () => ({ profile: 'p', subject: [{ type: 'CN' as const, value: 'x' }], spki: t.hierarchy.issuing.key.spki, keyType: 'ec' as const, sans: [] });
  /** caFor: a CA whose profile 'p' has the given validity */
  const caFor = (validitySeconds: number, o: { backdateSeconds?: number; publicUrl?: string; crlShards?: number } = {}) => t.caWith({ p: { validitySeconds, serverAuth: false } }, o);

  it('notBefore is backdated, whole seconds; notAfter is now + validity', async () => {
    const sec = Math.floor(Date.now() / 1000) * 1000;
    const now = new Date(sec + 678);
    const c = await caFor(60, { publicUrl: BASE, crlShards: 16, backdateSeconds: 300 }).issue(req(), now);
    expect(c.notBefore.getTime()).toBe(sec - 300_000);
    expect(c.notAfter.getTime()).toBe(sec + 60_000);
    const x = new crypto.X509Certificate(c.der);
    expect(new Date(x.validFrom).getTime()).toBe(c.notBefore.getTime());
    expect(new Date(x.validTo).getTime()).toBe(c.notAfter.getTime());
  });

  // once the issuing CA has expired, notAfter (capped to the CA's) would precede notBefore: refused instead,
  // as 'ca-unavailable' (HTTP 503 + Retry-After) until an operator rolls the CA over
  it('refuses to issue after the issuing CA expired', async () => {
    const later = new Date(t.hierarchy.issuing.notAfter.getTime() + 86400_000);
    await expect(caFor(60).issue(req(), later)).rejects.toMatchObject({ code: 'ca-unavailable', retryAfterSeconds: 3600 });
  });

  it('a leaf never outlives its issuer', async () => {
    const c = await caFor(365 * 86400).issue(req());
    expect(c.notAfter.getTime()).toBe(t.hierarchy.issuing.notAfter.getTime());
    expect(new Date(new crypto.X509Certificate(c.der).validTo).getTime()).toBe(new Date(new crypto.X509Certificate(t.hierarchy.issuing.der).validTo).getTime());
  });

  it('the issuing CA ends at least two hours before the root', () => {
    const r = new Date(new crypto.X509Certificate(t.hierarchy.root.der).validTo).getTime();
    const i = new Date(new crypto.X509Certificate(t.hierarchy.issuing.der).validTo).getTime();
    expect(r - i).toBeGreaterThanOrEqual(7200_000);
  });

  it('shards spread over all CRL shards', async () => {
    const seen = new Set<number>();
    const ca = caFor(60);
    for (let i = 0; i < 400; i++) seen.add((await ca.issue(req())).shard);
    expect([...seen].sort((a, b) => a - b)).toEqual(Array.from({ length: t.cfg.crl.shards }, (_, i) => i));
  });
});

describe('CA hierarchy files', () => {
  let t: TestCa;
  beforeAll(async () => {
    t = await makeTestCa({}, 'device-ca-files-');
  });
  afterAll(() => t?.cleanup());

  let store: SqliteStore;
  beforeAll(() => {
    store = new SqliteStore(t.cfg.store.path);
  });
  afterAll(() => store?.close());

  it('initCa refuses to overwrite an existing CA', async () => {
    expect(await caExists(t.cfg, store)).toBe(true);
    await expect(initCa(t.cfg, t.keys, store)).rejects.toMatchObject({ code: 'conflict' });
  });

  it('loadCa returns the same certificates and working keys', async () => {
    const h = await loadCa(t.cfg, t.keys, store);
    expect(h.issuing.der.equals(t.hierarchy.issuing.der)).toBe(true);
    expect(h.root.der.equals(t.hierarchy.root.der)).toBe(true);
    expect(h.issuing.keyId.equals(t.hierarchy.issuing.keyId)).toBe(true);
    const sig = await h.issuing.key.sign(Buffer.from('probe'));
    expect(crypto.verify('sha256', Buffer.from('probe'), crypto.createPublicKey({ key: h.issuing.key.spki, format: 'der', type: 'spki' }), sig)).toBe(true);
  });

  it('loadCa rejects an issuing certificate that does not match the key', async () => {
    const other = await makeTestCa({}, 'device-ca-files2-');
    const entry = (await store.getCaState(HIERARCHY_RECORD))!;
    const rec = entry.value as { issuing: { der: string } };
    try {
      const swapped = { ...rec, issuing: { ...rec.issuing, der: other.hierarchy.issuing.der.toString('base64') } };
      const v = await store.saveCaState(HIERARCHY_RECORD, swapped, entry.version);
      const err = await loadCa(t.cfg, t.keys, store).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DeviceCaError);
      expect((err as DeviceCaError).code).toBe('config');
      await store.saveCaState(HIERARCHY_RECORD, rec, v);
    } finally {
      other.cleanup();
    }
  });

  it('key files are PKCS#8 with mode 0600', () => {
    for (const ref of [t.hierarchy.root.key.ref, t.hierarchy.issuing.key.ref]) {
      expect(fs.statSync(ref).mode & 0o777).toBe(0o600);
      expect(execFileSync('openssl', ['pkey', '-in', ref, '-noout', '-text'], { encoding: 'utf8' })).toMatch(/Private-Key/);
    }
  });
});
