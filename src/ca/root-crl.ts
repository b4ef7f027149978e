import * as crypto from 'node:crypto';
import { Tlv, children, decodeOid, readOne } from '../der/der-reader';
import { OID } from '../der/oids';
import { DeviceCaError } from '../errors/device-ca-error';
import { SigningKey } from '../keys/key-backend';
import { hashFor } from '../keys/signature-algorithm';
import { algorithmOfKey } from '../keys/software-key-backend';
import { AuditStore, CaStateStore } from '../store/store';
import { keyIdentifier } from './certificate-encoder';
import { certificateParts } from './certificate-parts';
import { CRL_REASON_CODES, CrlReason, RevokedEntry, encodeCrl } from './crl-encoder';

/**
 * root-crl: the root CA's CRL, which lists the CA certificates the root revoked (the issuing CA after a
 * compromise). It is signed only where the root key lives (at `init`, by `device-ca ca root-crl` and
 * `ca revoke-issuing`), possibly on an offline machine, so it is long-lived (ca.root.crlValidity,
 * default one year) and its bytes are what the store keeps: the CRL itself is the record of which CA
 * certificates are revoked, and a CRL signed elsewhere and imported carries its entries with it.
 * Relying parties that check every CRL in the chain (`openssl verify -crl_check_all`, FreeRADIUS
 * `check_all_crl = yes`) need it: without it they reject every device at depth 1.
 */

/** ROOT_CRL_RECORD names the store record holding the current root CRL (base64 DER). */
export const ROOT_CRL_RECORD = 'root-crl';

/** ROOT_CRL_WARN_BEFORE_MS: the service warns (log, metric, /healthz?detail) 30 days before the root CRL lapses. */
export const ROOT_CRL_WARN_BEFORE_MS = 30 * 86400_000;

/** rootCrlUrl: where the root CRL is served; the issuing CA certificate names it as its CRL distribution point. */
export function rootCrlUrl(base: string, rootName: string): string {
  return `${base}/crl/${rootName}.crl`;
}

/** RootCrlInfo: what a parsed root CRL says. */
export interface RootCrlInfo {
  der: Buffer;
  number: bigint;
  thisUpdate: Date;
  nextUpdate: Date;
  entries: RevokedEntry[];
}

const REASON_BY_CODE = new Map<number, CrlReason>(Object.entries(CRL_REASON_CODES).map(([k, v]) => [v, k as CrlReason]));

/**
 * signRootCrl signs a root CRL. The CRL number is the signing time in milliseconds: numbers must grow
 * (RFC 5280 §5.2.3) across machines that share no counter (the offline root machine and the server), and
 * a root CRL is signed at most a few times a year. It carries no issuingDistributionPoint (RFC 5280 §5.2.5
 * makes it optional): it is a full CRL for everything the root signed, and `openssl verify -crl_check_all`
 * checks the self-signed root too, which has no CRL distribution point, so a CRL whose IDP names one is
 * "different CRL scope" for it (OpenSSL crl_crldp_check) and every device would fail at depth 2.
 */
export async function signRootCrl(args: { rootKey: SigningKey; rootDer: Buffer; validitySeconds: number; entries: RevokedEntry[]; now?: Date; after?: bigint }): Promise<Buffer> {
  const now = args.now ?? new Date();
  const thisUpdate = new Date(Math.floor(now.getTime() / 1000) * 1000);
  const rootNotAfter = new Date(new crypto.X509Certificate(args.rootDer).validTo);
  let nextUpdate = new Date(thisUpdate.getTime() + args.validitySeconds * 1000);
  if (nextUpdate > rootNotAfter) nextUpdate = rootNotAfter;
  const parts = certificateParts(args.rootDer);
  if (!parts.spki.equals(args.rootKey.spki)) throw new DeviceCaError('config', 'the root key does not match the root CA certificate');
  return encodeCrl(
    {
      issuer: parts.subject,
      authorityKeyId: keyIdentifier(parts.spki),
      // after: the number of the CRL this one replaces, so a clock behind the last signer's still counts up
      crlNumber: args.after !== undefined && args.after >= BigInt(now.getTime()) ? args.after + 1n : BigInt(now.getTime()),
      thisUpdate,
      nextUpdate,
      signingKey: args.rootKey,
    },
    args.entries,
  );
}

/** readTime reads a UTCTime or GeneralizedTime (CRLs, and the root OCSP answer an offline machine made). */
export function readTime(t: Tlv): Date {
  const s = t.value.toString('latin1');
  let iso: string;
  if (t.tag === 0x17 && /^\d{12}Z$/.test(s))
    iso = `${Number(s.slice(0, 2)) >= 50 ? '19' : '20'}${s.slice(0, 2)}-${s.slice(2, 4)}-${s.slice(4, 6)}T${s.slice(6, 8)}:${s.slice(8, 10)}:${s.slice(10, 12)}Z`;
  else if (t.tag === 0x18 && /^\d{14}Z$/.test(s)) iso = `${s.slice(0, 4)}-${s.slice(4, 6)}-${s.slice(6, 8)}T${s.slice(8, 10)}:${s.slice(10, 12)}:${s.slice(12, 14)}Z`;
  else throw new DeviceCaError('bad-request', 'malformed CRL time');
  return new Date(iso);
}

/**
 * parseRootCrl checks that der is a CRL signed by the root CA certificate rootDer and returns what it
 * says. Used to import a root CRL made on the offline machine and to carry its entries into the next one.
 */
export function parseRootCrl(der: Buffer, rootDer: Buffer): RootCrlInfo {
  let info: RootCrlInfo;
  let tbs: Tlv;
  let sig: Tlv;
  const root = certificateParts(rootDer);
  try {
    const top = children(readOne(der, 0x30));
    if (top.length !== 3 || top[2].tag !== 0x03) throw new Error('not a CertificateList');
    tbs = top[0];
    sig = top[2];
    const f = children(tbs, 10);
    let i = f[0].tag === 0x02 ? 1 : 0; // version
    i++; // signature AlgorithmIdentifier
    const issuer = f[i++];
    if (!issuer.full.equals(root.subject)) throw new Error('its issuer is not the root CA');
    const thisUpdate = readTime(f[i++]);
    const nextUpdate = f[i] && (f[i].tag === 0x17 || f[i].tag === 0x18) ? readTime(f[i++]) : undefined;
    if (!nextUpdate) throw new Error('no nextUpdate');
    const entries: RevokedEntry[] = [];
    if (f[i] && f[i].tag === 0x30) {
      for (const e of children(f[i++], 100_000)) {
        const [serial, at, exts] = children(e, 3);
        let reason: CrlReason | undefined;
        for (const x of exts ? children(exts) : []) {
          const [id, value] = children(x);
          if (decodeOid(id) === OID.cRLReason) reason = REASON_BY_CODE.get(readOne(value.value).value[0]);
        }
        entries.push({ serial: serial.value.toString('hex').replace(/^00(?=.)/, ''), revokedAt: readTime(at), reason });
      }
    }
    let number: bigint | undefined;
    if (f[i] && f[i].tag === 0xa0) {
      for (const x of children(readOne(f[i].value))) {
        const [id, value] = children(x);
        if (decodeOid(id) === OID.cRLNumber) number = BigInt('0x' + (readOne(value.value).value.toString('hex') || '0'));
      }
    }
    if (number === undefined) throw new Error('no cRLNumber');
    info = { der: Buffer.from(der), number, thisUpdate, nextUpdate, entries };
  } catch (e) {
    throw new DeviceCaError('bad-request', `not a root CRL of this CA: ${(e as Error).message}`);
  }
  const key = crypto.createPublicKey({ key: root.spki, format: 'der', type: 'spki' });
  const signature = sig.value.subarray(1);
  if (!crypto.verify(hashFor(algorithmOfKey(key)), tbs.full, key, signature)) throw new DeviceCaError('bad-request', 'not a root CRL of this CA: the signature does not verify with the root key');
  return info;
}

/** StoredRootCrl: the current root CRL as the store keeps it. */
interface StoredRootCrl {
  der: string;
}

/**
 * readRootCrl returns the root CRL in the store; null when none was made yet (an installation older than
 * issue 15). record: the root's CRL record (rootCrlRecordOf; each root of a rollover has its own).
 */
export async function readRootCrl(store: CaStateStore, rootDer: Buffer, record = ROOT_CRL_RECORD): Promise<RootCrlInfo | null> {
  const e = await store.getCaState(record);
  return e ? parseRootCrl(Buffer.from((e.value as StoredRootCrl).der, 'base64'), rootDer) : null;
}

/**
 * saveRootCrl stores a root CRL signed by the root (made here or imported), refusing one that is not newer
 * than the one in the store: an older CRL could drop a revoked issuing CA. Compare-and-set, audited.
 */
export async function saveRootCrl(store: CaStateStore & AuditStore, rootDer: Buffer, der: Buffer, actor: string, how: 'signed' | 'imported', record = ROOT_CRL_RECORD): Promise<RootCrlInfo> {
  const info = parseRootCrl(der, rootDer);
  const cur = await store.getCaState(record);
  if (cur) {
    const old = parseRootCrl(Buffer.from((cur.value as StoredRootCrl).der, 'base64'), rootDer);
    if (info.number <= old.number) throw new DeviceCaError('conflict', `the root CRL in the store (number ${old.number}) is as new as or newer than this one (number ${info.number})`);
  }
  await store.saveCaState(record, { der: info.der.toString('base64') } satisfies StoredRootCrl, cur?.version ?? 0, {
    type: `root-crl.${how}`,
    actor,
    subject: record,
    data: { number: info.number.toString(), nextUpdate: info.nextUpdate.toISOString(), revoked: info.entries.map((e) => String(e.serial)) },
  });
  return info;
}

/** rootCrlWarning: the /healthz?detail and log line when the root CRL is missing or lapses within 30 days; null when fine. */
export function rootCrlWarning(info: RootCrlInfo | null, rootName: string, now = new Date()): string | null {
  if (!info)
    return `no root CRL in the store for ${rootName}: relying parties that check every CRL (openssl -crl_check_all, FreeRADIUS check_all_crl) reject every device; run \`device-ca ca root-crl --root ${rootName}\` where the root key is`;
  const left = info.nextUpdate.getTime() - now.getTime();
  if (left > ROOT_CRL_WARN_BEFORE_MS) return null;
  return `the root CRL of ${rootName} ${left <= 0 ? 'lapsed' : 'lapses'} at ${info.nextUpdate.toISOString()}: run \`device-ca ca root-crl --root ${rootName}\` where the root key is`;
}
