import { time } from '../der/der-writer';
import { DeviceCaError } from '../errors/device-ca-error';
import { SigningKey } from '../keys/key-backend';
import { CMS_OID } from './cms-algorithms';
import { DEVICE_NONCE_RE } from './device-command';
import { buildSignedData } from './signed-data';
import { parseSignedDataParts } from './signed-data-parts';
import { verifySignerInfo } from './signer-info';

/**
 * device-command-report: a device's signed word on a device command it fetched (issue 13): done, or
 * failed with a reason. A SignedData (RFC 5652 §5) whose eContentType is device-ca's
 * id-ct-deviceCommandReport (DEVICE_COMMAND_REPORT_OID) and whose eContent is UTF-8 JSON
 * { device, command, nonce, deviceNonce, outcome, reason?, evicted? }, signed by the device key with a
 * signingTime and carrying the signer's certificate. This module proves which key signed and what it says;
 * whose key that is, and whether the report answers a command the device fetched, is ra/device-commands.ts's.
 */

/** DEVICE_COMMAND_REPORT_OID: device-ca's UUID OID (X.667 2.25 arc) for the content type of a command report. */
export const DEVICE_COMMAND_REPORT_OID = '2.25.187484337851797069188155568405227140586';

/** MAX_REASON: a failure reason is kept short in the audit record (the agent prints the whole error locally). */
export const MAX_REASON = 500;

export interface DeviceCommandReport {
  device: string;
  command: 'retire' | 'transfer';
  /** nonce: the command's (device-ca's) nonce */
  nonce: string;
  /** deviceNonce: the nonce the agent fetched the command with */
  deviceNonce: string;
  outcome: 'done' | 'failed';
  /** reason: why it failed (failed only) */
  reason?: string;
  /** evicted: the persistent TPM handles the agent evicted, hex */
  evicted?: string[];
}

/** SignedCommandReport: a report whose signature verified, and the certificate of the key that made it. */
export interface SignedCommandReport {
  report: DeviceCommandReport;
  signerCertificate: Buffer;
}

/** buildDeviceCommandReport signs `r` with the device key (`signer`), carrying its certificate. */
export function buildDeviceCommandReport(r: DeviceCommandReport, signer: { certificate: Buffer; key: SigningKey }, now: Date): Promise<Buffer> {
  return buildSignedData({
    content: Buffer.from(JSON.stringify(r), 'utf8'),
    contentType: DEVICE_COMMAND_REPORT_OID,
    signer,
    attributes: [{ type: CMS_OID.signingTime, values: [time(now)] }],
    certificates: [signer.certificate],
  });
}

/**
 * readDeviceCommandReport verifies the report's one signature with a certificate it carries and reads
 * the content. Errors: 'bad-request' (not a report, malformed content), 'bad-signature'.
 */
export function readDeviceCommandReport(der: Buffer): SignedCommandReport {
  const p = parseSignedDataParts(der);
  if (p.eContentType !== DEVICE_COMMAND_REPORT_OID || !p.eContent) throw new DeviceCaError('bad-request', 'the body is not a device-ca device command report');
  if (p.signerInfos.length !== 1) throw new DeviceCaError('bad-request', 'a command report has exactly one signer');
  const v = verifySignerInfo(
    p.signerInfos[0],
    p.eContentType,
    p.eContent,
    p.certificates.filter((c) => c[0] === 0x30),
  );
  let r: DeviceCommandReport;
  try {
    r = JSON.parse(p.eContent.toString('utf8')) as DeviceCommandReport;
  } catch {
    throw new DeviceCaError('bad-request', 'the report content is not JSON');
  }
  const ok =
    r !== null &&
    typeof r === 'object' &&
    typeof r.device === 'string' &&
    (r.command === 'retire' || r.command === 'transfer') &&
    typeof r.nonce === 'string' &&
    /^[0-9a-f]{32}$/.test(r.nonce) &&
    typeof r.deviceNonce === 'string' &&
    DEVICE_NONCE_RE.test(r.deviceNonce) &&
    (r.outcome === 'done' || r.outcome === 'failed') &&
    (r.reason === undefined || (typeof r.reason === 'string' && r.reason.length <= MAX_REASON)) &&
    (r.evicted === undefined || (Array.isArray(r.evicted) && r.evicted.length <= 16 && r.evicted.every((h) => typeof h === 'string' && /^0x[0-9a-f]{8}$/.test(h))));
  if (!ok)
    throw new DeviceCaError('bad-request', `the report is not one device-ca knows (device, command, nonce, deviceNonce, outcome done|failed, reason up to ${MAX_REASON} characters, evicted handles)`);
  return {
    report: {
      device: r.device,
      command: r.command,
      nonce: r.nonce,
      deviceNonce: r.deviceNonce,
      outcome: r.outcome,
      ...(r.reason !== undefined ? { reason: r.reason } : {}),
      ...(r.evicted !== undefined ? { evicted: r.evicted } : {}),
    },
    signerCertificate: v.certificate,
  };
}
