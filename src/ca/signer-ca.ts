import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Config } from '../config/schema';
import { writeFileAtomic } from '../data-dir/atomic-file';
import { fromStoredRef, toStoredRef } from '../data-dir/data-dir-ref';
import { DeviceCaError } from '../errors/device-ca-error';
import { KeyAlgorithm, KeyBackend, SigningKey } from '../keys/key-backend';
import { AuditStore, CaStateStore, CertificateStore } from '../store/store';
import { FirmwareSigner } from '../cms/firmware-package';
import { caDir, issuerRootOf, readCaRecord, rootUrlsOf, signCaCert, StoredCa } from './ca-hierarchy';
import { assembleCertificate, authorityKeyIdentifier, encodeTbs, extKeyUsage, keyIdentifier, keyUsage, KU, newSerial, subjectKeyIdentifier } from './certificate-encoder';
import { certificateParts } from './certificate-parts';
import { signAndRecord } from './issuance';
import { encodeName } from './name';
import { toPem } from './pem';

/**
 * signer-ca: the CA that certifies firmware signers, kept apart from the device-issuing CA so that a
 * device-issuing key can never make a code-signing certificate and a signer certificate is never a
 * device identity. It sits under the same root (made on first use; that one step needs the root key,
 * as `ca reissue-issuing` does). Its key is generated for role 'signer' (keys.roles.signer, else the
 * default token or a key file). It also counter-signs releases (ra/firmware-release.ts).
 */

/** SIGNER_CA_RECORD: the ca_state record of the signer CA ({name, keyRef, der}). */
export const SIGNER_CA_RECORD = 'signer-ca';
/** SIGNER_PROFILE: the profile name kept with signer certificates in the certificate store. */
export const SIGNER_PROFILE = 'firmware-signer';

/**
 * SIGNER_EKU: id-kp-codeSigning (RFC 5280 §4.2.1.12) says what the certificate is for; id-kp-emailProtection
 * is there because `openssl cms -verify` checks the S/MIME signing purpose by default and refuses a
 * certificate whose EKU lacks it ("unsupported certificate purpose").
 */
const SIGNER_EKU = ['1.3.6.1.5.5.7.3.3', '1.3.6.1.5.5.7.3.4'];

interface StoredSignerCa {
  name: string;
  keyRef: string;
  der: string;
}

/**
 * SignerCa: the signer CA's certificate and key, the root that issued it (after `ca rollover-root` not
 * necessarily the root in force), and `links`: the unexpired link certificates that certify that root's
 * key under another root of the CA (RFC 4210 §4.4: OldWithNew when the signer CA is under the new root,
 * NewWithOld when it is under the old one), so a device that trusts only the other root still reaches it.
 */
export interface SignerCa {
  name: string;
  der: Buffer;
  rootDer: Buffer;
  links: Buffer[];
  key: SigningKey;
}

type SignerCaStore = CaStateStore & AuditStore;

/** signerCaName: the signer CA's name, after the issuing CA's (ca/<name>.crt). */
const signerCaName = (cfg: Config): string => `${cfg.ca.issuing.name}-signers`;

/**
 * openSignerCa loads the signer CA, or creates it when the store has none: a new 'signer' key and a CA
 * certificate (pathLen 0) signed by the root key, stored by a create-only write (a concurrent creator
 * loses with 'conflict' and loads the winner's; its unused key is left behind, named in the audit log of
 * neither). The certificate is exported as ca/<name>.crt and ca/firmware-chain.pem.
 */
export async function openSignerCa(cfg: Config, keys: KeyBackend, store: SignerCaStore, now = new Date()): Promise<SignerCa> {
  const rec = await readCaRecord(cfg, store);
  if (!rec) throw new DeviceCaError('config', `no CA in ${cfg.store.path}; run \`device-ca init\` first`);
  const existing = await store.getCaState(SIGNER_CA_RECORD);
  if (existing) return loadSignerCa(cfg, keys, existing.value as StoredSignerCa, rec, now);
  const created = await createSignerCa(cfg, keys, store, rec, now);
  if (created) return created;
  return loadSignerCa(cfg, keys, (await store.getCaState(SIGNER_CA_RECORD))!.value as StoredSignerCa, rec, now);
}

/**
 * signerCaAnchors: the root that issued the signer CA certificate `der` (the one in force or a previous
 * one: a signer CA made before `ca rollover-root` stays under the old root until it expires) and the
 * unexpired link certificates whose subject is that root, i.e. that certify its key under another root,
 * each with that other root (`via`, for the chain file of a device that trusts only it).
 */
export function signerCaAnchors(rec: StoredCa, der: Buffer, now: Date): { rootDer: Buffer; links: Buffer[]; via: { rootName: string; rootDer: Buffer; link: Buffer }[] } {
  const root = issuerRootOf(rec, der);
  if (!root) throw new DeviceCaError('config', 'the signer CA certificate was issued by none of the roots of the CA record');
  const rootDer = Buffer.from(root.der, 'base64');
  const rootSubject = certificateParts(rootDer).subject;
  const links = (rec.links ?? [])
    .flatMap((l) => [l.oldWithNew, l.newWithOld])
    .map((b) => Buffer.from(b, 'base64'))
    .filter((d) => certificateParts(d).subject.equals(rootSubject) && new Date(new crypto.X509Certificate(d).validTo) > now);
  const via = links.flatMap((link) => {
    const other = issuerRootOf(rec, link);
    return other ? [{ rootName: other.name, rootDer: Buffer.from(other.der, 'base64'), link }] : [];
  });
  return { rootDer, links, via };
}

/** signerCaCertificate: the signer CA certificate when it exists, without opening any key. */
export async function signerCaCertificate(store: CaStateStore): Promise<Buffer | null> {
  const e = await store.getCaState(SIGNER_CA_RECORD);
  return e ? Buffer.from((e.value as StoredSignerCa).der, 'base64') : null;
}

async function loadSignerCa(cfg: Config, keys: KeyBackend, s: StoredSignerCa, rec: StoredCa, now: Date): Promise<SignerCa> {
  const der = Buffer.from(s.der, 'base64');
  const key = await keys.load(fromStoredRef(cfg.dataDir, s.keyRef));
  if (!key.spki.equals(certificateParts(der).spki)) throw new DeviceCaError('config', `signer CA key ${s.keyRef} does not match the signer CA certificate`);
  const { rootDer, links, via } = signerCaAnchors(rec, der, now);
  exportSignerCa(cfg, s.name, der, rootDer, via);
  return { name: s.name, der, rootDer, links, key };
}

async function createSignerCa(cfg: Config, keys: KeyBackend, store: SignerCaStore, rec: StoredCa, now: Date): Promise<SignerCa | null> {
  const rootDer = Buffer.from(rec.root.der, 'base64');
  const rootKey = await keys.load(fromStoredRef(cfg.dataDir, rec.root.keyRef));
  if (!rootKey.spki.equals(certificateParts(rootDer).spki)) throw new DeviceCaError('config', `root key ${rec.root.keyRef} does not match the root CA certificate`);
  const name = signerCaName(cfg);
  const stamp = now.toISOString().slice(0, 10).replace(/-/g, '') + '-' + crypto.randomBytes(3).toString('hex');
  const key = await keys.generate('signer', (cfg.ca.issuing.algorithm ?? cfg.ca.algorithm) as KeyAlgorithm, `${name}-${stamp}`);
  const der = await signCaCert({
    issuerKey: rootKey,
    issuerName: certificateParts(rootDer).subject,
    issuerKeyId: keyIdentifier(rootKey.spki),
    subjectName: encodeName([
      { type: 'O', value: cfg.ca.organization },
      { type: 'CN', value: `${cfg.ca.organization} Firmware Signer CA` },
    ]),
    spki: key.spki,
    validitySeconds: Math.min(cfg.ca.issuing.validity, cfg.ca.root.validity - 7200),
    pathLen: 0,
    now,
    rootUrls: rootUrlsOf(cfg, rec.root.name),
  });
  const value: StoredSignerCa = { name, keyRef: toStoredRef(cfg.dataDir, key.ref), der: der.toString('base64') };
  try {
    await store.saveCaState(SIGNER_CA_RECORD, value, 0, { type: 'ca.signer-ca.created', actor: 'device-ca', subject: name, data: { key: value.keyRef, root: rec.root.name } });
  } catch (e) {
    if (e instanceof DeviceCaError && e.code === 'conflict') return null;
    throw e;
  }
  const anchors = signerCaAnchors(rec, der, now);
  exportSignerCa(cfg, name, der, rootDer, anchors.via);
  return { name, der, rootDer, links: anchors.links, key };
}

/**
 * exportSignerCa writes ca/<name>.crt and ca/firmware-chain.pem (signer CA, the root that issued it): the
 * -CAfile for `openssl cms -verify` and the agent's --firmware-chain; after `ca rollover-root` also
 * ca/firmware-chain-<other root>.pem (signer CA, link certificate, that other root) for devices that trust
 * only the other root. A file whose bytes are already right is left alone.
 */
function exportSignerCa(cfg: Config, name: string, der: Buffer, rootDer: Buffer, via: { rootName: string; rootDer: Buffer; link: Buffer }[]): void {
  const files: [string, Buffer | string][] = [
    [`${name}.crt`, der],
    ['firmware-chain.pem', toPem(der, 'CERTIFICATE') + toPem(rootDer, 'CERTIFICATE')],
    ...via.map((v): [string, string] => [`firmware-chain-${v.rootName}.pem`, toPem(der, 'CERTIFICATE') + toPem(v.link, 'CERTIFICATE') + toPem(v.rootDer, 'CERTIFICATE')]),
  ];
  for (const [f, data] of files) {
    const file = path.join(caDir(cfg), f);
    try {
      if (fs.readFileSync(file).equals(Buffer.from(data))) continue;
    } catch {
      // missing: write it
    }
    writeFileAtomic(file, data);
  }
}

/**
 * issueSignerCertificate certifies a signer's key (from a CSR whose signature the caller checked) with a
 * code-signing certificate: subject O=<organization>, OU=<role>, CN=<name>; key usage digitalSignature;
 * EKU SIGNER_EKU. Recorded like every certificate (audit intent, sign, record) with issuer = signer CA.
 */
export async function issueSignerCertificate(
  cfg: Config,
  ca: SignerCa,
  store: Pick<CertificateStore, 'recordIssuance'> & Pick<AuditStore, 'appendAudit'>,
  req: { name: string; role: string; spki: Buffer; validitySeconds: number; actor: string },
  now = new Date(),
): Promise<{ serial: string; der: Buffer }> {
  const subject = encodeName([
    { type: 'O', value: cfg.ca.organization },
    { type: 'OU', value: req.role },
    { type: 'CN', value: req.name },
  ]);
  const caParts = certificateParts(ca.der);
  const issued = await signAndRecord(
    store,
    { spki: req.spki, profile: SIGNER_PROFILE },
    async () => {
      const serial = newSerial();
      const notBefore = new Date(Math.floor(now.getTime() / 1000) * 1000 - 300_000);
      const notAfter = new Date(Math.min(notBefore.getTime() + req.validitySeconds * 1000, new Date(new crypto.X509Certificate(ca.der).validTo).getTime()));
      const tbs = encodeTbs({
        serial,
        signatureAlgorithm: ca.key.signatureAlgorithm,
        issuer: caParts.subject,
        notBefore,
        notAfter,
        subject,
        spki: req.spki,
        extensions: [keyUsage([KU.digitalSignature]), extKeyUsage(SIGNER_EKU), subjectKeyIdentifier(keyIdentifier(req.spki)), authorityKeyIdentifier(keyIdentifier(caParts.spki))],
      });
      const der = assembleCertificate(tbs, ca.key.signatureAlgorithm, await ca.key.sign(tbs));
      return { der, serial: serial.toString('hex'), issuer: ca.name, notBefore, notAfter, shard: 0 };
    },
    {
      deviceId: null,
      subject: `O=${cfg.ca.organization}, OU=${req.role}, CN=${req.name}`,
      audit: { type: 'firmware.signer.certified', actor: req.actor, subject: `signer:${req.name}`, data: { role: req.role } },
    },
  );
  return { serial: issued.serial, der: issued.der };
}

/** releaseSigner: the signer CA as the CMS signer of releases, with the root for the chain. */
export function releaseSigner(ca: SignerCa): FirmwareSigner {
  return { certificate: ca.der, key: ca.key, chain: signerCaChain(ca) };
}

/**
 * signerCaChain: the certificates above the signer CA that a release or a device command carries: the
 * link certificates first, then the root. The order matters to openssl: a verifier looks an issuer up
 * among its trusted certificates first and then takes the first match among the message's, so one that
 * trusts only the other root must meet the link (same subject as the root) before the root itself.
 */
export const signerCaChain = (ca: SignerCa): Buffer[] => [...ca.links, ca.rootDer];

/** isSignedBy: the certificate's signature verifies with the CA certificate's key (the chain step to the signer CA). */
export function isSignedBy(certDer: Buffer, caDer: Buffer): boolean {
  try {
    const c = new crypto.X509Certificate(certDer);
    return c.checkIssued(new crypto.X509Certificate(caDer)) && c.verify(new crypto.X509Certificate(caDer).publicKey);
  } catch {
    return false;
  }
}
