import * as crypto from 'node:crypto';
import { DeviceCaError } from '../errors/device-ca-error';
import { SecretKeyCipher } from '../keys/pkcs11/key-capabilities';
import { Store } from '../store/store';

/**
 * firmware-group-kek: the firmware group key-encryption key kept in the PKCS#11 token (issue 13,
 * docs/firmware.md "Group key"), used instead of keys/firmware-group.key when keys.backend is pkcs11.
 *
 * The key is an AES-256 secret key object labelled FIRMWARE_GROUP_KEK_LABEL (sensitive, never
 * extractable, encrypt/decrypt only), generated in the token on first use. Which object it is, is decided
 * in the store, not by the label: CA state `firmware-group-kek` holds its CKA_ID, written with
 * compare-and-set. Two processes (or nodes) that generate at once each make an object with a random
 * CKA_ID, and only one CKA_ID is recorded: the other process destroys its object and uses the recorded
 * one, so every process ends with the same key. A process that dies between the generation and the
 * record leaves an unrecorded object with the label; it is never used (operators may delete it).
 */

/** FIRMWARE_GROUP_KEK_LABEL: the CKA_LABEL of the key-encryption key object in the token. */
export const FIRMWARE_GROUP_KEK_LABEL = 'device-ca-firmware-group-kek';

/** FIRMWARE_GROUP_KEK_STATE: the CA state record naming the key's CKA_ID ({ id: hex }). */
export const FIRMWARE_GROUP_KEK_STATE = 'firmware-group-kek';

const ID_BYTES = 16;

/** TokenKek seals (ciphertext | tag) and opens a group key with the token's key-encryption key. */
export interface TokenKek {
  seal(iv: Buffer, aad: Buffer, plaintext: Buffer): Promise<Buffer>;
  open(iv: Buffer, aad: Buffer, sealed: Buffer): Promise<Buffer>;
}

/**
 * tokenGroupKek: the TokenKek over `cipher` (the signer role's token). The CKA_ID is found (or the key
 * generated) on the first seal or open and kept for the process; a failed look-up is retried on the next call.
 */
export function tokenGroupKek(store: Pick<Store, 'getCaState' | 'saveCaState'>, cipher: () => Promise<SecretKeyCipher>): TokenKek {
  let id: Promise<{ c: SecretKeyCipher; id: Buffer }> | undefined;
  const ready = (): Promise<{ c: SecretKeyCipher; id: Buffer }> => {
    if (!id) {
      id = (async () => {
        const c = await cipher();
        return { c, id: await kekId(store, c) };
      })();
      id.catch(() => (id = undefined));
    }
    return id;
  };
  return {
    seal: async (iv, aad, plaintext) => {
      const k = await ready();
      return k.c.aesGcmEncrypt(k.id, iv, aad, plaintext);
    },
    open: async (iv, aad, sealed) => {
      const k = await ready();
      return k.c.aesGcmDecrypt(k.id, iv, aad, sealed);
    },
  };
}

/** kekId: the recorded CKA_ID, or a new key generated in the token and recorded (the race above). */
async function kekId(store: Pick<Store, 'getCaState' | 'saveCaState'>, c: SecretKeyCipher): Promise<Buffer> {
  const recorded = await store.getCaState(FIRMWARE_GROUP_KEK_STATE);
  if (recorded) return recordedId(recorded.value);
  const id = crypto.randomBytes(ID_BYTES);
  await c.generateSecretKey(FIRMWARE_GROUP_KEK_LABEL, id);
  try {
    await store.saveCaState(FIRMWARE_GROUP_KEK_STATE, { id: id.toString('hex'), label: FIRMWARE_GROUP_KEK_LABEL }, 0, {
      type: 'firmware.group-kek.created',
      actor: 'device-ca',
      subject: FIRMWARE_GROUP_KEK_STATE,
      data: { id: id.toString('hex'), label: FIRMWARE_GROUP_KEK_LABEL },
    });
    return id;
  } catch (e) {
    if (!(e instanceof DeviceCaError && e.code === 'conflict')) throw e;
    // another process recorded its key first: theirs is the one, ours is destroyed; read before the
    // destroy, so a conflict with our own committed write (its answer lost, retried) keeps the recorded key
    const winner = await store.getCaState(FIRMWARE_GROUP_KEK_STATE);
    if (!winner) throw e;
    const theirs = recordedId(winner.value);
    if (!theirs.equals(id)) await c.destroySecretKey(id);
    return theirs;
  }
}

function recordedId(value: unknown): Buffer {
  const hex = (value as { id?: unknown } | null)?.id;
  if (typeof hex !== 'string' || !/^([0-9a-f]{2})+$/.test(hex)) throw new DeviceCaError('key-backend', `CA state ${FIRMWARE_GROUP_KEK_STATE} does not name a key (CKA_ID in hex)`);
  return Buffer.from(hex, 'hex');
}
