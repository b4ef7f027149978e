import * as crypto from 'node:crypto';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { KEY_ALGORITHMS } from '../../../src/keys/key-backend';
import { EC_CURVES, digestInfo, ecAlgorithmOf, ecPointFromAttribute, ecSpki, ecdsaRawToDer, isEcAlgorithm, rsaAlgorithmOf, rsaSpki } from '../../../src/keys/pkcs11/public-key-info';
import { generateKeyPair } from '../../../src/keys/software-key-backend';

/**
 * What the PKCS#11 backend builds from token attributes must equal, byte for byte, what Node's crypto
 * produces for the same key: the SPKI (so certificates and key identifiers match), the ECDSA-Sig-Value,
 * and the PKCS#1 v1.5 encoding behind CKM_RSA_PKCS.
 */

const keyPairs = KEY_ALGORITHMS.map((a) => [a, generateKeyPair(a)] as const);
const fromB64u = (s: string | undefined): Buffer => Buffer.from(s!, 'base64url');

describe('SubjectPublicKeyInfo from token attributes equals Node export', () => {
  test.each(keyPairs)('%s', (algorithm, { publicKey }) => {
    const jwk = publicKey.export({ format: 'jwk' });
    const nodeSpki = publicKey.export({ type: 'spki', format: 'der' });
    if (isEcAlgorithm(algorithm)) {
      const point = Buffer.concat([Buffer.from([4]), fromB64u(jwk.x), fromB64u(jwk.y)]);
      // CKA_EC_POINT as SoftHSM stores it: DER OCTET STRING around the point
      const attr = Buffer.concat([Buffer.from([0x04, point.length]), point]);
      expect(ecSpki(algorithm, ecPointFromAttribute(attr, EC_CURVES[algorithm].fieldBytes))).toEqual(nodeSpki);
      expect(ecAlgorithmOf(EC_CURVES[algorithm].params)).toBe(algorithm);
    } else {
      const n = fromB64u(jwk.n);
      expect(rsaSpki(n, fromB64u(jwk.e))).toEqual(nodeSpki);
      // tokens may return the modulus with a leading zero octet; DER must not keep it
      expect(rsaSpki(Buffer.concat([Buffer.from([0]), n]), Buffer.from([0, 1, 0, 1]))).toEqual(nodeSpki);
      expect(rsaAlgorithmOf(n)).toBe(algorithm);
    }
  });

  test('CKA_EC_POINT: the bare point (older tokens) is accepted too; anything else is refused', () => {
    const point = Buffer.concat([Buffer.from([4]), crypto.randomBytes(64)]);
    expect(ecPointFromAttribute(point, 32)).toEqual(point);
    expect(ecPointFromAttribute(Buffer.concat([Buffer.from([4, 65]), point]), 32)).toEqual(point);
    for (const bad of [point.subarray(1), Buffer.concat([Buffer.from([4, 65]), point, Buffer.from([0])]), Buffer.concat([Buffer.from([2]), point.subarray(0, 33)])]) {
      expect(() => ecPointFromAttribute(bad, 32)).toThrow(DeviceCaError);
    }
    // a P-256 point is not a P-384 point
    expect(() => ecPointFromAttribute(point, 48)).toThrow(DeviceCaError);
  });

  test('curves and sizes device-ca does not sign with are not mapped', () => {
    expect(ecAlgorithmOf(Buffer.from('06052b8104000a', 'hex'))).toBeUndefined(); // secp256k1
    expect(rsaAlgorithmOf(Buffer.alloc(512, 0xff))).toBeUndefined(); // 4096 bits
    expect(rsaAlgorithmOf(Buffer.concat([Buffer.from([0x7f]), Buffer.alloc(255, 0xff)]))).toBeUndefined(); // 2047 bits
  });
});

describe('ecdsaRawToDer', () => {
  test.each(keyPairs.filter(([a]) => isEcAlgorithm(a)))('%s: r||s from the token becomes a DER signature Node verifies', (algorithm, { privateKey, publicKey }) => {
    const fieldBytes = EC_CURVES[algorithm as 'ecdsa-p256'].fieldBytes;
    const hash = algorithm === 'ecdsa-p384' ? 'sha384' : 'sha256';
    for (let i = 0; i < 50; i++) {
      const data = crypto.randomBytes(32);
      const raw = crypto.sign(hash, data, { key: privateKey, dsaEncoding: 'ieee-p1363' });
      const der = ecdsaRawToDer(raw, fieldBytes);
      expect(crypto.verify(hash, data, { key: publicKey, dsaEncoding: 'der' }, der)).toBe(true);
    }
  });

  test.each([
    ['high bit set: a zero octet keeps INTEGER positive', Buffer.concat([Buffer.alloc(32, 0x80), Buffer.alloc(32, 0x01)]), `3045022100${'80'.repeat(32)}0220${'01'.repeat(32)}`],
    ['leading zeros are stripped', Buffer.concat([Buffer.alloc(31, 0), Buffer.from([5]), Buffer.alloc(31, 0), Buffer.from([0x7f])]), '300602010502017f'],
  ])('%s', (_what, raw, expected) => {
    expect(ecdsaRawToDer(raw, 32).toString('hex')).toBe(expected);
  });

  test('a raw signature of the wrong length is refused', () => {
    expect(() => ecdsaRawToDer(Buffer.alloc(63), 32)).toThrow(/expected 64/);
  });
});

describe('digestInfo (CKM_RSA_PKCS input)', () => {
  test.each(['sha256', 'sha384', 'sha512'] as const)('%s: PKCS#1 v1.5 over our DigestInfo equals Node RSA-SHA signature', (hash) => {
    const { privateKey } = keyPairs.find(([a]) => a === 'rsa-2048')![1];
    const data = Buffer.from('digest info');
    const digest = crypto.createHash(hash).update(data).digest();
    // privateEncrypt with PKCS#1 padding is exactly what CKM_RSA_PKCS signing does on the token
    const viaDigestInfo = crypto.privateEncrypt({ key: privateKey, padding: crypto.constants.RSA_PKCS1_PADDING }, digestInfo(hash, digest));
    expect(viaDigestInfo).toEqual(crypto.sign(hash, data, privateKey));
  });
});
