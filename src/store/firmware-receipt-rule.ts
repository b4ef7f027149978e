import { DeviceCaError } from '../errors/device-ca-error';
import { FirmwareReceiptInput, FirmwareReceiptRecord } from './store';

/**
 * applyFirmwareReceipt: the record after a receipt (the rules of FirmwareReceiptStore), or 'repeat'; both
 * stores call it inside their transaction so they decide alike.
 */
export function applyFirmwareReceipt(prev: FirmwareReceiptRecord | null, r: FirmwareReceiptInput): FirmwareReceiptRecord | 'repeat' {
  if (prev && prev.receiptSha256 === r.sha256) return 'repeat';
  const running = prev?.running ?? null;
  if (r.outcome === 'loaded') {
    if (running && running.version > r.version)
      throw new DeviceCaError('conflict', `device ${r.deviceId} already reported version ${running.version} of ${r.name}: a receipt for ${r.version} is stale`);
    const error = prev?.error && prev.error.version > r.version ? prev.error : null;
    return { name: r.name, deviceId: r.deviceId, hwType: r.hwType, running: { version: r.version, at: r.at }, error, receiptSha256: r.sha256, updatedAt: r.at };
  }
  const error = running && running.version >= r.version ? (prev?.error ?? null) : { version: r.version, code: r.errorCode ?? 99, vendorCode: r.vendorErrorCode ?? null, at: r.at };
  return { name: r.name, deviceId: r.deviceId, hwType: r.hwType, running, error, receiptSha256: r.sha256, updatedAt: r.at };
}
