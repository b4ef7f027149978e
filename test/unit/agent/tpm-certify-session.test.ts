import { certifyCommand, certifyOnce } from '../../../src/agent/tpm-certify-command';
import { TpmTransport } from '../../../src/agent/tpm-transport';
import { DeviceCaError } from '../../../src/errors/device-ca-error';

/**
 * TPM2_Certify as the agent sends it over its own TPM connection (certifyOnce), against a scripted TPM:
 * TPM_RC_RETRY / TESTING / YIELDED are resubmitted byte for byte (tpm2_send, used before, failed on the
 * first one), a TPM that never stops retrying ends in an error, and other codes are not resubmitted.
 */
const KEY = 0x81018001;
const AK = 0x81018000;
const NONCE = Buffer.alloc(32, 0x5a);
const ATTEST = Buffer.from('ff544347801700', 'hex');
const SIGNATURE = Buffer.from('0014000b0004a1b2c3d4', 'hex');

/** response: a TPM response with code `rc`; on success, parameters TPM2B_ATTEST + TPMT_SIGNATURE and an empty auth area per session. */
function response(rc: number): Buffer {
  const params = Buffer.concat([u16(ATTEST.length), ATTEST, SIGNATURE]);
  const body = rc === 0 ? Buffer.concat([u32(params.length), params, Buffer.from('0000010000'.repeat(2), 'hex')]) : Buffer.alloc(0);
  const hdr = Buffer.alloc(10);
  hdr.writeUInt16BE(rc === 0 ? 0x8002 : 0x8001, 0);
  hdr.writeUInt32BE(10 + body.length, 2);
  hdr.writeUInt32BE(rc, 6);
  return Buffer.concat([hdr, body]);
}
const u16 = (n: number): Buffer => Buffer.from([n >> 8, n & 0xff]);
const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};

/** ScriptedTpm answers commands from a queue (the last answer repeats) and records what it got. */
class ScriptedTpm implements TpmTransport {
  readonly sent: Buffer[] = [];
  constructor(private readonly answers: Buffer[]) {}
  send(command: Buffer): Promise<Buffer> {
    this.sent.push(command);
    return Promise.resolve(this.answers.length > 1 ? this.answers.shift()! : this.answers[0]);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

describe('certifyOnce', () => {
  it('one TPM2_Certify with the nonce; TPMS_ATTEST and the TPMT_SIGNATURE read from the answer', async () => {
    const tpm = new ScriptedTpm([response(0)]);
    const r = await certifyOnce(tpm, KEY, AK, NONCE);
    expect(tpm.sent).toEqual([certifyCommand(KEY, AK, NONCE)]);
    expect(r.attest.toString('hex')).toBe(ATTEST.toString('hex'));
    expect(r.signature.toString('hex')).toBe(SIGNATURE.toString('hex'));
  });

  it.each([
    ['TPM_RC_RETRY', 0x922],
    ['TPM_RC_TESTING', 0x90a],
    ['TPM_RC_YIELDED', 0x908],
  ])('%s first (swtpm after start-up): resubmitted byte for byte, then the evidence', async (_name, rc) => {
    const tpm = new ScriptedTpm([response(rc), response(0)]);
    const r = await certifyOnce(tpm, KEY, AK, NONCE);
    expect(tpm.sent).toHaveLength(2);
    expect(tpm.sent[1]).toEqual(tpm.sent[0]);
    expect(r.attest.toString('hex')).toBe(ATTEST.toString('hex'));
  });

  it('a TPM that keeps answering TPM_RC_RETRY: an error naming the code after five submissions', async () => {
    const tpm = new ScriptedTpm([response(0x922)]);
    await expect(certifyOnce(tpm, KEY, AK, NONCE)).rejects.toThrow('TPM2_Certify failed: TPM response code 0x922');
    expect(tpm.sent).toHaveLength(5);
  });

  it('lockout is not resubmitted: one submission, the lockout advice', async () => {
    const tpm = new ScriptedTpm([response(0x921)]);
    await expect(certifyOnce(tpm, KEY, AK, NONCE)).rejects.toThrow(/dictionary-attack lockout \(TPM_RC_LOCKOUT from TPM2_Certify\)/);
    expect(tpm.sent).toHaveLength(1);
  });

  it('a truncated TPM2B_ATTEST in a success answer: a key-backend error, not a crash', async () => {
    const bad = Buffer.from('80020000001000000000' + '00000002' + '00ff', 'hex');
    const err = await certifyOnce(new ScriptedTpm([bad]), KEY, AK, NONCE).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeviceCaError);
    expect((err as DeviceCaError).code).toBe('key-backend');
    expect((err as Error).message).toBe('TPM2_Certify: truncated TPM2B_ATTEST');
  });
});
