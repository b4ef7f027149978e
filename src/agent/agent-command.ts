import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pemBlocks } from '../ca/pem';
import { DeviceCommand, verifyDeviceCommand } from '../cms/device-command';
import { DeviceCaError } from '../errors/device-ca-error';
import { FILES, readState } from './agent-files';
import { FIRMWARE_STATE } from './agent-update';
import { hex, parseHandle, TpmTools } from './tpm-tools';

export interface CommandOptions {
  in: string;
  firmwareChain: string;
  out: string;
  tcti?: string;
}

/**
 * agentCommand is `device-ca agent command --in <file>`: a signed device command (cms/device-command.ts)
 * is verified (the firmware signer CA of --firmware-chain, this device's id from agent.json, its validity)
 * and carried out. retire: every persistent TPM object of this identity (the AK and both key slots) is
 * evicted, then the identity files of --out (cert.pem, chain.pem, ak.pem, agent.json, firmware.json)
 * are deleted, and the directory if nothing else is left. Returns the command and the handles evicted.
 */
export function agentCommand(o: CommandOptions): { command: DeviceCommand; evicted: string[] } {
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
  const { state } = readState(o.out);
  const command = verifyDeviceCommand(der, { chain: pemBlocks(chainText, 'CERTIFICATE'), device: state.device, now: new Date() });
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
    return { command, evicted };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}
