import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { crlUrl } from '../../../src/ca/certificate-authority';
import { CrlPublisher } from '../../../src/ca/crl-publisher';
import { crlToPem } from '../../../src/ca/crl-encoder';
import { toPem } from '../../../src/ca/pem';
import { children, readOne } from '../../../src/der/der-reader';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { CrlRecord, RevocationReason } from '../../../src/store/store';
import { TestCa, makeTestCa } from '../../fixtures/test-ca';

/**
 * CrlPublisher with an injected clock over a real SqliteStore: a shard's CRL is re-issued when the shard's
 * revision moves (a status change) and when less than renewBefore is left before nextUpdate, and only then;
 * CRL numbers only grow; what it publishes is what `openssl crl` verifies and reads back (reasons, IDP,
 * an empty list without revokedCertificates).
 */

const PUBLIC = 'http://ca.example.test:8080';
const HOUR = 3600_000;
const CRL_CFG = { shards: 4, validity: 24 * 3600, renewBefore: 12 * 3600, checkInterval: 2 };

let tca: TestCa;
let store: SqliteStore;
let clock: Date;
let pub: CrlPublisher;
let issuingPem: string;
let n = 0;

beforeAll(async () => {
  tca = await makeTestCa({}, 'device-ca-crlpub-');
  issuingPem = path.join(tca.dir, 'issuing-only.pem');
  fs.writeFileSync(issuingPem, toPem(tca.hierarchy.issuing.der, 'CERTIFICATE'));
});
afterAll(() => tca.cleanup());

beforeEach(() => {
  store = new SqliteStore(path.join(tca.dir, `store-${++n}.sqlite`));
  clock = new Date('2026-06-01T08:00:00.000Z');
  pub = new CrlPublisher(tca.hierarchy.issuing, store, CRL_CFG, PUBLIC, () => clock);
});
afterEach(async () => {
  pub.stop();
  await store.close();
});

const issuer = () => tca.hierarchy.issuing.name;

/** issue records a device certificate in a given shard (the CA's shard choice is what the store keeps) */
async function issue(shard: number, notAfter = new Date(clock.getTime() + 365 * 24 * HOUR)): Promise<string> {
  const serial = '4' + crypto.randomBytes(15).toString('hex').slice(1);
  await store.recordIssuance({
    cert: { serial, deviceId: null, issuer: issuer(), subject: 'CN=x', profile: 'default', notBefore: new Date(clock.getTime() - HOUR), notAfter, shard, spkiSha256: '00', der: Buffer.from(serial) },
    audit: { type: 'certificate.issued', actor: 'test', subject: serial, data: {} },
  });
  return serial;
}

const revoke = (serial: string, reason: RevocationReason, at = clock) => store.revokeCertificate(serial, reason, at, null, { type: 'certificate.revoked', actor: 'test', subject: serial, data: {} });

function openssl(args: string[], input?: Buffer): { status: number | null; out: string } {
  const r = spawnSync('openssl', args, { input, encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** crlText: `openssl crl -text` of the CRL, after `openssl crl -CAfile` verified its signature */
function crlText(c: CrlRecord): string {
  const f = path.join(tca.dir, `crl-${++n}.pem`);
  fs.writeFileSync(f, crlToPem(c.der));
  const v = openssl(['crl', '-in', f, '-CAfile', issuingPem, '-noout']);
  expect(v.out).toContain('verify OK');
  expect(v.status).toBe(0);
  return openssl(['crl', '-in', f, '-noout', '-text']).out;
}

/** tbsFields: the top-level fields of TBSCertList, to see whether revokedCertificates is present at all */
function tbsFields(der: Buffer): number[] {
  const [tbs] = children(readOne(der, 0x30), 3);
  return children(tbs, 16).map((t) => t.tag);
}

describe('what a shard CRL holds', () => {
  it('an empty shard: no revokedCertificates field, CRL number, critical IDP naming the shard URL, 24 h window', async () => {
    const c = await pub.current(2);
    expect(c).toMatchObject({ issuer: issuer(), shard: 2, number: 1n, entries: 0, thisUpdate: clock, nextUpdate: new Date(clock.getTime() + 24 * HOUR) });
    // version, signature, issuer, thisUpdate, nextUpdate, [0] crlExtensions: nothing in between
    expect(tbsFields(c.der)).toEqual([0x02, 0x30, 0x30, 0x17, 0x17, 0xa0]);
    const text = crlText(c);
    expect(text).toContain('No Revoked Certificates.');
    expect(text).toMatch(/X509v3 CRL Number: *\n *1\n/);
    expect(text).toMatch(/X509v3 Issuing Distribution Point: critical\s*\n\s*Full Name:\s*\n\s*URI:(\S+?)\s/);
    expect(/URI:(\S+?\.crl)/.exec(text)![1]).toBe(crlUrl(PUBLIC, issuer(), 2));
    expect(text).toContain('Only User Certificates');
  });

  it('lists the revoked certificates of its own shard only, with their reasons ("unspecified" has no reason code)', async () => {
    const a = await issue(1);
    const b = await issue(1);
    const other = await issue(3);
    await issue(1); // valid: not listed
    await revoke(a, 'keyCompromise');
    await revoke(b, 'unspecified');
    await revoke(other, 'superseded');
    const c = await pub.current(1);
    expect(c.entries).toBe(2);
    const text = crlText(c);
    expect(text).toContain(`Serial Number: ${a.toUpperCase()}`);
    expect(text).toContain(`Serial Number: ${b.toUpperCase()}`);
    expect(text).not.toContain(other.toUpperCase());
    const entryOf = (s: string) => text.slice(text.indexOf(s.toUpperCase())).split(/Serial Number:/)[0];
    expect(entryOf(a)).toMatch(/CRL Reason Code: *\n *Key Compromise/);
    expect(entryOf(b)).not.toContain('Reason');
  });

  it('drops a revoked certificate once it has expired', async () => {
    const s = await issue(0, new Date(clock.getTime() + 30 * HOUR));
    await revoke(s, 'keyCompromise');
    expect((await pub.current(0)).entries).toBe(1);
    clock = new Date(clock.getTime() + 31 * HOUR); // also past nextUpdate - renewBefore: re-issued
    const c = await pub.current(0);
    expect(c.entries).toBe(0);
    expect(tbsFields(c.der)).toEqual([0x02, 0x30, 0x30, 0x17, 0x17, 0xa0]);
  });

  it('never names a nextUpdate after the issuing CA expires', async () => {
    clock = new Date(tca.hierarchy.issuing.notAfter.getTime() - HOUR);
    const c = await pub.current(0);
    expect(c.nextUpdate).toEqual(tca.hierarchy.issuing.notAfter);
  });

  it('an unknown shard is not-found', async () => {
    for (const s of [-1, 4, 1.5, NaN]) await expect(pub.current(s)).rejects.toMatchObject({ code: 'not-found' });
    await expect(pub.current(99)).rejects.toBeInstanceOf(DeviceCaError);
  });
});

describe('when a CRL is re-issued', () => {
  it('not while the revision is unchanged and more than renewBefore is left: the same bytes', async () => {
    const first = await pub.current(0);
    clock = new Date(clock.getTime() + 11 * HOUR); // 13 h left > 12 h
    const again = await pub.current(0);
    expect(again.number).toBe(first.number);
    expect(again.der.equals(first.der)).toBe(true);
    expect(await pub.refresh()).toEqual([1, 2, 3]); // only the shards that had no CRL yet
    expect(await pub.refresh()).toEqual([]);
  });

  it('when less than renewBefore is left before nextUpdate: a new number and a new window', async () => {
    const first = await pub.current(0);
    clock = new Date(clock.getTime() + 12 * HOUR + 1000); // 12 h - 1 s left
    const renewed = await pub.current(0);
    expect(renewed.number).toBeGreaterThan(first.number);
    expect(renewed.thisUpdate).toEqual(new Date(Math.floor(clock.getTime() / 1000) * 1000));
    expect(renewed.nextUpdate.getTime()).toBe(renewed.thisUpdate.getTime() + 24 * HOUR);
    expect(renewed.nextUpdate.getTime()).toBeGreaterThan(first.nextUpdate.getTime());
  });

  it('when a certificate of the shard changes status (revoke, hold release), and only that shard', async () => {
    const s = await issue(3);
    const before = await Promise.all([0, 1, 2, 3].map((i) => pub.current(i)));
    await revoke(s, 'certificateHold');
    const after = await Promise.all([0, 1, 2, 3].map((i) => pub.current(i)));
    expect(after.slice(0, 3).map((c) => c.number)).toEqual(before.slice(0, 3).map((c) => c.number));
    expect(after[3].number).toBeGreaterThan(before[3].number);
    expect(after[3].entries).toBe(1);
    expect(crlText(after[3])).toMatch(/CRL Reason Code: *\n *Certificate Hold/);

    await store.releaseHold(s, { type: 'certificate.released', actor: 'test', subject: s, data: {} });
    const released = await pub.current(3);
    expect(released.number).toBeGreaterThan(after[3].number);
    expect(released.entries).toBe(0);
  });

  it('refresh re-issues exactly the stale shards', async () => {
    await pub.refresh();
    const s = await issue(2);
    await revoke(s, 'privilegeWithdrawn');
    expect(await pub.refresh()).toEqual([2]);
    clock = new Date(clock.getTime() + 13 * HOUR);
    expect(await pub.refresh()).toEqual([0, 1, 2, 3]);
  });

  it('CRL numbers only grow, across shards and publishers sharing the store', async () => {
    const other = new CrlPublisher(tca.hierarchy.issuing, store, CRL_CFG, PUBLIC, () => clock);
    const numbers: bigint[] = [];
    for (let i = 0; i < 6; i++) {
      const s = await issue(i % 4);
      await revoke(s, 'keyCompromise');
      numbers.push((await (i % 2 ? other : pub).current(i % 4)).number);
    }
    for (let i = 1; i < numbers.length; i++) expect(numbers[i]).toBeGreaterThan(numbers[i - 1]);
    // the second publisher serves what the first stored, without issuing another
    const mine = await pub.current(1);
    const theirs = await other.current(1);
    expect(theirs.number).toBe(mine.number);
    expect(theirs.der.equals(mine.der)).toBe(true);
  });

  it('every publication is audited (crl.published with its number), and the chain stays intact', async () => {
    const c = await pub.current(1);
    const s = await issue(1);
    await revoke(s, 'keyCompromise');
    const d = await pub.current(1);
    const published = (await store.listAudit({ limit: 1000 })).items.filter((r) => r.type === 'crl.published');
    expect(published.map((r) => [r.subject, r.data.number, r.data.entries])).toEqual([
      [`${issuer()}/1`, c.number.toString(), 0],
      [`${issuer()}/1`, d.number.toString(), 1],
    ]);
    const { verifyAuditChain } = await import('../../../src/audit/audit-verify');
    expect((await verifyAuditChain(store)).ok).toBe(true);
  });

  it('publish always issues a new CRL; concurrent calls for one shard share one generation', async () => {
    const a = await pub.current(0);
    const [x, y] = await Promise.all([pub.publish(0), pub.publish(0)]);
    expect(x).toBe(y);
    expect(x.number).toBeGreaterThan(a.number);
  });

  it('start() keeps every shard current on the check interval and reports what it published', async () => {
    const published: number[][] = [];
    const errors: unknown[] = [];
    const fast = new CrlPublisher(tca.hierarchy.issuing, store, { ...CRL_CFG, checkInterval: 0.05 }, PUBLIC, () => clock);
    fast.start(
      (e) => errors.push(e),
      (s) => published.push(s),
    );
    try {
      await waitFor(() => published.length >= 1);
      const s = await issue(1);
      await revoke(s, 'keyCompromise');
      await waitFor(() => published.some((p) => p.length === 1 && p[0] === 1));
      expect((await store.getCrl(issuer(), 1))!.entries).toBe(1);
      expect(errors).toEqual([]);
    } finally {
      fast.stop();
    }
  });

  it('stop() ends the loop even when it is called while a refresh is running', async () => {
    // the service calls crl.stop() and then closes the store: a tick that re-arms itself after stop()
    // would run on a closed store
    let calls = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const slow = new Proxy(store, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver);
        if (prop !== 'crlInfo') return typeof v === 'function' ? v.bind(target) : v;
        return async (...args: [string, number]) => {
          calls++;
          if (calls === 1) await gate;
          return target.crlInfo(...args);
        };
      },
    });
    const cfg = { ...CRL_CFG, checkInterval: 0.02 };
    const p = new CrlPublisher(tca.hierarchy.issuing, slow, cfg, PUBLIC, () => clock);
    p.start(() => undefined);
    try {
      await waitFor(() => calls === 1); // the first refresh is in flight
      p.stop();
      release();
      await new Promise((r) => setTimeout(r, 300)); // fifteen check intervals
      const settled = calls;
      await new Promise((r) => setTimeout(r, 300));
      expect(calls).toBe(settled); // no tick after the one that was running
    } finally {
      cfg.checkInterval = 1e6; // if the loop survived stop(), park it: the rest of the run shares this process
    }
  });
});

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
