import { Config } from '../config/schema';
import { DeviceCaError } from '../errors/device-ca-error';
import { AuditStore, CrlRecord, RevocationStore, RevokedRow } from '../store/store';
import { CaMaterial, crlUrl } from './certificate-authority';
import { RevokedEntry, encodeCrlStream } from './crl-encoder';

/**
 * CrlPublisher keeps one CRL per shard of an issuing CA current. A CRL is re-issued when its shard's
 * revision moved (a certificate changed status) or when less than renewBefore is left before its
 * nextUpdate, so relying parties never hold a lapsed CRL. Generated CRLs are kept in the store, so
 * every worker and every node serves the same bytes; concurrent publishers only cost a wasted CRL number.
 */
export class CrlPublisher {
  private readonly inflight = new Map<number, Promise<CrlRecord>>();
  /** last CRL per shard held in memory, so a large CRL is read from the store once per number */
  private readonly held = new Map<number, CrlRecord>();
  private timer?: NodeJS.Timeout;
  private stopped = false;

  constructor(
    private readonly ca: CaMaterial,
    private readonly store: RevocationStore & AuditStore,
    private readonly cfg: Config['crl'],
    private readonly publicUrl: string,
    private readonly now: () => Date = () => new Date(),
  ) {}

  get caName(): string {
    return this.ca.name;
  }

  get shards(): number {
    return this.cfg.shards;
  }

  /** current returns the shard's CRL, re-issuing it first if it is stale. */
  async current(shard: number): Promise<CrlRecord> {
    if (!Number.isInteger(shard) || shard < 0 || shard >= this.cfg.shards) throw new DeviceCaError('not-found', `no CRL shard ${shard}`);
    const [info, revision] = await Promise.all([this.store.crlInfo(this.ca.name, shard), this.store.shardRevision(this.ca.name, shard)]);
    if (info && info.revision === revision && info.nextUpdate.getTime() - this.now().getTime() > this.cfg.renewBefore * 1000) {
      const held = this.held.get(shard);
      if (held && held.number === info.number) return held;
      const saved = await this.store.getCrl(this.ca.name, shard);
      if (saved && saved.number === info.number) {
        this.held.set(shard, saved);
        return saved;
      }
    }
    return this.publish(shard);
  }

  /** publish issues a new CRL for a shard now (one generation per shard at a time in this process). */
  publish(shard: number): Promise<CrlRecord> {
    const running = this.inflight.get(shard);
    if (running) return running;
    const p = this.generate(shard).finally(() => this.inflight.delete(shard));
    this.inflight.set(shard, p);
    return p;
  }

  private async generate(shard: number): Promise<CrlRecord> {
    const revision = await this.store.shardRevision(this.ca.name, shard);
    const number = await this.store.nextCrlNumber(this.ca.name);
    const thisUpdate = new Date(Math.floor(this.now().getTime() / 1000) * 1000);
    let nextUpdate = new Date(thisUpdate.getTime() + this.cfg.validity * 1000);
    if (nextUpdate > this.ca.notAfter) nextUpdate = this.ca.notAfter;
    const enc = await encodeCrlStream(
      {
        issuer: this.ca.subject,
        authorityKeyId: this.ca.keyId,
        crlNumber: number,
        thisUpdate,
        nextUpdate,
        // RFC 5280 §5.2.5: the IDP names the same URI as the CRL DP of the certificates in this shard
        issuingDistributionPoint: { url: crlUrl(this.publicUrl, this.ca.name, shard), onlyContainsUserCerts: true },
        signingKey: this.ca.key,
      },
      toEntries(this.store.revokedInShard(this.ca.name, shard, thisUpdate)),
    );
    const rec: CrlRecord = { issuer: this.ca.name, shard, number, revision, thisUpdate, nextUpdate, entries: enc.entries, der: Buffer.from(enc.der) };
    await this.store.saveCrl(rec);
    await this.store.appendAudit({
      type: 'crl.published',
      actor: 'device-ca',
      subject: `${this.ca.name}/${shard}`,
      data: { number: number.toString(), entries: enc.entries, nextUpdate: nextUpdate.toISOString() },
    });
    this.held.set(shard, rec);
    return rec;
  }

  /** refresh brings every stale shard up to date; returns the shards it re-issued. */
  async refresh(): Promise<number[]> {
    const done: number[] = [];
    for (let s = 0; s < this.cfg.shards; s++) {
      const before = await this.store.crlInfo(this.ca.name, s);
      const after = await this.current(s);
      if (!before || after.number !== before.number) done.push(s);
    }
    return done;
  }

  /** start checks every crl.checkInterval; errors are reported, never thrown out of the timer. */
  start(onError: (e: unknown) => void, onPublished?: (shards: number[]) => void): void {
    this.stopped = false;
    const tick = async () => {
      try {
        const shards = await this.refresh();
        if (shards.length) onPublished?.(shards);
      } catch (e) {
        onError(e);
      }
      if (this.stopped) return; // stop() came while this refresh ran
      this.timer = setTimeout(tick, this.cfg.checkInterval * 1000);
      this.timer.unref();
    };
    void tick();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }
}

/** toEntries maps store pages to encoder pages; 'unspecified' leaves the reason out (RFC 5280 §5.3.1). */
async function* toEntries(pages: AsyncIterable<RevokedRow[]>): AsyncIterable<RevokedEntry[]> {
  for await (const page of pages)
    yield page.map((r) => ({
      serial: r.serial,
      revokedAt: r.revokedAt,
      reason: r.reason ?? undefined,
      invalidityDate: r.invalidityDate ?? undefined,
    }));
}
