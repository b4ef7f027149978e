import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { OcspAnswer, OcspService } from '../../../src/ca/ocsp-service';
import * as ocspCodec from '../../../src/ca/ocsp-codec';
import { OcspResponder, certIdHashes, encodeCertId } from '../../../src/ca/ocsp-codec';
import { certificateParts } from '../../../src/ca/certificate-parts';
import { toPem } from '../../../src/ca/pem';
import { contextExplicit, octetString, oid, seq } from '../../../src/der/der-writer';
import { OID } from '../../../src/der/oids';
import { Config } from '../../../src/config/schema';
import { generateKeyPair, softwareSigningKey } from '../../../src/keys/software-key-backend';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { RevocationFeed } from '../../../src/store/revocation-feed';
import { RevocationStore } from '../../../src/store/store';
import { TestCa, makeTestCa } from '../../fixtures/test-ca';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { TmpDir, makeTmpDir } from '../../helpers/tmp';
import { Registry } from 'prom-client';
import { withStoreErrors } from '../../../src/store/store-errors';
import { withStoreMetrics } from '../../../src/store/store-metrics';

/**
 * OcspService: nonce-less single requests (RFC 5019) are answered from a cache of pre-signed responses
 * that is checked against the store's status on every request; a changed status or a response past half
 * its validity is re-signed; a nonce gets a live response that echoes it (FreeRADIUS needs that); a CertID
 * of an issuer it does not serve throws 'not-found', a broken request 'bad-request'. Requests are
 * built by `openssl ocsp -reqout` and answers are checked by `openssl ocsp -respin`, as a relying party would.
 */

type Row = NonNullable<Awaited<ReturnType<RevocationStore['certificateStatus']>>>;
const HOUR = 3600_000;

let tca: TestCa;
let dir: string;
let responder: OcspResponder;
let rows: Map<string, Row>;
let reads: number;
let failing: boolean | 'unavailable';
let clock: Date;
let n = 0;
const cfgOf = (o: Partial<Config['ocsp']> = {}): Config['ocsp'] => ({ validity: 3600, maxAge: 60, cacheSize: 100, responderValidity: 30 * 86400, maxRequestBytes: 8192, ...o });
const store: Pick<RevocationStore, 'certificateStatus'> = {
  async certificateStatus(serial: string) {
    reads++;
    if (failing === 'unavailable') throw new DeviceCaError('store-unavailable', 'store unavailable (Redis unreachable)');
    if (failing) throw new Error('store down');
    return rows.get(serial) ?? null;
  },
};
const service = (o: Partial<Config['ocsp']> = {}) => new OcspService([tca.hierarchy.issuing], responder, store, cfgOf(o), () => clock);

beforeAll(async () => {
  tca = await makeTestCa({}, 'device-ca-ocspsvc-');
  dir = tca.dir;
  const { privateKey } = generateKeyPair('ecdsa-p256');
  const key = softwareSigningKey(privateKey, 'ecdsa-p256', 'memory');
  const cert = await tca.ca.issueOcspResponder(key.spki);
  responder = new OcspResponder(key, cert.der);
  fs.writeFileSync(path.join(dir, 'issuing.pem'), toPem(tca.hierarchy.issuing.der, 'CERTIFICATE'));
  fs.writeFileSync(path.join(dir, 'chain.pem'), toPem(tca.hierarchy.issuing.der, 'CERTIFICATE') + toPem(tca.hierarchy.root.der, 'CERTIFICATE'));
  openssl([
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    'other.key',
    '-subj',
    '/O=device-ca/CN=device-ca Issuing CA',
    '-days',
    '1',
    '-out',
    'other.pem',
  ]);
});
afterAll(() => tca.cleanup());

beforeEach(() => {
  rows = new Map();
  reads = 0;
  failing = false;
  clock = new Date(Date.now() - 60_000);
});

const NOT_AFTER = new Date(Date.now() + 365 * 24 * HOUR);
const good = (serial: string): Row => ({ serial, issuer: tca.hierarchy.issuing.name, status: 'valid', revokedAt: null, revocationReason: null, notAfter: NOT_AFTER });
const revoked = (serial: string, reason: Row['revocationReason'], at = new Date(clock.getTime() - 1000)): Row => ({
  ...good(serial),
  status: 'revoked',
  revokedAt: new Date(Math.floor(at.getTime() / 1000) * 1000),
  revocationReason: reason,
});

function openssl(args: string[]): { status: number | null; out: string } {
  const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** request: `openssl ocsp -issuer <issuer> -serial 0x<serial> -reqout`, nonce unless noNonce */
function request(serials: string[], o: { noNonce?: boolean; issuer?: string; sha256?: boolean } = {}): { der: Buffer; file: string } {
  const file = `req-${++n}.der`;
  // the digest option applies to the -serial options after it
  const args = ['ocsp', ...(o.sha256 ? ['-sha256'] : []), '-issuer', o.issuer ?? 'issuing.pem', ...serials.flatMap((s) => ['-serial', `0x${s}`]), '-reqout', file];
  if (o.noNonce) args.push('-no_nonce');
  const r = openssl(args);
  expect(r.status).toBe(0);
  return { der: fs.readFileSync(path.join(dir, file)), file };
}

/** verdict: `openssl ocsp -respin` of the answer, checked against the request it answers (nonce included) */
function verdict(a: OcspAnswer, req: { file: string }): string {
  const f = `resp-${++n}.der`;
  fs.writeFileSync(path.join(dir, f), a.der);
  return openssl(['ocsp', '-reqin', req.file, '-respin', f, '-CAfile', 'chain.pem', '-resp_text']).out;
}

/** single: openssl's -resp_text block for one serial: "Cert Status: ...", revocation time and reason */
function single(text: string, serial: string): string {
  const i = text.indexOf(`Serial Number: ${serial.toUpperCase()}`);
  if (i < 0) return `(no response for ${serial})`;
  return text.slice(i).split(/Certificate ID:|Response Extensions:|Signature Algorithm:/)[0];
}

const SERIAL = '4a1b2c3d4e5f60718293a4b5c6d7e8f9';
const SERIAL2 = '5a1b2c3d4e5f60718293a4b5c6d7e8f9';

describe('nonce-less single requests: the cache', () => {
  it('a cache hit returns the identical bytes and caching metadata, and still reads the status', async () => {
    rows.set(SERIAL, good(SERIAL));
    const svc = service();
    const req = request([SERIAL], { noNonce: true });
    const first = await svc.respond(req.der);
    clock = new Date(clock.getTime() + 5 * 60_000);
    const second = await svc.respond(req.der);
    expect(second.der.equals(first.der)).toBe(true);
    expect(second.cache).toEqual(first.cache);
    expect(first.cache!.etag).toMatch(/^"[0-9a-f]{40}"$/);
    expect(first.cache!.nextUpdate.getTime() - first.cache!.thisUpdate.getTime()).toBe(HOUR);
    expect(first.outcome).toBe('good');
    expect(reads).toBe(2); // a revocation by another process is seen on the next request
    const v = verdict(second, req);
    expect(v).toContain('Response verify OK');
    expect(single(v, SERIAL)).toContain('Cert Status: good');
    expect(v).not.toContain('Response Extensions'); // no nonce in a pre-signed response
  });

  it('a status change is answered at once with a new response: revoked with its reason, then the hold released', async () => {
    rows.set(SERIAL, good(SERIAL));
    const svc = service();
    const req = request([SERIAL], { noNonce: true });
    const before = await svc.respond(req.der);

    rows.set(SERIAL, revoked(SERIAL, 'certificateHold'));
    const held = await svc.respond(req.der);
    expect(held.der.equals(before.der)).toBe(false);
    expect(held.cache!.etag).not.toBe(before.cache!.etag);
    expect(held.outcome).toBe('revoked');
    expect(single(verdict(held, req), SERIAL)).toMatch(/Cert Status: revoked\s+Revocation Time: .*\s+Revocation Reason: certificateHold \(0x6\)/);

    rows.set(SERIAL, revoked(SERIAL, 'keyCompromise'));
    const compromised = await svc.respond(req.der);
    expect(compromised.der.equals(held.der)).toBe(false);
    expect(single(verdict(compromised, req), SERIAL)).toMatch(/Revocation Reason: keyCompromise \(0x1\)/);

    rows.set(SERIAL, good(SERIAL));
    const released = await svc.respond(req.der);
    expect(released.outcome).toBe('good');
    expect(single(verdict(released, req), SERIAL)).toContain('Cert Status: good');
  });

  it('unspecified is revoked without a reason', async () => {
    rows.set(SERIAL, revoked(SERIAL, 'unspecified'));
    const req = request([SERIAL], { noNonce: true });
    const v = single(verdict(await service().respond(req.der), req), SERIAL);
    expect(v).toContain('Cert Status: revoked');
    expect(v).not.toMatch(/Reason/);
  });

  it('is re-signed once half of the validity is gone', async () => {
    rows.set(SERIAL, good(SERIAL));
    const svc = service();
    const req = request([SERIAL], { noNonce: true });
    const first = await svc.respond(req.der);
    clock = new Date(clock.getTime() + 29 * 60_000);
    expect((await svc.respond(req.der)).der.equals(first.der)).toBe(true);
    clock = new Date(clock.getTime() + 2 * 60_000); // 31 min: less than half of the hour left
    const later = await svc.respond(req.der);
    expect(later.der.equals(first.der)).toBe(false);
    expect(later.cache!.thisUpdate.getTime()).toBe(Math.floor(clock.getTime() / 1000) * 1000);
  });

  it('keeps at most cacheSize responses, oldest out first; cacheSize 0 signs every time', async () => {
    rows.set(SERIAL, good(SERIAL));
    rows.set(SERIAL2, good(SERIAL2));
    const small = service({ cacheSize: 1 });
    const r1 = request([SERIAL], { noNonce: true });
    const r2 = request([SERIAL2], { noNonce: true });
    const a = await small.respond(r1.der);
    await small.respond(r2.der); // evicts SERIAL
    expect((await small.respond(r1.der)).der.equals(a.der)).toBe(false);

    const none = service({ cacheSize: 0 });
    const x = await none.respond(r1.der);
    const y = await none.respond(r1.der);
    expect(x.der.equals(y.der)).toBe(false); // ECDSA: a new signature each time
    expect(y.cache).toBeDefined(); // still cacheable by HTTP caches
  });

  it('a repeated request is parsed once, its status still read every time; a request with a nonce never takes that path', async () => {
    rows.set(SERIAL, good(SERIAL));
    const svc = service();
    const req = request([SERIAL], { noNonce: true });
    const parse = jest.spyOn(ocspCodec, 'parseOcspRequest');
    try {
      const first = await svc.respond(req.der);
      const again = await svc.respond(Buffer.from(req.der)); // equal bytes, another buffer
      expect(parse).toHaveBeenCalledTimes(1);
      expect(again.der.equals(first.der)).toBe(true);
      expect(reads).toBe(2);
      rows.set(SERIAL, revoked(SERIAL, 'keyCompromise'));
      const third = await svc.respond(req.der);
      expect(parse).toHaveBeenCalledTimes(1);
      expect(third.outcome).toBe('revoked');
      expect(single(verdict(third, req), SERIAL)).toMatch(/Revocation Reason: keyCompromise \(0x1\)/);
      const withNonce = request([SERIAL]);
      const live = await svc.respond(withNonce.der);
      await svc.respond(withNonce.der);
      expect(parse).toHaveBeenCalledTimes(3);
      expect(verdict(live, withNonce)).toContain('Response verify OK');
    } finally {
      parse.mockRestore();
    }
  });

  it('SHA-256 CertIDs are answered too, echoing the CertID as sent', async () => {
    rows.set(SERIAL, good(SERIAL));
    const req = request([SERIAL], { noNonce: true, sha256: true });
    const a = await service().respond(req.der);
    expect(a.outcome).toBe('good');
    const v = verdict(a, req);
    expect(v).toContain('Response verify OK');
    expect(v).toMatch(/Hash Algorithm: sha256/);
  });
});

describe('a renewed responder certificate (useResponder)', () => {
  it('an answer still being signed by the old responder when it is renewed is not kept: the next request is signed by the renewed one', async () => {
    rows.set(SERIAL, good(SERIAL));
    const responderOf = async (): Promise<{ key: ReturnType<typeof softwareSigningKey>; der: Buffer }> => {
      const { privateKey } = generateKeyPair('ecdsa-p256');
      const key = softwareSigningKey(privateKey, 'ecdsa-p256', 'memory');
      return { key, der: (await tca.ca.issueOcspResponder(key.spki)).der };
    };
    const before = await responderOf();
    const renewed = await responderOf();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    /** Held: the old responder, whose signature completes only once the test releases it */
    class Held extends OcspResponder {
      override async respond(...a: Parameters<OcspResponder['respond']>): Promise<Buffer> {
        await gate;
        return super.respond(...a);
      }
    }
    const svc = new OcspService([tca.hierarchy.issuing], new Held(before.key, before.der), store, cfgOf(), () => clock);
    const req = request([SERIAL], { noNonce: true });
    const pending = svc.respond(req.der);
    await new Promise((r) => setImmediate(r)); // the old responder is signing
    svc.useResponder(new OcspResponder(renewed.key, renewed.der));
    release();
    const first = await pending;
    expect(first.der.includes(before.der)).toBe(true); // asked before the renewal: the old responder's answer
    const next = await svc.respond(req.der);
    expect(next.der.includes(renewed.der)).toBe(true);
    expect(next.der.includes(before.der)).toBe(false);
    const v = verdict(next, req);
    expect(v).toContain('Response verify OK');
    expect(single(v, SERIAL)).toContain('Cert Status: good');
  });
});

describe('requests with a nonce: live responses', () => {
  it('echo the nonce (openssl checks it), are never cached, and leave the cache alone', async () => {
    rows.set(SERIAL, good(SERIAL));
    const svc = service();
    const plain = request([SERIAL], { noNonce: true });
    const cached = await svc.respond(plain.der);

    const r1 = request([SERIAL]);
    const r2 = request([SERIAL]);
    const a1 = await svc.respond(r1.der);
    const a2 = await svc.respond(r2.der);
    expect(a1.cache).toBeUndefined();
    expect(a1.outcome).toBe('good');
    expect(a1.der.equals(a2.der)).toBe(false);
    for (const [a, r] of [
      [a1, r1],
      [a2, r2],
    ] as const) {
      const v = verdict(a, r);
      expect(v).toContain('Response verify OK');
      expect(v).toMatch(/Response Extensions:\s*\n\s*OCSP Nonce:/);
      expect(v).not.toMatch(/WARNING: no nonce in response|nonce verify error/i);
    }
    // r1's nonce is inside a1, r2's inside a2
    const nonceOf = (req: Buffer) => req.subarray(req.length - 18);
    expect(a1.der.includes(nonceOf(r1.der))).toBe(true);
    expect(a2.der.includes(nonceOf(r2.der))).toBe(true);
    expect(a1.der.includes(nonceOf(r2.der))).toBe(false);
    // the nonce-less answer is still the cached one
    expect((await svc.respond(plain.der)).der.equals(cached.der)).toBe(true);
  });

  it('a nonce that is wrong for the request makes openssl refuse: the check above is real', async () => {
    rows.set(SERIAL, good(SERIAL));
    const svc = service();
    const r1 = request([SERIAL]);
    const r2 = request([SERIAL]);
    const v = verdict(await svc.respond(r2.der), r1);
    expect(v).toMatch(/nonce verify error/i);
  });

  it('answers several certificates in one live response (outcome mixed)', async () => {
    rows.set(SERIAL, good(SERIAL));
    rows.set(SERIAL2, revoked(SERIAL2, 'superseded'));
    const req = request([SERIAL, SERIAL2], { noNonce: true });
    const a = await service().respond(req.der);
    expect(a.outcome).toBe('mixed');
    expect(a.cache).toBeUndefined();
    const v = verdict(a, req);
    expect(v).toContain('Response verify OK');
    expect(single(v, SERIAL)).toContain('Cert Status: good');
    expect(single(v, SERIAL2)).toMatch(/Cert Status: revoked\s+Revocation Time: .*\s+Revocation Reason: superseded \(0x4\)/);
  });

  it('a nonce longer than 64 octets is malformed (RFC 8954)', async () => {
    const { issuerNameHash, issuerKeyHash } = certIdHashes(tca.hierarchy.issuing.subject, certificateParts(tca.hierarchy.issuing.der).spki);
    const id = encodeCertId({ hash: 'sha1', issuerNameHash, issuerKeyHash, serialNumber: SERIAL });
    const ext = (len: number) => contextExplicit(2, seq(seq(oid(OID.ocspNonce), octetString(octetString(Buffer.alloc(len, 7))))));
    rows.set(SERIAL, good(SERIAL));
    expect((await service().respond(seq(seq(seq(seq(id)), ext(64))))).outcome).toBe('good');
    await expect(service().respond(seq(seq(seq(seq(id)), ext(65))))).rejects.toMatchObject({ code: 'bad-request' });
  });
});

describe('what it cannot answer it throws as a DeviceCaError (the OCSP adapter maps it to a status)', () => {
  it('unknown serial of our issuer: unknown', async () => {
    const req = request(['7fffffff']);
    const a = await service().respond(req.der);
    expect(a.outcome).toBe('unknown');
    const v = verdict(a, req);
    expect(v).toContain('Response verify OK');
    expect(single(v, '7FFFFFFF')).toContain('Cert Status: unknown');
  });

  it('a serial the store knows under another issuer name is unknown, not good', async () => {
    rows.set(SERIAL, { ...good(SERIAL), issuer: 'some-other-ca' });
    expect((await service().respond(request([SERIAL], { noNonce: true }).der)).outcome).toBe('unknown');
  });

  it("a CertID of an issuer it does not serve (same name, other key): 'not-found' (the adapter's unauthorized)", async () => {
    rows.set(SERIAL, good(SERIAL));
    for (const req of [request([SERIAL], { issuer: 'other.pem' }), request([SERIAL], { issuer: 'other.pem', noNonce: true }), request([SERIAL, SERIAL2], { issuer: 'other.pem' })]) {
      await expect(service().respond(req.der)).rejects.toMatchObject({ name: 'DeviceCaError', code: 'not-found' });
    }
    expect(reads).toBe(0); // decided before any store read
  });

  it.each([
    ['empty', () => Buffer.alloc(0)],
    ['garbage', () => Buffer.from('this is not DER at all')],
    ['a truncated request', () => Buffer.from('3082ffff30', 'hex')],
    ['a certificate instead of a request', () => tca.hierarchy.issuing.der],
    ['a valid request followed by junk', () => Buffer.concat([request([SERIAL]).der, Buffer.from([0])])],
    ['over maxRequestBytes', () => Buffer.concat([Buffer.from('30822070', 'hex'), Buffer.alloc(0x2070)])],
  ] as [string, () => Buffer][])("%s: 'bad-request' (the adapter's malformedRequest)", async (_what, body) => {
    await expect(service().respond(body())).rejects.toMatchObject({ name: 'DeviceCaError', code: 'bad-request' });
    expect(reads).toBe(0);
  });

  it("a failing store: the store's error is thrown, and nothing cached", async () => {
    rows.set(SERIAL, good(SERIAL));
    const svc = service();
    const req = request([SERIAL], { noNonce: true });
    failing = true;
    await expect(svc.respond(req.der)).rejects.toThrow('store down');
    await expect(svc.respond(request([SERIAL]).der)).rejects.toThrow('store down');
    failing = false;
    expect((await svc.respond(req.der)).outcome).toBe('good');
  });
});

describe('a store that is unavailable (Redis unreachable)', () => {
  it('the last pre-signed answer is served until its nextUpdate, then tryLater; nothing new is signed', async () => {
    rows.set(SERIAL, good(SERIAL));
    const svc = service();
    const req = request([SERIAL], { noNonce: true });
    const first = await svc.respond(req.der);
    failing = 'unavailable';
    clock = new Date(clock.getTime() + 50 * 60_000); // past half of the validity: would be re-signed, but cannot be
    const during = await svc.respond(req.der);
    expect(during.der.equals(first.der)).toBe(true);
    expect(during.cache).toEqual(first.cache);
    expect(single(verdict(during, req), SERIAL)).toContain('Cert Status: good');
    // never answered before, a nonce (live signing), or past nextUpdate: the store's error (the adapter's tryLater)
    await expect(svc.respond(request([SERIAL2], { noNonce: true }).der)).rejects.toMatchObject({ code: 'store-unavailable' });
    await expect(svc.respond(request([SERIAL]).der)).rejects.toMatchObject({ code: 'store-unavailable' });
    clock = new Date(first.cache!.nextUpdate.getTime());
    await expect(svc.respond(req.der)).rejects.toMatchObject({ code: 'store-unavailable' });
    failing = false;
    expect(await svc.respond(req.der)).toMatchObject({ outcome: 'good' });
  });

  it('another failure of the store is not hidden by the cache', async () => {
    rows.set(SERIAL, good(SERIAL));
    const svc = service();
    const req = request([SERIAL], { noNonce: true });
    await svc.respond(req.der);
    failing = true;
    await expect(svc.respond(req.der)).rejects.toThrow('store down');
  });
});

describe('with a revocation feed (the shared store publishes status changes)', () => {
  /** feed: a RevocationFeed the test drives: change(serial) as a published message, live(b) as the subscription's state */
  function feed(): RevocationFeed & { change(serial: string): void; live(b: boolean): void; closed: boolean } {
    let onChange: (s: string) => void = () => undefined;
    let onLive: (b: boolean) => void = () => undefined;
    const f = {
      closed: false,
      watchRevocations(c: (s: string) => void, l: (b: boolean) => void) {
        onChange = c;
        onLive = l;
        return () => void (f.closed = true);
      },
      change: (serial: string) => onChange(serial),
      live: (b: boolean) => onLive(b),
    };
    return f;
  }
  const withFeed = (f: RevocationFeed) => new OcspService([tca.hierarchy.issuing], responder, store, cfgOf(), () => clock, undefined, f);

  it('while live, a cached answer reads nothing from the store; a published change is answered on the next request', async () => {
    rows.set(SERIAL, good(SERIAL));
    const f = feed();
    const svc = withFeed(f);
    const req = request([SERIAL], { noNonce: true });
    f.live(true);
    await svc.respond(req.der);
    for (let i = 0; i < 5; i++) expect((await svc.respond(req.der)).outcome).toBe('good');
    expect(reads).toBe(1);
    rows.set(SERIAL, revoked(SERIAL, 'keyCompromise'));
    expect((await svc.respond(req.der)).outcome).toBe('good'); // not told yet: the kept status
    f.change(SERIAL);
    const after = await svc.respond(req.der);
    expect(after.outcome).toBe('revoked');
    expect(single(verdict(after, req), SERIAL)).toMatch(/Revocation Reason: keyCompromise/);
    expect(reads).toBe(2);
    svc.close();
    expect(f.closed).toBe(true);
  });

  it('answerKept follows the feed: answered from memory while live, deferred to respond after a published change or while the feed is down', async () => {
    rows.set(SERIAL, good(SERIAL));
    const f = feed();
    const svc = withFeed(f);
    const req = request([SERIAL], { noNonce: true });
    f.live(true);
    const first = await svc.respond(req.der);
    expect(svc.answerKept(req.der)?.der.equals(first.der)).toBe(true);
    rows.set(SERIAL, revoked(SERIAL, 'keyCompromise'));
    f.change(SERIAL);
    expect(svc.answerKept(req.der)).toBeUndefined();
    expect((await svc.respond(req.der)).outcome).toBe('revoked');
    expect(svc.answerKept(req.der)?.outcome).toBe('revoked');
    f.live(false);
    expect(svc.answerKept(req.der)).toBeUndefined();
    expect(reads).toBe(2);
  });

  it('not live (never subscribed, or disconnected): every request reads the store, and what was kept is forgotten', async () => {
    rows.set(SERIAL, good(SERIAL));
    const f = feed();
    const svc = withFeed(f);
    const req = request([SERIAL], { noNonce: true });
    await svc.respond(req.der);
    await svc.respond(req.der);
    expect(reads).toBe(2);
    f.live(true);
    await svc.respond(req.der);
    await svc.respond(req.der);
    expect(reads).toBe(3);
    f.live(false);
    rows.set(SERIAL, revoked(SERIAL, 'superseded'));
    expect((await svc.respond(req.der)).outcome).toBe('revoked');
    f.live(true); // a message may have been missed while away: the kept statuses were dropped
    rows.set(SERIAL, good(SERIAL));
    expect((await svc.respond(req.der)).outcome).toBe('good');
    expect(reads).toBe(5);
  });

  it('a change published while a status is being read is not overtaken by that read', async () => {
    const f = feed();
    const slow: Pick<RevocationStore, 'certificateStatus'> = {
      async certificateStatus(serial: string) {
        reads++;
        const row = rows.get(serial) ?? null;
        // the revocation commits and is published after this read saw the old status
        rows.set(SERIAL, revoked(SERIAL, 'keyCompromise'));
        f.change(SERIAL);
        return row;
      },
    };
    rows.set(SERIAL, good(SERIAL));
    const svc = new OcspService([tca.hierarchy.issuing], responder, slow, cfgOf(), () => clock, undefined, f);
    f.live(true);
    const req = request([SERIAL], { noNonce: true });
    expect((await svc.respond(req.der)).outcome).toBe('good');
    expect((await svc.respond(req.der)).outcome).toBe('revoked');
  });
});

describe("with SQLite's statusVersion (every process of one machine reads one file)", () => {
  let tmp: TmpDir;
  let mine: SqliteStore;
  let other: SqliteStore;
  beforeEach(() => {
    tmp = makeTmpDir('device-ca-ocsp-version-');
    // two connections to one file: this process's store and another process's (another worker, the CLI)
    mine = new SqliteStore(tmp.file('device-ca.sqlite'));
    other = new SqliteStore(tmp.file('device-ca.sqlite'));
  });
  afterEach(async () => {
    await mine.close();
    await other.close();
    tmp.cleanup();
  });
  const audit = { type: 'test', actor: 'test', subject: 'x', data: {} };
  const issueIn = (s: SqliteStore, serial: string) =>
    s.recordIssuance({
      cert: {
        serial,
        deviceId: null,
        issuer: tca.hierarchy.issuing.name,
        subject: `CN=${serial}`,
        profile: 'default',
        notBefore: new Date(Date.now() - HOUR),
        notAfter: NOT_AFTER,
        shard: 0,
        spkiSha256: '00'.repeat(32),
        der: Buffer.from([0x30, 0]),
      },
      audit,
    });
  /** counted: this process's store as OcspService sees it, counting status reads */
  const counted = () => ({
    certificateStatus: (serial: string) => (reads++, mine.certificateStatus(serial)),
    statusVersion: () => mine.statusVersion(),
  });

  it("statuses are kept between requests; a revocation committed by another process is answered on the next request, and by this process's own connection too", async () => {
    await issueIn(other, SERIAL);
    const svc = new OcspService([tca.hierarchy.issuing], responder, counted(), cfgOf());
    const req = request([SERIAL], { noNonce: true });
    for (let i = 0; i < 3; i++) expect((await svc.respond(req.der)).outcome).toBe('good');
    expect(reads).toBe(1);
    await other.revokeCertificate(SERIAL, 'certificateHold', new Date(Date.now() - 1000), null, audit);
    const held = await svc.respond(req.der);
    expect(single(verdict(held, req), SERIAL)).toMatch(/Cert Status: revoked[\s\S]*Revocation Reason: certificateHold/);
    await other.releaseHold(SERIAL, audit);
    expect((await svc.respond(req.der)).outcome).toBe('good');
    // a write through this very connection rewrites the same wal-index header
    await mine.revokeCertificate(SERIAL, 'keyCompromise', new Date(Date.now() - 1000), null, audit);
    const after = await svc.respond(req.der);
    expect(single(verdict(after, req), SERIAL)).toMatch(/Revocation Reason: keyCompromise/);
    expect((await svc.respond(req.der)).outcome).toBe('revoked');
    expect(reads).toBe(4);
  });

  it('a request with a nonce is signed live over the kept status, and sees a revocation by another process at once', async () => {
    await issueIn(other, SERIAL);
    const svc = new OcspService([tca.hierarchy.issuing], responder, counted(), cfgOf());
    const first = request([SERIAL]);
    expect(single(verdict(await svc.respond(first.der), first), SERIAL)).toContain('Cert Status: good');
    const second = request([SERIAL]);
    const again = await svc.respond(second.der);
    expect(verdict(again, second)).toMatch(/Response verify OK/);
    expect(reads).toBe(1);
    await other.revokeCertificate(SERIAL, 'superseded', new Date(Date.now() - 1000), null, audit);
    const third = request([SERIAL]);
    expect(single(verdict(await svc.respond(third.der), third), SERIAL)).toMatch(/Cert Status: revoked[\s\S]*Revocation Reason: superseded/);
    expect(reads).toBe(2);
  });

  it('a serial answered unknown is good on the next request once another process has issued it', async () => {
    const svc = new OcspService([tca.hierarchy.issuing], responder, counted(), cfgOf());
    const req = request([SERIAL2], { noNonce: true });
    expect((await svc.respond(req.der)).outcome).toBe('unknown');
    expect((await svc.respond(req.der)).outcome).toBe('unknown');
    // an absent row is not kept: an issuance moves no status, so the version would not tell
    expect(reads).toBe(2);
    await issueIn(other, SERIAL2);
    expect((await svc.respond(req.der)).outcome).toBe('good');
  });

  it('answerKept: a repeated request is answered at once with the same bytes; a revocation by another process makes it defer to respond, which answers revoked', async () => {
    await issueIn(other, SERIAL);
    const svc = new OcspService([tca.hierarchy.issuing], responder, counted(), cfgOf(), () => clock);
    const req = request([SERIAL], { noNonce: true });
    expect(svc.answerKept(req.der)).toBeUndefined(); // never answered: respond parses, reads and signs
    const first = await svc.respond(req.der);
    const kept = svc.answerKept(Buffer.from(req.der)); // equal bytes, another buffer
    expect(kept?.der.equals(first.der)).toBe(true);
    expect(kept?.cache).toEqual(first.cache);
    expect(reads).toBe(1);

    await other.revokeCertificate(SERIAL, 'keyCompromise', new Date(Date.now() - 1000), null, audit);
    expect(svc.answerKept(req.der)).toBeUndefined(); // the version changed: the status is read again
    const revokedNow = await svc.respond(req.der);
    expect(single(verdict(revokedNow, req), SERIAL)).toMatch(/Cert Status: revoked[\s\S]*Revocation Reason: keyCompromise/);
    expect(reads).toBe(2);
    expect(svc.answerKept(req.der)?.der.equals(revokedNow.der)).toBe(true);

    // half of the validity gone: re-signed by respond, never served stale by answerKept
    clock = new Date(clock.getTime() + 31 * 60_000);
    expect(svc.answerKept(req.der)).toBeUndefined();
    const resigned = await svc.respond(req.der);
    expect(resigned.der.equals(revokedNow.der)).toBe(false);
    expect(svc.answerKept(req.der)?.der.equals(resigned.der)).toBe(true);
  });

  it('answerKept defers every other shape to respond: a nonce, several CertIDs, a status older than the kept-status bound, a store without statusVersion', async () => {
    await issueIn(other, SERIAL);
    await issueIn(other, SERIAL2);
    const svc = new OcspService([tca.hierarchy.issuing], responder, counted(), cfgOf());
    const withNonce = request([SERIAL]);
    await svc.respond(withNonce.der);
    expect(svc.answerKept(withNonce.der)).toBeUndefined();
    const two = request([SERIAL, SERIAL2], { noNonce: true });
    await svc.respond(two.der);
    expect(svc.answerKept(two.der)).toBeUndefined();
    const one = request([SERIAL], { noNonce: true });
    await svc.respond(one.der);
    expect(svc.answerKept(one.der)).toBeDefined();
    const now = Date.now();
    const later = jest.spyOn(Date, 'now').mockReturnValue(now + 61_000); // STATUS_MAX_AGE_MS
    try {
      expect(svc.answerKept(one.der)).toBeUndefined();
    } finally {
      later.mockRestore();
    }
    // without a version or a feed, every answer reads the store: nothing is answered from memory
    const plain = new OcspService([tca.hierarchy.issuing], responder, { certificateStatus: (serial: string) => mine.certificateStatus(serial) }, cfgOf());
    await plain.respond(one.der);
    expect(plain.answerKept(one.der)).toBeUndefined();
  });

  it("wrapped as the service wraps it (store-errors, store-metrics), the store's own reader is what is checked per request, and a revocation by another process is still answered next", async () => {
    await issueIn(other, SERIAL);
    const wrapped = withStoreMetrics(
      withStoreErrors(mine, (e) => e),
      new Registry(),
      'sqlite',
    );
    const viaWrapper = jest.spyOn(mine, 'statusVersion');
    const svc = new OcspService([tca.hierarchy.issuing], responder, wrapped, cfgOf());
    const req = request([SERIAL], { noNonce: true });
    for (let i = 0; i < 3; i++) expect((await svc.respond(req.der)).outcome).toBe('good');
    expect(svc.answerKept(req.der)?.outcome).toBe('good');
    // statusVersion runs for each check (through the reader): the same method, not a second way to read
    expect(viaWrapper.mock.calls.length).toBeGreaterThanOrEqual(4);
    await other.revokeCertificate(SERIAL, 'keyCompromise', new Date(Date.now() - 1000), null, audit);
    expect(svc.answerKept(req.der)).toBeUndefined();
    expect((await svc.respond(req.der)).outcome).toBe('revoked');
    expect(svc.answerKept(req.der)?.outcome).toBe('revoked');
    viaWrapper.mockRestore();
  });

  it('a store offering statusVersionReader is checked through it, not through statusVersion', async () => {
    await issueIn(other, SERIAL);
    let direct = 0;
    let wrapped = 0;
    const svc = new OcspService(
      [tca.hierarchy.issuing],
      responder,
      {
        certificateStatus: (serial: string) => (reads++, mine.certificateStatus(serial)),
        statusVersion: () => (wrapped++, mine.statusVersion()),
        statusVersionReader: () => () => (direct++, mine.statusVersion()),
      },
      cfgOf(),
    );
    const req = request([SERIAL], { noNonce: true });
    for (let i = 0; i < 3; i++) expect((await svc.respond(req.der)).outcome).toBe('good');
    expect([direct, wrapped, reads]).toEqual([3, 0, 1]);
  });

  it('commits by another process that change no status (an issuance, an audit record, a lease, a CRL) keep the statuses: no row read; a revocation after them is answered', async () => {
    await issueIn(other, SERIAL);
    const svc = new OcspService([tca.hierarchy.issuing], responder, counted(), cfgOf());
    const req = request([SERIAL], { noNonce: true });
    expect((await svc.respond(req.der)).outcome).toBe('good');
    expect(reads).toBe(1);
    // what a busy CA commits all the time: none of it is a status change
    await issueIn(other, SERIAL2);
    await other.appendAudit(audit);
    await other.acquireLease('ca-duties', 'other', 30_000, new Date());
    const crlNumber = await other.nextCrlNumber(tca.hierarchy.issuing.name);
    await other.saveCrl({
      issuer: tca.hierarchy.issuing.name,
      shard: 0,
      number: crlNumber,
      revision: 0,
      thisUpdate: new Date(),
      nextUpdate: new Date(Date.now() + HOUR),
      entries: 0,
      der: Buffer.from([0x30, 0]),
    });
    for (let i = 0; i < 3; i++) expect((await svc.respond(req.der)).outcome).toBe('good');
    expect(reads).toBe(1);
    await other.revokeCertificate(SERIAL, 'keyCompromise', new Date(Date.now() - 1000), null, audit);
    expect(single(verdict(await svc.respond(req.der), req), SERIAL)).toMatch(/Cert Status: revoked[\s\S]*Revocation Reason: keyCompromise/);
    expect(reads).toBe(2);
  });

  it("a device change by another process that revokes the device's certificates is answered on the next request", async () => {
    await other.createDevices([{ device: { id: 'dev-1', owner: 'o', label: null, state: 'registered' }, secret: { hash: 'h', expiresAt: new Date(Date.now() + HOUR) }, audit }], {
      skipExisting: false,
    });
    await other.recordIssuance({
      cert: {
        serial: SERIAL,
        deviceId: 'dev-1',
        issuer: tca.hierarchy.issuing.name,
        subject: 'CN=dev-1',
        profile: 'default',
        notBefore: new Date(Date.now() - HOUR),
        notAfter: NOT_AFTER,
        shard: 0,
        spkiSha256: '00'.repeat(32),
        der: Buffer.from([0x30, 0]),
      },
      audit,
    });
    const svc = new OcspService([tca.hierarchy.issuing], responder, counted(), cfgOf());
    const req = request([SERIAL], { noNonce: true });
    expect((await svc.respond(req.der)).outcome).toBe('good');
    await other.applyDeviceChange({
      deviceId: 'dev-1',
      fromStates: ['active', 'registered'],
      toState: 'suspended',
      revoke: { reason: 'certificateHold', at: new Date(Date.now() - 1000), holdOnly: true },
      audit,
    });
    expect(single(verdict(await svc.respond(req.der), req), SERIAL)).toMatch(/Cert Status: revoked[\s\S]*Revocation Reason: certificateHold/);
    await other.applyDeviceChange({ deviceId: 'dev-1', fromStates: ['suspended'], toState: 'active', releaseHolds: true, audit });
    expect((await svc.respond(req.der)).outcome).toBe('good');
  });

  it('a database without a wal-index (in memory) has no statusVersion to offer: it refuses rather than never changing', async () => {
    const mem = new SqliteStore(':memory:');
    try {
      expect(() => mem.statusVersion()).toThrow(/no wal-index/);
    } finally {
      await mem.close();
    }
  });

  it('a store whose version check fails is read on every request', async () => {
    await issueIn(other, SERIAL);
    const broken = {
      certificateStatus: (serial: string) => (reads++, mine.certificateStatus(serial)),
      statusVersion: (): number => {
        throw new Error('closed');
      },
    };
    const svc = new OcspService([tca.hierarchy.issuing], responder, broken, cfgOf());
    const req = request([SERIAL], { noNonce: true });
    for (let i = 0; i < 3; i++) expect((await svc.respond(req.der)).outcome).toBe('good');
    expect(reads).toBe(3);
  });
});

describe("with a shared store's status generation (Redis: a read per event-loop turn, after the request arrived)", () => {
  let generation: string | null;
  let generationReads: number;
  const genStore = {
    certificateStatus: (serial: string) => store.certificateStatus(serial),
    async statusGeneration(): Promise<string | null> {
      generationReads++;
      if (failing === 'unavailable') throw new DeviceCaError('store-unavailable', 'store unavailable (Redis unreachable)');
      return generation;
    },
  };
  beforeEach(() => {
    generation = null;
    generationReads = 0;
  });
  const withGeneration = () => new OcspService([tca.hierarchy.issuing], responder, genStore, cfgOf(), () => clock);

  it('keeps statuses while the generation is unchanged and forgets them all when it changes; answerKept always defers to respond', async () => {
    rows.set(SERIAL, good(SERIAL));
    rows.set(SERIAL2, good(SERIAL2));
    const svc = withGeneration();
    const req = request([SERIAL], { noNonce: true });
    const req2 = request([SERIAL2], { noNonce: true });
    await svc.respond(req.der);
    await svc.respond(req2.der);
    for (let i = 0; i < 3; i++) expect((await svc.respond(req.der)).outcome).toBe('good');
    expect(reads).toBe(2);
    expect(svc.answerKept(req.der)).toBeUndefined(); // its barrier is a read: never answered synchronously
    rows.set(SERIAL, revoked(SERIAL, 'keyCompromise'));
    generation = 'a1';
    const after = await svc.respond(req.der);
    expect(single(verdict(after, req), SERIAL)).toMatch(/Cert Status: revoked[\s\S]*Revocation Reason: keyCompromise/);
    expect((await svc.respond(req2.der)).outcome).toBe('good');
    expect(reads).toBe(4); // both read again after the change, once
    expect((await svc.respond(req2.der)).outcome).toBe('good');
    expect(reads).toBe(4);
  });

  it('requests of one event-loop turn share one generation read; a request after that read was sent waits for the next', async () => {
    rows.set(SERIAL, good(SERIAL));
    const svc = withGeneration();
    const req = request([SERIAL], { noNonce: true });
    await svc.respond(req.der);
    generationReads = 0;
    const answers = await Promise.all(Array.from({ length: 20 }, () => svc.respond(req.der)));
    expect(answers.map((a) => a.outcome)).toEqual(Array(20).fill('good'));
    expect(generationReads).toBe(1);
    expect(reads).toBe(1);
  });

  it('an absent status (unknown) is not kept: an issuance does not change the generation', async () => {
    const svc = withGeneration();
    const req = request([SERIAL], { noNonce: true });
    expect((await svc.respond(req.der)).outcome).toBe('unknown');
    rows.set(SERIAL, good(SERIAL));
    expect((await svc.respond(req.der)).outcome).toBe('good');
  });

  it('while the generation cannot be read, the last signed answer holds until its nextUpdate; nothing unsigned is made up', async () => {
    rows.set(SERIAL, good(SERIAL));
    const svc = withGeneration();
    const req = request([SERIAL], { noNonce: true });
    const first = await svc.respond(req.der);
    failing = 'unavailable';
    expect((await svc.respond(req.der)).der.equals(first.der)).toBe(true);
    await expect(svc.respond(request([SERIAL2], { noNonce: true }).der)).rejects.toMatchObject({ code: 'store-unavailable' });
    clock = new Date(first.cache!.nextUpdate.getTime() + 1000);
    await expect(svc.respond(req.der)).rejects.toMatchObject({ code: 'store-unavailable' });
  });
});
