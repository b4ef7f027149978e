import * as crypto from 'node:crypto';
import { children, readOne } from '../der/der-reader';
import { DeviceCaError } from '../errors/device-ca-error';
import { SigningKey } from '../keys/key-backend';
import { hashFor } from '../keys/signature-algorithm';
import { algorithmOfKey } from '../keys/software-key-backend';
import { CaStateStore } from '../store/store';
import { StoredCa, StoredRoot } from './ca-hierarchy';
import { certificateParts } from './certificate-parts';
import { RevokedEntry } from './crl-encoder';
import { readTime } from './root-crl';
import { OcspHashName, OcspResponder, OcspSingleResponse, certIdHashes, encodeCertId } from './ocsp-codec';

/** ROOT_OCSP_RECORD names the store record of the root-signed OCSP response for the issuing CA certificates. */
export const ROOT_OCSP_RECORD = 'root-ocsp';

/** StoredRootOcsp: the response (base64 DER), the serials (hex) it answers for and when it lapses. */
export interface StoredRootOcsp {
  der: string;
  serials: string[];
  nextUpdate: string;
}

/** ROOT_OCSP_HASHES: CertID hash algorithms answered (openssl asks with SHA-1 by default, others with SHA-256). */
const ROOT_OCSP_HASHES: OcspHashName[] = ['sha1', 'sha256'];

const hex = (s: string): string => s.toLowerCase().replace(/^0+(?=.)/, '');

/**
 * signRootOcsp makes the OCSP answer for the CA certificates the root signed (every issuing CA certificate
 * the record names: in force, next, retired, and the ones reissue-issuing replaced): one BasicOCSPResponse
 * signed by the root key itself (RFC 6960 §4.2.2.2: the CA that issued the certificates), with a
 * SingleResponse per certificate and CertID hash, revoked when the root CRL lists it, good otherwise.
 * The root key signs only where it is (init, `ca root-crl`, `ca revoke-issuing`, `ca rollover`,
 * `ca reissue-issuing`), so the response is pre-signed and lives as long as the root CRL signed with it.
 * A single pre-signed response answers every request, so it carries no nonce (RFC 5019 §2.2.1 allows that).
 * root: the root answering (default the one in force); after `ca rollover-root` each root answers only for
 * the issuing CA certificates it signed itself.
 */
export async function signRootOcsp(args: { rootKey: SigningKey; rec: StoredCa; root?: StoredRoot; entries: RevokedEntry[]; thisUpdate: Date; nextUpdate: Date }): Promise<StoredRootOcsp> {
  const rootDer = Buffer.from((args.root ?? args.rec.root).der, 'base64');
  const root = certificateParts(rootDer);
  const issuing = [args.rec.issuing, ...(args.rec.next ? [args.rec.next] : []), ...(args.rec.retired ?? [])].filter((i) => certificateParts(Buffer.from(i.der, 'base64')).issuer.equals(root.subject));
  const serials = [...new Set(issuing.flatMap((i) => [certificateParts(Buffer.from(i.der, 'base64')).serial, ...(i.replaced ?? [])].map(hex)))];
  const revoked = new Map(args.entries.map((e) => [hex(String(e.serial)), e]));
  const singles: OcspSingleResponse[] = [];
  for (const hash of ROOT_OCSP_HASHES) {
    const h = certIdHashes(root.subject, root.spki, hash);
    for (const serialNumber of serials) {
      const r = revoked.get(serialNumber);
      const certId = encodeCertId({ hash, ...h, serialNumber });
      singles.push({
        ...(r ? { status: 'revoked' as const, revokedAt: r.revokedAt, reason: r.reason } : { status: 'good' as const }),
        certId,
        thisUpdate: args.thisUpdate,
        nextUpdate: args.nextUpdate,
      });
    }
  }
  const der = await new OcspResponder(args.rootKey, rootDer).respond(singles, { producedAt: args.thisUpdate });
  return { der: der.toString('base64'), serials, nextUpdate: args.nextUpdate.toISOString() };
}

/** ParsedRootOcsp: what a root-signed OCSP answer says: the serials it covers (hex), those it says revoked, when it lapses. */
export interface ParsedRootOcsp {
  serials: string[];
  revoked: string[];
  nextUpdate: Date;
}

/**
 * parseRootOcsp checks that der is an OCSPResponse (successful, BasicOCSPResponse) signed by the root key
 * of rootDer, whose every SingleResponse names that root as issuer (RFC 6960 §4.1.1 CertID, SHA-1 or
 * SHA-256) and has a nextUpdate, and returns what it says. Used to import the answer an offline root
 * machine signed beside its root CRL (`ca root-crl --import`), and to read the stored one back.
 */
export function parseRootOcsp(der: Buffer, rootDer: Buffer): ParsedRootOcsp {
  const root = certificateParts(rootDer);
  const ids = ROOT_OCSP_HASHES.map((h) => certIdHashes(root.subject, root.spki, h));
  let tbs: Buffer;
  let signature: Buffer;
  const out: ParsedRootOcsp = { serials: [], revoked: [], nextUpdate: new Date(8.64e15) };
  try {
    const [status, bytes] = children(readOne(der, 0x30), 2);
    if (status.tag !== 0x0a || status.value[0] !== 0 || bytes?.tag !== 0xa0) throw new Error('not a successful OCSP response');
    const [, basicOctets] = children(readOne(bytes.value, 0x30), 2);
    const basic = children(readOne(basicOctets.value, 0x30), 4);
    if (basic.length < 3 || basic[2].tag !== 0x03) throw new Error('not a BasicOCSPResponse');
    tbs = basic[0].full;
    signature = basic[2].value.subarray(1);
    const f = children(basic[0], 5);
    const responses = f[f[0].tag === 0xa0 ? 3 : 2];
    if (responses?.tag !== 0x30) throw new Error('no responses');
    for (const single of children(responses, 10_000)) {
      const [certId, certStatus, , ...rest] = children(single, 5);
      const [, nameHash, keyHash, serial] = children(certId, 4);
      if (!ids.some((h) => h.issuerNameHash.equals(nameHash.value) && h.issuerKeyHash.equals(keyHash.value))) throw new Error('a response names another issuer than the root');
      const next = rest.find((x) => x.tag === 0xa0);
      if (!next) throw new Error('a response without nextUpdate');
      const s = hex(serial.value.toString('hex'));
      if (!out.serials.includes(s)) out.serials.push(s);
      if (certStatus.tag === 0xa1 && !out.revoked.includes(s)) out.revoked.push(s);
      else if (certStatus.tag !== 0x80 && certStatus.tag !== 0xa1) throw new Error('a response that is neither good nor revoked');
      const nu = readTime(readOne(next.value));
      if (nu < out.nextUpdate) out.nextUpdate = nu;
    }
    if (!out.serials.length) throw new Error('no responses');
  } catch (e) {
    throw new DeviceCaError('bad-request', `not a root OCSP response of this CA: ${(e as Error).message}`);
  }
  const key = crypto.createPublicKey({ key: root.spki, format: 'der', type: 'spki' });
  if (!crypto.verify(hashFor(algorithmOfKey(key)), tbs, key, signature)) throw new DeviceCaError('bad-request', 'not a root OCSP response of this CA: the signature does not verify with the root key');
  return out;
}

/** saveRootOcsp stores the response (last writer wins: each is made from the record and root CRL of its time); record: the root's (rootOcspRecordOf). */
export async function saveRootOcsp(store: CaStateStore, value: StoredRootOcsp, record = ROOT_OCSP_RECORD): Promise<void> {
  for (;;) {
    const cur = await store.getCaState(record);
    try {
      await store.saveCaState(record, value, cur?.version ?? 0);
      return;
    } catch (e) {
      if (!(e instanceof DeviceCaError && e.code === 'conflict')) throw e;
    }
  }
}

type CertIdHashes = Record<OcspHashName, { issuerNameHash: Buffer; issuerKeyHash: Buffer }>;

/**
 * RootOcspSource answers OCSP requests whose CertIDs name a root as issuer, from the stored response:
 * the service never holds a root key. After `ca rollover-root` there are several roots, each with its own
 * stored response (roots() is read on every request, so a root added while serving is answered for).
 */
export class RootOcspSource {
  private readonly byDer = new Map<string, CertIdHashes>();
  private readonly roots: () => { der: Buffer; record: string }[];

  constructor(
    roots: Buffer | (() => { der: Buffer; record: string }[]),
    private readonly store: Pick<CaStateStore, 'getCaState'>,
  ) {
    this.roots = Buffer.isBuffer(roots) ? () => [{ der: roots, record: ROOT_OCSP_RECORD }] : roots;
  }

  private hashesOf(der: Buffer): CertIdHashes {
    const key = der.toString('base64');
    let v = this.byDer.get(key);
    if (!v) {
      const p = certificateParts(der);
      const h = (alg: OcspHashName) => certIdHashes(p.subject, p.spki, alg);
      v = { sha1: h('sha1'), sha256: h('sha256'), sha384: h('sha384'), sha512: h('sha512') };
      this.byDer.set(key, v);
    }
    return v;
  }

  /** rootOf: the root a CertID names as issuer, or undefined. */
  private rootOf(id: { hash: OcspHashName; issuerNameHash: Buffer; issuerKeyHash: Buffer }): { der: Buffer; record: string } | undefined {
    return this.roots().find((r) => {
      const h = this.hashesOf(r.der)[id.hash];
      return h.issuerNameHash.equals(id.issuerNameHash) && h.issuerKeyHash.equals(id.issuerKeyHash);
    });
  }

  /** names: does this CertID name a root as issuer? */
  names(id: { hash: OcspHashName; issuerNameHash: Buffer; issuerKeyHash: Buffer }): boolean {
    return this.rootOf(id) !== undefined;
  }

  /**
   * answer: the stored response of the root the CertID names (id; default the first root) when it covers
   * every serial asked for and has not lapsed; otherwise 'not-found' (OCSP unauthorized), as for any
   * certificate this responder cannot vouch for.
   */
  async answer(serials: string[], now: Date, id?: { hash: OcspHashName; issuerNameHash: Buffer; issuerKeyHash: Buffer }): Promise<{ der: Buffer; nextUpdate: Date }> {
    const root = id ? this.rootOf(id) : this.roots()[0];
    const e = root ? await this.store.getCaState(root.record) : null;
    const v = e?.value as StoredRootOcsp | undefined;
    if (!v || new Date(v.nextUpdate) <= now || !serials.every((s) => v.serials.includes(hex(s)))) throw new DeviceCaError('not-found', 'no current root-signed OCSP response for this CA certificate');
    return { der: Buffer.from(v.der, 'base64'), nextUpdate: new Date(v.nextUpdate) };
  }
}

/** rootOcspEtag: the ETag of a stored response (its SHA-1), for RFC 5019 GET caching. */
export function rootOcspEtag(der: Buffer): string {
  return '"' + crypto.createHash('sha1').update(der).digest('hex') + '"';
}
