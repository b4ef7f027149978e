import * as crypto from 'node:crypto';
import { readFirmwareReceipt } from '../cms/firmware-receipt';
import type { HardwareTarget } from '../cms/firmware-attributes';
import { DeviceCaError } from '../errors/device-ca-error';
import { everyItem } from '../store/paging';
import { DEFAULT_PAGE_LIMIT, FirmwareReceiptRecord, MAX_PAGE_LIMIT, PageRequest, Store } from '../store/store';
import { OPERATOR, Scope } from './device-lifecycle';
import { FIRMWARE_NAME_RE, FIRMWARE_NOT_FOUND, FIRMWARE_VERSION_RE, firmwareDeviceOf, FirmwareRequester } from './firmware-distribution';

/**
 * firmware-receipts: what device-ca accepts as a device's word that it loaded a release, or failed to
 * (RFC 4108 §3 load receipts, §4 load error reports), and what `firmware status` makes of them. The rule,
 * in order (protocols/firmware makes one call, `submit`):
 *
 * 1. the device is authenticated by its TLS client certificate: its current certificate, of an active
 *    device (firmware-distribution.ts `firmwareDeviceOf`); no certificate is 'unauthenticated', another is 'forbidden';
 * 2. the release named in the URL exists and is one the device may have (plain, or encrypted to it);
 *    otherwise 'not-found' with the download's message, so receipts tell nobody which releases exist;
 * 3. the receipt is a SignedData whose one signature verifies with the key of that same TLS certificate
 *    (a receipt signed by any other key, e.g. relayed for another device, is 'forbidden');
 * 4. its hwSerialNum is the device id (device-ca names a hardware module by its device id), else 'forbidden';
 * 5. its fwPkgName (required in a receipt, optional in an error report) is the URL's name and version;
 * 6. the store folds it into the device's record (store.ts FirmwareReceiptStore): the same receipt again
 *    is a 'repeat' (no second audit record), a load receipt below the version the device reported is
 *    'conflict' (a replay). Each recorded receipt is audited `firmware.receipt`.
 */

/** ReceiptOutcome: what a receipt did: recorded, or a repeat of the last one recorded. */
export interface ReceiptOutcome {
  outcome: 'recorded' | 'repeat';
  kind: 'loaded' | 'error';
  record: FirmwareReceiptRecord;
}

/**
 * FirmwareStatus: which devices run which version of a firmware name, from their receipts: a summary of
 * every device (`versions`, `summary`), counted by the store without reading the receipts, and one page
 * of device rows (`devices`, `errors`, `next`), so the answer stays small at a million devices.
 */
export interface FirmwareStatus {
  name: string;
  /** releases: every released version, newest first */
  releases: { version: number; releasedAt: Date; encrypted: boolean; hardware: HardwareTarget[] }[];
  /** versions: how many devices run each version (newest first), over every device */
  versions: { version: number; devices: number }[];
  /** summary: how many devices posted a receipt, and how many hold a load error of each RFC 4108 §4 code, over every device */
  summary: { devices: number; loadErrors: { code: number; devices: number }[] };
  /** devices: one page of the devices that posted a receipt, by device id */
  devices: { device: string; version: number | null; loadedAt: Date | null; error: FirmwareReceiptRecord['error'] }[];
  /** errors: the devices of this page whose last load error is about a version above the one they run */
  errors: { device: string; version: number; code: number; vendorCode: number | null; at: Date }[];
  /** next: the cursor of the following page of devices (pass as `after`), null after the last */
  next: string | null;
}

type ReceiptStore = Pick<Store, 'getCertificate' | 'getDevice' | 'getFirmwareRelease' | 'listFirmwareReleases' | 'recordFirmwareReceipt' | 'listFirmwareReceipts' | 'firmwareReceiptSummary'>;

export class FirmwareReceipts {
  constructor(
    private readonly store: ReceiptStore,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** submit decides one posted receipt for `name` at `version` (see the rule above) and records it. */
  async submit(a: { name: string; version: string; body: Buffer; requester: FirmwareRequester }): Promise<ReceiptOutcome> {
    if (!FIRMWARE_NAME_RE.test(a.name) || !FIRMWARE_VERSION_RE.test(a.version)) throw new DeviceCaError('not-found', FIRMWARE_NOT_FOUND);
    const leaf = a.requester.clientCertificate;
    if (!leaf) throw new DeviceCaError('unauthenticated', 'a receipt is posted over HTTPS with the device certificate (TLS client authentication)');
    const now = this.now();
    const deviceId = await firmwareDeviceOf(this.store, leaf, now);
    const version = Number(a.version);
    const release = Number.isSafeInteger(version) ? await this.store.getFirmwareRelease(a.name, version) : null;
    if (!release || (release.recipients !== null && !release.recipients.includes(deviceId))) throw new DeviceCaError('not-found', FIRMWARE_NOT_FOUND);

    const got = readFirmwareReceipt(a.body, [leaf.raw]);
    if (!got.signerCertificate.equals(leaf.raw)) {
      const subject = new crypto.X509Certificate(got.signerCertificate).subject.replace(/\n/g, ', ');
      throw new DeviceCaError('forbidden', `the receipt is signed by ${subject}, not by the client certificate of device ${deviceId}`);
    }
    const r = got.receipt;
    if (r.hwSerial !== deviceId) throw new DeviceCaError('forbidden', `the receipt is for hardware serial ${JSON.stringify(r.hwSerial)}, not device ${deviceId}`);
    if (r.package && (r.package.name !== a.name || r.package.version !== version))
      throw new DeviceCaError('bad-request', `the receipt names ${r.package.name} version ${r.package.version}, not ${a.name} version ${version}`);
    const sha256 = crypto.createHash('sha256').update(a.body).digest('hex');
    const res = await this.store.recordFirmwareReceipt(
      { name: a.name, version, deviceId, outcome: r.kind, errorCode: r.errorCode, vendorErrorCode: r.vendorErrorCode, hwType: r.hwType, sha256, at: now },
      {
        type: 'firmware.receipt',
        actor: `device:${deviceId}`,
        subject: `firmware:${a.name}`,
        data: {
          version,
          device: deviceId,
          outcome: r.kind,
          ...(r.kind === 'error' ? { errorCode: r.errorCode, vendorErrorCode: r.vendorErrorCode ?? null } : {}),
          hwType: r.hwType,
          sha256,
        },
      },
    );
    return { ...res, kind: r.kind };
  }

  /**
   * status: releases, the summary of every device (versions run, load errors per code) and one page of
   * device rows (`page.limit`, 1-1000, default 100; `page.after`: the `next` of the previous page) of one
   * firmware name; 'not-found' when nothing of that name was released. The operator's only ('forbidden'
   * for an owner scope): it lists every owner's devices.
   */
  async status(name: string, scope: Scope = OPERATOR, page: PageRequest = {}): Promise<FirmwareStatus> {
    if (scope.kind !== 'operator') throw new DeviceCaError('forbidden', 'operator scope required');
    if (!FIRMWARE_NAME_RE.test(name)) throw new DeviceCaError('not-found', `no firmware named ${JSON.stringify(name)} was released`);
    const limit = page.limit ?? DEFAULT_PAGE_LIMIT;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE_LIMIT) throw new DeviceCaError('bad-request', `limit must be 1 to ${MAX_PAGE_LIMIT}`);
    const releases: FirmwareStatus['releases'] = [];
    for await (const r of everyItem((after) => this.store.listFirmwareReleases({ name, after, limit: 500 })))
      releases.push({ version: r.version, releasedAt: r.releasedAt, encrypted: r.recipients !== null, hardware: r.hardware ?? [] });
    if (releases.length === 0) throw new DeviceCaError('not-found', `no firmware named ${JSON.stringify(name)} was released`);
    const sum = await this.store.firmwareReceiptSummary(name);
    const rows = await this.store.listFirmwareReceipts({ name, after: page.after, limit });
    const devices: FirmwareStatus['devices'] = [];
    const errors: FirmwareStatus['errors'] = [];
    for (const x of rows.items) {
      devices.push({ device: x.deviceId, version: x.running?.version ?? null, loadedAt: x.running?.at ?? null, error: x.error });
      if (x.error) errors.push({ device: x.deviceId, ...x.error });
    }
    return { name, releases, versions: sum.versions, summary: { devices: sum.devices, loadErrors: sum.errors }, devices, errors, next: rows.next };
  }
}
