import {
  activateCredentialCommand,
  createPrimaryCommand,
  ekTemplate,
  flushContextCommand,
  parseResponse,
  policySecretCommand,
  readTpm2b,
  startPolicySessionCommand,
  TPM_RH_ENDORSEMENT,
} from '../../../src/agent/tpm-commands';
import { templateOf } from '../../../src/agent/tpm-credential-session';
import { DeviceCaError } from '../../../src/errors/device-ca-error';

/**
 * The agent's own TPM 2.0 marshalling (src/agent/tpm-commands.ts): golden command bytes laid out field by
 * field from TPM 2.0 Part 3 (the EK templates are also checked against tpm2_createek on swtpm in
 * test/interop/tpm-agent-direct.test.ts), and responses that are short, inconsistent or carry an error
 * code: a DeviceCaError naming the command, never a crash or a RangeError.
 */
const EK_POLICY = '837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa';
const PW = '40000009' + '0000' + '00' + '0000'; // TPM_RS_PW, empty nonce, attributes 0, empty hmac

describe('EK templates (TCG EK Credential Profile 2.0, annex B)', () => {
  it('L-1 RSA 2048: restricted decrypt, AES-128-CFB, PolicySecret(endorsement), 256 zero bytes unique', () => {
    expect(ekTemplate('rsa').toString('hex')).toBe('0001' + '000b' + '000300b2' + '0020' + EK_POLICY + '0006' + '0080' + '0043' + '0010' + '0800' + '00000000' + '0100' + '00'.repeat(256));
  });

  it('L-2 ECC P-256: 32 zero bytes for x and y', () => {
    expect(ekTemplate('ecc').toString('hex')).toBe(
      '0023' + '000b' + '000300b2' + '0020' + EK_POLICY + '0006' + '0080' + '0043' + '0010' + '0003' + '0010' + '0020' + '00'.repeat(32) + '0020' + '00'.repeat(32),
    );
  });

  it('H-3 ECC P-384: SHA-384, userWithAuth, PolicyB, AES-256-CFB, empty unique', () => {
    expect(ekTemplate('ecc384').toString('hex')).toBe(
      '0023' +
        '000c' +
        '000300f2' +
        '0030' +
        'b26e7d28d11a50bc53d882bcf5fd3a1a074148bb35d3b4e4cb1c0ad9bde419cacb47ba09699646150f9fc000f3f80e12' +
        '0006' +
        '0100' +
        '0043' +
        '0010' +
        '0004' +
        '0010' +
        '0000' +
        '0000',
    );
  });

  it('templateOf reads type and nameAlg of a TPM2B_PUBLIC; anything else is a bad-request error', () => {
    expect(templateOf(Buffer.from('0000' + '0001000b', 'hex'))).toBe('rsa');
    expect(templateOf(Buffer.from('0000' + '0023000b', 'hex'))).toBe('ecc');
    expect(templateOf(Buffer.from('0000' + '0023000c', 'hex'))).toBe('ecc384');
    for (const bad of ['0000' + '0001000c', '0000' + '0008000b', '0000']) {
      expect(() => templateOf(Buffer.from(bad, 'hex'))).toThrow('the EK public area is not one of the TCG default EK templates');
    }
  });
});

describe('command bytes', () => {
  it('TPM2_CreatePrimary under the endorsement hierarchy: one password session, empty sensitive, the template, no outsideInfo, no PCRs', () => {
    const tpl = Buffer.from('0001000b', 'hex');
    const cmd = createPrimaryCommand(TPM_RH_ENDORSEMENT, tpl);
    const body = '4000000b' + '00000009' + PW + '0004' + '0000' + '0000' + '0004' + '0001000b' + '0000' + '00000000';
    expect(cmd.toString('hex')).toBe('8002' + (10 + body.length / 2).toString(16).padStart(8, '0') + '00000131' + body);
  });

  it('TPM2_StartAuthSession: no sessions, tpmKey and bind TPM_RH_NULL, the caller nonce, no salt, policy type, symmetric NULL, SHA-256', () => {
    const nonce = Buffer.alloc(32, 0xab);
    expect(startPolicySessionCommand(nonce).toString('hex')).toBe('8001' + '0000003b' + '00000176' + '40000007' + '40000007' + '0020' + 'ab'.repeat(32) + '0000' + '01' + '0010' + '000b');
  });

  it('TPM2_PolicySecret: authHandle endorsement with its password session, the policy session handle, four empty parameters', () => {
    expect(policySecretCommand(TPM_RH_ENDORSEMENT, 0x03000000).toString('hex')).toBe(
      '8002' + '00000029' + '00000151' + '4000000b' + '03000000' + '00000009' + PW + '0000' + '0000' + '0000' + '00000000',
    );
  });

  it('TPM2_ActivateCredential: AK with a password session, EK with the policy session (continueSession clear, empty hmac) or with its password', () => {
    const blob = Buffer.from('0002aabb', 'hex');
    const secret = Buffer.from('0001cc', 'hex');
    const policy = activateCredentialCommand(0x81018000, 0x80000000, { handle: 0x03000000, nonceCaller: Buffer.alloc(16, 1) }, blob, secret);
    const ekAuth = '03000000' + '0010' + '01'.repeat(16) + '00' + '0000';
    const body = '81018000' + '80000000' + (9 + ekAuth.length / 2).toString(16).padStart(8, '0') + PW + ekAuth + '0002aabb' + '0001cc';
    expect(policy.toString('hex')).toBe('8002' + (10 + body.length / 2).toString(16).padStart(8, '0') + '00000147' + body);
    const password = activateCredentialCommand(0x81018000, 0x80000001, 'password', blob, secret);
    expect(password.toString('hex')).toBe('8002' + '0000002f' + '00000147' + '81018000' + '80000001' + '00000012' + PW + PW + '0002aabb' + '0001cc');
  });

  it('TPM2_FlushContext: the handle as the only parameter', () => {
    expect(flushContextCommand(0x80000001).toString('hex')).toBe('8001' + '0000000e' + '00000165' + '80000001');
  });
});

describe('parseResponse', () => {
  const rsp = (hex: string): Buffer => Buffer.from(hex, 'hex');
  const sized = (tag: string, rest: string): Buffer => rsp(tag + (6 + rest.length / 2).toString(16).padStart(8, '0') + rest);

  it('a sessions response: the handles and exactly parameterSize bytes of parameters (the auth area after them is not a parameter)', () => {
    const r = parseResponse('TPM2_CreatePrimary', sized('8002', '00000000' + '80000000' + '00000003' + 'aabbcc' + '0000010000'), 1);
    expect(r.handles).toEqual([0x80000000]);
    expect(r.params.toString('hex')).toBe('aabbcc');
  });

  it('a no-sessions response: everything after the handles', () => {
    const r = parseResponse('TPM2_StartAuthSession', sized('8001', '00000000' + '03000000' + '0002abcd'), 1);
    expect(r.handles).toEqual([0x03000000]);
    expect(readTpm2b('x', 'nonceTPM', r.params, 0).toString('hex')).toBe('abcd');
  });

  const sizedHex = (tag: string, rest: string): string => sized(tag, rest).toString('hex');
  it.each([
    ['empty', '', 'TPM2_X: short response from the TPM (0 bytes)'],
    ['short header', '80010000', 'TPM2_X: short response from the TPM (4 bytes)'],
    ['size field larger than the bytes', '8001000000ff00000000', 'TPM2_X: response size field 255 but 10 bytes'],
    ['a TPM 1.2 tag', '00c40000000a00000000', 'TPM2_X: response tag 0xc4 is not a TPM 2.0 response'],
    ['handles cut off', sizedHex('8001', '00000000' + '8000'), 'TPM2_X: truncated response (handles)'],
    ['no parameter size', sizedHex('8002', '00000000' + '80000000' + '0000'), 'TPM2_X: truncated response (parameter size)'],
    ['parameters past the end', sizedHex('8002', '00000000' + '80000000' + '00000009' + 'aabb'), 'TPM2_X: truncated response (parameters)'],
  ])('%s: a key-backend error naming the command', (_what, hex, message) => {
    const b = rsp(hex);
    let caught: unknown;
    try {
      parseResponse('TPM2_X', b, 1);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(DeviceCaError);
    expect((caught as DeviceCaError).code).toBe('key-backend');
    expect((caught as DeviceCaError).message).toBe(message);
  });

  it('TPM_RC_LOCKOUT is the lockout advice; another code is named in hex', () => {
    expect(() => parseResponse('TPM2_ActivateCredential', rsp('80010000000a00000921'), 0)).toThrow(
      /^the TPM is in dictionary-attack lockout \(TPM_RC_LOCKOUT from TPM2_ActivateCredential\): .*tpm2_dictionarylockout --clear-lockout/,
    );
    expect(() => parseResponse('TPM2_PolicySecret', rsp('80010000000a0000098e'), 0)).toThrow('TPM2_PolicySecret failed: TPM response code 0x98e');
  });

  it('readTpm2b: a size past the end is a truncated error', () => {
    expect(() => readTpm2b('TPM2_ActivateCredential', 'certInfo', Buffer.from('0005abcd', 'hex'), 0)).toThrow('TPM2_ActivateCredential: truncated certInfo');
    expect(() => readTpm2b('TPM2_ActivateCredential', 'certInfo', Buffer.from('00', 'hex'), 0)).toThrow('TPM2_ActivateCredential: truncated certInfo');
  });
});
