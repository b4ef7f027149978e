import * as fs from 'node:fs';
import * as path from 'node:path';
import { CMS_OID } from '../../../src/cms/cms-algorithms';
import { readFirmwareMetadata } from '../../../src/cms/firmware-attributes';
import { buildFirmwareReceipt, decodeFirmwareReceipt, encodeFirmwareReceipt, FirmwareReceipt, readFirmwareReceipt } from '../../../src/cms/firmware-receipt';
import { integer, oid, seq, tlv } from '../../../src/der/der-writer';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { algorithmOfKey, softwareSigningKey } from '../../../src/keys/software-key-backend';
import { CmsParty, makeParty, openssl, removeParty } from './cms-fixture';

let ec: CmsParty;
let rsa: CmsParty;
let other: CmsParty;
beforeAll(() => {
  ec = makeParty('dev-1', 'P-256');
  rsa = makeParty('dev-2', 2048);
  other = makeParty('dev-3', 'P-256');
});
afterAll(() => [ec, rsa, other].forEach(removeParty));

const signer = (p: CmsParty) => ({ certificate: p.certDer, key: softwareSigningKey(p.key, algorithmOfKey(p.key), p.keyFile) });
const loaded: FirmwareReceipt = { kind: 'loaded', hwType: '1.3.6.1.4.1.99999.1', hwSerial: 'dev-1', package: { name: 'fw-sensor', version: 7 } };
const codeOf = (f: () => unknown): string => {
  try {
    f();
    return 'resolved';
  } catch (e) {
    return e instanceof DeviceCaError ? e.code : `not a DeviceCaError: ${String(e)}`;
  }
};

describe('RFC 4108 §3/§4 receipts', () => {
  it('a signed load receipt reads back as written, and openssl verifies it as a SignedData v3 of id-ct-firmwareLoadReceipt', async () => {
    for (const p of [ec, rsa]) {
      const der = await buildFirmwareReceipt({ ...loaded, trustAnchorKeyId: Buffer.from('ta'), decryptKeyId: Buffer.from('dk') }, signer(p), new Date());
      const got = readFirmwareReceipt(der, []);
      expect(got.receipt).toEqual({ ...loaded, trustAnchorKeyId: Buffer.from('ta'), decryptKeyId: Buffer.from('dk') });
      expect(got.signerCertificate).toEqual(p.certDer);
      expect(got.signingTime).toBeInstanceOf(Date);
      const file = path.join(p.dir, 'receipt.der');
      fs.writeFileSync(file, der);
      const content = openssl(['cms', '-verify', '-noverify', '-inform', 'DER', '-in', file]);
      expect(decodeFirmwareReceipt('loaded', content)).toEqual({ ...loaded, trustAnchorKeyId: Buffer.from('ta'), decryptKeyId: Buffer.from('dk') });
      const printed = openssl(['cms', '-cmsout', '-print', '-inform', 'DER', '-in', file]).toString();
      expect(printed).toMatch(/version: 3/);
      expect(printed).toMatch(/eContentType: .*\(?1\.2\.840\.113549\.1\.9\.16\.1\.17\)?/);
    }
  });

  it('reads a receipt openssl signed without its certificate, given the certificate the transport proved', () => {
    const content = encodeFirmwareReceipt({ ...loaded, package: { name: '1.3.6.1.4.1.99999.2', version: 12 } });
    const input = path.join(ec.dir, 'content.der');
    fs.writeFileSync(input, content);
    const der = openssl([
      'cms',
      '-sign',
      '-binary',
      '-nodetach',
      '-nocerts',
      '-econtent_type',
      CMS_OID.firmwareLoadReceipt,
      '-signer',
      ec.certFile,
      '-inkey',
      ec.keyFile,
      '-in',
      input,
      '-outform',
      'DER',
    ]);
    expect(readFirmwareReceipt(der, [ec.certDer]).receipt.package).toEqual({ name: '1.3.6.1.4.1.99999.2', version: 12 });
    expect(codeOf(() => readFirmwareReceipt(der, []))).toBe('bad-request');
    // another key's certificate in the candidates does not make it verify
    expect(codeOf(() => readFirmwareReceipt(der, [other.certDer]))).toBe('bad-request');
  });

  it('an error report carries its code, the vendor code and (optionally) the package', async () => {
    const report: FirmwareReceipt = { kind: 'error', hwType: '1.3.6.1.4.1.99999.1', hwSerial: 'dev-1', package: { name: 'fw-sensor', version: 8 }, errorCode: 23, vendorErrorCode: 4711 };
    expect(readFirmwareReceipt(await buildFirmwareReceipt(report, signer(ec), new Date()), []).receipt).toEqual(report);
    const bare: FirmwareReceipt = { kind: 'error', hwType: '1.3.6.1.4.1.99999.1', hwSerial: 'dev-1', package: null, errorCode: 27 };
    expect(readFirmwareReceipt(await buildFirmwareReceipt(bare, signer(ec), new Date()), []).receipt).toEqual(bare);
  });

  it('refuses a tampered receipt, another content type, several signers and fields RFC 4108 does not define', async () => {
    const der = await buildFirmwareReceipt(loaded, signer(ec), new Date());
    const at = der.indexOf(Buffer.from('fw-sensor@7'));
    const tampered = Buffer.from(der);
    tampered[at + 10] = '8'.charCodeAt(0);
    expect(codeOf(() => readFirmwareReceipt(tampered, []))).toBe('bad-signature');

    const input = path.join(ec.dir, 'content.der');
    fs.writeFileSync(input, encodeFirmwareReceipt(loaded));
    const data = openssl(['cms', '-sign', '-binary', '-nodetach', '-signer', ec.certFile, '-inkey', ec.keyFile, '-in', input, '-outform', 'DER']);
    expect(codeOf(() => readFirmwareReceipt(data, []))).toBe('bad-request');
    const two = openssl([
      'cms',
      '-sign',
      '-binary',
      '-nodetach',
      '-econtent_type',
      CMS_OID.firmwareLoadReceipt,
      '-signer',
      ec.certFile,
      '-inkey',
      ec.keyFile,
      '-signer',
      rsa.certFile,
      '-inkey',
      rsa.keyFile,
      '-in',
      input,
      '-outform',
      'DER',
    ]);
    expect(codeOf(() => readFirmwareReceipt(two, []))).toBe('bad-request');

    expect(codeOf(() => decodeFirmwareReceipt('loaded', Buffer.concat([encodeFirmwareReceipt(loaded).subarray(0, -1)])))).toBe('bad-request');
    expect(codeOf(() => decodeFirmwareReceipt('loaded', seq(oid('1.2.3'), tlv(0x04, Buffer.from('dev-1')))))).toBe('bad-request'); // no fwPkgName
    expect(codeOf(() => decodeFirmwareReceipt('loaded', seq(integer(5), oid('1.2.3'), tlv(0x04, Buffer.from('x')), tlv(0x04, Buffer.from('a@1')))))).toBe('bad-request'); // version 5
    expect(codeOf(() => decodeFirmwareReceipt('error', seq(oid('1.2.3'), tlv(0x04, Buffer.from('x')), tlv(0x0a, Buffer.from([0])))))).toBe('bad-request'); // error code 0
    expect(codeOf(() => decodeFirmwareReceipt('loaded', seq(oid('1.2.3'), tlv(0x04, Buffer.from('x')), tlv(0x04, Buffer.from('a@1')), tlv(0x05))))).toBe('bad-request'); // trailing field
  });

  it('a preferred package identifier with an empty or negative verNum is a bad request, not a crash (package and receipt alike)', () => {
    for (const verNum of [tlv(0x02), tlv(0x02, Buffer.from([0xff]))]) {
      const id = seq(oid('1.2.3.4'), verNum);
      expect(codeOf(() => readFirmwareMetadata(new Map([[CMS_OID.firmwarePackageId, [seq(id)]]])))).toBe('bad-request');
      expect(codeOf(() => decodeFirmwareReceipt('loaded', seq(oid('1.2.3'), tlv(0x04, Buffer.from('dev-1')), id)))).toBe('bad-request');
    }
  });
});
