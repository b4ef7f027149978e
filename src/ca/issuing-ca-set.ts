import { CaStateStore } from '../store/store';
import { CaHierarchy, HIERARCHY_RECORD, issuingCas, rootOf } from './ca-hierarchy';
import { CaMaterial } from './certificate-authority';

/**
 * IssuingCaSet is a process's live view of the issuing CAs (ca-hierarchy.ts): which one signs new
 * certificates now (active), which one `ca rollover` scheduled (pending), and every one whose
 * certificates may still be in use (all: their CRLs, OCSP and /ca/<name>.crt are served). The switch at a
 * rollover's activation time is a clock comparison, so every process and node switches at the same
 * moment; refresh() (run each CA duties round) picks up a rollover or reissue another process wrote to
 * the store, tells the listeners of CAs it had not served yet, and drops a retired CA once its own
 * certificate has expired (no certificate it signed can still be valid: RFC 5280 §6.1.3), telling the
 * listeners that stop its CRLs and OCSP, as a restart would.
 */
export class IssuingCaSet {
  private readonly added: ((ca: CaMaterial) => void)[] = [];
  private readonly removed: ((ca: CaMaterial) => void)[] = [];
  private version = -1;

  constructor(
    private h: CaHierarchy,
    private readonly source?: { store: Pick<CaStateStore, 'getCaState'>; load: (now: Date) => Promise<CaHierarchy> },
    private readonly now: () => Date = () => new Date(),
  ) {}

  get hierarchy(): CaHierarchy {
    return this.h;
  }

  /** active: the issuing CA that signs new certificates at `now`. */
  active(now = this.now()): CaMaterial {
    const n = this.h.next;
    return n && now >= n.activatesAt ? n.ca : this.h.issuing;
  }

  /** pending: the next issuing CA while its activation time has not come (SCEP GetNextCACert), else null. */
  pending(now = this.now()): { ca: CaMaterial; activatesAt: Date } | null {
    const n = this.h.next;
    return n && now < n.activatesAt ? n : null;
  }

  /** all: every issuing CA served (the one in force, the pending one, retired ones not yet expired). */
  all(): CaMaterial[] {
    return issuingCas(this.h);
  }

  /**
   * trusted: the issuing CAs whose device certificates authenticate a device (re-enrollment): every one
   * served except those the root CRL lists (a compromised CA's certificates prove nothing).
   */
  trusted(): CaMaterial[] {
    const revoked = new Set(this.h.revoked ?? []);
    return this.all().filter((c) => !revoked.has(c.name));
  }

  /** isRevoked: whether the root CRL lists this issuing CA (`ca revoke-issuing`): it signs nothing more. */
  isRevoked(name: string): boolean {
    return (this.h.revoked ?? []).includes(name);
  }

  /**
   * chain: what clients fetch as the CA certificates (EST /cacerts, SCEP GetCACert): the active issuing
   * CA first (clients that take the first certificate as their issuer), then the other issuing CAs served
   * during a rollover's overlap, then the root that signed the active one; after `ca rollover-root` the
   * other published roots and the link certificates follow (OldWithNew, NewWithOld: RFC 7030 §4.1.3), so a
   * client trusting either root can reach both hierarchies.
   */
  chain(now = this.now()): Buffer[] {
    const active = this.active(now);
    const root = rootOf(this.h, active.der);
    return [
      active.der,
      ...this.all()
        .filter((c) => c.name !== active.name)
        .map((c) => c.der),
      root.der,
      ...this.h.roots.filter((r) => !r.der.equals(root.der)).map((r) => r.der),
      ...this.h.links,
    ];
  }

  /** rootDer: the published root of this name (current or previous), for /ca/<name>.crt. */
  rootDer(name: string): Buffer | undefined {
    return this.h.roots.find((r) => r.name === name)?.der;
  }

  /** onAdded: called with each issuing CA a refresh finds that this process did not serve yet. */
  onAdded(fn: (ca: CaMaterial) => void): void {
    this.added.push(fn);
  }

  /** onRemoved: called with each retired issuing CA a refresh stops serving (its certificate expired). */
  onRemoved(fn: (ca: CaMaterial) => void): void {
    this.removed.push(fn);
  }

  /**
   * refresh reloads the hierarchy when its store record changed, and drops retired CAs whose certificate
   * has expired by this set's clock; true when the CAs served changed or the record was reloaded.
   */
  async refresh(): Promise<boolean> {
    const now = this.now();
    const before = this.all();
    let changed = false;
    if (this.source) {
      const entry = await this.source.store.getCaState(HIERARCHY_RECORD);
      if (entry && entry.version !== this.version) {
        this.h = await this.source.load(now);
        this.version = entry.version;
        changed = true;
      }
    }
    if (this.h.retired.some((c) => c.notAfter <= now)) {
      this.h = { ...this.h, retired: this.h.retired.filter((c) => c.notAfter > now) };
      changed = true;
    }
    const after = new Set(this.all().map((c) => c.name));
    const known = new Set(before.map((c) => c.name));
    for (const ca of this.all()) if (!known.has(ca.name)) for (const fn of this.added) fn(ca);
    for (const ca of before) if (!after.has(ca.name)) for (const fn of this.removed) fn(ca);
    return changed;
  }
}
