import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GROUP_KEY_BYTES, GROUP_KEY_ID_RE, GroupKey, newGroupKey, wrapGroupKeyTo } from '../cms/firmware-group-key';
import { Config } from '../config/schema';
import { DeviceCaError } from '../errors/device-ca-error';
import { serverKeyFile } from '../keys/enrollment-secret-key';
import { KeyBackend } from '../keys/key-backend';
import { isSecretKeyCipher } from '../keys/pkcs11/key-capabilities';
import { keysBackendKind } from '../keys/open-key-backend';
import { firmwareGroupKeyRecord, Store } from '../store/store';
import { firmwareDeviceOf, FirmwareRequester } from './firmware-distribution';
import { FIRMWARE_GROUP_KEK_LABEL, TokenKek, tokenGroupKek } from './firmware-group-kek';

/**
 * firmware-group-keys: the decisions about group content-encryption keys (issue 13, docs/firmware.md
 * "Group key"): which key a release to a group uses (a new one whenever a device that could have the
 * current key is no longer a member), and who may fetch a key (`GET /firmware/keys/<id>` over mTLS).
 *
 * A group is `fleet` (every active device) or `owner:<name>` (the active devices of one owner); a member
 * is an active device of the group with a valid device certificate (the recipients of a per-device
 * release). State, in the store (compare-and-set, audited in the same write, copied by `store copy`):
 * - CA state `firmware-group:<group>`: { current: key id };
 * - CA state `firmware-group-key:<id>`: { id, group, wrapped, kek, createdAt }: `wrapped` is the key under the
 *   service's key-encryption key (AES-256-GCM, the id and group as additional data), never the key itself;
 *   `kek` says which one: 'file' (keys/firmware-group.key) or 'pkcs11' (the AES key in the token,
 *   firmware-group-kek.ts, used for new keys when keys.backend is pkcs11); a record without it is 'file',
 *   so keys wrapped before a switch to the token still open while the file is there;
 * - the key's members (FirmwareGroupKeyStore, one entry per device, written with the record): the devices
 *   that may fetch the key, added at each release that uses it.
 * A record written before the member store holds its members itself (`members`, sorted ids): read as they
 * are (fetch), and moved into the member store by the next release that keeps the key (SQLite's migration
 * 24 moves them at upgrade already; Redis on that release).
 * Key material never reaches the audit log or an error message.
 */

/** FIRMWARE_GROUP_KEK_FILE: the key-encryption key of group keys, in the keys directory beside enrollment-secret.key. */
export const FIRMWARE_GROUP_KEK_FILE = 'firmware-group.key';

/** firmwareGroupKek: the data directory's key-encryption key (created on first use, 0600), as a function read on use. */
export function firmwareGroupKek(cfg: Config): () => Buffer {
  const dir = path.join(cfg.dataDir, 'keys');
  return () => serverKeyFile(dir, FIRMWARE_GROUP_KEK_FILE, 'a firmware group key-encryption key');
}

/**
 * GroupKeks: the key-encryption keys a FirmwareGroupKeys may use: the data directory's file (read on
 * use: only when a record needs it) and, with the PKCS#11 backend, the token's, which wraps new keys.
 */
export interface GroupKeks {
  file: () => Buffer;
  token?: TokenKek;
}

/**
 * firmwareGroupKeks: the key-encryption keys of this configuration: the file always (older records), and
 * the token's AES key (label FIRMWARE_GROUP_KEK_LABEL, in the firmware signer role's token) when
 * keys.backend is pkcs11, so no keys/firmware-group.key is created there (it is only read, if present).
 */
export function firmwareGroupKeks(cfg: Config, keys: KeyBackend, store: Pick<Store, 'getCaState' | 'saveCaState'>): GroupKeks {
  const file = firmwareGroupKek(cfg);
  if (keysBackendKind(cfg) !== 'pkcs11') return { file };
  const kekPath = path.join(cfg.dataDir, 'keys', FIRMWARE_GROUP_KEK_FILE);
  return {
    // only read here, never created: a new random file could open no record, and would hide the missing one
    file: () => {
      if (!fs.existsSync(kekPath))
        throw new DeviceCaError(
          'key-backend',
          `a group key record was wrapped with keys/${FIRMWARE_GROUP_KEK_FILE}, which is not on this node (keys.backend pkcs11 makes none): copy it from the node that wrote the record`,
        );
      return file();
    },
    token: tokenGroupKek(store, async () => {
      const router = keys as KeyBackend & { secretKeyCipher?: () => Promise<unknown> };
      const c = isSecretKeyCipher(keys) ? keys : await router.secretKeyCipher?.();
      if (!isSecretKeyCipher(c)) throw new DeviceCaError('key-backend', `the ${keys.kind} key backend cannot keep the firmware group key-encryption key (${FIRMWARE_GROUP_KEK_LABEL})`);
      return c;
    }),
  };
}

/** GroupKeyRecord: the CA state record of one group key. */
interface GroupKeyRecord {
  id: string;
  group: string;
  /** wrapped: hex of IV (12) | tag (16) | ciphertext (32), AES-256-GCM under the key-encryption key */
  wrapped: string;
  /** kek: which key-encryption key wrapped it; absent (records of earlier versions): 'file' */
  kek?: 'file' | 'pkcs11';
  createdAt: string;
  /** members: only in a record written before the member store (FirmwareGroupKeyStore): the sorted ids */
  members?: string[];
}

/** OWNER_RE: an owner name as the admin API takes it (1-128 printable characters). */
const OWNER_RE = /^[^\u0000-\u001f]{1,128}$/;
const NOT_FOUND = 'no such group key';

/** parseFirmwareGroup: 'fleet' or 'owner:<name>', as the CLI writes it; 'bad-request' otherwise. */
export function parseFirmwareGroup(s: string): string {
  if (s === 'fleet') return s;
  if (s.startsWith('owner:') && OWNER_RE.test(s.slice('owner:'.length))) return s;
  throw new DeviceCaError('bad-request', 'a firmware group is fleet or owner:<name>');
}

/** ownerOfGroup: the owner of an owner group, undefined for the fleet. */
export function ownerOfGroup(group: string): string | undefined {
  return group.startsWith('owner:') ? group.slice('owner:'.length) : undefined;
}

type GroupKeyStore = Pick<Store, 'getCaState' | 'saveCaState' | 'getCertificate' | 'getDevice' | 'appendAudit' | 'saveFirmwareGroupKey' | 'isFirmwareGroupKeyMember' | 'firmwareGroupKeyMembership'>;

export class FirmwareGroupKeys {
  private readonly keks: GroupKeks;

  /** kek: the key-encryption keys (firmwareGroupKeks), or only the file's, as a function read on use. */
  constructor(
    private readonly store: GroupKeyStore,
    kek: (() => Buffer) | GroupKeks,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.keks = typeof kek === 'function' ? { file: kek } : kek;
  }

  /**
   * keyForRelease: the group key a release to `group` is encrypted under, given the group's members now.
   * The current key stays when every device it was given to (its members) is still a member; the
   * newcomers are added. The check is the store's (firmwareGroupKeyMembership: a count and the newcomers),
   * the key's members are never read out. Otherwise (a member left: retired, suspended, transferred, its certificate
   * revoked or expired) a new key is made and becomes the current one, so nothing released from now on
   * can be read by a device that left. Audited: `firmware.group-key.created` (group, key id, members,
   * the key it replaces), `firmware.group-key.members` when newcomers are added.
   */
  async keyForRelease(group: string, members: string[], actor: string): Promise<{ key: GroupKey; created: boolean }> {
    parseFirmwareGroup(group);
    const sorted = [...new Set(members)].sort();
    for (let attempt = 0; ; attempt++) {
      try {
        const pointer = await this.store.getCaState(groupRecord(group));
        const currentId = pointer ? (pointer.value as { current: string }).current : null;
        const current = currentId ? await this.store.getCaState(firmwareGroupKeyRecord(currentId)) : null;
        const rec = current ? (current.value as GroupKeyRecord) : null;
        const compared = rec ? await this.compare(rec, sorted) : null;
        if (rec && current && compared?.left === 0) {
          // a record of the previous version is rewritten without its list, every member moving to the store
          const legacy = Array.isArray(rec.members);
          if (compared.newcomers.length > 0 || legacy)
            await this.store.saveFirmwareGroupKey(rec.id, withoutMembers(rec), current.version, legacy ? sorted : compared.newcomers, {
              type: 'firmware.group-key.members',
              actor,
              subject: `firmware-group:${group}`,
              data: { keyId: rec.id, members: sorted.length, added: compared.newcomers.length },
            });
          return { key: await this.unwrap(rec), created: false };
        }
        const g = newGroupKey();
        const created: GroupKeyRecord = { id: g.id, group, ...(await this.wrap(g, group)), createdAt: this.now().toISOString() };
        await this.store.saveFirmwareGroupKey(g.id, created, 0, sorted, {
          type: 'firmware.group-key.created',
          actor,
          subject: `firmware-group:${group}`,
          data: { keyId: g.id, members: sorted.length, replaces: rec?.id ?? null, left: compared?.left ?? 0 },
        });
        // the group's pointer last: a writer that lost the race retries and sees the winner's key
        await this.store.saveCaState(groupRecord(group), { current: g.id }, pointer?.version ?? 0);
        return { key: g, created: true };
      } catch (e) {
        if (!(e instanceof DeviceCaError && e.code === 'conflict' && e.message.startsWith('CA state')) || attempt >= 3) throw e;
      }
    }
  }

  /**
   * compare: how many devices the key was given to are not in `sorted` (they left the group), and which
   * of `sorted` it was not given to (newcomers); from the record's own list when it has one (previous version).
   */
  private async compare(rec: GroupKeyRecord, sorted: string[]): Promise<{ left: number; newcomers: string[] }> {
    if (Array.isArray(rec.members)) {
      const now = new Set(sorted);
      const had = new Set(rec.members);
      return { left: rec.members.filter((m) => !now.has(m)).length, newcomers: sorted.filter((m) => !had.has(m)) };
    }
    const { members, newcomers } = await this.store.firmwareGroupKeyMembership(rec.id, sorted);
    return { left: members - (sorted.length - newcomers.length), newcomers };
  }

  /**
   * fetch decides `GET /firmware/keys/<id>` and returns the key wrapped to the requester's certificate
   * (DER ContentInfo EnvelopedData of an RFC 6031 key package):
   * - no TLS client certificate: 'unauthenticated';
   * - a certificate that is not the current certificate of an active device: 'forbidden' (firmwareDeviceOf);
   * - a malformed or unknown key id, or a device that is not a member of the key's group now, or was not
   *   given the key at its last release: 'not-found', one message for all, so nobody learns which keys exist.
   * Each fetch is audited `firmware.group-key.fetched` (device, key id).
   */
  async fetch(a: { keyId: string; requester: FirmwareRequester }): Promise<Buffer> {
    const leaf = a.requester.clientCertificate;
    if (!leaf) throw new DeviceCaError('unauthenticated', 'a group key is fetched over TLS with the device certificate');
    const deviceId = await firmwareDeviceOf(this.store, leaf, this.now());
    if (!GROUP_KEY_ID_RE.test(a.keyId)) throw new DeviceCaError('not-found', NOT_FOUND);
    const entry = await this.store.getCaState(firmwareGroupKeyRecord(a.keyId));
    const rec = entry ? (entry.value as GroupKeyRecord) : null;
    if (!rec || rec.id !== a.keyId) throw new DeviceCaError('not-found', NOT_FOUND);
    const member = Array.isArray(rec.members) ? binaryIncludes(rec.members, deviceId) : await this.store.isFirmwareGroupKeyMember(rec.id, deviceId);
    if (!member) throw new DeviceCaError('not-found', NOT_FOUND);
    const owner = ownerOfGroup(rec.group);
    if (owner !== undefined && (await this.store.getDevice(deviceId))?.owner !== owner) throw new DeviceCaError('not-found', NOT_FOUND);
    const der = wrapGroupKeyTo(Buffer.from(leaf.raw), await this.unwrap(rec));
    await this.store.appendAudit({ type: 'firmware.group-key.fetched', actor: `device:${deviceId}`, subject: `firmware-group:${rec.group}`, data: { keyId: rec.id, device: deviceId } });
    return der;
  }

  /** wrap: the key under the token's key-encryption key when there is one, else the file's; `kek` says which. */
  private async wrap(g: GroupKey, group: string): Promise<{ wrapped: string; kek: 'file' | 'pkcs11' }> {
    const iv = crypto.randomBytes(12);
    if (this.keks.token) {
      const sealed = await this.keks.token.seal(iv, aad(g.id, group), g.key);
      // the token answers ciphertext | tag; the record keeps IV | tag | ciphertext as the file's does
      const ct = sealed.subarray(0, sealed.length - 16);
      return { wrapped: Buffer.concat([iv, sealed.subarray(sealed.length - 16), ct]).toString('hex'), kek: 'pkcs11' };
    }
    const c = crypto.createCipheriv('aes-256-gcm', this.keks.file(), iv);
    c.setAAD(aad(g.id, group));
    const ct = Buffer.concat([c.update(g.key), c.final()]);
    return { wrapped: Buffer.concat([iv, c.getAuthTag(), ct]).toString('hex'), kek: 'file' };
  }

  /** unwrap: with the key-encryption key the record names ('file' when it names none). */
  private async unwrap(rec: GroupKeyRecord): Promise<GroupKey> {
    const b = Buffer.from(rec.wrapped, 'hex');
    const kek: unknown = rec.kek === undefined ? 'file' : rec.kek;
    // a kek of a later version (or a hand-edited record) is refused as it is: read as 'file', it would
    // create keys/firmware-group.key on a token node and blame that file
    if (kek !== 'file' && kek !== 'pkcs11') throw new DeviceCaError('key-backend', `group key ${rec.id} names an unknown key-encryption key (kek ${String(JSON.stringify(kek)).slice(0, 40)})`);
    let key: Buffer;
    try {
      if (kek === 'pkcs11') {
        if (!this.keks.token) throw new Error('no token');
        key = await this.keks.token.open(b.subarray(0, 12), aad(rec.id, rec.group), Buffer.concat([b.subarray(28), b.subarray(12, 28)]));
      } else {
        const d = crypto.createDecipheriv('aes-256-gcm', this.keks.file(), b.subarray(0, 12));
        d.setAAD(aad(rec.id, rec.group));
        d.setAuthTag(b.subarray(12, 28));
        key = Buffer.concat([d.update(b.subarray(28)), d.final()]);
      }
      if (key.length !== GROUP_KEY_BYTES) throw new Error('length');
    } catch (e) {
      // a token that cannot be reached says so; otherwise the key-encryption key is not the one the group key was made under
      if (e instanceof DeviceCaError && e.code === 'key-backend') throw e;
      throw new DeviceCaError(
        'key-backend',
        kek === 'pkcs11'
          ? `group key ${rec.id} does not unwrap with the token's ${FIRMWARE_GROUP_KEK_LABEL}: it was wrapped in a PKCS#11 token, and keys.backend must be pkcs11 with that token`
          : `group key ${rec.id} does not unwrap with keys/${FIRMWARE_GROUP_KEK_FILE}: every node needs the same file`,
      );
    }
    return { id: rec.id, key };
  }
}

function groupRecord(group: string): string {
  return `firmware-group:${group}`;
}

/** withoutMembers: the record as this version writes it (a previous version's `members` list dropped). */
function withoutMembers(rec: GroupKeyRecord): GroupKeyRecord {
  return { id: rec.id, group: rec.group, wrapped: rec.wrapped, ...(rec.kek ? { kek: rec.kek } : {}), createdAt: rec.createdAt };
}

function aad(id: string, group: string): Buffer {
  return Buffer.from(`device-ca firmware group key ${id} ${group}`, 'utf8');
}

/** binaryIncludes: whether a sorted list holds s (a previous version's record lists the whole group). */
function binaryIncludes(sorted: string[], s: string): boolean {
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid] === s) return true;
    if (sorted[mid] < s) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}
