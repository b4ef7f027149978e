import * as fs from 'node:fs';
import * as path from 'node:path';
import { decodeTpmCertifyStatement } from '../../../src/attestation/tpm/certify-statement-der';
import { octetString, oid, seq, utf8String } from '../../../src/der/der-writer';
import { OID } from '../../../src/der/oids';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { generateKeyPair } from '../../../src/keys/software-key-backend';
import { parseCsr } from '../../../src/ra/csr';
import { buildCsr, tpmCertifyStatement } from '../../fixtures/build-csr';

// The id-aa-evidence attribute (draft-ietf-lamps-csr-attestation) in every shape its revisions used,
// holding golden TPM2_Certify bytes from swtpm (test/fixtures/tpm/generate.sh).
const tpm = (f: string): Buffer => fs.readFileSync(path.join(__dirname, '../../fixtures/tpm', f));
const golden = { tpmsAttest: tpm('certify.attest'), signature: tpm('certify.sig'), tpmtPublic: tpm('key.pub').subarray(2) };
const key = generateKeyPair('ecdsa-p256').privateKey;
const stmt = tpmCertifyStatement(golden, 'tpm2');
const other = seq(oid('1.2.3.4'), octetString(Buffer.from('x')));

const shapes: [string, Buffer][] = [
  ['a single EvidenceStatement (older form)', stmt],
  ['EvidenceStatements (newest revisions)', seq(other, stmt)],
  ['one EvidenceBundle with certs', seq(seq(other, stmt), seq(seq(oid('1.2.3'))))],
  ['EvidenceBundles (revisions 03-1x)', seq(seq(seq(other)), seq(seq(stmt)))],
];

describe('CSR evidence attribute (parseCsr) and tcg-attest-tpm-certify', () => {
  it.each(shapes)('reads %s', (_name, value) => {
    const csr = parseCsr(buildCsr({ privateKey: key, evidence: value }));
    const certify = csr.evidence.filter((e) => e.type === OID.tcgAttestTpmCertify);
    expect(certify).toHaveLength(1);
    expect(certify[0].hint).toBe('tpm2');
    expect(decodeTpmCertifyStatement(certify[0].stmt)).toEqual(golden);
  });

  it('has no evidence without the attribute', () => {
    expect(parseCsr(buildCsr({ privateKey: key })).evidence).toEqual([]);
  });

  it('unwraps a TPM2B_PUBLIC keyBlob to its TPMT_PUBLIC', () => {
    const st = seq(octetString(golden.tpmsAttest), octetString(golden.signature), octetString(tpm('key.pub')));
    expect(decodeTpmCertifyStatement(st).tpmtPublic).toEqual(golden.tpmtPublic);
  });

  it.each([
    ['an attribute value that is no statement', seq(utf8String('x'))],
    ['a statement without its value', seq(oid(OID.tcgAttestTpmCertify))],
    ['a hint that is not a UTF8String', seq(oid(OID.tcgAttestTpmCertify), octetString(Buffer.alloc(1)), octetString(Buffer.alloc(1)))],
    ['too many statements', seq(...Array.from({ length: 9 }, () => other))],
  ])('refuses %s with a typed error', (_name, value) => {
    expect(() => parseCsr(buildCsr({ privateKey: key, evidence: value }))).toThrow(DeviceCaError);
  });

  it.each([
    ['two fields', seq(octetString(golden.tpmsAttest), octetString(golden.signature))],
    ['an INTEGER field', seq(octetString(golden.tpmsAttest), octetString(golden.signature), Buffer.from('020101', 'hex'))],
    ['truncated DER', seq(octetString(golden.tpmsAttest), octetString(golden.signature), octetString(golden.tpmtPublic)).subarray(0, 40)],
  ])('decodeTpmCertifyStatement refuses %s as bad-request', (_name, der) => {
    expect(() => decodeTpmCertifyStatement(der)).toThrow(expect.objectContaining({ code: 'bad-request' }));
  });
});
