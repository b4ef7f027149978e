import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DeviceCaError } from '../../../../src/errors/device-ca-error';
import { decodeTpmQuoteStatement, PcrPolicy, QuoteStatement, verifyQuoteEvidence } from '../../../../src/attestation/tpm/quote-evidence';
import { parseTpm2bPublic } from '../../../../src/attestation/tpm/tpm-public';
import { octetString, seq } from '../../../../src/der/der-writer';

// Golden quote from swtpm + tpm2-tools (test/fixtures/tpm/generate.sh): sha256 PCRs 0-7 of a TPM just
// started, so every value is 32 zero bytes; qualifyingData = nonce.hex
const fx = (f: string): Buffer => readFileSync(join(__dirname, '../../../fixtures/tpm', f));
const nonce = Buffer.from(fx('nonce.hex').toString('ascii'), 'hex');
const ak = parseTpm2bPublic(fx('ak.pub'));
const zero = (): Buffer => Buffer.alloc(32);
const values = (): Buffer[] => Array.from({ length: 8 }, zero);
const quote = (over: Partial<QuoteStatement> = {}): QuoteStatement => ({ tpmsAttest: fx('quote.attest'), signature: fx('quote.sig'), pcrValues: values(), ...over });
const policy = (pcrs: [number, Buffer][] = values().map((v, i) => [i, v])): PcrPolicy => ({ bankAlg: 0x000b, pcrs: new Map(pcrs) });

describe('verifyQuoteEvidence', () => {
  it('accepts the quote: AK signature, nonce, selection, digest of the claimed values, values of the policy', () => {
    expect(verifyQuoteEvidence(quote(), ak, nonce, policy())).toEqual({ ok: true, value: { pcrs: [0, 1, 2, 3, 4, 5, 6, 7] } });
  });

  it('names the first PCR whose value is outside the policy', () => {
    const p = policy(values().map((v, i) => [i, i === 5 ? Buffer.alloc(32, 1) : v]));
    expect(verifyQuoteEvidence(quote(), ak, nonce, p)).toMatchObject({ ok: false, check: 'pcr-value', pcr: 5 });
  });

  it.each([
    ['claimed values that are not what the TPM quoted', () => quote({ pcrValues: values().map((v, i) => (i === 3 ? Buffer.alloc(32, 7) : v)) }), policy(), 'pcr-digest'],
    ['a value missing', () => quote({ pcrValues: values().slice(1) }), policy(), 'pcr-digest'],
    ['a policy over other PCRs', () => quote(), policy([[7, zero()]]), 'pcr-selection'],
    ['a policy on another bank', () => quote(), { ...policy(), bankAlg: 0x000c }, 'pcr-selection'],
    ['a flipped bit in the signature', () => quote({ signature: Buffer.from(fx('quote.sig').map((b, i) => (i === 40 ? b ^ 1 : b))) }), policy(), 'signature'],
    ['a certify statement in place of the quote', () => quote({ tpmsAttest: fx('certify.attest'), signature: fx('certify.sig') }), policy(), 'attest-type'],
    ['wrong magic', () => quote({ tpmsAttest: Buffer.concat([Buffer.of(0), fx('quote.attest').subarray(1)]) }), policy(), 'magic'],
  ])('refuses %s', (_n, q, p, check) => {
    expect(verifyQuoteEvidence(q(), ak, nonce, p)).toMatchObject({ ok: false, check });
  });

  it('refuses a quote made with another nonce', () => {
    expect(verifyQuoteEvidence(quote(), ak, Buffer.alloc(32), policy())).toMatchObject({ ok: false, check: 'nonce' });
  });

  it('throws bad-request on truncated TPMS_ATTEST, never a crash', () => {
    expect(() => verifyQuoteEvidence(quote({ tpmsAttest: fx('quote.attest').subarray(0, 50) }), ak, nonce, policy())).toThrow(DeviceCaError);
  });
});

describe('decodeTpmQuoteStatement', () => {
  it('reads SEQUENCE { tpmsAttest, signature, SEQUENCE OF pcrValue }', () => {
    const st = decodeTpmQuoteStatement(seq(octetString(fx('quote.attest')), octetString(fx('quote.sig')), seq(...values().map(octetString))));
    expect(st).toEqual(quote());
  });

  it.each([
    ['two fields', seq(octetString(Buffer.of(1)), octetString(Buffer.of(2)))],
    ['values not a SEQUENCE', seq(octetString(Buffer.of(1)), octetString(Buffer.of(2)), octetString(Buffer.of(3)))],
    ['25 values', seq(octetString(Buffer.of(1)), octetString(Buffer.of(2)), seq(...Array.from({ length: 25 }, zero).map(octetString)))],
    ['truncated DER', seq(octetString(fx('quote.attest'))).subarray(0, 20)],
  ])('refuses %s with bad-request', (_n, der) => {
    expect(() => decodeTpmQuoteStatement(der)).toThrow(expect.objectContaining({ code: 'bad-request' }));
  });
});
