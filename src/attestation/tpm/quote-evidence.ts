import { createHash, KeyObject } from 'node:crypto';
import { children, expectTag, readOne } from '../../der/der-reader';
import { DeviceCaError } from '../../errors/device-ca-error';
import { AttestationVerdict, fail } from './attestation-verdict';
import { readSignature } from './certify-evidence';
import { HASH_BY_ALG, TPM_ST_ATTEST } from './tpm-constants';
import { TpmPublic } from './tpm-public';
import { isTpmGenerated, parseTpmsAttest } from './tpms-attest';
import { verifyTpmSignature } from './tpmt-signature';

/** MAX_QUOTE_STATEMENT_BYTES: a TPMS_ATTEST, an RSA-4096 signature and 24 SHA-512 values stay below. */
const MAX_QUOTE_STATEMENT_BYTES = 8192;
/** MAX_PCRS: a PC Client TPM has 24 PCRs per bank (TCG PC Client Platform TPM Profile §4.6). */
const MAX_PCRS = 24;

/**
 * QuoteStatement is a TPM2_Quote as the device sends it: TPMS_ATTEST exactly as signed, the AK's
 * signature (TPMT_SIGNATURE or raw), and the values the device claims for the quoted PCRs, in the order of
 * the quote's selection (ascending index), as `tpm2_quote -o pcrs -F values` writes them.
 */
export interface QuoteStatement {
  tpmsAttest: Buffer;
  signature: Buffer;
  pcrValues: Buffer[];
}

/** PcrPolicy: one PCR bank (TPM_ALG hash id) and the value each listed PCR must hold. */
export interface PcrPolicy {
  bankAlg: number;
  /** pcrs: PCR index -> expected value (digest of the bank's size) */
  pcrs: ReadonlyMap<number, Buffer>;
}

/**
 * decodeTpmQuoteStatement reads the quote statement of the CSR evidence attribute (OID.deviceCaTpmQuote):
 *   SEQUENCE { tpmsAttest OCTET STRING, signature OCTET STRING, pcrValues SEQUENCE OF OCTET STRING }
 * the same shape as tcg-attest-tpm-certify with the claimed PCR values in place of the key blob.
 * Malformed input is 'bad-request'.
 */
export function decodeTpmQuoteStatement(der: Buffer): QuoteStatement {
  if (der.length > MAX_QUOTE_STATEMENT_BYTES) throw new DeviceCaError('too-large', 'TPM quote statement too large');
  const parts = children(readOne(der, 0x30), 4);
  if (parts.length !== 3) throw new DeviceCaError('bad-request', 'TPM quote statement must be SEQUENCE { tpmsAttest, signature, pcrValues }');
  const tpmsAttest = Buffer.from(expectTag(parts[0], 0x04, 'tpmsAttest').value);
  const signature = Buffer.from(expectTag(parts[1], 0x04, 'signature').value);
  const values = children(expectTag(parts[2], 0x30, 'pcrValues'), MAX_PCRS + 1);
  if (values.length > MAX_PCRS) throw new DeviceCaError('bad-request', `TPM quote statement: more than ${MAX_PCRS} PCR values`);
  return { tpmsAttest, signature, pcrValues: values.map((v) => Buffer.from(expectTag(v, 0x04, 'pcrValue').value)) };
}

/**
 * verifyQuoteEvidence checks a TPM2_Quote against the AK that certified the CSR key and the profile's PCR
 * policy (issue 9 point 4): magic and type; the AK's signature; extraData = the nonce of the certify
 * statement (the caller consumes it once for both); the quote selects exactly the policy's bank and PCRs
 * (a quote over other PCRs says nothing about these); pcrDigest = H(claimed values concatenated), with H
 * the hash of the AK's signing scheme (TPM 2.0 Part 3 §18.4.1: the digest uses the signing scheme's hash);
 * then each claimed value equals the policy's, checked by ascending index so the first one off is named.
 */
export function verifyQuoteEvidence(q: QuoteStatement, ak: TpmPublic, nonce: Buffer, policy: PcrPolicy, akKey?: KeyObject): AttestationVerdict<{ pcrs: number[] }> & { pcr?: number } {
  const attest = parseTpmsAttest(q.tpmsAttest);
  if (!isTpmGenerated(attest)) return fail('magic', `quote magic 0x${attest.magic.toString(16)} is not TPM_GENERATED_VALUE`);
  if (attest.attested.type !== TPM_ST_ATTEST.QUOTE) return fail('attest-type', 'the quote statement is not a TPM2_Quote');
  const sig = readSignature(q.signature, ak);
  if (!sig || !verifyTpmSignature(ak, q.tpmsAttest, sig, akKey)) return fail('signature', 'AK signature over the quote does not verify');
  if (!attest.extraData.equals(nonce)) return fail('nonce', "the quote's qualifyingData is not the nonce of the certify statement");
  const sel = attest.attested.pcrSelect.filter((s) => s.pcrs.length > 0);
  const want = [...policy.pcrs.keys()].sort((a, b) => a - b);
  if (sel.length !== 1 || sel[0].hashAlg !== policy.bankAlg || sel[0].pcrs.join(',') !== want.join(',')) {
    return fail(
      'pcr-selection',
      `the quote selects ${sel.map((s) => `0x${s.hashAlg.toString(16)}:${s.pcrs.join(',')}`).join(' ') || 'nothing'}, the policy bank 0x${policy.bankAlg.toString(16)}:${want.join(',')}`,
    );
  }
  const bank = HASH_BY_ALG.get(policy.bankAlg)!;
  if (q.pcrValues.length !== want.length || q.pcrValues.some((v) => v.length !== bank.size)) {
    return fail('pcr-digest', `expected ${want.length} PCR values of ${bank.size} bytes`);
  }
  const digest = createHash(HASH_BY_ALG.get(sig.hashAlg)!.node);
  for (const v of q.pcrValues) digest.update(v);
  if (!digest.digest().equals(attest.attested.pcrDigest)) return fail('pcr-digest', "the quote's PCR digest is not the hash of the claimed values");
  for (let i = 0; i < want.length; i++) {
    if (!q.pcrValues[i].equals(policy.pcrs.get(want[i])!)) return { ...fail('pcr-value', `PCR ${want[i]} is ${q.pcrValues[i].toString('hex')}`), pcr: want[i] };
  }
  return { ok: true, value: { pcrs: want } };
}
