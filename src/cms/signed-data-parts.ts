import { children, decodeOid, readOne, Tlv } from '../der/der-reader';
import { contextImplicitConstructed, derLength, integer, oid, set } from '../der/der-writer';
import { DeviceCaError } from '../errors/device-ca-error';
import { CMS_OID } from './cms-algorithms';

/**
 * SignedDataParts: a DER SignedData (RFC 5652 §5.1) split into its fields, each element kept as the bytes
 * received, so that SignerInfos can be added one at a time without touching the others' signatures.
 */
export interface SignedDataParts {
  /** digestAlgorithms: DER AlgorithmIdentifiers, without duplicates */
  digestAlgorithms: Buffer[];
  eContentType: string;
  /** eContent: the encapsulated content, or null when detached */
  eContent: Buffer | null;
  /** certificates: DER of each CertificateChoices element */
  certificates: Buffer[];
  /** crls: DER of each RevocationInfoChoice element */
  crls: Buffer[];
  signerInfos: Buffer[];
}

const MAX_ELEMENTS = 256;

/**
 * parseSignedDataParts splits a DER ContentInfo holding a SignedData. Only DER (definite lengths, a
 * primitive eContent OCTET STRING) is read: these are device-ca's own files, written by encodeSignedData.
 * Errors: 'bad-request'.
 */
export function parseSignedDataParts(der: Buffer): SignedDataParts {
  try {
    return splitSignedData(der);
  } catch (e) {
    // name the file's problem first: "malformed DER: truncated content" alone does not say which input
    if (e instanceof DeviceCaError && e.message.startsWith('malformed DER')) throw new DeviceCaError('bad-request', `the file is not a DER CMS SignedData (${e.message})`, { cause: e });
    throw e;
  }
}

function splitSignedData(der: Buffer): SignedDataParts {
  const [type, content] = children(readOne(der, 0x30), 2);
  if (!type || !content || decodeOid(type) !== CMS_OID.signedData || content.tag !== 0xa0) throw new DeviceCaError('bad-request', 'the file is not a CMS SignedData');
  const f = children(readOne(content.value, 0x30), 6);
  if (f.length < 4 || f[0].tag !== 0x02 || f[1].tag !== 0x31 || f[2].tag !== 0x30) throw new DeviceCaError('bad-request', 'SignedData cannot be read');
  const encap = children(f[2], 2);
  let eContent: Buffer | null = null;
  if (encap[1]) {
    if (encap[1].tag !== 0xa0) throw new DeviceCaError('bad-request', 'SignedData eContent cannot be read');
    eContent = readOne(encap[1].value, 0x04).value; // a constructed (0x24) OCTET STRING is refused here
  }
  return { digestAlgorithms: children(f[1], 16).map((d) => d.full), eContentType: decodeOid(encap[0]), eContent, ...fieldsAfterContent(f.slice(3)) };
}

/**
 * fieldsAfterContent reads the SignedData fields that follow encapContentInfo (RFC 5652 §5.1):
 * [0] certificates, [1] crls, then signerInfos, the last field. Errors: 'bad-request'.
 */
export function fieldsAfterContent(f: Tlv[]): Pick<SignedDataParts, 'certificates' | 'crls' | 'signerInfos'> {
  let i = 0;
  const certificates = f[i]?.tag === 0xa0 ? children(f[i++], MAX_ELEMENTS).map((c) => c.full) : [];
  const crls = f[i]?.tag === 0xa1 ? children(f[i++], MAX_ELEMENTS).map((c) => c.full) : [];
  if (f[i]?.tag !== 0x31 || i !== f.length - 1) throw new DeviceCaError('bad-request', 'SignedData signerInfos cannot be read');
  return { certificates, crls, signerInfos: children(f[i], MAX_ELEMENTS).map((s) => s.full) };
}

/**
 * encodeSignedData writes the parts as a DER ContentInfo. Version (RFC 5652 §5.1): 3 when the content is
 * not id-data, else 1 (device-ca writes only v1 SignerInfos and X.509 certificates). Duplicate
 * certificates and digest algorithms are written once. The SET OF elements keep their given order, as
 * certsOnly does: readers take them in order and openssl accepts it.
 */
export function encodeSignedData(p: SignedDataParts): Buffer {
  const { head, tail } = signedDataLayout(p, p.eContent?.length ?? null);
  return p.eContent ? Buffer.concat([head, p.eContent, tail], head.length + p.eContent.length + tail.length) : head;
}

/**
 * SignedDataLayout: the DER of a SignedData ContentInfo cut around its eContent bytes: `head`, then the
 * content (contentLength bytes, streamed from a file by the caller), then `tail`. DER lengths are definite,
 * so only the content's length must be known ahead, not its bytes.
 */
export interface SignedDataLayout {
  head: Buffer;
  tail: Buffer;
}

/**
 * signedDataLayout encodes the parts as encodeSignedData does, with a content of contentLength bytes (null:
 * no eContent, the whole encoding is `head`). head + content + tail is byte for byte encodeSignedData's
 * output for the same parts and content.
 */
export function signedDataLayout(p: Omit<SignedDataParts, 'eContent'>, contentLength: number | null): SignedDataLayout {
  const unique = (xs: Buffer[]): Buffer[] => xs.filter((x, i) => xs.findIndex((y) => y.equals(x)) === i);
  const encap = contentLength !== null ? wrap(0x30, [oid(p.eContentType), wrap(0xa0, [wrap(0x04, [{ hole: contentLength }])])]) : wrap(0x30, [oid(p.eContentType)]);
  const certs = p.certificates.length > 0 ? [contextImplicitConstructed(0, Buffer.concat(unique(p.certificates)))] : [];
  const crls = p.crls.length > 0 ? [contextImplicitConstructed(1, Buffer.concat(p.crls))] : [];
  const version = p.eContentType === CMS_OID.data ? 1 : 3;
  const sd = wrap(0x30, [integer(version), set(...unique(p.digestAlgorithms)), encap, ...certs, ...crls, set(...p.signerInfos)]);
  const ci = wrap(0x30, [oid(CMS_OID.signedData), wrap(0xa0, [sd])]);
  const at = ci.parts.findIndex((x) => !Buffer.isBuffer(x));
  const before = (at < 0 ? ci.parts : ci.parts.slice(0, at)) as Buffer[];
  const after = (at < 0 ? [] : ci.parts.slice(at + 1)) as Buffer[];
  return { head: Buffer.concat(before), tail: Buffer.concat(after) };
}

/** Hole: the place of the content in a Rope, by its length only. */
interface Hole {
  hole: number;
}

/**
 * Rope: an encoding kept as its pieces until the end, so that a large eContent (a 64 MiB image) is
 * never copied into the enclosing TLVs: it is a Hole, filled by the caller (one copy, or a file stream).
 */
interface Rope {
  parts: (Buffer | Hole)[];
  length: number;
}

function wrap(tag: number, items: (Buffer | Rope | Hole)[]): Rope {
  const parts: (Buffer | Hole)[] = [];
  let length = 0;
  for (const it of items) {
    if (Buffer.isBuffer(it)) {
      parts.push(it);
      length += it.length;
    } else if ('hole' in it) {
      parts.push(it);
      length += it.hole;
    } else {
      parts.push(...it.parts);
      length += it.length;
    }
  }
  const header = Buffer.concat([Buffer.from([tag]), derLength(length)]);
  return { parts: [header, ...parts], length: header.length + length };
}
