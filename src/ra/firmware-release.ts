import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { Config } from '../config/schema';
import { ByteSource, fileSource } from '../cms/byte-source';
import { FirmwarePackageFile, readFirmwarePackageSource } from '../cms/firmware-package-file';
import { writeFirmwareReleaseFile } from '../cms/firmware-release-file';
import { digestForCertificate } from '../cms/signer-info';
import { writeFileAtomicAsync } from '../data-dir/atomic-file';
import { lockForWriting } from '../data-dir/writer-lock';
import { describeShortfall, policyShortfall, RolePolicy, rolePolicy } from '../cms/firmware-policy';
import { isSignedBy, issueSignerCertificate, openSignerCa, releaseSigner, signerCaCertificate } from '../ca/signer-ca';
import { DeviceCaError } from '../errors/device-ca-error';
import { KeyBackend } from '../keys/key-backend';
import { collectItems } from '../store/paging';
import { AuditInput, FirmwareReleaseInfo, Store } from '../store/store';
import { parseCsr } from './csr';
import { NOT_DEVICE_PROFILES } from './firmware-distribution';
import { FirmwareGroupKeys, firmwareGroupKeks, ownerOfGroup, parseFirmwareGroup } from './firmware-group-keys';

/**
 * firmware-release: the decisions around firmware (issue 13): who may sign (registered signers and their
 * roles), which roles a release needs (the policy, per owner), whether a package meets it, and to which
 * devices a release is encrypted. CMS encoding is in cms/firmware-package.ts, the signer CA in
 * ca/signer-ca.ts. Signers and policies are ca_state records; releases are rows of the store's firmware
 * releases (FirmwareReleaseStore), with their bytes; every change is audited in the same write.
 */

/** SignerRecord: a registered signer: its name, role and the serial of its certificate (from the signer CA). */
export interface SignerRecord {
  name: string;
  role: string;
  serial: string;
  createdAt: string;
}

/** ReleaseRecord: what was released, signed by whom, encrypted to whom (a row of the store's firmware releases). */
export type ReleaseRecord = FirmwareReleaseInfo;

/** DEFAULT_ROLES: the roles a release needs when no policy was set (issue 13). */
export const DEFAULT_ROLES: readonly string[] = ['manufacturer', 'developer', 'administrator'];

const SIGNERS_RECORD = 'firmware-signers';
const POLICY_RECORD = 'firmware-policy';
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** SIGNING_TIME_SKEW_MS: how far in the future a signer's clock may be. */
const SIGNING_TIME_SKEW_MS = 5 * 60_000;
const SIGNER_VALIDITY_SECONDS = 2 * 365 * 86400;

/** Policy: the ca_state record; a bare role list (the first form) means every role of it is required. */
interface Policy {
  default: string[] | RolePolicy;
  owners: Record<string, string[] | RolePolicy>;
}

/** Recipient: a device a release is encrypted to, with its current certificate. */
interface Recipient {
  deviceId: string;
  owner: string | null;
  certificate: Buffer;
}

/** asPolicy: a stored policy entry in its current form. */
function asPolicy(p: string[] | RolePolicy): RolePolicy {
  return Array.isArray(p) ? { roles: p, require: p.length } : p;
}

export class FirmwareReleases {
  constructor(
    private readonly cfg: Config,
    private readonly store: Store,
    private readonly keys: KeyBackend,
  ) {}

  /**
   * addSigner certifies a signer's key from its CSR (the CSR's self-signature proves possession) and
   * registers name -> role. A name is registered once ('conflict'); the first signer creates the signer CA.
   */
  async addSigner(a: { name: string; role: string; csr: Buffer; actor: string; now?: Date }): Promise<{ serial: string; certificate: Buffer }> {
    checkName(a.name, 'signer name');
    checkName(a.role, 'role');
    const csr = parseCsr(a.csr);
    if (!csr.keyAlgorithm) throw new DeviceCaError('bad-key', 'the signer key must be ECDSA P-256/P-384 or RSA 2048/3072');
    const { value } = await this.read<SignerRecord[]>(SIGNERS_RECORD, []);
    if (value.some((s) => s.name === a.name)) throw new DeviceCaError('conflict', `signer ${a.name} exists`);
    const ca = await openSignerCa(this.cfg, this.keys, this.store, a.now);
    const issued = await issueSignerCertificate(this.cfg, ca, this.store, { name: a.name, role: a.role, spki: csr.spki, validitySeconds: SIGNER_VALIDITY_SECONDS, actor: a.actor }, a.now);
    await this.update<SignerRecord[]>(
      SIGNERS_RECORD,
      [],
      (list) => {
        if (list.some((s) => s.name === a.name)) throw new DeviceCaError('conflict', `signer ${a.name} exists`);
        return [...list, { name: a.name, role: a.role, serial: issued.serial, createdAt: (a.now ?? new Date()).toISOString() }];
      },
      { type: 'firmware.signer.added', actor: a.actor, subject: `signer:${a.name}`, data: { role: a.role, serial: issued.serial } },
    );
    return { serial: issued.serial, certificate: issued.der };
  }

  async listSigners(): Promise<SignerRecord[]> {
    return (await this.read<SignerRecord[]>(SIGNERS_RECORD, [])).value;
  }

  /**
   * setPolicy names the roles of a release policy (for one owner's devices, or the default) and how many
   * distinct roles of them must sign (`require`, default all: M-of-N when fewer).
   */
  async setPolicy(a: { roles: string[]; require?: number; owner?: string; actor: string }): Promise<void> {
    const policy = rolePolicy(a.roles, a.require);
    policy.roles.forEach((r) => checkName(r, 'role'));
    const change = (p: Policy): Policy => (a.owner === undefined ? { ...p, default: policy } : { ...p, owners: { ...p.owners, [a.owner]: policy } });
    await this.update<Policy>(POLICY_RECORD, { default: [...DEFAULT_ROLES], owners: {} }, change, {
      type: 'firmware.policy.set',
      actor: a.actor,
      subject: a.owner === undefined ? 'firmware-policy' : `owner:${a.owner}`,
      data: { roles: policy.roles, require: policy.require },
    });
  }

  /** policyFor: the owner's policy, else the default policy, else all of DEFAULT_ROLES. */
  async policyFor(owner?: string): Promise<RolePolicy> {
    const { value } = await this.read<Policy>(POLICY_RECORD, { default: [...DEFAULT_ROLES], owners: {} });
    return asPolicy(owner !== undefined && Object.hasOwn(value.owners, owner) ? value.owners[owner] : value.default);
  }

  /** requiredRoles: the roles of policyFor(owner). */
  async requiredRoles(owner?: string): Promise<string[]> {
    return (await this.policyFor(owner)).roles;
  }

  /** listReleases: every release (of one name), by name and newest version first. */
  async listReleases(name?: string): Promise<ReleaseRecord[]> {
    return (await collectItems((after, limit) => this.store.listFirmwareReleases({ name, after, limit }))).items;
  }

  /**
   * release decides whether a signed package may go out and makes the release:
   * 1. every signature verifies (readFirmwarePackageSource: one pass over the image, which stays in its
   *    file) and every signer certificate was issued by the
   *    signer CA to a registered signer, is not revoked, and was valid at its signingTime (which is not in
   *    the future);
   * 2. the roles of those signers cover the policy: of the owner (`encryptTo.owner`), of each named
   *    device's owner, else the default; refused ('forbidden') naming the missing roles;
   * 3. the version is not below the latest release of the same name (RFC 4108 anti-rollback);
   * 4. recipients: the current certificate of each active device (a retired, suspended or transferring
   *    device is never one: named explicitly it is refused, in an owner's fleet it is left out);
   *    with `encryptToGroup` the recipients are the group's members and the image is encrypted once under
   *    the group key FirmwareGroupKeys.keyForRelease picks (a new one when a member left);
   * then the signer CA counter-signs, and the signatures and release are audited. Nothing is encrypted or
   * written before every decision is made. The release is written streamed into a temporary file beside
   * `out` (writeFirmwareReleaseFile), recorded in the store, and only then renamed to `out`: a refusal or
   * an error leaves neither `out` nor the temporary file. The writing holds `<out>.lock` (writer-lock.ts):
   * a second release to the same `out` while one runs is refused ('conflict', naming the writer), so the
   * file at `out` is always the one the store recorded last through it; a lock or temporary file left by
   * a killed release is removed by the next one.
   */
  async release(a: {
    /** package: the signed package, in a file (fileSource) or a Buffer (bufferSource) */
    package: ByteSource;
    /** out: where the release is written (replaced only when it is complete and recorded) */
    out: string;
    encryptTo?: { deviceIds?: string[]; owner?: string };
    /** encryptToGroup: 'fleet' or 'owner:<name>': the image under the group's key (firmware-group-keys.ts), its members the recipients */
    encryptToGroup?: string;
    actor: string;
    now?: Date;
  }): Promise<{ bytes: number; record: ReleaseRecord; groupKeyId?: string }> {
    const now = a.now ?? new Date();
    const group = a.encryptToGroup === undefined ? undefined : parseFirmwareGroup(a.encryptToGroup);
    if (group !== undefined && a.encryptTo) throw new DeviceCaError('bad-request', 'a release is encrypted to devices or to a group, not both');
    // a group's members are the recipients a per-device release would have (the fleet: every active device)
    const encryptTo = group === undefined ? a.encryptTo : { owner: ownerOfGroup(group), fleet: group === 'fleet' };
    const signerCa = await signerCaCertificate(this.store);
    // one pass over the image: every party's digest, SHA-256 for the record and the CA's for its counter-signature
    const pkg = readFirmwarePackageSource(a.package, ['sha256', ...(signerCa ? [digestForCertificate(signerCa)] : [])]);
    if (pkg.signers.length === 0) throw new DeviceCaError('forbidden', 'the package is not signed');
    if (!signerCa) throw new DeviceCaError('forbidden', 'no signer is registered (device-ca signers add)');
    const registered = await this.listSigners();
    const signers: ReleaseRecord['signers'] = [];
    for (const s of pkg.signers) {
      const x = new crypto.X509Certificate(s.certificate);
      const serial = x.serialNumber.toLowerCase().padStart(32, '0');
      const who = registered.find((r) => r.serial === serial);
      if (!who || !isSignedBy(s.certificate, signerCa)) throw new DeviceCaError('forbidden', `a signature is by ${x.subject.replace(/\n/g, ', ')}, which is not a registered signer certificate`);
      const status = await this.store.certificateStatus(serial);
      if (!status || status.status === 'revoked') throw new DeviceCaError('forbidden', `signer ${who.name}'s certificate is revoked`);
      if (!s.signingTime) throw new DeviceCaError('forbidden', `signer ${who.name}'s signature has no signing time`);
      if (s.signingTime < new Date(x.validFrom) || s.signingTime > new Date(x.validTo)) throw new DeviceCaError('forbidden', `signer ${who.name}'s certificate was not valid at its signing time`);
      if (s.signingTime.getTime() > now.getTime() + SIGNING_TIME_SKEW_MS) throw new DeviceCaError('forbidden', `signer ${who.name}'s signing time is in the future`);
      signers.push({ name: who.name, role: who.role, serial, signingTime: s.signingTime.toISOString() });
    }
    const recipients = encryptTo ? await this.recipients(encryptTo) : null;
    const owners = recipients ? [...new Set(recipients.map((r) => r.owner))] : [];
    // every policy that applies must be met on its own (an owner's M-of-N does not lower another's)
    const policies: RolePolicy[] = [];
    if (encryptTo?.owner !== undefined) policies.push(await this.policyFor(encryptTo.owner));
    for (const o of owners) policies.push(await this.policyFor(o ?? undefined));
    if (policies.length === 0) policies.push(await this.policyFor());
    const have = new Set(signers.map((s) => s.role));
    const allOf = new Set<string>();
    const partial: string[] = [];
    for (const p of new Map(policies.map((p) => [JSON.stringify(p), p])).values()) {
      const short = policyShortfall(p, have);
      if (short && p.require === p.roles.length) short.missing.forEach((r) => allOf.add(r));
      else if (short) partial.push(describeShortfall(p, short));
    }
    const unmet = [...(allOf.size > 0 ? [`missing signatures of role ${[...allOf].join(', ')}`] : []), ...partial.map((d) => `missing signatures: ${d}`)];
    if (unmet.length > 0) throw new DeviceCaError('forbidden', `the release policy is not met: ${unmet.join('; ')}`);
    const latest = (await this.store.listFirmwareReleases({ name: pkg.metadata.name, limit: 1 })).items[0]?.version ?? -1;
    if (pkg.metadata.version < latest) throw new DeviceCaError('conflict', `version ${pkg.metadata.version} is below the released version ${latest} of ${pkg.metadata.name}`);

    // one release at a time to one --out (writer-lock.ts), taken before anything is audited or written: a
    // second one is refused naming the first; without it each would record and rename its own bytes, and
    // the file left at --out might not be the one the store holds
    const lock = lockForWriting(a.out, `a firmware release to ${a.out}`);
    try {
      return await this.counterSignAndWrite(a, now, pkg, signers, group, recipients, () => lock.assertHeld());
    } finally {
      lock.release();
    }
  }

  /** counterSignAndWrite: release() once every decision is made and --out is locked. */
  private async counterSignAndWrite(
    a: { out: string; actor: string },
    now: Date,
    pkg: FirmwarePackageFile,
    signers: ReleaseRecord['signers'],
    group: string | undefined,
    recipients: Recipient[] | null,
    /** assertLocked: throws unless --out's lock is still this release's (checked just before the store records it) */
    assertLocked: () => void,
  ): Promise<{ bytes: number; record: ReleaseRecord; groupKeyId?: string }> {
    const ca = await openSignerCa(this.cfg, this.keys, this.store, now);
    for (const s of signers)
      await this.store.appendAudit({ type: 'firmware.signature.accepted', actor: a.actor, subject: `firmware:${pkg.metadata.name}`, data: { version: pkg.metadata.version, ...s } });
    const groupKey =
      group !== undefined && recipients
        ? (
            await new FirmwareGroupKeys(this.store, firmwareGroupKeks(this.cfg, this.keys, this.store), () => now).keyForRelease(
              group,
              recipients.map((r) => r.deviceId),
              a.actor,
            )
          ).key
        : null;
    const record: ReleaseRecord = {
      name: pkg.metadata.name,
      version: pkg.metadata.version,
      sha256: (pkg.digests.digests.get('sha256') as Buffer).toString('hex'),
      signers,
      recipients: recipients ? recipients.map((r) => r.deviceId) : null,
      // the targets the agent checks (RFC 4108 §2.2.2), so that `latest` can skip a release for other hardware
      hardware: pkg.metadata.hardware.map((h) => (h.serial === undefined ? { type: h.type } : { type: h.type, serial: h.serial })),
      releasedAt: now,
    };
    const bytes = await writeFileAtomicAsync(
      a.out,
      async (fd) => {
        const length = await writeFirmwareReleaseFile(pkg, releaseSigner(ca), groupKey ? { groupKey, now } : { recipients: recipients?.map((r) => r.certificate), now }, fd);
        fs.fsyncSync(fd);
        // a release that lost --out's lock (removed by hand, taken by another writer) must not record bytes it may not rename into place
        assertLocked();
        // the store checks the version again in its transaction: two releases at once cannot roll back
        await this.store.saveFirmwareRelease(record, fileSource({ fd, offset: 0, length }), {
          type: 'firmware.released',
          actor: a.actor,
          subject: `firmware:${record.name}`,
          data: {
            version: record.version,
            sha256: record.sha256,
            signers: signers.map((s) => s.name),
            recipients: record.recipients?.length ?? null,
            ...(groupKey ? { group, groupKeyId: groupKey.id } : {}),
          },
        });
        return length;
      },
      0o644,
    );
    return groupKey ? { bytes, record, groupKeyId: groupKey.id } : { bytes, record };
  }

  /** recipients: each device's newest valid certificate; see release() for which devices count. */
  private async recipients(to: { deviceIds?: string[]; owner?: string; fleet?: boolean }): Promise<Recipient[]> {
    const devices = [];
    if (to.fleet) devices.push(...(await collectItems((after, limit) => this.store.listDevices({ state: 'active', after, limit }))).items);
    if (to.owner !== undefined) {
      devices.push(...(await collectItems((after, limit) => this.store.listDevices({ owner: to.owner, state: 'active', after, limit }))).items);
    }
    for (const id of to.deviceIds ?? []) {
      const d = await this.store.getDevice(id);
      if (!d) throw new DeviceCaError('not-found', `device ${id} is not registered`);
      if (d.state !== 'active') throw new DeviceCaError('forbidden', `device ${id} is ${d.state}: it cannot receive firmware`);
      devices.push(d);
    }
    const out: { deviceId: string; owner: string | null; certificate: Buffer }[] = [];
    for (const d of devices) {
      if (out.some((o) => o.deviceId === d.id)) continue;
      const certs = (await collectItems((after, limit) => this.store.listCertificates({ deviceId: d.id, status: 'valid', after, limit }))).items;
      // a TPM device's AK certificate is its too, issued the same second: never a recipient (a restricted signing key cannot decrypt)
      const current = certs.filter((c) => c.notAfter.getTime() > Date.now() && !NOT_DEVICE_PROFILES.includes(c.profile)).sort((x, y) => y.notBefore.getTime() - x.notBefore.getTime())[0];
      if (!current) {
        if (to.deviceIds?.includes(d.id)) throw new DeviceCaError('forbidden', `device ${d.id} has no valid certificate to encrypt to`);
        continue;
      }
      out.push({ deviceId: d.id, owner: d.owner, certificate: current.der });
    }
    if (out.length === 0) throw new DeviceCaError('bad-request', 'no active device with a valid certificate to encrypt to');
    return out;
  }

  private async read<T>(name: string, empty: T): Promise<{ value: T; version: number }> {
    const e = await this.store.getCaState(name);
    return e ? { value: e.value as T, version: e.version } : { value: empty, version: 0 };
  }

  /** update: a read-modify-write of one ca_state record, retried when another writer got there first. */
  private async update<T>(name: string, empty: T, change: (v: T) => T, audit: AuditInput): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const { value, version } = await this.read(name, empty);
      try {
        await this.store.saveCaState(name, change(value), version, audit);
        return;
      } catch (e) {
        if (!(e instanceof DeviceCaError && e.code === 'conflict' && e.message.startsWith('CA state')) || attempt >= 3) throw e;
      }
    }
  }
}

function checkName(s: string, what: string): void {
  if (!NAME_RE.test(s)) throw new DeviceCaError('bad-request', `${what} must be 1-64 of A-Z a-z 0-9 . _ - (starting with a letter or digit)`);
}
