import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CaMaterial } from '../../../src/ca/certificate-authority';
import { certificateParts } from '../../../src/ca/certificate-parts';
import { OcspResponder, certIdHashes, encodeCertId } from '../../../src/ca/ocsp-codec';
import { OcspAnswer, OcspService } from '../../../src/ca/ocsp-service';
import { seq } from '../../../src/der/der-writer';
import { generateKeyPair, softwareSigningKey } from '../../../src/keys/software-key-backend';
import { toRedisStoreError } from '../../../src/store/redis/redis-errors';
import { RedisStore } from '../../../src/store/redis/redis-store';
import { withStoreErrors } from '../../../src/store/store-errors';
import { RevocationFeed } from '../../../src/store/revocation-feed';
import { AuditInput } from '../../../src/store/store';
import { TestCa, makeTestCa } from '../../fixtures/test-ca';
import { RedisCluster, RedisServer, hasRedisServer, startRedisCluster, startRedisServer } from '../../helpers/redis-server';

/**
 * Issue 12: on Redis, "a revocation by any process or node is seen by the next request". Two nodes (two
 * RedisStore clients) share one real redis-server; node B keeps statuses in memory. Node A revokes; A's call
 * has returned; B's pub/sub message has not been handled yet (held back at the one seam no real peer
 * produces on demand: the feed callback). B's next answer must say revoked, read as a relying party
 * reads it (openssl ocsp -respin). Once the feed catches up, a revocation of another certificate keeps
 * B's other statuses (no status read), because the feed told which serial changed.
 */
let server: RedisServer;
let cluster: RedisCluster;
let tca: TestCa;
let responder: OcspResponder;
beforeAll(async () => {
  if (!hasRedisServer()) throw new Error('redis-server is not installed: run scripts/install-test-deps.sh (Debian package redis-server)');
  server = await startRedisServer();
  cluster = await startRedisCluster(3);
  tca = await makeTestCa({}, 'device-ca-ocsp-redis-');
  const { privateKey } = generateKeyPair('ecdsa-p256');
  const key = softwareSigningKey(privateKey, 'ecdsa-p256', 'memory');
  responder = new OcspResponder(key, (await tca.ca.issueOcspResponder(key.spki)).der);
}, 60_000);
afterAll(async () => {
  await server?.stop();
  await cluster?.stop();
  tca?.cleanup();
});

const audit = (type: string, subject: string): AuditInput => ({ type, actor: 'test', subject, data: {} });
const ocspRequest = (ca: CaMaterial, serialNumber: string): Buffer =>
  seq(seq(seq(seq(encodeCertId({ hash: 'sha1', ...certIdHashes(ca.subject, certificateParts(ca.der).spki, 'sha1'), serialNumber })))));
const until = async (cond: () => boolean, ms = 5000): Promise<void> => {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  if (!cond()) throw new Error('timed out waiting');
};

/** heldFeed: node B's feed with its messages held back while `held` (the pub/sub connection slower than the request) */
function heldFeed(store: RedisStore): RevocationFeed & { held: boolean; release(): void; live: boolean; told: number } {
  const queue: (() => void)[] = [];
  const f = {
    held: false,
    live: false,
    told: 0,
    release() {
      f.held = false;
      for (const m of queue.splice(0)) m();
    },
    watchRevocations(onChange: (serial: string) => void, onLive: (live: boolean) => void, onGeneration?: (g: string, previous: string | null | undefined) => void) {
      const deliver = (m: () => void) => (f.held ? queue.push(m) : m());
      return store.watchRevocations(
        (serial) => deliver(() => (f.told++, onChange(serial))),
        (live) => ((f.live = live), onLive(live)),
        onGeneration && ((g, previous) => deliver(() => onGeneration(g, previous))),
      );
    },
  };
  return f;
}

/** verdict: what openssl ocsp -respin says about the one certificate an answer is about */
/** certRecord: an issued certificate's record as the store keeps it (the DER is a placeholder: only statuses are asked) */
function certRecord(serial: string, now: Date, deviceId: string | null = null) {
  return {
    serial,
    deviceId,
    issuer: tca.hierarchy.issuing.name,
    subject: deviceId ? `CN=${deviceId}` : 'CN=x',
    profile: 'default',
    notBefore: now,
    notAfter: new Date(now.getTime() + 86400_000),
    shard: 1,
    spkiSha256: serial,
    der: Buffer.from(serial),
  };
}

function verdict(a: OcspAnswer): string {
  const file = path.join(tca.dir, `resp-${Date.now()}-${Math.random()}.der`);
  fs.writeFileSync(file, a.der);
  const r = spawnSync('openssl', ['ocsp', '-respin', file, '-resp_text', '-noverify'], { encoding: 'utf8' });
  const m = /Cert Status: (\w+)/.exec(r.stdout);
  if (!m) throw new Error(`openssl ocsp -respin: ${r.stdout}${r.stderr}`);
  return m[1];
}

/** the two shapes a shared store takes: one redis-server, and a 3-master Cluster (pub/sub crosses the cluster bus) */
const shapes: [string, () => RedisStore][] = [
  ['one redis-server', () => new RedisStore({ url: server.url, prefix: '{fresh}' })],
  ['a Redis Cluster', () => new RedisStore({ url: 'redis://unused', prefix: '{fresh}', cluster: { nodes: cluster.nodes } })],
];

it.each(shapes)(
  "on %s, node B answers revoked right after node A's revocation returned, before B's pub/sub message; the feed then keeps B's other statuses",
  async (_shape, open) => {
    const a = open();
    const b = open();
    const feed = heldFeed(b);
    const ocspCfg = { ...tca.cfg.ocsp, cacheSize: 100 };
    const svcB = new OcspService([tca.hierarchy.issuing], responder, b, ocspCfg, undefined, undefined, feed);
    const reads = jest.spyOn(b, 'certificateStatus');
    try {
      await a.createDevice({ id: 'dev-1', owner: null, label: null, state: 'registered' }, { hash: 'h', expiresAt: new Date(Date.now() + 60_000) }, audit('device.create', 'dev-1'));
      const serials = ['0b01', '0b02', '0b03'];
      for (const serial of serials) {
        const now = new Date();
        const cert = certRecord(serial, now, 'dev-1');
        await a.recordIssuance({ cert, audit: audit('cert.issue', serial) });
      }
      await until(() => feed.live);
      const req = Object.fromEntries(serials.map((s) => [s, ocspRequest(tca.hierarchy.issuing, s)]));
      // as the OCSP front asks: the synchronous door first, respond when it defers
      const ask = async (serial: string) => svcB.answerKept(req[serial]) ?? (await svcB.respond(req[serial]));
      for (const s of serials) expect(verdict(await ask(s))).toBe('good');
      reads.mockClear();
      for (const s of serials) expect(verdict(await ask(s))).toBe('good');
      expect(reads).not.toHaveBeenCalled(); // kept in memory: a cached answer reads no status

      feed.held = true;
      await a.revokeCertificate('0b01', 'keyCompromise', new Date(), null, audit('cert.revoke', '0b01'));
      // A's call returned: B's next answer is revoked, though B's subscriber has not handled the message
      const after = await ask('0b01');
      expect(after.outcome).toBe('revoked');
      expect(verdict(after)).toBe('revoked');
      expect(feed.told).toBe(0);

      feed.release();
      await until(() => feed.told === 1);
      // the late message drops 0b01 again (read once more); the others are read once after the barrier forgot them
      expect(verdict(await ask('0b01'))).toBe('revoked');
      for (const s of ['0b02', '0b03']) expect(verdict(await ask(s))).toBe('good');
      reads.mockClear();
      // a revocation whose message B handled before its request: B drops that serial alone
      await a.revokeCertificate('0b02', 'superseded', new Date(), null, audit('cert.revoke', '0b02'));
      await until(() => feed.told === 2);
      expect(verdict(await ask('0b02'))).toBe('revoked');
      expect(verdict(await ask('0b03'))).toBe('good');
      expect(verdict(await ask('0b01'))).toBe('revoked');
      expect(reads.mock.calls.map(([s]) => s)).toEqual(['0b02']);
    } finally {
      svcB.close();
      await a.close();
      await b.close();
    }
  },
  30_000,
);

/**
 * lossyFeed: node B's feed, losing the messages (the serial and the generation after it) of the changes to
 * the serials in `lose` (what ioredis' Cluster subscriber does when its node goes away: it picks another
 * node and subscribes again without any 'close', so the feed stays live and what was published in between
 * is gone)
 */
function lossyFeed(store: RedisStore): RevocationFeed & { lose: Set<string>; live: boolean; told: number } {
  let dropping = false;
  const f = {
    lose: new Set<string>(),
    live: false,
    told: 0,
    watchRevocations(onChange: (serial: string) => void, onLive: (live: boolean) => void, onGeneration?: (g: string, previous: string | null | undefined) => void) {
      return store.watchRevocations(
        (serial) => {
          dropping = f.lose.has(serial);
          if (dropping) return;
          f.told++;
          onChange(serial);
        },
        (live) => ((f.live = live), onLive(live)),
        onGeneration &&
          ((g, previous) => {
            if (!dropping) onGeneration(g, previous);
          }),
      );
    },
  };
  return f;
}

it.each(shapes)(
  "on %s, a revocation whose messages B's feed lost (still live) is answered revoked once a later change's messages arrive",
  async (_shape, open) => {
    const a = open();
    const b = open();
    const feed = lossyFeed(b);
    const svcB = new OcspService([tca.hierarchy.issuing], responder, b, { ...tca.cfg.ocsp, cacheSize: 100 }, undefined, undefined, feed);
    try {
      const now = new Date();
      for (const serial of ['0c01', '0c02']) {
        const cert = certRecord(serial, now);
        await a.recordIssuance({ cert, audit: audit('cert.issue', serial) });
      }
      await until(() => feed.live);
      const req = { '0c01': ocspRequest(tca.hierarchy.issuing, '0c01'), '0c02': ocspRequest(tca.hierarchy.issuing, '0c02') };
      expect(verdict(await svcB.respond(req['0c01']))).toBe('good');
      // a status change B's feed hears, so the feed has told a generation
      await a.revokeCertificate('0c02', 'superseded', new Date(), null, audit('cert.revoke', '0c02'));
      await until(() => feed.told === 1);
      expect(verdict(await svcB.respond(req['0c01']))).toBe('good');
      expect(verdict(await svcB.respond(req['0c02']))).toBe('revoked');
      // 0c01's revocation is lost on the way to B; a later change (0c03's revocation) is heard
      feed.lose.add('0c01');
      await a.revokeCertificate('0c01', 'keyCompromise', new Date(), null, audit('cert.revoke', '0c01'));
      const cert = certRecord('0c03', now);
      await a.recordIssuance({ cert, audit: audit('cert.issue', '0c03') });
      await a.revokeCertificate('0c03', 'superseded', new Date(), null, audit('cert.revoke', '0c03'));
      await until(() => feed.told === 2);
      // A's revocation of 0c01 returned long ago: B must not answer good from memory
      expect(verdict(await svcB.respond(req['0c01']))).toBe('revoked');
    } finally {
      svcB.close();
      await a.close();
      await b.close();
    }
  },
  30_000,
);

it('while Redis hangs (connections open, nothing answered), a cached answer still comes: the generation read gives up as store-unavailable', async () => {
  const hung = await startRedisServer({ persistence: 'none' });
  const raw = new RedisStore({ url: hung.url, prefix: '{hung}' });
  // as serve wires it (store/create-store.ts): the store's failures mapped
  const b = withStoreErrors(raw, toRedisStoreError);
  const svc = new OcspService([tca.hierarchy.issuing], responder, b, { ...tca.cfg.ocsp, cacheSize: 100 }, undefined, undefined, raw);
  try {
    const now = new Date();
    const cert = certRecord('0d01', now);
    await raw.recordIssuance({ cert, audit: audit('cert.issue', '0d01') });
    const req = ocspRequest(tca.hierarchy.issuing, '0d01');
    const first = await svc.respond(req);
    expect(verdict(first)).toBe('good');
    // Redis is let go after 15 s whatever happens (a bound far above the read's own, so the test ends either way)
    let resumed = false;
    hung.pause();
    const guard = setTimeout(() => {
      resumed = true;
      hung.resume();
    }, 15_000);
    try {
      // before: the generation GET waited as long as Redis hung, and with it every OCSP request of the node
      const during = await svc.respond(req);
      expect(resumed).toBe(false);
      expect(during.der.equals(first.der)).toBe(true);
      // a request with nothing signed yet fails as the store's unavailability (503 at the HTTP front), not a hang
      await expect(svc.respond(ocspRequest(tca.hierarchy.issuing, '0d02'))).rejects.toMatchObject({ code: 'store-unavailable' });
      expect(resumed).toBe(false);
    } finally {
      clearTimeout(guard);
    }
  } finally {
    hung.resume();
    svc.close();
    await raw.close();
    await hung.stop();
  }
}, 30_000);
