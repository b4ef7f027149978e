import * as crypto from 'node:crypto';
import { Counter, Registry } from 'prom-client';
import { AuditLog } from '../audit/audit-log';
import { CrlPublisher } from '../ca/crl-publisher';
import { issueAndRecord, signAndRecord } from '../ca/issuance';
import { AuthorizedRequest, CertificateAuthority, TPM_AK_PROFILE } from '../ca/certificate-authority';
import { SanEntry } from '../ca/certificate-encoder';
import { NameAttribute, nameToString } from '../ca/name';
import { resolveProfiles } from '../config/enrollment-profiles';
import { Config, ProfileConfig } from '../config/schema';
import { AkRegistrationRequest } from '../attestation/tpm/ak-registration';
import { decodeTpmCertifyStatement } from '../attestation/tpm/certify-statement-der';
import { decodeTpmQuoteStatement, PcrPolicy, QuoteStatement } from '../attestation/tpm/quote-evidence';
import { TPM_ALG } from '../attestation/tpm/tpm-constants';
import { Credential } from '../attestation/tpm/make-credential';
import { children, readOne } from '../der/der-reader';
import { parseTpmtPublic, tpmPublicKey } from '../attestation/tpm/tpm-public';
import { OID } from '../der/oids';
import { DeviceCaError } from '../errors/device-ca-error';
import { KeyAlgorithm } from '../keys/key-backend';
import { generateKeyPair } from '../keys/software-key-backend';
import { CertificateRecord, DeviceRecord, EnrollmentRequestRecord, isAttestationStore, Page, PageRequest, Store } from '../store/store';
import { everyItem } from '../store/paging';
import { AuthMethod, Authenticator } from './authenticators/authenticator';
import { checkChannelBinding } from './authenticators/channel-binding-check';
import { ClientCertificateAuthenticator } from './authenticators/client-certificate-authenticator';
import { SecretAuthenticator } from './authenticators/secret-authenticator';
import { BootstrapPolicy } from './bootstrap-identity';
import { csrAttributes } from './csr-attributes';
import { ParsedCsr, parseCsr } from './csr';
import { EnrollOutcome, EnrollRequest, Proofs } from './enrollment-request';
import { SecretKey, hashSecret, newEnrollmentSecret, serverSecretKey } from './enrollment-secret';
import { DEVICE_ID, Principal, principalName } from './principal';
import { ScepTransaction, ScepTransactions } from './scep-transactions';
import { TpmAttestation, TpmProfilePolicy } from './tpm-attestation';

export type { ChannelBinding, EnrollOperation, EnrollOutcome, EnrollRequest, Proofs } from './enrollment-request';
export { DEVICE_ID };

const OWNER = /^[^\u0000-\u001f]{1,128}$/;

export interface RegistrationAuthorityDeps {
  config: Config;
  store: Store;
  ca: CertificateAuthority;
  bootstrap: BootstrapPolicy;
  /** attestation: TPM decisions; absent when the store keeps no attestation state (profiles with attestation then refuse) */
  attestation?: TpmAttestation;
  metrics?: Registry;
  now?: () => Date;
  /** crls: the CRL publisher of each issuing CA served (old and new during a rollover; the list grows in place), for SCEP GetCRL; absent where no CRL is served (the CLI) */
  crls?: readonly Pick<CrlPublisher, 'caName' | 'current'>[];
  /** secretKey: the server key one-time secrets are stored under; default: the data directory's (serverSecretKey) */
  secretKey?: SecretKey;
  /** csrs: parses and verifies CSRs; the service passes a CsrVerifyPool (worker threads), default: parseCsr on this thread */
  csrs?: CsrParser;
}

/** CsrParser parses a PKCS#10 request and checks its signature (parseCsr, or CsrVerifyPool.parse on worker threads). */
export interface CsrParser {
  parse(der: Buffer): Promise<ParsedCsr>;
}

/** inThread: parseCsr on the calling thread, for the CLI and tests. */
const inThread: CsrParser = { parse: async (der) => parseCsr(der) };

/** Issuance is what the one issuance step needs once every decision is made. */
interface Issuance {
  profile: string;
  operation: EnrollRequest['operation'];
  device: DeviceRecord;
  principal: Principal;
  subject: NameAttribute[];
  spki: Buffer;
  keyType: 'ec' | 'rsa';
  sans: SanEntry[];
  requestId?: string;
  /** tpmAttested: TPM evidence for the key was verified; the certificate says so (TPM_ATTESTED_POLICIES) */
  tpmAttested: boolean;
}

/** AK_CLAIM_MS: how long one activation holds the issuance of an AK certificate; a holder that died frees it then. */
const AK_CLAIM_MS = 30_000;
/** AK_CLAIM_WAIT_MS, AK_CLAIM_POLL_MS: how long, and how often, a concurrent activation waits for the holder's certificate before 409. */
const AK_CLAIM_WAIT_MS = 2_000;
const AK_CLAIM_POLL_MS = 20;

/** PCR_BANK_ALG: the TPM_ALG id of each PCR bank a profile's pcrPolicy may name. */
const PCR_BANK_ALG = { sha1: TPM_ALG.SHA1, sha256: TPM_ALG.SHA256, sha384: TPM_ALG.SHA384, sha512: TPM_ALG.SHA512 } as const;

/** pcrPolicyOf turns a profile's pcrPolicy (config: bank name, index -> hex) into what the verifier compares. */
function pcrPolicyOf(p: NonNullable<ProfileConfig['pcrPolicy']>): PcrPolicy {
  return { bankAlg: PCR_BANK_ALG[p.bank], pcrs: new Map(Object.entries(p.pcrs).map(([i, v]) => [Number(i), Buffer.from(v, 'hex')])) };
}

/** tpmPolicyOf turns a profile's allowedTpms (config: firmware versions as hex strings) and tpmKeyDecrypt into what TpmAttestation compares. */
function tpmPolicyOf(p: ProfileConfig): TpmProfilePolicy {
  const decrypt = p.tpmKeyDecrypt ? { keyMayDecrypt: true } : {};
  if (!p.allowedTpms) return decrypt;
  return {
    ...decrypt,
    allowedTpms: p.allowedTpms.map((e) => ({
      manufacturer: e.manufacturer,
      ...(e.model === undefined ? {} : { model: e.model }),
      ...(e.minFirmwareVersion === undefined ? {} : { minFirmwareVersion: BigInt(e.minFirmwareVersion) }),
    })),
  };
}

/**
 * RegistrationAuthority holds every enrollment decision, for any protocol: enroll() reads as
 * authenticate (the profile's authenticators) -> authorize (device state, identity in the CSR, key
 * policy, proof of possession) -> approve (manual approval) -> issue. Profiles and EST labels are looked
 * up in Maps, so no client-sent name reaches Object.prototype.
 */
export class RegistrationAuthority {
  private readonly cfg: Config;
  private readonly store: Store;
  private readonly ca: CertificateAuthority;
  private readonly audit: AuditLog;
  private readonly now: () => Date;
  private readonly profiles: ReadonlyMap<string, ProfileConfig>;
  private readonly labels: ReadonlyMap<string, string>;
  private readonly secrets: SecretAuthenticator;
  private readonly clientCerts: ClientCertificateAuthenticator;
  private readonly authenticators: ReadonlyMap<AuthMethod, Authenticator>;
  private readonly enrollments: Counter<'profile' | 'operation' | 'result'>;
  private readonly tpm?: TpmAttestation;
  private readonly scepTransactions: ScepTransactions;
  private readonly crls?: readonly Pick<CrlPublisher, 'caName' | 'current'>[];
  private readonly issuingX509: crypto.X509Certificate;
  private readonly secretKey: SecretKey;
  private readonly csrs: CsrParser;

  constructor(deps: RegistrationAuthorityDeps) {
    this.cfg = deps.config;
    this.tpm = deps.attestation;
    this.crls = deps.crls;
    this.issuingX509 = new crypto.X509Certificate(deps.ca.issuer.der);
    this.store = deps.store;
    this.ca = deps.ca;
    this.audit = new AuditLog(deps.store);
    this.now = deps.now ?? (() => new Date());
    ({ profiles: this.profiles, labels: this.labels } = resolveProfiles(deps.config));
    this.secretKey = deps.secretKey ?? serverSecretKey(deps.config);
    this.csrs = deps.csrs ?? inThread;
    this.secrets = new SecretAuthenticator(this.cfg.enrollment, deps.store, this.now, this.secretKey);
    this.clientCerts = new ClientCertificateAuthenticator({
      store: deps.store,
      issuingCas: () => deps.ca.trustedIssuers().map((c) => c.der),
      bootstrap: deps.bootstrap,
      bootstrapConfig: this.cfg.bootstrap,
      secretKey: this.secretKey,
      now: this.now,
    });
    this.authenticators = new Map<AuthMethod, Authenticator>([
      [this.secrets.method, this.secrets],
      [this.clientCerts.method, this.clientCerts],
    ]);
    this.scepTransactions = new ScepTransactions({ store: deps.store, windowSeconds: this.cfg.enrollment.retryWindow, now: this.now });
    this.enrollments = new Counter({
      name: 'device_ca_enrollments_total',
      help: 'Enrollment decisions by profile, operation and result',
      labelNames: ['profile', 'operation', 'result'],
      registers: deps.metrics ? [deps.metrics] : [],
    });
  }

  /** profile returns a configured enrollment profile; 'not-found' for any other name. */
  profile(name: string): ProfileConfig {
    const p = this.profiles.get(name);
    if (!p) throw new DeviceCaError('not-found', `unknown enrollment profile "${truncate(name)}"`);
    return p;
  }

  /** profileForLabel: the profile an EST label serves; 'not-found' for an unknown label. */
  profileForLabel(label: string): string {
    const p = this.labels.get(label);
    if (p === undefined) throw new DeviceCaError('not-found', `unknown EST label "${truncate(label)}"`);
    return p;
  }

  /** csrAttrs returns the DER CsrAttrs (RFC 7030 §4.5.2) a profile advertises. */
  csrAttrs(profileName: string): Buffer {
    return csrAttributes(this.profile(profileName));
  }

  // ---------------------------------------------------------------- devices

  /**
   * registerDevice creates a device and returns its one-time enrollment secret (shown once, stored
   * hashed). `label` binds the device to one profile: a profile name, or an EST label standing for the
   * profile it serves; the profile name is what is stored.
   */
  async registerDevice(args: { id: string; owner?: string; label?: string; secretTtlSeconds?: number; actor: string }): Promise<{ device: DeviceRecord; secret: string; expiresAt: Date }> {
    const reg = this.registration(args);
    const { secret, expiresAt, hash } = await this.newDeviceSecret(args.secretTtlSeconds);
    const device = await this.store.createDevice({ ...reg, state: 'registered' }, { hash, expiresAt }, registeredAudit(reg, args.actor, expiresAt)).catch((e: unknown) => {
      // Device ids are one namespace across owners, so a taken id must be refused; the refusal is the same
      // whoever holds it (the caller, another owner, a tombstone) and in whatever state: it says "taken",
      // never whose. Everywhere else a device outside the caller's scope is 404.
      if (e instanceof DeviceCaError && e.code === 'conflict') throw new DeviceCaError('conflict', `device id ${args.id} is not available`);
      throw e;
    });
    return { device, secret, expiresAt };
  }

  /**
   * registration checks one device registration (id, owner, label) and answers what the store keeps: the
   * label resolved to its profile. 'bad-request' / 'not-found' name the field. `devices import` runs it
   * over a whole file before writing anything.
   */
  registration(args: { id: string; owner?: string; label?: string }): { id: string; owner: string | null; label: string | null } {
    if (!DEVICE_ID.test(args.id)) throw new DeviceCaError('bad-request', 'device id must be 1-128 characters of letters, digits, . _ @ - and start with a letter or digit');
    if (args.owner !== undefined && !OWNER.test(args.owner)) throw new DeviceCaError('bad-request', 'owner must be 1-128 printable characters');
    const label = args.label === undefined ? null : this.profiles.has(args.label) ? args.label : this.profileForLabel(args.label);
    return { id: args.id, owner: args.owner ?? null, label };
  }

  /**
   * prepareRegistrations is the first half of the bulk path (`devices import`): each registration
   * checked and given a new one-time secret, nothing written. The caller keeps the secrets safe (on
   * disk) before commitRegistrations writes the batch, so no committed device is without its secret.
   */
  async prepareRegistrations(items: { id: string; owner?: string; label?: string }[], opts: { secretTtlSeconds?: number }): Promise<PreparedRegistrations> {
    const regs = items.map((i) => this.registration(i));
    const secrets = await Promise.all(regs.map(() => this.newDeviceSecret(opts.secretTtlSeconds)));
    return regs.map((reg, i) => ({ ...reg, ...secrets[i] }));
  }

  /**
   * commitRegistrations writes a prepared batch in one store transaction, each device with its secret
   * and its own `device.registered` audit record. A taken id fails the whole batch ('conflict', naming
   * it) unless skipExisting passes it over (returned in `existing`; its prepared secret is void).
   */
  async commitRegistrations(batch: PreparedRegistrations, opts: { actor: string; skipExisting: boolean }): Promise<{ created: string[]; existing: string[] }> {
    return this.store.createDevices(
      batch.map((r) => ({
        device: { id: r.id, owner: r.owner, label: r.label, state: 'registered' as const },
        secret: { hash: r.hash, expiresAt: r.expiresAt },
        audit: registeredAudit(r, opts.actor, r.expiresAt),
      })),
      { skipExisting: opts.skipExisting },
    );
  }

  /** newDeviceSecret: a new one-time enrollment secret, its expiry and the hash the store keeps. */
  private async newDeviceSecret(ttlSeconds?: number): Promise<{ secret: string; expiresAt: Date; hash: string }> {
    const secret = newEnrollmentSecret();
    const ttl = ttlSeconds ?? this.cfg.enrollment.secretTtl;
    if (!(ttl > 0)) throw new DeviceCaError('bad-request', 'secret TTL must be positive');
    const expiresAt = new Date(this.now().getTime() + ttl * 1000);
    if (Number.isNaN(expiresAt.getTime())) throw new DeviceCaError('bad-request', 'secret TTL is out of range');
    return { secret, expiresAt, hash: hashSecret(secret, this.secretKey()) };
  }

  // ------------------------------------------------------------- enrollment

  /** enroll serves every enrollment operation of every protocol: authenticate, authorize, approve, issue. */
  async enroll(req: EnrollRequest): Promise<EnrollOutcome> {
    return this.counted(req, () => this.decide(req));
  }

  /** counted runs one enrollment decision and counts its result in the enrollments metric. */
  private async counted(req: EnrollRequest, decide: () => Promise<EnrollOutcome>): Promise<EnrollOutcome> {
    const known = this.profiles.has(req.profile) ? req.profile : 'unknown';
    try {
      const out = await decide();
      this.enrollments.inc({ profile: known, operation: req.operation, result: out.status });
      return out;
    } catch (e) {
      this.enrollments.inc({ profile: known, operation: req.operation, result: e instanceof DeviceCaError ? e.code : 'internal' });
      throw e;
    }
  }

  /**
   * scepEnroll serves a SCEP PKCSReq or RenewalReq (RFC 8894 §3.3.1) whose signature the adapter verified
   * against signerCertificate. Who signed decides the operation:
   * - a certificate this CA issued (RenewalReq, or a PKCSReq as certmonger and other RFC 8894 §2.3 clients
   *   send it when they hold one): a renewal, the signer checked as EST re-enroll checks the TLS client
   *   certificate (recorded, valid, unexpired; the CSR repeats its names);
   * - otherwise a PKCSReq must be signed with the key its CSR is for (the requester's self-signed
   *   certificate, §2.3), and the CSR carries the device id as CN and its one-time secret as
   *   challengePassword (§2.2): a first enrollment. A RenewalReq signed with anything else is refused.
   * Then the transactionID rules (ScepTransactions) and the one enroll().
   */
  async scepEnroll(req: { profile: string; kind: 'PKCSReq' | 'RenewalReq'; transactionId: Buffer; signerCertificate: Buffer; csr: Buffer }): Promise<EnrollOutcome> {
    const signer = parseCertificate(req.signerCertificate);
    const signerSpki = signer.publicKey.export({ type: 'spki', format: 'der' });
    const csr = parseCsr(req.csr);
    let request: EnrollRequest;
    if (req.kind === 'RenewalReq' || signer.checkIssued(this.issuingX509)) {
      request = { profile: req.profile, operation: 'renew', csr: req.csr, proofs: { clientCertificate: { leaf: signer, intermediates: () => [] } } };
    } else {
      if (!signerSpki.equals(csr.spki)) throw new DeviceCaError('forbidden', 'a PKCSReq must be signed with the key its CSR is for, or with the current certificate to renew');
      const deviceId = csr.subject.find((a) => a.type === 'CN')?.value;
      if (!deviceId || csr.challengePassword === null) throw new DeviceCaError('bad-csr', 'the CSR needs the device id as CN and its enrollment secret as challengePassword');
      request = { profile: req.profile, operation: 'enroll', csr: req.csr, proofs: { secret: { deviceId, secret: csr.challengePassword } } };
    }
    return this.scepTransactions.run({ transactionId: req.transactionId, signerSpki, operation: request.operation as ScepTransaction['operation'], csr: req.csr }, () => this.enroll(request));
  }

  /**
   * scepPoll decides a SCEP CertPoll (GetCertInitial, RFC 8894 §3.3.3): the requester asks again about a
   * PKCSReq held for manual approval. The poll carries no CSR and no secret, only the transactionID, and
   * is signed with the same key as the PKCSReq, so the transaction is found by that key and transactionID
   * (ScepTransactions.poll): a poll from any other key finds nothing (not-found, badCertId). Its answer is
   * the transaction's: PENDING until an operator decides; once approved, the queued CSR is issued as if
   * the PKCSReq came again, with the principal the PKCSReq proved (its device and the secret it must
   * spend, consumed by recordIssuance exactly once, whichever of poll and PKCSReq gets there first);
   * FAILURE once rejected. issuerAndSubject is only checked for shape: the transactionID names the request.
   */
  async scepPoll(req: { profile: string; transactionId: Buffer; signerCertificate: Buffer; issuerAndSubject: Buffer }): Promise<EnrollOutcome> {
    const [issuer, subject] = children(readOne(req.issuerAndSubject, 0x30), 3);
    if (!issuer || issuer.tag !== 0x30 || !subject || subject.tag !== 0x30) throw new DeviceCaError('bad-request', 'IssuerAndSubject is malformed');
    const signerSpki = parseCertificate(req.signerCertificate).publicKey.export({ type: 'spki', format: 'der' });
    return this.scepTransactions.poll({ transactionId: req.transactionId, signerSpki }, async (pending) => {
      const queued = await this.store.findRequest(pending.deviceId, pending.csrSha256);
      if (!queued || queued.label !== req.profile) throw new DeviceCaError('not-found', 'no enrollment request of this transaction on this SCEP path');
      // issued by the PKCSReq sent again a moment ago, its transaction not settled yet: the same certificate
      if (queued.status === 'issued') {
        const cert = queued.certSerial ? await this.store.getCertificate(queued.certSerial) : null;
        if (!cert || cert.status !== 'valid' || cert.notAfter <= this.now()) throw new DeviceCaError('forbidden', 'the certificate of this transaction is no longer valid');
        return { status: 'issued', serial: cert.serial, certificate: cert.der };
      }
      const request: EnrollRequest = { profile: req.profile, operation: 'enroll', csr: queued.csr, proofs: {} };
      return this.counted(request, () => this.decide(request, { kind: 'secret', deviceId: pending.deviceId, secretId: pending.secretId }));
    });
  }

  /**
   * scepGetCert decides SCEP GetCert (RFC 8894 §3.3.4): a device may fetch its own certificates only.
   * The message must be signed with a current certificate this CA issued to a device (checked as for
   * RenewalReq: recorded, valid, unexpired); the certificate asked for (IssuerAndSerialNumber) must have
   * been issued to that same device, in any status (a device may learn that one was revoked). Anything
   * else, unknown or another device's, is the same 'not-found' (badCertId), so the answer does not tell
   * whether a serial exists.
   */
  async scepGetCert(req: { signerCertificate: Buffer; issuerAndSerial: Buffer }): Promise<Buffer> {
    const p = await this.clientCerts.authenticate({ clientCertificate: { leaf: parseCertificate(req.signerCertificate), intermediates: () => [] } });
    if (!p || p.kind !== 'device-cert') throw new DeviceCaError('unauthenticated', 'GetCert must be signed with a current certificate of the device');
    const cert = await this.certificateOf(req.issuerAndSerial);
    if (!cert || cert.deviceId !== p.deviceId) throw new DeviceCaError('not-found', 'no such certificate of this device');
    return cert.der;
  }

  /**
   * scepGetCrl decides SCEP GetCRL (RFC 8894 §3.3.5): the CRL of the shard that covers the certificate
   * named by IssuerAndSerialNumber. CRLs are public (served at /crl without authentication), so any
   * message whose signature verified may ask; 'not-found' (badCertId) when this CA issued no such
   * certificate, or it came from an issuer whose CRLs this service does not publish.
   */
  async scepGetCrl(req: { issuerAndSerial: Buffer }): Promise<Buffer> {
    const cert = await this.certificateOf(req.issuerAndSerial);
    // during a rollover the old and the new issuing CA each publish their own shards
    const publisher = cert ? this.crls?.find((p) => p.caName === cert.issuer) : undefined;
    if (!cert || !publisher) throw new DeviceCaError('not-found', 'no CRL covers that certificate here');
    return (await publisher.current(cert.shard)).der;
  }

  /** certificateOf: the certificate this CA recorded under an IssuerAndSerialNumber (RFC 5652 §10.2.4), issuer bytes compared exactly. */
  private async certificateOf(issuerAndSerial: Buffer): Promise<CertificateRecord | null> {
    const [issuer, serial] = children(readOne(issuerAndSerial, 0x30), 3);
    if (!issuer || issuer.tag !== 0x30 || !serial || serial.tag !== 0x02 || serial.value.length === 0 || serial.value.length > 20)
      throw new DeviceCaError('bad-request', 'IssuerAndSerialNumber is malformed');
    const rec = await this.store.getCertificate(serial.value.toString('hex').replace(/^0+(?=.)/, ''));
    if (!rec) return null;
    return issuerNameDer(rec.der).equals(issuer.full) ? rec : null;
  }

  /**
   * decide: authenticate, authorize, approve, issue. proven: the principal an earlier message of the same
   * transaction authenticated (a SCEP CertPoll for a request queued for approval), used instead of
   * authenticating again.
   */
  private async decide(req: EnrollRequest, proven?: Extract<Principal, { kind: 'secret' }>): Promise<EnrollOutcome> {
    const profile = this.profile(req.profile);
    if (req.operation === 'server-keygen' && !profile.serverKeyGen) throw new DeviceCaError('not-found', 'server key generation is not offered on this profile');

    // authenticate
    const principal = proven ?? (await this.authenticate(req, profile));

    // authorize
    const device = await this.deviceOf(principal, req.profile);
    const csr = await this.csrs.parse(req.csr);
    if (profile.proofOfPossession) checkChannelBinding(csr.challengePassword, req.proofs.channelBinding);
    if (req.operation !== 'server-keygen') this.checkKey(profile, csr.keyAlgorithm);
    const sans = this.checkIdentity(profile, device, csr, principal);

    if (principal.kind === 'secret-repeat') return this.repeat(req, device, csr, principal);
    // a device polling for a request held for approval sends the same CSR again (RFC 7030 §4.2.3): its
    // evidence, part of those bytes, was checked and its nonce spent when the request was queued
    const queued = profile.manualApproval && principal.kind !== 'device-cert' ? await this.store.findRequest(device.id, sha256(csr.der)) : null;
    const tpmAttested = !queued || queued.status === 'issued' ? await this.checkAttestation(profile, req.operation, device, csr) : this.hasCertifyEvidence(profile, req.operation, csr);

    // approve
    let requestId: string | undefined;
    if (profile.manualApproval && principal.kind !== 'device-cert') {
      const gate = await this.approvalGate(req, device, csr, principal);
      if (gate.status === 'repeat') return this.repeat(req, device, csr, gate.principal);
      if (gate.status === 'pending') return { ...gate, deviceId: device.id, ...(principal.kind === 'secret' ? { secretId: principal.secretId } : {}) };
      requestId = gate.requestId;
    }

    // issue
    let spki = csr.spki;
    let keyType = csr.keyType as 'ec' | 'rsa';
    let privateKeyPkcs8: Buffer | undefined;
    if (req.operation === 'server-keygen') {
      const kp = generateKeyPair(serverKeyAlgorithm(profile, csr.keyAlgorithm));
      spki = kp.publicKey.export({ type: 'spki', format: 'der' });
      keyType = kp.publicKey.asymmetricKeyType === 'ec' ? 'ec' : 'rsa';
      privateKeyPkcs8 = kp.privateKey.export({ type: 'pkcs8', format: 'der' });
    }
    const subject: NameAttribute[] = [];
    if (device.owner) subject.push({ type: 'O', value: device.owner });
    subject.push({ type: 'CN', value: device.id });
    let issued: { serial: string; der: Buffer };
    try {
      issued = await this.issue({ profile: req.profile, operation: req.operation, device, principal, subject, spki, keyType, sans, requestId, tpmAttested });
    } catch (e) {
      // a client that sent the same request again before reading the first reply: the copy that lost the
      // race for the secret answers as a repeat of the one that won (same certificate), not as a 401
      const won = principal.kind === 'secret' && e instanceof DeviceCaError && e.code === 'unauthenticated' ? await this.spentOn(principal) : null;
      if (won) return this.repeat(req, device, csr, won);
      throw e;
    }
    return { status: 'issued', serial: issued.serial, certificate: issued.der, privateKeyPkcs8 };
  }

  /**
   * authenticate: renew needs the device's current certificate (whatever the profile lists); enroll and
   * server-keygen take the first proof the request carries among the profile's authenticators, in the
   * order the profile lists them.
   */
  private async authenticate(req: EnrollRequest, profile: ProfileConfig): Promise<Principal> {
    if (req.operation === 'renew') {
      const p = await this.clientCerts.authenticate(req.proofs);
      if (!p) throw new DeviceCaError('unauthenticated', 'renewal requires the current certificate (TLS client certificate, or the signer of a SCEP RenewalReq)');
      if (p.kind !== 'device-cert') throw new DeviceCaError('forbidden', 'renewal requires a certificate issued by this CA');
      return p;
    }
    for (const method of profile.auth) {
      const p = await this.authenticators.get(method)?.authenticate(req.proofs);
      if (!p) continue;
      if (p.kind === 'device-cert') throw new DeviceCaError('forbidden', 'an enrolled device renews with its current certificate (EST: simplereenroll)');
      return p;
    }
    throw new DeviceCaError('unauthenticated', 'authentication required');
  }

  /** deviceOf: the authenticated device, if it may enroll now (state) under this profile (its label). */
  private async deviceOf(principal: Principal, profileName: string): Promise<DeviceRecord> {
    const device = await this.store.getDevice(principal.deviceId);
    if (!device) throw new DeviceCaError('unauthenticated', 'authentication failed');
    if (device.state === 'retired') throw new DeviceCaError('forbidden', 'device is retired');
    if (device.state === 'suspended') throw new DeviceCaError('forbidden', 'device is suspended');
    // released to a new owner who has not claimed it: nothing may be issued under either owner meanwhile
    if (device.state === 'transferring') throw new DeviceCaError('forbidden', 'device is being transferred');
    if (device.label !== null && device.label !== profileName) throw new DeviceCaError('forbidden', `device is registered for profile "${device.label}"`);
    return device;
  }

  /**
   * checkAttestation applies the profile's attestation policy to the CSR's evidence attribute
   * (draft-ietf-lamps-csr-attestation): the tcg-attest-tpm-certify statement must show that an AK
   * registered to this device certified the CSR's key with one of its nonces. 'optional' checks evidence
   * when present; 'required' also refuses a CSR without it, and server keygen (that key is not in a TPM).
   * Checked before manual approval, so an operator only sees requests whose key is attested. True when
   * the key's evidence was verified (the certificate then says so).
   */
  private async checkAttestation(profile: ProfileConfig, operation: EnrollRequest['operation'], device: DeviceRecord, csr: ParsedCsr): Promise<boolean> {
    if (profile.attestation === 'off') return false;
    const tpm = this.attestationService();
    const st = operation === 'server-keygen' ? undefined : csr.evidence.find((e) => e.type === OID.tcgAttestTpmCertify);
    if (!st) {
      if (profile.attestation === 'required') await tpm.refuse(device.id, 'evidence', `no tcg-attest-tpm-certify statement (${operation})`);
      return false;
    }
    let pcr: { policy: PcrPolicy; quote: QuoteStatement } | undefined;
    if (profile.pcrPolicy) {
      const q = csr.evidence.find((e) => e.type === OID.deviceCaTpmQuote);
      if (!q) await tpm.refuse(device.id, 'quote', 'the profile has a PCR policy and the CSR carries no TPM quote statement');
      pcr = { policy: pcrPolicyOf(profile.pcrPolicy), quote: decodeTpmQuoteStatement(q!.stmt) };
    }
    await tpm.checkCertify(device.id, decodeTpmCertifyStatement(st.stmt), csr.spki, pcr, tpmPolicyOf(profile));
    return true;
  }

  /** hasCertifyEvidence: what checkAttestation returned for a CSR when its request was queued for approval. */
  private hasCertifyEvidence(profile: ProfileConfig, operation: EnrollRequest['operation'], csr: ParsedCsr): boolean {
    return profile.attestation !== 'off' && operation !== 'server-keygen' && csr.evidence.some((e) => e.type === OID.tcgAttestTpmCertify);
  }

  private attestationService(): TpmAttestation {
    if (!this.tpm) throw new DeviceCaError('not-implemented', 'TPM attestation needs a store that keeps attestation state (sqlite)');
    return this.tpm;
  }

  // ------------------------------------------------------- TPM attestation

  /**
   * attestingDevice authenticates a TPM attestation request on a profile that has attestation on: a
   * device with its current certificate (a renewal needs a nonce too), or the profile's first-enrollment
   * authenticators (unspent one-time secret, bootstrap certificate). Nothing is spent.
   */
  private async attestingDevice(profileName: string, proofs: Proofs): Promise<{ device: DeviceRecord; tpm: TpmAttestation }> {
    const profile = this.profile(profileName);
    if (profile.attestation === 'off') throw new DeviceCaError('not-found', 'TPM attestation is not offered on this profile');
    const tpm = this.attestationService();
    let principal: Principal | null = await this.clientCerts.authenticate(proofs);
    if (principal?.kind === 'bootstrap' && !profile.auth.includes('bootstrap-cert')) principal = null;
    if (!principal && profile.auth.includes('basic')) principal = await this.secrets.authenticate(proofs);
    if (!principal || principal.kind === 'secret-repeat') throw new DeviceCaError('unauthenticated', 'authentication required');
    return { device: await this.deviceOf(principal, profileName), tpm };
  }

  /** tpmNonce: a single-use nonce for the device's next TPM2_Certify, valid attestation.nonceTtl on the CA's clock. */
  async tpmNonce(profileName: string, proofs: Proofs): Promise<{ nonce: Buffer; expiresAt: Date }> {
    const { device, tpm } = await this.attestingDevice(profileName, proofs);
    return tpm.issueNonce(device.id);
  }

  /** tpmRegisterAk: checks EK certificate, EK, AK and the profile's TPM allow-list, and answers with the MakeCredential challenge. */
  async tpmRegisterAk(profileName: string, proofs: Proofs, req: AkRegistrationRequest): Promise<Credential & { akName: Buffer }> {
    const { device, tpm } = await this.attestingDevice(profileName, proofs);
    return tpm.registerAk(device.id, req, tpmPolicyOf(this.profile(profileName)));
  }

  /**
   * tpmActivateAk binds the AK to the device once it returns the secret TPM2_ActivateCredential
   * recovered, and issues the AK its certificate (EKU tcg-kp-AIKCertificate, TCG EK Credential Profile):
   * subject O=owner, CN=device id, valid as long as the profile's device certificates. It is recorded as a
   * certificate of the device (profile "tpm-ak"), so the device's lifecycle revokes it with the binding.
   * A device whose reply was lost repeats the same activation (same secret) while the challenge lives and
   * gets the same certificate again. Activations that arrive at once (a device retrying before the first
   * reply, on any node) issue one certificate: the store lets one of them claim the issuance
   * (claimAkCertificate); the others wait for its serial and answer that certificate, or 409 if it takes
   * longer than AK_CLAIM_WAIT_MS.
   */
  async tpmActivateAk(profileName: string, proofs: Proofs, akName: Buffer, secret: Buffer): Promise<{ akName: string; status: string; serial: string; certificate: Buffer }> {
    const { device, tpm } = await this.attestingDevice(profileName, proofs);
    const b = await tpm.activateAk(device.id, akName, secret);
    if (!isAttestationStore(this.store)) throw new DeviceCaError('not-implemented', 'TPM attestation needs a store that keeps attestation state');
    const store = this.store;
    const answer = (c: { serial: string; der: Buffer }) => ({ akName: b.akName, status: b.status, serial: c.serial, certificate: c.der });
    for (let waited = 0; ; waited += AK_CLAIM_POLL_MS) {
      const now = this.now();
      const claim = await store.claimAkCertificate(b.akName, device.id, new Date(now.getTime() + AK_CLAIM_MS), now);
      if (!claim) throw new DeviceCaError('conflict', 'the attestation key is no longer active');
      if (claim.state === 'claimed') break;
      if (claim.state === 'issued') {
        const c = await this.store.getCertificate(claim.serial);
        if (!c) throw new DeviceCaError('internal', `AK certificate ${claim.serial} is recorded on the binding but not in the store`);
        return answer(c);
      }
      if (waited >= AK_CLAIM_WAIT_MS) throw new DeviceCaError('conflict', 'the AK certificate is being issued for another request of this activation; repeat it');
      await new Promise((r) => setTimeout(r, AK_CLAIM_POLL_MS));
    }
    try {
      const subject: NameAttribute[] = [];
      if (device.owner) subject.push({ type: 'O', value: device.owner });
      subject.push({ type: 'CN', value: device.id });
      const spki = tpmPublicKey(parseTpmtPublic(b.akPublic)).export({ type: 'spki', format: 'der' });
      // a binding activated before the store recorded AK certificates, or a claim holder that stopped
      // between recording the certificate and settling: the AK certificate already issued, not a second one
      let cert: { serial: string; der: Buffer } | undefined;
      for await (const c of everyItem((after) => this.store.listCertificates({ deviceId: device.id, status: 'valid', after }))) {
        if (c.profile === TPM_AK_PROFILE && c.spkiSha256 === sha256(spki)) cert = c;
      }
      cert ??= await signAndRecord(
        this.store,
        { spki, profile: TPM_AK_PROFILE },
        () => this.ca.issueAttestationKey({ subject, spki, validitySeconds: this.profile(profileName).validity }, this.now()),
        { deviceId: device.id, subject: nameToString(subject), audit: { actor: `device:${device.id}`, subject: device.id, data: { profile: TPM_AK_PROFILE, ak: b.akName } } },
      );
      await store.settleAkCertificate(b.akName, cert.serial);
      return answer(cert);
    } catch (e) {
      // free the claim at once: the device's next repeat issues the certificate
      await store.settleAkCertificate(b.akName, null).catch(() => undefined);
      throw e;
    }
  }

  private checkKey(profile: ProfileConfig, alg: KeyAlgorithm | null): void {
    if (!alg || !profile.keyAlgorithms.includes(alg)) throw new DeviceCaError('bad-key', `key type not allowed; allowed: ${profile.keyAlgorithms.join(', ')}`);
  }

  /** checkIdentity: the CSR may only name the authenticated device; renewal must repeat the current names. */
  private checkIdentity(profile: ProfileConfig, device: DeviceRecord, csr: ParsedCsr, p: Principal): SanEntry[] {
    for (const a of csr.subject) {
      if (a.type === 'CN' && a.value !== device.id) throw new DeviceCaError('forbidden', `CSR subject CN "${truncate(a.value)}" is not the authenticated device`);
    }
    if (csr.otherSans > 0) throw new DeviceCaError('forbidden', 'CSR requests subjectAltName types this CA does not issue');
    if (csr.sans.length > 0 && !profile.allowCsrSans) throw new DeviceCaError('forbidden', 'CSR subjectAltNames are not allowed on this profile');
    if (p.kind === 'device-cert') {
      // RFC 7030 §4.2.2: Subject and SubjectAltName must be identical to the certificate being renewed
      const x = p.x509;
      const want = x.subject
        .split('\n')
        .filter((l) => l.startsWith('CN=') || l.startsWith('O='))
        .sort()
        .join('\n');
      const got = csr.subject
        .map((a) => `${a.type}=${a.value}`)
        .sort()
        .join('\n');
      if (want !== got) throw new DeviceCaError('forbidden', 'renewal: CSR subject differs from the current certificate');
      const wantSans = (x.subjectAltName ?? '')
        .split(', ')
        .filter(Boolean)
        .map((s) => s.toLowerCase())
        .sort()
        .join(',');
      const gotSans = csr.sans
        .map((s) => sanText(s).toLowerCase())
        .sort()
        .join(',');
      if (wantSans !== gotSans) throw new DeviceCaError('forbidden', 'renewal: CSR subjectAltName differs from the current certificate');
    }
    return csr.sans;
  }

  /**
   * repeat answers a device that spent its secret but never read the reply: the same enrollment (same
   * profile, a CSR for the same public key, within enrollment.retryWindow) gets the same certificate,
   * byte for byte, audited as certificate.repeated. Any other use of a spent secret is refused as a
   * failed authentication, as before. server-keygen is never repeated: the key was not kept.
   */
  private async repeat(req: EnrollRequest, device: DeviceRecord, csr: ParsedCsr, p: Extract<Principal, { kind: 'secret-repeat' }>): Promise<EnrollOutcome> {
    const cert = await this.store.getCertificate(p.certSerial);
    const same =
      req.operation === 'enroll' &&
      cert !== null &&
      cert.deviceId === device.id &&
      cert.status === 'valid' &&
      cert.profile === req.profile &&
      cert.spkiSha256 === sha256(csr.spki) &&
      cert.notAfter > this.now();
    if (!same) return this.secrets.refuse(device.id);
    await this.audit.event('certificate.repeated', principalName(p), device.id, { serial: cert.serial, profile: req.profile, operation: req.operation });
    return { status: 'issued', serial: cert.serial, certificate: cert.der };
  }

  /** spentOn: the secret principal as a repeat, if its secret was spent on a certificate within enrollment.retryWindow. */
  private async spentOn(p: Extract<Principal, { kind: 'secret' }>): Promise<Extract<Principal, { kind: 'secret-repeat' }> | null> {
    const window = this.cfg.enrollment.retryWindow;
    if (!(window > 0)) return null;
    const spent = (await this.store.spentSecrets(p.deviceId, new Date(this.now().getTime() - window * 1000))).find((s) => s.id === p.secretId);
    return spent?.certSerial ? { kind: 'secret-repeat', deviceId: p.deviceId, secretId: spent.id, certSerial: spent.certSerial } : null;
  }

  /**
   * issue is the one issuance step: audit the intent, sign under the profile name, then record the
   * certificate, the spent secret, the settled request and the audit result in one store transaction.
   * Nothing reaches the client before the record is committed.
   */
  private async issue(i: Issuance): Promise<{ serial: string; der: Buffer }> {
    const previous = i.principal.kind === 'device-cert' ? i.principal.cert : undefined;
    const req: AuthorizedRequest = { profile: i.profile, subject: i.subject, spki: i.spki, keyType: i.keyType, sans: i.sans, tpmAttested: i.tpmAttested };
    return issueAndRecord(
      this.ca,
      this.store,
      req,
      {
        deviceId: i.device.id,
        subject: nameToString(i.subject),
        consumeSecretId: i.principal.kind === 'secret' ? i.principal.secretId : undefined,
        requestId: i.requestId,
        audit: {
          actor: principalName(i.principal),
          subject: i.device.id,
          intent: { operation: i.operation },
          data: {
            profile: i.profile,
            operation: i.operation,
            ...(i.tpmAttested ? { tpmAttested: true } : {}),
            ...(previous ? { renewal: previous.spkiSha256 === sha256(i.spki) ? 'renew' : 'rekey', previous: previous.serial } : {}),
          },
        },
      },
      this.now(),
    );
  }

  /**
   * approvalGate: pending (EST 202) until an operator approves; the retried request (same CSR) then
   * proceeds. A request whose secret was spent, after it authenticated, on this very CSR's approved request
   * (a CertPoll or another retry issued it meanwhile) is a repeat of that issuance, not a new request.
   */
  private async approvalGate(
    req: EnrollRequest,
    device: DeviceRecord,
    csr: ParsedCsr,
    principal: Principal,
  ): Promise<
    { status: 'pending'; requestId: string; retryAfterSeconds: number } | { status: 'go'; requestId: string } | { status: 'repeat'; principal: Extract<Principal, { kind: 'secret-repeat' }> }
  > {
    const hash = sha256(csr.der);
    const retryAfterSeconds = this.cfg.enrollment.pendingRetryAfter;
    const existing = await this.store.findRequest(device.id, hash);
    if (existing?.status === 'issued' && principal.kind === 'secret') {
      const spent = await this.spentOn(principal);
      if (spent && spent.certSerial === existing.certSerial) return { status: 'repeat', principal: spent };
    }
    if (!existing || existing.status === 'issued') {
      const id = crypto.randomUUID();
      // the request's label column holds the profile name
      await this.store.createRequest(
        { id, deviceId: device.id, label: req.profile, operation: req.operation, csrSha256: hash, csr: csr.der },
        AuditLog.input('request.created', 'ra', device.id, { request: id, profile: req.profile, operation: req.operation }),
      );
      return { status: 'pending', requestId: id, retryAfterSeconds };
    }
    if (existing.status === 'pending') return { status: 'pending', requestId: existing.id, retryAfterSeconds };
    if (existing.status === 'rejected') throw new DeviceCaError('forbidden', 'the enrollment request was rejected by an operator');
    return { status: 'go', requestId: existing.id };
  }

  // ------------------------------------------------------ approval queue

  /** listRequests pages through the approval queue; follow `next` for more. */
  listRequests(filter: { status?: EnrollmentRequestRecord['status'] } & PageRequest): Promise<Page<EnrollmentRequestRecord>> {
    return this.store.listRequests(filter);
  }

  decideRequest(id: string, decision: 'approved' | 'rejected', actor: string): Promise<EnrollmentRequestRecord> {
    return this.store.decideRequest(id, decision, actor, AuditLog.input(`request.${decision}`, actor, id, {}));
  }
}

/**
 * serverKeyAlgorithm: the key type of a server-generated key is the CSR's when the profile allows it
 * (the device asked for that type), else the profile's first allowed algorithm.
 */
export function serverKeyAlgorithm(profile: ProfileConfig, requested: KeyAlgorithm | null): KeyAlgorithm {
  return requested && profile.keyAlgorithms.includes(requested) ? requested : (profile.keyAlgorithms[0] as KeyAlgorithm);
}

function sanText(s: SanEntry): string {
  return s.type === 'dns' ? `DNS:${s.value}` : s.type === 'uri' ? `URI:${s.value}` : `IP Address:${s.value}`;
}

const sha256 = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');
const truncate = (s: string): string => (s.length > 64 ? s.slice(0, 64) + '…' : s);

/** PreparedRegistrations: checked registrations with their new secrets (plain, for the operator) and hashes (for the store). */
export type PreparedRegistrations = { id: string; owner: string | null; label: string | null; secret: string; expiresAt: Date; hash: string }[];

/** registeredAudit: the audit record of one device registration. */
function registeredAudit(reg: { id: string; owner: string | null; label: string | null }, actor: string, secretExpiresAt: Date) {
  return AuditLog.input('device.registered', actor, reg.id, { owner: reg.owner, label: reg.label, secretExpiresAt: secretExpiresAt.toISOString() });
}

function parseCertificate(der: Buffer): crypto.X509Certificate {
  try {
    return new crypto.X509Certificate(der);
  } catch {
    throw new DeviceCaError('bad-request', 'the signer certificate cannot be parsed');
  }
}

/** issuerNameDer: the issuer Name of a DER certificate, byte for byte. */
function issuerNameDer(certDer: Buffer): Buffer {
  const f = children(children(readOne(certDer, 0x30))[0]);
  return f[f[0].tag === 0xa0 ? 3 : 2].full;
}
