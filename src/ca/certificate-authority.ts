import {
  KU,
  SanEntry,
  assembleCertificate,
  authorityInfoAccess,
  authorityKeyIdentifier,
  basicConstraints,
  crlDistributionPoints,
  encodeTbs,
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

/** LeafProfile is what the RA may choose; the CA decides serial, validity window and URLs. */
export interface LeafProfile {
  name: string;
  validitySeconds: number;
  serverAuth: boolean;
}

/** AuthorizedRequest is input the RA already authorized: the CA signs it as is. */
export interface AuthorizedRequest {
  profile: LeafProfile;
  subject: NameAttribute[];
  spki: Buffer;
  keyType: 'ec' | 'rsa';
  sans: SanEntry[];
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
  issuing: CaMaterial;
  publicUrl: string;
  crlShards: number;
  backdateSeconds: number;
}

/**
 * CertificateAuthority is the small, dumb signing core (ARCHITECTURE rule 2): authorized input in,
 * DER out. It owns serials (126 random bits) and validity, and knows nothing of HTTP or devices.
 */
export class CertificateAuthority {
  private readonly fixedExt: { aki: Buffer; aia: Buffer; bc: Buffer; ekuClient: Buffer; ekuBoth: Buffer; kuEc: Buffer; kuRsa: Buffer };
  private readonly cdpByShard: Buffer[];

  constructor(private readonly opts: CertificateAuthorityOptions) {
    const base = opts.publicUrl;
    const ca = opts.issuing;
    this.fixedExt = {
      aki: authorityKeyIdentifier(ca.keyId),
      aia: authorityInfoAccess(`${base}/ocsp`, `${base}/ca/${ca.name}.crt`),
      bc: basicConstraints(false),
      ekuClient: extKeyUsage([OID.clientAuth]),
      ekuBoth: extKeyUsage([OID.clientAuth, OID.serverAuth]),
      kuEc: keyUsage([KU.digitalSignature]),
      kuRsa: keyUsage([KU.digitalSignature, KU.keyEncipherment]),
    };
    this.cdpByShard = Array.from({ length: opts.crlShards }, (_, i) => crlDistributionPoints(crlUrl(base, ca.name, i)));
  }

  get issuer(): CaMaterial {
    return this.opts.issuing;
  }

  /**
   * issueOcspResponder signs a delegated OCSP responder certificate (RFC 6960 §4.2.2.2): EKU
   * id-kp-OCSPSigning and id-pkix-ocsp-nocheck, so clients need no status for the responder itself.
   */
  async issueOcspResponder(spki: Buffer, validitySeconds: number, now = new Date()): Promise<IssuedCertificate> {
    return this.sign(
      { subject: [{ type: 'O', value: 'device-ca' }, { type: 'CN', value: `${this.opts.issuing.name} OCSP responder` }], spki, validitySeconds },
      [this.fixedExt.bc, keyUsage([KU.digitalSignature]), ...ocspResponderExtensions(), subjectKeyIdentifier(keyIdentifier(spki)), this.fixedExt.aki],
      now,
    );
  }

  /** issue signs a leaf certificate. The caller records it before handing it out. */
  async issue(req: AuthorizedRequest, now = new Date()): Promise<IssuedCertificate> {
    const x = this.fixedExt;
    return this.sign(
      { subject: req.subject, spki: req.spki, validitySeconds: req.profile.validitySeconds },
      (shard) => {
        const extensions = [x.bc, req.keyType === 'ec' ? x.kuEc : x.kuRsa, req.profile.serverAuth ? x.ekuBoth : x.ekuClient, subjectKeyIdentifier(keyIdentifier(req.spki)), x.aki];
        if (req.sans.length) extensions.push(subjectAltName(req.sans));
        extensions.push(this.cdpByShard[shard], x.aia);
        return extensions;
      },
      now,
    );
  }

  /** sign: serial, shard and validity window are chosen here and nowhere else. */
  private async sign(
    t: { subject: NameAttribute[]; spki: Buffer; validitySeconds: number },
    extensions: Buffer[] | ((shard: number) => Buffer[]),
    now: Date,
  ): Promise<IssuedCertificate> {
    const ca = this.opts.issuing;
    const serial = newSerial();
    const shard = serial.readUInt32BE(12) % this.opts.crlShards;
    const second = Math.floor(now.getTime() / 1000) * 1000;
    const notBefore = new Date(second - this.opts.backdateSeconds * 1000);
    let notAfter = new Date(second + t.validitySeconds * 1000);
    if (notAfter > ca.notAfter) notAfter = ca.notAfter; // never outlive the issuer
    if (notAfter <= notBefore) throw new DeviceCaError('config', `issuing CA ${ca.name} has expired; roll it over`);
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
