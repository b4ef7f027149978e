import * as crypto from 'node:crypto';
import { Config } from '../config/schema';
import { DeviceCaError } from '../errors/device-ca-error';
import { RevocationStore } from '../store/store';
import { CaMaterial } from './certificate-authority';
import { OcspCertId, OcspHashName, OcspResponder, OcspSingleResponse, OcspStatus, certIdHashes, parseOcspRequest } from './ocsp-codec';
import { certificateParts } from './certificate-parts';

/** OcspAnswer is the response bytes plus, for a cacheable (nonce-less) answer, what HTTP caching needs. */
export interface OcspAnswer {
  der: Buffer;
  cache?: { thisUpdate: Date; nextUpdate: Date; etag: string };
  /** outcome for metrics: good | revoked | unknown | mixed (errors are thrown, and counted by the adapter) */
  outcome: string;
}

interface Cached {
  der: Buffer;
  statusKey: string;
  thisUpdate: Date;
  nextUpdate: Date;
  etag: string;
  outcome: string;
}

type StatusRow = Awaited<ReturnType<RevocationStore['certificateStatus']>>;

/**
 * OcspService answers RFC 6960 requests for the issuing CAs it serves. Requests with a nonce are signed
 * live and echo it (FreeRADIUS requires that by default). Nonce-less single requests (RFC 5019) get a
 * pre-signed response from a cache; before any cached answer is sent, the certificate's status is read
 * from the store, so a revocation made by any process is visible on the next request.
 */
export class OcspService {
  private readonly cache = new Map<string, Cached>();
  /**
   * byRequest maps the exact bytes of a nonce-less single request already answered to its CertID and
   * issuer, so a repeated request (what RFC 5019 clients and caches send) skips parsing and the issuer
   * lookup. Only the parse is skipped: the status is still read from the store on every request.
   */
  private readonly byRequest = new Map<string, { id: OcspCertId; issuer: CaMaterial }>();
  /** issuers with their CertID hashes computed once per hash algorithm (not per request) */
  private readonly issuers: { ca: CaMaterial; hashes: Record<OcspHashName, { issuerNameHash: Buffer; issuerKeyHash: Buffer }> }[];

  constructor(
    issuers: CaMaterial[],
    private responder: OcspResponder,
    private readonly store: Pick<RevocationStore, 'certificateStatus'>,
    private readonly cfg: Config['ocsp'],
    private readonly now: () => Date = () => new Date(),
  ) {
    this.issuers = issuers.map((ca) => {
      const spki = certificateParts(ca.der).spki;
      const h = (alg: OcspHashName) => certIdHashes(ca.subject, spki, alg);
      return { ca, hashes: { sha1: h('sha1'), sha256: h('sha256'), sha384: h('sha384'), sha512: h('sha512') } };
    });
  }

  /** useResponder switches to a renewed responder certificate; cached answers signed before are dropped. */
  useResponder(r: OcspResponder): void {
    this.responder = r;
    this.cache.clear();
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
    if (known) return await this.cached(known.id, known.issuer);
    const req = parseOcspRequest(request, { maxBytes: this.cfg.maxRequestBytes });
    const issuers: CaMaterial[] = [];
    for (const id of req.certIds) {
      const ca = this.issuerOf(id);
      if (!ca) throw new DeviceCaError('not-found', 'the request names a CA this responder does not serve');
      issuers.push(ca);
    }
    if (!req.nonce && req.certIds.length === 1) {
      if (bytes !== null) remember(this.byRequest, bytes, { id: req.certIds[0], issuer: issuers[0] }, this.cfg.cacheSize);
      return await this.cached(req.certIds[0], issuers[0]);
    }
    const now = this.now();
    const singles: OcspSingleResponse[] = [];
    for (let i = 0; i < req.certIds.length; i++) {
      const id = req.certIds[i];
      singles.push({ ...toStatus(await this.store.certificateStatus(id.serialNumber), issuers[i]), certId: id, ...this.window(now) });
    }
    const der = await this.responder.respond(singles, { nonce: req.nonce, producedAt: now });
    return { der, outcome: singles.length === 1 ? singles[0].status : 'mixed' };
  }

  private issuerOf(id: OcspCertId): CaMaterial | undefined {
    return this.issuers.find((i) => i.hashes[id.hash].issuerNameHash.equals(id.issuerNameHash) && i.hashes[id.hash].issuerKeyHash.equals(id.issuerKeyHash))?.ca;
  }

  private window(now: Date): { thisUpdate: Date; nextUpdate: Date } {
    const t = new Date(Math.floor(now.getTime() / 1000) * 1000);
    return { thisUpdate: t, nextUpdate: new Date(t.getTime() + this.cfg.validity * 1000) };
  }

  private async cached(id: OcspCertId, issuer: CaMaterial): Promise<OcspAnswer> {
    const key = id.der.toString('latin1');
    const row = await this.store.certificateStatus(id.serialNumber);
    const status = toStatus(row, issuer);
    const statusKey = status.status === 'revoked' ? `r|${status.revokedAt.getTime()}|${status.reason ?? ''}` : status.status;
    const now = this.now();
    const hit = this.cache.get(key);
    // re-sign when the status changed or half of the validity is gone
    if (hit && hit.statusKey === statusKey && hit.nextUpdate.getTime() - now.getTime() > (this.cfg.validity * 1000) / 2)
      return { der: hit.der, cache: { thisUpdate: hit.thisUpdate, nextUpdate: hit.nextUpdate, etag: hit.etag }, outcome: hit.outcome };
    const w = this.window(now);
    const der = await this.responder.respond([{ ...status, certId: id, ...w }], { producedAt: now });
    const entry: Cached = { der, statusKey, ...w, etag: '"' + crypto.createHash('sha1').update(der).digest('hex') + '"', outcome: status.status };
    if (this.cfg.cacheSize > 0) remember(this.cache, key, entry, this.cfg.cacheSize);
    return { der, cache: { thisUpdate: entry.thisUpdate, nextUpdate: entry.nextUpdate, etag: entry.etag }, outcome: entry.outcome };
  }
}

/** remember puts key in a map of at most size entries, the oldest out first. */
function remember<V>(map: Map<string, V>, key: string, value: V, size: number): void {
  map.delete(key);
  if (map.size >= size) map.delete(map.keys().next().value as string);
  map.set(key, value);
}

/** toStatus: valid -> good, revoked (hold included, with its reason) -> revoked, never issued here -> unknown. */
function toStatus(row: StatusRow, issuer: CaMaterial): OcspStatus {
  if (!row || row.issuer !== issuer.name) return { status: 'unknown' };
  if (row.status === 'revoked' && row.revokedAt) return { status: 'revoked', revokedAt: row.revokedAt, reason: row.revocationReason ?? undefined };
  return { status: 'good' };
}
