import { children, decodeOid, readTlv } from '../der/der-reader';
import { DeviceCaError } from '../errors/device-ca-error';
import { CMS_OID } from './cms-algorithms';
import { ByteSource, fileSource } from './byte-source';
import { FileRange, wholeFile } from './file-range';
import { fieldsAfterContent, SignedDataParts } from './signed-data-parts';

/**
 * SignedDataFile: a DER SignedData ContentInfo in a file, split as parseSignedDataParts splits a Buffer,
 * except that the eContent stays in the file: `content` is where its bytes are.
 */
export interface SignedDataFile {
  /** parts: every field but the content (eContent is null here) */
  parts: SignedDataParts;
  content: FileRange;
}

/** HEAD_BYTES: how much of the file's start is read to find the content: the fields before it are a few hundred bytes. */
const HEAD_BYTES = 64 << 10;
/** MAX_TAIL_BYTES: bound on what follows the content (certificates, SignerInfos), all of which is read into memory. */
const MAX_TAIL_BYTES = 16 << 20;

/** SignedDataSource: SignedDataFile of a ByteSource: the content is `length` bytes of the source from `offset`. */
export interface SignedDataSource {
  parts: SignedDataParts;
  content: { offset: number; length: number };
}

/** readSignedDataFile: readSignedDataSource over an open file, the content as a range of the file. */
export function readSignedDataFile(fd: number): SignedDataFile {
  const { parts, content } = readSignedDataSource(fileSource(wholeFile(fd)));
  return { parts, content: { fd, ...content } };
}

/**
 * readSignedDataSource locates the eContent OCTET STRING of a DER SignedData ContentInfo (RFC 5652 §5.1) in
 * a source (a file, or a Buffer) without reading it: it reads the headers before it and the fields after it, and checks
 * that every enclosing length ends where the content, the SignedData and the file end. Only DER is read,
 * with a primitive eContent, as encodeSignedData writes it. Errors: 'bad-request' naming the problem.
 */
export function readSignedDataSource(src: ByteSource): SignedDataSource {
  const size = src.length;
  const head = src.read(0, Math.min(size, HEAD_BYTES));
  let p = 0;
  /** open enters a constructed TLV (or a primitive's value) that must end at `end`, or, given `within`, no later than it. */
  const open = (tag: number, what: string, end: number, within = false): number => {
    const h = header(head, p, what);
    if (h.tag !== tag) throw new DeviceCaError('bad-request', `the file is not a DER CMS SignedData (malformed DER: ${what} has tag 0x${h.tag.toString(16)})`);
    if (within ? h.end > end : h.end !== end)
      throw new DeviceCaError('bad-request', `the file is not a DER CMS SignedData (malformed DER: ${what} ends at ${h.end}, not ${end}: truncated or trailing bytes?)`);
    p = h.contentStart;
    return h.end;
  };
  const whole = (what: string): ReturnType<typeof readTlv>['tlv'] => {
    const { tlv, next } = guarded(() => readTlv(head, p), what);
    p = next;
    return tlv;
  };
  const ciEnd = open(0x30, 'ContentInfo', size);
  if (decodeOid(whole('contentType')) !== CMS_OID.signedData) throw new DeviceCaError('bad-request', 'the file is not a CMS SignedData');
  open(0xa0, 'ContentInfo content', ciEnd);
  open(0x30, 'SignedData', ciEnd);
  const version = whole('version');
  const digestAlgorithms = whole('digestAlgorithms');
  if (version.tag !== 0x02 || digestAlgorithms.tag !== 0x31) throw new DeviceCaError('bad-request', 'SignedData cannot be read');
  const encapEnd = open(0x30, 'encapContentInfo', ciEnd, true);
  const eContentType = decodeOid(whole('eContentType'));
  if (p === encapEnd) throw new DeviceCaError('bad-request', 'the SignedData has no content');
  open(0xa0, 'eContent', encapEnd);
  open(0x04, 'eContent OCTET STRING', encapEnd); // a constructed (0x24) OCTET STRING is refused here
  const content = { offset: p, length: encapEnd - p };
  if (ciEnd - encapEnd > MAX_TAIL_BYTES) throw new DeviceCaError('bad-request', 'the SignedData fields after the content are too large');
  const tail = src.read(encapEnd, ciEnd - encapEnd);
  const fields = guarded(() => children({ tag: 0x30, full: tail, value: tail }, 6), 'SignedData fields');
  return {
    parts: { digestAlgorithms: children(digestAlgorithms, 16).map((d) => d.full), eContentType, eContent: null, ...fieldsAfterContent(fields) },
    content,
  };
}

/** header reads a DER tag and definite length at p (X.690 §8.1.2-3) and says where the value starts and ends. */
function header(buf: Buffer, p: number, what: string): { tag: number; contentStart: number; end: number } {
  if (p + 2 > buf.length) throw new DeviceCaError('bad-request', `the file is not a DER CMS SignedData (malformed DER: ${what}: truncated header)`);
  const tag = buf[p];
  let len = buf[p + 1];
  let q = p + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new DeviceCaError('bad-request', `the file is not a DER CMS SignedData (malformed DER: ${what}: ${n === 0 ? 'indefinite length' : 'length too long'})`);
    if (q + n > buf.length) throw new DeviceCaError('bad-request', `the file is not a DER CMS SignedData (malformed DER: ${what}: truncated length)`);
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[q + i];
    q += n;
  }
  return { tag, contentStart: q, end: q + len };
}

function guarded<T>(fn: () => T, what: string): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof DeviceCaError && e.message.startsWith('malformed DER')) throw new DeviceCaError('bad-request', `the file is not a DER CMS SignedData (${what}: ${e.message})`, { cause: e });
    throw e;
  }
}
