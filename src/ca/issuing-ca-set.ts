import { CaStateStore } from '../store/store';
import { CaHierarchy, HIERARCHY_RECORD, issuingCas, rootOf } from './ca-hierarchy';
import { CaMaterial } from './certificate-authority';

/**
 * IssuingCaSet is a process's live view of the issuing CAs (ca-hierarchy.ts): which one signs new
 * certificates now (active), which one `ca rollover` scheduled (pending), and every one whose
 * certificates may still be in use (all: their CRLs, OCSP and /ca/<name>.crt are served). The switch at a
 * rollover's activation time is a clock comparison, so every process and node switches at the same
 * moment; refresh() (run each CA duties round) picks up a rollover or reissue another process wrote to
 * the store, and tells the listeners of CAs it had not served yet.
 */
export class IssuingCaSet {
  private readonly added: ((ca: CaMaterial) => void)[] = [];
  private version = -1;

  constructor(
    private h: CaHierarchy,
    private readonly source?: { store: Pick<CaStateStore, 'getCaState'>; load: () => Promise<CaHierarchy> },
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

  /** refresh reloads the hierarchy when its store record changed; true when it did. */
  async refresh(): Promise<boolean> {
    if (!this.source) return false;
    const entry = await this.source.store.getCaState(HIERARCHY_RECORD);
    if (!entry || entry.version === this.version) return false;
    const known = new Set(this.all().map((c) => c.name));
    const h = await this.source.load();
    this.h = h;
    this.version = entry.version;
    for (const ca of issuingCas(h)) if (!known.has(ca.name)) for (const fn of this.added) fn(ca);
    return true;
  }
}
