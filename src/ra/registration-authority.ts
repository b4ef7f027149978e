import * as crypto from 'node:crypto';
import { Counter, Registry } from 'prom-client';
import { AuditLog } from '../audit/audit-log';
import { AuthorizedRequest, CertificateAuthority, LeafProfile } from '../ca/certificate-authority';
import { SanEntry } from '../ca/certificate-encoder';
import { NameAttribute, nameToString } from '../ca/name';
import { Config, LabelConfig } from '../config/schema';
import { DeviceCaError } from '../errors/device-ca-error';
import { KeyAlgorithm } from '../keys/key-backend';
import { generateKeyPair } from '../keys/software-key-backend';
import { CertificateRecord, DeviceRecord, EnrollmentRequestRecord, Store } from '../store/store';
import { BootstrapPolicy, bootstrapDeviceId, chainsToAnchor, withinValidity } from './bootstrap-identity';
import { csrAttributes } from './csr-attributes';
import { ParsedCsr, parseCsr } from './csr';
import { hashSecret, newEnrollmentSecret, verifySecret } from './enrollment-secret';

/** Credentials are what a protocol adapter extracted from the request, not yet trusted. */
export interface Credentials {
  basic?: { username: string; password: string };
  /**
   * clientCert: the TLS peer's certificate as the TLS layer parsed it, and (only read on the bootstrap
   * path, since building it costs) the certificates the peer presented behind it.
   */
  clientCert?: { leaf: crypto.X509Certificate; intermediates: () => Buffer[] };
}

/** ChannelBinding values of the TLS connection, for RFC 7030 §3.5 proof of possession. */
export interface ChannelBinding {
  tlsUnique?: Buffer; // TLS 1.2, RFC 5929
  tlsExporter?: Buffer; // TLS 1.3, RFC 9266
}

export type EstOperation = 'simpleenroll' | 'simplereenroll' | 'serverkeygen';

export interface EnrollInput {
  label: string;
  operation: EstOperation;
  csr: Buffer;
  credentials: Credentials;
  binding: ChannelBinding;
}

export type EnrollOutcome =
  | { status: 'issued'; serial: string; certificate: Buffer; privateKeyPkcs8?: Buffer }
  | { status: 'pending'; requestId: string; retryAfterSeconds: number };

type Principal =
  | { kind: 'secret'; deviceId: string; secretId: number }
  | { kind: 'bootstrap'; deviceId: string; anchor: string }
  | { kind: 'device-cert'; deviceId: string; cert: CertificateRecord; x509: crypto.X509Certificate };

/** DEVICE_ID: no ':' (HTTP Basic user names cannot carry it), no spaces, bounded. */
export const DEVICE_ID = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/;
const OWNER = /^[^\u0000-\u001f]{1,128}$/;

export interface RegistrationAuthorityDeps {
  config: Config;
  store: Store;
  ca: CertificateAuthority;
  bootstrap: BootstrapPolicy;
  metrics?: Registry;
  now?: () => Date;
}

/**
 * RegistrationAuthority holds every enrollment decision: who is asking (secret, bootstrap certificate,
 * current device certificate), whether they may (device state, labels, key policy, identity in the
 * CSR, proof of possession, manual approval) and with what profile. Protocol adapters make one call.
 */
export class RegistrationAuthority {
  private readonly cfg: Config;
  private readonly store: Store;
  private readonly ca: CertificateAuthority;
  private readonly audit: AuditLog;
  private readonly now: () => Date;
  private readonly issuingX509: crypto.X509Certificate;
  private readonly enrollments: Counter<'label' | 'operation' | 'result'>;
  private readonly dummyHash: Promise<string>;

  constructor(private readonly deps: RegistrationAuthorityDeps) {
    this.cfg = deps.config;
    this.store = deps.store;
    this.ca = deps.ca;
    this.audit = new AuditLog(deps.store);
    this.now = deps.now ?? (() => new Date());
    this.issuingX509 = new crypto.X509Certificate(deps.ca.issuer.der);
    this.enrollments = new Counter({
      name: 'device_ca_enrollments_total',
      help: 'EST enrollment decisions by label, operation and result',
      labelNames: ['label', 'operation', 'result'],
      registers: deps.metrics ? [deps.metrics] : [],
    });
    // compared against when the device id is unknown, so timing does not reveal which ids exist
    this.dummyHash = hashSecret(newEnrollmentSecret(), this.cfg.enrollment.secretHashCost);
    this.dummyHash.catch(() => undefined);
  }

  label(name: string): LabelConfig {
    const l = this.cfg.est.labels[name];
    if (!l) throw new DeviceCaError('not-found', `unknown EST label "${name}"`);
    return l;
  }

  /** csrAttrs returns the DER CsrAttrs advertised for a label. */
  csrAttrs(labelName: string): Buffer {
    return csrAttributes(this.label(labelName));
  }

  // ---------------------------------------------------------------- devices

  /** registerDevice creates a device and returns its one-time enrollment secret (shown once, stored hashed). */
  async registerDevice(args: { id: string; owner?: string; label?: string; secretTtlSeconds?: number; actor: string }): Promise<{ device: DeviceRecord; secret: string; expiresAt: Date }> {
    if (!DEVICE_ID.test(args.id)) throw new DeviceCaError('bad-request', 'device id must be 1-128 characters of letters, digits, . _ @ - and start with a letter or digit');
    if (args.owner !== undefined && !OWNER.test(args.owner)) throw new DeviceCaError('bad-request', 'owner must be 1-128 printable characters');
    if (args.label !== undefined) this.label(args.label);
    const secret = newEnrollmentSecret();
    const ttl = args.secretTtlSeconds ?? this.cfg.enrollment.secretTtl;
    if (!(ttl > 0)) throw new DeviceCaError('bad-request', 'secret TTL must be positive');
    const expiresAt = new Date(this.now().getTime() + ttl * 1000);
    if (Number.isNaN(expiresAt.getTime())) throw new DeviceCaError('bad-request', 'secret TTL is out of range');
    const hash = await hashSecret(secret, this.cfg.enrollment.secretHashCost);
    const device = await this.store
      .createDevice(
        { id: args.id, owner: args.owner ?? null, label: args.label ?? null, state: 'registered' },
        { hash, expiresAt },
        AuditLog.input('device.registered', args.actor, args.id, { owner: args.owner ?? null, label: args.label ?? null, secretExpiresAt: expiresAt.toISOString() }),
      )
      .catch((e: unknown) => {
        // Device ids are one namespace across owners, so a taken id must be refused; the refusal is the same
        // whoever holds it (the caller, another owner, a tombstone) and in whatever state: it says "taken",
        // never whose. Everywhere else a device outside the caller's scope is 404.
        if (e instanceof DeviceCaError && e.code === 'conflict') throw new DeviceCaError('conflict', `device id ${args.id} is not available`);
        throw e;
      });
    return { device, secret, expiresAt };
  }

  // ------------------------------------------------------------- enrollment

  /** enroll serves simpleenroll, simplereenroll and serverkeygen: authenticate, authorize, issue, record. */
  async enroll(input: EnrollInput): Promise<EnrollOutcome> {
    try {
      const out = await this.enrollInner(input);
      this.enrollments.inc({ label: input.label, operation: input.operation, result: out.status });
      return out;
    } catch (e) {
      this.enrollments.inc({ label: input.label, operation: input.operation, result: e instanceof DeviceCaError ? e.code : 'internal' });
      throw e;
    }
  }

  private async enrollInner(input: EnrollInput): Promise<EnrollOutcome> {
    const label = this.label(input.label);
    if (input.operation === 'serverkeygen' && !label.serverKeyGen) throw new DeviceCaError('not-found', 'serverkeygen is not offered on this label');
    const principal = input.operation === 'simplereenroll' ? await this.authenticateReenroll(input.credentials) : await this.authenticateEnroll(input.credentials, label);
    const device = await this.store.getDevice(principal.deviceId);
    if (!device) throw new DeviceCaError('unauthenticated', 'authentication failed');
    if (device.state === 'retired') throw new DeviceCaError('forbidden', 'device is retired');
    if (device.state === 'suspended') throw new DeviceCaError('forbidden', 'device is suspended');
    // released to a new owner who has not claimed it: nothing may be issued under either owner meanwhile
    if (device.state === 'transferring') throw new DeviceCaError('forbidden', 'device is being transferred');
    if (device.label !== null && device.label !== input.label) throw new DeviceCaError('forbidden', `device is registered for label "${device.label}"`);

    const csr = parseCsr(input.csr);
    this.checkPossession(label, csr, input.binding);
    if (input.operation !== 'serverkeygen') this.checkKey(label, csr.keyAlgorithm);
    const sans = this.checkIdentity(label, device, csr, principal);

    let requestId: string | undefined;
    if (label.manualApproval && principal.kind !== 'device-cert') {
      const gate = await this.approvalGate(input, device, csr);
      if (gate.status === 'pending') return gate;
      requestId = gate.requestId;
    }

    let spki = csr.spki;
    let keyType = csr.keyType as 'ec' | 'rsa';
    let privateKeyPkcs8: Buffer | undefined;
    if (input.operation === 'serverkeygen') {
      const alg: KeyAlgorithm = csr.keyAlgorithm && label.keyAlgorithms.includes(csr.keyAlgorithm) ? csr.keyAlgorithm : (label.keyAlgorithms[0] as KeyAlgorithm);
      const kp = generateKeyPair(alg);
      spki = kp.publicKey.export({ type: 'spki', format: 'der' });
      keyType = alg.startsWith('ecdsa') ? 'ec' : 'rsa';
      privateKeyPkcs8 = kp.privateKey.export({ type: 'pkcs8', format: 'der' });
    }

    const subject: NameAttribute[] = [];
    if (device.owner) subject.push({ type: 'O', value: device.owner });
    subject.push({ type: 'CN', value: device.id });
    const profile: LeafProfile = { name: input.label, validitySeconds: label.validity, serverAuth: label.serverAuth };
    const req: AuthorizedRequest = { profile, subject, spki, keyType, sans };
    const actor = principalName(principal);
    await this.audit.intent('certificate.issue', actor, device.id, { label: input.label, operation: input.operation });
    const issued = await this.ca.issue(req, this.now());
    const renewal = principal.kind === 'device-cert' ? (principal.cert.spkiSha256 === sha256(spki) ? 'renew' : 'rekey') : undefined;
    await this.store.recordIssuance({
      cert: {
        serial: issued.serial,
        deviceId: device.id,
        issuer: issued.issuer,
        subject: nameToString(subject),
        profile: input.label,
        notBefore: issued.notBefore,
        notAfter: issued.notAfter,
        shard: issued.shard,
        spkiSha256: sha256(spki),
        der: issued.der,
      },
      consumeSecretId: principal.kind === 'secret' ? principal.secretId : undefined,
      requestId,
      audit: AuditLog.input('certificate.issued', actor, device.id, {
        serial: issued.serial,
        label: input.label,
        operation: input.operation,
        notAfter: issued.notAfter.toISOString(),
        ...(renewal ? { renewal, previous: (principal as { cert: CertificateRecord }).cert.serial } : {}),
      }),
    });
    return { status: 'issued', serial: issued.serial, certificate: issued.der, privateKeyPkcs8 };
  }

  private async authenticateEnroll(c: Credentials, label: LabelConfig): Promise<Principal> {
    if (c.basic && label.auth.includes('basic')) {
      // a retired id is a tombstone: refused as such, whatever the secret
      const d = DEVICE_ID.test(c.basic.username) ? await this.store.getDevice(c.basic.username) : null;
      if (d?.state === 'retired') throw new DeviceCaError('forbidden', 'device is retired');
      return this.authenticateSecret(c.basic.username, c.basic.password);
    }
    if (c.clientCert && label.auth.includes('bootstrap-cert')) {
      const p = await this.classifyClientCert(c.clientCert);
      if (p.kind === 'bootstrap') return p;
      throw new DeviceCaError('forbidden', 'an enrolled device renews with simplereenroll');
    }
    throw new DeviceCaError('unauthenticated', 'authentication required');
  }

  private async authenticateReenroll(c: Credentials): Promise<Principal> {
    if (!c.clientCert) throw new DeviceCaError('unauthenticated', 'simplereenroll requires the current certificate as TLS client certificate');
    const p = await this.classifyClientCert(c.clientCert);
    if (p.kind !== 'device-cert') throw new DeviceCaError('forbidden', 'simplereenroll requires a certificate issued by this CA');
    return p;
  }

  /** authenticateSecret checks a one-time secret under the per-device failure limit (429 when exceeded). */
  private async authenticateSecret(deviceId: string, password: string): Promise<Principal> {
    const now = this.now();
    const key = `basic:${deviceId.slice(0, 200)}`;
    const e = this.cfg.enrollment;
    const { count, oldest } = await this.store.countAuthFailures(key, now, e.authFailureWindow);
    if (count >= e.authFailureLimit) {
      const retry = Math.max(1, Math.ceil(((oldest?.getTime() ?? now.getTime()) + e.authFailureWindow * 1000 - now.getTime()) / 1000));
      throw new DeviceCaError('rate-limited', 'too many failed authentications; try later', { retryAfterSeconds: retry });
    }
    const secrets = DEVICE_ID.test(deviceId) ? await this.store.activeSecrets(deviceId, now) : [];
    if (secrets.length === 0) await verifySecret(password, await this.dummyHash);
    for (const s of secrets) if (await verifySecret(password, s.hash)) return { kind: 'secret', deviceId, secretId: s.id };
    const n = await this.store.recordAuthFailure(key, now, e.authFailureWindow);
    if (n === e.authFailureLimit) await this.audit.event('auth.locked', 'est', deviceId, { failures: n, windowSeconds: e.authFailureWindow });
    throw new DeviceCaError('unauthenticated', 'authentication failed');
  }

  /**
   * classifyClientCert tells a current device certificate (issued here) from a bootstrap (IDevID) one.
   * A certificate byte-identical to one this CA recorded is authentic without a signature check (TLS has
   * proved possession of its key); only the bootstrap path parses and verifies a chain.
   */
  private async classifyClientCert(c: NonNullable<Credentials['clientCert']>): Promise<Principal> {
    const leaf = c.leaf;
    const now = this.now();
    if (leaf.checkIssued(this.issuingX509)) {
      const serial = leaf.serialNumber.toLowerCase().replace(/^0+(?=.)/, '');
      const rec = await this.store.getCertificate(serial);
      if (rec && rec.der.equals(leaf.raw)) {
        if (rec.status !== 'valid') throw new DeviceCaError('forbidden', 'certificate is revoked');
        if (!withinValidity(leaf, now)) throw new DeviceCaError('forbidden', 'certificate has expired');
        if (!rec.deviceId) throw new DeviceCaError('forbidden', 'certificate does not belong to a device');
        return { kind: 'device-cert', deviceId: rec.deviceId, cert: rec, x509: leaf };
      }
      if (leaf.verify(this.issuingX509.publicKey)) throw new DeviceCaError('forbidden', 'certificate is not known to this CA');
    }
    let presented: crypto.X509Certificate[];
    try {
      presented = c.intermediates().slice(0, 5).map((d) => new crypto.X509Certificate(d));
    } catch {
      throw new DeviceCaError('unauthenticated', 'client certificate chain cannot be parsed');
    }
    const anchor = chainsToAnchor(leaf, presented, this.deps.bootstrap.anchors, now);
    if (!anchor) throw new DeviceCaError('unauthenticated', 'client certificate is not trusted');
    const deviceId = bootstrapDeviceId(leaf, this.deps.bootstrap);
    if (!deviceId || !DEVICE_ID.test(deviceId)) throw new DeviceCaError('forbidden', 'bootstrap certificate does not name a valid device id');
    const auto = this.cfg.bootstrap.autoRegisterOwner;
    if (auto !== undefined && !(await this.store.getDevice(deviceId))) {
      const hash = await hashSecret(newEnrollmentSecret(), this.cfg.enrollment.secretHashCost);
      await this.store
        .createDevice({ id: deviceId, owner: auto, label: null, state: 'registered' }, { hash, expiresAt: now }, AuditLog.input('device.registered', `bootstrap:${anchor.subject.replace(/\n/g, ', ')}`, deviceId, { owner: auto, auto: true }))
        .catch((e) => {
          if (!(e instanceof DeviceCaError && e.code === 'conflict')) throw e; // registered meanwhile by another worker
        });
    }
    return { kind: 'bootstrap', deviceId, anchor: anchor.fingerprint256 };
  }

  /** checkPossession: RFC 7030 §3.5 challengePassword = base64(tls-unique) or, on TLS 1.3, base64(tls-exporter). */
  private checkPossession(label: LabelConfig, csr: ParsedCsr, b: ChannelBinding): void {
    if (!label.proofOfPossession) return;
    const expected = b.tlsUnique ?? b.tlsExporter;
    if (!expected) throw new DeviceCaError('forbidden', 'proof of possession needs a TLS channel binding');
    if (csr.challengePassword === null) throw new DeviceCaError('forbidden', 'proof of possession required: challengePassword must carry the TLS channel binding');
    let got: Buffer;
    try {
      got = Buffer.from(csr.challengePassword.trim(), 'base64');
    } catch {
      got = Buffer.alloc(0);
    }
    if (got.length !== expected.length || !crypto.timingSafeEqual(got, expected)) throw new DeviceCaError('forbidden', 'proof of possession failed: challengePassword does not match this TLS connection');
  }

  private checkKey(label: LabelConfig, alg: KeyAlgorithm | null): void {
    if (!alg || !label.keyAlgorithms.includes(alg)) throw new DeviceCaError('bad-key', `key type not allowed; allowed: ${label.keyAlgorithms.join(', ')}`);
  }

  /** checkIdentity: the CSR may only name the authenticated device; re-enrollment must repeat the current names. */
  private checkIdentity(label: LabelConfig, device: DeviceRecord, csr: ParsedCsr, p: Principal): SanEntry[] {
    for (const a of csr.subject) {
      if (a.type === 'CN' && a.value !== device.id) throw new DeviceCaError('forbidden', `CSR subject CN "${truncate(a.value)}" is not the authenticated device`);
    }
    if (csr.otherSans > 0) throw new DeviceCaError('forbidden', 'CSR requests subjectAltName types this CA does not issue');
    if (csr.sans.length > 0 && !label.allowCsrSans) throw new DeviceCaError('forbidden', 'CSR subjectAltNames are not allowed on this label');
    if (p.kind === 'device-cert') {
      // RFC 7030 §4.2.2: Subject and SubjectAltName must be identical to the certificate being renewed
      const x = p.x509;
      const want = x.subject.split('\n').filter((l) => l.startsWith('CN=') || l.startsWith('O=')).sort().join('\n');
      const got = csr.subject.map((a) => `${a.type}=${a.value}`).sort().join('\n');
      if (want !== got) throw new DeviceCaError('forbidden', 'simplereenroll: CSR subject differs from the current certificate');
      const wantSans = (x.subjectAltName ?? '').split(', ').filter(Boolean).map((s) => s.toLowerCase()).sort().join(',');
      const gotSans = csr.sans.map((s) => sanText(s).toLowerCase()).sort().join(',');
      if (wantSans !== gotSans) throw new DeviceCaError('forbidden', 'simplereenroll: CSR subjectAltName differs from the current certificate');
    }
    return csr.sans;
  }

  /** approvalGate: EST 202 until an operator approves; the retried request (same CSR) then proceeds. */
  private async approvalGate(input: EnrollInput, device: DeviceRecord, csr: ParsedCsr): Promise<{ status: 'pending'; requestId: string; retryAfterSeconds: number } | { status: 'go'; requestId: string }> {
    const hash = sha256(csr.der);
    const retryAfterSeconds = this.cfg.enrollment.pendingRetryAfter;
    const existing = await this.store.findRequest(device.id, hash);
    if (!existing || existing.status === 'issued') {
      const id = crypto.randomUUID();
      await this.store.createRequest(
        { id, deviceId: device.id, label: input.label, operation: input.operation, csrSha256: hash, csr: csr.der },
        AuditLog.input('request.created', 'est', device.id, { request: id, label: input.label, operation: input.operation }),
      );
      return { status: 'pending', requestId: id, retryAfterSeconds };
    }
    if (existing.status === 'pending') return { status: 'pending', requestId: existing.id, retryAfterSeconds };
    if (existing.status === 'rejected') throw new DeviceCaError('forbidden', 'the enrollment request was rejected by an operator');
    return { status: 'go', requestId: existing.id };
  }

  // ------------------------------------------------------ approval queue

  listRequests(status?: EnrollmentRequestRecord['status']): Promise<EnrollmentRequestRecord[]> {
    return this.store.listRequests({ status, limit: 1000 });
  }

  decideRequest(id: string, decision: 'approved' | 'rejected', actor: string): Promise<EnrollmentRequestRecord> {
    return this.store.decideRequest(id, decision, actor, AuditLog.input(`request.${decision}`, actor, id, {}));
  }
}

function principalName(p: Principal): string {
  return p.kind === 'secret' ? `secret:${p.deviceId}` : p.kind === 'bootstrap' ? `bootstrap:${p.deviceId}` : `cert:${p.cert.serial}`;
}

function sanText(s: SanEntry): string {
  return s.type === 'dns' ? `DNS:${s.value}` : s.type === 'uri' ? `URI:${s.value}` : `IP Address:${s.value}`;
}

const sha256 = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');
const truncate = (s: string): string => (s.length > 64 ? s.slice(0, 64) + '…' : s);
