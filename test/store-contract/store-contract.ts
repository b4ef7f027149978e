import * as crypto from 'node:crypto';
import { GENESIS, auditLinkProblem } from '../../src/audit/audit-chain';
import { verifyAuditChain } from '../../src/audit/audit-verify';
import { DeviceCaError, ErrorCode } from '../../src/errors/device-ca-error';
import { collectItems } from '../../src/store/paging';
import { FirmwareGroupKeys } from '../../src/ra/firmware-group-keys';
import { ByteSource, bufferSource } from '../../src/cms/byte-source';
import { readReleaseBytes } from '../../src/store/release-chunks';
import { hasStatusGeneration } from '../../src/store/status-generation';
import { hasStatusVersion } from '../../src/store/status-version';
import {
  AttestationStore,
  AuditInput,
  AuditRecord,
  CertificateRecord,
  DEFAULT_PAGE_LIMIT,
  DEVICE_STATES,
  FirmwareReleaseInfo,
  MAX_PAGE_LIMIT,
  Page,
  RELEASE_CHUNK_BYTES,
  Store,
  isAttestationStore,
} from '../../src/store/store';

/**
 * StoreUnderTest is what a store's test file hands the contract: a fresh, empty store, and optional
 * hooks for what only that backend can do.
 */
export interface StoreUnderTest {
  store: Store;
  /** another: a second client of the same data (another worker process or node), for cross-client races */
  another?: () => Promise<Store>;
  /** tamperAudit: edits the stored data of one audit record behind the store's back, as someone with access to the database could */
  tamperAudit?: (seq: number, data: Record<string, unknown>) => Promise<void>;
  /**
   * writeOldRelease: records a firmware release as device-ca did before release bytes were chunked (one
   * value: SQLite's `der` column, Redis' fw-rel-der key), behind the store's back
   */
  writeOldRelease: (r: FirmwareReleaseInfo, der: Buffer) => Promise<void>;
  /** strayReleaseChunks: how many stored release chunks no release row names (pending or left over) */
  strayReleaseChunks: () => Promise<number>;
  /** cleanup: closes what the factory opened (the store itself included, unless a test closed it) and removes its data */
  cleanup(): Promise<void>;
}

/**
 * describeStoreContract is the one behaviour every Store must have, run unchanged against each backend
 * (SQLite in test/unit/store/sqlite-store-contract.test.ts; Redis alongside it). It speaks only the Store
 * interface: what a test sees is what the RA, CA and CLI see.
 */
/** ContractOptions: optional capabilities the store under test has (their cases run only then). */
export interface ContractOptions {
  /** attestation: the store is an AttestationStore (TPM nonces and AK bindings) */
  attestation?: boolean;
}

export function describeStoreContract(name: string, factory: () => Promise<StoreUnderTest>, opts: ContractOptions = {}): void {
  describe(`Store contract: ${name}`, () => {
    let sut: StoreUnderTest;
    let store: Store;
    beforeEach(async () => {
      sut = await factory();
      store = sut.store;
    });
    afterEach(async () => {
      await sut.cleanup();
    });

    const audit = (type: string, subject: string, data: Record<string, unknown> = {}): AuditInput => ({ type, actor: 'test', subject, data });
    const DAY = 86400_000;
    const secret = () => ({ hash: 'scrypt$12$8$1$c2FsdA==$aGFzaA==', expiresAt: new Date(Date.now() + DAY) });
    const addDevice = (id: string, owner: string | null = null) => store.createDevice({ id, owner, label: null, state: 'registered' }, secret(), audit('device.create', id));
    const allAudit = async (): Promise<AuditRecord[]> => (await collectItems((after, want) => store.listAudit({ after, limit: want }))).items;
    const auditCount = async (): Promise<number> => (await allAudit()).length;

    function cert(serial: string, deviceId: string | null, o: { shard?: number; notAfter?: Date; issuer?: string } = {}): Parameters<Store['recordIssuance']>[0]['cert'] {
      return {
        serial,
        deviceId,
        issuer: o.issuer ?? 'device-ca-issuing',
        subject: `CN=${deviceId}`,
        profile: 'default',
        notBefore: new Date('2025-01-01T00:00:00Z'),
        notAfter: o.notAfter ?? new Date(Date.now() + 365 * DAY),
        shard: o.shard ?? 3,
        spkiSha256: crypto.createHash('sha256').update(serial).digest('hex'),
        der: Buffer.from(`der of ${serial}`),
      };
    }
    const issue = (serial: string, deviceId: string | null, o: Parameters<typeof cert>[2] = {}) => store.recordIssuance({ cert: cert(serial, deviceId, o), audit: audit('cert.issue', serial) });

    async function codeOf(p: Promise<unknown>): Promise<ErrorCode | 'resolved'> {
      try {
        await p;
        return 'resolved';
      } catch (e) {
        expect(e).toBeInstanceOf(DeviceCaError);
        return (e as DeviceCaError).code;
      }
    }

    /** walk follows next from the first page with a fixed limit and records every page's size. */
    async function walk<T>(list: (after: string | undefined) => Promise<Page<T>>): Promise<{ items: T[]; sizes: number[] }> {
      const items: T[] = [];
      const sizes: number[] = [];
      let after: string | undefined;
      for (let guard = 0; guard < 10_000; guard++) {
        const page = await list(after);
        items.push(...page.items);
        sizes.push(page.items.length);
        if (page.next === null) return { items, sizes };
        expect(page.next).not.toBe(after); // a cursor that does not move would loop forever
        after = page.next;
      }
      throw new Error('paging did not end');
    }

    describe('devices and secrets', () => {
      it('createDevice stores the device and its first secret; a second create of the id is a conflict that writes nothing', async () => {
        const d = await store.createDevice({ id: 'dev-1', owner: 'a', label: 'first', state: 'registered' }, secret(), audit('device.create', 'dev-1'));
        expect(d).toMatchObject({ id: 'dev-1', owner: 'a', label: 'first', state: 'registered' });
        expect(await store.getDevice('dev-1')).toEqual(d);
        expect(await store.getDevice('dev-2')).toBeNull();
        expect(await codeOf(store.createDevice({ id: 'dev-1', owner: 'b', label: 'second', state: 'registered' }, secret(), audit('device.create', 'dev-1')))).toBe('conflict');
        expect(await store.getDevice('dev-1')).toMatchObject({ owner: 'a', label: 'first' });
        expect(await store.activeSecrets('dev-1', new Date())).toHaveLength(1);
        expect(await auditCount()).toBe(1);
      });

      it('createDevices writes a batch in one transaction: a taken id fails it whole, or is passed over with skipExisting', async () => {
        await addDevice('bulk-02', 'a');
        const item = (id: string) => ({ device: { id, owner: 'b', label: null, state: 'registered' as const }, secret: secret(), audit: audit('device.registered', id) });
        const before = await auditCount();
        const err = await store.createDevices(['bulk-01', 'bulk-02', 'bulk-03'].map(item), { skipExisting: false }).catch((e: unknown) => e);
        expect(err).toMatchObject({ code: 'conflict', message: expect.stringContaining('bulk-02') });
        expect(await store.getDevice('bulk-01')).toBeNull();
        expect(await auditCount()).toBe(before);
        const r = await store.createDevices(['bulk-01', 'bulk-02', 'bulk-03'].map(item), { skipExisting: true });
        expect(r).toEqual({ created: ['bulk-01', 'bulk-03'], existing: ['bulk-02'] });
        expect(await store.getDevice('bulk-02')).toMatchObject({ owner: 'a' });
        expect(await store.getDevice('bulk-03')).toMatchObject({ owner: 'b', state: 'registered' });
        expect(await store.activeSecrets('bulk-03', new Date())).toHaveLength(1);
        // one audit record per created device, in batch order, chained
        expect((await allAudit()).slice(before).map((a) => a.subject)).toEqual(['bulk-01', 'bulk-03']);
        expect(await verifyAuditChain(store)).toMatchObject({ ok: true });
        expect(await codeOf(store.createDevices(['bulk-04', 'bulk-04'].map(item), { skipExisting: true }))).toBe('bad-request');
        expect(await store.getDevice('bulk-04')).toBeNull();
        expect(await store.createDevices([], { skipExisting: false })).toEqual({ created: [], existing: [] });
      });

      it('activeSecrets: unused and unexpired only, newest first', async () => {
        const now = new Date();
        await store.createDevice({ id: 'dev-1', owner: null, label: null, state: 'registered' }, { hash: 'h1', expiresAt: new Date(now.getTime() + 1000) }, audit('device.create', 'dev-1'));
        expect((await store.activeSecrets('dev-1', now)).map((s) => [s.hash, s.deviceId, s.usedAt])).toEqual([['h1', 'dev-1', null]]);
        await store.applyDeviceChange({
          deviceId: 'dev-1',
          fromStates: ['registered'],
          toState: 'registered',
          addSecret: { hash: 'h2', expiresAt: new Date(now.getTime() + 5000) },
          audit: audit('secret.add', 'dev-1'),
        });
        expect((await store.activeSecrets('dev-1', now)).map((s) => s.hash)).toEqual(['h2', 'h1']);
        expect((await store.activeSecrets('dev-1', new Date(now.getTime() + 1000))).map((s) => s.hash)).toEqual(['h2']);
        expect(await store.activeSecrets('dev-2', now)).toEqual([]);
      });
    });

    describe('countDevices', () => {
      /** walked: the counts by listing every device, what countDevices must agree with */
      async function walked(owner?: string) {
        const all = (await collectItems((after, want) => store.listDevices({ owner, after, limit: want }))).items;
        const byState = Object.fromEntries(DEVICE_STATES.map((s) => [s, all.filter((d) => d.state === s).length]));
        const owners = new Map<string | null, number>();
        for (const d of all) owners.set(d.owner, (owners.get(d.owner) ?? 0) + 1);
        const topOwners = [...owners].map(([o, count]) => ({ owner: o, count })).sort((a, b) => b.count - a.count || (a.owner === null ? 1 : b.owner === null ? -1 : a.owner < b.owner ? -1 : 1));
        return { total: all.length, byState, topOwners };
      }

      it('an empty store counts zero in every state', async () => {
        expect(await store.countDevices({ topOwners: 5 })).toEqual({ total: 0, byState: { registered: 0, active: 0, suspended: 0, transferring: 0, retired: 0 }, topOwners: [] });
      });

      it('follows every device write (create, batch, issuance, suspend, release, claim, retire; a refused change counts nothing), fleet-wide and per owner', async () => {
        const item = (id: string, owner: string | null) => ({ device: { id, owner, label: null, state: 'registered' as const }, secret: secret(), audit: audit('device.registered', id) });
        await store.createDevices([item('c-01', 'acme'), item('c-02', 'acme'), item('c-03', 'acme'), item('c-04', 'globex'), item('c-05', null)], { skipExisting: false });
        await addDevice('c-06', 'globex');
        await issue('c1', 'c-01');
        await issue('c2', 'c-02');
        await issue('c4', 'c-04');
        await store.applyDeviceChange({ deviceId: 'c-02', fromStates: ['active'], toState: 'suspended', audit: audit('device.suspended', 'c-02') });
        await store.applyDeviceChange({ deviceId: 'c-03', fromStates: ['registered'], toState: 'transferring', pendingOwner: 'bravo', audit: audit('device.released', 'c-03') });
        await store.applyDeviceChange({ deviceId: 'c-03', fromStates: ['transferring'], toState: 'registered', newOwner: 'bravo', pendingOwner: null, audit: audit('device.claimed', 'c-03') });
        await store.applyDeviceChange({ deviceId: 'c-06', fromStates: ['registered'], toState: 'retired', audit: audit('device.retired', 'c-06') });
        // the same state again (a new secret) and a refused change leave the counts alone
        await store.applyDeviceChange({ deviceId: 'c-01', fromStates: ['active'], toState: 'active', audit: audit('device.secret-replaced', 'c-01') });
        expect(await codeOf(store.applyDeviceChange({ deviceId: 'c-05', fromStates: ['suspended'], toState: 'active', newOwner: 'acme', audit: audit('x', 'c-05') }))).toBe('conflict');

        expect(await store.countDevices({ topOwners: 10 })).toEqual({
          total: 6,
          byState: { registered: 2, active: 2, suspended: 1, transferring: 0, retired: 1 },
          topOwners: [
            { owner: 'globex', count: 2 },
            { owner: null, count: 1 },
            { owner: 'acme', count: 2 },
            { owner: 'bravo', count: 1 },
          ].sort((a, b) => b.count - a.count || (a.owner === null ? 1 : b.owner === null ? -1 : a.owner < b.owner ? -1 : 1)),
        });
        expect(await store.countDevices({ topOwners: 10 })).toEqual(await walked());
        expect(await store.countDevices({ owner: 'acme', topOwners: 10 })).toEqual(await walked('acme'));
        expect(await store.countDevices({ owner: 'globex', topOwners: 10 })).toEqual({
          total: 2,
          byState: { registered: 0, active: 1, suspended: 0, transferring: 0, retired: 1 },
          topOwners: [{ owner: 'globex', count: 2 }],
        });
        expect(await store.countDevices({ owner: 'nobody', topOwners: 10 })).toEqual({ total: 0, byState: { registered: 0, active: 0, suspended: 0, transferring: 0, retired: 0 }, topOwners: [] });
        // at most topOwners, most devices first (acme and globex tie at 2: either may make the cut)
        const top = (await store.countDevices({ topOwners: 1 })).topOwners;
        expect(top).toHaveLength(1);
        expect([
          { owner: 'acme', count: 2 },
          { owner: 'globex', count: 2 },
        ]).toContainEqual(top[0]);
        await store.applyDeviceChange({ deviceId: 'c-05', fromStates: ['registered'], toState: 'registered', newOwner: 'bravo', audit: audit('device.transferred', 'c-05') });
        await addDevice('c-07', 'bravo');
        expect((await store.countDevices({ topOwners: 1 })).topOwners).toEqual([{ owner: 'bravo', count: 3 }]);
        expect(await store.countDevices({ topOwners: 10 })).toEqual(await walked());
        // another client of the same data sees the same counts
        if (sut.another) {
          const other = await sut.another();
          try {
            expect(await other.countDevices({ topOwners: 10 })).toEqual(await walked());
          } finally {
            await other.close();
          }
        }
      });
    });

    describe('paging', () => {
      it('listDevices: following next with any page size yields every device once, in id order, filters applied on every page', async () => {
        const ids: string[] = [];
        await Promise.all(
          Array.from({ length: 23 }, (_, i) => {
            const id = `dev-${String(i).padStart(3, '0')}`;
            ids.push(id);
            return addDevice(id, i % 3 === 0 ? 'acme' : 'globex');
          }),
        );
        for (const limit of [1, 5, 7, 23, 24, 1000]) {
          const { items, sizes } = await walk((after) => store.listDevices({ after, limit }));
          expect(items.map((d) => d.id)).toEqual(ids);
          expect(sizes.slice(0, -1).every((n) => n === limit)).toBe(true);
        }
        const acme = await walk((after) => store.listDevices({ owner: 'acme', after, limit: 2 }));
        expect(acme.items.map((d) => d.id)).toEqual(ids.filter((_, i) => i % 3 === 0));
        expect((await store.listDevices({ state: 'active' })).items).toEqual([]);
        // a page that ends exactly at the last row says so: no empty extra page
        expect(await store.listDevices({ limit: 23 })).toMatchObject({ next: null });
        expect((await store.listDevices({})).items).toHaveLength(23); // default limit is DEFAULT_PAGE_LIMIT
      });

      it('listDevices with idPrefix: the ids that start with it, paged like the rest and combined with the other filters', async () => {
        const ids = Array.from({ length: 23 }, (_, i) => `dev-${String(i).padStart(3, '0')}`);
        await Promise.all(ids.map((id, i) => addDevice(id, i % 3 === 0 ? 'acme' : 'globex')));
        await addDevice('dev-0', 'acme');
        await addDevice('dev-1a', 'acme');
        await addDevice('dev', 'acme');
        const prefixed = await walk((after) => store.listDevices({ idPrefix: 'dev-01', after, limit: 3 }));
        expect(prefixed.items.map((d) => d.id)).toEqual(ids.filter((id) => id.startsWith('dev-01')));
        expect((await walk((after) => store.listDevices({ idPrefix: 'dev-0', owner: 'acme', after, limit: 2 }))).items.map((d) => d.id)).toEqual(['dev-0', ...ids.filter((id, i) => i % 3 === 0)]);
        expect((await store.listDevices({ idPrefix: 'dev-1' })).items.map((d) => d.id)).toEqual(['dev-1a']);
        expect((await store.listDevices({ idPrefix: 'dev-02', after: 'dev-001' })).items.map((d) => d.id)).toEqual(['dev-020', 'dev-021', 'dev-022']);
        expect((await store.listDevices({ idPrefix: 'dev-00', after: 'dev-005' })).items.map((d) => d.id)).toEqual(['dev-006', 'dev-007', 'dev-008', 'dev-009']);
        expect((await store.listDevices({ idPrefix: 'nope' })).items).toEqual([]);
      });

      it('listDevices with label: exactly that label, in id order, paged and combined with the other filters, whichever way the device was created', async () => {
        const labelled = (id: string, label: string | null, owner: string | null = 'acme') => store.createDevice({ id, owner, label, state: 'registered' }, secret(), audit('device.create', id));
        await Promise.all(Array.from({ length: 12 }, (_, i) => labelled(`lab-${String(i).padStart(2, '0')}`, i % 2 ? 'gateway' : 'sensor', i % 4 === 1 ? 'globex' : 'acme')));
        await labelled('lab-x', 'gateway-2');
        await labelled('lab-y', null);
        await store.createDevices(
          ['lab-bulk-1', 'lab-bulk-2'].map((id) => ({ device: { id, owner: 'acme', label: 'gateway', state: 'registered' as const }, secret: secret(), audit: audit('device.create', id) })),
          { skipExisting: false },
        );
        const gateways = ['lab-01', 'lab-03', 'lab-05', 'lab-07', 'lab-09', 'lab-11', 'lab-bulk-1', 'lab-bulk-2'];
        for (const limit of [1, 3, 8, 100]) expect((await walk((after) => store.listDevices({ label: 'gateway', after, limit }))).items.map((d) => d.id)).toEqual(gateways);
        expect((await walk((after) => store.listDevices({ label: 'gateway', owner: 'globex', after, limit: 1 }))).items.map((d) => d.id)).toEqual(['lab-01', 'lab-05', 'lab-09']);
        expect((await store.listDevices({ label: 'gateway', idPrefix: 'lab-bulk' })).items.map((d) => d.id)).toEqual(['lab-bulk-1', 'lab-bulk-2']);
        expect((await store.listDevices({ label: 'gateway', after: 'lab-07' })).items.map((d) => d.id)).toEqual(['lab-09', 'lab-11', 'lab-bulk-1', 'lab-bulk-2']);
        expect((await store.listDevices({ label: 'gateway-2' })).items.map((d) => d.id)).toEqual(['lab-x']);
        expect((await store.listDevices({ label: 'gate' })).items).toEqual([]);
        await store.applyDeviceChange({ deviceId: 'lab-03', fromStates: ['registered'], toState: 'retired', audit: audit('device.retired', 'lab-03') });
        expect((await store.listDevices({ label: 'gateway', state: 'retired' })).items.map((d) => d.id)).toEqual(['lab-03']);
      });

      it('listDevices by owner, state, label and id prefix in every combination: exactly the matching devices, in id order, paged; a device moves between searches as it is issued, retired, released, claimed and transferred', async () => {
        type Row = { id: string; owner: string | null; label: string | null; state: string };
        const model = new Map<string, Row>();
        const owners = ['acme', 'globex', null];
        const labels = ['gateway', 'sensor', null];
        for (let i = 0; i < 12; i++) {
          const row = { id: `cmb-${i % 2}${String(i).padStart(2, '0')}`, owner: owners[i % 3], label: labels[i % 4 === 3 ? 2 : i % 2] };
          await store.createDevice({ ...row, state: 'registered' }, secret(), audit('device.create', row.id));
          model.set(row.id, { ...row, state: 'registered' });
        }
        const bulk = ['cmb-bulk-1', 'cmb-bulk-2', 'cmb-bulk-3'].map((id, i) => ({ id, owner: owners[i], label: 'gateway', state: 'registered' as const }));
        await store.createDevices(
          bulk.map((device) => ({ device, secret: secret(), audit: audit('device.create', device.id) })),
          { skipExisting: false },
        );
        for (const d of bulk) model.set(d.id, { ...d });
        const set = (id: string, o: Partial<Row>) => model.set(id, { ...model.get(id)!, ...o });

        const check = async () => {
          const all = [...model.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
          for (const owner of [undefined, 'acme', 'globex', 'initech'])
            for (const state of [undefined, ...DEVICE_STATES])
              for (const label of [undefined, 'gateway'])
                for (const idPrefix of [undefined, 'cmb-1']) {
                  const want = all
                    .filter((d) => (owner === undefined || d.owner === owner) && (state === undefined || d.state === state) && (label === undefined || d.label === label))
                    .filter((d) => idPrefix === undefined || d.id.startsWith(idPrefix))
                    .map((d) => ({ id: d.id, owner: d.owner, label: d.label, state: d.state }));
                  const got = (await walk((after) => store.listDevices({ owner, state, label, idPrefix, after, limit: 2 }))).items;
                  expect({ owner, state, label, idPrefix, devices: got.map((d) => ({ id: d.id, owner: d.owner, label: d.label, state: d.state })) }).toEqual({
                    owner,
                    state,
                    label,
                    idPrefix,
                    devices: want,
                  });
                }
        };
        await check();
        // issued (the batched issuance path): registered -> active
        await issue('cc01', 'cmb-000');
        await issue('cc02', 'cmb-bulk-1');
        set('cmb-000', { state: 'active' });
        set('cmb-bulk-1', { state: 'active' });
        // retired, suspended
        await store.applyDeviceChange({
          deviceId: 'cmb-000',
          fromStates: ['active'],
          toState: 'retired',
          revoke: { reason: 'cessationOfOperation', at: new Date() },
          audit: audit('device.retired', 'cmb-000'),
        });
        set('cmb-000', { state: 'retired' });
        await store.applyDeviceChange({ deviceId: 'cmb-bulk-1', fromStates: ['active'], toState: 'suspended', audit: audit('device.suspended', 'cmb-bulk-1') });
        set('cmb-bulk-1', { state: 'suspended' });
        // released to globex, then claimed: the owner changes at the claim
        await store.applyDeviceChange({ deviceId: 'cmb-101', fromStates: ['registered'], toState: 'transferring', pendingOwner: 'globex', audit: audit('device.released', 'cmb-101') });
        set('cmb-101', { state: 'transferring' });
        await check();
        await store.applyDeviceChange({ deviceId: 'cmb-101', fromStates: ['transferring'], toState: 'registered', newOwner: 'globex', pendingOwner: null, audit: audit('device.claimed', 'cmb-101') });
        set('cmb-101', { state: 'registered', owner: 'globex' });
        // transferred in one step, and a device without an owner given one
        await store.applyDeviceChange({ deviceId: 'cmb-bulk-2', fromStates: ['registered'], toState: 'registered', newOwner: 'acme', audit: audit('device.transferred', 'cmb-bulk-2') });
        set('cmb-bulk-2', { owner: 'acme' });
        await store.applyDeviceChange({ deviceId: 'cmb-bulk-3', fromStates: ['registered'], toState: 'retired', newOwner: 'initech', audit: audit('device.transferred', 'cmb-bulk-3') });
        set('cmb-bulk-3', { owner: 'initech', state: 'retired' });
        await check();
        // another client of the same data answers the same
        if (sut.another) {
          const other = await sut.another();
          try {
            expect((await other.listDevices({ owner: 'acme', state: 'registered' })).items.map((d) => d.id)).toEqual(
              (await store.listDevices({ owner: 'acme', state: 'registered' })).items.map((d) => d.id),
            );
          } finally {
            await other.close();
          }
        }
      });

      it(`a limit above MAX_PAGE_LIMIT (${MAX_PAGE_LIMIT}) is clamped, and next still leads to the rest: nothing is silently cut`, async () => {
        const n = MAX_PAGE_LIMIT + 345;
        await addDevice('dev-big');
        await Promise.all(Array.from({ length: n }, (_, i) => issue(`a${String(i).padStart(6, '0')}`, 'dev-big')));
        const first = await store.listCertificates({ deviceId: 'dev-big', limit: 5000 });
        expect(first.items).toHaveLength(MAX_PAGE_LIMIT);
        expect(first.next).not.toBeNull();
        const { items, sizes } = await walk((after) => store.listCertificates({ deviceId: 'dev-big', after, limit: 5000 }));
        expect(sizes).toEqual([MAX_PAGE_LIMIT, 345]);
        expect(new Set(items.map((c) => c.serial)).size).toBe(n);
        expect(items.map((c) => c.serial)).toEqual([...items.map((c) => c.serial)].sort());
        expect((await store.listCertificates({ deviceId: 'dev-big' })).items).toHaveLength(DEFAULT_PAGE_LIMIT);
      });

      it('listCertificates filters by device, status and owner on every page', async () => {
        await addDevice('dev-a', 'acme');
        await addDevice('dev-b', 'globex');
        const serials = { a: [] as string[], b: [] as string[] };
        for (let i = 0; i < 9; i++) {
          serials.a.push(`a0${i}`);
          serials.b.push(`b0${i}`);
          await issue(`a0${i}`, 'dev-a');
          await issue(`b0${i}`, 'dev-b');
        }
        for (const s of ['a01', 'a04', 'b02']) await store.revokeCertificate(s, 'keyCompromise', new Date(), null, audit('certificate.revoked', s));
        const serialsOf = async (f: Parameters<Store['listCertificates']>[0]) => (await walk((after) => store.listCertificates({ ...f, after, limit: 2 }))).items.map((c) => c.serial);
        expect(await serialsOf({ deviceId: 'dev-a' })).toEqual(serials.a);
        expect(await serialsOf({ owner: 'globex' })).toEqual(serials.b);
        expect(await serialsOf({ status: 'revoked' })).toEqual(['a01', 'a04', 'b02']);
        expect(await serialsOf({ deviceId: 'dev-a', status: 'valid' })).toEqual(serials.a.filter((s) => s !== 'a01' && s !== 'a04'));
        expect(await serialsOf({ owner: 'nobody' })).toEqual([]);
      });

      it('listRequests, listAudit and listTokens page the same way', async () => {
        await addDevice('dev-1');
        for (let i = 0; i < 11; i++) {
          await store.createRequest(
            { id: `req-${String(i).padStart(2, '0')}`, deviceId: 'dev-1', label: 'default', operation: 'enroll', csrSha256: `sha-${i}`, csr: Buffer.from(`csr-${i}`) },
            audit('request.create', 'dev-1'),
          );
          await store.createToken({ id: `tok-${String(i).padStart(2, '0')}`, hash: `hash-${i}`, scope: 'operator', description: null }, audit('token.created', `tok-${i}`));
        }
        for (const id of ['req-02', 'req-05', 'req-09']) await store.decideRequest(id, 'approved', 'op', audit('request.approve', id));
        const req = await walk((after) => store.listRequests({ after, limit: 4 }));
        expect(req.items.map((r) => r.id)).toEqual(Array.from({ length: 11 }, (_, i) => `req-${String(i).padStart(2, '0')}`));
        expect(req.sizes).toEqual([4, 4, 3]);
        expect((await walk((after) => store.listRequests({ status: 'approved', after, limit: 2 }))).items.map((r) => r.id)).toEqual(['req-02', 'req-05', 'req-09']);
        const tok = await walk((after) => store.listTokens({ after, limit: 3 }));
        expect(tok.items.map((t) => t.id).sort()).toEqual(Array.from({ length: 11 }, (_, i) => `tok-${String(i).padStart(2, '0')}`));
        expect(tok.sizes).toEqual([3, 3, 3, 2]);
        const aud = await walk((after) => store.listAudit({ after, limit: 6 }));
        expect(aud.items.map((r) => r.seq)).toEqual(Array.from({ length: 26 }, (_, i) => i + 1));
        const sub = await walk((after) => store.listAudit({ subject: 'dev-1', after, limit: 4 }));
        expect(sub.items.map((r) => r.type)).toEqual(['device.create', ...Array(11).fill('request.create')]);
      });

      it('a cursor that is not one of the list is bad-request, not a silent empty page', async () => {
        await store.appendAudit(audit('x', 'y'));
        expect(await codeOf(store.listAudit({ after: 'not-a-seq' }))).toBe('bad-request');
      });
    });

    describe('overview charts: countIssuedPerHour, countExpiringPerDay', () => {
      const HOUR = 3600_000;
      it("countIssuedPerHour counts the device certificates recorded in each UTC hour (not the service's own), and nothing else", async () => {
        await addDevice('dev-1', 'acme');
        await addDevice('dev-2', 'globex');
        const before = Date.now();
        await issue('h01', 'dev-1');
        await issue('h02', 'dev-1');
        await issue('h03', 'dev-2');
        await issue('h04', null); // a service certificate (HTTPS, OCSP responder): not an enrollment
        const after = Date.now();
        const first = Math.floor(before / HOUR) - 3;
        const counts = await store.countIssuedPerHour({ from: new Date(first * HOUR + 1234), hours: 6 });
        expect(counts).toHaveLength(6);
        // the hours the issuances fell in (one, or two when an hour began meanwhile) hold them all
        const inHours = counts.slice(3, 4 + Math.floor(after / HOUR) - Math.floor(before / HOUR));
        expect(inHours.reduce((a, b) => a + b, 0)).toBe(3);
        expect(counts.reduce((a, b) => a + b, 0)).toBe(3);
        expect(await store.countIssuedPerHour({ from: new Date(before + 2 * HOUR), hours: 168 })).toEqual(new Array(168).fill(0));
        // a refused issuance counts nothing
        await store.applyDeviceChange({ deviceId: 'dev-2', fromStates: ['active'], toState: 'retired', audit: audit('device.retired', 'dev-2') });
        expect(await codeOf(issue('h05', 'dev-2'))).toBe('forbidden');
        expect((await store.countIssuedPerHour({ from: new Date(first * HOUR), hours: 6 })).reduce((a, b) => a + b, 0)).toBe(3);
        expect(await codeOf(store.countIssuedPerHour({ from: new Date(), hours: 0 }))).toBe('bad-request');
        expect(await codeOf(store.countIssuedPerHour({ from: new Date(), hours: 100_000 }))).toBe('bad-request');
      });

      it('countExpiringPerDay counts valid device certificates by the UTC day of notAfter, from `from` on, and follows revocation, hold and release', async () => {
        const from = new Date('2030-01-01T12:00:00Z');
        const t = (iso: string) => ({ notAfter: new Date(iso) });
        await addDevice('dev-1', 'acme');
        await addDevice('dev-2', 'acme');
        await issue('x01', 'dev-1', t('2030-01-01T11:59:59.999Z')); // before `from`: not counted
        await issue('x02', 'dev-1', t('2030-01-01T12:00:00.000Z')); // day 0
        await issue('x03', 'dev-1', t('2030-01-01T23:59:59.999Z')); // day 0
        await issue('x04', 'dev-1', t('2030-01-02T00:00:00.000Z')); // day 1
        await issue('x05', 'dev-2', t('2030-01-04T05:00:00.000Z')); // day 3 (dev-2: suspended below)
        await issue('x06', 'dev-1', t('2030-01-05T00:00:00.000Z')); // day 4: beyond 4 days
        await issue('x07', null, t('2030-01-02T08:00:00.000Z')); // a service certificate: not counted
        await issue('x08', 'dev-1', t('2030-01-02T09:00:00.000Z')); // day 1, revoked below
        expect(await store.countExpiringPerDay({ from, days: 4 })).toEqual([2, 2, 0, 1]);
        expect(await store.countExpiringPerDay({ from, days: 5 })).toEqual([2, 2, 0, 1, 1]);
        await store.revokeCertificate('x08', 'keyCompromise', new Date(), null, audit('cert.revoke', 'x08'));
        expect(await store.countExpiringPerDay({ from, days: 4 })).toEqual([2, 1, 0, 1]);
        // a repeated revocation changes nothing
        await store.revokeCertificate('x08', 'keyCompromise', new Date(), null, audit('cert.revoke', 'x08'));
        expect(await store.countExpiringPerDay({ from, days: 4 })).toEqual([2, 1, 0, 1]);
        // hold (device suspended), then release (resumed): out of the count, then back in
        await store.applyDeviceChange({
          deviceId: 'dev-2',
          fromStates: ['active'],
          toState: 'suspended',
          revoke: { reason: 'certificateHold', at: new Date(), holdOnly: true },
          audit: audit('device.suspended', 'dev-2'),
        });
        expect(await store.countExpiringPerDay({ from, days: 4 })).toEqual([2, 1, 0, 0]);
        await store.applyDeviceChange({ deviceId: 'dev-2', fromStates: ['suspended'], toState: 'active', releaseHolds: true, audit: audit('device.resumed', 'dev-2') });
        expect(await store.countExpiringPerDay({ from, days: 4 })).toEqual([2, 1, 0, 1]);
        // retire: every certificate of the device revoked
        await store.applyDeviceChange({
          deviceId: 'dev-1',
          fromStates: ['active'],
          toState: 'retired',
          revoke: { reason: 'cessationOfOperation', at: new Date() },
          audit: audit('device.retired', 'dev-1'),
        });
        expect(await store.countExpiringPerDay({ from, days: 5 })).toEqual([0, 0, 0, 1, 0]);
        expect(await codeOf(store.countExpiringPerDay({ from, days: 0 }))).toBe('bad-request');
      });
    });

    describe('certificates and recordIssuance', () => {
      beforeEach(async () => {
        await addDevice('dev-1');
      });

      it('stores the certificate, activates the device, consumes the secret and appends audit, together', async () => {
        const [s] = await store.activeSecrets('dev-1', new Date());
        const c = cert('aa01', 'dev-1');
        await store.recordIssuance({ cert: c, consumeSecretId: s.id, audit: audit('cert.issue', 'aa01', { serial: 'aa01' }) });
        const got = (await store.getCertificate('aa01'))!;
        expect(got).toMatchObject({ ...c, der: expect.any(Buffer), status: 'valid', revokedAt: null, revocationReason: null, invalidityDate: null });
        expect(got.der.equals(c.der)).toBe(true);
        expect(got.createdAt).toBeInstanceOf(Date);
        expect(await store.certificateStatus('aa01')).toEqual({ serial: 'aa01', issuer: c.issuer, status: 'valid', revokedAt: null, revocationReason: null, notAfter: c.notAfter });
        expect(await store.certificateStatus('ffff')).toBeNull();
        expect(await store.getCertificate('ffff')).toBeNull();
        expect((await store.getDevice('dev-1'))!.state).toBe('active');
        expect(await store.activeSecrets('dev-1', new Date())).toEqual([]);
        expect((await allAudit()).map((a) => a.type)).toEqual(['device.create', 'cert.issue']);
      });

      it('the secret is single use: a second consume is unauthenticated and writes nothing', async () => {
        const [s] = await store.activeSecrets('dev-1', new Date());
        await store.recordIssuance({ cert: cert('aa01', 'dev-1'), consumeSecretId: s.id, audit: audit('cert.issue', 'aa01') });
        const before = await auditCount();
        expect(await codeOf(store.recordIssuance({ cert: cert('aa02', 'dev-1'), consumeSecretId: s.id, audit: audit('cert.issue', 'aa02') }))).toBe('unauthenticated');
        expect(await store.getCertificate('aa02')).toBeNull();
        expect(await auditCount()).toBe(before);
      });

      it('two issuances racing for one secret: exactly one wins, the loser writes nothing', async () => {
        const [s] = await store.activeSecrets('dev-1', new Date());
        const other = sut.another ? await sut.another() : store;
        try {
          const results = await Promise.allSettled([
            store.recordIssuance({ cert: cert('bb01', 'dev-1'), consumeSecretId: s.id, audit: audit('cert.issue', 'bb01') }),
            other.recordIssuance({ cert: cert('bb02', 'dev-1'), consumeSecretId: s.id, audit: audit('cert.issue', 'bb02') }),
            store.recordIssuance({ cert: cert('bb03', 'dev-1'), consumeSecretId: s.id, audit: audit('cert.issue', 'bb03') }),
          ]);
          expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected', 'rejected']);
          for (const r of results) if (r.status === 'rejected') expect((r.reason as DeviceCaError).code).toBe('unauthenticated');
          expect((await store.listCertificates({ deviceId: 'dev-1' })).items).toHaveLength(1);
          expect((await allAudit()).filter((a) => a.type === 'cert.issue')).toHaveLength(1);
        } finally {
          if (other !== store) await other.close();
        }
      });

      it('issuances and audit appends sent together from two clients: each refused one writes nothing, the others are recorded once on one chain', async () => {
        await addDevice('dev-2');
        const [s1] = await store.activeSecrets('dev-1', new Date());
        const other = sut.another ? await sut.another() : store;
        try {
          // sent in one tick: a store that commits its writes in batches gets them in one batch
          const results = await Promise.allSettled([
            store.appendAudit(audit('note', 'n1')),
            store.recordIssuance({ cert: cert('ab01', 'dev-1'), consumeSecretId: s1.id, audit: audit('cert.issue', 'ab01') }),
            store.recordIssuance({ cert: cert('ab02', 'dev-1'), consumeSecretId: s1.id, audit: audit('cert.issue', 'ab02') }),
            store.recordIssuance({ cert: cert('ab01', 'dev-2'), audit: audit('cert.issue', 'ab01-again') }),
            store.recordIssuance({ cert: cert('ab03', 'dev-1'), audit: audit('cert.issue', 'ab03') }),
            other.recordIssuance({ cert: cert('ab04', 'dev-2'), audit: audit('cert.issue', 'ab04') }),
            other.appendAudit(audit('note', 'n2')),
            store.appendAudit(audit('note', 'n3')),
          ]);
          expect(results.map((r) => (r.status === 'fulfilled' ? 'ok' : (r.reason as DeviceCaError).code))).toEqual(['ok', 'ok', 'unauthenticated', 'internal', 'ok', 'ok', 'ok', 'ok']);
        } finally {
          if (other !== store) await other.close();
        }
        expect((await store.listCertificates({})).items.map((c) => `${c.serial}:${c.deviceId}`)).toEqual(['ab01:dev-1', 'ab03:dev-1', 'ab04:dev-2']);
        expect(await store.activeSecrets('dev-1', new Date())).toEqual([]);
        expect((await store.spentSecrets('dev-1', new Date(0))).map((x) => x.certSerial)).toEqual(['ab01']);
        expect(await store.countDevices({ topOwners: 0 })).toMatchObject({ total: 2, byState: { registered: 0, active: 2 } });
        const records = await allAudit();
        expect(
          records
            .filter((a) => a.type === 'cert.issue')
            .map((a) => a.subject)
            .sort(),
        ).toEqual(['ab01', 'ab03', 'ab04']);
        expect(
          records
            .filter((a) => a.type === 'note')
            .map((a) => a.subject)
            .sort(),
        ).toEqual(['n1', 'n2', 'n3']);
        expect(await verifyAuditChain(store)).toMatchObject({ ok: true, records: records.length });
      });

      it('a failing issuance (duplicate serial) leaves nothing half-written: secret, device state and audit unchanged', async () => {
        await issue('cc01', null);
        const [s] = await store.activeSecrets('dev-1', new Date());
        const before = await auditCount();
        await expect(store.recordIssuance({ cert: cert('cc01', 'dev-1'), consumeSecretId: s.id, audit: audit('cert.issue', 'cc01') })).rejects.toBeInstanceOf(DeviceCaError);
        expect((await store.activeSecrets('dev-1', new Date())).map((x) => x.id)).toEqual([s.id]);
        expect((await store.getDevice('dev-1'))!.state).toBe('registered');
        expect((await store.getCertificate('cc01'))!.deviceId).toBeNull();
        expect(await auditCount()).toBe(before);
      });

      it.each(['transferring', 'suspended', 'retired'] as const)('a device %s while its certificate was signed: forbidden, nothing recorded', async (state) => {
        await store.applyDeviceChange({
          deviceId: 'dev-1',
          fromStates: ['registered'],
          toState: state,
          pendingOwner: state === 'transferring' ? 'bravo' : null,
          audit: audit(`device.${state}`, 'dev-1'),
        });
        const before = await auditCount();
        const err = await store.recordIssuance({ cert: cert('ee01', 'dev-1'), audit: audit('cert.issue', 'ee01') }).then(
          () => null,
          (e: unknown) => e as DeviceCaError,
        );
        expect([err?.code, err?.message]).toEqual(['forbidden', `device is ${state}`]);
        expect(await store.getCertificate('ee01')).toBeNull();
        expect(await auditCount()).toBe(before);
        expect((await store.getDevice('dev-1'))!.state).toBe(state);
      });

      it('settles an approved request to issued with the serial; an issued request cannot be decided again', async () => {
        await store.createRequest({ id: 'req-1', deviceId: 'dev-1', label: 'default', operation: 'enroll', csrSha256: 'ab', csr: Buffer.from('csr') }, audit('request.create', 'req-1'));
        await store.decideRequest('req-1', 'approved', 'admin', audit('request.approve', 'req-1'));
        await store.recordIssuance({ cert: cert('dd01', 'dev-1'), requestId: 'req-1', audit: audit('cert.issue', 'dd01') });
        expect(await store.findRequest('dev-1', 'ab')).toMatchObject({ status: 'issued', certSerial: 'dd01', decidedBy: 'admin' });
        expect(await codeOf(store.decideRequest('req-1', 'rejected', 'admin', audit('request.reject', 'req-1')))).toBe('conflict');
      });
    });

    describe('manual approval requests', () => {
      const newRequest = (id: string) =>
        store.createRequest({ id, deviceId: 'dev-1', label: 'default', operation: 'enroll', csrSha256: `sha-${id}`, csr: Buffer.from(`csr-${id}`) }, audit('request.create', id));
      beforeEach(async () => {
        await addDevice('dev-1');
      });

      it('pending -> approved; a second decision either way is a conflict and writes nothing', async () => {
        expect(await newRequest('req-1')).toMatchObject({ id: 'req-1', status: 'pending', certSerial: null, decidedAt: null, decidedBy: null });
        expect(await store.decideRequest('req-1', 'approved', 'alice', audit('request.approve', 'req-1'))).toMatchObject({ id: 'req-1', status: 'approved', decidedBy: 'alice' });
        const before = await auditCount();
        for (const next of ['approved', 'rejected'] as const) expect(await codeOf(store.decideRequest('req-1', next, 'bob', audit('request.decide', 'req-1')))).toBe('conflict');
        expect(await store.findRequest('dev-1', 'sha-req-1')).toMatchObject({ status: 'approved', decidedBy: 'alice' });
        expect(await auditCount()).toBe(before);
      });

      it('pending -> rejected, then no approval; an unknown id is not-found', async () => {
        await newRequest('req-2');
        expect((await store.decideRequest('req-2', 'rejected', 'alice', audit('request.reject', 'req-2'))).status).toBe('rejected');
        expect(await codeOf(store.decideRequest('req-2', 'approved', 'alice', audit('request.approve', 'req-2')))).toBe('conflict');
        expect(await codeOf(store.decideRequest('nope', 'approved', 'alice', audit('request.approve', 'nope')))).toBe('not-found');
      });

      it('findRequest finds by device and CSR hash, with the CSR bytes', async () => {
        await newRequest('req-a');
        expect((await store.findRequest('dev-1', 'sha-req-a'))!.csr.equals(Buffer.from('csr-req-a'))).toBe(true);
        expect(await store.findRequest('dev-1', 'sha-none')).toBeNull();
        expect(await store.findRequest('dev-2', 'sha-req-a')).toBeNull();
      });
    });

    describe('audit chain', () => {
      it('hashes link: seq 1..n, prevHash = previous hash (GENESIS first), each hash recomputes; the returned record is the stored one', async () => {
        await store.createDevice({ id: 'dev-1', owner: null, label: null, state: 'registered' }, secret(), audit('device.create', 'dev-1', { owner: null, z: 1, a: [1, 'x'] }));
        const rec = await store.appendAudit(audit('note', 'dev-1', { nested: { b: 2, a: 1 }, text: 'ünïcode', when: new Date('2026-01-01T00:00:00Z'), gone: undefined }));
        for (let i = 0; i < 20; i++) await store.appendAudit(audit('tick', `t${i}`, { i }));
        const all = await allAudit();
        expect(all).toHaveLength(22);
        expect(all[0].prevHash).toBe(GENESIS);
        all.forEach((r, i) => expect(auditLinkProblem(i ? all[i - 1] : null, r)).toBeNull());
        expect(all[1]).toEqual(rec);
        expect(rec.data).toEqual({ nested: { b: 2, a: 1 }, text: 'ünïcode', when: '2026-01-01T00:00:00.000Z' }); // stored as JSON keeps it
        expect(await verifyAuditChain(store)).toEqual({ ok: true, records: 22, lastHash: all[21].hash });
      });

      it('concurrent appends still form one chain without gaps or forks', async () => {
        const other = sut.another ? await sut.another() : store;
        try {
          await Promise.all(Array.from({ length: 60 }, (_, i) => (i % 2 ? other : store).appendAudit(audit('tick', `t${i}`, { i }))));
        } finally {
          if (other !== store) await other.close();
        }
        expect(await verifyAuditChain(store)).toMatchObject({ ok: true, records: 60 });
      });

      it('audit verify reads past every page boundary: 20,000 records, the one edited near the end is named', async () => {
        if (!sut.tamperAudit) return; // a store without a way to edit behind its back cannot show this
        const n = 20_000;
        for (let i = 0; i < n; i += 2000) await Promise.all(Array.from({ length: 2000 }, (_, j) => store.appendAudit(audit('tick', `t${i + j}`, { i: i + j }))));
        expect(await verifyAuditChain(store)).toMatchObject({ ok: true, records: n });
        await sut.tamperAudit(19_990, { i: -1 });
        const v = await verifyAuditChain(store);
        expect(v).toMatchObject({ ok: false, records: 19_989, firstBad: { seq: 19_990, problem: expect.stringContaining('edited') } });
      });
    });

    describe('applyDeviceChange', () => {
      beforeEach(async () => {
        await addDevice('dev-1', 'acme');
        await issue('e01', 'dev-1', { shard: 1 });
        await issue('e02', 'dev-1', { shard: 2 });
        await issue('e03', 'dev-1', { shard: 1, notAfter: new Date(Date.now() - DAY) }); // expired: never touched
      });
      const statuses = async () => (await store.listCertificates({ deviceId: 'dev-1' })).items.map((c: CertificateRecord) => [c.serial, c.status, c.revocationReason]);

      it('a device not in fromStates is a conflict and nothing changes; an unknown device is not-found', async () => {
        const before = { certs: await statuses(), audit: await auditCount(), secrets: await store.activeSecrets('dev-1', new Date()), rev: await store.shardRevision('device-ca-issuing', 1) };
        expect(
          await codeOf(
            store.applyDeviceChange({
              deviceId: 'dev-1',
              fromStates: ['suspended'],
              toState: 'active',
              releaseHolds: true,
              deleteSecrets: true,
              revoke: { reason: 'keyCompromise', at: new Date() },
              audit: audit('x', 'dev-1'),
            }),
          ),
        ).toBe('conflict');
        expect(await statuses()).toEqual(before.certs);
        expect(await auditCount()).toBe(before.audit);
        expect(await store.activeSecrets('dev-1', new Date())).toEqual(before.secrets);
        expect(await store.shardRevision('device-ca-issuing', 1)).toBe(before.rev);
        expect((await store.getDevice('dev-1'))!.state).toBe('active');
        expect(await codeOf(store.applyDeviceChange({ deviceId: 'nope', fromStates: ['active'], toState: 'retired', audit: audit('x', 'nope') }))).toBe('not-found');
      });

      it('hold, release and revoke change exactly the unexpired certificates, and the audit record lists them', async () => {
        const at = new Date('2026-02-01T00:00:00Z');
        const held = await store.applyDeviceChange({
          deviceId: 'dev-1',
          fromStates: ['active'],
          toState: 'suspended',
          revoke: { reason: 'certificateHold', at, holdOnly: true },
          audit: audit('device.suspended', 'dev-1'),
        });
        expect(held.device).toMatchObject({ id: 'dev-1', state: 'suspended', owner: 'acme' });
        expect(held.changed).toEqual([
          { serial: 'e01', issuer: 'device-ca-issuing', shard: 1, status: 'revoked', reason: 'certificateHold' },
          { serial: 'e02', issuer: 'device-ca-issuing', shard: 2, status: 'revoked', reason: 'certificateHold' },
        ]);
        expect((await store.getCertificate('e01'))!.revokedAt).toEqual(at);
        expect(await statuses()).toEqual([
          ['e01', 'revoked', 'certificateHold'],
          ['e02', 'revoked', 'certificateHold'],
          ['e03', 'valid', null],
        ]);
        const released = await store.applyDeviceChange({ deviceId: 'dev-1', fromStates: ['suspended'], toState: 'active', releaseHolds: true, audit: audit('device.resumed', 'dev-1') });
        expect(released.changed.map((c) => [c.serial, c.status, c.reason])).toEqual([
          ['e01', 'valid', null],
          ['e02', 'valid', null],
        ]);
        const moved = await store.applyDeviceChange({
          deviceId: 'dev-1',
          fromStates: ['active'],
          toState: 'registered',
          newOwner: 'globex',
          revoke: { reason: 'affiliationChanged', at },
          deleteSecrets: true,
          addSecret: { hash: 'new', expiresAt: new Date(Date.now() + DAY) },
          audit: audit('device.transferred', 'dev-1'),
        });
        expect(moved.device).toMatchObject({ state: 'registered', owner: 'globex' });
        expect(await store.getDevice('dev-1')).toEqual(moved.device);
        expect(await statuses()).toEqual([
          ['e01', 'revoked', 'affiliationChanged'],
          ['e02', 'revoked', 'affiliationChanged'],
          ['e03', 'valid', null],
        ]);
        expect((await store.activeSecrets('dev-1', new Date())).map((s) => s.hash)).toEqual(['new']);
        const last = (await allAudit()).pop()!;
        expect(last).toMatchObject({ type: 'device.transferred', subject: 'dev-1' });
        expect((last.data.certificates as string[]).sort()).toEqual(['e01', 'e02']);
      });

      it('cancelRequests rejects the pending and approved requests of the device', async () => {
        await store.createRequest({ id: 'r1', deviceId: 'dev-1', label: 'default', operation: 'enroll', csrSha256: 's1', csr: Buffer.from('1') }, audit('request.create', 'r1'));
        await store.createRequest({ id: 'r2', deviceId: 'dev-1', label: 'default', operation: 'enroll', csrSha256: 's2', csr: Buffer.from('2') }, audit('request.create', 'r2'));
        await store.decideRequest('r2', 'approved', 'op', audit('request.approve', 'r2'));
        await store.applyDeviceChange({
          deviceId: 'dev-1',
          fromStates: ['active'],
          toState: 'retired',
          revoke: { reason: 'cessationOfOperation', at: new Date() },
          deleteSecrets: true,
          cancelRequests: true,
          audit: audit('device.retired', 'dev-1'),
        });
        expect((await store.listRequests({})).items.map((r) => [r.id, r.status])).toEqual([
          ['r1', 'rejected'],
          ['r2', 'rejected'],
        ]);
        expect(await store.activeSecrets('dev-1', new Date())).toEqual([]);
      });
    });

    describe('revocation and CRL state', () => {
      beforeEach(async () => {
        await addDevice('dev-1');
        await issue('f01', 'dev-1', { shard: 5 });
        await issue('f02', 'dev-1', { shard: 5 });
        await issue('f03', 'dev-1', { shard: 6 });
        await issue('f04', 'dev-1', { shard: 5, notAfter: new Date(Date.now() - DAY) });
      });

      it('revokeCertificate is idempotent; a hold may become permanent; a second revocation writes nothing', async () => {
        const at = new Date('2026-02-01T00:00:00Z');
        const inv = new Date('2026-01-15T00:00:00Z');
        const r1 = await store.revokeCertificate('f01', 'certificateHold', at, null, audit('certificate.revoked', 'f01'));
        expect(r1).toMatchObject({ changed: true, cert: { serial: 'f01', status: 'revoked', revocationReason: 'certificateHold', revokedAt: at } });
        expect((await store.revokeCertificate('f01', 'certificateHold', new Date(), null, audit('certificate.revoked', 'f01'))).changed).toBe(false);
        const r2 = await store.revokeCertificate('f01', 'keyCompromise', at, inv, audit('certificate.revoked', 'f01'));
        expect(r2).toMatchObject({ changed: true, cert: { revocationReason: 'keyCompromise', invalidityDate: inv } });
        const before = await auditCount();
        const r3 = await store.revokeCertificate('f01', 'superseded', new Date(), null, audit('certificate.revoked', 'f01'));
        expect(r3).toMatchObject({ changed: false, cert: { revocationReason: 'keyCompromise' } });
        expect(await auditCount()).toBe(before);
        expect(await store.getCertificate('f01')).toMatchObject({ status: 'revoked', revocationReason: 'keyCompromise', revokedAt: at, invalidityDate: inv });
        expect(await store.certificateStatus('f01')).toMatchObject({ status: 'revoked', revocationReason: 'keyCompromise', revokedAt: at });
        expect(await codeOf(store.revokeCertificate('ffff', 'keyCompromise', at, null, audit('certificate.revoked', 'ffff')))).toBe('not-found');
      });

      it("the status generation another client reads changes with each status change (revoke, hold, release, a device's revocation), not with an issuance or a revocation that changes nothing", async () => {
        // what OCSP keeps statuses under (store/status-generation.ts on a shared store, status-version.ts on SQLite)
        const other = sut.another ? await sut.another() : store;
        const generation = async (): Promise<unknown> => {
          if (hasStatusGeneration(other)) return await other.statusGeneration();
          if (hasStatusVersion(other)) return other.statusVersion();
          throw new Error('the store offers neither a status generation nor a status version');
        };
        try {
          const seen = [await generation()];
          const changes = async (what: string, change: () => Promise<unknown>): Promise<void> => {
            await change();
            const g = await generation();
            expect({ what, seenBefore: seen.includes(g) }).toEqual({ what, seenBefore: false });
            seen.push(g);
          };
          const stays = async (what: string, change: () => Promise<unknown>): Promise<void> => {
            await change();
            expect({ what, generation: await generation() }).toEqual({ what, generation: seen[seen.length - 1] });
          };
          await stays('issuance', () => issue('f05', 'dev-1'));
          await changes('hold', () => store.revokeCertificate('f01', 'certificateHold', new Date(), null, audit('certificate.revoked', 'f01')));
          await changes('release', () => store.releaseHold('f01', audit('certificate.released', 'f01')));
          await changes('revoke', () => store.revokeCertificate('f02', 'keyCompromise', new Date(), null, audit('certificate.revoked', 'f02')));
          await stays('a revocation that changes nothing', () => store.revokeCertificate('f02', 'superseded', new Date(), null, audit('certificate.revoked', 'f02')));
          await changes('suspend (holds)', () =>
            store.applyDeviceChange({
              deviceId: 'dev-1',
              fromStates: ['active'],
              toState: 'suspended',
              revoke: { reason: 'certificateHold', at: new Date(), holdOnly: true },
              audit: audit('device.suspended', 'dev-1'),
            }),
          );
          await changes('resume (releases the holds)', () =>
            store.applyDeviceChange({ deviceId: 'dev-1', fromStates: ['suspended'], toState: 'active', releaseHolds: true, audit: audit('device.resumed', 'dev-1') }),
          );
          await changes('retire (revokes)', () =>
            store.applyDeviceChange({
              deviceId: 'dev-1',
              fromStates: ['active'],
              toState: 'retired',
              revoke: { reason: 'cessationOfOperation', at: new Date() },
              audit: audit('device.retired', 'dev-1'),
            }),
          );
          await stays('a device without certificates', async () => {
            await addDevice('dev-9');
            await store.applyDeviceChange({
              deviceId: 'dev-9',
              fromStates: ['registered'],
              toState: 'retired',
              revoke: { reason: 'cessationOfOperation', at: new Date() },
              audit: audit('device.retired', 'dev-9'),
            });
          });
        } finally {
          if (other !== store) await other.close();
        }
      });

      it('releaseHold: a held certificate becomes valid; anything else is a conflict', async () => {
        await store.revokeCertificate('f02', 'certificateHold', new Date(), null, audit('certificate.revoked', 'f02'));
        expect(await store.releaseHold('f02', audit('certificate.released', 'f02'))).toMatchObject({ serial: 'f02', status: 'valid', revokedAt: null, revocationReason: null });
        expect(await codeOf(store.releaseHold('f02', audit('certificate.released', 'f02')))).toBe('conflict');
        expect(await codeOf(store.releaseHold('ffff', audit('certificate.released', 'ffff')))).toBe('not-found');
      });

      it('shardRevision increases with every status change in its shard only', async () => {
        const rev = (s: number) => store.shardRevision('device-ca-issuing', s);
        const r5 = await rev(5);
        const r6 = await rev(6);
        await store.revokeCertificate('f01', 'certificateHold', new Date(), null, audit('certificate.revoked', 'f01'));
        const a = await rev(5);
        expect(a).toBeGreaterThan(r5);
        await store.releaseHold('f01', audit('certificate.released', 'f01'));
        expect(await rev(5)).toBeGreaterThan(a);
        expect(await rev(6)).toBe(r6);
        await store.revokeCertificate('f01', 'keyCompromise', new Date(), null, audit('certificate.revoked', 'f01'));
        const b = await rev(5);
        await store.revokeCertificate('f01', 'keyCompromise', new Date(), null, audit('certificate.revoked', 'f01')); // no change
        expect(await rev(5)).toBe(b);
        expect(await store.shardRevision('other-ca', 5)).toBe(0);
      });

      it('revokedInShard yields every revoked, unexpired certificate of the shard, across pages', async () => {
        await Promise.all(Array.from({ length: 25 }, (_, i) => issue(`g${String(i).padStart(3, '0')}`, 'dev-1', { shard: 5 })));
        const revoked = ['f01', 'g003', 'g010', 'g011', 'g017', 'g024'];
        for (const s of [...revoked, 'f03', 'f04']) await store.revokeCertificate(s, 'keyCompromise', new Date('2026-02-01T00:00:00Z'), null, audit('certificate.revoked', s));
        const seen: string[] = [];
        for await (const page of store.revokedInShard('device-ca-issuing', 5, new Date(), 4)) {
          expect(page.length).toBeLessThanOrEqual(4);
          seen.push(...page.map((r) => r.serial));
        }
        expect(seen.sort()).toEqual(revoked.sort()); // f03 (shard 6) and f04 (expired) are not in it
        for await (const page of store.revokedInShard('device-ca-issuing', 5, new Date()))
          expect(page[0]).toEqual({ serial: 'f01', revokedAt: new Date('2026-02-01T00:00:00Z'), reason: 'keyCompromise', invalidityDate: null });
      });

      it('nextCrlNumber is strictly increasing per issuer, also across clients', async () => {
        const other = sut.another ? await sut.another() : store;
        try {
          const got = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? other : store).nextCrlNumber('ca-a')));
          expect(new Set(got.map(String)).size).toBe(20);
          const later = await store.nextCrlNumber('ca-a');
          expect(got.every((n) => n < later)).toBe(true);
          expect(typeof later).toBe('bigint');
          expect(await store.nextCrlNumber('ca-b')).toBeLessThan(later);
        } finally {
          if (other !== store) await other.close();
        }
      });

      it('saveCrl keeps the highest number: an older CRL never replaces a newer one', async () => {
        const crl = (n: number) => ({
          issuer: 'ca-a',
          shard: 2,
          number: BigInt(n),
          revision: n * 10,
          thisUpdate: new Date(n * 1000),
          nextUpdate: new Date(n * 1000 + DAY),
          entries: n,
          der: Buffer.from(`crl ${n}`),
        });
        expect(await store.getCrl('ca-a', 2)).toBeNull();
        expect(await store.crlInfo('ca-a', 2)).toBeNull();
        await store.saveCrl(crl(5));
        await store.saveCrl(crl(3));
        expect((await store.getCrl('ca-a', 2))!.der.toString()).toBe('crl 5');
        await store.saveCrl(crl(7));
        const { der, ...info } = crl(7);
        expect(await store.crlInfo('ca-a', 2)).toEqual(info);
        expect((await store.getCrl('ca-a', 2))!.der.equals(der)).toBe(true);
        expect(await store.getCrl('ca-a', 3)).toBeNull();
      });
    });

    describe('tokens', () => {
      it('createToken, findToken by hash, revokeToken (repeatable, revokedAt kept); an unknown id is not-found', async () => {
        const t = await store.createToken({ id: 't1', hash: 'h1', scope: 'owner:acme', description: 'ci' }, audit('token.created', 't1'));
        expect(t).toMatchObject({ id: 't1', hash: 'h1', scope: 'owner:acme', description: 'ci', revokedAt: null });
        expect(await store.findToken('h1')).toEqual(t);
        expect(await store.findToken('h2')).toBeNull();
        const r = await store.revokeToken('t1', audit('token.revoked', 't1'));
        expect(r.revokedAt).toBeInstanceOf(Date);
        expect((await store.findToken('h1'))!.revokedAt).toEqual(r.revokedAt);
        expect((await store.revokeToken('t1', audit('token.revoked', 't1'))).revokedAt).toEqual(r.revokedAt);
        expect(await codeOf(store.revokeToken('nope', audit('token.revoked', 'nope')))).toBe('not-found');
      });
    });

    describe('authentication attempts', () => {
      const t0 = new Date('2030-01-01T00:00:00Z');
      const at = (s: number): Date => new Date(t0.getTime() + s * 1000);
      const kept = (limit: number, windowSeconds = 10) => ({ windowSeconds, limit, evictable: false, maxEvictable: 100 });
      const EVER = 1e9; // a window that sees every stored attempt, expired or not
      const reserve = async (key: string, s: number, rules = kept(100)) => {
        const r = await store.reserveAuthAttempt(key, at(s), rules);
        if (!r.allowed) throw new Error(`expected a slot for ${key} at ${s}s`);
        return r;
      };

      it('counts attempts inside the window (now - window, now], per key, and forgets old ones', async () => {
        expect((await reserve('dev-1', 0)).attempts).toBe(1);
        expect((await reserve('dev-1', 1)).attempts).toBe(2);
        expect((await reserve('dev-2', 1)).attempts).toBe(1);
        expect((await reserve('dev-1', 2)).attempts).toBe(3);
        expect(await store.countAuthFailures('dev-1', at(5), 10)).toEqual({ count: 3, oldest: at(0) });
        expect(await store.countAuthFailures('dev-1', at(10), 10)).toEqual({ count: 2, oldest: at(1) });
        expect(await store.countAuthFailures('dev-1', at(30), 10)).toEqual({ count: 0, oldest: null });
        expect(await store.countAuthFailures('dev-2', at(5), 10)).toEqual({ count: 1, oldest: at(1) });
        expect((await reserve('dev-1', 11)).attempts).toBe(2);
      });

      it('at the limit a reservation is refused, stores nothing, and says when the oldest attempt leaves the window', async () => {
        for (const s of [0, 2, 4]) await reserve('dev-1', s, kept(3));
        expect(await store.reserveAuthAttempt('dev-1', at(5), kept(3))).toEqual({ allowed: false, retryAt: at(10) });
        expect(await store.reserveAuthAttempt('dev-1', at(9), kept(3))).toEqual({ allowed: false, retryAt: at(10) });
        expect((await store.countAuthFailures('dev-1', at(9), 10)).count).toBe(3);
        // the attempt at 0 s leaves at 10 s: one slot, then refused until the attempt at 2 s leaves
        expect((await reserve('dev-1', 10, kept(3))).attempts).toBe(3);
        expect(await store.reserveAuthAttempt('dev-1', at(10), kept(3))).toEqual({ allowed: false, retryAt: at(12) });
        expect((await reserve('dev-2', 10, kept(3))).attempts).toBe(1);
      });

      it('forgiveAuthAttempt gives the slot back; ids are never reused; an unknown id is ignored', async () => {
        const a = await reserve('dev-1', 0, kept(2));
        const b = await reserve('dev-1', 1, kept(2));
        expect((await store.reserveAuthAttempt('dev-1', at(2), kept(2))).allowed).toBe(false);
        await store.forgiveAuthAttempt(b.attemptId);
        const c = await reserve('dev-1', 3, kept(2));
        expect(c.attempts).toBe(2);
        expect(new Set([a.attemptId, b.attemptId, c.attemptId]).size).toBe(3);
        await store.forgiveAuthAttempt(b.attemptId); // again: c is not touched
        await store.forgiveAuthAttempt('no-such-attempt');
        await store.forgiveAuthAttempt('999999999');
        expect(await store.countAuthFailures('dev-1', at(5), 10)).toEqual({ count: 2, oldest: at(0) });
      });

      it('concurrent reservations from two clients: exactly `limit` are allowed, the rest refused with retryAt', async () => {
        const other = sut.another ? await sut.another() : store;
        try {
          const got = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? other : store).reserveAuthAttempt('dev-1', at(i / 10), kept(7))));
          const allowed = got.filter((r) => r.allowed);
          expect(allowed).toHaveLength(7);
          expect(new Set(allowed.map((r) => r.attemptId)).size).toBe(7);
          expect(allowed.map((r) => r.attempts).sort((x, y) => x - y)).toEqual([1, 2, 3, 4, 5, 6, 7]);
          for (const r of got) if (!r.allowed) expect(r.retryAt.getTime()).toBeGreaterThan(t0.getTime());
          expect((await other.countAuthFailures('dev-1', at(5), 10)).count).toBe(7);
        } finally {
          if (other !== store) await other.close();
        }
      });

      it('expired attempts of other keys are removed as new attempts arrive, not only for the same key', async () => {
        for (let i = 0; i < 10; i++) await reserve(`gone-${i}`, 0);
        await reserve('dev-1', 0);
        await reserve('late', 30);
        for (let i = 0; i < 10; i++) expect((await store.countAuthFailures(`gone-${i}`, at(30), EVER)).count).toBe(0);
        expect((await store.countAuthFailures('dev-1', at(30), EVER)).count).toBe(0);
        expect((await store.countAuthFailures('late', at(30), 10)).count).toBe(1);
      });

      it('evictable attempts beyond maxEvictable are dropped oldest first; kept attempts are never evicted', async () => {
        const rules = { windowSeconds: 3600, limit: 5, evictable: true, maxEvictable: 100 };
        for (let i = 0; i < 3; i++) await reserve('device', 0, kept(5, 3600));
        for (let i = 0; i < 250; i++) await reserve(`random-${i}`, 1, rules);
        const left = await Promise.all(Array.from({ length: 250 }, async (_, i) => (await store.countAuthFailures(`random-${i}`, at(2), 3600)).count));
        expect(left.slice(0, 150).every((c) => c === 0)).toBe(true);
        expect(left.slice(150).every((c) => c === 1)).toBe(true);
        expect((await store.countAuthFailures('device', at(2), 3600)).count).toBe(3);
        expect((await store.reserveAuthAttempt('device', at(2), kept(3, 3600))).allowed).toBe(false);
      });
    });

    describe('console sessions (createSession / touchSession / deleteSession)', () => {
      // the idle expiry is real time: Redis enforces it with its own clock (PEXPIREAT)
      const session = (idHash: string, o: { idleMs?: number; lifeMs?: number } = {}) => {
        const now = new Date();
        return { idHash, tokenHash: 'ab'.repeat(32), createdAt: now, idleExpiresAt: new Date(now.getTime() + (o.idleMs ?? 60_000)), expiresAt: new Date(now.getTime() + (o.lifeMs ?? 3600_000)) };
      };

      it('a session is found by its id hash, and each use moves its idle expiry, never past its absolute end', async () => {
        const s = session('s1'.repeat(32), { lifeMs: 120_000 });
        await store.createSession(s, s.createdAt);
        const now = new Date();
        const t = await store.touchSession(s.idHash, now, 90_000);
        expect(t).toEqual({ ...s, idleExpiresAt: new Date(now.getTime() + 90_000) });
        const capped = await store.touchSession(s.idHash, now, 600_000);
        expect(capped?.idleExpiresAt).toEqual(s.expiresAt);
        expect(await store.touchSession('ff'.repeat(32), now, 90_000)).toBeNull();
      });

      it('an idle-expired or absolutely expired session is gone', async () => {
        const idle = session('i1'.repeat(32), { idleMs: -1000 });
        await store.createSession(idle, idle.createdAt);
        expect(await store.touchSession(idle.idHash, new Date(), 60_000)).toBeNull();
        const old = session('o1'.repeat(32), { lifeMs: 30_000 });
        await store.createSession(old, old.createdAt);
        expect(await store.touchSession(old.idHash, new Date(old.expiresAt.getTime() + 1), 60_000)).toBeNull();
        expect(await store.touchSession(old.idHash, new Date(), 60_000)).toBeNull();
      });

      it('deleteSession ends it for every client of the store; another session stays', async () => {
        const a = session('a1'.repeat(32));
        const b = session('b1'.repeat(32));
        await store.createSession(a, a.createdAt);
        await store.createSession(b, b.createdAt);
        const other = sut.another ? await sut.another() : store;
        expect(await other.touchSession(a.idHash, new Date(), 60_000)).not.toBeNull();
        await store.deleteSession(a.idHash);
        await store.deleteSession(a.idHash);
        expect(await other.touchSession(a.idHash, new Date(), 60_000)).toBeNull();
        expect(await store.touchSession(b.idHash, new Date(), 60_000)).not.toBeNull();
      });
    });

    describe('leases (acquireLease / releaseLease)', () => {
      const t0 = new Date('2030-01-01T00:00:00Z');
      const at = (ms: number): Date => new Date(t0.getTime() + ms);
      const other = async (): Promise<Store> => (sut.another ? sut.another() : store);
      it('a second holder is refused while the first holds the lease; the holder renews with the same fence', async () => {
        const s = store;
        const a = await s.acquireLease('ca-duties', 'a', 30_000, t0);
        expect(a).toEqual({ fence: 1, expiresAt: at(30_000) });
        expect(await s.acquireLease('ca-duties', 'b', 30_000, at(10_000))).toBeNull();
        expect(await s.acquireLease('ca-duties', 'a', 30_000, at(20_000))).toEqual({ fence: 1, expiresAt: at(50_000) });
        // the renewal moved the expiry: b is still refused after the first expiry would have passed
        expect(await s.acquireLease('ca-duties', 'b', 30_000, at(40_000))).toBeNull();
      });

      it('an expired lease goes to the next holder with a larger fence; the old holder then is refused', async () => {
        const s = store;
        await s.acquireLease('ca-duties', 'a', 30_000, t0);
        const b = await s.acquireLease('ca-duties', 'b', 30_000, at(30_000));
        expect(b?.fence).toBe(2);
        expect(await s.acquireLease('ca-duties', 'a', 30_000, at(31_000))).toBeNull();
        const a = await s.acquireLease('ca-duties', 'a', 30_000, at(61_000));
        expect(a?.fence).toBe(3);
      });

      it('release hands the lease over at once, and the fence still grows', async () => {
        const s = store;
        await s.acquireLease('ca-duties', 'a', 30_000, t0);
        await s.releaseLease('ca-duties', 'b'); // not the holder: no effect
        expect(await s.acquireLease('ca-duties', 'b', 30_000, at(1)).then((l) => l?.fence ?? null)).toBeNull();
        await s.releaseLease('ca-duties', 'a');
        expect((await s.acquireLease('ca-duties', 'b', 30_000, at(2)))?.fence).toBe(2);
      });

      it('leases of different names are independent', async () => {
        const s = store;
        expect((await s.acquireLease('one', 'a', 30_000, t0))?.fence).toBe(1);
        expect((await s.acquireLease('two', 'b', 30_000, t0))?.fence).toBe(1);
      });

      it('two store instances on one file racing for a free lease: exactly one wins', async () => {
        const stores = [store, await other(), await other()];
        for (let round = 0; round < 5; round++) {
          const now = at(round * 60_000); // every round starts after the previous lease expired
          const got = await Promise.all(stores.map((s, i) => s.acquireLease('ca-duties', `holder-${i}`, 30_000, now)));
          const winners = got.filter((g) => g !== null);
          expect(winners).toHaveLength(1);
          expect(winners[0]!.fence).toBe(round + 1);
        }
      });
    });

    describe('SCEP transactions (claim / settle / hold / get)', () => {
      const t0 = new Date('2030-01-01T00:00:00Z');
      const at = (ms: number): Date => new Date(t0.getTime() + ms);
      const rec = (key: string, requestSha256: string, expiresAt = at(60_000)) => ({ key, requestSha256, expiresAt });

      it('the first claim stores the request; a second claim of the key returns the first, whatever it asks', async () => {
        expect(await store.claimScepTransaction(rec('tx-1', 'aa'), t0)).toEqual({ key: 'tx-1', requestSha256: 'aa', outcome: null, pending: null, expiresAt: at(60_000) });
        expect(await store.claimScepTransaction(rec('tx-1', 'bb'), at(1000))).toEqual({ key: 'tx-1', requestSha256: 'aa', outcome: null, pending: null, expiresAt: at(60_000) });
        expect((await store.claimScepTransaction(rec('tx-2', 'bb'), t0)).requestSha256).toBe('bb');
      });

      it('settle records the outcome once, only for the request claimed; later claims see it', async () => {
        await store.claimScepTransaction(rec('tx-1', 'aa'), t0);
        await store.settleScepTransaction('tx-1', 'bb', { certSerial: '99' }); // another request: no effect
        expect((await store.claimScepTransaction(rec('tx-1', 'aa'), t0)).outcome).toBeNull();
        await store.settleScepTransaction('tx-1', 'aa', { certSerial: '0a' });
        await store.settleScepTransaction('tx-1', 'aa', { errorCode: 'forbidden', errorMessage: 'late' }); // already settled: no effect
        expect((await store.claimScepTransaction(rec('tx-1', 'aa'), at(1))).outcome).toEqual({ certSerial: '0a' });
        await store.claimScepTransaction(rec('tx-2', 'cc'), t0);
        await store.settleScepTransaction('tx-2', 'cc', { errorCode: 'unauthenticated', errorMessage: 'authentication failed' });
        expect((await store.claimScepTransaction(rec('tx-2', 'cc'), t0)).outcome).toEqual({ errorCode: 'unauthenticated', errorMessage: 'authentication failed' });
      });

      it('an expired transaction is replaced by the next claim', async () => {
        await store.claimScepTransaction(rec('tx-1', 'aa'), t0);
        await store.settleScepTransaction('tx-1', 'aa', { certSerial: '0a' });
        expect(await store.claimScepTransaction(rec('tx-1', 'bb', at(120_000)), at(60_000))).toEqual({ key: 'tx-1', requestSha256: 'bb', outcome: null, pending: null, expiresAt: at(120_000) });
      });

      it('hold marks the claimed, unsettled request pending and keeps it longer; get reads it; settle keeps what hold wrote', async () => {
        const held = { deviceId: 'dev-1', csrSha256: 'c5', secretId: 7 };
        await store.claimScepTransaction(rec('tx-h', 'aa'), t0);
        await store.holdScepTransaction('tx-h', 'bb', held, at(600_000), t0); // another request: no effect
        expect(await store.getScepTransaction('tx-h', t0)).toEqual({ key: 'tx-h', requestSha256: 'aa', outcome: null, pending: null, expiresAt: at(60_000) });
        await store.holdScepTransaction('tx-h', 'aa', held, at(600_000), t0);
        expect(await store.getScepTransaction('tx-h', at(300_000))).toEqual({ key: 'tx-h', requestSha256: 'aa', outcome: null, pending: held, expiresAt: at(600_000) });
        // a claim while held returns the held record (the PKCSReq sent again finds its transaction)
        expect((await store.claimScepTransaction(rec('tx-h', 'aa', at(400_000)), at(300_000))).pending).toEqual(held);
        await store.settleScepTransaction('tx-h', 'aa', { certSerial: '0b' });
        expect(await store.getScepTransaction('tx-h', at(300_000))).toEqual({ key: 'tx-h', requestSha256: 'aa', outcome: { certSerial: '0b' }, pending: held, expiresAt: at(600_000) });
        // a settled record is not held again, and nothing is held once expired
        await store.holdScepTransaction('tx-h', 'aa', { ...held, secretId: 8 }, at(900_000), at(300_000));
        expect((await store.getScepTransaction('tx-h', at(300_000)))?.pending).toEqual(held);
        expect(await store.getScepTransaction('tx-h', at(600_000))).toBeNull();
        await store.claimScepTransaction(rec('tx-e', 'aa'), t0);
        await store.holdScepTransaction('tx-e', 'aa', held, at(600_000), at(60_000));
        expect(await store.getScepTransaction('tx-e', at(60_000))).toBeNull();
        expect(await store.getScepTransaction('tx-none', t0)).toBeNull();
      });

      it('two store clients claiming one key at once: both get the same record', async () => {
        const stores = [store, sut.another ? await sut.another() : store];
        const got = await Promise.all(stores.map((s, i) => s.claimScepTransaction(rec('race', `req-${i}`), t0)));
        expect(got[0]).toEqual(got[1]);
      });
    });

    (opts.attestation ? describe : () => undefined)('TPM attestation (nonces, AK bindings)', () => {
      const att = (): Store & AttestationStore => {
        if (!isAttestationStore(store)) throw new Error('the store under test is not an AttestationStore');
        return store;
      };
      const h = (s: string): string => crypto.createHash('sha256').update(s).digest('hex');
      const challenge = (akName: string, deviceId: string, o: { ek?: string; expiresAt?: Date; secret?: string } = {}) => ({
        akName,
        deviceId,
        akPublic: Buffer.from(`public of ${akName}`),
        ekCertSha256: h(o.ek ?? 'ek-1'),
        ekManufacturer: 'id:00001014',
        ekModel: 'swtpm',
        challengeSha256: h(o.secret ?? 'secret'),
        challengeExpiresAt: o.expiresAt ?? new Date(Date.now() + 60_000),
      });

      it('a nonce works once, only for its device, only before it expires; old ones beyond the cap are dropped', async () => {
        const now = new Date();
        await att().saveNonce({ deviceId: 'd1', nonceSha256: h('n1'), expiresAt: new Date(now.getTime() + 60_000) }, now, 4);
        await att().saveNonce({ deviceId: 'd1', nonceSha256: h('n2'), expiresAt: new Date(now.getTime() + 1_000) }, now, 4);
        expect(await att().consumeNonce('d2', h('n1'), now)).toBe(false);
        expect(await att().consumeNonce('d1', h('n1'), now)).toBe(true);
        expect(await att().consumeNonce('d1', h('n1'), now)).toBe(false);
        expect(await att().consumeNonce('d1', h('n2'), new Date(now.getTime() + 1_000))).toBe(false);
        for (let i = 0; i < 3; i++) await att().saveNonce({ deviceId: 'd1', nonceSha256: h(`m${i}`), expiresAt: new Date(now.getTime() + 60_000) }, new Date(now.getTime() + i), 2);
        expect(await att().consumeNonce('d1', h('m0'), now)).toBe(false);
        expect(await att().consumeNonce('d1', h('m2'), now)).toBe(true);
      });

      it('clients racing for one nonce (several nodes or workers): it is consumed exactly once', async () => {
        const now = new Date();
        const clients: Store[] = [store];
        for (let i = 0; i < 3; i++) clients.push(sut.another ? await sut.another() : store);
        for (let round = 0; round < 5; round++) {
          await att().saveNonce({ deviceId: 'd1', nonceSha256: h(`race${round}`), expiresAt: new Date(now.getTime() + 60_000) }, now, 4);
          const got = await Promise.all(clients.flatMap((c) => [0, 1].map(() => (c as Store & AttestationStore).consumeNonce('d1', h(`race${round}`), now))));
          expect(got.filter(Boolean)).toHaveLength(1);
        }
      });

      it('an AK becomes active only with the right credential before the challenge expires, once, with an audit record', async () => {
        await addDevice('d1');
        const now = new Date();
        // the challenge expires 60 s after `now` exactly, so the activation at now + 60 s is past it
        await att().saveAkChallenge(challenge('000bak1', 'd1', { expiresAt: new Date(now.getTime() + 60_000) }), now, audit('tpm.ak.challenge', 'd1'));
        expect((await att().getAk('000bak1'))?.status).toBe('pending');
        expect(await att().activateAk('000bak1', 'd1', h('wrong'), now, audit('tpm.ak.activate', 'd1'))).toBeNull();
        expect(await att().activateAk('000bak1', 'd2', h('secret'), now, audit('tpm.ak.activate', 'd2'))).toBeNull();
        expect(await att().activateAk('000bak1', 'd1', h('secret'), new Date(now.getTime() + 60_000), audit('tpm.ak.activate', 'd1'))).toBeNull();
        const active = await att().activateAk('000bak1', 'd1', h('secret'), now, audit('tpm.ak.activate', 'd1', { ak: '000bak1' }));
        expect(active).toMatchObject({ status: 'active', deviceId: 'd1', akPublic: Buffer.from('public of 000bak1') });
        // the same activation again (its reply was lost): the active binding, unchanged, not audited twice;
        // after the challenge expired, with another credential or for another device: nothing
        expect(await att().activateAk('000bak1', 'd1', h('secret'), new Date(now.getTime() + 1_000), audit('tpm.ak.activate', 'd1'))).toEqual(active);
        expect(await att().activateAk('000bak1', 'd1', h('secret'), new Date(now.getTime() + 60_000), audit('tpm.ak.activate', 'd1'))).toBeNull();
        expect(await att().activateAk('000bak1', 'd1', h('wrong'), now, audit('tpm.ak.activate', 'd1'))).toBeNull();
        expect(await att().activateAk('000bak1', 'd2', h('secret'), now, audit('tpm.ak.activate', 'd2'))).toBeNull();
        expect((await allAudit()).filter((r) => r.type === 'tpm.ak.activate').map((r) => r.data)).toEqual([{ ak: '000bak1' }]);
        await expect(att().saveAkChallenge(challenge('000bak1', 'd2'), now, audit('tpm.ak.challenge', 'd2'))).rejects.toMatchObject({ code: 'conflict' });
        expect((await att().aksOfDevice('d1')).map((a) => a.akName)).toEqual(['000bak1']);
      });

      it("an AK's last clockInfo: null until set, then changed only from the value read (compare-and-set, racing clients: one wins), a UINT64 clock exact", async () => {
        const now = new Date();
        await att().saveAkChallenge(challenge('000bak1', 'd1'), now, audit('tpm.ak.challenge', 'd1'));
        await att().activateAk('000bak1', 'd1', h('secret'), now, audit('tpm.ak.activate', 'd1'));
        expect((await att().getAk('000bak1'))?.lastClock).toBeNull();
        const c1 = { clock: 1790n, resetCount: 2, restartCount: 0 };
        const c2 = { clock: 0xfffffffffffffff0n, resetCount: 3, restartCount: 1 };
        expect(await att().setAkClock('000bak1', c1, c2)).toBe(false); // not what is stored (null)
        expect(await att().setAkClock('000bak9', null, c1)).toBe(false); // no such binding
        expect(await att().setAkClock('000bak1', null, c1)).toBe(true);
        expect(await att().setAkClock('000bak1', null, c2)).toBe(false);
        expect((await att().getAk('000bak1'))?.lastClock).toEqual(c1);
        const clients: Store[] = [store];
        for (let i = 0; i < 3; i++) clients.push(sut.another ? await sut.another() : store);
        const got = await Promise.all(clients.map((c, i) => (c as Store & AttestationStore).setAkClock('000bak1', c1, { ...c2, restartCount: i })));
        expect(got.filter(Boolean)).toHaveLength(1);
        const won = got.indexOf(true);
        expect((await att().aksOfDevice('d1')).map((a) => a.lastClock)).toEqual([{ ...c2, restartCount: won }]);
      });

      it("an active AK's certificate is claimed by one caller of many at once (several nodes), then the serial answers everyone", async () => {
        const now = new Date();
        const until = new Date(now.getTime() + 30_000);
        await att().saveAkChallenge(challenge('000bak1', 'd1'), now, audit('tpm.ak.challenge', 'd1'));
        expect(await att().claimAkCertificate('000bak1', 'd1', until, now)).toBeNull(); // still pending
        await att().activateAk('000bak1', 'd1', h('secret'), now, audit('tpm.ak.activate', 'd1'));
        expect(await att().claimAkCertificate('000bak1', 'd2', until, now)).toBeNull(); // another device's
        const clients: Store[] = [store];
        for (let i = 0; i < 3; i++) clients.push(sut.another ? await sut.another() : store);
        const got = await Promise.all(clients.flatMap((c) => [0, 1].map(() => (c as Store & AttestationStore).claimAkCertificate('000bak1', 'd1', until, now))));
        expect(got.filter((g) => g?.state === 'claimed')).toHaveLength(1);
        expect(got.filter((g) => g?.state === 'busy')).toHaveLength(got.length - 1);
        // a holder that failed frees the claim; one that died frees it when it expires
        await att().settleAkCertificate('000bak1', null);
        expect(await att().claimAkCertificate('000bak1', 'd1', until, now)).toEqual({ state: 'claimed' });
        expect(await att().claimAkCertificate('000bak1', 'd1', until, new Date(until.getTime() - 1))).toEqual({ state: 'busy' });
        expect(await att().claimAkCertificate('000bak1', 'd1', new Date(until.getTime() + 30_000), until)).toEqual({ state: 'claimed' });
        await att().settleAkCertificate('000bak1', '0a01');
        await att().settleAkCertificate('000bak1', '0a02'); // the first serial recorded stays
        expect(await att().claimAkCertificate('000bak1', 'd1', until, now)).toEqual({ state: 'issued', serial: '0a01' });
        expect((await att().getAk('000bak1'))?.akCertSerial).toBe('0a01');
      });

      it('retiring revokes the AK bindings and blocks the EK from registering again; a transfer (no block) does not', async () => {
        const now = new Date();
        await att().saveAkChallenge(challenge('000bak1', 'd1', { ek: 'ek-A' }), now, audit('tpm.ak.challenge', 'd1'));
        await att().activateAk('000bak1', 'd1', h('secret'), now, audit('tpm.ak.activate', 'd1'));
        await att().saveAkChallenge(challenge('000bak2', 'd2', { ek: 'ek-B' }), now, audit('tpm.ak.challenge', 'd2'));
        expect(await att().revokeAks('d2', false, now, audit('tpm.ak.revoke', 'd2'))).toBe(1);
        expect(await att().revokeAks('d1', true, now, audit('tpm.ak.revoke', 'd1'))).toBe(1);
        expect((await att().getAk('000bak1'))?.status).toBe('revoked');
        expect(await att().activateAk('000bak1', 'd1', h('secret'), now, audit('tpm.ak.activate', 'd1'))).toBeNull(); // no repeat once revoked
        await expect(att().saveAkChallenge(challenge('000bak9', 'd9', { ek: 'ek-A' }), now, audit('tpm.ak.challenge', 'd9'))).rejects.toMatchObject({ code: 'forbidden' });
        await expect(att().saveAkChallenge(challenge('000bak8', 'd2', { ek: 'ek-B' }), now, audit('tpm.ak.challenge', 'd2'))).resolves.toMatchObject({ status: 'pending' });
      });
    });

    describe('CA state (getCaState / saveCaState)', () => {
      const other = async (): Promise<Store> => (sut.another ? sut.another() : store);
      it('creates only once, then changes only from the version read (compare-and-set), visible to another instance', async () => {
        const a = store;
        const b = await other();
        expect(await a.getCaState('hierarchy')).toBeNull();
        expect(await a.saveCaState('hierarchy', { n: 1 }, 0)).toBe(1);
        await expect(b.saveCaState('hierarchy', { n: 2 }, 0)).rejects.toMatchObject({ code: 'conflict' });
        expect(await b.getCaState('hierarchy')).toMatchObject({ value: { n: 1 }, version: 1 });
        expect(await b.saveCaState('hierarchy', { n: 2 }, 1)).toBe(2);
        await expect(a.saveCaState('hierarchy', { n: 3 }, 1)).rejects.toMatchObject({ code: 'conflict' });
        expect(await a.getCaState('hierarchy')).toMatchObject({ value: { n: 2 }, version: 2 });
      });

      it('appends the audit record in the same transaction, and not at all when the write is refused', async () => {
        const s = store;
        await s.saveCaState('ocsp-responder', { x: 1 }, 0, { type: 'ca.state.saved', actor: 'test', subject: 'ocsp-responder', data: {} });
        await expect(s.saveCaState('ocsp-responder', { x: 2 }, 0, { type: 'ca.state.saved', actor: 'test', subject: 'ocsp-responder', data: { refused: true } })).rejects.toMatchObject({
          code: 'conflict',
        });
        const audit = (await s.listAudit({ subject: 'ocsp-responder' })).items;
        expect(audit.map((r) => r.data)).toEqual([{}]);
      });

      it('firmware group keys (CA state records, ra/firmware-group-keys.ts): two releases to one group at once, from two instances, use one key; a member gone makes a new one', async () => {
        const kek = crypto.randomBytes(32);
        const a = new FirmwareGroupKeys(store, () => kek);
        const b = new FirmwareGroupKeys(await other(), () => kek);
        const [x, y] = await Promise.all([a.keyForRelease('owner:acme', ['d1', 'd2'], 'test'), b.keyForRelease('owner:acme', ['d2', 'd1'], 'test')]);
        expect(x.key).toEqual(y.key);
        expect([x.created, y.created].filter(Boolean)).toEqual([true]);
        expect((await b.keyForRelease('owner:acme', ['d1', 'd2', 'd3'], 'test')).key).toEqual(x.key);
        const after = await a.keyForRelease('owner:acme', ['d1', 'd3'], 'test');
        expect(after.created).toBe(true);
        expect(after.key.id).not.toBe(x.key.id);
        expect((await b.keyForRelease('owner:acme', ['d1', 'd3'], 'test')).key).toEqual(after.key);
        const records = (await store.listAudit({ subject: 'firmware-group:owner:acme' })).items.map((r) => r.type);
        expect(records.filter((t) => t === 'firmware.group-key.created').length).toBeGreaterThanOrEqual(2);
        expect(JSON.stringify(await store.getCaState(`firmware-group-key:${after.key.id}`))).not.toContain(after.key.key.toString('hex'));
        // the members are kept beside the record, not in it
        expect((await store.getCaState(`firmware-group-key:${after.key.id}`))?.value).not.toHaveProperty('members');
        expect(await store.firmwareGroupKeyMembership(after.key.id, [])).toEqual({ members: 2, newcomers: [] });
        expect(await store.isFirmwareGroupKeyMember(x.key.id, 'd2')).toBe(true);
        expect(await store.isFirmwareGroupKeyMember(after.key.id, 'd2')).toBe(false);
      });

      it('firmware group keys written by the previous version (members inside the record): kept while nobody left and moved into the member store; replaced once one left', async () => {
        const kek = crypto.randomBytes(32);
        // the previous version's writer: the same records, the members listed inside, no member entries
        const previous = new FirmwareGroupKeys(
          Object.assign(Object.create(store) as Store, {
            saveFirmwareGroupKey: (keyId: string, value: object, ifVersion: number, add: readonly string[], a: AuditInput) =>
              store.saveCaState(`firmware-group-key:${keyId}`, { ...value, members: [...add].sort() }, ifVersion, a),
          }),
          () => kek,
        );
        const now = new FirmwareGroupKeys(await other(), () => kek);
        const old = await previous.keyForRelease('owner:acme', ['d2', 'd1'], 'test');
        expect((await store.getCaState(`firmware-group-key:${old.key.id}`))?.value).toMatchObject({ members: ['d1', 'd2'] });
        expect(await store.isFirmwareGroupKeyMember(old.key.id, 'd1')).toBe(false);
        const kept = await now.keyForRelease('owner:acme', ['d1', 'd2', 'd3'], 'test');
        expect([kept.created, kept.key]).toEqual([false, old.key]);
        expect((await store.getCaState(`firmware-group-key:${old.key.id}`))?.value).not.toHaveProperty('members');
        expect(await store.firmwareGroupKeyMembership(old.key.id, ['d1', 'd2', 'd3'])).toEqual({ members: 3, newcomers: [] });
        const gone = await previous.keyForRelease('owner:globex', ['g1', 'g2'], 'test');
        const next = await now.keyForRelease('owner:globex', ['g1'], 'test');
        expect(next.created).toBe(true);
        const created = (await store.listAudit({ subject: 'firmware-group:owner:globex' })).items.filter((r) => r.type === 'firmware.group-key.created');
        expect(created.map((r) => r.data)).toEqual([
          { keyId: gone.key.id, members: 2, replaces: null, left: 0 },
          { keyId: next.key.id, members: 1, replaces: gone.key.id, left: 1 },
        ]);
      });

      it('firmware group key members (saveFirmwareGroupKey / isFirmwareGroupKeyMember / firmwareGroupKeyMembership): written with the record and its audit, compare-and-set, nothing of a refused write', async () => {
        const id = 'cd'.repeat(16);
        const b = await other();
        const fleet = Array.from({ length: 2500 }, (_, i) => `dev-${String(i).padStart(5, '0')}`);
        expect(await store.firmwareGroupKeyMembership(id, ['d1'])).toEqual({ members: 0, newcomers: ['d1'] });
        expect(await store.saveFirmwareGroupKey(id, { id, n: 1 }, 0, fleet, audit('firmware.group-key.created', 'firmware-group:fleet', { keyId: id }))).toBe(1);
        expect(await b.getCaState(`firmware-group-key:${id}`)).toMatchObject({ value: { id, n: 1 }, version: 1 });
        expect(await b.isFirmwareGroupKeyMember(id, 'dev-02499')).toBe(true);
        expect(await b.isFirmwareGroupKeyMember(id, 'dev-2499')).toBe(false);
        expect(await b.isFirmwareGroupKeyMember('ef'.repeat(16), 'dev-00000')).toBe(false);
        // candidates in the caller's order; the newcomers keep it
        expect(await b.firmwareGroupKeyMembership(id, ['zz', 'dev-00007', 'aa', ...fleet.slice(100)])).toEqual({ members: 2500, newcomers: ['zz', 'aa'] });
        // a write from a version that moved on adds nothing and audits nothing
        await expect(b.saveFirmwareGroupKey(id, { id, n: 2 }, 0, ['late'], audit('firmware.group-key.members', 'firmware-group:fleet', { refused: true }))).rejects.toMatchObject({
          code: 'conflict',
        });
        expect(await store.isFirmwareGroupKeyMember(id, 'late')).toBe(false);
        expect(await b.saveFirmwareGroupKey(id, { id, n: 2 }, 1, ['late', 'dev-00001'], audit('firmware.group-key.members', 'firmware-group:fleet', { added: 1 }))).toBe(2);
        expect(await store.firmwareGroupKeyMembership(id, ['late'])).toEqual({ members: 2501, newcomers: [] });
        expect((await store.getCaState(`firmware-group-key:${id}`))?.value).toEqual({ id, n: 2 });
        expect((await store.listAudit({ subject: 'firmware-group:fleet' })).items.map((r) => r.data)).toEqual([{ keyId: id }, { added: 1 }]);
        expect((await verifyAuditChain(store)).ok).toBe(true);
      });
    });

    describe('firmware releases (saveFirmwareRelease / getFirmwareRelease / openFirmwareRelease / listFirmwareReleases)', () => {
      const release = (name: string, version: number, recipients: string[] | null = null) => ({
        name,
        version,
        sha256: 'ab'.repeat(32),
        signers: [{ name: 'alice', role: 'developer', serial: '01', signingTime: '2026-01-01T00:00:00.000Z' }],
        recipients,
        releasedAt: new Date('2026-01-02T00:00:00Z'),
      });
      const save = (name: string, version: number, recipients: string[] | null = null, der: Buffer | ByteSource = Buffer.from(`${name}@${version}`), on: Store = store) =>
        on.saveFirmwareRelease(release(name, version, recipients), Buffer.isBuffer(der) ? bufferSource(der) : der, audit('firmware.released', `firmware:${name}`, { version }));
      const bytesOf = async (s: Store, name: string, version: number): Promise<Buffer | null> => {
        const r = await s.openFirmwareRelease(name, version);
        return r ? readReleaseBytes(r) : null;
      };
      /** piecewise: a source handing its bytes out in pieces of `piece` bytes (as a file source does), never whole */
      const piecewise = (b: Buffer, piece: number): ByteSource => ({
        length: b.length,
        read: (offset, length) => Buffer.from(b.subarray(offset, offset + length)),
        chunks: function* (offset, length) {
          for (let at = offset; at < offset + length; at += piece) yield Buffer.from(b.subarray(at, Math.min(offset + length, at + piece)));
        },
      });
      /** sha: a large Buffer compared by its SHA-256 (jest compares Buffers byte by byte, slowly) */
      const sha = (b: Buffer | null): string => (b === null ? 'null' : crypto.createHash('sha256').update(b).digest('hex'));
      const big = (n: number, seed: string): Buffer => {
        const out = Buffer.alloc(n);
        for (let at = 0, i = 0; at < n; at += 32, i++) crypto.createHash('sha256').update(`${seed}/${i}`).digest().copy(out, at);
        return out;
      };

      it('keeps each version with its bytes and recipients, visible to another instance', async () => {
        await save('fw', 1);
        await save('fw', 2, ['dev-1', 'dev-2'], Buffer.alloc(70_000, 7));
        const other = sut.another ? await sut.another() : store;
        expect(await other.getFirmwareRelease('fw', 2)).toEqual(release('fw', 2, ['dev-1', 'dev-2']));
        expect(await bytesOf(other, 'fw', 2)).toEqual(Buffer.alloc(70_000, 7));
        expect(await other.getFirmwareRelease('fw', 1)).toMatchObject({ recipients: null });
        expect(await other.getFirmwareRelease('fw', 3)).toBeNull();
        expect(await other.openFirmwareRelease('fw', 3)).toBeNull();
        expect(await other.getFirmwareRelease('fw-other', 1)).toBeNull();
      });

      it('refuses a version below the newest of the name, writing nothing and auditing nothing; the same version replaces', async () => {
        await save('fw', 5);
        expect(await codeOf(save('fw', 4))).toBe('conflict');
        expect(await store.getFirmwareRelease('fw', 4)).toBeNull();
        await save('fw', 5, ['dev-9'], Buffer.from('again'));
        expect(await store.getFirmwareRelease('fw', 5)).toMatchObject({ recipients: ['dev-9'] });
        expect(await bytesOf(store, 'fw', 5)).toEqual(Buffer.from('again'));
        await save('other', 1); // another name has its own versions
        expect((await store.listAudit({ subject: 'firmware:fw' })).items.map((r) => r.data)).toEqual([{ version: 5 }, { version: 5 }]);
      });

      it("keeps a release's target hardware (type, serial) through a get, a list and a re-release; a release without it reads back without it", async () => {
        const hardware = [{ type: '1.3.6.1.4.1.99.1' }, { type: '1.3.6.1.4.1.99.2', serial: 'dev-7' }];
        await save('fw', 1);
        await store.saveFirmwareRelease({ ...release('fw', 2), hardware }, bufferSource(Buffer.from('fw@2')), audit('firmware.released', 'firmware:fw', { version: 2 }));
        const other = sut.another ? await sut.another() : store;
        expect(await other.getFirmwareRelease('fw', 2)).toEqual({ ...release('fw', 2), hardware });
        expect((await other.listFirmwareReleases({ name: 'fw' })).items.map((r) => r.hardware)).toEqual([hardware, undefined]);
        expect(await other.getFirmwareRelease('fw', 1)).toEqual(release('fw', 1));
        // a re-release of the same version for any hardware drops the targets
        await store.saveFirmwareRelease({ ...release('fw', 2), hardware: [] }, bufferSource(Buffer.from('fw@2')), audit('firmware.released', 'firmware:fw', { version: 2 }));
        expect((await other.getFirmwareRelease('fw', 2))?.hardware).toEqual([]);
      });

      it('keeps a multi-MiB release in chunks: the same bytes back, piece by piece, to another instance; an empty release too', async () => {
        const image = big(5 * RELEASE_CHUNK_BYTES + 3, 'large');
        await save('fw', 1, null, piecewise(image, 333_333)); // pieces that do not fall on chunk bounds
        await save('fw', 2, null, image); // one piece of 5 MiB
        const other = sut.another ? await sut.another() : store;
        for (const v of [1, 2]) {
          const r = await other.openFirmwareRelease('fw', v);
          expect(r?.length).toBe(image.length);
          const pieces: number[] = [];
          const h = crypto.createHash('sha256');
          for await (const c of r!.chunks()) {
            pieces.push(c.length);
            h.update(c);
          }
          expect(Math.max(...pieces)).toBeLessThanOrEqual(RELEASE_CHUNK_BYTES);
          expect(h.digest('hex')).toBe(sha(image));
        }
        await save('empty', 1, null, Buffer.alloc(0));
        expect(await bytesOf(other, 'empty', 1)).toEqual(Buffer.alloc(0));
        expect(await sut.strayReleaseChunks()).toBe(0);
      });

      it('a reader that stops after the first chunk leaves the release intact for the next one', async () => {
        const image = big(3 * RELEASE_CHUNK_BYTES, 'stop');
        await save('fw', 1, null, image);
        const r = await store.openFirmwareRelease('fw', 1);
        for await (const c of r!.chunks()) {
          expect(sha(c)).toBe(sha(image.subarray(0, RELEASE_CHUNK_BYTES)));
          break;
        }
        expect(sha(await bytesOf(store, 'fw', 1))).toBe(sha(image));
      });

      it('a replace of the same version serves the new bytes and removes the old chunks; a reader of the old ones ends with conflict, never mixed bytes', async () => {
        const first = big(3 * RELEASE_CHUNK_BYTES + 10, 'first');
        const second = big(2 * RELEASE_CHUNK_BYTES + 1, 'second');
        await save('fw', 7, null, first);
        const reading = await store.openFirmwareRelease('fw', 7);
        const it = reading!.chunks()[Symbol.asyncIterator]();
        expect(sha((await it.next()).value as Buffer)).toBe(sha(first.subarray(0, RELEASE_CHUNK_BYTES)));
        await save('fw', 7, ['dev-1'], second);
        const rest = async (): Promise<void> => {
          while (!(await it.next()).done);
        };
        expect(await codeOf(rest())).toBe('conflict');
        const other = sut.another ? await sut.another() : store;
        expect(sha(await bytesOf(other, 'fw', 7))).toBe(sha(second));
        expect(await other.getFirmwareRelease('fw', 7)).toEqual(release('fw', 7, ['dev-1']));
        expect(await sut.strayReleaseChunks()).toBe(0);
      });

      it('a version conflict found at the end of a large save writes nothing: the release it would replace keeps its chunks, no chunk is left behind', async () => {
        // a re-release of 5 still writing its chunks while version 6 is released from another instance: the
        // re-release's final check finds 6 and is refused. Version 6 is started once the first chunk of 5 is
        // written, and 5 has eleven more to write, so 6 is nearly always first; when the machine lets 5 finish
        // first, both are kept (5 then 6), which is checked too, and the race is run again under another name
        const other = sut.another ? await sut.another() : store;
        let conflicted: string | undefined;
        for (let attempt = 0; attempt < 3 && conflicted === undefined; attempt++) {
          const name = `fw${attempt}`;
          const kept = big(2 * RELEASE_CHUNK_BYTES + 5, 'kept');
          await save(name, 5, null, kept);
          const image = big(12 * RELEASE_CHUNK_BYTES, 'slow');
          let fast: Promise<ErrorCode | 'resolved'> | undefined;
          const slowSource: ByteSource = {
            length: image.length,
            read: (offset, length) => Buffer.from(image.subarray(offset, offset + length)),
            chunks: function* (offset, length) {
              for (let at = offset; at < offset + length; at += RELEASE_CHUNK_BYTES) {
                if (at > offset && fast === undefined) fast = codeOf(save(name, 6, null, Buffer.from('six'), other));
                yield image.subarray(at, Math.min(offset + length, at + RELEASE_CHUNK_BYTES));
              }
            },
          };
          const slow = await codeOf(save(name, 5, ['dev-9'], slowSource));
          expect(fast).toBeDefined();
          expect(await fast).toBe('resolved');
          expect(await bytesOf(store, name, 6)).toEqual(Buffer.from('six'));
          if (slow === 'conflict') {
            conflicted = name;
            expect(sha(await bytesOf(store, name, 5))).toBe(sha(kept));
            expect(await store.getFirmwareRelease(name, 5)).toEqual(release(name, 5));
          } else {
            expect(slow).toBe('resolved');
            expect(sha(await bytesOf(store, name, 5))).toBe(sha(image));
          }
          expect(await sut.strayReleaseChunks()).toBe(0);
        }
        expect(conflicted).toBeDefined();
        const name = conflicted as string;
        // refused up front too: a version below the newest writes no chunk
        expect(await codeOf(save(name, 4, null, big(RELEASE_CHUNK_BYTES + 1, 'four')))).toBe('conflict');
        expect(await sut.strayReleaseChunks()).toBe(0);
        expect((await store.listAudit({ subject: `firmware:${name}` })).items.map((r) => r.data)).toEqual([{ version: 5 }, { version: 6 }]);
      });

      it('serves a release recorded as one value by an earlier version, and replaces it with chunks', async () => {
        const old = big(RELEASE_CHUNK_BYTES + 99, 'old');
        await sut.writeOldRelease(release('fw', 3), old);
        expect(await store.getFirmwareRelease('fw', 3)).toEqual(release('fw', 3));
        const r = await store.openFirmwareRelease('fw', 3);
        expect(r?.length).toBe(old.length);
        const pieces: Buffer[] = [];
        for await (const c of r!.chunks()) pieces.push(c);
        expect(pieces.map((c) => c.length)).toEqual([RELEASE_CHUNK_BYTES, 99]);
        expect(sha(Buffer.concat(pieces))).toBe(sha(old));
        expect((await store.listFirmwareReleases({ name: 'fw' })).items).toEqual([release('fw', 3)]);
        await save('fw', 3, null, Buffer.from('chunked now'));
        expect(await bytesOf(store, 'fw', 3)).toEqual(Buffer.from('chunked now'));
      });

      it('lists by name, newest version first, page by page without losing or repeating a row', async () => {
        for (const v of [1, 2, 10, 11]) await save('a', v);
        for (const v of [3, 100]) await save('a-b', v);
        await save('b', 0);
        const all = await walk((after) => store.listFirmwareReleases({ after, limit: 2 }));
        expect(all.items.map((r) => `${r.name}@${r.version}`)).toEqual(['a@11', 'a@10', 'a@2', 'a@1', 'a-b@100', 'a-b@3', 'b@0']);
        const named = await walk((after) => store.listFirmwareReleases({ name: 'a', after, limit: 3 }));
        expect(named.items.map((r) => r.version)).toEqual([11, 10, 2, 1]);
        expect((await store.listFirmwareReleases({ name: 'zzz' })).items).toEqual([]);
      });
    });

    describe('firmware receipts (recordFirmwareReceipt / getFirmwareReceipt / listFirmwareReceipts)', () => {
      const at = new Date('2026-03-01T00:00:00Z');
      const receipt = (deviceId: string, version: number, outcome: 'loaded' | 'error' = 'loaded', sha = `${deviceId}-${version}-${outcome}`) => ({
        name: 'fw',
        version,
        deviceId,
        outcome,
        ...(outcome === 'error' ? { errorCode: 23, vendorErrorCode: 7 } : {}),
        hwType: '1.3.6.1.4.1.99999.1',
        sha256: sha,
        at,
      });
      const record = (r: ReturnType<typeof receipt>) => store.recordFirmwareReceipt(r, audit('firmware.receipt', `device:${r.deviceId}`, { version: r.version, outcome: r.outcome }));

      it('records the version a device loaded, visible to another instance; the same receipt again is a repeat that audits nothing', async () => {
        expect((await record(receipt('dev-1', 3))).outcome).toBe('recorded');
        const other = sut.another ? await sut.another() : store;
        expect(await other.getFirmwareReceipt('fw', 'dev-1')).toEqual({
          name: 'fw',
          deviceId: 'dev-1',
          hwType: '1.3.6.1.4.1.99999.1',
          running: { version: 3, at },
          error: null,
          receiptSha256: 'dev-1-3-loaded',
          updatedAt: at,
        });
        expect((await record(receipt('dev-1', 3))).outcome).toBe('repeat');
        expect((await store.listAudit({ subject: 'device:dev-1' })).items.map((r) => r.data)).toEqual([{ version: 3, outcome: 'loaded' }]);
        expect(await store.getFirmwareReceipt('fw', 'dev-2')).toBeNull();
        expect(await store.getFirmwareReceipt('other', 'dev-1')).toBeNull();
      });

      it('refuses a load receipt below the running version (a replay), writing and auditing nothing', async () => {
        await record(receipt('dev-1', 5));
        expect(await codeOf(record(receipt('dev-1', 4)))).toBe('conflict');
        expect((await store.getFirmwareReceipt('fw', 'dev-1'))?.running?.version).toBe(5);
        expect((await store.listAudit({ subject: 'device:dev-1' })).items).toHaveLength(1);
      });

      it('keeps a load error above the running version until that version (or a later one) loads', async () => {
        await record(receipt('dev-1', 1));
        await record(receipt('dev-1', 2, 'error'));
        expect(await store.getFirmwareReceipt('fw', 'dev-1')).toMatchObject({ running: { version: 1 }, error: { version: 2, code: 23, vendorCode: 7, at } });
        await record(receipt('dev-1', 1, 'error', 'again-1')); // an error about a version it runs is no load error
        expect((await store.getFirmwareReceipt('fw', 'dev-1'))?.error?.version).toBe(2);
        await record(receipt('dev-1', 2));
        expect(await store.getFirmwareReceipt('fw', 'dev-1')).toMatchObject({ running: { version: 2 }, error: null });
        await record(receipt('dev-2', 9, 'error')); // before any receipt
        expect(await store.getFirmwareReceipt('fw', 'dev-2')).toMatchObject({ running: null, error: { version: 9 } });
      });

      it("lists one name's devices in order, page by page without losing or repeating a row", async () => {
        for (const d of ['d-3', 'd-1', 'd-10', 'd-2', 'd-20']) await record(receipt(d, 1));
        await store.recordFirmwareReceipt({ ...receipt('d-1', 1), name: 'other' }, audit('firmware.receipt', 'device:d-1'));
        const all = await walk((after) => store.listFirmwareReceipts({ name: 'fw', after, limit: 2 }));
        expect(all.items.map((r) => r.deviceId)).toEqual(['d-1', 'd-10', 'd-2', 'd-20', 'd-3']);
        expect((await store.listFirmwareReceipts({ name: 'other' })).items.map((r) => r.deviceId)).toEqual(['d-1']);
        expect((await store.listFirmwareReceipts({ name: 'zzz' })).items).toEqual([]);
      });

      it("firmwareHardwareOf: the hwType of the device's newest record of any name (at the same time, the greatest name); null without one", async () => {
        const post = (name: string, deviceId: string, hwType: string, when: Date) =>
          store.recordFirmwareReceipt({ ...receipt(deviceId, 1), name, hwType, sha256: `${name}-${hwType}-${when.getTime()}`, at: when }, audit('firmware.receipt', `device:${deviceId}`));
        expect(await store.firmwareHardwareOf('dev-h')).toBeNull();
        await post('b-fw', 'dev-h', '1.3.6.1.4.1.99.1', new Date('2026-03-01T00:00:00Z'));
        await post('a-fw', 'dev-h', '1.3.6.1.4.1.99.2', new Date('2026-03-02T00:00:00Z'));
        await post('c-fw', 'dev-h', '1.3.6.1.4.1.99.3', new Date('2026-02-01T00:00:00Z')); // posted last, but older
        await post('x-fw', 'dev-other', '1.3.6.1.4.1.99.9', new Date('2026-04-01T00:00:00Z'));
        const other = sut.another ? await sut.another() : store;
        expect(await other.firmwareHardwareOf('dev-h')).toBe('1.3.6.1.4.1.99.2');
        await post('b-fw', 'dev-h', '1.3.6.1.4.1.99.4', new Date('2026-03-02T00:00:00Z')); // same time as a-fw: b-fw > a-fw
        expect(await other.firmwareHardwareOf('dev-h')).toBe('1.3.6.1.4.1.99.4');
        expect(await other.firmwareHardwareOf('dev-none')).toBeNull();
      });

      it('firmwareReceiptSummary counts devices per running version and per load error code, moving a device as its receipts change', async () => {
        expect(await store.firmwareReceiptSummary('fw')).toEqual({ devices: 0, versions: [], errors: [] });
        for (const d of ['s-1', 's-2', 's-3']) await record(receipt(d, 1));
        await record(receipt('s-4', 2, 'error')); // an error report before any load receipt
        await record(receipt('s-1', 2)); // s-1 moves from 1 to 2
        await record(receipt('s-1', 2)); // a repeat counts nothing
        expect(await codeOf(record(receipt('s-1', 1, 'loaded', 'replay')))).toBe('conflict'); // nor does a refused replay
        await record(receipt('s-2', 3, 'error'));
        await store.recordFirmwareReceipt({ ...receipt('s-9', 7), name: 'other' }, audit('firmware.receipt', 'device:s-9'));
        const other = sut.another ? await sut.another() : store;
        expect(await other.firmwareReceiptSummary('fw')).toEqual({
          devices: 4,
          versions: [
            { version: 2, devices: 1 },
            { version: 1, devices: 2 },
          ],
          errors: [{ code: 23, devices: 2 }],
        });
        // s-2 loads version 3: its error is cleared and it moves to 3; version 1 keeps s-3 only
        await record(receipt('s-2', 3));
        expect(await store.firmwareReceiptSummary('fw')).toEqual({
          devices: 4,
          versions: [
            { version: 3, devices: 1 },
            { version: 2, devices: 1 },
            { version: 1, devices: 1 },
          ],
          errors: [{ code: 23, devices: 1 }],
        });
        expect(await store.firmwareReceiptSummary('other')).toEqual({ devices: 1, versions: [{ version: 7, devices: 1 }], errors: [] });
      });
    });
  });
}
