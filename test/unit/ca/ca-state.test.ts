import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HIERARCHY_RECORD, caExists, ensureCa, initCa, loadCa } from '../../../src/ca/ca-hierarchy';
import { toPem } from '../../../src/ca/pem';
import { OCSP_RESPONDER_RECORD, TLS_SERVER_RECORD, readOcspResponder, readTlsServerCertificate } from '../../../src/ca/service-certificates';
import { loadConfig } from '../../../src/config/load-config';
import { Config } from '../../../src/config/schema';
import { SoftwareKeyBackend } from '../../../src/keys/software-key-backend';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { writeLegacyDataDir } from '../../fixtures/legacy-data-dir';

/**
 * The CA's state lives in the store: init writes it in one step, key refs are relative to the data
 * directory (a moved data directory keeps working), and a data directory made by the previous version
 * (ca/state.json with absolute paths, ocsp-responder.json, tls/server.pem) is imported on first use.
 */

let root: string;
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-castate-'));
});
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

const configFor = (dataDir: string): Config => loadConfig({ env: { DEVICE_CA_DATA: dataDir }, overrides: { publicUrl: 'http://ca.example.test:8080' } });
const keysFor = (cfg: Config) => new SoftwareKeyBackend(path.join(cfg.dataDir, 'keys'));

async function withStore<T>(cfg: Config, f: (s: SqliteStore) => Promise<T>): Promise<T> {
  const s = new SqliteStore(cfg.store.path);
  try {
    return await f(s);
  } finally {
    await s.close();
  }
}

describe('initCa writes the CA into the store', () => {
  it('keeps key refs relative to the data dir, writes 0600 exports, and a moved data dir loads and signs', async () => {
    const cfg = configFor(path.join(root, 'a'));
    const made = await withStore(cfg, (s) => initCa(cfg, keysFor(cfg), s));
    const rec = await withStore(cfg, async (s) => (await s.getCaState(HIERARCHY_RECORD))!.value as { root: { keyRef: string }; issuing: { keyRef: string; der: string } });
    expect(rec.root.keyRef).toMatch(/^keys\/device-ca-root-.*\.key\.pem$/);
    expect(rec.issuing.keyRef).toMatch(/^keys\/device-ca-issuing-.*\.key\.pem$/);
    expect(Buffer.from(rec.issuing.der, 'base64').equals(made.issuing.der)).toBe(true);
    const chain = path.join(cfg.dataDir, 'ca', 'chain.pem');
    expect(fs.readFileSync(chain, 'utf8')).toBe(toPem(made.issuing.der, 'CERTIFICATE') + toPem(made.root.der, 'CERTIFICATE'));
    expect(fs.statSync(chain).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.join(cfg.dataDir, 'ca')).mode & 0o777).toBe(0o700);
    expect(fs.existsSync(path.join(cfg.dataDir, 'ca', 'state.json'))).toBe(false);

    fs.renameSync(cfg.dataDir, path.join(root, 'moved'));
    const moved = configFor(path.join(root, 'moved'));
    const h = await withStore(moved, (s) => loadCa(moved, keysFor(moved), s));
    expect(h.state.issuing.keyRef.startsWith(moved.dataDir + path.sep)).toBe(true);
    const sig = await h.issuing.key.sign(Buffer.from('probe'));
    expect(crypto.verify('sha256', Buffer.from('probe'), crypto.createPublicKey({ key: made.issuing.key.spki, format: 'der', type: 'spki' }), sig)).toBe(true);
  });

  it('a crash before the store write (here: the store refuses it) leaves no CA that looks complete', async () => {
    const cfg = configFor(path.join(root, 'b'));
    await withStore(cfg, async (s) => {
      const failing = Object.assign(Object.create(s) as SqliteStore, { saveCaState: () => Promise.reject(new Error('disk full')) });
      await expect(initCa(cfg, keysFor(cfg), failing)).rejects.toThrow('disk full');
      expect(await caExists(cfg, s)).toBe(false);
      expect(fs.existsSync(path.join(cfg.dataDir, 'ca', 'chain.pem'))).toBe(false);
      await expect(loadCa(cfg, keysFor(cfg), s)).rejects.toMatchObject({ code: 'config' });
      // and a second init then succeeds
      await initCa(cfg, keysFor(cfg), s);
      expect(await caExists(cfg, s)).toBe(true);
    });
  });

  it('ensureCa restores a deleted export on the next start, byte for byte', async () => {
    const cfg = configFor(path.join(root, 'c'));
    await withStore(cfg, (s) => ensureCa(cfg, keysFor(cfg), s));
    const chain = path.join(cfg.dataDir, 'ca', 'chain.pem');
    const before = fs.readFileSync(chain);
    fs.unlinkSync(chain);
    const again = await withStore(cfg, (s) => ensureCa(cfg, keysFor(cfg), s));
    expect(again.created).toBe(false);
    expect(fs.readFileSync(chain).equals(before)).toBe(true);
  });
});

describe('a data directory from the previous version', () => {
  it.each([
    ['in place', false],
    ['after it was moved (state.json paths no longer exist)', true],
  ])('is imported into the store on first load, %s, and keeps working', async (_label, move) => {
    const made = path.join(root, 'old');
    const old = await writeLegacyDataDir(made, path.join(root, 'scratch.sqlite'));
    let dataDir = made;
    if (move) {
      dataDir = path.join(root, 'elsewhere');
      fs.renameSync(made, dataDir);
    }
    const cfg = configFor(dataDir);
    await withStore(cfg, async (s) => {
      expect(await caExists(cfg, s)).toBe(true);
      const h = await loadCa(cfg, keysFor(cfg), s);
      expect(h.issuing.der.equals(old.h.issuing.der)).toBe(true);
      expect(h.root.der.equals(old.h.root.der)).toBe(true);
      const sig = await h.issuing.key.sign(Buffer.from('probe'));
      expect(crypto.verify('sha256', Buffer.from('probe'), crypto.createPublicKey({ key: old.h.issuing.key.spki, format: 'der', type: 'spki' }), sig)).toBe(true);
      const rec = (await s.getCaState(HIERARCHY_RECORD))!.value as { root: { keyRef: string }; issuing: { keyRef: string } };
      expect([rec.root.keyRef, rec.issuing.keyRef]).toEqual([path.relative(made, old.h.root.key.ref), path.relative(made, old.h.issuing.key.ref)]);
      expect((await s.listAudit({ subject: 'device-ca-issuing' })).items.map((a) => a.type)).toEqual(['ca.imported']);

      const ocsp = (await readOcspResponder(cfg, keysFor(cfg), s))!;
      expect(ocsp.cert.equals(old.ocspDer)).toBe(true);
      expect(ocsp.key.spki.equals(old.ocspSpki)).toBe(true);
      expect(((await s.getCaState(OCSP_RESPONDER_RECORD))!.value as { keyRef: string }).keyRef).toMatch(/^keys\//);
      const tls = (await readTlsServerCertificate(cfg, h, s))!;
      expect(tls.certPem).toBe(toPem(old.tlsDer, 'CERTIFICATE') + toPem(old.h.issuing.der, 'CERTIFICATE'));
      expect(tls.keyPem).toBe(old.keyPem);
      expect(((await s.getCaState(TLS_SERVER_RECORD))!.value as { keyRef: string }).keyRef).toBe('tls/server.key');
      // init now refuses: the imported CA exists
      await expect(initCa(cfg, keysFor(cfg), s)).rejects.toMatchObject({ code: 'conflict' });
    });
    // a second load reads the store and imports nothing again
    await withStore(cfg, async (s) => {
      await loadCa(cfg, keysFor(cfg), s);
      expect((await s.listAudit({ subject: 'device-ca-issuing' })).items.map((a) => a.type)).toEqual(['ca.imported']);
    });
  });
});

describe('a node whose data directory lacks the tls/ the store names', () => {
  it('refuses with a set-up error that says what to share, not an internal ENOENT', async () => {
    const made = path.join(root, 'node-a');
    await writeLegacyDataDir(made, path.join(root, 'scratch.sqlite'));
    const cfg = configFor(made);
    await withStore(cfg, async (s) => {
      const h = await loadCa(cfg, keysFor(cfg), s);
      expect((await readTlsServerCertificate(cfg, h, s))!.keyPem).toContain('PRIVATE KEY');
      // node B: the same store, keys/ shared, its own data directory without node A's tls/
      fs.rmSync(path.join(made, 'tls'), { recursive: true });
      const err = await readTlsServerCertificate(cfg, h, s).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toMatchObject({ code: 'config', message: expect.stringContaining(`the HTTPS key ${path.join(made, 'tls', 'server.key')} named by the store is not there`) });
      expect((err as Error).message).toMatch(/share the data directory's tls\/ and keys\/.*https\.certFile and https\.keyFile/);
    });
  });
});
