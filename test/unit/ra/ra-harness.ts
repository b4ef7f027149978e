import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { initCa } from '../../../src/ca/ca-hierarchy';
import { CertificateAuthority } from '../../../src/ca/certificate-authority';
import { SanEntry } from '../../../src/ca/certificate-encoder';
import { buildCertificateAuthority } from '../../../src/main';
import { loadConfig } from '../../../src/config/load-config';
import { Config } from '../../../src/config/schema';
import { DeviceCaError, ErrorCode } from '../../../src/errors/device-ca-error';
import { KeyAlgorithm } from '../../../src/keys/key-backend';
import { SoftwareKeyBackend, generateKeyPair } from '../../../src/keys/software-key-backend';
import { BootstrapPolicy } from '../../../src/ra/bootstrap-identity';
import { EnrollOperation, EnrollOutcome, Proofs, RegistrationAuthority } from '../../../src/ra/registration-authority';
import { TpmAttestation } from '../../../src/ra/tpm-attestation';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store';
import { AuditRecord } from '../../../src/store/store';
import { collectItems } from '../../../src/store/paging';
import { buildCsr } from '../../fixtures/build-csr';

/**
 * RaHarness is the registration authority as the service wires it, in process: the real SQLite store in
 * a temp directory, software keys, a CA made by initCa, and a clock the test can move. Each RA decision
 * gets a fast unit test here; the spawned-service interop tests keep the protocol and the peers.
 */
export interface RaHarness {
  dir: string;
  cfg: Config;
  store: SqliteStore;
  ca: CertificateAuthority;
  ra: RegistrationAuthority;
  /** now: the RA's clock (real time plus what advance() added, so store timestamps stay comparable) */
  now(): Date;
  advance(seconds: number): void;
  /** register: a device (owner acme) and its one-time secret */
  register(id: string, o?: { label?: string; owner?: string }): Promise<string>;
  /** csr: a DER PKCS#10 for a new key of alg (or the given key), subject [O = organization,] CN = cn */
  csr(cn: string, o?: { alg?: KeyAlgorithm; key?: crypto.KeyObject; organization?: string; sans?: SanEntry[]; challengePassword?: string }): { der: Buffer; key: crypto.KeyObject };
  enroll(profile: string, operation: EnrollOperation, csr: Buffer, proofs: Proofs): Promise<EnrollOutcome>;
  /** issued: enroll and expect a certificate */
  issued(profile: string, operation: EnrollOperation, csr: Buffer, proofs: Proofs): Promise<Extract<EnrollOutcome, { status: 'issued' }>>;
  /** refused: enroll and return the error code it was refused with (fails the test if it was not) */
  refused(profile: string, operation: EnrollOperation, csr: Buffer, proofs: Proofs): Promise<ErrorCode>;
  audit(type?: string): Promise<AuditRecord[]>;
  close(): Promise<void>;
}

export interface RaHarnessOptions {
  /** config overrides by dotted path, e.g. { profiles: {...}, 'enrollment.retryWindow': '1m' } */
  overrides?: Record<string, unknown>;
  bootstrap?: BootstrapPolicy;
  /** ekRoots: trusted TPM manufacturer certificates (none by default) */
  ekRoots?: crypto.X509Certificate[];
}

export async function makeRaHarness(o: RaHarnessOptions = {}): Promise<RaHarness> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-ra-'));
  const cfg = loadConfig({ env: { DEVICE_CA_DATA: dir }, overrides: { publicUrl: 'http://ca.example.test:8080', 'enrollment.secretHashCost': 10, ...o.overrides } });
  const store = new SqliteStore(cfg.store.path);
  const hierarchy = await initCa(cfg, new SoftwareKeyBackend(path.join(dir, 'keys')), store);
  const ca = buildCertificateAuthority(cfg, hierarchy);
  let offsetMs = 0;
  const now = (): Date => new Date(Date.now() + offsetMs);
  const bootstrap = o.bootstrap ?? { anchors: [], deviceIdFrom: cfg.bootstrap.deviceIdFrom };
  const attestation = new TpmAttestation(store, { ekRoots: o.ekRoots ?? [], nonceTtlSeconds: cfg.attestation.nonceTtl, challengeTtlSeconds: cfg.attestation.challengeTtl, now });
  const ra = new RegistrationAuthority({ config: cfg, store, ca, bootstrap, attestation, now });
  const h: RaHarness = {
    dir,
    cfg,
    store,
    ca,
    ra,
    now,
    advance: (seconds) => void (offsetMs += seconds * 1000),
    async register(id, r = {}) {
      return (await ra.registerDevice({ id, owner: r.owner ?? 'acme', label: r.label, actor: 'test' })).secret;
    },
    csr(cn, c = {}) {
      const key = c.key ?? generateKeyPair(c.alg ?? 'ecdsa-p256').privateKey;
      const subject = [...(c.organization ? [{ type: 'O' as const, value: c.organization }] : []), { type: 'CN' as const, value: cn }];
      const der = buildCsr({ privateKey: key, subject, sans: c.sans, challengePassword: c.challengePassword !== undefined ? { value: c.challengePassword } : undefined });
      return { der, key };
    },
    enroll: (profile, operation, csr, proofs) => ra.enroll({ profile, operation, csr, proofs }),
    async issued(profile, operation, csr, proofs) {
      const out = await ra.enroll({ profile, operation, csr, proofs });
      if (out.status !== 'issued') throw new Error(`expected a certificate, got ${out.status}`);
      return out;
    },
    async refused(profile, operation, csr, proofs) {
      try {
        await ra.enroll({ profile, operation, csr, proofs });
      } catch (e) {
        if (e instanceof DeviceCaError) return e.code;
        throw e;
      }
      throw new Error('expected the enrollment to be refused');
    },
    async audit(type) {
      const all = (await collectItems((after) => store.listAudit({ after }))).items;
      return type ? all.filter((a) => a.type === type) : all;
    },
    async close() {
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  return h;
}

/** secretProof: the proof an adapter extracts from HTTP Basic <id>:<secret> */
export const secretProof = (deviceId: string, secret: string): Proofs => ({ secret: { deviceId, secret } });

/** certProof: the proof an adapter extracts from a TLS client certificate (and the chain behind it) */
export const certProof = (der: Buffer, intermediates: Buffer[] = []): Proofs => ({ clientCertificate: { leaf: new crypto.X509Certificate(der), intermediates: () => intermediates } });
