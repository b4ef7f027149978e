import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as graphene from 'graphene-pk11';
import { initCa, loadCa } from '../../src/ca/ca-hierarchy';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store';
import { CertificateAuthority } from '../../src/ca/certificate-authority';
import { KU, assembleCertificate, basicConstraints, encodeTbs, keyIdentifier, keyUsage, newSerial, subjectKeyIdentifier } from '../../src/ca/certificate-encoder';
import { encodeName } from '../../src/ca/name';
import { toPem } from '../../src/ca/pem';
import { loadConfig, publicBaseUrl } from '../../src/config/load-config';
import { DeviceCaError } from '../../src/errors/device-ca-error';
import { KEY_ALGORITHMS, KeyAlgorithm, SigningKey } from '../../src/keys/key-backend';
import { isRsaDecryptor, isRsaPssSigner, isSecretKeyCipher } from '../../src/keys/pkcs11/key-capabilities';
import { Pkcs11KeyBackend } from '../../src/keys/pkcs11/pkcs11-key-backend';
import { acquireModule, moduleUsers, releaseModule } from '../../src/keys/pkcs11/pkcs11-module';
import { parsePkcs11Uri } from '../../src/keys/pkcs11/pkcs11-uri';
import { hashFor } from '../../src/keys/signature-algorithm';
import { openKeyBackend } from '../../src/keys/open-key-backend';
import { SoftwareKeyBackend } from '../../src/keys/software-key-backend';
import { FIRMWARE_GROUP_KEK_LABEL, FIRMWARE_GROUP_KEK_STATE, tokenGroupKek } from '../../src/ra/firmware-group-kek';
import { SoftHsm, createSoftHsm } from '../helpers/softhsm';

/**
 * Pkcs11KeyBackend against a real SoftHSM2 token, with opensc's pkcs11-tool and openssl as the
 * independent judges: signatures verify with Node's crypto and openssl, SPKIs are byte-equal to what
 * pkcs11-tool reads off the token, key attributes are what pkcs11-tool reports.
 */

jest.setTimeout(120_000);

let hsm: SoftHsm;
let backend: Pkcs11KeyBackend;
const keys = new Map<KeyAlgorithm, SigningKey>();

const verifyWithSpki = (key: SigningKey, data: Buffer, sig: Buffer): boolean => {
  const pub = crypto.createPublicKey({ key: key.spki, format: 'der', type: 'spki' });
  return crypto.verify(hashFor(key.algorithm), data, key.algorithm.startsWith('ecdsa') ? { key: pub, dsaEncoding: 'der' } : pub, sig);
};
const idHex = (ref: string): string => parsePkcs11Uri(ref).id!.toString('hex');
const openBackend = (extra: Partial<ConstructorParameters<typeof Pkcs11KeyBackend>[0]> = {}): Pkcs11KeyBackend =>
  new Pkcs11KeyBackend({ module: hsm.module, token: 'ca', pin: hsm.pin, sessionPoolSize: 4, ...extra });

/**
 * spkiFromPkcs11Tool: the public key as pkcs11-tool sees it, turned into an SPKI by Node (not by our
 * encoder). RSA: `--read-object --type pubkey` writes the SPKI. EC: OpenSC 0.23 cannot export P-384
 * ("cannot create EVP_PKEY"), so take CKA_EC_POINT from `--list-objects` and import it as a JWK.
 */
function spkiFromPkcs11Tool(algorithm: KeyAlgorithm, ref: string): Buffer {
  const id = idHex(ref);
  if (algorithm.startsWith('rsa')) {
    const out = path.join(hsm.dir, `${id}.spki.der`);
    hsm.pkcs11Tool(['--token-label', 'ca', '--read-object', '--type', 'pubkey', '--id', id, '-o', out]);
    return fs.readFileSync(out);
  }
  const block = hsm
    .pkcs11Tool(['--token-label', 'ca', '--list-objects', '--type', 'pubkey'])
    .split(/\n(?=\S)/)
    .find((b) => new RegExp(`ID:\\s*${id}\\n`).test(b))!;
  const point = Buffer.from(/EC_POINT:\s*([0-9a-f]+)/.exec(block)![1], 'hex').subarray(2); // drop OCTET STRING header
  const n = (point.length - 1) / 2;
  const jwk = { kty: 'EC', crv: algorithm === 'ecdsa-p256' ? 'P-256' : 'P-384', x: point.subarray(1, 1 + n).toString('base64url'), y: point.subarray(1 + n).toString('base64url') };
  return crypto.createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'der' });
}

/** withSlot reaches the token beside the backend, through the same process-wide module, as a second application would. */
function withSlot<T>(label: string, fn: (slot: graphene.Slot) => T): T {
  const mod = acquireModule(hsm.module);
  try {
    const slots = mod.getSlots(true);
    for (let i = 0; i < slots.length; i++) if (slots.items(i).getToken().label === label) return fn(slots.items(i));
    throw new Error(`no token ${label}`);
  } finally {
    releaseModule(mod);
  }
}

beforeAll(async () => {
  hsm = createSoftHsm({ labels: ['ca', 'spare'] });
  backend = await openBackend().open();
});

afterAll(async () => {
  try {
    await backend?.close();
    // every backend a test opened was closed: the module is finalized, so a later test file in this
    // process (jest --runInBand) initializes SoftHSM afresh with its own SOFTHSM2_CONF
    expect(moduleUsers(hsm.module)).toBe(0);
  } finally {
    hsm?.cleanup();
  }
});

describe('generate and sign', () => {
  test.each(KEY_ALGORITHMS.map((a) => [a]))('%s: key on the token, signature verifies with the SPKI', async (algorithm) => {
    const label = `key-${algorithm}`;
    const key = await backend.generate(algorithm === 'rsa-2048' ? 'ra' : 'issuing', algorithm, label);
    keys.set(algorithm, key);
    expect(key.algorithm).toBe(algorithm);
    expect(key.ref).toMatch(new RegExp(`^pkcs11:token=ca;object=${label};id=(%[0-9a-f]{2}){16};type=private$`));
    // Node re-encodes the SPKI it parses: equal bytes mean ours is the canonical DER
    expect(crypto.createPublicKey({ key: key.spki, format: 'der', type: 'spki' }).export({ type: 'spki', format: 'der' })).toEqual(key.spki);
    // and the public key pkcs11-tool reads off the token, exported by Node, is the same SPKI
    expect(spkiFromPkcs11Tool(algorithm, key.ref)).toEqual(key.spki);
    for (const data of [Buffer.alloc(0), Buffer.from('hello'), crypto.randomBytes(100_000)]) {
      const sig = await key.sign(data);
      expect(verifyWithSpki(key, data, sig)).toBe(true);
      expect(verifyWithSpki(key, Buffer.concat([data, Buffer.from('x')]), sig)).toBe(false);
    }
  });

  test('RSA PKCS#1 v1.5 signatures are byte-equal to a second, independent signer (pkcs11-tool, CKM_SHA256_RSA_PKCS)', async () => {
    const key = keys.get('rsa-2048')!;
    const data = Buffer.from('deterministic padding');
    const inFile = path.join(hsm.dir, 'rsa.in');
    const outFile = path.join(hsm.dir, 'rsa.sig');
    fs.writeFileSync(inFile, data);
    hsm.pkcs11Tool(['--token-label', 'ca', '--login', '--pin', hsm.pin, '--sign', '-m', 'SHA256-RSA-PKCS', '--id', idHex(key.ref), '-i', inFile, '-o', outFile]);
    expect(await key.sign(data)).toEqual(fs.readFileSync(outFile));
  });

  test('pkcs11-tool lists every private key as sensitive and never extractable, with only the sign usage (decrypt for the RA key)', () => {
    const listing = hsm.pkcs11Tool(['--token-label', 'ca', '--list-objects', '--login', '--pin', hsm.pin]);
    const blocks = listing.split(/\n(?=\S)/).filter((b) => b.startsWith('Private Key Object'));
    expect(blocks).toHaveLength(KEY_ALGORITHMS.length);
    for (const algorithm of KEY_ALGORITHMS) {
      const block = blocks.find((b) => b.includes(`label:      key-${algorithm}\n`));
      expect(block).toBeDefined();
      const access = /Access:\s*(.*)/.exec(block!)![1].split(', ');
      expect(access).toEqual(expect.arrayContaining(['sensitive', 'always sensitive', 'never extractable', 'local']));
      expect(access).not.toContain('extractable');
      expect(/Usage:\s*(.*)/.exec(block!)![1]).toBe(algorithm === 'rsa-2048' ? 'decrypt, sign' : 'sign');
    }
  });

  test('listKeys reports the same keys and flags', async () => {
    const list = await backend.listKeys();
    for (const [algorithm, key] of keys) {
      const priv = list.find((o) => o.type === 'private' && o.label === `key-${algorithm}`);
      expect(priv).toEqual({
        uri: key.ref,
        label: `key-${algorithm}`,
        id: idHex(key.ref),
        type: 'private',
        keyType: algorithm.startsWith('ecdsa') ? 'ec' : 'rsa',
        algorithm,
        sensitive: true,
        extractable: false,
        alwaysSensitive: true,
        neverExtractable: true,
      });
      expect(list.find((o) => o.type === 'public' && o.label === `key-${algorithm}`)?.uri).toBe(key.ref.replace('type=private', 'type=public'));
    }
  });

  test('a second key with the same label is refused', async () => {
    await expect(backend.generate('issuing', 'ecdsa-p256', 'key-ecdsa-p256')).rejects.toMatchObject({ code: 'conflict' });
  });

  test('self-signed X.509 certificates signed on the token verify with Node and openssl', async () => {
    for (const [algorithm, key] of keys) {
      const name = encodeName([{ type: 'CN', value: `HSM ${algorithm}` }]);
      const notBefore = new Date(Math.floor(Date.now() / 1000) * 1000 - 60_000);
      const tbs = encodeTbs({
        serial: newSerial(),
        signatureAlgorithm: key.signatureAlgorithm,
        issuer: name,
        notBefore,
        notAfter: new Date(notBefore.getTime() + 86400_000),
        subject: name,
        spki: key.spki,
        extensions: [basicConstraints(true), keyUsage([KU.keyCertSign, KU.cRLSign]), subjectKeyIdentifier(keyIdentifier(key.spki))],
      });
      const der = assembleCertificate(tbs, key.signatureAlgorithm, await key.sign(tbs));
      const x = new crypto.X509Certificate(der);
      expect(x.verify(x.publicKey)).toBe(true);
      const pem = path.join(hsm.dir, `self-${algorithm}.pem`);
      fs.writeFileSync(pem, toPem(der, 'CERTIFICATE'));
      expect(execFileSync('openssl', ['verify', '-CAfile', pem, pem]).toString().trim()).toBe(`${pem}: OK`);
    }
  });
});

describe('load', () => {
  test('a new backend after close (module finalized) loads each key by URI: same SPKI, signatures verify', async () => {
    const first = keys.get('ecdsa-p256')!;
    await backend.close();
    expect(moduleUsers(hsm.module)).toBe(0);
    backend = await openBackend().open();
    for (const [algorithm, key] of keys) {
      const loaded = await backend.load(key.ref);
      keys.set(algorithm, loaded); // keys belong to their backend; the old ones now fail as closed
      expect(loaded.spki).toEqual(key.spki);
      expect(loaded.algorithm).toBe(key.algorithm);
      expect(loaded.signatureAlgorithm).toEqual(key.signatureAlgorithm);
      const sig = await loaded.sign(Buffer.from('after reopen'));
      expect(verifyWithSpki(key, Buffer.from('after reopen'), sig)).toBe(true);
    }
    await expect(first.sign(Buffer.from('x'))).rejects.toMatchObject({ code: 'key-backend', message: expect.stringMatching(/closed/) });
  });

  test('by object label alone, by id alone, and by serial', async () => {
    const key = keys.get('ecdsa-p384')!;
    const byLabel = await backend.load('pkcs11:object=key-ecdsa-p384');
    const byId = await backend.load(`pkcs11:id=${parsePkcs11Uri(key.ref).id!.toString('hex').replace(/../g, '%$&')}`);
    const bySerial = await backend.load(`pkcs11:serial=${hsm.tokens.ca};object=key-ecdsa-p384;type=private`);
    for (const k of [byLabel, byId, bySerial]) expect(k.spki).toEqual(key.spki);
  });

  test.each([
    ['another token', 'pkcs11:token=other;object=key-ecdsa-p256', /names token "other"/],
    ['another serial', 'pkcs11:serial=0000;object=key-ecdsa-p256', /serial 0000/],
    ['a public key', 'pkcs11:token=ca;object=key-ecdsa-p256;type=public', /must name a private key/],
    ['no such key', 'pkcs11:token=ca;object=nope', /no private key matching/],
    ['no id or label', 'pkcs11:token=ca;type=private', /id or an object label/],
    ['a PIN in the URI', 'pkcs11:token=ca;object=key-ecdsa-p256?pin-value=1234', /"pin-value" is not accepted/],
  ])('refuses %s with a config error', async (_what, ref, message) => {
    const err = await backend.load(ref).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeviceCaError);
    expect(err).toMatchObject({ code: 'config' });
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).not.toContain('1234');
  });

  test('a second backend in a child process (its own C_Initialize) reads the same SPKI', () => {
    const key = keys.get('ecdsa-p256')!;
    const script = `
      const g = require('graphene-pk11');
      const mod = g.Module.load(${JSON.stringify(hsm.module)}); mod.initialize({ flags: 2 });
      const slots = mod.getSlots(true); let slot;
      for (let i = 0; i < slots.length; i++) if (slots.items(i).getToken().label === 'ca') slot = slots.items(i);
      const s = slot.open(6); s.login(${JSON.stringify(hsm.pin)});
      const pub = s.find({ class: g.ObjectClass.PUBLIC_KEY, id: Buffer.from(${JSON.stringify(idHex(key.ref))}, 'hex') }).items(0);
      process.stdout.write(pub.getAttribute(0x181).toString('hex'));
      s.logout(); s.close(); mod.finalize();`;
    const point = execFileSync(process.execPath, ['-e', script], { env: hsm.env, cwd: path.resolve(__dirname, '../..') }).toString();
    // CKA_EC_POINT is OCTET STRING(point); the SPKI ends with BIT STRING(0 unused bits, point)
    expect(key.spki.subarray(key.spki.length - 65).toString('hex')).toBe(point.slice(4));
  });
});

describe('capabilities', () => {
  test('rsaDecrypt with the RA key: CKM_RSA_PKCS round trip; bad padding is one generic error', async () => {
    expect(isRsaDecryptor(backend)).toBe(true);
    expect(isRsaDecryptor(new SoftwareKeyBackend(os.tmpdir()))).toBe(false);
    const ra = keys.get('rsa-2048')!;
    const secret = crypto.randomBytes(32);
    const ct = crypto.publicEncrypt({ key: crypto.createPublicKey({ key: ra.spki, format: 'der', type: 'spki' }), padding: crypto.constants.RSA_PKCS1_PADDING }, secret);
    expect(await backend.rsaDecrypt(ra.ref, ct)).toEqual(secret);
    // bad padding made so, not by chance: a random change to the ciphertext decrypts to a valid PKCS#1 v1.5
    // block now and then; this is raw RSA over a well-formed block of the wrong type (01, the signature padding,
    // RFC 8017 §7.2.2 wants 02)
    const pub = crypto.createPublicKey({ key: ra.spki, format: 'der', type: 'spki' });
    const block = Buffer.concat([Buffer.from([0x00, 0x01]), Buffer.alloc(256 - 3 - secret.length, 0xff), Buffer.from([0x00]), secret]);
    const bad = crypto.publicEncrypt({ key: pub, padding: crypto.constants.RSA_NO_PADDING }, block);
    await expect(backend.rsaDecrypt(ra.ref, bad)).rejects.toMatchObject({ code: 'bad-request', message: 'RSA decryption failed' });
    await expect(backend.rsaDecrypt(ra.ref, ct.subarray(1))).rejects.toMatchObject({ code: 'bad-request' });
  });

  test("through the service's key router (openKeyBackend): an RA key generated on the token decrypts", async () => {
    const cfg = loadConfig({ env: { DEVICE_CA_DATA: fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-router-')), DEVICE_CA_PKCS11_MODULE: hsm.module, DEVICE_CA_PKCS11_TOKEN: 'ca' } });
    const saved = process.env.DEVICE_CA_PKCS11_PIN;
    process.env.DEVICE_CA_PKCS11_PIN = hsm.pin;
    const router = openKeyBackend(cfg);
    try {
      expect(isRsaDecryptor(router)).toBe(true);
      if (!isRsaDecryptor(router)) return;
      const ra = await router.generate('ra', 'rsa-2048', `router-ra-${crypto.randomBytes(3).toString('hex')}`);
      expect(ra.ref).toMatch(/^pkcs11:token=ca;/);
      const secret = crypto.randomBytes(32);
      const ct = crypto.publicEncrypt({ key: crypto.createPublicKey({ key: ra.spki, format: 'der', type: 'spki' }), padding: crypto.constants.RSA_PKCS1_PADDING }, secret);
      expect(await router.rsaDecrypt(ra.ref, ct)).toEqual(secret);
    } finally {
      await router.close();
      if (saved === undefined) delete process.env.DEVICE_CA_PKCS11_PIN;
      else process.env.DEVICE_CA_PKCS11_PIN = saved;
      fs.rmSync(cfg.dataDir, { recursive: true, force: true });
    }
  });

  test('rsaDecrypt refuses keys generated for other roles (no CKA_DECRYPT)', async () => {
    const issuing = keys.get('rsa-3072')!;
    const ct = crypto.publicEncrypt({ key: crypto.createPublicKey({ key: issuing.spki, format: 'der', type: 'spki' }), padding: crypto.constants.RSA_PKCS1_PADDING }, Buffer.from('x'));
    await expect(backend.rsaDecrypt(issuing.ref, ct)).rejects.toMatchObject({ code: 'key-backend', message: expect.stringMatching(/not allowed to decrypt/) });
    await expect(backend.rsaDecrypt(keys.get('ecdsa-p256')!.ref, ct)).rejects.toMatchObject({ code: 'key-backend' });
  });

  test('RSA-PSS signatures verify with Node for the default and an explicit salt', async () => {
    const key = await backend.load(keys.get('rsa-3072')!.ref);
    expect(isRsaPssSigner(key)).toBe(true);
    expect(isRsaPssSigner(await backend.load(keys.get('ecdsa-p256')!.ref))).toBe(false);
    if (!isRsaPssSigner(key)) return;
    const pub = crypto.createPublicKey({ key: key.spki, format: 'der', type: 'spki' });
    const data = Buffer.from('pss');
    for (const [opts, hash, saltLength] of [
      [{}, 'sha256', 32],
      [{ hash: 'sha384', saltLength: 20 }, 'sha384', 20],
    ] as const) {
      const sig = await key.signRsaPss(data, opts);
      expect(crypto.verify(hash, data, { key: pub, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength }, sig)).toBe(true);
    }
  });
});

describe('AES secret keys (SecretKeyCipher, the firmware group key-encryption key)', () => {
  /** secretKeyBlocks: pkcs11-tool's view of the AES secret keys with a label */
  const secretKeyBlocks = (label: string): string[] =>
    hsm
      .pkcs11Tool(['--token-label', 'ca', '--login', '--pin', hsm.pin, '--list-objects', '--type', 'secrkey'])
      .split(/\n(?=Secret Key Object)/)
      .filter((b) => new RegExp(`label:\\s+${label}\\n`).test(b));

  test('generated in the token sensitive and never extractable; CKM_AES_GCM round trip; a wrong tag or additional data is one generic error', async () => {
    expect(isSecretKeyCipher(backend)).toBe(true);
    expect(isSecretKeyCipher(new SoftwareKeyBackend(os.tmpdir()))).toBe(false);
    const id = crypto.randomBytes(16);
    await backend.generateSecretKey('aes-test', id);
    expect((await backend.secretKeyIds('aes-test')).map((b) => b.toString('hex'))).toEqual([id.toString('hex')]);
    const [block] = secretKeyBlocks('aes-test');
    expect(block).toMatch(/AES length 32/);
    expect(block).toMatch(/Usage:\s+encrypt, decrypt\s*\n/);
    expect(block).toMatch(/Access:\s+.*sensitive.*never extractable/);
    const iv = crypto.randomBytes(12);
    const aad = Buffer.from('additional data');
    const plain = crypto.randomBytes(32);
    const sealed = await backend.aesGcmEncrypt(id, iv, aad, plain);
    expect(sealed.length).toBe(48);
    expect(sealed.includes(plain)).toBe(false);
    expect(await backend.aesGcmDecrypt(id, iv, aad, sealed)).toEqual(plain);
    const bad = Buffer.from(sealed);
    bad[47] ^= 1;
    await expect(backend.aesGcmDecrypt(id, iv, aad, bad)).rejects.toMatchObject({ code: 'bad-request', message: 'AES-GCM decryption failed' });
    await expect(backend.aesGcmDecrypt(id, iv, Buffer.from('other'), sealed)).rejects.toMatchObject({ code: 'bad-request' });
    // the backend still works after a failed decryption (the session was not left mid-operation)
    expect(await backend.aesGcmDecrypt(id, iv, aad, sealed)).toEqual(plain);
    await backend.destroySecretKey(id);
    expect(await backend.secretKeyIds('aes-test')).toEqual([]);
    await expect(backend.aesGcmEncrypt(id, iv, aad, plain)).rejects.toMatchObject({ code: 'key-backend', message: expect.stringMatching(/no AES secret key with CKA_ID/) });
  });

  test('two backends (two processes) generating the group key-encryption key at once end with one key in the token', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-kek-race-'));
    const store = new SqliteStore(path.join(dir, 'store.sqlite'));
    const other = await openBackend().open();
    try {
      const a = tokenGroupKek(store, async () => backend);
      const b = tokenGroupKek(store, async () => other);
      const iv = crypto.randomBytes(12);
      const aad = Buffer.from('aad');
      const [sa, sb] = await Promise.all([a.seal(iv, aad, Buffer.from('from a')), b.seal(iv, aad, Buffer.from('from b'))]);
      expect((await b.open(iv, aad, sa)).toString()).toBe('from a');
      expect((await a.open(iv, aad, sb)).toString()).toBe('from b');
      const ids = await backend.secretKeyIds(FIRMWARE_GROUP_KEK_LABEL);
      const recorded = (await store.getCaState(FIRMWARE_GROUP_KEK_STATE))!.value as { id: string };
      expect(ids.map((x) => x.toString('hex'))).toEqual([recorded.id]);
      expect(secretKeyBlocks(FIRMWARE_GROUP_KEK_LABEL)).toHaveLength(1);
    } finally {
      await other.close();
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('concurrency', () => {
  test('300 concurrent signatures on a 4-session pool all verify', async () => {
    const key = keys.get('ecdsa-p256')!;
    const data = Array.from({ length: 300 }, (_, i) => Buffer.from(`message ${i}`));
    const sigs = await Promise.all(data.map((d) => key.sign(d)));
    expect(sigs.filter((s, i) => verifyWithSpki(key, data[i], s))).toHaveLength(300);
  });

  test('signing makes no PKCS#11 call on the calling thread: C_SignInit and C_Sign run on token threads', async () => {
    // graphene's Session methods are the only way the main thread reaches C_SignInit / C_DecryptInit
    const signInit = jest.spyOn(graphene.Session.prototype, 'createSign');
    const decryptInit = jest.spyOn(graphene.Session.prototype, 'createDecipher');
    try {
      const one = await openBackend({ signerThreads: 1 }).open();
      const ec = await one.load(keys.get('ecdsa-p256')!.ref);
      const rsa = await one.load(keys.get('rsa-2048')!.ref);
      const data = Array.from({ length: 200 }, (_, i) => Buffer.from(`threaded ${i}`));
      const sigs = await Promise.all(data.map((d, i) => (i % 2 ? ec : rsa).sign(d)));
      await one.close();
      expect({
        verified: sigs.filter((s, i) => verifyWithSpki(i % 2 ? ec : rsa, data[i], s)).length,
        signInitOnMainThread: signInit.mock.calls.length,
        decryptInitOnMainThread: decryptInit.mock.calls.length,
      }).toEqual({ verified: 200, signInitOnMainThread: 0, decryptInitOnMainThread: 0 });
    } finally {
      signInit.mockRestore();
      decryptInit.mockRestore();
    }
  });

  test('signerThreads must be a positive integer', () => {
    for (const n of [0, 1.5, -1]) {
      expect(() => openBackend({ signerThreads: n })).toThrow(expect.objectContaining({ code: 'config', message: expect.stringMatching(/signerThreads must be a positive integer/) }));
    }
  });

  test('two backends in one process share one initialized module; closing one leaves the other working', async () => {
    const second = await openBackend({ sessionPoolSize: 2 }).open();
    expect(moduleUsers(hsm.module)).toBe(2);
    const key = await second.load(keys.get('ecdsa-p256')!.ref);
    await second.close();
    expect(moduleUsers(hsm.module)).toBe(1);
    const sig = await (await backend.load(key.ref)).sign(Buffer.from('still here'));
    expect(verifyWithSpki(key, Buffer.from('still here'), sig)).toBe(true);
  });
});

describe('recovery', () => {
  test('after C_CloseAllSessions under the backend, 100 concurrent signs recover with one reconnect', async () => {
    const key = await backend.load(keys.get('ecdsa-p256')!.ref);
    const before = backend.reconnects;
    withSlot('ca', (slot) => slot.closeAll());
    const data = Array.from({ length: 100 }, (_, i) => Buffer.from(`after closeAll ${i}`));
    const sigs = await Promise.all(data.map((d) => key.sign(d)));
    expect(sigs.every((s, i) => verifyWithSpki(key, data[i], s))).toBe(true);
    expect(backend.reconnects).toBe(before + 1);
  });

  test('after C_Logout by another session (handles go stale), the next sign logs in again and verifies', async () => {
    const key = keys.get('rsa-2048')!;
    const before = backend.reconnects;
    withSlot('ca', (slot) => {
      const s = slot.open(graphene.SessionFlag.SERIAL_SESSION);
      s.logout();
      s.close();
    });
    const sig = await key.sign(Buffer.from('after logout'));
    expect(verifyWithSpki(key, Buffer.from('after logout'), sig)).toBe(true);
    expect(backend.reconnects).toBe(before + 1);
  });
});

describe('token and PIN errors', () => {
  let loginSpy: jest.SpyInstance;
  beforeEach(() => {
    loginSpy = jest.spyOn(graphene.Session.prototype, 'login');
  });
  afterEach(() => loginSpy.mockRestore());

  test('a wrong PIN is a config error naming CKR_PIN_INCORRECT, and C_Login is never tried again', async () => {
    // on "spare", which nobody in this process is logged in to: PKCS#11 login state belongs to the
    // application, so while one backend is logged in to a token, C_Login answers
    // CKR_USER_ALREADY_LOGGED_IN before it looks at the PIN
    const bad = openBackend({ token: 'spare', pin: '0000' });
    const err = await bad.open().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeviceCaError);
    expect(err).toMatchObject({ code: 'config', message: expect.stringMatching(/wrong PIN \(CKR_PIN_INCORRECT\)/) });
    await expect(bad.open()).rejects.toBe(err);
    await expect(bad.load('pkcs11:token=spare;object=any')).rejects.toBe(err);
    await expect(bad.generate('issuing', 'ecdsa-p256', 'never')).rejects.toBe(err);
    expect(loginSpy).toHaveBeenCalledTimes(1);
    await bad.close();
  });

  test('an unknown token is a config error listing the tokens present', async () => {
    const nope = openBackend({ token: 'nope' });
    const err = await nope.open().catch((e: unknown) => e);
    await nope.close();
    expect(err).toMatchObject({ code: 'config' });
    expect((err as Error).message).toMatch(/token "nope" not found/);
    expect((err as Error).message).toContain(`"ca" (serial ${hsm.tokens.ca})`);
    expect((err as Error).message).toContain(`"spare" (serial ${hsm.tokens.spare})`);
    expect((err as Error).message).toMatch(/an uninitialized token/);
    expect(loginSpy).not.toHaveBeenCalled();
  });

  test('a missing module file is a config error', async () => {
    const missing = openBackend({ module: '/nonexistent/libpkcs11.so' });
    const err = await missing.open().catch((e: unknown) => e);
    await missing.close();
    expect(err).toMatchObject({ code: 'config', message: expect.stringMatching(/module \/nonexistent\/libpkcs11.so not found/) });
  });

  test('an uninitialized token answers C_OpenSession with CKR_TOKEN_NOT_RECOGNIZED, reported as such', async () => {
    // SoftHSM's free slot has an empty label and serial: select it by the empty serial
    const uninitialized = openBackend({ token: undefined, serial: '' });
    const err = await uninitialized.open().catch((e: unknown) => e);
    await uninitialized.close();
    expect(err).toMatchObject({ code: 'config', message: expect.stringMatching(/not initialized \(CKR_TOKEN_NOT_RECOGNIZED\)/) });
    expect(loginSpy).not.toHaveBeenCalled();
  });

  test('a PIN changed under a running backend: the re-login fails once, clearly, and is never retried', async () => {
    const spare = await openBackend({ token: 'spare' }).open();
    const key = await spare.generate('issuing', 'ecdsa-p256', 'spare-key');
    expect(verifyWithSpki(key, Buffer.from('a'), await key.sign(Buffer.from('a')))).toBe(true);
    // the application is logged in to "spare", so this session may change the user PIN; then drop all sessions
    withSlot('spare', (slot) => {
      const s = slot.open(graphene.SessionFlag.RW_SESSION | graphene.SessionFlag.SERIAL_SESSION);
      s.setPin(hsm.pin, '98765');
      slot.closeAll();
    });
    loginSpy.mockClear();
    const err = await key.sign(Buffer.from('b')).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'config', message: expect.stringMatching(/CKR_PIN_INCORRECT/) });
    await expect(key.sign(Buffer.from('c'))).rejects.toBe(err);
    await expect(spare.listKeys()).rejects.toBe(err);
    expect(loginSpy).toHaveBeenCalledTimes(1);
    await spare.close();
    // put the PIN back for anyone else
    withSlot('spare', (slot) => {
      const s = slot.open(graphene.SessionFlag.RW_SESSION | graphene.SessionFlag.SERIAL_SESSION);
      s.login('98765');
      s.setPin('98765', hsm.pin);
      s.logout();
      s.close();
    });
  });
});

describe('the CA on HSM keys', () => {
  test('initCa with the pkcs11 backend, then loadCa after a restart, issues a chain openssl verifies', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'device-ca-pkcs11-ca-'));
    try {
      const cfg = loadConfig({ env: { DEVICE_CA_DATA: dir }, overrides: { publicUrl: 'http://ca.example.test:8080' } });
      const store = new SqliteStore(cfg.store.path);
      const made = await initCa(cfg, backend, store);
      expect(parsePkcs11Uri(made.state.root.keyRef).token).toBe('ca');
      await backend.close();
      backend = await openBackend().open();
      const loaded = await loadCa(cfg, backend, store);
      await store.close();
      expect(loaded.issuing.key.spki).toEqual(made.issuing.key.spki);
      const ca = new CertificateAuthority({
        issuing: loaded.issuing,
        publicUrl: publicBaseUrl(cfg),
        crlShards: cfg.crl.shards,
        backdateSeconds: cfg.ca.backdate,
        profiles: new Map([['device', { validitySeconds: 3600, serverAuth: false }]]),
      });
      const leafKey = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const leaf = await ca.issue({
        profile: 'device',
        subject: [{ type: 'CN', value: 'dev-1' }],
        spki: leafKey.publicKey.export({ type: 'spki', format: 'der' }),
        keyType: 'ec',
        sans: [],
      });
      fs.writeFileSync(path.join(dir, 'leaf.pem'), toPem(leaf.der, 'CERTIFICATE'));
      fs.writeFileSync(path.join(dir, 'root.pem'), toPem(loaded.root.der, 'CERTIFICATE'));
      fs.writeFileSync(path.join(dir, 'issuing.pem'), toPem(loaded.issuing.der, 'CERTIFICATE'));
      const out = execFileSync('openssl', ['verify', '-CAfile', path.join(dir, 'root.pem'), '-untrusted', path.join(dir, 'issuing.pem'), path.join(dir, 'leaf.pem')]).toString();
      expect(out.trim()).toBe(`${path.join(dir, 'leaf.pem')}: OK`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
