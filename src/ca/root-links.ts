import * as crypto from 'node:crypto';
import { SigningKey } from '../keys/key-backend';
import { signCaCert } from './ca-hierarchy';
import { keyIdentifier } from './certificate-encoder';
import { certificateParts } from './certificate-parts';

/**
 * root-links: the link certificates of a root key update (RFC 4210 §4.4, named so by RFC 7030 §4.1.3 for
 * EST /cacerts). OldWithNew certifies the new root's public key under the old root key: a relying party
 * that trusts only the old root builds leaf -> new issuing CA -> OldWithNew -> old root. NewWithOld
 * certifies the old root's public key under the new root key: a party that trusts only the new root
 * builds leaf -> old issuing CA -> NewWithOld -> new root. Each keeps the subject and key of the root it
 * stands for (so chains built by name and key identifier find it), is a CA certificate without a path
 * length (a root's stand-in), names its signer's root CRL as its CRL distribution point (so
 * `-crl_check_all` can check it, RFC 5280 §4.2.1.13) and lives no longer than the old root: after that
 * neither link is needed (the old hierarchy has expired with it).
 */

/** RootSide: one root of the rollover: its certificate and key. */
export interface RootSide {
  der: Buffer;
  key: SigningKey;
  /** urls: its root CRL and certificate URLs, named in the link it signs */
  urls: { crl: string; caIssuers: string };
}

/** signRootLinks signs OldWithNew (by the old key) and NewWithOld (by the new key), both ending with the old root. */
export async function signRootLinks(args: { old: RootSide; new: RootSide; now: Date }): Promise<{ oldWithNew: Buffer; newWithOld: Buffer }> {
  const o = certificateParts(args.old.der);
  const n = certificateParts(args.new.der);
  const end = (d: Buffer) => new Date(new crypto.X509Certificate(d).validTo);
  const notBefore = new Date(Math.floor(args.now.getTime() / 1000) * 1000 - 3600_000);
  // never past either root (RFC 5280 §6.1.3: a path is valid only while every certificate in it is)
  const notAfter = new Date(Math.min(end(args.old.der).getTime(), end(args.new.der).getTime()));
  const window = { notBefore, notAfter };
  const oldWithNew = await signCaCert({
    issuerKey: args.old.key,
    issuerName: o.subject,
    issuerKeyId: keyIdentifier(o.spki),
    subjectName: n.subject,
    spki: n.spki,
    validitySeconds: 0,
    now: args.now,
    window,
    rootUrls: args.old.urls,
  });
  const newWithOld = await signCaCert({
    issuerKey: args.new.key,
    issuerName: n.subject,
    issuerKeyId: keyIdentifier(n.spki),
    subjectName: o.subject,
    spki: o.spki,
    validitySeconds: 0,
    now: args.now,
    window,
    rootUrls: args.new.urls,
  });
  return { oldWithNew, newWithOld };
}
