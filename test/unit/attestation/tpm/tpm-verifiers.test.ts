import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { DeviceCaError } from '../../../../src/errors/device-ca-error';
import { verifyAkRegistration } from '../../../../src/attestation/tpm/ak-registration';
import { CertifyStatement, verifyCertifyEvidence } from '../../../../src/attestation/tpm/certify-evidence';
import { ekIdentity } from '../../../../src/attestation/tpm/ek-certificate';
import { DEVICE_KEY_ATTRIBUTES } from '../../../../src/attestation/tpm/key-policy';
import { parseTpm2bPublic, tpmPublicKey } from '../../../../src/attestation/tpm/tpm-public';
import { parseTpmtSignature } from '../../../../src/attestation/tpm/tpmt-signature';

// Golden evidence from swtpm + tpm2-tools: test/fixtures/tpm/generate.sh
const fx = (f: string): Buffer => readFileSync(join(__dirname, '../../../fixtures/tpm', f));
const pem = (f: string): X509Certificate => new X509Certificate(fx(f));
const nonce = Buffer.from(fx('nonce.hex').toString('ascii'), 'hex');
const now = new Date();
const tpmt = (tpm2b: Buffer): Buffer => tpm2b.subarray(2);
const spki = (tpm2b: Buffer): Buffer => tpmPublicKey(parseTpm2bPublic(tpm2b)).export({ type: 'spki', format: 'der' });

describe('verifyAkRegistration', () => {
  const req = { ekCertificate: fx('ek-cert.der'), ekChain: [] as Buffer[], ekPublic: fx('ek.pub'), akPublic: fx('ak.pub') };
  const root = pem('ek-root.pem');
  const issuer = pem('ek-issuer.pem');

  it('accepts the swtpm EK certificate through its intermediate to the trusted root, and reads the TPM identity', () => {
    const v = verifyAkRegistration({ ...req, ekChain: [issuer.raw] }, [root], now);
    expect(v.ok).toBe(true);
    if (!v.ok) return;
    expect(v.value.akName).toEqual(fx('ak.name'));
    expect(v.value.ekIdentity).toEqual({ manufacturer: 'id:00001014', model: 'swtpm', version: 'id:20191023' });
    // the trust store may hold the intermediate itself
    expect(verifyAkRegistration(req, [issuer], now).ok).toBe(true);
  });

  it.each([
    ['no trusted root', [], [] as Buffer[]],
    ['the intermediate missing', ['root'], []],
    ['the EK certificate offered as its own chain', ['root'], ['leaf']],
  ])('refuses the EK certificate with %s: check ek-certificate', (_n, anchors, chain) => {
    const a = (anchors as string[]).map(() => root);
    const c = (chain as string[]).map(() => fx('ek-cert.der'));
    expect(verifyAkRegistration({ ...req, ekChain: c }, a, now)).toMatchObject({ ok: false, check: 'ek-certificate' });
  });

  it('refuses outside the validity of the chain', () => {
    expect(verifyAkRegistration(req, [issuer], new Date('2000-01-01'))).toMatchObject({ ok: false, check: 'ek-certificate' });
  });

  it('refuses an EK public area that is not the certified EK', () => {
    expect(verifyAkRegistration({ ...req, ekPublic: fx('key.pub') }, [issuer], now)).toMatchObject({ ok: false, check: 'ek-key-mismatch' });
  });

  it('refuses an AK that is not a restricted signing key', () => {
    const v = verifyAkRegistration({ ...req, akPublic: fx('key.pub') }, [issuer], now);
    expect(v).toMatchObject({ ok: false, check: 'ak-attributes' });
  });

  it('throws bad-request on a truncated AK and bad input in the EK certificate is a named failure', () => {
    expect(() => verifyAkRegistration({ ...req, akPublic: fx('ak.pub').subarray(0, 40) }, [issuer], now)).toThrow(DeviceCaError);
    expect(verifyAkRegistration({ ...req, ekCertificate: Buffer.from('nope') }, [issuer], now)).toMatchObject({ ok: false, check: 'ek-certificate' });
    expect(ekIdentity(fx('ek-cert.der'))).toMatchObject({ model: 'swtpm' });
  });
});

describe('verifyCertifyEvidence', () => {
  const ak = parseTpm2bPublic(fx('ak.pub'));
  const st: CertifyStatement = { tpmsAttest: fx('certify.attest'), signature: fx('certify.sig'), tpmtPublic: tpmt(fx('key.pub')) };
  const csrSpki = spki(fx('key.pub'));

  it('accepts TPM2_Certify of the CSR key by the AK and returns the nonce it carries', () => {
    const v = verifyCertifyEvidence(st, ak, csrSpki);
    expect(v.ok).toBe(true);
    if (v.ok) expect(v.value.extraData).toEqual(nonce);
  });

  it('accepts the raw signature bytes as well as a TPMT_SIGNATURE', () => {
    const sig = parseTpmtSignature(st.signature);
    if (!('sig' in sig)) throw new Error('fixture AK is RSA');
    expect(verifyCertifyEvidence({ ...st, signature: sig.sig }, ak, csrSpki).ok).toBe(true);
  });

  const edit = (b: Buffer, at: number, v: number): Buffer => {
    const c = Buffer.from(b);
    c[at] = v;
    return c;
  };

  it.each<[string, () => CertifyStatement, string]>([
    ['tampered signature', () => ({ ...st, signature: edit(st.signature, st.signature.length - 1, st.signature[st.signature.length - 1] ^ 1) }), 'signature'],
    ['tampered clock in TPMS_ATTEST', () => ({ ...st, tpmsAttest: edit(st.tpmsAttest, 0x50, st.tpmsAttest[0x50] ^ 1) }), 'signature'],
    ['wrong magic', () => ({ ...st, tpmsAttest: edit(st.tpmsAttest, 0, 0xfe) }), 'magic'],
    ['a quote instead of a certify', () => ({ ...st, tpmsAttest: fx('quote.attest'), signature: fx('quote.sig') }), 'attest-type'],
    ['the TPMT_PUBLIC of another key', () => ({ ...st, tpmtPublic: tpmt(fx('loose-key.pub')) }), 'attested-name'],
    ['a certify by the AK of a key without fixedTPM', () => ({ tpmsAttest: fx('loose-certify.attest'), signature: fx('loose-certify.sig'), tpmtPublic: tpmt(fx('loose-key.pub')) }), 'key-attributes'],
  ])('refuses %s: check %s', (_n, make, check) => {
    const s = make();
    const key = s.tpmtPublic === st.tpmtPublic ? csrSpki : spki(Buffer.concat([Buffer.of(0, s.tpmtPublic.length), s.tpmtPublic]));
    expect(verifyCertifyEvidence(s, ak, check === 'attested-name' ? csrSpki : key)).toMatchObject({ ok: false, check });
  });

  it("refuses evidence for a key that is not the CSR's: check key-mismatch", () => {
    expect(verifyCertifyEvidence(st, ak, spki(fx('ak.pub')))).toMatchObject({ ok: false, check: 'key-mismatch' });
  });

  it('refuses evidence signed by another AK (here the certified key poses as the AK): check signature', () => {
    expect(verifyCertifyEvidence(st, parseTpm2bPublic(fx('key.pub')), csrSpki)).toMatchObject({ ok: false, check: 'signature' });
  });

  it('the default device key policy is what issue 9 names', () => {
    expect(DEVICE_KEY_ATTRIBUTES).toEqual({ required: ['fixedTPM', 'fixedParent', 'sensitiveDataOrigin', 'sign'], forbidden: ['decrypt', 'restricted'] });
  });

  it('truncated evidence is bad-request, not a verdict and not a crash', () => {
    expect(() => verifyCertifyEvidence({ ...st, tpmsAttest: st.tpmsAttest.subarray(0, 50) }, ak, csrSpki)).toThrow(DeviceCaError);
    expect(() => verifyCertifyEvidence({ ...st, tpmtPublic: st.tpmtPublic.subarray(0, 20) }, ak, csrSpki)).toThrow(DeviceCaError);
  });
});
