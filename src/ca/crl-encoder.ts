import { once } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import {
  BOOLEAN_TRUE,
  contextExplicit,
  contextImplicitConstructed,
  contextImplicitPrimitive,
  derHeaderSize,
  integer,
  integerFromBigInt,
  oid,
  seq,
  time,
  writeGeneralizedTime,
  writeHeader,
} from '../der/der-writer';
import { OID } from '../der/oids';
import { fsyncDirectoryAsync, withTemporaryPath } from '../data-dir/atomic-file';
import { DeviceCaError } from '../errors/device-ca-error';
import { SigningKey } from '../keys/key-backend';
import { authorityKeyIdentifier, extension } from './certificate-encoder';

/**
 * crl-encoder: a streaming, direct DER encoder for X.509 v2 CRLs (RFC 5280 §5). A CRL shard may hold a
 * million entries; @peculiar/x509 needs seconds for ten thousand and asn1js refuses two thousand on
 * parse (INTEROP.md), so each revokedCertificate is written byte by byte into one growing buffer that
 * already has room in front for the TBS header and behind for the signature. The TBS is signed in place
 * and the CRL is a view of that same buffer: no per-entry objects are kept and nothing is copied at the
 * end. test/unit/ca/crl-encoder.test.ts proves it byte-equal to @peculiar/x509 and has openssl verify it.
 */

/** CRL_REASON_CODES: RFC 5280 §5.3.1 CRLReason values (7 is unused). */
export const CRL_REASON_CODES = {
  unspecified: 0,
  keyCompromise: 1,
  cACompromise: 2,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5,
  certificateHold: 6,
  removeFromCRL: 8,
  privilegeWithdrawn: 9,
  aACompromise: 10,
} as const;
export type CrlReason = keyof typeof CRL_REASON_CODES;

const REASON_MAP = new Map<string, number>(Object.entries(CRL_REASON_CODES));

/** crlReasonCode returns the CRLReason number of a name, or undefined for a name RFC 5280 does not define. */
export function crlReasonCode(reason: string): number | undefined {
  return REASON_MAP.get(reason);
}

/** HEX_VALUE maps an ASCII code to its hex digit value, -1 for anything else (Buffer.write(hex) costs ~0.3 µs a call). */
const HEX_VALUE = new Int8Array(256).fill(-1);
for (let i = 0; i < 10; i++) HEX_VALUE[48 + i] = i;
for (let i = 0; i < 6; i++) HEX_VALUE[65 + i] = HEX_VALUE[97 + i] = 10 + i;

/**
 * RevokedEntry is one revokedCertificate. certificateHold and removeFromCRL (delta CRL) semantics are the
 * caller's: the encoder writes what it is given.
 */
export interface RevokedEntry {
  /** serial: the positive serial as its big-endian magnitude, or as hex (any case, leading zeros allowed). */
  serial: Buffer | string;
  revokedAt: Date;
  /** reason: RFC 5280 §5.3.1; 'unspecified' and undefined both omit the reasonCode extension. */
  reason?: CrlReason;
  /** invalidityDate: RFC 5280 §5.3.2, when the key is known or suspected to have been compromised. */
  invalidityDate?: Date;
}

/**
 * RevokedEntrySource: entries one by one or in batches (arrays), sync or async. A store that pages through
 * its revocations should yield pages: one await per page instead of one per entry.
 */
export type RevokedEntrySource = Iterable<RevokedEntry | readonly RevokedEntry[]> | AsyncIterable<RevokedEntry | readonly RevokedEntry[]>;

/** IssuingDistributionPoint: RFC 5280 §5.2.5, always written critical. */
export interface IssuingDistributionPoint {
  /** url: the fullName URI; must equal the distributionPoint URI in the certificates this CRL covers. */
  url: string;
  onlyContainsUserCerts?: boolean;
  onlyContainsCACerts?: boolean;
}

export interface CrlParams {
  /** issuer: DER Name of the CA (its certificate's subject, byte for byte). */
  issuer: Buffer;
  /** authorityKeyId: the CA's subjectKeyIdentifier. */
  authorityKeyId: Buffer;
  /** crlNumber: RFC 5280 §5.2.3, monotonically increasing per CRL scope, at most 20 octets. */
  crlNumber: bigint;
  thisUpdate: Date;
  /** nextUpdate: RFC 5280 §5.1.2.5 requires it; relying parties reject everything after it. */
  nextUpdate: Date;
  /** issuingDistributionPoint: a URL, or the full IDP; omitted when undefined. */
  issuingDistributionPoint?: string | IssuingDistributionPoint;
  signingKey: SigningKey;
  /** expectedEntries: a size hint (e.g. from COUNT(*)) so the buffer is allocated once instead of grown. */
  expectedEntries?: number;
}

export interface EncodedCrl {
  /** der: the CertificateList. A view of a buffer that may have up to 2x capacity; untouched pages are not resident. */
  der: Buffer;
  /** tbs: the signed TBSCertList, a view into der. */
  tbs: Buffer;
  /** entries: the number of revokedCertificates written. */
  entries: number;
}

const V2 = integer(1); // RFC 5280 §5.1.2.1: v2 when extensions are present
const OID_CRL_NUMBER = oid(OID.cRLNumber);
const OID_IDP = oid(OID.issuingDistributionPoint);
// Extension { extnID cRLReason, extnValue OCTET STRING { ENUMERATED } }, the code appended
const REASON_EXT_PREFIX = Buffer.from([0x30, 0x0a, 0x06, 0x03, 0x55, 0x1d, 0x15, 0x04, 0x03, 0x0a, 0x01]);
// Extension { extnID invalidityDate, extnValue OCTET STRING { GeneralizedTime(15) } }, the time appended
const INVALIDITY_EXT_PREFIX = Buffer.from([0x30, 0x18, 0x06, 0x03, 0x55, 0x1d, 0x18, 0x04, 0x11, 0x18, 0x0f]);
const REASON_EXT_LEN = REASON_EXT_PREFIX.length + 1; // 12
const INVALIDITY_EXT_LEN = INVALIDITY_EXT_PREFIX.length + 15; // 26
/** MAX_SERIAL_OCTETS: RFC 5280 §4.1.2.2 allows 20 octets; one more for a leading zero. */
const MAX_SERIAL_OCTETS = 21;
/** MAX_ENTRY: header 2 + serial 23 + GeneralizedTime 17 + extensions 2 + 12 + 26; always a short-form length */
const MAX_ENTRY = 2 + 2 + MAX_SERIAL_OCTETS + 17 + 2 + REASON_EXT_LEN + INVALIDITY_EXT_LEN;
/** SIGNATURE_SLACK: room behind the TBS for the BIT STRING header and a signature of any key we support. */
const SIGNATURE_SLACK = 1100;
const HEADER_MAX = 6;
const UTC_FROM = Date.UTC(1950, 0, 1);
const UTC_UNTIL = Date.UTC(2050, 0, 1);
const GENERALIZED_FROM = -62_167_219_200_000; // 0000-01-01T00:00:00Z (Date.UTC maps years 0..99 to 19xx)
const GENERALIZED_UNTIL = Date.UTC(10000, 0, 1);

function badEntry(what: string): never {
  throw new DeviceCaError('internal', 'invalid CRL entry', { detail: what });
}

/**
 * RevokedListWriter appends DER revokedCertificates to a buffer that keeps `reserve` bytes free in
 * front. It is the per-entry hot path: no allocation per entry except a hex string's decode.
 */
class RevokedListWriter {
  buf: Buffer;
  pos: number;
  count = 0;
  private readonly scratch = Buffer.alloc(32);
  // the date part (YYMMDD or YYYYMMDD) of the last day seen: revocations cluster in time
  private lastDay = NaN;
  private readonly dayDigits = Buffer.alloc(8);

  constructor(
    readonly reserve: number,
    expectedEntries: number,
  ) {
    // zero-filled, not allocUnsafe: der is a view, and the rest of its ArrayBuffer must not hold stale heap
    // bytes. Large calloc'd blocks are fresh zero pages, so this costs nothing and untouched capacity stays non-resident.
    this.buf = Buffer.alloc(reserve + Math.max(4096, Math.ceil(expectedEntries * 50)) + SIGNATURE_SLACK);
    this.pos = reserve;
  }

  ensure(extra: number): void {
    if (this.pos + extra <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.pos + extra) cap *= 2;
    const next = Buffer.alloc(cap);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  add(e: RevokedEntry): void {
    // serial: find the magnitude's significant octets
    let src: Buffer;
    let start = 0;
    let end: number;
    const s = e.serial;
    if (typeof s === 'string') {
      end = decodeHex(s, this.scratch);
      if (end < 0) badEntry(`serial ${JSON.stringify(s)} is not hex of at most 20 octets`);
      src = this.scratch;
    } else if (Buffer.isBuffer(s) && s.length > 0) {
      src = s;
      end = s.length;
    } else return badEntry('serial must be a non-empty Buffer or hex string');
    while (start < end - 1 && src[start] === 0) start++;
    const pad = src[start] & 0x80 ? 1 : 0;
    const serialLen = end - start + pad;
    if (serialLen > MAX_SERIAL_OCTETS) badEntry(`serial ${src.subarray(start, end).toString('hex')} is longer than 20 octets`);

    const revokedAt = e.revokedAt;
    const t = revokedAt instanceof Date ? revokedAt.getTime() : NaN;
    if (Number.isNaN(t)) badEntry('revokedAt must be a valid Date');
    const utc = t >= UTC_FROM && t < UTC_UNTIL; // RFC 5280 §5.1.2.6 -> §4.1.2.5: UTCTime for 1950..2049
    if (!utc && (t < GENERALIZED_FROM || t >= GENERALIZED_UNTIL)) badEntry('revokedAt out of range');

    let code = 0;
    if (e.reason !== undefined && e.reason !== 'unspecified') {
      // RFC 5280 §5.3.1: reasonCode unspecified SHOULD be absent
      const c = crlReasonCode(e.reason);
      if (c === undefined) badEntry(`unknown reason ${JSON.stringify(e.reason)}`);
      code = c;
    }
    const inv = e.invalidityDate;
    if (inv !== undefined) {
      const it = inv instanceof Date ? inv.getTime() : NaN;
      if (!(it >= GENERALIZED_FROM && it < GENERALIZED_UNTIL)) badEntry('invalidityDate must be a valid Date');
    }
    const extLen = (code ? REASON_EXT_LEN : 0) + (inv ? INVALIDITY_EXT_LEN : 0);
    const contentLen = 2 + serialLen + (utc ? 15 : 17) + (extLen ? 2 + extLen : 0);

    if (this.pos + MAX_ENTRY > this.buf.length) this.ensure(MAX_ENTRY);
    const b = this.buf;
    let p = this.pos;
    b[p++] = 0x30;
    b[p++] = contentLen;
    b[p++] = 0x02;
    b[p++] = serialLen;
    if (pad) b[p++] = 0;
    for (let i = start; i < end; i++) b[p++] = src[i];
    p = utc ? this.writeUtcTime(b, p, t) : writeGeneralizedTime(b, p, revokedAt);
    if (extLen) {
      b[p++] = 0x30;
      b[p++] = extLen;
      if (code) {
        for (let i = 0; i < REASON_EXT_PREFIX.length; i++) b[p++] = REASON_EXT_PREFIX[i];
        b[p++] = code;
      }
      if (inv) {
        // RFC 5280 §5.3.2: InvalidityDate ::= GeneralizedTime, whatever the year
        for (let i = 0; i < INVALIDITY_EXT_PREFIX.length - 2; i++) b[p++] = INVALIDITY_EXT_PREFIX[i];
        p = writeGeneralizedTime(b, p, inv);
      }
    }
    this.pos = p;
    this.count++;
  }

  /** writeUtcTime writes a UTCTime TLV (YYMMDDHHMMSSZ) for epoch ms t (1950..2049), the date part cached per day. */
  private writeUtcTime(b: Buffer, p: number, t: number): number {
    const day = Math.floor(t / 86_400_000);
    if (day !== this.lastDay) {
      const d = new Date(day * 86_400_000);
      digits2(this.dayDigits, 0, d.getUTCFullYear() % 100);
      digits2(this.dayDigits, 2, d.getUTCMonth() + 1);
      digits2(this.dayDigits, 4, d.getUTCDate());
      this.lastDay = day;
    }
    const dd = this.dayDigits;
    b[p] = 0x17;
    b[p + 1] = 13;
    b[p + 2] = dd[0];
    b[p + 3] = dd[1];
    b[p + 4] = dd[2];
    b[p + 5] = dd[3];
    b[p + 6] = dd[4];
    b[p + 7] = dd[5];
    const secs = Math.floor((t - day * 86_400_000) / 1000);
    digits2(b, p + 8, (secs / 3600) | 0);
    digits2(b, p + 10, ((secs / 60) | 0) % 60);
    digits2(b, p + 12, secs % 60);
    b[p + 14] = 0x5a; // Z
    return p + 15;
  }
}

/** decodeHex decodes a hex string (odd length: an implied leading 0) into out; -1 if not hex or too long. */
function decodeHex(s: string, out: Buffer): number {
  const n = s.length;
  const odd = n & 1;
  const len = (n + odd) >> 1;
  if (n === 0 || len > out.length) return -1;
  let i = 0;
  let o = 0;
  if (odd) {
    const v = HEX_VALUE[s.charCodeAt(0) & 0xff];
    if (v < 0 || s.charCodeAt(0) > 0xff) return -1;
    out[o++] = v;
    i = 1;
  }
  for (; i < n; i += 2) {
    const c1 = s.charCodeAt(i);
    const c2 = s.charCodeAt(i + 1);
    const hi = HEX_VALUE[c1 & 0xff];
    const lo = HEX_VALUE[c2 & 0xff];
    if (hi < 0 || lo < 0 || (c1 | c2) > 0xff) return -1;
    out[o++] = (hi << 4) | lo;
  }
  return len;
}

function digits2(b: Buffer, p: number, n: number): void {
  b[p] = 48 + ((n / 10) | 0);
  b[p + 1] = 48 + (n % 10);
}

/** issuingDistributionPoint encodes the IDP extension: RFC 5280 §5.2.5, critical, fullName URI. */
export function issuingDistributionPoint(idp: string | IssuingDistributionPoint): Buffer {
  const p = typeof idp === 'string' ? { url: idp } : idp;
  const uri = contextImplicitPrimitive(6, Buffer.from(p.url, 'ascii'));
  // distributionPoint [0] DistributionPointName (a CHOICE, so the tag is constructed) { fullName [0] GeneralNames }
  const fields = [contextImplicitConstructed(0, contextImplicitConstructed(0, uri))];
  if (p.onlyContainsUserCerts) fields.push(contextImplicitPrimitive(1, BOOLEAN_TRUE.subarray(2)));
  if (p.onlyContainsCACerts) fields.push(contextImplicitPrimitive(2, BOOLEAN_TRUE.subarray(2)));
  return extension(OID_IDP, seq(...fields), true);
}

/** crlNumberExtension encodes cRLNumber (RFC 5280 §5.2.3, non-critical, 0..2^159). */
export function crlNumberExtension(n: bigint): Buffer {
  if (typeof n !== 'bigint' || n < 0n || n >= 1n << 159n) throw new DeviceCaError('internal', 'crlNumber out of range');
  return extension(OID_CRL_NUMBER, integerFromBigInt(n));
}

function isAsync(src: RevokedEntrySource): src is AsyncIterable<RevokedEntry | readonly RevokedEntry[]> {
  return typeof (src as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function';
}

/**
 * encodeCrlStream builds and signs a CRL from a stream of entries in one pass, holding only the encoded
 * bytes (about 47 per entry with a reason, 35 without). The signature is the key's sign() over the
 * TBS in place. Entry order is kept as given (openssl sorts by serial; RFC 5280 does not require it).
 */
export async function encodeCrlStream(params: CrlParams, entries: RevokedEntrySource): Promise<EncodedCrl> {
  const key = params.signingKey;
  const sigAlg = key.signatureAlgorithm;
  const { thisUpdate, nextUpdate } = params;
  if (!(thisUpdate instanceof Date) || !(nextUpdate instanceof Date) || !(nextUpdate.getTime() > thisUpdate.getTime())) throw new DeviceCaError('internal', 'CRL nextUpdate must be after thisUpdate');
  const exts = [authorityKeyIdentifier(params.authorityKeyId), crlNumberExtension(params.crlNumber)];
  if (params.issuingDistributionPoint !== undefined) exts.push(issuingDistributionPoint(params.issuingDistributionPoint));
  const crlExtensions = contextExplicit(0, seq(...exts));
  // version, signature, issuer, thisUpdate, nextUpdate: everything in front of revokedCertificates
  const prefix = Buffer.concat([V2, sigAlg, params.issuer, time(thisUpdate), time(nextUpdate)]);
  const reserve = HEADER_MAX /* CertificateList */ + HEADER_MAX /* TBSCertList */ + prefix.length + HEADER_MAX; /* revokedCertificates */

  const w = new RevokedListWriter(reserve, Math.max(0, params.expectedEntries ?? 0));
  if (isAsync(entries)) {
    for await (const item of entries) {
      if (Array.isArray(item)) for (const e of item as readonly RevokedEntry[]) w.add(e);
      else w.add(item as RevokedEntry);
    }
  } else {
    for (const item of entries) {
      if (Array.isArray(item)) for (const e of item as readonly RevokedEntry[]) w.add(e);
      else w.add(item as RevokedEntry);
    }
  }

  // Room for extensions and the signature first: growing later would move the TBS being signed.
  w.ensure(crlExtensions.length + sigAlg.length + SIGNATURE_SLACK);
  let buf = w.buf;
  const entriesLen = w.pos - reserve;
  let start = reserve;
  if (w.count > 0) {
    // RFC 5280 §5.1.2.6: with no revoked certificates the list MUST be absent, not empty
    start -= derHeaderSize(entriesLen);
    writeHeader(buf, start, 0x30, entriesLen);
  }
  start -= prefix.length;
  prefix.copy(buf, start);
  crlExtensions.copy(buf, w.pos);
  let end = w.pos + crlExtensions.length;
  const tbsStart = start - derHeaderSize(end - start);
  writeHeader(buf, tbsStart, 0x30, end - start);
  const tbsEnd = end;

  const signature = await key.sign(buf.subarray(tbsStart, tbsEnd));

  const trailerLen = sigAlg.length + derHeaderSize(signature.length + 1) + 1 + signature.length;
  if (end + trailerLen > buf.length) {
    w.pos = end;
    w.ensure(trailerLen);
    buf = w.buf;
  }
  sigAlg.copy(buf, end);
  end = writeHeader(buf, end + sigAlg.length, 0x03, signature.length + 1);
  buf[end++] = 0; // no unused bits
  signature.copy(buf, end);
  end += signature.length;
  const outerStart = tbsStart - derHeaderSize(end - tbsStart);
  writeHeader(buf, outerStart, 0x30, end - tbsStart);
  return { der: buf.subarray(outerStart, end), tbs: buf.subarray(tbsStart, tbsEnd), entries: w.count };
}

/** encodeCrl is encodeCrlStream for entries already in memory; it returns the DER CertificateList. */
export async function encodeCrl(params: CrlParams, entries: Iterable<RevokedEntry>): Promise<Buffer> {
  return (await encodeCrlStream(params, entries)).der;
}

const PEM_CHUNK = 48 * 1024; // a multiple of 3 (no base64 padding inside) and of 48 (whole 64-column lines)

/**
 * crlPemChunks yields the PEM text of a CRL piece by piece so a 50 MB CRL never becomes one 67 MB string.
 * The label is `X509 CRL`: openssl rejects the `CRL` label @peculiar/x509 writes (INTEROP.md).
 */
export function* crlPemChunks(der: Buffer): Generator<string> {
  yield '-----BEGIN X509 CRL-----\n';
  for (let off = 0; off < der.length; off += PEM_CHUNK) {
    const b64 = der.toString('base64', off, Math.min(off + PEM_CHUNK, der.length));
    let out = '';
    for (let i = 0; i < b64.length; i += 64) out += b64.slice(i, i + 64) + '\n';
    yield out;
  }
  yield '-----END X509 CRL-----\n';
}

/** crlToPem returns the whole PEM text; for large CRLs prefer writeCrl/writeCrlFile. */
export function crlToPem(der: Buffer): string {
  let s = '';
  for (const c of crlPemChunks(der)) s += c;
  return s;
}

/** writeCrl writes a CRL to a stream without copying the DER (PEM goes out in 64 KiB pieces); it does not end the stream. */
export async function writeCrl(out: Writable, der: Buffer, format: 'der' | 'pem' = 'der'): Promise<void> {
  const chunks: Iterable<Buffer | string> = format === 'der' ? [der] : crlPemChunks(der);
  for (const c of chunks) {
    if (!out.write(c)) await once(out, 'drain');
  }
}

/**
 * writeCrlFile writes a CRL next to its final name and renames it into place, so a reader (a web server,
 * FreeRADIUS' ca_path) never sees half a CRL; the file is fsynced before the rename and the directory after
 * it, so a power loss cannot leave an empty CRL or the previous one under the name.
 */
export async function writeCrlFile(file: string, der: Buffer, format: 'der' | 'pem' = 'der'): Promise<void> {
  // withTemporaryPath: an atomic write into the same directory while this one awaits must not remove its temporary file
  await withTemporaryPath(file, async (tmp) => {
    try {
      const fh = await fs.promises.open(tmp, 'wx', 0o644);
      try {
        if (format === 'der') await fh.write(der);
        else for (const c of crlPemChunks(der)) await fh.write(c);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fs.promises.rename(tmp, file);
    } catch (e) {
      await fs.promises.rm(tmp, { force: true });
      throw e;
    }
  });
  await fsyncDirectoryAsync(path.dirname(path.resolve(file)));
}
