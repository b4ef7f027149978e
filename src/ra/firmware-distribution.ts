import * as crypto from 'node:crypto';
import { forHardware } from '../cms/firmware-attributes';
import { DeviceCaError } from '../errors/device-ca-error';
import { FirmwareReleaseInfo, ReleaseBytes, Store } from '../store/store';
import { deviceCertificateRecord } from './device-certificate-record';

/**
 * firmware-distribution: who may download which firmware release (issue 13). protocols/firmware asks one
 * question per request, `download`, and serves the bytes it gets back. The rule:
 *
 * | requester                                   | plain release | encrypted release              |
 * |---------------------------------------------|---------------|--------------------------------|
 * | anyone (HTTP, or HTTPS without a client cert)| served        | 404, as if it did not exist    |
 * | an active device (HTTPS, its current cert)   | served        | served if it is a recipient, else 404 |
 * | a device not active, or a certificate that is not a current device certificate | 403 | 403 |
 *
 * `latest` is the newest version the requester may have, so a device is never pointed at a release it
 * cannot read; for a device whose hardware is known (`hardwareOf`: the hwType of its receipts), the newest
 * one for that hardware too (RFC 4108 §2.2.2, the rule the agent applies: `forHardware`), so that a release
 * for other hardware does not hide an older one meant for it. A named version is served whatever its
 * targets (the agent refuses it, and reports why). A release the requester may not have is 'not-found' with the same message as one that does
 * not exist: the answer tells nobody which encrypted releases exist. Every download by a device is an
 * audit record; anonymous downloads are counted and audited once per release per interval.
 */

/** FirmwareRequester: what the transport proved about who asks. */
export interface FirmwareRequester {
  /** clientCertificate: the TLS client certificate (the peer proved possession of its key), if any */
  clientCertificate?: crypto.X509Certificate;
}

/**
 * FirmwareDownload: the release served and its DER bytes (a CMS ContentInfo, docs/firmware.md), read from
 * the store chunk by chunk as the adapter sends them (a 64 MiB release is never in memory whole).
 */
export interface FirmwareDownload {
  release: FirmwareReleaseInfo;
  bytes: ReleaseBytes;
}

const NAME_RE = /^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,63}|[0-2](?:\.(?:0|[1-9][0-9]{0,15})){1,63})$/;
const VERSION_RE = /^(?:0|[1-9][0-9]{0,15})$/;
// NOT_DEVICE_PROFILES lives beside deviceCertificateRecord; firmware-release.ts imports it from here
export { NOT_DEVICE_PROFILES } from './device-certificate-record';
/** NOT_FOUND: one message for "no such release" and "not yours", see above. */
const NOT_FOUND = 'no such firmware release';

type DistributionStore = Pick<
  Store,
  'getCertificate' | 'getDevice' | 'getFirmwareRelease' | 'openFirmwareRelease' | 'listFirmwareReleases' | 'getFirmwareReceipt' | 'firmwareHardwareOf' | 'appendAudit'
>;

/**
 * ANONYMOUS_AUDIT_INTERVAL_MS: anonymous downloads of a release are audited as one `firmware.downloads`
 * record per release per this interval (per process), with the count: anyone may download a plain
 * release, and a record per download would let anyone grow the audit chain without bound.
 */
export const ANONYMOUS_AUDIT_INTERVAL_MS = 60_000;

/** AnonymousWindow: the anonymous downloads of one release counted since `since`, not yet audited. */
interface AnonymousWindow {
  name: string;
  version: number;
  count: number;
  since: Date;
}

export class FirmwareDistribution {
  private readonly anonymous = new Map<string, AnonymousWindow>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly store: DistributionStore,
    private readonly now: () => Date = () => new Date(),
    private readonly anonymousIntervalMs = ANONYMOUS_AUDIT_INTERVAL_MS,
  ) {}

  /**
   * flushAnonymous audits the anonymous downloads counted so far: one `firmware.downloads` record per
   * release (actor `anonymous`, data: version, count, since). The interval timer calls it, and close()
   * at shutdown.
   */
  async flushAnonymous(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const windows = [...this.anonymous.values()];
    this.anonymous.clear();
    for (const w of windows)
      await this.store.appendAudit({ type: 'firmware.downloads', actor: 'anonymous', subject: `firmware:${w.name}`, data: { version: w.version, count: w.count, since: w.since.toISOString() } });
  }

  /** close: audit what is counted (a stopping process loses no count). */
  close(): Promise<void> {
    return this.flushAnonymous();
  }

  /** countAnonymous: one more anonymous download of a release, audited at the end of the interval. */
  private countAnonymous(r: FirmwareReleaseInfo): void {
    const key = `${r.name} ${r.version}`;
    const w = this.anonymous.get(key);
    if (w) w.count++;
    else this.anonymous.set(key, { name: r.name, version: r.version, count: 1, since: this.now() });
    if (!this.timer) {
      this.timer = setTimeout(() => void this.flushAnonymous().catch(() => undefined), this.anonymousIntervalMs);
      this.timer.unref();
    }
  }

  /**
   * download decides one request for `name` at `version` (digits, or 'latest') and returns the release;
   * 'not-found' for a name or version that is malformed, unknown, or not the requester's (see the table);
   * 'forbidden' for a client certificate that is not a current device certificate of an active device.
   * `head` (HTTP HEAD, RFC 9110 §9.3.2): the same decision and length, but nothing is sent, so it is not a
   * download: neither audited nor counted.
   */
  async download(a: { name: string; version: string; requester: FirmwareRequester; head?: boolean }): Promise<FirmwareDownload> {
    if (!NAME_RE.test(a.name) || (a.version !== 'latest' && !VERSION_RE.test(a.version))) throw new DeviceCaError('not-found', NOT_FOUND);
    const deviceId = a.requester.clientCertificate ? await this.deviceOf(a.requester.clientCertificate) : null;
    const mayHave = (r: FirmwareReleaseInfo): boolean => r.recipients === null || (deviceId !== null && r.recipients.includes(deviceId));
    let release: FirmwareReleaseInfo | null = null;
    if (a.version === 'latest') {
      const hardware = deviceId === null ? null : await hardwareOf(this.store, a.name, deviceId);
      const forIt = (r: FirmwareReleaseInfo): boolean => mayHave(r) && (hardware === null || forHardware(r.hardware ?? [], hardware));
      for (let after: string | undefined, guard = 0; guard < 10_000 && release === null; guard++) {
        const page = await this.store.listFirmwareReleases({ name: a.name, after, limit: 100 });
        release = page.items.find(forIt) ?? null;
        if (page.next === null) break;
        after = page.next;
      }
    } else {
      const version = Number(a.version);
      if (!Number.isSafeInteger(version)) throw new DeviceCaError('not-found', NOT_FOUND);
      release = await this.store.getFirmwareRelease(a.name, version);
    }
    if (!release || !mayHave(release)) throw new DeviceCaError('not-found', NOT_FOUND);
    const bytes = await this.store.openFirmwareRelease(release.name, release.version);
    if (!bytes) throw new DeviceCaError('not-found', NOT_FOUND);
    // a device's download is one record; anonymous ones are counted (see ANONYMOUS_AUDIT_INTERVAL_MS)
    if (a.head) return { release, bytes };
    if (deviceId === null) this.countAnonymous(release);
    else
      await this.store.appendAudit({
        type: 'firmware.downloaded',
        actor: `device:${deviceId}`,
        subject: `firmware:${release.name}`,
        data: { version: release.version, device: deviceId, encrypted: release.recipients !== null },
      });
    return { release, bytes };
  }

  private deviceOf(leaf: crypto.X509Certificate): Promise<string> {
    return firmwareDeviceOf(this.store, leaf, this.now());
  }
}

/**
 * hardwareOf: a device's hardware as its receipts report it (RFC 4108 §3/§4 hwType; hwSerialNum is the
 * device id, firmware-receipts.ts checks it): its receipt for this firmware name first (a device may hold
 * several modules, one per firmware name), else its newest receipt of any name; null when it never posted
 * one: then nothing is known and `latest` is the newest release it may have, as before.
 */
export async function hardwareOf(store: Pick<Store, 'getFirmwareReceipt' | 'firmwareHardwareOf'>, name: string, deviceId: string): Promise<{ type: string; serial: string } | null> {
  const type = (await store.getFirmwareReceipt(name, deviceId))?.hwType ?? (await store.firmwareHardwareOf(deviceId));
  return type === null ? null : { type, serial: deviceId };
}

/**
 * firmwareDeviceOf: the device whose current certificate this is: a device certificate of this CA
 * (deviceCertificateRecord: byte-identical to its record, TLS proved the key), valid, unexpired, of an
 * active device. Anything else is 'forbidden': a device that presents a certificate expects to be known,
 * and must learn why it is not. Downloads and receipts share it.
 */
export async function firmwareDeviceOf(store: Pick<Store, 'getCertificate' | 'getDevice'>, leaf: crypto.X509Certificate, now: Date): Promise<string> {
  const rec = await deviceCertificateRecord(store, leaf, now, { name: 'the client certificate' });
  const device = await store.getDevice(rec.deviceId);
  if (!device || device.state !== 'active') throw new DeviceCaError('forbidden', `device ${rec.deviceId} is ${device?.state ?? 'unknown'}: it cannot receive firmware`);
  return device.id;
}

/** FIRMWARE_NAME_RE, FIRMWARE_VERSION_RE: what a firmware name and a version look like in a URL (anything else is 'not-found'). */
export const FIRMWARE_NAME_RE = NAME_RE;
export const FIRMWARE_VERSION_RE = VERSION_RE;
/** FIRMWARE_NOT_FOUND: one message for "no such release" and "not yours". */
export const FIRMWARE_NOT_FOUND = NOT_FOUND;
