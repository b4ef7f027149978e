import { time } from '../der/der-writer';
import { firmwareChainOf } from './firmware-chain';
import { DeviceCaError } from '../errors/device-ca-error';
import { SigningKey } from '../keys/key-backend';
import { CMS_OID } from './cms-algorithms';
import { buildSignedData } from './signed-data';
import { parseSignedDataParts } from './signed-data-parts';
import { verifySignerInfo } from './signer-info';

/**
 * device-command: a signed order to one device that it must carry out itself (issue 13: the end of life
 * of its identity). A SignedData (RFC 5652 §5) whose eContentType is device-ca's id-ct-deviceCommand
 * (DEVICE_COMMAND_OID) and whose eContent is UTF-8 JSON { command, device, nonce, issuedAt, expiresAt, newOwner? },
 * signed by the firmware signer CA with a signingTime, carrying its certificate and the root. Who may
 * have one made is decided in ra/device-commands.ts; this module proves who signed and what it says.
 */

/** DEVICE_COMMAND_OID: device-ca's UUID OID (X.667 2.25 arc) for the content type of a device command. */
export const DEVICE_COMMAND_OID = '2.25.181106915634063386203377113302683929911';

/**
 * DeviceCommandKind: what a command tells the agent: 'retire' = evict its TPM objects and delete its
 * identity; 'transfer' = the same, then enroll again (with the one-time secret the new owner gives).
 */
export type DeviceCommandKind = 'retire' | 'transfer';

export interface DeviceCommand {
  command: DeviceCommandKind;
  device: string;
  /** nonce: 16 random bytes, hex: makes each command unique, and is the audit record's handle on it */
  nonce: string;
  issuedAt: string;
  expiresAt: string;
  /** newOwner: a transfer's new owner (the device's pendingOwner when the command was made) */
  newOwner?: string;
  /**
   * deviceNonce: the nonce the agent sent when it fetched the command (`agent command --fetch`), hex; the
   * command is signed over it at fetch time, so a recorded command cannot be replayed to the device.
   * Absent in a command made for a file (`devices command --out`), which only the validity window bounds.
   */
  deviceNonce?: string;
}

/** DEVICE_NONCE_RE: what a device's nonce looks like: 16 to 64 random bytes, lowercase hex. */
export const DEVICE_NONCE_RE = /^(?:[0-9a-f]{2}){16,64}$/;

/** CLOCK_SKEW_MS: a device clock this far behind the CA's still accepts a command issued just now. */
const CLOCK_SKEW_MS = 5 * 60_000;

/** buildDeviceCommand signs `c` with the signer CA (`signer`), carrying `certificates` (the signer CA and the root). */
export function buildDeviceCommand(c: DeviceCommand, signer: { certificate: Buffer; key: SigningKey }, certificates: Buffer[], now: Date): Promise<Buffer> {
  return buildSignedData({
    content: Buffer.from(JSON.stringify(c), 'utf8'),
    contentType: DEVICE_COMMAND_OID,
    signer,
    attributes: [{ type: CMS_OID.signingTime, values: [time(now)] }],
    certificates,
  });
}

/**
 * verifyDeviceCommand: the command's one signature verifies, by the signer CA of `chain` (firmwareChainOf:
 * the CA certificate that reaches the chain's self-signed root), the content is a well-formed command for
 * `device`, and `now` is within [issuedAt, expiresAt]. With `deviceNonce` (a fetched command) the command
 * must carry exactly that nonce. Errors: 'bad-request' (malformed), 'bad-signature', 'forbidden' (another
 * signer, another device, expired, another device nonce).
 */
export function verifyDeviceCommand(der: Buffer, o: { chain: Buffer[]; device: string; now: Date; deviceNonce?: string }): DeviceCommand {
  const { signerCa } = firmwareChainOf(o.chain);
  const p = parseSignedDataParts(der);
  if (p.eContentType !== DEVICE_COMMAND_OID || !p.eContent) throw new DeviceCaError('bad-request', 'the file is not a device-ca device command');
  if (p.signerInfos.length !== 1) throw new DeviceCaError('bad-request', 'a device command has exactly one signer');
  const v = verifySignerInfo(p.signerInfos[0], p.eContentType, p.eContent, [signerCa.raw, ...p.certificates.filter((c) => c[0] === 0x30)]);
  if (!v.certificate.equals(signerCa.raw)) throw new DeviceCaError('forbidden', 'the command is not signed by the firmware signer CA');
  let c: DeviceCommand;
  try {
    c = JSON.parse(p.eContent.toString('utf8')) as DeviceCommand;
  } catch {
    throw new DeviceCaError('bad-request', 'the command content is not JSON');
  }
  const issuedAt = new Date(c?.issuedAt);
  const expiresAt = new Date(c?.expiresAt);
  const known = c?.command === 'retire' || (c?.command === 'transfer' && typeof c.newOwner === 'string');
  if (!known || typeof c.device !== 'string' || typeof c.nonce !== 'string' || !/^[0-9a-f]{32}$/.test(c.nonce) || isNaN(issuedAt.getTime()) || isNaN(expiresAt.getTime())) {
    throw new DeviceCaError('bad-request', 'the command is not one this agent knows (retire or transfer, with device, nonce, issuedAt, expiresAt)');
  }
  if (c.device !== o.device) throw new DeviceCaError('forbidden', `the command is for device ${JSON.stringify(c.device)}, not ${JSON.stringify(o.device)}`);
  if (c.deviceNonce !== undefined && (typeof c.deviceNonce !== 'string' || !DEVICE_NONCE_RE.test(c.deviceNonce))) throw new DeviceCaError('bad-request', "the command's device nonce is not hex");
  if (o.deviceNonce !== undefined && c.deviceNonce !== o.deviceNonce) throw new DeviceCaError('forbidden', 'the command is not signed over the nonce this agent sent (a recorded command replayed?)');
  if (o.now.getTime() < issuedAt.getTime() - CLOCK_SKEW_MS || o.now > expiresAt) throw new DeviceCaError('forbidden', `the command is valid from ${c.issuedAt} to ${c.expiresAt}, not now`);
  return c;
}
