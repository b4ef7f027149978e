import * as crypto from 'node:crypto';
import { openSignerCa, signerCaChain } from '../ca/signer-ca';
import { buildDeviceCommand, DeviceCommand, DeviceCommandKind } from '../cms/device-command';
import { Config } from '../config/schema';
import { DeviceCaError } from '../errors/device-ca-error';
import { KeyBackend } from '../keys/key-backend';
import { Store } from '../store/store';
import { OPERATOR, Scope } from './device-lifecycle';

/** COMMAND_VALIDITY_MS: how long a device command stays good (the agent refuses it after expiresAt). */
export const COMMAND_VALIDITY_MS = 7 * 24 * 3600_000;

/**
 * DeviceCommands decides who gets a signed device command (cms/device-command.ts) and for which device.
 * The rule: the operator only (an owner token is 'forbidden': the command ends a device's identity); the
 * device exists ('not-found'); a retire command only for a device the retire flow already retired
 * (`devices retire`: its certificates revoked), so the command carries out on the device what the CA has
 * decided, never the decision itself ('forbidden' naming the state); a transfer command only for a
 * device released to a new owner (`devices release --to`: transferring), naming that owner. Each command is audited
 * `device.command.issued` with its nonce, before it is handed out.
 */
export class DeviceCommands {
  constructor(
    private readonly cfg: Config,
    private readonly store: Store,
    private readonly keys: KeyBackend,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async issue(a: { deviceId: string; command: DeviceCommandKind; actor: string; scope?: Scope }): Promise<{ der: Buffer; command: DeviceCommand }> {
    if ((a.scope ?? OPERATOR).kind !== 'operator') throw new DeviceCaError('forbidden', 'operator scope required');
    const device = await this.store.getDevice(a.deviceId);
    if (!device) throw new DeviceCaError('not-found', `device ${a.deviceId} is not registered`);
    if (a.command === 'retire' && device.state !== 'retired')
      throw new DeviceCaError('forbidden', `device ${a.deviceId} is ${device.state}: retire it first (devices retire ${a.deviceId}); the command tells its agent to delete what is left`);
    if (a.command === 'transfer' && (device.state !== 'transferring' || !device.pendingOwner))
      throw new DeviceCaError('forbidden', `device ${a.deviceId} is ${device.state}: release it first (devices release ${a.deviceId} --to <owner>); the command tells its agent to enroll again`);
    const now = this.now();
    const ca = await openSignerCa(this.cfg, this.keys, this.store, now);
    const command: DeviceCommand = {
      command: a.command,
      device: device.id,
      nonce: crypto.randomBytes(16).toString('hex'),
      issuedAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + COMMAND_VALIDITY_MS).toISOString(),
      ...(a.command === 'transfer' ? { newOwner: device.pendingOwner as string } : {}),
    };
    const der = await buildDeviceCommand(command, { certificate: ca.der, key: ca.key }, [ca.der, ...signerCaChain(ca)], now);
    await this.store.appendAudit({
      type: 'device.command.issued',
      actor: a.actor,
      subject: `device:${device.id}`,
      data: { command: command.command, nonce: command.nonce, expiresAt: command.expiresAt, ...(command.newOwner ? { newOwner: command.newOwner } : {}) },
    });
    return { der, command };
  }
}
