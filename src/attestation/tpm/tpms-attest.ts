import { TPM_GENERATED_VALUE, TPM_ST_ATTEST } from './tpm-constants';
import { malformedTpm, TpmReader } from './tpm-reader';

/** NAME_MAX: TPM2B_NAME holds a UINT16 algorithm and a digest of at most 64 bytes (SHA-512). */
const NAME_MAX = 66;
/** ATTEST_MAX: TPM2B_ATTEST is bounded by sizeof(TPMS_ATTEST), well under 2 KiB on any TPM. */
const ATTEST_MAX = 2048;

export interface TpmClockInfo {
  clock: bigint;
  resetCount: number;
  restartCount: number;
  /** safe: no clock value reported by this TPM was ever higher than this one (Part 2 §10.11.1). */
  safe: boolean;
}

export interface TpmPcrSelection {
  hashAlg: number;
  /** pcrs: the selected PCR indexes, ascending. */
  pcrs: number[];
}

export type TpmAttested = { type: typeof TPM_ST_ATTEST.CERTIFY; name: Buffer; qualifiedName: Buffer } | { type: typeof TPM_ST_ATTEST.QUOTE; pcrSelect: TpmPcrSelection[]; pcrDigest: Buffer };

/**
 * TpmsAttest is a parsed TPMS_ATTEST (TPM 2.0 Part 2 §10.12.12). Parsing does not check magic: the
 * verifier does, so that the check that failed can be named in the audit record.
 */
export interface TpmsAttest {
  magic: number;
  qualifiedSigner: Buffer;
  extraData: Buffer;
  clockInfo: TpmClockInfo;
  firmwareVersion: bigint;
  attested: TpmAttested;
}

function readPcrSelection(r: TpmReader): TpmPcrSelection[] {
  const count = r.u32('pcrSelect.count');
  if (count > 16) malformedTpm(`TPMS_ATTEST: ${count} PCR banks`); // TPML_PCR_SELECTION holds HASH_COUNT entries
  const out: TpmPcrSelection[] = [];
  for (let i = 0; i < count; i++) {
    const hashAlg = r.u16('pcrSelect.hash');
    const size = r.u8('pcrSelect.sizeofSelect');
    if (size > 32) malformedTpm(`TPMS_ATTEST: PCR select of ${size} bytes`);
    const bits = r.bytes(size, 'pcrSelect.pcrSelect');
    const pcrs: number[] = [];
    // Part 2 §10.6.1: PCR n is bit (n mod 8) of octet n/8
    for (let n = 0; n < size * 8; n++) if (bits[n >> 3] & (1 << (n & 7))) pcrs.push(n);
    out.push({ hashAlg, pcrs });
  }
  return out;
}

/** parseTpmsAttest parses the TPMS_ATTEST bytes a TPM signed (tpm2_quote -m, TPM2_Certify certifyInfo). */
export function parseTpmsAttest(buf: Buffer): TpmsAttest {
  if (buf.length > ATTEST_MAX) malformedTpm(`TPMS_ATTEST of ${buf.length} bytes`);
  const r = new TpmReader(buf, 'TPMS_ATTEST');
  const magic = r.u32('magic');
  const type = r.u16('type');
  const qualifiedSigner = r.tpm2b('qualifiedSigner', NAME_MAX);
  const extraData = r.tpm2b('extraData', 64);
  const clockInfo: TpmClockInfo = {
    clock: r.u64('clockInfo.clock'),
    resetCount: r.u32('clockInfo.resetCount'),
    restartCount: r.u32('clockInfo.restartCount'),
    safe: false,
  };
  const safe = r.u8('clockInfo.safe');
  if (safe > 1) malformedTpm(`TPMS_ATTEST: clockInfo.safe = ${safe}`);
  clockInfo.safe = safe === 1;
  const firmwareVersion = r.u64('firmwareVersion');
  let attested: TpmAttested;
  if (type === TPM_ST_ATTEST.CERTIFY) {
    attested = { type, name: r.tpm2b('attested.name', NAME_MAX), qualifiedName: r.tpm2b('attested.qualifiedName', NAME_MAX) };
  } else if (type === TPM_ST_ATTEST.QUOTE) {
    attested = { type, pcrSelect: readPcrSelection(r), pcrDigest: r.tpm2b('attested.pcrDigest', 64) };
  } else {
    return malformedTpm(`TPMS_ATTEST: unsupported type 0x${type.toString(16)} (certify and quote only)`);
  }
  r.end();
  return { magic, qualifiedSigner, extraData, clockInfo, firmwareVersion, attested };
}

/** isTpmGenerated: the magic only a TPM writes into what it signs, so a signed TPMS_ATTEST came from one. */
export function isTpmGenerated(a: TpmsAttest): boolean {
  return a.magic === TPM_GENERATED_VALUE;
}
