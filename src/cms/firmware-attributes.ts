import { children, decodeOid, readOne, Tlv } from '../der/der-reader';
import { integer, octetString, oid, seq, tlv } from '../der/der-writer';
import { DeviceCaError } from '../errors/device-ca-error';
import { CMS_OID } from './cms-algorithms';
import { SignedAttribute } from './signer-info';

/** HardwareTarget: a hardware module type (OID) and optionally one serial number of it (RFC 4108 §2.2.2, §2.2.5). */
export interface HardwareTarget {
  type: string;
  serial?: string;
}

/**
 * forHardware: whether a package for `targets` is for the hardware `ours`, by RFC 4108 §2.2.2: the module
 * type is one of the targets (no targets: any hardware), and when serials of that type are named (§2.2.5),
 * ours is one of them. The agent refuses a package by it, and the server's `latest` skips a release by it,
 * so that both apply the same rule.
 */
export function forHardware(targets: readonly HardwareTarget[], ours: HardwareTarget): boolean {
  if (targets.length === 0) return true;
  const ofType = targets.filter((t) => t.type === ours.type);
  if (ofType.length === 0) return false;
  const serials = ofType.filter((t) => t.serial !== undefined).map((t) => t.serial);
  return serials.length === 0 || (ours.serial !== undefined && serials.includes(ours.serial));
}

/**
 * hardwareText: targets as `firmware create --hardware` takes them (oid[:serial],...), or `any` when there
 * are none (RFC 4108 §2.2.2: a package without targetHardwareIDs is for any hardware; a release recorded
 * before the targets were kept has none either), for `firmware list`.
 */
export function hardwareText(targets: readonly HardwareTarget[] | undefined): string {
  if (!targets || targets.length === 0) return 'any';
  return targets.map((t) => (t.serial !== undefined ? `${t.type}:${t.serial}` : t.type)).join(',');
}

/** FirmwareMetadata: what the RFC 4108 signed attributes of a firmware package say. */
export interface FirmwareMetadata {
  name: string;
  /** version: RFC 4108's verNum, a non-negative integer, so that devices can refuse a lower one (anti-rollback) */
  version: number;
  hardware: HardwareTarget[];
}

const OID_RE = /^[0-2](\.(0|[1-9][0-9]*))+$/;
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** checkFirmwareMetadata refuses a name, version or hardware entry that cannot be encoded ('bad-request'). */
export function checkFirmwareMetadata(m: FirmwareMetadata): void {
  if (!NAME_RE.test(m.name) && !OID_RE.test(m.name)) throw new DeviceCaError('bad-request', 'the firmware name must be 1-64 of A-Z a-z 0-9 . _ - (or an OID)');
  if (!Number.isSafeInteger(m.version) || m.version < 0) throw new DeviceCaError('bad-request', 'the firmware version must be a non-negative integer (RFC 4108 verNum)');
  for (const h of m.hardware) {
    if (!OID_RE.test(h.type)) throw new DeviceCaError('bad-request', `hardware module type ${JSON.stringify(h.type)} is not an OID`);
    if (h.serial !== undefined && (h.serial.length === 0 || h.serial.length > 128)) throw new DeviceCaError('bad-request', 'a hardware serial number must be 1-128 characters');
  }
}

/**
 * firmwareAttributes encodes the RFC 4108 signed attributes of a package:
 * - firmwarePackageID (§2.2.1): the preferred form {fwPkgID OID, verNum} when the name is an OID, else the
 *   legacy OCTET STRING "<name>@<version>" (UTF-8);
 * - targetHardwareIDs (§2.2.2): the module types, when any;
 * - communityIdentifiers (§2.2.5): hwModuleList entries naming single serial numbers, when any are given.
 */
export function firmwareAttributes(m: FirmwareMetadata): SignedAttribute[] {
  checkFirmwareMetadata(m);
  const name = packageIdentifier(m.name, m.version);
  const attrs: SignedAttribute[] = [{ type: CMS_OID.firmwarePackageId, values: [seq(name)] }];
  const types = [...new Set(m.hardware.map((h) => h.type))];
  if (types.length > 0) attrs.push({ type: CMS_OID.targetHardwareIds, values: [seq(...types.map((t) => oid(t)))] });
  const withSerials = types.map((t) => ({ t, serials: m.hardware.filter((h) => h.type === t && h.serial !== undefined).map((h) => h.serial!) })).filter((x) => x.serials.length > 0);
  if (withSerials.length > 0)
    attrs.push({
      type: CMS_OID.communityIdentifiers,
      values: [seq(...withSerials.map((x) => seq(oid(x.t), seq(...x.serials.map((s) => octetString(Buffer.from(s, 'utf8')))))))],
    });
  return attrs;
}

const FIRMWARE_ATTRIBUTE_TYPES: readonly string[] = [CMS_OID.firmwarePackageId, CMS_OID.targetHardwareIds, CMS_OID.communityIdentifiers];

/** firmwareAttributesOf picks the RFC 4108 attributes out of a signer's attributes, for comparing signers. */
export function firmwareAttributesOf(attrs: ReadonlyMap<string, Buffer[]>): SignedAttribute[] {
  return FIRMWARE_ATTRIBUTE_TYPES.filter((t) => attrs.has(t)).map((t) => ({ type: t, values: attrs.get(t)! }));
}

/** sameAttributes: both lists carry the same attribute types with byte-equal values. */
export function sameAttributes(a: SignedAttribute[], b: SignedAttribute[]): boolean {
  const enc = (xs: SignedAttribute[]): string =>
    xs
      .map((x) => seq(oid(x.type), ...x.values).toString('hex'))
      .sort()
      .join();
  return enc(a) === enc(b);
}

/**
 * packageIdentifier encodes RFC 4108's PreferredOrLegacyPackageIdentifier (§2.2.1), as the package and its
 * receipts (§3) carry it: the preferred {fwPkgID OID, verNum} when the name is an OID, else the legacy
 * OCTET STRING "<name>@<version>" (UTF-8).
 */
export function packageIdentifier(name: string, version: number): Buffer {
  return OID_RE.test(name) ? seq(oid(name), integer(version)) : octetString(Buffer.from(`${name}@${version}`, 'utf8'));
}

/** readPackageIdentifier decodes a PreferredOrLegacyPackageIdentifier (packageIdentifier); 'bad-request' when it cannot be read. */
export function readPackageIdentifier(t: Tlv | undefined): { name: string; version: number } {
  if (t?.tag === 0x30) {
    const [o, v] = children(t, 2);
    if (!o || !v || v.tag !== 0x02 || v.value.length === 0 || v.value.length > 6 || (v.value[0] & 0x80) !== 0) throw new DeviceCaError('bad-request', 'firmware package identifier cannot be read');
    return { name: decodeOid(o), version: v.value.readUIntBE(0, v.value.length) };
  }
  if (t?.tag === 0x04) {
    const s = t.value.toString('utf8');
    const at = s.lastIndexOf('@');
    return { name: s.slice(0, at), version: Number(s.slice(at + 1)) };
  }
  throw new DeviceCaError('bad-request', 'firmware package identifier cannot be read');
}

/** readFirmwareMetadata decodes the attributes firmwareAttributes wrote; 'bad-request' when they are absent or malformed. */
export function readFirmwareMetadata(attrs: ReadonlyMap<string, Buffer[]>): FirmwareMetadata {
  const id = attrs.get(CMS_OID.firmwarePackageId);
  if (!id || id.length !== 1) throw new DeviceCaError('bad-request', 'the package has no firmware package identifier (RFC 4108 §2.2.1)');
  const { name, version } = readPackageIdentifier(children(readOne(id[0], 0x30), 2)[0]);
  const hardware: HardwareTarget[] = [];
  const serials = new Map<string, string[]>();
  for (const c of children(readOne(attrs.get(CMS_OID.communityIdentifiers)?.[0] ?? tlv(0x30), 0x30), 256)) {
    if (c.tag !== 0x30) continue; // a communityOID names no module
    const [t, list] = children(c, 2);
    serials.set(
      decodeOid(t),
      children(list, 256).map((s) => readOne(s.full, 0x04).value.toString('utf8')),
    );
  }
  for (const t of children(readOne(attrs.get(CMS_OID.targetHardwareIds)?.[0] ?? tlv(0x30), 0x30), 256).map(decodeOid)) {
    const s = serials.get(t);
    if (s) for (const serial of s) hardware.push({ type: t, serial });
    else hardware.push({ type: t });
  }
  const m = { name, version, hardware };
  checkFirmwareMetadata(m);
  return m;
}

/** parseHardwareList reads the CLI's --hardware "oid[:serial],..." list. */
export function parseHardwareList(s: string | undefined): HardwareTarget[] {
  if (!s) return [];
  return s.split(',').map((e) => {
    const at = e.indexOf(':');
    return at < 0 ? { type: e.trim() } : { type: e.slice(0, at).trim(), serial: e.slice(at + 1).trim() };
  });
}
