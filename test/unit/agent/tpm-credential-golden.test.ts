import * as fs from 'node:fs';
import * as path from 'node:path';
import { activateCredentialOnce } from '../../../src/agent/tpm-credential-session';
import { TpmTransport } from '../../../src/agent/tpm-transport';
import { DeviceCaError } from '../../../src/errors/device-ca-error';
import { mutateBytes } from '../../fuzz/byte-mutations';
import { SeededRandom } from '../../fuzz/seeded-random';

/**
 * The credential activation replayed from a real swtpm (0.7.1) session, recorded through the agent's
 * own transport (test/fixtures/tpm/agent/activate-credential-swtpm.json: the RSA EK's public area, the
 * CA's challenge made by attestation/tpm/make-credential.ts for the AK at 0x81018000, every command and
 * response; swtpm answered the first TPM2_ActivateCredential with TPM_RC_RETRY). Then seeded mutations
 * of each response: a DeviceCaError or a result, never a TypeError or RangeError.
 */
interface Recorded {
  ekPublic: string;
  akHandle: string;
  secret: string;
  credentialBlob: string;
  encryptedSecret: string;
  exchanges: { cmd: string; rsp: string }[];
}
const rec = JSON.parse(fs.readFileSync(path.join(__dirname, '../../fixtures/tpm/agent/activate-credential-swtpm.json'), 'utf8')) as Recorded;
const input = {
  akHandle: parseInt(rec.akHandle, 16),
  ekPublic: Buffer.from(rec.ekPublic, 'hex'),
  challenge: { credentialBlob: Buffer.from(rec.credentialBlob, 'hex'), secret: Buffer.from(rec.encryptedSecret, 'hex') },
};
/** NONCED: the commands that carry a fresh random nonceCaller (StartAuthSession, ActivateCredential): compared by code only */
const NONCED = new Set([0x176, 0x147]);

/** Replay answers the recorded responses in order, checking each command against the recorded one. */
class Replay implements TpmTransport {
  private i = 0;
  readonly mismatches: string[] = [];
  constructor(private readonly responses: Buffer[]) {}
  send(command: Buffer): Promise<Buffer> {
    const want = Buffer.from(rec.exchanges[this.i]?.cmd ?? '', 'hex');
    const code = command.readUInt32BE(6);
    if (NONCED.has(code) ? want.length < 10 || want.readUInt32BE(6) !== code : !want.equals(command)) this.mismatches.push(`command ${this.i}: ${command.toString('hex')}`);
    const rsp = this.responses[this.i++];
    if (!rsp) throw new DeviceCaError('key-backend', 'replay: no more responses');
    return Promise.resolve(rsp);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

it('the recorded swtpm session: the same commands, TPM_RC_RETRY resubmitted, the secret recovered', async () => {
  const replay = new Replay(rec.exchanges.map((e) => Buffer.from(e.rsp, 'hex')));
  expect((await activateCredentialOnce(replay, input)).toString('hex')).toBe(rec.secret);
  expect(replay.mismatches).toEqual([]);
});

it('mutated swtpm responses: a DeviceCaError or a result, never another error', async () => {
  const rng = new SeededRandom(Number(process.env.FUZZ_SEED ?? 2321));
  const crashes: string[] = [];
  let refused = 0;
  for (let i = 0; i < 600; i++) {
    const responses: Buffer[] = rec.exchanges.map((e) => Buffer.from(e.rsp, 'hex'));
    const which = i % responses.length;
    const m = mutateBytes(rng, responses[which]);
    responses[which] = m.bytes;
    try {
      await activateCredentialOnce(new Replay(responses), input);
    } catch (e) {
      refused++;
      if (!(e instanceof DeviceCaError)) crashes.push(`case ${i}, response ${which} (${m.how}): ${String(e)}`);
    }
  }
  expect(crashes).toEqual([]);
  expect(refused).toBeGreaterThan(150); // the mutations reach the checks
});
