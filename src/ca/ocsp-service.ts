import * as crypto from 'node:crypto';
import { Config } from '../config/schema';
import { DeviceCaError, isDeviceCaError } from '../errors/device-ca-error';
import { RevocationFeed } from '../store/revocation-feed';
import { StatusGeneration, hasStatusGeneration } from '../store/status-generation';
import { StatusVersion, hasStatusVersion } from '../store/status-version';
import { RevocationStore } from '../store/store';
import { CaMaterial } from './certificate-authority';
import { OcspCertId, OcspHashName, OcspResponder, OcspSingleResponse, OcspStatus, certIdHashes, parseOcspRequest } from './ocsp-codec';
import { certificateParts } from './certificate-parts';
import { CoalescedRead } from './coalesced-read';
import { RootOcspSource, rootOcspEtag } from './root-ocsp';

/** OcspAnswer is the response bytes plus, for a cacheable (nonce-less) answer, what HTTP caching needs. */
export interface OcspAnswer {
  der: Buffer;
  cache?: { thisUpdate: Date; nextUpdate: Date; etag: string };
  /** outcome for metrics: good | revoked | unknown | mixed | ca-certificate (errors are thrown, and counted by the adapter) */
  outcome: string;
}

interface Cached {
  der: Buffer;
  statusKey: string;
  thisUpdate: Date;
  nextUpdate: Date;
  etag: string;
  outcome: string;
  /** refreshAt: epoch ms after which the answer is re-signed (half of its validity gone) */
  refreshAt: number;
  /** row: the status row it was signed over; the same kept row object means the same status, without comparing */
  row: StatusRow;
  /** answer: what respond returns for it, built once (callers only read it) */
  answer: OcspAnswer;
}

/** KnownRequest: a nonce-less single request already answered once: its CertID, its issuer and the cache key */
interface KnownRequest {
  id: OcspCertId;
  issuer: CaMaterial;
  /** key: the CertID's DER as a latin1 string, the key of the response cache */
  key: string;
}

type StatusRow = Awaited<ReturnType<RevocationStore['certificateStatus']>>;

/**
 * STATUS_MAX_AGE_MS: how long a status learnt from the store is reused. The status generation or the feed
 * drops a status as soon as it changes; this bound only limits the harm of a message lost without the
 * subscription noticing, on a store that has a feed and no generation.
 */
const STATUS_MAX_AGE_MS = 60_000;

/**
 * OcspService answers RFC 6960 requests for the issuing CAs it serves. Requests with a nonce are signed
 * live and echo it (FreeRADIUS requires that by default). Nonce-less single requests (RFC 5019) get a
 * pre-signed response from a cache; before any cached answer is sent, the certificate's status is read
 * from the store, so a revocation made by any process is visible on the next request. With a shared store's
 * status generation (Redis, store/status-generation.ts), statuses are kept in memory and every request
 * first waits for a generation read sent after it arrived (coalesced: one GET per event-loop turn for all
 * the requests of the turn): unchanged, or changed only by changes the revocation feed (pub/sub) already
 * told (each dropping its serial), the kept statuses hold; else they are forgotten. So a revocation whose
 * call returned on any node is in the next answer of every node, and a cached answer costs a share of one
 * GET, no status read. With SQLite, statuses are
 * kept while the store's statusVersion (store/status-version.ts) stays the same, a check that any status change
 * by any process changes, and that costs a shared-memory read while nothing was committed (one small row read
 * after a commit), not the certificate's row read, whose cost grows with the store. While the store is
 * unavailable, a pre-signed answer is still served until its nextUpdate (RFC 5019 §6: a relying party
 * may use it that long anyway); nothing new is signed.
 */
export class OcspService {
  private readonly cache = new Map<string, Cached>();
  /**
   * cacheEpoch counts the times the response cache was emptied (a renewed responder, an issuer removed): an
   * answer whose signing began before is returned to its caller but not kept, so the old responder's
   * signature is not served for half a validity period after the renewal.
   */
  private cacheEpoch = 0;
  /** statuses: by serial, learnt from the store under its status generation (Redis), while the feed was live, or under its current statusVersion (SQLite) */
  private readonly statuses = new Map<string, { row: StatusRow; at: number }>();
  private feedLive = false;
  /** readVersion: the store's statusVersion (SQLite), called once per request; undefined for other stores */
  private readonly readVersion?: () => number;
  /** seenVersion: the statusVersion the kept statuses were read under (undefined: nothing may be kept) */
  private seenVersion: number | undefined;
  /** feedEpoch: counts feed events; a status read during which one arrived is not kept (it may predate the change) */
  private feedEpoch = 0;
  /** generation: the store's status generation (Redis), read once per request through one coalesced read; undefined for other stores */
  private readonly generation?: CoalescedRead<string | null>;
  /** seenGeneration: the status generation the kept statuses hold under (undefined: none read yet) */
  private seenGeneration: string | null | undefined;
  /**
   * toldTo: the generation up to which the feed told every change since seenGeneration, each serial dropped
   * (a chain of told "previous>new" steps starting at seenGeneration); undefined: a step is missing or
   * nothing is known since the feed went live
   */
  private toldTo: string | null | undefined;
  private readonly unwatch?: () => void;
  /**
   * byRequest maps the exact bytes of a nonce-less single request already answered to its CertID and
   * issuer, so a repeated request (what RFC 5019 clients and caches send) skips parsing and the issuer
   * lookup. Only the parse is skipped: the status is still read from the store on every request.
   */
  private readonly byRequest = new Map<string, KnownRequest>();
  /** issuers with their CertID hashes computed once per hash algorithm (not per request) */
  private readonly issuers: { ca: CaMaterial; hashes: Record<OcspHashName, { issuerNameHash: Buffer; issuerKeyHash: Buffer }> }[] = [];
  /** delegatedFor: the name of the issuing CA that issued the delegated responder certificate */
  private delegatedFor: string | null = null;
  /** own: responders that sign with an issuing CA's own key, for the CAs the delegated responder is not from */
  private readonly own = new Map<string, OcspResponder>();

  constructor(
    issuers: CaMaterial[],
    private responder: OcspResponder,
    private readonly store: Pick<RevocationStore, 'certificateStatus'> | (Pick<RevocationStore, 'certificateStatus'> & StatusVersion) | (Pick<RevocationStore, 'certificateStatus'> & StatusGeneration),
    private readonly cfg: Config['ocsp'],
    private readonly now: () => Date = () => new Date(),
    /** root: the root-signed answers for the issuing CA certificates themselves (root-ocsp.ts) */
    private readonly root?: RootOcspSource,
    feed?: RevocationFeed,
  ) {
    this.unwatch = feed?.watchRevocations(
      (serial) => {
        this.feedEpoch++;
        this.statuses.delete(serial);
      },
      (live) => {
        this.feedEpoch++;
        this.feedLive = live;
        this.toldTo = undefined;
        this.statuses.clear();
      },
      (generation, previous) => {
        this.feedEpoch++;
        // a step that joins the chain extends it; the step that made seenGeneration starts it again (every
        // later message follows it); any other (a message lost, or one from before seenGeneration) breaks it
        if (previous !== undefined && this.toldTo !== undefined && previous === this.toldTo) this.toldTo = generation;
        else if (generation === this.seenGeneration) this.toldTo = generation;
        else this.toldTo = undefined;
      },
    );
    if (hasStatusVersion(store)) {
      // taken once: a store wrapped in a Proxy (store-metrics, store-errors) hands out a new function per
      // property read, and times and maps each call of it; the store's own reader skips those per request
      const f = store.statusVersion;
      this.readVersion = store.statusVersionReader?.() ?? (() => f.call(store));
    } else if (hasStatusGeneration(store)) {
      // through the store's wrappers: one read per event-loop turn, its failure mapped ('store-unavailable')
      this.generation = new CoalescedRead(() => store.statusGeneration());
    }
    for (const ca of issuers) this.addIssuer(ca);
    this.delegatedFor = this.issuerOfResponder(responder);
  }

  /** addIssuer serves one more issuing CA (a rollover another process made; issuing-ca-set.ts). */
  addIssuer(ca: CaMaterial): void {
    if (this.issuers.some((i) => i.ca.name === ca.name)) return;
    const spki = certificateParts(ca.der).spki;
    const h = (alg: OcspHashName) => certIdHashes(ca.subject, spki, alg);
    this.issuers.push({ ca, hashes: { sha1: h('sha1'), sha256: h('sha256'), sha384: h('sha384'), sha512: h('sha512') } });
    if (this.responder) this.delegatedFor = this.issuerOfResponder(this.responder);
  }

  /**
   * removeIssuer stops answering for an issuing CA (a retired one whose certificate expired): requests
   * naming it get 'unauthorized' from now on, as for any CA this responder does not serve.
   */
  removeIssuer(name: string): void {
    const i = this.issuers.findIndex((x) => x.ca.name === name);
    if (i < 0) return;
    this.issuers.splice(i, 1);
    // both caches: a remembered request would otherwise still be answered for the CA removed
    this.cacheEpoch++;
    this.cache.clear();
    this.byRequest.clear();
    if (this.responder) this.delegatedFor = this.issuerOfResponder(this.responder);
  }

  /** close stops listening to the revocation feed. */
  close(): void {
    this.unwatch?.();
  }

  /** useResponder switches to a renewed responder certificate; cached answers signed before are dropped. */
  useResponder(r: OcspResponder): void {
    this.responder = r;
    this.delegatedFor = this.issuerOfResponder(r);
    this.cacheEpoch++;
    this.cache.clear();
  }

  private issuerOfResponder(r: OcspResponder): string | null {
    const x = new crypto.X509Certificate(r.certificate);
    return this.issuers.find((i) => x.checkIssued(new crypto.X509Certificate(i.ca.der)))?.ca.name ?? null;
  }

  /**
   * responderFor: the delegated responder answers for the issuing CA that certified it (RFC 6960 §4.2.2.2);
   * for any other served CA (during a rollover, the old or the new one) the CA signs with its own key, which
   * RFC 6960 §4.2.2.2 allows without any further certificate.
   */
  private responderFor(ca: CaMaterial): OcspResponder {
    if (ca.name === this.delegatedFor) return this.responder;
    let r = this.own.get(ca.name);
    if (!r) this.own.set(ca.name, (r = new OcspResponder(ca.key, ca.der)));
    return r;
  }

  /**
   * answerKept answers a repeated nonce-less single request synchronously when nothing needs the store or a
   * signature: the request's exact bytes were answered before, its certificate's status is kept in memory
   * under the same rule as statusOf (feed live, or the store's statusVersion unchanged, read now, and the
   * entry younger than STATUS_MAX_AGE_MS), and the response signed over that status is not due for
   * re-signing. Otherwise it returns undefined and the caller calls respond, which reads the store and signs
   * as needed. It saves the promise chain of respond on the hot path (bench/ocsp-http); the status rule is
   * the same, so a revocation by any process is still answered on the next request. A store with a status
   * generation (Redis) is never answered here: its barrier is a read that cannot be done synchronously.
   */
  answerKept(request: Buffer): OcspAnswer | undefined {
    if (this.cfg.cacheSize <= 0 || request.length > this.cfg.maxRequestBytes) return undefined;
    const known = this.byRequest.get(request.toString('latin1'));
    if (!known) return undefined;
    const hit = this.cache.get(known.key);
    if (!hit) return undefined;
    const row = this.keptStatus(known.id.serialNumber);
    if (row === undefined) return undefined;
    if (row !== hit.row && statusKeyOf(toStatus(row, known.issuer)) !== hit.statusKey) return undefined;
    if (this.now().getTime() >= hit.refreshAt) return undefined;
    return hit.answer;
  }

  /**
   * respond answers one DER OCSPRequest. What it cannot answer it throws as a DeviceCaError, which the OCSP
   * adapter turns into an OCSPResponseStatus (protocols/ocsp/ocsp-error-map.ts) and logs: 'bad-request' for
   * a malformed request (checked before any store read), 'not-found' for a CertID of a CA not served here,
   * and the store's or the key's own error when answering fails. Nothing failed is cached.
   */
  async respond(request: Buffer): Promise<OcspAnswer> {
    const bytes = this.cfg.cacheSize > 0 && request.length <= this.cfg.maxRequestBytes ? request.toString('latin1') : null;
    const known = bytes === null ? undefined : this.byRequest.get(bytes);
    if (known) return await this.cached(known);
    const req = parseOcspRequest(request, { maxBytes: this.cfg.maxRequestBytes });
    if (this.root && req.certIds.every((id) => this.root!.names(id))) {
      // an issuing CA certificate: the root's pre-signed answer (no nonce: one response serves everyone)
      const now = this.now();
      const a = await this.root.answer(
        req.certIds.map((id) => id.serialNumber),
        now,
        req.certIds[0],
      );
      return { der: a.der, cache: req.nonce ? undefined : { thisUpdate: now, nextUpdate: a.nextUpdate, etag: rootOcspEtag(a.der) }, outcome: 'ca-certificate' };
    }
    const issuers: CaMaterial[] = [];
    for (const id of req.certIds) {
      const ca = this.issuerOf(id);
      if (!ca) throw new DeviceCaError('not-found', 'the request names a CA this responder does not serve');
      issuers.push(ca);
    }
    if (!req.nonce && req.certIds.length === 1) {
      const k: KnownRequest = { id: req.certIds[0], issuer: issuers[0], key: req.certIds[0].der.toString('latin1') };
      if (bytes !== null) remember(this.byRequest, bytes, k, this.cfg.cacheSize);
      return await this.cached(k);
    }
    const now = this.now();
    const singles: OcspSingleResponse[] = [];
    for (let i = 0; i < req.certIds.length; i++) {
      const id = req.certIds[i];
      // the same kept status as a cached answer: a nonce makes the signature fresh, not the status read
      singles.push({ ...toStatus(await this.statusOf(id.serialNumber), issuers[i]), certId: id, ...this.window(now) });
    }
    const responder = this.responderFor(issuers[0]);
    if (issuers.some((ca) => this.responderFor(ca) !== responder))
      throw new DeviceCaError('not-found', 'the request names certificates of issuing CAs answered by different responders; ask for each separately');
    const der = await responder.respond(singles, { nonce: req.nonce, producedAt: now });
    return { der, outcome: singles.length === 1 ? singles[0].status : 'mixed' };
  }

  private issuerOf(id: OcspCertId): CaMaterial | undefined {
    return this.issuers.find((i) => i.hashes[id.hash].issuerNameHash.equals(id.issuerNameHash) && i.hashes[id.hash].issuerKeyHash.equals(id.issuerKeyHash))?.ca;
  }

  private window(now: Date): { thisUpdate: Date; nextUpdate: Date } {
    const t = new Date(Math.floor(now.getTime() / 1000) * 1000);
    return { thisUpdate: t, nextUpdate: new Date(t.getTime() + this.cfg.validity * 1000) };
  }

  /**
   * statusOf: the certificate's status, from memory when the store's status generation, read after this call,
   * allows it (statusUnderGeneration), or while the feed is live or the store's statusVersion is the one it
   * was read under (and the entry is fresh), else from the store.
   */
  private async statusOf(serial: string): Promise<StatusRow> {
    if (this.generation) return await this.statusUnderGeneration(serial, await this.generation.next());
    const t = Date.now();
    const version = this.feedLive ? undefined : this.currentVersion();
    const keep = this.feedLive || version !== undefined;
    const known = keep ? this.statuses.get(serial) : undefined;
    if (known && t - known.at < STATUS_MAX_AGE_MS) return known.row;
    const epoch = this.feedEpoch;
    const row = await this.store.certificateStatus(serial);
    // kept only if nothing changed since before the read: no feed event, no newer version seen by another request;
    // under a statusVersion, not an absent row: an issuance does not change the version (store/status-version.ts)
    if (keep && epoch === this.feedEpoch && (this.feedLive || (version === this.seenVersion && row !== null)) && this.cfg.cacheSize > 0) {
      this.statuses.delete(serial);
      if (this.statuses.size >= this.cfg.cacheSize) this.statuses.delete(this.statuses.keys().next().value as string);
      this.statuses.set(serial, { row, at: t });
    }
    return row;
  }

  /**
   * statusUnderGeneration: statusOf on a store with a status generation, given one read after the request
   * arrived. The kept statuses hold under it when it is the one they were kept under, or when the feed told
   * every change from that one to it (toldTo): the feed tells a change's serial before its generation, in
   * commit order, so every status that changed up to it is dropped already. Any other generation (the
   * feed's message still on its way or lost, the feed down, a copy into the store) forgets them all. A
   * status read is kept only if no feed event came during it and the generation is still the one it was
   * read after, and never an absent one (issuance does not change the generation).
   */
  private async statusUnderGeneration(serial: string, generation: string | null): Promise<StatusRow> {
    if (generation !== this.seenGeneration) {
      if (!(this.feedLive && generation !== null && generation === this.toldTo)) this.statuses.clear();
      this.seenGeneration = generation;
      // the chain starts again here: the statuses kept from now on hold under this generation
      this.toldTo = generation;
    }
    const t = Date.now();
    const known = this.statuses.get(serial);
    if (known && t - known.at < STATUS_MAX_AGE_MS) return known.row;
    const epoch = this.feedEpoch;
    const row = await this.store.certificateStatus(serial);
    if (epoch === this.feedEpoch && generation === this.seenGeneration && row !== null && this.cfg.cacheSize > 0) {
      this.statuses.delete(serial);
      if (this.statuses.size >= this.cfg.cacheSize) this.statuses.delete(this.statuses.keys().next().value as string);
      this.statuses.set(serial, { row, at: t });
    }
    return row;
  }

  /**
   * keptStatus: the status statusOf would take from memory now (the feed live, or the store's statusVersion,
   * read now, the one it was kept under; the entry fresh), or undefined when statusOf would read the store.
   */
  private keptStatus(serial: string): StatusRow | undefined {
    if (this.generation) return undefined;
    if (!this.feedLive && this.currentVersion() === undefined) return undefined;
    const known = this.statuses.get(serial);
    return known && Date.now() - known.at < STATUS_MAX_AGE_MS ? known.row : undefined;
  }

  /**
   * currentVersion: the store's statusVersion now; statuses kept under another version are forgotten. A store
   * without one, or whose check fails, gives undefined: nothing is kept and every request reads the store.
   */
  private currentVersion(): number | undefined {
    if (!this.readVersion) return undefined;
    let v: number | undefined;
    try {
      v = this.readVersion();
    } catch {
      v = undefined; // the status read that follows reports the store's failure
    }
    if (v !== this.seenVersion || v === undefined) {
      this.statuses.clear();
      this.seenVersion = v;
    }
    return v;
  }

  private async cached(known: KnownRequest): Promise<OcspAnswer> {
    const { id, issuer, key } = known;
    const hit = this.cache.get(key);
    let row: StatusRow;
    try {
      row = await this.statusOf(id.serialNumber);
    } catch (e) {
      // the store is unreachable: the last answer signed for this CertID holds until its nextUpdate
      if (hit && isDeviceCaError(e) && e.code === 'store-unavailable' && hit.nextUpdate.getTime() > this.now().getTime()) return hit.answer;
      throw e;
    }
    const status = toStatus(row, issuer);
    const statusKey = statusKeyOf(status);
    const now = this.now();
    // re-sign when the status changed or half of the validity is gone
    if (hit && hit.statusKey === statusKey && now.getTime() < hit.refreshAt) {
      hit.row = row; // the row kept now: answerKept compares by identity first
      return hit.answer;
    }
    const w = this.window(now);
    const epoch = this.cacheEpoch;
    const der = await this.responderFor(issuer).respond([{ ...status, certId: id, ...w }], { producedAt: now });
    const etag = '"' + crypto.createHash('sha1').update(der).digest('hex') + '"';
    const answer: OcspAnswer = { der, cache: { thisUpdate: w.thisUpdate, nextUpdate: w.nextUpdate, etag }, outcome: status.status };
    const entry: Cached = { der, statusKey, ...w, etag, outcome: status.status, refreshAt: w.nextUpdate.getTime() - (this.cfg.validity * 1000) / 2, row, answer };
    // signed by a responder replaced meanwhile (useResponder): answered, not kept
    if (this.cfg.cacheSize > 0 && epoch === this.cacheEpoch) remember(this.cache, key, entry, this.cfg.cacheSize);
    return answer;
  }
}

/** remember puts key in a map of at most size entries, the oldest out first. */
function remember<V>(map: Map<string, V>, key: string, value: V, size: number): void {
  map.delete(key);
  if (map.size >= size) map.delete(map.keys().next().value as string);
  map.set(key, value);
}

/** statusKeyOf: what must be equal for a signed answer to still say the status (revocation time and reason included) */
function statusKeyOf(status: OcspStatus): string {
  return status.status === 'revoked' ? `r|${status.revokedAt.getTime()}|${status.reason ?? ''}` : status.status;
}

/** toStatus: valid -> good, revoked (hold included, with its reason) -> revoked, never issued here -> unknown. */
function toStatus(row: StatusRow, issuer: CaMaterial): OcspStatus {
  if (!row || row.issuer !== issuer.name) return { status: 'unknown' };
  if (row.status === 'revoked' && row.revokedAt) return { status: 'revoked', revokedAt: row.revokedAt, reason: row.revocationReason ?? undefined };
  return { status: 'good' };
}
