import {
  KU,
  SanEntry,
  assembleCertificate,
  authorityInfoAccess,
  authorityKeyIdentifier,
  basicConstraints,
  crlDistributionPoints,
  encodeTbs,
  certificatePolicies,
  extKeyUsage,
  keyUsage,
  newSerial,
  subjectAltName,
  subjectKeyIdentifier,
  keyIdentifier,
} from './certificate-encoder';
import { NameAttribute, encodeName } from './name';
import { OID } from '../der/oids';
import { DeviceCaError } from '../errors/device-ca-error';
import { ocspResponderExtensions } from './ocsp-codec';
import { SigningKey } from '../keys/key-backend';

/** CaMaterial is one CA as the signing core needs it: certificate, key, and pre-encoded parts. */
export interface CaMaterial {
  name: string;
  der: Buffer;
  subject: Buffer; // DER Name, the issuer of what it signs
  keyId: Buffer; // SKI of the CA, AKI of what it signs
  notAfter: Date;
  key: SigningKey;
}

/**
 * CertificateProfile is what a profile name means to the CA (as Boulder's CA maps a profile name to its
 * settings): the RA picks the name, numbers never travel from the RA.
 */
export interface CertificateProfile {
  validitySeconds: number;
  serverAuth: boolean;
  /**
   * keyEncipherment: RSA leaves also get keyEncipherment (TLS 1.2 RSA key transport). Off unless a profile
   * asks: RFC 5280 §4.2.1.12 lists digitalSignature as the key usage consistent with clientAuth, and
   * TLS 1.3 never uses key transport.
   */
  keyEncipherment?: boolean;
}

/** TLS_SERVER_PROFILE: the built-in profile of the HTTPS listener's own certificate (397 days, the CA/B limit). */
export const TLS_SERVER_PROFILE = 'tls-server';
/** OCSP_RESPONDER_PROFILE: the built-in profile of the delegated OCSP responder certificate. */
export const OCSP_RESPONDER_PROFILE = 'ocsp-responder';
/** SCEP_RA_PROFILE: the built-in profile of the SCEP RA certificate (RFC 8894 §2.1: signs replies, receives key transport). */
export const SCEP_RA_PROFILE = 'scep-ra';
/** SCEP_RA_VALIDITY_SECONDS: the RA certificate lives a year; clients pin it from GetCACert, so it changes rarely. */
export const SCEP_RA_VALIDITY_SECONDS = 365 * 86400;

/** TPM_AK_PROFILE: the built-in profile of attestation key certificates (EKU tcg-kp-AIKCertificate). */
export const TPM_AK_PROFILE = 'tpm-ak';

/**
 * TPM_ATTESTED_POLICIES: the certificatePolicies of a leaf whose key the RA verified to live in a TPM
 * (TPM2_Certify by a registered AK, fixedTPM checked): tcg-cap-verifiedTPMResidency and
 * tcg-cap-verifiedTPMFixed, the policy OIDs TCG "TPM 2.0 Keys for Device Identity and Attestation" §8
 * defines for this, so relying parties that already know TCG's DevID profile read it without anything
 * device-ca specific.
 */
export const TPM_ATTESTED_POLICIES = [OID.tcgVerifiedTpmResidency, OID.tcgVerifiedTpmFixed];
/** TPM_AK_POLICIES: an AK certificate's: residency and restricted (the AK's attributes were checked at registration). */
export const TPM_AK_POLICIES = [OID.tcgVerifiedTpmResidency, OID.tcgVerifiedTpmRestricted];

/** AuthorizedRequest is input the RA already authorized: the CA signs it as is, under the named profile. */
export interface AuthorizedRequest {
  profile: string;
  subject: NameAttribute[];
  spki: Buffer;
  keyType: 'ec' | 'rsa';
  sans: SanEntry[];
  /** tpmAttested: the RA verified TPM evidence for this key; the certificate carries TPM_ATTESTED_POLICIES */
  tpmAttested?: boolean;
}

export interface IssuedCertificate {
  serial: string; // lowercase hex, 32 digits
  der: Buffer;
  notBefore: Date;
  notAfter: Date;
  shard: number;
  issuer: string;
}

export interface CertificateAuthorityOptions {
  /** issuing: the issuing CA of the CA's own service certificates (OCSP responder, SCEP RA, HTTPS) */
  issuing: CaMaterial;
  /** issuers: which issuing CA signs leaves at a given time (issuing-ca-set.ts, rollover); default: issuing */
  issuers?: { active(now: Date): CaMaterial; trusted(): CaMaterial[]; isRevoked?(name: string): boolean };
  publicUrl: string;
  crlShards: number;
  backdateSeconds: number;
  /** profiles: enrollment profile name -> settings; the built-in service profiles are added here */
  profiles?: ReadonlyMap<string, CertificateProfile>;
  /** ocspResponderValidity: lifetime of the delegated OCSP responder certificate (default 30 days) */
  ocspResponderValidity?: number;
  /** organization: the O= of the names the CA makes itself (the OCSP responder's, the SCEP RA's); default 'device-ca' */
  organization?: string;
}

/**
 * CertificateAuthority is the small, dumb signing core (ARCHITECTURE rule 2): authorized input in,
 * DER out. It owns serials (126 random bits) and validity, and knows nothing of HTTP or devices.
 */
export class CertificateAuthority {
  private readonly fixedExt: { bc: Buffer; ekuClient: Buffer; ekuBoth: Buffer; kuSign: Buffer; kuRsaTransport: Buffer };
  /** perCa: the extensions that name the issuing CA (AKI, AIA, CRL DP per shard), encoded once per CA */
  private readonly perCa = new Map<string, { aki: Buffer; aia: Buffer; cdpByShard: Buffer[] }>();
  private readonly profiles: Map<string, CertificateProfile>;

  constructor(private readonly opts: CertificateAuthorityOptions) {
    this.profiles = new Map(opts.profiles ?? []);
    for (const reserved of [TLS_SERVER_PROFILE, OCSP_RESPONDER_PROFILE, SCEP_RA_PROFILE, TPM_AK_PROFILE]) {
      if (this.profiles.has(reserved)) throw new DeviceCaError('config', `profile name "${reserved}" is reserved for the CA's own certificates`);
    }
    this.profiles.set(TLS_SERVER_PROFILE, { validitySeconds: 397 * 86400, serverAuth: true });
    this.fixedExt = {
      bc: basicConstraints(false),
      ekuClient: extKeyUsage([OID.clientAuth]),
      ekuBoth: extKeyUsage([OID.clientAuth, OID.serverAuth]),
      kuSign: keyUsage([KU.digitalSignature]),
      kuRsaTransport: keyUsage([KU.digitalSignature, KU.keyEncipherment]),
    };
  }

  /** caExt: the extensions naming one issuing CA (its key identifier, its certificate and OCSP URLs, its CRL shards). */
  private caExt(ca: CaMaterial): { aki: Buffer; aia: Buffer; cdpByShard: Buffer[] } {
    const id = `${ca.name}|${ca.keyId.toString('hex')}`;
    let e = this.perCa.get(id);
    if (!e) {
      const base = this.opts.publicUrl;
      e = {
        aki: authorityKeyIdentifier(ca.keyId),
        aia: authorityInfoAccess(`${base}/ocsp`, `${base}/ca/${ca.name}.crt`),
        cdpByShard: Array.from({ length: this.opts.crlShards }, (_, i) => crlDistributionPoints(crlUrl(base, ca.name, i))),
      };
      this.perCa.set(id, e);
    }
    return e;
  }

  get issuer(): CaMaterial {
    return this.opts.issuing;
  }

  /**
   * trustedIssuers: the issuing CAs whose certificates authenticate a device (during a rollover, old and
   * new), none the root CRL lists.
   */
  trustedIssuers(): CaMaterial[] {
    return this.opts.issuers?.trusted() ?? [this.opts.issuing];
  }

  /**
   * issueOcspResponder signs a delegated OCSP responder certificate (RFC 6960 §4.2.2.2): EKU
   * id-kp-OCSPSigning and id-pkix-ocsp-nocheck, so clients need no status for the responder itself.
   */
  async issueOcspResponder(spki: Buffer, now = new Date()): Promise<IssuedCertificate> {
    const validitySeconds = this.opts.ocspResponderValidity ?? 30 * 86400;
    return this.sign(
      {
        subject: [
          { type: 'O', value: this.opts.organization ?? 'device-ca' },
          { type: 'CN', value: `${this.opts.issuing.name} OCSP responder` },
        ],
        spki,
        validitySeconds,
      },
      [this.fixedExt.bc, keyUsage([KU.digitalSignature]), ...ocspResponderExtensions(), subjectKeyIdentifier(keyIdentifier(spki)), this.caExt(this.opts.issuing).aki],
      now,
      this.opts.issuing,
    );
  }

  /**
   * issueScepRa signs the SCEP RA certificate: an RSA key with keyUsage digitalSignature (CertRep
   * signatures) and keyEncipherment (the PKCS#1 v1.5 key transport clients encrypt to, RFC 8894 §3.5.1).
   */
  async issueScepRa(spki: Buffer, now = new Date()): Promise<IssuedCertificate> {
    return this.sign(
      {
        subject: [
          { type: 'O', value: this.opts.organization ?? 'device-ca' },
          { type: 'CN', value: `${this.opts.issuing.name} SCEP RA` },
        ],
        spki,
        validitySeconds: SCEP_RA_VALIDITY_SECONDS,
      },
      [this.fixedExt.bc, this.fixedExt.kuRsaTransport, subjectKeyIdentifier(keyIdentifier(spki)), this.caExt(this.opts.issuing).aki],
      now,
      this.opts.issuing,
    );
  }

  /**
   * issueAttestationKey signs the certificate of a TPM attestation key once the device proved, by
   * TPM2_ActivateCredential, that the AK lives in the TPM of a trusted EK: EKU tcg-kp-AIKCertificate
   * (2.23.133.8.3), keyUsage digitalSignature, policies TPM_AK_POLICIES. No clientAuth: an AK signs
   * TPM evidence, it does not authenticate TLS.
   */
  async issueAttestationKey(req: { subject: NameAttribute[]; spki: Buffer; validitySeconds: number }, now = new Date()): Promise<IssuedCertificate> {
    // AK certificates are device certificates: from the issuing CA active now, as leaves are
    const ca = this.leafIssuer(now);
    const x = { ...this.fixedExt, ...this.caExt(ca) };
    return this.sign(
      { subject: req.subject, spki: req.spki, validitySeconds: req.validitySeconds },
      (shard) => [x.bc, x.kuSign, extKeyUsage([OID.tcgKpAkCertificate]), certificatePolicies(TPM_AK_POLICIES), subjectKeyIdentifier(keyIdentifier(req.spki)), x.aki, x.cdpByShard[shard], x.aia],
      now,
      ca,
    );
  }

  /** hasProfile: whether issue() knows this profile name (own entries only, never Object.prototype). */
  hasProfile(name: string): boolean {
    return this.profiles.has(name);
  }

  /** issue signs a leaf certificate under a named profile. The caller records it before handing it out. */
  async issue(req: AuthorizedRequest, now = new Date()): Promise<IssuedCertificate> {
    const profile = this.profiles.get(req.profile);
    if (!profile) throw new DeviceCaError('internal', `no certificate profile "${req.profile}"`);
    // every leaf, the HTTPS certificate too, from the issuing CA active now (the listener sends the CA
    // that signed its certificate: service-certificates.ts tlsMaterial)
    const ca = this.leafIssuer(now);
    const x = { ...this.fixedExt, ...this.caExt(ca) };
    return this.sign(
      { subject: req.subject, spki: req.spki, validitySeconds: profile.validitySeconds },
      (shard) => {
        const extensions = [
          x.bc,
          req.keyType === 'rsa' && profile.keyEncipherment ? x.kuRsaTransport : x.kuSign,
          profile.serverAuth ? x.ekuBoth : x.ekuClient,
          subjectKeyIdentifier(keyIdentifier(req.spki)),
          x.aki,
        ];
        if (req.sans.length) extensions.push(subjectAltName(req.sans));
        if (req.tpmAttested) extensions.push(certificatePolicies(TPM_ATTESTED_POLICIES));
        extensions.push(x.cdpByShard[shard], x.aia);
        return extensions;
      },
      now,
      ca,
    );
  }

  /**
   * leafIssuer: the issuing CA that signs device certificates at `now`, refusing one the root CRL lists
   * (`ca revoke-issuing`): a certificate from it would fail every relying party that checks the chain's
   * CRLs, so the operator must first make a new issuing CA (`ca rollover`, README runbook).
   */
  private leafIssuer(now: Date): CaMaterial {
    const ca = this.opts.issuers?.active(now) ?? this.opts.issuing;
    if (this.opts.issuers?.isRevoked?.(ca.name)) {
      throw new DeviceCaError('ca-unavailable', `issuing CA ${ca.name} has been revoked; no certificate is issued until \`device-ca ca rollover\` makes a new issuing CA`, { retryAfterSeconds: 3600 });
    }
    return ca;
  }

  /** sign: serial, shard and validity window are chosen here and nowhere else. */
  private async sign(
    t: { subject: NameAttribute[]; spki: Buffer; validitySeconds: number },
    extensions: Buffer[] | ((shard: number) => Buffer[]),
    now: Date,
    ca: CaMaterial,
  ): Promise<IssuedCertificate> {
    const serial = newSerial();
    const shard = serial.readUInt32BE(12) % this.opts.crlShards;
    const second = Math.floor(now.getTime() / 1000) * 1000;
    const notBefore = new Date(second - this.opts.backdateSeconds * 1000);
    let notAfter = new Date(second + t.validitySeconds * 1000);
    if (notAfter > ca.notAfter) notAfter = ca.notAfter; // never outlive the issuer
    if (notAfter <= notBefore)
      throw new DeviceCaError('ca-unavailable', `issuing CA ${ca.name} has expired; no certificate is issued until \`device-ca ca rollover\` makes a new issuing CA`, { retryAfterSeconds: 3600 });
    const tbs = encodeTbs({
      serial,
      signatureAlgorithm: ca.key.signatureAlgorithm,
      issuer: ca.subject,
      notBefore,
      notAfter,
      subject: encodeName(t.subject),
      spki: t.spki,
      extensions: typeof extensions === 'function' ? extensions(shard) : extensions,
    });
    const sig = await ca.key.sign(tbs);
    return { serial: serial.toString('hex'), der: assembleCertificate(tbs, ca.key.signatureAlgorithm, sig), notBefore, notAfter, shard, issuer: ca.name };
  }
}

/** crlUrl is the distribution point of one CRL shard (served by the CRL issue's endpoint). */
export function crlUrl(base: string, caName: string, shard: number): string {
  return `${base}/crl/${caName}/${shard}.crl`;
}
