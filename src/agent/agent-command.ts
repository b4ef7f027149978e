import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pemBlocks } from '../ca/pem';
import { DeviceCommand, verifyDeviceCommand } from '../cms/device-command';
import { DeviceCaError } from '../errors/device-ca-error';
import { agentEnroll } from './agent-enroll';
import { FILES, keyAlgorithmOf, readState } from './agent-files';
import { FIRMWARE_STATE } from './agent-update';
import { hex, parseHandle, TpmTools } from './tpm-tools';

export interface CommandOptions {
  in: string;
  firmwareChain: string;
  out: string;
  tcti?: string;
  /** transfer only: the one-time secret of the new owner's claim, the CA chain, and the EK files enroll may need */
  secret?: string;
  trust?: string;
  ekCert?: string;
  ekChain?: string[];
}

/**
 * agentCommand is `device-ca agent command --in <file>`: a signed device command (cms/device-command.ts)
 * is verified (the firmware signer CA of --firmware-chain, this device's id from agent.json, its validity)
 * and carried out. retire: every persistent TPM object of this identity (the AK and both key slots) is
 * evicted, then the identity files of --out (cert.pem, chain.pem, ak.pem, agent.json, firmware.json)
 * are deleted, and the directory if nothing else is left. transfer: the same, then `agent enroll` again
 * at the same handles with the secret the new owner gives (--secret), so the device has a new AK, key and
 * certificate under its new owner and nothing of the old identity. Returns the command, the handles
 * evicted and, after a transfer, the new certificate's serial.
 */
export async function agentCommand(o: CommandOptions): Promise<{ command: DeviceCommand; evicted: string[]; enrolled?: string }> {
  let der: Buffer;
  try {
    der = fs.readFileSync(o.in);
  } catch (e) {
    throw new DeviceCaError('bad-request', `--in ${o.in}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  let chainText: string;
  try {
    chainText = fs.readFileSync(o.firmwareChain, 'latin1');
  } catch (e) {
    throw new DeviceCaError('bad-request', `--firmware-chain ${o.firmwareChain}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const { state, cert } = readState(o.out);
  const command = verifyDeviceCommand(der, { chain: pemBlocks(chainText, 'CERTIFICATE'), device: state.device, now: new Date() });
  if (command.command === 'transfer' && (!o.secret || !o.trust)) {
    throw new DeviceCaError(
      'bad-request',
      `a transfer command enrolls the device again under ${command.newOwner}: give --secret (from the new owner's "devices claim") and --trust; nothing was changed`,
    );
  }
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-agent-'));
  const tpm = new TpmTools(work, o.tcti);
  try {
    const ours = [...new Set([state.akHandle, state.keyHandle, ...state.keySlots])].map((h) => parseHandle(h, `${FILES.state} handle`));
    const held = tpm.persistentHandles();
    const evicted: string[] = [];
    for (const h of ours) {
      if (!held.includes(h)) continue;
      tpm.evict(h);
      evicted.push(hex(h));
    }
    // the TPM objects first: identity files without a key are harmless, a key without its files would be orphaned
    for (const f of [FILES.cert, FILES.chain, FILES.ak, FIRMWARE_STATE, FILES.state]) fs.rmSync(path.join(o.out, f), { force: true });
    if (fs.readdirSync(o.out).length === 0) fs.rmdirSync(o.out);
    if (command.command !== 'transfer') return { command, evicted };
    const slots = state.keySlots.map((h) => parseHandle(h, `${FILES.state} keySlots`)) as [number, number];
    const r = await agentEnroll({
      est: state.est,
      device: state.device,
      secret: o.secret as string,
      trust: o.trust as string,
      out: o.out,
      ekCert: o.ekCert,
      ekChain: o.ekChain,
      akHandle: parseHandle(state.akHandle, `${FILES.state} akHandle`),
      keySlots: slots,
      tcti: o.tcti,
      keyDecrypt: state.keyDecrypt,
      keyAlg: keyAlgorithmOf(cert),
    });
    return { command, evicted, enrolled: r.serial };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}
