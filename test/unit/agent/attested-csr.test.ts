import * as crypto from 'node:crypto';
import { attestedCsr, certifyEvidence, deviceSubject } from '../../../src/agent/attested-csr';
import { children, readOne } from '../../../src/der/der-reader';
import { parseCsr } from '../../../src/ra/csr';

/**
 * attestedCsr for both device key types of `agent enroll --key-alg`: the CSR names the signature algorithm
 * that matches the key (ECDSA-SHA256 for P-256, sha256WithRSAEncryption for RSA 2048), and the RA's own
 * CSR check accepts it.
 */
const evidence = certifyEvidence({ tpmsAttest: Buffer.from('attest'), signature: Buffer.from('sig'), tpmtPublic: Buffer.from('pub') });

function csrFor(kind: 'ec' | 'rsa', algorithm?: 'ecdsa-p256' | 'rsa-2048'): Buffer {
  const { privateKey, publicKey } = kind === 'ec' ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }) : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return attestedCsr({
    algorithm,
    spki: publicKey.export({ type: 'spki', format: 'der' }),
    subject: deviceSubject('dev-1'),
    evidence,
    // what tpm2_sign -g sha256 -f plain gives: a DER ECDSA signature, or the raw PKCS#1 v1.5 signature
    sign: (info) => crypto.sign('sha256', info, privateKey),
  });
}

describe('attestedCsr', () => {
  it('P-256 (the default) and RSA 2048: the RA verifies the CSR and reads the key algorithm and the evidence', () => {
    const ec = parseCsr(csrFor('ec'));
    const rsa = parseCsr(csrFor('rsa', 'rsa-2048'));
    expect([ec.keyAlgorithm, rsa.keyAlgorithm]).toEqual(['ecdsa-p256', 'rsa-2048']);
    expect(rsa.evidence).toHaveLength(1);
  });

  it('the CSR names the algorithm of the key: sha256WithRSAEncryption (with NULL) for RSA, ecdsa-with-SHA256 for P-256', () => {
    const algorithmOf = (der: Buffer): string => children(readOne(der, 0x30), 3)[1].full.toString('hex');
    expect(algorithmOf(csrFor('rsa', 'rsa-2048'))).toBe('300d06092a864886f70d01010b0500');
    expect(algorithmOf(csrFor('ec'))).toBe('300a06082a8648ce3d040302');
  });
});
