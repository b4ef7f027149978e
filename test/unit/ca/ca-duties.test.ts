import Database from 'better-sqlite3';
import * as crypto from 'node:crypto';
import { CaDuties } from '../../../src/ca/ca-duties';
import { OcspResponderMaterial, ServiceCertificates, TlsServerMaterial } from '../../../src/ca/service-certificates';
import { pemBlocks } from '../../../src/ca/pem';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { TestCa, makeTestCa } from '../../fixtures/test-ca';

/**
 * CA duties under one lease: with several workers (or nodes) on one store, exactly one issues a due
 * OCSP responder or HTTPS certificate and publishes CRLs; every worker picks the renewal up from the
 * store; a holder that dies is replaced once its lease expires.
 */

const DAY = 86400_000;
let t: TestCa;
beforeAll(async () => {
  t = await makeTestCa({}, 'device-ca-duties-');
});
afterAll(() => t?.cleanup());

interface Worker {
  name: string;
  store: SqliteStore;
  duties: CaDuties;
  crlRunning: boolean;
  ocsp: OcspResponderMaterial[];
  tls: TlsServerMaterial[];
  errors: unknown[];
}

let now: Date;
const workers: Worker[] = [];
function worker(name: string): Worker {
  const store = new SqliteStore(t.cfg.store.path);
  const certs = new ServiceCertificates({ cfg: t.cfg, keys: t.keys, ca: t.ca, hierarchy: t.hierarchy, store, now: () => now });
  const w: Worker = { name, store, crlRunning: false, ocsp: [], tls: [], errors: [], duties: undefined as unknown as CaDuties };
  certs.onChange({ ocsp: (m) => w.ocsp.push(m), tls: (m) => w.tls.push(m) });
  w.duties = new CaDuties({
    store,
    holder: name,
    leaseTtlMs: 30_000,
    intervalMs: 10_000,
    onAcquire: () => (w.crlRunning = true),
    onLose: () => (w.crlRunning = false),
    renew: () => certs.renew(),
    reload: async () => void (await certs.reload()),
    onError: (_what, e) => w.errors.push(e),
    now: () => now,
  });
  workers.push(w);
  return w;
}
afterAll(async () => {
  for (const w of workers) await w.store.close().catch(() => undefined);
});

/** issuedByProfile counts the certificates recorded in the store per profile. */
function issuedByProfile(): Record<string, number> {
  const db = new Database(t.cfg.store.path, { readonly: true });
  try {
    const rows = db.prepare('SELECT profile, COUNT(*) AS n FROM certificates GROUP BY profile').all() as { profile: string; n: number }[];
    return Object.fromEntries(rows.map((r) => [r.profile, r.n]));
  } finally {
    db.close();
  }
}
const leafOf = (m: TlsServerMaterial): Buffer => pemBlocks(m.certPem)[0];

describe('two workers on one store', () => {
  let a: Worker;
  let b: Worker;
  beforeAll(() => {
    now = new Date();
    a = worker('worker-a');
    b = worker('worker-b');
  });

  it('first round at the same instant: one worker issues the OCSP responder and HTTPS certificates, both serve them', async () => {
    await Promise.all([a.duties.tick(), b.duties.tick()]);
    await Promise.all([a.duties.tick(), b.duties.tick()]); // the non-holder reloads what the holder saved
    expect(issuedByProfile()).toEqual({ 'ocsp-responder': 1, 'tls-server': 1 });
    expect([a.crlRunning, b.crlRunning].filter(Boolean)).toHaveLength(1);
    expect(a.ocsp).toHaveLength(1);
    expect(b.ocsp).toHaveLength(1);
    expect(a.ocsp[0].cert.equals(b.ocsp[0].cert)).toBe(true);
    expect(leafOf(a.tls[0]).equals(leafOf(b.tls[0]))).toBe(true);
    expect([...a.errors, ...b.errors]).toEqual([]);
  });

  it('when both certificates are due, one renewal each is issued (not one per worker) and both workers switch to it', async () => {
    now = new Date(now.getTime() + 370 * DAY); // 27 days before the HTTPS certificate expires; the responder's is past
    await Promise.all([a.duties.tick(), b.duties.tick()]);
    await Promise.all([a.duties.tick(), b.duties.tick()]); // the non-holder reloads what the holder saved
    expect(issuedByProfile()).toEqual({ 'ocsp-responder': 2, 'tls-server': 2 });
    for (const w of [a, b]) {
      expect(w.ocsp).toHaveLength(2);
      expect(w.tls).toHaveLength(2);
      const x = new crypto.X509Certificate(leafOf(w.tls[1]));
      expect(new Date(x.validTo).getTime()).toBeGreaterThan(now.getTime() + 300 * DAY);
      expect(x.checkPrivateKey(crypto.createPrivateKey(w.tls[1].keyPem))).toBe(true);
      expect(w.ocsp[1].key.spki.equals(w.ocsp[0].key.spki)).toBe(true); // the responder key is kept
    }
    expect(a.ocsp[1].cert.equals(b.ocsp[1].cert)).toBe(true);
    expect(leafOf(a.tls[1]).equals(leafOf(b.tls[1]))).toBe(true);
    expect([...a.errors, ...b.errors]).toEqual([]);
  });

  it('a holder that dies keeps the lease until it expires; then the other worker takes over with a larger fence', async () => {
    const [holder, other] = a.crlRunning ? [a, b] : [b, a];
    const fence = holder.duties.holding!;
    // the holder stops ticking (killed): no release
    now = new Date(now.getTime() + 20_000);
    await other.duties.tick();
    expect(other.crlRunning).toBe(false);
    now = new Date(now.getTime() + 15_000); // 35 s after the holder's last renewal
    await other.duties.tick();
    expect(other.crlRunning).toBe(true);
    expect(other.duties.holding).toBeGreaterThan(fence);
    // the old holder, back from a stall, finds it lost the lease and stops its CRL timer
    await holder.duties.tick();
    expect(holder.crlRunning).toBe(false);
    expect(holder.duties.holding).toBeNull();
  });

  it('stop() releases the lease so another worker takes over at once', async () => {
    const [holder, other] = a.crlRunning ? [a, b] : [b, a];
    await holder.duties.stop();
    expect(holder.crlRunning).toBe(false);
    await other.duties.tick();
    expect(other.crlRunning).toBe(true);
    expect(issuedByProfile()).toEqual({ 'ocsp-responder': 2, 'tls-server': 2 });
  });
});
