import { KeyBackend, KeyRole, SigningKey } from '../../../src/keys/key-backend';
import { KeyRouter } from '../../../src/keys/key-router';
import { isRsaDecryptor, isSecretKeyCipher, SecretKeyCipher } from '../../../src/keys/pkcs11/key-capabilities';

/** KeyRouter forwards optional backend capabilities to the backend that owns a ref. */

const key = (ref: string): SigningKey => ({ algorithm: 'rsa-2048', ref, spki: Buffer.from(ref), signatureAlgorithm: Buffer.alloc(0), sign: async () => Buffer.alloc(0) });

function fakeBackend(kind: string, decrypt?: (ref: string, c: Buffer) => Buffer): KeyBackend & { closed: number } {
  const b = {
    kind,
    closed: 0,
    generate: async (_role: KeyRole, _alg: string, label: string) => key(`${kind}:${label}`),
    load: async (ref: string) => key(ref),
    probe: async (ref: string) => {
      if (ref.endsWith('missing')) throw new Error(`${kind} probe: ${ref} missing`);
    },
    close: async () => void b.closed++,
  };
  return decrypt ? Object.assign(b, { rsaDecrypt: async (ref: string, c: Buffer) => decrypt(ref, c) }) : b;
}

describe('KeyRouter', () => {
  const token = fakeBackend('pkcs11', (ref, c) => Buffer.concat([Buffer.from(`${ref}|`), Buffer.from(c).reverse()]));
  const software = fakeBackend('software');
  const router = new KeyRouter(
    async () => token,
    async (ref) => (ref.startsWith('pkcs11:') ? token : software),
  );

  it('is found by the RsaDecryptor type guard and decrypts with the token that holds the ref', async () => {
    expect(isRsaDecryptor(router)).toBe(true);
    if (!isRsaDecryptor(router)) return;
    const out = await router.rsaDecrypt('pkcs11:token=ca;object=ra', Buffer.from([1, 2, 3]));
    expect(out).toEqual(Buffer.concat([Buffer.from('pkcs11:token=ca;object=ra|'), Buffer.from([3, 2, 1])]));
  });

  it('refuses with key-backend when the owning backend cannot decrypt', async () => {
    await expect(router.rsaDecrypt('/data/keys/ra.key.pem', Buffer.from([1]))).rejects.toMatchObject({ code: 'key-backend' });
  });

  it('probes with the backend that holds the ref', async () => {
    await expect(router.probe('pkcs11:token=ca;object=missing')).rejects.toThrow('pkcs11 probe: pkcs11:token=ca;object=missing missing');
    await expect(router.probe('/data/keys/missing')).rejects.toThrow('software probe: /data/keys/missing missing');
    await expect(router.probe('/data/keys/issuing.key.pem')).resolves.toBeUndefined();
  });

  it('closes every backend it used, once', async () => {
    await router.load('/data/keys/x.key.pem');
    await router.close();
    expect(token.closed).toBe(1);
    expect(software.closed).toBe(1);
  });
});

describe('KeyRouter.secretKeyCipher', () => {
  it("is the signer role's backend when it keeps secret keys, undefined otherwise, and that backend is closed with the router", async () => {
    const cipher: SecretKeyCipher = {
      secretKeyIds: async () => [],
      generateSecretKey: async () => undefined,
      destroySecretKey: async () => undefined,
      aesGcmEncrypt: async () => Buffer.alloc(0),
      aesGcmDecrypt: async () => Buffer.alloc(0),
    };
    const signerToken = Object.assign(fakeBackend('pkcs11'), cipher);
    const other = fakeBackend('pkcs11');
    const roles: KeyRole[] = [];
    const router = new KeyRouter(
      async (role) => {
        roles.push(role);
        return role === 'signer' ? signerToken : other;
      },
      async () => other,
    );
    const got = await router.secretKeyCipher();
    expect(roles).toEqual(['signer']);
    expect(got).toBe(signerToken);
    expect(isSecretKeyCipher(got)).toBe(true);
    await router.close();
    expect(signerToken.closed).toBe(1);
    const none = new KeyRouter(
      async () => other,
      async () => other,
    );
    expect(await none.secretKeyCipher()).toBeUndefined();
  });
});
