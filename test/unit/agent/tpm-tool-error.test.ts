import * as fs from 'node:fs';
import * as path from 'node:path';
import { certifyCommand, parseCertifyResponse } from '../../../src/agent/tpm-certify-command';
import { tpmToolError } from '../../../src/agent/tpm-tool-error';

/**
 * The agent's TPM error messages, from the stderr tpm2-tools 5.4 really printed (captured from swtpm into
 * test/fixtures/tpm/agent/): lockout says how to clear it, an unreachable TPM names the TCTI, other
 * failures keep the tool's own reason.
 */
const stderrOf = (name: string): string => fs.readFileSync(path.join(__dirname, '../../fixtures/tpm/agent', name), 'utf8');

describe('tpmToolError', () => {
  it('TPM_RC_LOCKOUT (0x921) from tpm2_sign: says lockout and names tpm2_dictionarylockout', () => {
    const e = tpmToolError('tpm2_sign', stderrOf('lockout-tpm2_sign.stderr.txt'), 'swtpm:port=2321');
    expect(e.code).toBe('key-backend');
    expect(e.message).toMatch(/^the TPM is in dictionary-attack lockout \(TPM_RC_LOCKOUT from tpm2_sign\): /);
    expect(e.message).toContain('tpm2_dictionarylockout --clear-lockout');
    expect(e.detail).toContain('Esys_Sign');
  });

  it("a wrong authorization (0x98e) is not called lockout: the tool's reason is kept", () => {
    const e = tpmToolError('tpm2_sign', stderrOf('bad-auth-tpm2_sign.stderr.txt'), 'swtpm:port=2321');
    expect(e.message).not.toContain('lockout');
    expect(e.message).toBe('tpm2_sign failed: Eys_Sign(0x98E) - tpm:session(1):the authorization HMAC check failed and DA counter incremented; Unable to run tpm2_sign');
  });

  it.each([
    ['unreachable-swtpm.stderr.txt', 'swtpm:host=127.0.0.1,port=1'],
    ['unreachable-device.stderr.txt', 'device:/dev/tpmrm0'],
  ])('an unreachable TPM (%s) names the TCTI', (file, tcti) => {
    const e = tpmToolError('tpm2_getcap', stderrOf(file), tcti);
    expect(e.message).toBe(`TPM unreachable through TCTI "${tcti}" (set TPM2TOOLS_TCTI, e.g. device:/dev/tpmrm0): tpm2_getcap could not connect`);
  });

  it('a missing NV index keeps the handle error in the detail (TpmTools.ekCertificate turns it into the --ek-cert hint)', () => {
    const e = tpmToolError('tpm2_nvread', stderrOf('nv-missing-tpm2_nvread.stderr.txt'), 'swtpm:port=2321');
    expect(e.message).toContain('tpm2_nvread failed: Esys_TR_FromTPMPublic(0x18B)');
    expect(e.detail).toMatch(/0x0000018b/);
  });
});

describe('TPM2_Certify marshalling', () => {
  it('the command bytes: header, both handles, two empty password sessions, the nonce, inScheme NULL', () => {
    const cmd = certifyCommand(0x81018001, 0x81018000, Buffer.from('abcd', 'hex'));
    expect(cmd.toString('hex')).toBe(
      // tag, size 46, TPM_CC_Certify; objectHandle, signHandle; authorizationSize 18 = 2 x (TPM_RS_PW, empty nonce, attributes 0, empty hmac)
      '8002' + '0000002e' + '00000148' + '81018001' + '81018000' + '00000012' + '400000090000000000'.repeat(2) + '0002abcd' + '0010',
    );
  });

  it('a lockout response code is the lockout message; a short response is an error, not a crash', () => {
    const rsp = Buffer.from('80010000000a00000921', 'hex');
    expect(() => parseCertifyResponse(rsp)).toThrow(/dictionary-attack lockout \(TPM_RC_LOCKOUT from TPM2_Certify\)/);
    expect(() => parseCertifyResponse(Buffer.from('8001', 'hex'))).toThrow('TPM2_Certify: short response from the TPM');
    expect(() => parseCertifyResponse(Buffer.from('80020000001000000000000000ff0005', 'hex'))).toThrow('TPM2_Certify: truncated response');
  });

  it('a success response: TPMS_ATTEST and the signature split at the TPM2B length', () => {
    const params = Buffer.concat([Buffer.from('0003aabbcc', 'hex'), Buffer.from('0014000b0001ff', 'hex')]);
    const sizeField = Buffer.alloc(4);
    sizeField.writeUInt32BE(params.length);
    const sessions = Buffer.from('0000010000', 'hex');
    const body = Buffer.concat([sizeField, params, sessions]);
    const hdr = Buffer.alloc(10);
    hdr.writeUInt16BE(0x8002, 0);
    hdr.writeUInt32BE(10 + body.length, 2);
    const r = parseCertifyResponse(Buffer.concat([hdr, body]));
    expect(r.attest.toString('hex')).toBe('aabbcc');
    expect(r.signature.toString('hex')).toBe('0014000b0001ff');
  });
});
