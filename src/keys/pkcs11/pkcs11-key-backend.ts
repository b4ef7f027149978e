import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as graphene from 'graphene-pk11';
import { DeviceCaError, isDeviceCaError } from '../../errors/device-ca-error';
import { KEY_ALGORITHMS, KeyAlgorithm, KeyBackend, KeyRole, SigningKey } from '../key-backend';
import { hashFor } from '../signature-algorithm';
import { RsaDecryptor, SecretKeyCipher } from './key-capabilities';
import { ckrOf, isLoginFailure, isRecoverable, keyBackendError, loginError, uninitializedTokenError } from './pkcs11-errors';
import { acquireModule, reinitializeModule, releaseModule } from './pkcs11-module';
import { KeyLocator, Pkcs11KeyRunner, Pkcs11RsaSigningKey, Pkcs11SigningKey } from './pkcs11-signing-key';
import { Pkcs11ObjectType, Pkcs11Uri, formatPkcs11Uri, parsePkcs11Uri } from './pkcs11-uri';
import { EC_CURVES, ecAlgorithmOf, ecPointFromAttribute, ecSpki, isEcAlgorithm, rsaAlgorithmOf, rsaSpki } from './public-key-info';
import { Lease, SessionPool } from './session-pool';
import { TokenJob, TokenThreads } from './token-threads';

/**
 * Pkcs11KeyBackend keeps device-ca's keys on a PKCS#11 token (an HSM, or SoftHSM in tests) behind the
 * same KeyBackend and SigningKey interfaces as the software backend, so the CA takes one code path.
 *
 * Keys are named by RFC 7512 URIs. Private keys are generated on the token as sensitive and never
 * extractable. Login, key lookup and the other metadata calls go through a SessionPool on the main
 * thread (one operation per session at a time, FIFO queue, reconnect-and-retry-once after a lost
 * session or login); they are rare (start-up, key load, after a reconnect). Signing and decryption run
 * on token threads that own their sessions (token-threads.ts: C_SignInit + C_Sign there, batched when
 * many are queued), so the thread that owns the sockets makes no PKCS#11 call per signature.
 */
export interface Pkcs11BackendOptions {
  /** module is the path of the PKCS#11 library, e.g. /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so. */
  module: string;
  /** token selects the token by CK_TOKEN_INFO.label; give token, serial, or both. */
  token?: string;
  /** serial selects the token by CK_TOKEN_INFO.serialNumber (unique where labels may repeat). */
  serial?: string;
  /** pin is the user PIN; the caller reads it from the environment or a file, never from config text. */
  pin: string;
  /** sessionPoolSize is how many main-thread sessions serve key lookup, generation and listing; default 4. */
  sessionPoolSize?: number;
  /** signerThreads is how many token threads sign (each with its own session); default defaultSignerThreads(). */
  signerThreads?: number;
}

export const DEFAULT_SESSION_POOL_SIZE = 4;

/**
 * defaultSignerThreads: one thread per core beside the one that owns the sockets (at least one), at
 * most 4. A software token (SoftHSM) is CPU-bound, so more threads than cores only add switching; a
 * network HSM waits on round trips and may want more (signerThreads).
 */
export function defaultSignerThreads(): number {
  return Math.max(1, Math.min(4, os.availableParallelism() - 1));
}

/** Pkcs11ObjectInfo is one line of `device-ca keys list`. */
export interface Pkcs11ObjectInfo {
  uri: string;
  label: string;
  /** id is CKA_ID in lower-case hex. */
  id: string;
  type: Pkcs11ObjectType;
  /** keyType is 'ec', 'rsa' or the CKK_ number for other key types. */
  keyType?: string;
  /** algorithm is set when device-ca can sign with the key. */
  algorithm?: KeyAlgorithm;
  sensitive?: boolean;
  extractable?: boolean;
  alwaysSensitive?: boolean;
  neverExtractable?: boolean;
}

const ID_BYTES = 16;
const MAX_LABEL = 128;
const LOAD_CHECK = Buffer.from('device-ca pkcs11 key pair check');

// What tokens return for a ciphertext whose padding does not check: the standard codes, and SoftHSM
// 2.6's CKR_GENERAL_ERROR.
const DECRYPT_FAILURES = new Set(['CKR_ENCRYPTED_DATA_INVALID', 'CKR_ENCRYPTED_DATA_LEN_RANGE', 'CKR_GENERAL_ERROR', 'CKR_FUNCTION_FAILED']);

const TYPE_TO_CLASS: Record<Pkcs11ObjectType, graphene.ObjectClass> = {
  private: graphene.ObjectClass.PRIVATE_KEY,
  public: graphene.ObjectClass.PUBLIC_KEY,
  cert: graphene.ObjectClass.CERTIFICATE,
  'secret-key': graphene.ObjectClass.SECRET_KEY,
  data: graphene.ObjectClass.DATA,
};

export class Pkcs11KeyBackend implements KeyBackend, RsaDecryptor, SecretKeyCipher, Pkcs11KeyRunner {
  readonly kind = 'pkcs11';
  private mod?: graphene.Module;
  private readonly pool: SessionPool<graphene.Session>;
  private threads?: TokenThreads;
  private slotHandle?: Buffer;
  private tokenLabel = '';
  private tokenSerial = '';
  private readonly decryptKeys = new Map<string, Promise<Pkcs11SigningKey>>();
  private closed = false;
  private readonly wanted: string;
  // non-enumerable, so neither console.log(backend) nor JSON.stringify shows the PIN
  declare private readonly pin: string;

  constructor(private readonly opts: Pkcs11BackendOptions) {
    if (!opts || typeof opts.module !== 'string' || opts.module === '') throw new DeviceCaError('config', 'pkcs11: module path is required');
    if (opts.token === undefined && opts.serial === undefined) throw new DeviceCaError('config', 'pkcs11: give the token label or serial');
    if (typeof opts.pin !== 'string' || opts.pin === '') throw new DeviceCaError('config', 'pkcs11: a user PIN is required');
    if (opts.signerThreads !== undefined && (!Number.isInteger(opts.signerThreads) || opts.signerThreads < 1)) {
      throw new DeviceCaError('config', `pkcs11: signerThreads must be a positive integer, got ${opts.signerThreads}`);
    }
    Object.defineProperty(this, 'pin', { value: opts.pin, enumerable: false });
    this.opts = { ...opts, pin: '' };
    this.wanted = [opts.token !== undefined ? `"${opts.token}"` : '', opts.serial !== undefined ? `serial ${opts.serial}` : ''].filter(Boolean).join(' ');
    this.pool = new SessionPool<graphene.Session>({ connect: (n) => this.connect(n), disconnect: (s) => this.disconnect(s) }, opts.sessionPoolSize ?? DEFAULT_SESSION_POOL_SIZE, {
      recoverable: isRecoverable,
      fatal: isLoginFailure,
    });
  }

  /** open connects and logs in now, so main.ts fails at start-up on a bad module, token or PIN. */
  async open(): Promise<this> {
    this.assertOpen();
    await this.pool.open();
    return this;
  }

  /** token is the label of the connected token (empty before the first connect). */
  get token(): string {
    return this.tokenLabel;
  }

  /** reconnects counts session recoveries, for metrics. */
  get reconnects(): number {
    return this.pool.reconnects;
  }

  async generate(role: KeyRole, algorithm: KeyAlgorithm, label: string): Promise<SigningKey> {
    if (!KEY_ALGORITHMS.includes(algorithm)) throw new DeviceCaError('bad-key', `unsupported key algorithm ${String(algorithm)}`);
    if (typeof label !== 'string' || label.length === 0 || label.length > MAX_LABEL || /[\u0000-\u001f]/.test(label)) {
      throw new DeviceCaError('config', `pkcs11: key label must be 1 to ${MAX_LABEL} printable characters`);
    }
    const id = crypto.randomBytes(ID_BYTES);
    const { mechanism, publicTemplate, privateTemplate } = keyPairTemplates(role, algorithm, label, id);
    return this.op('key generation', async ({ session, generation }) => {
      if (session.find({ class: graphene.ObjectClass.PRIVATE_KEY, label }).length > 0) {
        throw new DeviceCaError('conflict', `a private key labelled "${label}" already exists on token "${this.tokenLabel}"`);
      }
      const pair = await new Promise<graphene.IKeyPair>((resolve, reject) =>
        session.generateKeyPair(mechanism, publicTemplate, privateTemplate, (err, kp) => (err || !kp ? reject(err) : resolve(kp))),
      );
      const spki = publicKeyInfo(algorithm, pair.publicKey, pair.privateKey);
      const ref = formatPkcs11Uri({ token: this.tokenLabel, object: label, id, type: 'private' });
      const key = this.makeKey(algorithm, ref, spki, { id });
      key.cached = { generation, handle: pair.privateKey.handle };
      return key;
    });
  }

  async load(ref: string): Promise<SigningKey> {
    return this.loadKey(ref);
  }

  /**
   * probe: on a pooled main-thread session, C_GetSessionInfo must show the user logged in and the private
   * key at ref must be found (C_FindObjects); nothing is signed, so a health poller costs the token two
   * metadata calls. A lost session is reconnected once by the pool, as for any lookup.
   */
  async probe(ref: string): Promise<void> {
    const uri = parsePkcs11Uri(ref);
    const locator: KeyLocator = uri.id && uri.id.length > 0 ? { id: uri.id } : { label: uri.object };
    await this.op('health probe', async ({ session }) => {
      if (!isLoggedIn(session)) throw new Error('CKR_USER_NOT_LOGGED_IN (the token logged out)');
      this.findPrivateKey(session, locator, ref, 'key-backend');
    });
  }

  /** rsaDecrypt decrypts RSAES-PKCS1-v1_5 with the RSA private key at `ref` (CKM_RSA_PKCS). */
  async rsaDecrypt(ref: string, ciphertext: Buffer): Promise<Buffer> {
    let p = this.decryptKeys.get(ref);
    if (!p) {
      p = this.loadKey(ref);
      this.decryptKeys.set(ref, p);
      p.catch(() => this.decryptKeys.delete(ref));
    }
    const key = await p;
    if (!(key instanceof Pkcs11RsaSigningKey)) throw new DeviceCaError('key-backend', `key ${ref} is not an RSA key; it cannot decrypt`);
    try {
      return await key.decrypt(ciphertext);
    } catch (e) {
      const ckr = isDeviceCaError(e) ? ckrOf(e.cause) : ckrOf(e);
      if (ckr !== undefined && DECRYPT_FAILURES.has(ckr)) {
        // one message for every padding failure, so callers cannot become a padding oracle
        throw new DeviceCaError('bad-request', 'RSA decryption failed');
      }
      if (ckr === 'CKR_KEY_FUNCTION_NOT_PERMITTED' || ckr === 'CKR_KEY_TYPE_INCONSISTENT') {
        throw new DeviceCaError('key-backend', `key ${ref} is not allowed to decrypt (CKA_DECRYPT is set only on keys generated for role "ra")`, { cause: e });
      }
      throw e;
    }
  }

  /** secretKeyIds: the CKA_IDs of the AES secret keys labelled `label` (SecretKeyCipher). */
  async secretKeyIds(label: string): Promise<Buffer[]> {
    return this.op('secret key lookup', async ({ session }) => {
      const found = session.find({ class: graphene.ObjectClass.SECRET_KEY, keyType: graphene.KeyType.AES, label });
      const ids: Buffer[] = [];
      for (let i = 0; i < found.length; i++) ids.push(found.items(i).getAttribute({ id: null }).id as Buffer);
      return ids;
    });
  }

  /**
   * generateSecretKey makes an AES-256 key in the token (C_GenerateKey, CKM_AES_KEY_GEN): a token object,
   * private, sensitive, never extractable, allowed to encrypt and decrypt only (no wrap, unwrap, sign or
   * derive), so its value never leaves the token and it serves no other purpose.
   */
  async generateSecretKey(label: string, id: Buffer): Promise<void> {
    if (label.length === 0 || label.length > MAX_LABEL || /[\u0000-\u001f]/.test(label)) {
      throw new DeviceCaError('config', `pkcs11: key label must be 1 to ${MAX_LABEL} printable characters`);
    }
    const template: graphene.ITemplate = {
      token: true,
      private: true,
      label,
      id,
      keyType: graphene.KeyType.AES,
      valueLen: 32,
      sensitive: true,
      extractable: false,
      encrypt: true,
      decrypt: true,
      wrap: false,
      unwrap: false,
      sign: false,
      verify: false,
      derive: false,
    };
    await this.op(
      'secret key generation',
      ({ session }) => new Promise<void>((resolve, reject) => session.generateKey(graphene.KeyGenMechanism.AES, template, (err) => (err ? reject(err) : resolve()))),
    );
  }

  /** destroySecretKey removes the AES key with this CKA_ID (C_DestroyObject). */
  async destroySecretKey(id: Buffer): Promise<void> {
    await this.op('secret key removal', async ({ session }) => {
      const found = session.find({ class: graphene.ObjectClass.SECRET_KEY, keyType: graphene.KeyType.AES, id });
      for (let i = 0; i < found.length; i++) found.items(i).destroy();
    });
  }

  /**
   * aesGcmEncrypt: C_EncryptInit (CKM_AES_GCM, the IV, the additional data, a 128-bit tag) and C_Encrypt
   * with the AES key at `id`; the output is ciphertext | tag (PKCS#11 v2.40 §2.11.5). C_Encrypt runs on
   * the libuv pool (graphene's asynchronous call); the lookup and C_EncryptInit run on the main thread,
   * which is acceptable for a key-encryption key used once per release and once per key fetch.
   */
  async aesGcmEncrypt(id: Buffer, iv: Buffer, aad: Buffer, plaintext: Buffer): Promise<Buffer> {
    return this.op('AES-GCM encryption', ({ session }) => {
      const c = session.createCipher({ name: 'AES_GCM', params: new graphene.AesGcmParams(iv, aad, 128) }, this.findSecretKey(session, id));
      return new Promise<Buffer>((resolve, reject) => c.once(plaintext, Buffer.alloc(plaintext.length + 16), (err, out) => (err ? reject(err) : resolve(Buffer.from(out)))));
    });
  }

  /** aesGcmDecrypt: the reverse of aesGcmEncrypt; a tag that does not check rejects ('bad-request', no detail). */
  async aesGcmDecrypt(id: Buffer, iv: Buffer, aad: Buffer, sealed: Buffer): Promise<Buffer> {
    return this.op('AES-GCM decryption', ({ session }) => {
      const d = session.createDecipher({ name: 'AES_GCM', params: new graphene.AesGcmParams(iv, aad, 128) }, this.findSecretKey(session, id));
      return new Promise<Buffer>((resolve, reject) =>
        d.once(sealed, Buffer.alloc(sealed.length), (err, out) => {
          if (!err) return resolve(Buffer.from(out));
          // SoftHSM answers CKR_GENERAL_ERROR for a tag that does not check, others CKR_ENCRYPTED_DATA_INVALID
          const ckr = ckrOf(err);
          reject(ckr !== undefined && DECRYPT_FAILURES.has(ckr) ? new DeviceCaError('bad-request', 'AES-GCM decryption failed') : err);
        }),
      );
    });
  }

  private findSecretKey(session: graphene.Session, id: Buffer): graphene.SecretKey {
    const found = session.find({ class: graphene.ObjectClass.SECRET_KEY, keyType: graphene.KeyType.AES, id });
    if (found.length === 0 && !isLoggedIn(session)) throw new Error('CKR_USER_NOT_LOGGED_IN (secret key not visible: the token logged out)');
    if (found.length === 0) throw new DeviceCaError('key-backend', `no AES secret key with CKA_ID ${id.toString('hex')} on token "${this.tokenLabel}"`);
    if (found.length > 1) throw new DeviceCaError('key-backend', `${found.length} AES secret keys with CKA_ID ${id.toString('hex')} on token "${this.tokenLabel}"`);
    return new graphene.SecretKey(found.items(0));
  }

  /** listKeys describes every object the logged-in user can see on the token, for `device-ca keys list`. */
  async listKeys(): Promise<Pkcs11ObjectInfo[]> {
    return this.op('object listing', async ({ session }) => {
      const out: Pkcs11ObjectInfo[] = [];
      const found = session.find();
      for (let i = 0; i < found.length; i++) {
        const info = describeObject(found.items(i), this.tokenLabel);
        if (info) out.push(info);
      }
      const order = ['private', 'public', 'secret-key', 'cert', 'data'];
      return out.sort((a, b) => a.label.localeCompare(b.label) || order.indexOf(a.type) - order.indexOf(b.type) || a.id.localeCompare(b.id));
    });
  }

  /** close waits for in-flight operations, closes the sessions and finalizes the module if no other backend uses it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // the token threads go first: after C_Finalize their sessions would be gone under them
    await this.threads?.close();
    await this.pool.close();
    if (this.mod) {
      releaseModule(this.mod);
      this.mod = undefined;
    }
  }

  /**
   * runWithKey is Pkcs11KeyRunner for this backend's keys: the key's handle (found again on a main-thread
   * session when the pool reconnected since) and the operation go to a token thread. A failure that
   * reconnecting can cure (pkcs11-errors.ts) reconnects the pool once for every caller that saw it and
   * is retried once, as pool operations are.
   */
  async runWithKey(key: Pkcs11SigningKey, what: string, job: Omit<TokenJob, 'key'>): Promise<Buffer> {
    let retried = false;
    for (;;) {
      const { handle, generation } = await this.handleOf(key);
      try {
        return await this.tokenThreads().run({ ...job, key: handle });
      } catch (e) {
        if (retried || !isRecoverable(e)) throw keyBackendError(e, what);
        retried = true;
        await this.pool.recover(generation).catch((r: unknown) => {
          throw keyBackendError(r, what);
        });
      }
    }
  }

  /** handleOf: the key's object handle under the pool's current generation, looked up on a pooled session if stale. */
  private async handleOf(key: Pkcs11SigningKey): Promise<{ handle: Buffer; generation: number }> {
    this.assertOpen();
    const c = key.cached;
    if (c && c.generation === this.pool.generation && this.pool.connected) return c;
    return this.op('key lookup', async ({ session, generation }) => {
      if (key.cached?.generation === generation) return key.cached;
      const cached = { generation, handle: this.findPrivateKey(session, key.locator, key.ref, 'key-backend').handle };
      key.cached = cached;
      return cached;
    });
  }

  private tokenThreads(): TokenThreads {
    if (!this.threads) {
      this.threads = new TokenThreads(fs.realpathSync(this.opts.module), () => this.slotHandle!, this.opts.signerThreads ?? defaultSignerThreads());
    }
    return this.threads;
  }

  private async loadKey(ref: string): Promise<Pkcs11SigningKey> {
    const uri = parsePkcs11Uri(ref);
    if (uri.type !== undefined && uri.type !== 'private') throw new DeviceCaError('config', `pkcs11 key ref must name a private key (type=private), got type=${uri.type}`);
    if ((uri.id === undefined || uri.id.length === 0) && uri.object === undefined) {
      throw new DeviceCaError('config', 'pkcs11 key ref must carry an id or an object label');
    }
    const key = await this.op('key lookup', async ({ session, generation }) => {
      this.checkTokenMatches(uri, ref);
      // RFC 7512 names the object by all its attributes; device-ca prefers CKA_ID, which is unique by
      // construction, and falls back to CKA_LABEL, which operators may rename.
      const locator: KeyLocator = uri.id && uri.id.length > 0 ? { id: uri.id } : { label: uri.object };
      const priv = this.findPrivateKey(session, locator, ref, 'config');
      const attrs = priv.getAttribute({ keyType: null, id: null, label: null });
      const algorithm = algorithmOfPrivateKey(priv, attrs.keyType as number, ref);
      const id = attrs.id as Buffer | undefined;
      const pub = findPublicKey(session, attrs.keyType as number, id && id.length ? { id } : { label: attrs.label as string });
      const spki = publicKeyInfo(algorithm, pub, priv);
      const k = this.makeKey(algorithm, ref, spki, id && id.length ? { id } : { label: attrs.label as string });
      k.cached = { generation, handle: priv.handle };
      return k;
    });
    await assertPairMatches(key);
    return key;
  }

  private makeKey(algorithm: KeyAlgorithm, ref: string, spki: Buffer, locator: KeyLocator): Pkcs11SigningKey {
    if (isEcAlgorithm(algorithm)) return new Pkcs11SigningKey(this, algorithm, ref, spki, locator);
    return new Pkcs11RsaSigningKey(this, algorithm, ref, spki, locator, algorithm === 'rsa-2048' ? 256 : 384);
  }

  private checkTokenMatches(uri: Pkcs11Uri, ref: string): void {
    if (uri.token !== undefined && uri.token !== this.tokenLabel) {
      throw new DeviceCaError('config', `pkcs11 key ref ${ref} names token "${uri.token}", but the backend is connected to token "${this.tokenLabel}"`);
    }
    if (uri.serial !== undefined && uri.serial !== this.tokenSerial) {
      throw new DeviceCaError('config', `pkcs11 key ref ${ref} names token serial ${uri.serial}, but the connected token's serial is ${this.tokenSerial}`);
    }
  }

  private findPrivateKey(session: graphene.Session, locator: KeyLocator, ref: string, code: 'config' | 'key-backend'): graphene.PrivateKey {
    const template: graphene.ITemplate = { class: graphene.ObjectClass.PRIVATE_KEY };
    if (locator.id) template.id = locator.id;
    else template.label = locator.label;
    const found = session.find(template);
    if (found.length === 0 && !isLoggedIn(session)) {
      // After a C_Logout elsewhere, private objects are simply invisible: no error code says why.
      throw new Error('CKR_USER_NOT_LOGGED_IN (private key not visible: the token logged out)');
    }
    if (found.length === 0) throw new DeviceCaError(code, `no private key matching ${ref} on token "${this.tokenLabel}"`);
    if (found.length > 1) throw new DeviceCaError(code, `${found.length} private keys match ${ref} on token "${this.tokenLabel}"; give a unique id`);
    return new graphene.PrivateKey(found.items(0));
  }

  private op<T>(what: string, fn: (lease: Lease<graphene.Session>) => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new DeviceCaError('key-backend', 'PKCS#11 key backend is closed'));
    return this.pool.run(fn).catch((e) => {
      throw keyBackendError(e, what);
    });
  }

  private assertOpen(): void {
    if (this.closed) throw new DeviceCaError('key-backend', 'PKCS#11 key backend is closed');
  }

  /** connect is the pool's SessionSource: find the token, open `size` R/W sessions, log in once. */
  private connect(size: number): graphene.Session[] {
    if (!this.mod) this.mod = acquireModule(this.opts.module);
    let slots: graphene.SlotCollection;
    try {
      slots = this.mod.getSlots(true);
    } catch (e) {
      if (ckrOf(e) !== 'CKR_CRYPTOKI_NOT_INITIALIZED') throw e;
      reinitializeModule(this.mod); // someone called C_Finalize under us
      slots = this.mod.getSlots(true);
    }
    const slot = this.selectSlot(slots);
    const sessions: graphene.Session[] = [];
    try {
      for (let i = 0; i < size; i++) sessions.push(slot.open(graphene.SessionFlag.RW_SESSION | graphene.SessionFlag.SERIAL_SESSION));
    } catch (e) {
      this.disconnect(sessions);
      if (ckrOf(e) === 'CKR_TOKEN_NOT_RECOGNIZED') throw uninitializedTokenError(this.wanted, e);
      throw e;
    }
    try {
      // Login state belongs to the application, not the session: one C_Login covers all sessions.
      sessions[0].login(this.pin, graphene.UserType.USER);
    } catch (e) {
      if (ckrOf(e) !== 'CKR_USER_ALREADY_LOGGED_IN') {
        this.disconnect(sessions);
        throw loginError(e, this.tokenLabel);
      }
    }
    return sessions;
  }

  private disconnect(sessions: graphene.Session[]): void {
    for (const s of sessions) {
      try {
        s.close();
      } catch {
        /* already closed under us: that is why we are here */
      }
    }
  }

  private selectSlot(slots: graphene.SlotCollection): graphene.Slot {
    const tokens: { slot: graphene.Slot; label: string; serial: string; flags: number }[] = [];
    for (let i = 0; i < slots.length; i++) {
      const slot = slots.items(i);
      try {
        const t = slot.getToken();
        tokens.push({ slot, label: t.label, serial: t.serialNumber, flags: t.flags });
      } catch {
        /* token pulled between C_GetSlotList and C_GetTokenInfo */
      }
    }
    const matches = tokens.filter((t) => (this.opts.token === undefined || t.label === this.opts.token) && (this.opts.serial === undefined || t.serial === this.opts.serial));
    if (matches.length === 0) {
      const present = tokens.map((t) => (t.flags & graphene.TokenFlag.TOKEN_INITIALIZED ? `"${t.label}" (serial ${t.serial})` : `an uninitialized token (serial ${t.serial || '?'})`));
      throw new DeviceCaError('config', `PKCS#11 token ${this.wanted} not found in module ${this.opts.module}; tokens present: ${present.length ? present.join(', ') : 'none'}`);
    }
    if (matches.length > 1) {
      throw new DeviceCaError('config', `${matches.length} PKCS#11 tokens match ${this.wanted}; select the token by serial (${matches.map((t) => t.serial).join(', ')})`);
    }
    const t = matches[0];
    if (!(t.flags & graphene.TokenFlag.TOKEN_INITIALIZED)) throw uninitializedTokenError(this.wanted);
    this.slotHandle = t.slot.handle;
    this.tokenLabel = t.label;
    this.tokenSerial = t.serial;
    if (t.flags & graphene.TokenFlag.USER_PIN_LOCKED) throw loginError(new Error('CKR_PIN_LOCKED'), t.label);
    return t.slot;
  }
}

/**
 * keyPairTemplates: private keys sensitive, never extractable, private. Every usage attribute is set
 * explicitly, since SoftHSM defaults CKA_DECRYPT and CKA_UNWRAP to true; decryption is allowed only on
 * RSA keys of role 'ra' (SCEP key transport), so a CA signing key can never serve as a decryption oracle.
 */
function keyPairTemplates(role: KeyRole, algorithm: KeyAlgorithm, label: string, id: Buffer) {
  const decrypt = role === 'ra' && !isEcAlgorithm(algorithm);
  const common = { token: true, label, id };
  const publicTemplate: graphene.ITemplate = { ...common, private: false, verify: true, encrypt: decrypt, wrap: false, verifyRecover: false };
  const privateTemplate: graphene.ITemplate = {
    ...common,
    private: true,
    sensitive: true,
    extractable: false,
    sign: true,
    decrypt,
    unwrap: false,
    signRecover: false,
    derive: false,
  };
  if (isEcAlgorithm(algorithm)) {
    return {
      mechanism: graphene.KeyGenMechanism.EC,
      publicTemplate: { ...publicTemplate, keyType: graphene.KeyType.EC, paramsEC: EC_CURVES[algorithm].params },
      privateTemplate: { ...privateTemplate, keyType: graphene.KeyType.EC },
    };
  }
  return {
    mechanism: graphene.KeyGenMechanism.RSA,
    publicTemplate: {
      ...publicTemplate,
      keyType: graphene.KeyType.RSA,
      modulusBits: algorithm === 'rsa-2048' ? 2048 : 3072,
      publicExponent: Buffer.from([1, 0, 1]),
    },
    privateTemplate: { ...privateTemplate, keyType: graphene.KeyType.RSA },
  };
}

function algorithmOfPrivateKey(priv: graphene.SessionObject, keyType: number, ref: string): KeyAlgorithm {
  let alg: KeyAlgorithm | undefined;
  if (keyType === graphene.KeyType.EC) alg = ecAlgorithmOf(ecParamsOf(priv));
  else if (keyType === graphene.KeyType.RSA) alg = rsaAlgorithmOf(priv.getAttribute({ modulus: null }).modulus as Buffer);
  if (!alg) throw new DeviceCaError('bad-key', `key ${ref} is not one of ${KEY_ALGORITHMS.join(', ')}`);
  return alg;
}

// PKCS#11 §5.6 session states in which the user is logged in
const CKS_RO_USER_FUNCTIONS = 1;
const CKS_RW_USER_FUNCTIONS = 3;

function isLoggedIn(session: graphene.Session): boolean {
  const state = session.lib.C_GetSessionInfo(session.handle).state;
  return state === CKS_RO_USER_FUNCTIONS || state === CKS_RW_USER_FUNCTIONS;
}

// graphene's template maps CKA_EC_PARAMS back to its older alias `paramsECDSA` (same number), so EC
// attributes are read by number.
const CKA_EC_PARAMS = 0x180;
const CKA_EC_POINT = 0x181;
const ecParamsOf = (o: graphene.SessionObject): Buffer => o.getAttribute(CKA_EC_PARAMS);

function findPublicKey(session: graphene.Session, keyType: number, locator: KeyLocator): graphene.SessionObject | undefined {
  const found = session.find({ class: graphene.ObjectClass.PUBLIC_KEY, keyType, ...(locator.id ? { id: locator.id } : { label: locator.label }) });
  return found.length === 1 ? found.items(0) : undefined;
}

/**
 * publicKeyInfo builds the DER SPKI from the public key object, or from the private key's public
 * attributes (RSA private keys carry CKA_MODULUS and CKA_PUBLIC_EXPONENT; some tokens put CKA_EC_POINT
 * on EC private keys too). Node parses the result, which also checks the point is on the curve.
 */
function publicKeyInfo(algorithm: KeyAlgorithm, pub: graphene.SessionObject | undefined, priv: graphene.SessionObject): Buffer {
  let spki: Buffer | undefined;
  if (isEcAlgorithm(algorithm)) {
    for (const o of [pub, priv]) {
      if (!o) continue;
      try {
        if (!ecParamsOf(o).equals(EC_CURVES[algorithm].params)) continue;
        spki = ecSpki(algorithm, ecPointFromAttribute(o.getAttribute(CKA_EC_POINT), EC_CURVES[algorithm].fieldBytes));
        break;
      } catch (e) {
        if (isDeviceCaError(e)) throw e;
        /* CKR_ATTRIBUTE_TYPE_INVALID: no point on this object */
      }
    }
  } else {
    for (const o of [pub, priv]) {
      if (!o) continue;
      try {
        const { modulus, publicExponent } = o.getAttribute({ modulus: null, publicExponent: null });
        spki = rsaSpki(modulus as Buffer, publicExponent as Buffer);
        break;
      } catch {
        /* try the next object */
      }
    }
  }
  if (!spki) throw new DeviceCaError('key-backend', 'no public key object with the same CKA_ID as the private key, and the private key does not carry its public value');
  try {
    crypto.createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch (e) {
    throw new DeviceCaError('key-backend', 'the public key on the token is not a valid key', { cause: e });
  }
  return spki;
}

/**
 * assertPairMatches signs once and verifies with the SPKI, so a public object that shares a CKA_ID with
 * the wrong private key is caught at load time rather than as certificates nobody can verify.
 */
async function assertPairMatches(key: Pkcs11SigningKey): Promise<void> {
  const sig = await key.sign(LOAD_CHECK);
  const pub = crypto.createPublicKey({ key: key.spki, format: 'der', type: 'spki' });
  const ok = crypto.verify(hashFor(key.algorithm), LOAD_CHECK, isEcAlgorithm(key.algorithm) ? { key: pub, dsaEncoding: 'der' } : pub, sig);
  if (!ok) throw new DeviceCaError('key-backend', `public key found for ${key.ref} does not match its private key`);
}

const CLASS_TO_TYPE = new Map<number, Pkcs11ObjectType>(Object.entries(TYPE_TO_CLASS).map(([t, c]) => [c as number, t as Pkcs11ObjectType]));

function describeObject(obj: graphene.SessionObject, token: string): Pkcs11ObjectInfo | undefined {
  const base = obj.getAttribute({ class: null, label: null });
  const type = CLASS_TO_TYPE.get(base.class as number);
  if (!type) return undefined; // hardware features, mechanisms, domain parameters
  const label = (base.label as string | undefined) ?? '';
  let id: Buffer = Buffer.alloc(0);
  try {
    id = (obj.getAttribute({ id: null }).id as Buffer) ?? id;
  } catch {
    /* data objects have no CKA_ID */
  }
  const info: Pkcs11ObjectInfo = { uri: formatPkcs11Uri({ token, object: label, id: id.length ? id : undefined, type }), label, id: id.toString('hex'), type };
  if (type === 'private' || type === 'public' || type === 'secret-key') {
    const keyType = obj.getAttribute({ keyType: null }).keyType as number;
    info.keyType = keyType === graphene.KeyType.EC ? 'ec' : keyType === graphene.KeyType.RSA ? 'rsa' : String(keyType);
    try {
      if (keyType === graphene.KeyType.EC) info.algorithm = ecAlgorithmOf(ecParamsOf(obj));
      else if (keyType === graphene.KeyType.RSA) info.algorithm = rsaAlgorithmOf(obj.getAttribute({ modulus: null }).modulus as Buffer);
    } catch {
      /* attribute not readable: leave algorithm unset */
    }
  }
  if (type === 'private' || type === 'secret-key') {
    const f = obj.getAttribute({ sensitive: null, extractable: null, alwaysSensitive: null, neverExtractable: null });
    Object.assign(info, { sensitive: f.sensitive, extractable: f.extractable, alwaysSensitive: f.alwaysSensitive, neverExtractable: f.neverExtractable });
  }
  return info;
}
